/**
 * The function ABI (docs/wasm.md), the same at the edge and on the plane: a
 * WebAssembly function is a WASI command; its input arrives on stdin (the
 * call's arguments as a JSON array, or one argument's raw bytes when its
 * content type is "bytes"), its result is stdout (JSON, or the raw bytes),
 * each stderr line goes to the logs, and a non-zero exit, a trap or a signal
 * is an error carrying stderr's tail. Each call gets a fresh instance of a
 * module compiled once, the function's `args` as argv[1..], and its bundled
 * directories (`files`) preopened read-only.
 */
import type { WasmDefinition } from "../sdk/app.js";
import { checkedHandler } from "../sdk/arguments.js";
import { currentCall } from "../sdk/context.js";
import { InvalidRequestError, functionTimeout } from "../sdk/errors.js";
import { readOnlyPreopen, unpackFiles, type BundledFiles } from "./files.js";
import { WasmLimitError, WasmTrapError, checkWasiCommand, runWasi, stderrTail } from "./host.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An exit with a non-zero code, or output the ABI cannot read; `remoteName` on the caller's side. */
export class WasmExitError extends Error {
  override name = "WasmExitError";
}

/**
 * The handler of a WebAssembly function of app `app`. Checks the module now
 * (load time), naming it and what is wrong. With an `input` schema, the
 * module is given the schema's output, as any function's handler is.
 */
export function wasmFunction(
  app: string,
  definition: WasmDefinition,
  module: WebAssembly.Module,
  /** The blob of its bundled directories (wasm/files.ts), when it has `files`. */
  files?: ArrayBuffer | Uint8Array,
): (...args: unknown[]) => unknown {
  checkWasiCommand(module, `${app}.${definition.name} (${definition.module ?? definition.source})`);
  const { name, spec, contentType, limits, args: argv } = definition;
  const bundled = bundledFiles(app, definition, files);
  const bytes = contentType === "bytes";
  const run = (...args: unknown[]) => {
    const stdin = bytes ? bytesInput(`${app}.${name}`, args) : jsonInput(`${app}.${name}`, args);
    let run;
    try {
      run = runWasi(module, name, {
        args: argv,
        stdin,
        // Its environment: its `env` option and the variables its secrets set (docs/secrets.md).
        env: { ...spec.env, ...currentCall()?.secrets },
        // A fresh tree per call over the same bytes: nothing a call does under them reaches the next.
        preopens: Object.entries(bundled).map(([guest, dir]) => readOnlyPreopen(guest, dir)),
        limits: { ...limits, maxWallMs: spec.timeoutSeconds * 1000 },
      });
    } catch (err) {
      // Past its time, a WebAssembly function times out like any other: same error, same retry policy.
      if (err instanceof WasmLimitError && err.limit === "time") {
        const call = currentCall();
        throw functionTimeout({ app, function: name, timeoutSeconds: spec.timeoutSeconds, callId: call?.callId, attempt: call?.attempt, reason: err.message });
      }
      // A trap (a panic, a failed assert) logs what it wrote to stderr, as an exit does.
      if (err instanceof WasmTrapError) logLines(err.stderr);
      throw err;
    }
    logLines(run.stderr);
    if (run.exitCode !== 0) {
      const tail = stderrTail(run.stderr);
      throw new WasmExitError(`${name} exited with code ${run.exitCode}${tail ? `: ${tail}` : ""}`);
    }
    if (bytes) return run.stdout;
    const text = decoder.decode(run.stdout).trim();
    if (!text) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      throw new WasmExitError(
        `${name} wrote output that is not JSON: ${JSON.stringify(text.slice(0, 200))} (a module that writes other output takes contentType: "bytes", and its result is stdout's bytes)`,
      );
    }
  };
  return spec.input ? checkedHandler(run, spec.input, () => `${app}.${name}`) : run;
}

/** A function's bundled directories, by guest path: each one its `files` names, from the blob the CLI bundled. */
function bundledFiles(app: string, definition: WasmDefinition, blob: ArrayBuffer | Uint8Array | undefined): BundledFiles {
  const wanted = Object.keys(definition.files);
  if (wanted.length === 0) return {};
  const found = blob ? unpackFiles(blob) : {};
  const missing = wanted.filter((guest) => !found[guest]);
  if (missing.length > 0) {
    throw new Error(`the files of ${app}.${definition.name} (${missing.join(", ")}) were not bundled; serve or deploy the app with the tandem CLI`);
  }
  return found;
}

/** Each line of a module's stderr, to the logs. */
function logLines(stderr: Uint8Array): void {
  for (const line of decoder.decode(stderr).split("\n").filter(Boolean)) console.error(line);
}

/**
 * The arguments as the JSON array the module reads. A value JSON cannot carry (a `Map` or `Set` would arrive as
 * `{}`, bytes as `{"0":104,...}`, a `BigInt` not at all) is refused, named, rather than sent changed.
 */
function jsonInput(where: string, args: unknown[]): Uint8Array {
  checkWasmArguments(where, "json", args);
  return encoder.encode(JSON.stringify(args));
}

/**
 * Refuses arguments a WebAssembly function cannot be given (`invalid_request`, saying why): for `json`, a value JSON
 * cannot carry; for `bytes`, anything but one `Uint8Array`, `ArrayBuffer` or string, or nothing. The gateway checks a
 * call's before it is recorded or sent to a plane, as the module's handler does before it runs.
 * @example checkWasmArguments("demo.upper", "json", [new Map()]); // throws: … argument 1 is a Map, which JSON cannot carry; …
 */
export function checkWasmArguments(where: string, contentType: "json" | "bytes", args: unknown[]): void {
  if (contentType === "bytes") {
    bytesInput(where, args);
    return;
  }
  for (const [i, arg] of args.entries()) {
    const found = notJson(arg, "", new Set());
    if (found) {
      throw new InvalidRequestError(
        `${where} takes its arguments as JSON: argument ${i + 1}${found.path} is ${found.what}, which JSON cannot carry; pass plain objects, arrays, strings, numbers and booleans (or give the function contentType: "bytes" and pass bytes)`,
      );
    }
  }
}

/** The first value under `value` that JSON cannot carry, and where (`.items[2]`); undefined when there is none. */
function notJson(value: unknown, path: string, above: Set<object>): { path: string; what: string } | undefined {
  if (typeof value === "bigint") return { path, what: "a BigInt" };
  if (typeof value !== "object" || value === null || above.has(value)) return undefined; // a cycle: JSON.stringify names it
  if (value instanceof Map) return { path, what: "a Map" };
  if (value instanceof Set) return { path, what: "a Set" };
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return { path, what: `bytes (${value.constructor.name})` };
  if (typeof (value as { toJSON?: unknown }).toJSON === "function") return undefined; // a Date: its ISO string
  above.add(value);
  const entries = Array.isArray(value) ? value.map((v, i) => [`[${i}]`, v] as const) : Object.entries(value).map(([k, v]) => [`.${k}`, v] as const);
  for (const [key, v] of entries) {
    const found = notJson(v, path + key, above);
    if (found) return found;
  }
  above.delete(value);
  return undefined;
}

/** A "bytes" function takes one argument: bytes (Uint8Array, ArrayBuffer) or a string, sent as UTF-8. */
function bytesInput(where: string, args: unknown[]): Uint8Array {
  const [input] = args;
  if (args.length === 0) return new Uint8Array(); // no input (a scheduled run, say): an empty stdin
  if (args.length === 1) {
    if (input instanceof Uint8Array) return input;
    if (input instanceof ArrayBuffer) return new Uint8Array(input);
    if (typeof input === "string") return encoder.encode(input);
  }
  const got = args.length === 1 ? (input === null ? "null" : typeof input) : `${args.length} arguments`;
  throw new InvalidRequestError(`${where} takes its input as bytes: call it with one Uint8Array or string, or with nothing for an empty stdin (got ${got})`);
}
