/**
 * The one error family of Tandem. Every error has a stable `code`, an HTTP
 * `status` and a readable message; it is serialised to the wire in one place
 * (`toWireError`) and revived into the same typed class in one place
 * (`fromWireError`), so a client catches the class the gateway threw.
 */

import { ERROR_LIMITS } from "./defaults.js";

/** Every error code Tandem puts on the wire, with its HTTP status. */
export const ERROR_STATUS = {
  invalid_request: 400,
  invalid_options: 400,
  invalid_argument: 400,
  unauthorized: 401,
  spend_cap_reached: 402,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  upgrade_required: 426,
  function_failed: 500,
  function_timeout: 504,
  call_cancelled: 409,
  already_exists: 409,
  volume_conflict: 409,
  value_too_large: 413,
  queue_full: 409,
  get_timeout: 408,
  gateway_unreachable: 502,
  protocol_error: 502,
  plane_unavailable: 503,
  not_configured: 503,
  no_capacity: 503,
  container_failed: 500,
  image_build_failed: 500,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/**
 * The name of each code's class, written out: `new.target.name` is whatever a minifier renamed the class to (`zn`), so
 * a browser bundle's `err.name` said nothing.
 */
const ERROR_NAMES: Record<ErrorCode, string> = {
  invalid_request: "InvalidRequestError",
  invalid_options: "InvalidOptionsError",
  invalid_argument: "InvalidArgumentError",
  unauthorized: "UnauthorizedError",
  spend_cap_reached: "SpendCapError",
  forbidden: "ForbiddenError",
  not_found: "NotFoundError",
  method_not_allowed: "MethodNotAllowedError",
  payload_too_large: "PayloadTooLargeError",
  upgrade_required: "UpgradeRequiredError",
  function_failed: "RemoteError",
  function_timeout: "FunctionTimeoutError",
  call_cancelled: "CancelledError",
  already_exists: "AlreadyExistsError",
  volume_conflict: "VolumeConflictError",
  value_too_large: "ValueTooLargeError",
  queue_full: "QueueFullError",
  get_timeout: "GetTimeoutError",
  gateway_unreachable: "GatewayUnreachableError",
  protocol_error: "ProtocolError",
  plane_unavailable: "PlaneUnavailableError",
  not_configured: "NotConfiguredError",
  no_capacity: "NoCapacityError",
  container_failed: "ContainerFailedError",
  image_build_failed: "ImageBuildError",
  internal: "InternalError",
};

/**
 * Failures worth another attempt under a function's retry policy; the rest
 * (bad input, no plane, no capacity, a cancel) would fail the same way again.
 */
export const RETRYABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "function_failed",
  "function_timeout",
  "container_failed",
  "protocol_error",
  "internal",
]);

/** The JSON shape of an error on the wire: `{ "error": WireError }`. */
export interface WireError {
  code: ErrorCode;
  message: string;
  /** For `function_failed`: the remote exception. */
  remote?: { name: string; message: string; stack?: string };
  /** Extra, code-specific facts (the option, the call id, the limit). */
  details?: Record<string, unknown>;
}

/**
 * Base class of every Tandem error.
 * @example
 * try { await fn.remote(1) } catch (e) { if (e instanceof TandemError) console.log(e.code) }
 */
export class TandemError extends Error {
  /** What went wrong, as the API's `error.code` says it; each subclass has its own, so `instanceof` narrows it too. */
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    // A class of Tandem's by its own name; one of the app's own (extending one of them) by its class's.
    const made: unknown = new.target;
    const ours = code === "function_failed" ? made === RemoteError : made === CLASSES[code];
    this.name = ours ? ERROR_NAMES[code] : new.target.name;
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }

  /**
   * The call this error ended (`details.callId`), where a call was made: a function that threw, timed
   * out or was cancelled; undefined for an error no call was recorded for (a bad argument, say).
   * @example
   * catch (err) { if (err instanceof TandemError && err.callId) console.log(await FunctionCall.fromId(err.callId).logs()); }
   */
  get callId(): string | undefined {
    const id = this.details?.callId;
    return typeof id === "string" ? id : undefined;
  }

  toJSON(): WireError {
    return toWireError(this);
  }
}

/** A request the gateway cannot accept as sent (malformed JSON, wrong shape). */
export class InvalidRequestError extends TandemError {
  declare readonly code: "invalid_request";
  constructor(message: string, details?: Record<string, unknown>) {
    super("invalid_request", message, details);
  }
}

/** An app definition or function option that is not valid; raised when the app loads. */
export class InvalidOptionsError extends TandemError {
  declare readonly code: "invalid_options";
  constructor(message: string, details?: Record<string, unknown>) {
    super("invalid_options", message, details);
  }
}

/**
 * An argument that does not fit its function's `input` schema, refused
 * before the function runs. The message names the argument (from 1) and
 * what was expected; `details.argument` is that number, and
 * `details.issues` lists every problem found (`argument`, `path` inside it,
 * `message`).
 * @example
 * catch (e) { if (e instanceof InvalidArgumentError) console.error(e.message) } // demo.add: argument 2: Invalid input: expected number, received string (got "two")
 */
export class InvalidArgumentError extends TandemError {
  declare readonly code: "invalid_argument";
  constructor(message: string, details?: Record<string, unknown>) {
    super("invalid_argument", message, details);
  }
}

/** An unknown app, function, web endpoint or call id. */
export class NotFoundError extends TandemError {
  declare readonly code: "not_found";
  constructor(message: string, details?: Record<string, unknown>) {
    super("not_found", message, details);
  }
}

/** Something made with a name already taken (`tandem secret create` without `--force`). */
export class AlreadyExistsError extends TandemError {
  declare readonly code: "already_exists";
  constructor(message: string, details?: Record<string, unknown>) {
    super("already_exists", message, details);
  }
}

/** A gateway that lacks a setting the request needs (a secret store without `TANDEM_SECRETS_KEY`); the message names it. */
export class NotConfiguredError extends TandemError {
  declare readonly code: "not_configured";
  constructor(message: string, details?: Record<string, unknown>) {
    super("not_configured", message, details);
  }
}

/** A known route asked with a method it does not serve. */
export class MethodNotAllowedError extends TandemError {
  declare readonly code: "method_not_allowed";
  constructor(message: string, details?: Record<string, unknown>) {
    super("method_not_allowed", message, details);
  }
}

/** A plain HTTP request to a WebSocket agent, which takes WebSocket connections only. */
export class UpgradeRequiredError extends TandemError {
  declare readonly code: "upgrade_required";
  constructor(message: string, details?: Record<string, unknown>) {
    super("upgrade_required", message, details);
  }
}

/** A request body larger than the gateway accepts. */
export class PayloadTooLargeError extends TandemError {
  declare readonly code: "payload_too_large";
  constructor(message: string, details?: Record<string, unknown>) {
    super("payload_too_large", message, details);
  }
}

/**
 * The function itself threw. `remoteName`, `message` and `remoteStack` are the
 * remote exception's.
 * @example
 * catch (e) { if (e instanceof RemoteError) console.error(e.remoteStack) }
 */
export class RemoteError extends TandemError {
  declare readonly code: "function_failed";
  readonly remoteName: string;
  readonly remoteStack: string | undefined;

  constructor(remote: { name: string; message: string; stack?: string }, details?: Record<string, unknown>) {
    super("function_failed", remote.message, details);
    this.remoteName = remote.name;
    this.remoteStack = remote.stack;
  }
}

/** The function ran past its `timeout`. The call is recorded as `timed_out`. */
export class FunctionTimeoutError extends TandemError {
  declare readonly code: "function_timeout";
  constructor(message: string, details?: Record<string, unknown>) {
    super("function_timeout", message, details);
  }
}

/** What a function's timeout error says, wherever it ran out: the same `details` in both tiers. */
export interface TimeoutFacts {
  app: string;
  function: string;
  timeoutSeconds: number;
  callId?: string;
  attempt?: number;
  /** Where it was when time ran out: `while streaming`, `on plane pl-…`, `in container ctr-…`. */
  where?: string;
  /** What was done about it, or what stopped it: `the container was stopped`. */
  reason?: string;
  plane?: string;
  containerId?: string;
  logTail?: string[];
}

/**
 * The one way to say a function ran past its timeout, in either tier:
 * `demo.slow timed out after 1 s on plane pl-… (attempt 2): …`, with
 * `details` holding `timeoutSeconds` and whichever of the call id, attempt,
 * plane, container and log tail are known.
 */
export function functionTimeout(facts: TimeoutFacts): FunctionTimeoutError {
  const { app, function: fn, timeoutSeconds, callId, attempt, where, reason, plane, containerId, logTail } = facts;
  const message = `${app}.${fn} timed out after ${timeoutSeconds} s${where ? ` ${where}` : ""}${attempt === undefined ? "" : ` (attempt ${attempt})`}${reason ? `: ${reason}` : ""}`;
  return new FunctionTimeoutError(message, {
    timeoutSeconds,
    ...(callId === undefined ? {} : { callId }),
    ...(attempt === undefined ? {} : { attempt }),
    ...(plane === undefined ? {} : { plane }),
    ...(containerId === undefined ? {} : { containerId }),
    ...(logTail === undefined ? {} : { logTail }),
  });
}

/** The call was cancelled before it finished. */
export class CancelledError extends TandemError {
  declare readonly code: "call_cancelled";
  constructor(message: string, details?: Record<string, unknown>) {
    super("call_cancelled", message, details);
  }
}

/**
 * Why a stream whose caller stopped reading ended, in either tier: the chunks counted are those sent, some of which its
 * caller may not have read (a reader that breaks after 2 may have 4 in flight).
 * @example stoppedReading(3) // "the caller stopped reading once 3 chunks were sent"
 */
export function stoppedReading(chunks: number): string {
  return `the caller stopped reading once ${chunks} chunk${chunks === 1 ? " was" : "s were"} sent`;
}

/** `FunctionCall.get({ timeoutMs })` waited that long; the call itself goes on. */
export class GetTimeoutError extends TandemError {
  declare readonly code: "get_timeout";
  constructor(message: string, details?: Record<string, unknown>) {
    super("get_timeout", message, details);
  }
}

/** The gateway could not be reached, or answered with something that is not Tandem's. */
export class GatewayUnreachableError extends TandemError {
  declare readonly code: "gateway_unreachable";
  constructor(message: string, details?: Record<string, unknown>) {
    super("gateway_unreachable", message, details);
  }
}

/** A plane-tier function was called and no GPU plane that fits is connected. */
export class PlaneUnavailableError extends TandemError {
  declare readonly code: "plane_unavailable";
  constructor(message: string, details?: Record<string, unknown>) {
    super("plane_unavailable", message, details);
  }
}

/** A request without a token (or with one the gateway does not know, or revoked), or a plane request without a valid signature. */
export class UnauthorizedError extends TandemError {
  declare readonly code: "unauthorized";
  constructor(message: string, details?: Record<string, unknown>) {
    super("unauthorized", message, details);
  }
}

/** The 401 of a `/v1` request that carries no token: what to send, and where the SDK and CLI find one. */
export function missingToken(): UnauthorizedError {
  return new UnauthorizedError(
    "this gateway needs an API token: send `Authorization: Bearer <token>`. The SDK and CLI send TANDEM_TOKEN, the token saved for this gateway by `tandem token create --save`, or (for a gateway on this machine) the one `tandem serve` keeps in .tandem/token",
  );
}

/**
 * The 401 of a request to a plane's route at the gateway (`/v1/planes/…`: heartbeats, log batches, secrets) that is not
 * signed: those routes take a plane's signature, not an API token.
 */
export function unsignedPlaneRequest(): UnauthorizedError {
  return new UnauthorizedError(
    "plane request refused: unsigned request. The gateway's /v1/planes/… routes take requests signed with its plane secret (TANDEM_PLANE_SECRET), as `tandem plane` sends them, not an API token",
  );
}

/** A valid token that may not do what was asked (its scope, or its apps); the message names what it lacks. */
export class ForbiddenError extends TandemError {
  declare readonly code: "forbidden";
  constructor(message: string, details?: Record<string, unknown>) {
    super("forbidden", message, details);
  }
}

/** The app's spend cap is reached: no new container starts for it. */
export class SpendCapError extends TandemError {
  declare readonly code: "spend_cap_reached";
  constructor(message: string, details?: Record<string, unknown>) {
    super("spend_cap_reached", message, details);
  }
}

/** No plane had the GPU type or capacity a call needs before its timeout. */
export class NoCapacityError extends TandemError {
  declare readonly code: "no_capacity";
  constructor(message: string, details?: Record<string, unknown>) {
    super("no_capacity", message, details);
  }
}

/** Where a container's failure message goes on with its last log lines (gpu-plane/container-failure.ts). */
export const LOG_TAIL_MARK = "; last log lines:\n";

/**
 * A message without the container's last log lines it may end with: what a public answer (a web endpoint's) says, as
 * those lines may be other calls', and what a one-line log says, as the lines were printed already.
 * @example withoutLogTail("app.f container ctr-… crashed with exit code 3 during the call; last log lines:\nworking") // "app.f container ctr-… crashed with exit code 3 during the call"
 */
export function withoutLogTail(message: string): string {
  const at = message.indexOf(LOG_TAIL_MARK);
  return at < 0 ? message : message.slice(0, at);
}

/**
 * The container running the call crashed, was killed or ran out of memory.
 * `details.reason` says which (`oom`, `crashed`, `killed`); `details.logTail`
 * holds its last log lines, and so does its message, after `LOG_TAIL_MARK`.
 */
export class ContainerFailedError extends TandemError {
  declare readonly code: "container_failed";
  constructor(message: string, details?: Record<string, unknown>) {
    super("container_failed", message, details);
  }
}

/** A function's image could not be built; the message names the failing step and shows its log tail. */
export class ImageBuildError extends TandemError {
  declare readonly code: "image_build_failed";
  constructor(message: string, details?: Record<string, unknown>) {
    super("image_build_failed", message, details);
  }
}

/**
 * A wire protocol broken: a container wrote something that is not a control frame (it was killed), or a stream's
 * answer held a line its reader cannot read.
 */
export class ProtocolError extends TandemError {
  declare readonly code: "protocol_error";
  constructor(message: string, details?: Record<string, unknown>) {
    super("protocol_error", message, details);
  }
}

/**
 * A volume commit that would overwrite a file another commit changed after
 * the writer's base version. `details.path` names the file, `details.version`
 * the version that changed it; reload and write again, or write with
 * `{ force: true }`.
 * @example
 * catch (e) { if (e instanceof VolumeConflictError) await vol.writeFile(e.details!.path as string, data, { force: true }) }
 */
export class VolumeConflictError extends TandemError {
  declare readonly code: "volume_conflict";
  constructor(message: string, details?: Record<string, unknown>) {
    super("volume_conflict", message, details);
  }
}

/**
 * A dict value or queue item larger than its limit (1 MiB as the call codec
 * encodes it; `details.maxBytes`, `details.bytes`).
 * @example
 * catch (e) { if (e instanceof ValueTooLargeError) await vol.writeFile("big.bin", bytes) }
 */
export class ValueTooLargeError extends TandemError {
  declare readonly code: "value_too_large";
  constructor(message: string, details?: Record<string, unknown>) {
    super("value_too_large", message, details);
  }
}

/**
 * A queue put past a limit: the items one partition holds, or the partitions
 * one queue holds (`details.limit`). Consume or clear some first.
 * @example
 * catch (e) { if (e instanceof QueueFullError) await sleep(1000) }
 */
export class QueueFullError extends TandemError {
  declare readonly code: "queue_full";
  constructor(message: string, details?: Record<string, unknown>) {
    super("queue_full", message, details);
  }
}

/** A fault inside Tandem itself. */
export class InternalError extends TandemError {
  declare readonly code: "internal";
  constructor(message: string, details?: Record<string, unknown>) {
    super("internal", message, details);
  }
}

/** Serialises any thrown value into the wire shape. Non-Tandem errors become `internal`. */
export function toWireError(err: unknown): WireError {
  if (err instanceof RemoteError) {
    return {
      code: err.code,
      message: err.message,
      remote: { name: err.remoteName, message: err.message, ...(err.remoteStack ? { stack: err.remoteStack } : {}) },
      ...(err.details ? { details: err.details } : {}),
    };
  }
  if (err instanceof TandemError) {
    return { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: "internal", message };
}

/**
 * `error` as the error of call `callId`: with `details.callId`, unless it names a call already. Every error a call
 * ends with carries its id (`TandemError.callId`), whichever code it has and wherever it was made.
 * @example throw fromWireError(ofCall(toWireError(err), callId));
 */
export function ofCall(error: WireError, callId: string | undefined): WireError {
  if (callId === undefined || typeof error.details?.callId === "string") return error;
  return { ...error, details: { ...error.details, callId } };
}

/** `err`, a Tandem error, as the error of call `callId` (see `ofCall`): itself when it names a call already. */
export function errorOfCall(err: TandemError, callId: string): TandemError {
  return err.callId === undefined ? fromWireError(ofCall(toWireError(err), callId)) : err;
}

/**
 * The body of every HTTP error answer Tandem gives, in both tiers and the
 * CLI's front door: `{ "error": { code, message, … } }`.
 * @example
 * return c.json(errorBody(err), err instanceof TandemError ? err.status : 500);
 */
export function errorBody(err: unknown): { error: WireError } {
  return { error: toWireError(err) };
}

/**
 * A request body over a limit: the same words wherever it is refused (the
 * gateway, an endpoint, the CLI's front door). `whose` says whose limit it is,
 * by default the gateway's (`TANDEM_MAX_BODY_BYTES`); `note`, what counts
 * towards it where that is not plain (`CALL_BODY_NOTE`).
 * @example
 * throw bodyTooLarge(1024, 1100, `endpoint "upload" accepts (its maxBodyBytes option)`);
 */
export function bodyTooLarge(maxBytes: number, atLeast?: number, whose = "this gateway accepts (TANDEM_MAX_BODY_BYTES)", note?: string): PayloadTooLargeError {
  return new PayloadTooLargeError(`request body is larger than ${maxBytes} bytes, the most ${whose}${note === undefined ? "" : `: ${note}`}`, {
    maxBytes,
    ...(atLeast === undefined ? {} : { atLeast }),
  });
}

/**
 * What counts towards the limit on a call's body (call, spawn, map), said where one is refused: its arguments as they
 * travel, so bytes count a third more than they are.
 */
export const CALL_BODY_NOTE =
  "a call's arguments count as they travel, as JSON, binary data (a Uint8Array, a Buffer) about 4/3 of its bytes as base64; pass large data by reference instead (a volume's file)";

/** The HTTP status an error answers with: its code's, or 500 for anything that is not a Tandem error. */
export function errorStatus(err: unknown): number {
  return err instanceof TandemError ? err.status : 500;
}

const CLASSES: { [C in Exclude<ErrorCode, "function_failed">]: new (message: string, details?: Record<string, unknown>) => TandemError } = {
  invalid_request: InvalidRequestError,
  invalid_options: InvalidOptionsError,
  invalid_argument: InvalidArgumentError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  spend_cap_reached: SpendCapError,
  not_found: NotFoundError,
  method_not_allowed: MethodNotAllowedError,
  upgrade_required: UpgradeRequiredError,
  payload_too_large: PayloadTooLargeError,
  function_timeout: FunctionTimeoutError,
  call_cancelled: CancelledError,
  already_exists: AlreadyExistsError,
  volume_conflict: VolumeConflictError,
  value_too_large: ValueTooLargeError,
  queue_full: QueueFullError,
  get_timeout: GetTimeoutError,
  gateway_unreachable: GatewayUnreachableError,
  plane_unavailable: PlaneUnavailableError,
  not_configured: NotConfiguredError,
  no_capacity: NoCapacityError,
  container_failed: ContainerFailedError,
  image_build_failed: ImageBuildError,
  protocol_error: ProtocolError,
  internal: InternalError,
};

/** Revives a wire error into its typed class. Unknown codes become `InternalError`. */
export function fromWireError(wire: WireError): TandemError {
  if (wire.code === "function_failed") {
    return new RemoteError(wire.remote ?? { name: "Error", message: wire.message }, wire.details);
  }
  const Class = CLASSES[wire.code] ?? InternalError;
  return new Class(wire.message, wire.details);
}

/** `text` cut to at most `max` characters, the last of them saying how many more it had; as it is when it fits. */
function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const kept = max - 40; // room for the note, which is never longer
  return `${text.slice(0, kept)}… (${text.length - kept} more characters)`;
}

/** `value` as JSON text, or undefined where it has none (a BigInt, a cycle). */
function jsonText(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}

/** A remote exception within `ERROR_LIMITS`: its stack's first line (its name and message) cut as its message is. */
function boundedRemote(remote: { name: string; message: string; stack?: string }): { name: string; message: string; stack?: string } {
  const name = cut(String(remote.name), ERROR_LIMITS.nameChars);
  const message = cut(String(remote.message), ERROR_LIMITS.messageChars);
  let stack = remote.stack === undefined ? undefined : String(remote.stack);
  const head = `${remote.name}: ${remote.message}`;
  if (stack !== undefined && message !== remote.message && stack.startsWith(head)) stack = `${name}: ${message}${stack.slice(head.length)}`;
  return { name, message, ...(stack === undefined ? {} : { stack: cut(stack, ERROR_LIMITS.stackChars) }) };
}

/**
 * `wire` within `ERROR_LIMITS`, itself when it is: a message or stack past them cut, saying how much more it had;
 * details larger (or not JSON) replaced by a note, keeping the call id. Every call's error is kept with its record.
 * @example ledger.write(JSON.stringify(boundedWireError(call.error)));
 */
export function boundedWireError(wire: WireError): WireError {
  const details = wire.details === undefined ? "" : jsonText(wire.details);
  const remote = wire.remote;
  const fits = (text: string | undefined, max: number) => text === undefined || text.length <= max;
  if (
    fits(wire.message, ERROR_LIMITS.messageChars) &&
    fits(details, ERROR_LIMITS.detailsChars) &&
    (remote === undefined ||
      (fits(remote.name, ERROR_LIMITS.nameChars) && fits(remote.message, ERROR_LIMITS.messageChars) && fits(remote.stack, ERROR_LIMITS.stackChars)))
  ) {
    return wire;
  }
  const callId = wire.details?.callId;
  const omitted =
    details === undefined ? "its details, which are not JSON" : `its details, ${details.length} characters as JSON, over the ${ERROR_LIMITS.detailsChars} kept`;
  return {
    code: wire.code,
    message: cut(wire.message, ERROR_LIMITS.messageChars),
    ...(remote === undefined ? {} : { remote: boundedRemote(remote) }),
    ...(wire.details === undefined
      ? {}
      : { details: fits(details, ERROR_LIMITS.detailsChars) ? wire.details : { ...(typeof callId === "string" ? { callId } : {}), omitted } }),
  };
}

/** `err` within `ERROR_LIMITS` (see `boundedWireError`): itself when it is. */
function boundedError(err: TandemError): TandemError {
  const wire = toWireError(err);
  const bounded = boundedWireError(wire);
  return bounded === wire ? err : fromWireError(bounded);
}

/**
 * What a call whose handler threw `thrown` fails with, in both tiers alike: a Tandem error as it is (an inner call's
 * `RemoteError` passed on keeps the name, message, stack and call id its own function's tier gave it, its stack mapped
 * there already), anything else a `RemoteError` of this call (`remoteErrorFrom`). A plane's runner has no source map:
 * its plane maps the stack after, and a stack mapped already comes back from that as it is (sdk/stack-map.ts).
 * @example throw maskedError(callFailure(err, { callId }, mapStack), secretValues);
 */
export function callFailure(thrown: unknown, details?: Record<string, unknown>, mapStack?: (stack: string) => string): TandemError {
  return thrown instanceof TandemError ? boundedError(thrown) : remoteErrorFrom(thrown, details, mapStack);
}

/**
 * Wraps whatever a user handler threw as a `RemoteError`, keeping its name and
 * stack; `mapStack` lets a runtime point the stack at the original sources.
 */
export function remoteErrorFrom(thrown: unknown, details?: Record<string, unknown>, mapStack?: (stack: string) => string): RemoteError {
  if (thrown instanceof RemoteError) return boundedError(thrown) as RemoteError;
  if (thrown instanceof Error) {
    const stack = thrown.stack && mapStack ? mapStack(thrown.stack) : thrown.stack;
    return new RemoteError(boundedRemote({ name: thrown.name, message: thrown.message, ...(stack ? { stack } : {}) }), details);
  }
  return new RemoteError(boundedRemote({ name: "Error", message: `non-Error value thrown: ${safeString(thrown)}` }), details);
}

function safeString(value: unknown): string {
  try {
    return typeof value === "string" ? value : (JSON.stringify(value) ?? String(value));
  } catch {
    return String(value);
  }
}

/**
 * A listener's failure to listen on `host` because this machine has no such address (`--host 999.1.1.1`, a name that
 * does not resolve), said as the option's mistake; any other failure as it is.
 * @example server.once("error", (err) => reject(hostNotHere(err, host)));
 */
export function hostNotHere(err: Error & { code?: string }, host: string): Error {
  if (err.code !== "ENOTFOUND" && err.code !== "EADDRNOTAVAIL" && err.code !== "EAI_AGAIN") return err;
  return new InvalidOptionsError(`--host ${host} is no address of this machine (${err.code}): give one it has, such as 127.0.0.1`);
}
