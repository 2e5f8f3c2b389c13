/**
 * Getting a WebAssembly function's module ready to ship (Node only: the CLI
 * and the tests run it, never a tier): AssemblyScript source compiled with
 * asc, the module checked, then instrumented with binaryen so the host can
 * stop it. Every loop header and function exit calls a small function added
 * to the module that counts down a budget and calls the host's `tandem.tick`
 * once per `TICK_EVERY` steps, or at once when the memory has grown past
 * `maxMemoryPages`; the host checks the run's deadline and memory there
 * (wasm/host.ts). A module cannot otherwise be interrupted while it runs in
 * an isolate. On a loop that does nothing else the countdown costs about 70%;
 * on real work, much less (bench/wasm-cold).
 */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { TICK_EVERY, TICK_IMPORT, checkWasiCommand } from "./host.js";

const require = createRequire(import.meta.url);

/** A source that could not be compiled, or a file that is not a WASI command this host can run. */
export class WasmPrepareError extends Error {
  override name = "WasmPrepareError";
}

/** Compiles AssemblyScript `source` to `out` with the options docs/wasm.md names. */
export async function compileAssemblyScript(source: string, out: string): Promise<void> {
  const asc = join(dirname(require.resolve("assemblyscript/package.json")), "bin", "asc.js");
  try {
    await promisify(execFile)(process.execPath, [asc, source, "-O3", "--runtime", "stub", "--noAssert", "--use", "abort=", "-o", out]);
  } catch (err) {
    const output = String((err as { stderr?: string }).stderr || (err as Error).message).trim();
    throw new WasmPrepareError(`AssemblyScript could not compile it:\n${output.split("\n").slice(-15).join("\n")}`);
  }
}

/**
 * Reads `file` (a `.wasm`, or AssemblyScript when `source`), checks that it is
 * a WASI command the host can run, instruments it, and writes it to `out`.
 * `name` names it in errors.
 */
export async function prepareModule(file: string, out: string, options: { source: boolean; name: string; maxMemoryPages: number }): Promise<void> {
  if (options.source) await compileAssemblyScript(file, out);
  const bytes = new Uint8Array(await readFile(options.source ? out : file));
  let module: WebAssembly.Module;
  try {
    module = new WebAssembly.Module(bytes);
  } catch (err) {
    throw new WasmPrepareError(`${options.name} is not a WebAssembly module (${(err as Error).message})`);
  }
  checkWasiCommand(module, options.name);
  await writeFile(out, await instrument(bytes, options.maxMemoryPages));
}

/** Adds the host's tick to every loop header and function exit of `bytes`; see the file's comment. */
export async function instrument(bytes: Uint8Array, maxMemoryPages: number): Promise<Uint8Array<ArrayBuffer>> {
  const { default: binaryen } = await import("binaryen");
  const m = binaryen.readBinary(bytes);
  try {
    m.setFeatures(binaryen.Features.All);
    // The pass calls an import `<module>.log_execution(i32)` at each loop header and function exit ...
    binaryen.setPassArgument("log-execution", TICK_IMPORT.module);
    m.runPasses(["log-execution"]);
    binaryen.setPassArgument("log-execution", null);
    // ... which becomes a function of the module: a countdown that calls the host once per TICK_EVERY steps, and
    // whenever the memory is past its limit (so one step that grows it a lot is caught at the next).
    const internal = m.getFunction("log_execution") ? "log_execution" : undefined;
    if (!internal) return new Uint8Array(bytes); // no loops, no functions: nothing to bound
    m.removeFunction(internal);
    const budget = "__tandem_budget";
    const hostTick = "__tandem_host_tick";
    m.addGlobal(budget, binaryen.i32, true, m.i32.const(TICK_EVERY));
    m.addFunctionImport(hostTick, TICK_IMPORT.module, TICK_IMPORT.name, binaryen.none, binaryen.none);
    m.addFunction(
      internal,
      binaryen.i32,
      binaryen.none,
      [],
      m.block(null, [
        m.global.set(budget, m.i32.sub(m.global.get(budget, binaryen.i32), m.i32.const(1))),
        m.if(
          m.i32.or(m.i32.le_s(m.global.get(budget, binaryen.i32), m.i32.const(0)), m.i32.gt_u(m.memory.size(), m.i32.const(maxMemoryPages))),
          m.block(null, [m.global.set(budget, m.i32.const(TICK_EVERY)), m.call(hostTick, [], binaryen.none)]),
        ),
      ]),
    );
    if (!m.validate()) throw new WasmPrepareError("instrumenting the module produced an invalid module");
    return new Uint8Array(m.emitBinary());
  } finally {
    m.dispose();
  }
}
