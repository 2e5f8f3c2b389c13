/**
 * The Tandem SDK: define apps, call their functions from anywhere.
 * @example
 * import { App, lookup, FunctionCall } from "tandem";
 */
export { App, FunctionHandle, EndpointHandle, lookup, isApp, loadAppModule } from "./app.js";
export type {
  ClientOptions,
  EndpointOptions,
  EndpointHandler,
  HttpMethod,
  MapOptions,
  WebApp,
  WebMount,
  WebAuth,
  WebOptions,
  WasmSource,
  AgentContext,
  AgentHandlers,
  AgentOptions,
  // What app.cls and a generator's stream give, so a declaration can name them (`declaration: true` emits them).
  ClsHandle,
  ClsMethods,
  ClsOptions,
  ClsParams,
  Yielded,
} from "./app.js";
export type { ArgumentsSchema } from "./arguments.js";
export type { GpuSpec } from "./gpu.js";
export type { RetryPolicy } from "./protocol.js";
export { connect, AgentSocket } from "./agent-client.js";
export type { ConnectOptions, AgentMessageEvent, AgentCloseEvent, AgentOpenEvent, AgentErrorEvent, AgentSocketEventMap } from "./agent-client.js";
export { FunctionCall } from "./function-call.js";
export type { CallStream } from "./remote-stream.js";
export { Volume, VolumeFile, VolumeBatch } from "./volume.js";
export type { FileData, VolumeOptions } from "./volume.js";
export { Dict } from "./dict.js";
export type { DictOptions, DictPutOptions, DictEntryInfo } from "./dict.js";
export { Queue } from "./queue.js";
export type { QueueOptions, QueueGetOptions, LeasedItem } from "./queue.js";
export { Retries, DEFAULT_TIMEOUT_SECONDS, DEFAULT_RETRY_POLICY } from "./options.js";
export type { FunctionOptions, FunctionSpec, WasmOptions } from "./options.js";
export { Cron, Period } from "./schedule.js";
export type { Schedule, ScheduleOptions, OverlapPolicy } from "./schedule.js";
export { Image } from "./image.js";
export { Secret } from "./secret.js";
export type { ImageStep } from "./image.js";
export { currentCall } from "./context.js";
export { GPU_TYPES, MAX_GPUS_PER_CONTAINER } from "./gpu.js";
export type { GpuType } from "./gpu.js";
export type { CallContext } from "./context.js";
export { DEFAULT_GATEWAY, resolveGatewayUrl } from "./client.js";
export {
  TandemError,
  InvalidRequestError,
  InvalidOptionsError,
  InvalidArgumentError,
  NotFoundError,
  MethodNotAllowedError,
  UpgradeRequiredError,
  PayloadTooLargeError,
  RemoteError,
  FunctionTimeoutError,
  CancelledError,
  GetTimeoutError,
  GatewayUnreachableError,
  PlaneUnavailableError,
  AlreadyExistsError,
  NotConfiguredError,
  NoCapacityError,
  ContainerFailedError,
  ImageBuildError,
  ProtocolError,
  UnauthorizedError,
  ForbiddenError,
  SpendCapError,
  VolumeConflictError,
  ValueTooLargeError,
  QueueFullError,
  InternalError,
} from "./errors.js";
export type { ErrorCode, WireError } from "./errors.js";
export type { CallRecord, CallStatus, AppManifest, ScheduleInfo, TokenInfo, TokenScope, SecretInfo } from "./protocol.js";
export type { VolumeInfo, VolumeEntry, DictInfo, QueueInfo } from "./protocol.js";
export type { LogLine, LogSource } from "./protocol.js";
export type { CallLogOptions } from "./function-call.js";
