/**
 * WebAssembly functions at the edge: the module is compiled once per isolate
 * (it ships in the Worker as a compiled module) and gets a fresh instance per
 * call. The call's arguments go in as a JSON array on stdin, the result is
 * the JSON on stdout, each stderr line goes to the logs, and a non-zero exit
 * is an error carrying stderr's tail. See docs/wasm.md.
 */
import type { WasmDefinition } from "../sdk/app.js";
import { checkWasiCommand, runWasi } from "../wasm/host.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An exit with a non-zero code; `remoteName` on the caller's side. */
export class WasmExitError extends Error {
  override name = "WasmExitError";
}

/** The handler of a WebAssembly function; checks the module now (load time). */
export function wasmHandler(app: string, definition: WasmDefinition, module: WebAssembly.Module): (...args: unknown[]) => unknown {
  const name = `${app}.${definition.name} (${definition.module ?? definition.source})`;
  checkWasiCommand(module, name);
  return (...args: unknown[]) => {
    const run = runWasi(module, definition.name, { stdin: encoder.encode(JSON.stringify(args)), env: definition.spec.env });
    const stderr = decoder.decode(run.stderr);
    for (const line of stderr.split("\n").filter(Boolean)) console.error(line);
    if (run.exitCode !== 0) {
      const tail = stderr.trim().split("\n").slice(-10).join("\n");
      throw new WasmExitError(`${definition.name} exited with code ${run.exitCode}${tail ? `: ${tail}` : ""}`);
    }
    const text = decoder.decode(run.stdout).trim();
    if (!text) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      throw new WasmExitError(`${definition.name} wrote output that is not JSON: ${JSON.stringify(text.slice(0, 200))}`);
    }
  };
}
