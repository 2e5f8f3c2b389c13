/**
 * The public surface of `tandem`: the names sdk/index.ts exports, values and types, so that it
 * changes only on purpose. A change here is an API change: update the snapshot (`npx vitest run
 * sdk/index.test.ts -u`) in the same commit, and say so in its message.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/** Names exported by `export type { … }`, `export { type … }`, or an exported interface or type alias. */
function typeOnlyExports(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest);
  const names: string[] = [];
  for (const statement of source.statements) {
    if (ts.isExportDeclaration(statement)) {
      // `export * from` would hide its names from this list: the barrel names each export instead.
      if (!statement.exportClause || !ts.isNamedExports(statement.exportClause)) throw new Error(`${file}: name each export instead of \`export *\``);
      for (const element of statement.exportClause.elements) if (statement.isTypeOnly || element.isTypeOnly) names.push(element.name.text);
    } else if (
      (ts.isInterfaceDeclaration(statement) || ts.isTypeAliasDeclaration(statement)) &&
      statement.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)
    ) {
      names.push(statement.name.text);
    }
  }
  return names.sort();
}

describe("the public surface of sdk/index.ts", () => {
  it("exports these values", async () => {
    expect(Object.keys(await import("./index.js")).sort()).toMatchInlineSnapshot(`
      [
        "AgentSocket",
        "AlreadyExistsError",
        "App",
        "CancelledError",
        "ContainerFailedError",
        "Cron",
        "DEFAULT_GATEWAY",
        "DEFAULT_RETRY_POLICY",
        "DEFAULT_TIMEOUT_SECONDS",
        "Dict",
        "EndpointHandle",
        "ForbiddenError",
        "FunctionCall",
        "FunctionHandle",
        "FunctionTimeoutError",
        "GPU_TYPES",
        "GatewayUnreachableError",
        "GetTimeoutError",
        "Image",
        "ImageBuildError",
        "InternalError",
        "InvalidArgumentError",
        "InvalidOptionsError",
        "InvalidRequestError",
        "MAX_GPUS_PER_CONTAINER",
        "MethodNotAllowedError",
        "NoCapacityError",
        "NotConfiguredError",
        "NotFoundError",
        "PayloadTooLargeError",
        "Period",
        "PlaneUnavailableError",
        "ProtocolError",
        "Queue",
        "QueueFullError",
        "RemoteError",
        "Retries",
        "Secret",
        "SpendCapError",
        "TandemError",
        "UnauthorizedError",
        "UpgradeRequiredError",
        "ValueTooLargeError",
        "Volume",
        "VolumeBatch",
        "VolumeConflictError",
        "VolumeFile",
        "connect",
        "currentCall",
        "isApp",
        "loadAppModule",
        "lookup",
        "resolveGatewayUrl",
      ]
    `);
  });

  it("exports these types", () => {
    expect(typeOnlyExports(fileURLToPath(new URL("./index.ts", import.meta.url)))).toMatchInlineSnapshot(`
      [
        "AgentCloseEvent",
        "AgentContext",
        "AgentErrorEvent",
        "AgentHandlers",
        "AgentMessageEvent",
        "AgentOpenEvent",
        "AgentOptions",
        "AgentSocketEventMap",
        "AppManifest",
        "ArgumentsSchema",
        "CallContext",
        "CallLogOptions",
        "CallRecord",
        "CallStatus",
        "CallStream",
        "ClientOptions",
        "ClsHandle",
        "ClsMethods",
        "ClsOptions",
        "ClsParams",
        "ConnectOptions",
        "DictEntryInfo",
        "DictInfo",
        "DictOptions",
        "DictPutOptions",
        "EndpointHandler",
        "EndpointOptions",
        "ErrorCode",
        "FileData",
        "FunctionOptions",
        "FunctionSpec",
        "GpuSpec",
        "GpuType",
        "HttpMethod",
        "ImageStep",
        "LeasedItem",
        "LogLine",
        "LogSource",
        "MapOptions",
        "OverlapPolicy",
        "QueueGetOptions",
        "QueueInfo",
        "QueueOptions",
        "RetryPolicy",
        "Schedule",
        "ScheduleInfo",
        "ScheduleOptions",
        "SecretInfo",
        "TokenInfo",
        "TokenScope",
        "VolumeEntry",
        "VolumeInfo",
        "VolumeOptions",
        "WasmOptions",
        "WasmSource",
        "WebApp",
        "WebAuth",
        "WebMount",
        "WebOptions",
        "WireError",
        "Yielded",
      ]
    `);
  });
});
