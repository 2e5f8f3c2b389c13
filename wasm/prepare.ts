/**
 * Getting a WebAssembly function's module ready to ship (Node only: the CLI
 * and the tests run it, never a tier): AssemblyScript source compiled with
 * asc, the module checked, then instrumented with binaryen so the host can
 * stop it; and its bundled directories (`files`) read, within their limits,
 * into one blob. Every loop header and function exit calls a small function added
 * to the module that counts down a budget and calls the host's `tandem.tick`
 * once per `TICK_EVERY` steps, or at once when the memory has grown past
 * `maxMemoryPages`; the host checks the run's deadline and memory there
 * (wasm/host.ts). A module cannot otherwise be interrupted while it runs in
 * an isolate. On a loop that does nothing else the countdown costs about 70%;
 * on real work, much less (bench/wasm-cold).
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { copyFile, mkdir, readdir, readFile, realpath, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { packFiles, type BundledFiles } from "./files.js";
import { MEMORY_IMPORT, TICK_EVERY, TICK_IMPORT, checkWasiCommand } from "./host.js";

const require = createRequire(import.meta.url);

/** A source that could not be compiled, or a file that is not a WASI command this host can run. */
export class WasmPrepareError extends Error {
  override name = "WasmPrepareError";
}

/** The asc options docs/wasm.md names. */
const ASC_FLAGS = ["-O3", "--runtime", "stub", "--noAssert", "--use", "abort=tandem_abort"];
/**
 * `tandem_abort`, compiled beside every source: it writes a `throw`'s message to stderr before the trap. Beside this
 * file when it runs from source; from the CLI's bundle in `dist/`, in the package's `wasm/`.
 */
const ABORT_SOURCE = ["./abort.as.ts", "../wasm/abort.as.ts"].map((p) => fileURLToPath(new URL(p, import.meta.url))).find((p) => existsSync(p));

/**
 * asc, run in a worker thread (a compile takes a second or more, and `tandem
 * serve` keeps answering meanwhile). It reports every file the compiler asked
 * for, found or not, so that a cached result can be checked against them.
 */
const ASC_WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const { readFileSync } = require("node:fs");
const { resolve } = require("node:path");
(async () => {
  const asc = await import(workerData.asc);
  const read = {};
  let stderr = "";
  const text = (s) => (typeof s === "string" ? s : new TextDecoder().decode(s));
  const { error } = await asc.main(workerData.argv, {
    readFile(name, baseDir) {
      const path = resolve(baseDir, name);
      try {
        return (read[path] = readFileSync(path, "utf8"));
      } catch {
        read[path] = null;
        return null;
      }
    },
    stdout: { write: () => true },
    stderr: { write: (s) => ((stderr += text(s)), true) },
  });
  parentPort.postMessage({ ok: !error, stderr: stderr || String(error?.message ?? ""), read });
})().catch((err) => parentPort.postMessage({ ok: false, stderr: String(err?.stack ?? err), read: {} }));
`;

interface CachedCompile {
  /** Every file the compile read (its content hash) or looked for and did not find (null). */
  files: Record<string, string | null>;
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/**
 * Compiles AssemblyScript `source` to `out` with the options docs/wasm.md
 * names. With `cacheDir`, a compile whose inputs (every file asc read or
 * looked for, the compiler's version and options) are unchanged is reused,
 * so a reload that did not touch the module does not compile it again.
 */
export async function compileAssemblyScript(source: string, out: string, cacheDir?: string): Promise<void> {
  const ascPackage = require.resolve("assemblyscript/package.json");
  const version = (JSON.parse(await readFile(ascPackage, "utf8")) as { version: string }).version;
  const key = sha256(JSON.stringify([version, ASC_FLAGS, resolve(source)]));
  const cached = cacheDir && join(cacheDir, key);
  if (cached && (await unchanged(`${cached}.json`))) {
    await copyFile(`${cached}.wasm`, out);
    return;
  }
  const asc = pathToFileURL(join(dirname(ascPackage), "dist", "asc.js")).href;
  const result = await new Promise<{ ok: boolean; stderr: string; read: Record<string, string | null> }>((resolveResult, reject) => {
    if (!ABORT_SOURCE) throw new Error("wasm/abort.as.ts is missing from this Tandem: pack or install it again");
    const worker = new Worker(ASC_WORKER, {
      eval: true,
      workerData: { asc, argv: [resolve(source), ABORT_SOURCE, ...ASC_FLAGS, "--baseDir", dirname(resolve(source)), "-o", resolve(out)] },
    });
    worker.once("message", resolveResult);
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`the compiler stopped (exit code ${code})`)));
  }).catch((err: Error) => ({ ok: false, stderr: err.message, read: {} }));
  if (!result.ok) {
    throw new WasmPrepareError(`AssemblyScript could not compile it:\n${result.stderr.trim().split("\n").slice(-15).join("\n")}`);
  }
  if (cached) {
    await mkdir(cacheDir, { recursive: true });
    await copyFile(out, `${cached}.wasm`);
    const files = Object.fromEntries(Object.entries(result.read).map(([path, text]) => [path, text === null ? null : sha256(text)]));
    await writeFile(`${cached}.json`, JSON.stringify({ files } satisfies CachedCompile));
  }
}

/** True when every file a cached compile read is as it was, and every file it looked for is still missing. */
async function unchanged(entry: string): Promise<boolean> {
  try {
    const { files } = JSON.parse(await readFile(entry, "utf8")) as CachedCompile;
    for (const [path, hash] of Object.entries(files)) {
      const now = await readFile(path, "utf8").then(sha256, () => null);
      if (now !== hash) return false;
    }
    return Object.keys(files).length > 0;
  } catch {
    return false;
  }
}

/**
 * Reads `file` (a `.wasm`, or AssemblyScript when `source`), checks that it is
 * a WASI command the host can run, instruments it, and writes it to `out`.
 * `name` names it in errors.
 */
export async function prepareModule(
  file: string,
  out: string,
  options: { source: boolean; name: string; maxMemoryPages: number; cacheDir?: string },
): Promise<void> {
  if (options.source) await compileAssemblyScript(file, out, options.cacheDir);
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

/** How much a function's bundled directories may hold, all together (sdk/defaults.ts). */
export interface FilesLimits {
  maxBytes: number;
  /** Files and directories. */
  maxFiles: number;
}

/**
 * Reads the directories of a function's `files` (guest path → directory, relative to `baseDir`) into the blob
 * that ships with it (wasm/files.ts). Symbolic links are followed; a directory reached twice is refused, as is
 * anything that is neither a file nor a directory. The limits are checked before any file is read: past either,
 * the error names the directories, what they hold and the limit.
 */
export async function packDirectories(files: Record<string, string>, baseDir: string, limits: FilesLimits): Promise<Uint8Array<ArrayBuffer>> {
  const found: { guest: string; root: string; dirs: string[]; files: [string, string][] }[] = [];
  const named = Object.entries(files)
    .map(([guest, given]) => `${JSON.stringify(guest)}: ${given}`)
    .join(", ");
  let bytes = 0;
  let count = 0;
  for (const [guest, given] of Object.entries(files)) {
    const root = resolve(baseDir, given);
    const info = await stat(root).catch(() => undefined);
    if (!info) throw new WasmPrepareError(`option "files": ${JSON.stringify(guest)} is ${given}, which does not exist (looked for ${root})`);
    if (!info.isDirectory()) throw new WasmPrepareError(`option "files": ${JSON.stringify(guest)} is ${given}, which is not a directory`);
    const entry = { guest, root, dirs: [] as string[], files: [] as [string, string][] };
    const seen = new Set<string>();
    const walk = async (dir: string, inside: string): Promise<void> => {
      const real = await realpath(dir);
      if (seen.has(real))
        throw new WasmPrepareError(`option "files": ${given} reaches ${real} twice, through symbolic links; bundle a directory without the loop`);
      seen.add(real);
      for (const name of (await readdir(dir)).sort()) {
        const path = join(dir, name);
        const rel = inside ? `${inside}/${name}` : name;
        const s = await stat(path).catch(() => undefined); // follows links
        // Counted as the walk goes, so that a directory far too large (a node_modules) is refused without walking all of it.
        if (++count > limits.maxFiles) {
          throw new WasmPrepareError(
            `option "files" (${named}) holds more than ${limits.maxFiles} files and directories, the limit for one function; bundle fewer (an archive the module unpacks counts as one)`,
          );
        }
        if (s?.isDirectory()) {
          entry.dirs.push(rel);
          await walk(path, rel);
        } else if (s?.isFile()) {
          entry.files.push([rel, path]);
          bytes += s.size;
        } else {
          throw new WasmPrepareError(
            `option "files": ${join(given, rel)} is neither a file nor a directory (or a link to nothing); only files and directories are bundled`,
          );
        }
      }
    };
    await walk(root, "");
    found.push(entry);
  }
  if (bytes > limits.maxBytes) {
    throw new WasmPrepareError(
      `option "files" (${named}) holds ${formatBytes(bytes)}, more than the limit of ${formatBytes(limits.maxBytes)} for one function; bundle less, or read large data from a volume or a request`,
    );
  }
  const bundled: BundledFiles = {};
  for (const f of found) {
    const contents: Record<string, Uint8Array> = {};
    for (const [rel, path] of f.files) contents[rel] = new Uint8Array(await readFile(path));
    bundled[f.guest] = { dirs: f.dirs, files: contents };
  }
  return packFiles(bundled);
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/**
 * Makes the module's exported memory an import the host gives (`tandem.memory`, its limits in a custom section),
 * still exported as `memory`: the host hands each run a zeroed memory it keeps between runs, instead of the
 * address-space reservation a new memory costs (wasm/host.ts, `MEMORY_IMPORT`). A shared or 64-bit memory,
 * one already imported, and a module without an exported memory stay as they are.
 */
function importMemory(binaryen: typeof import("binaryen").default, m: import("binaryen").default.Module): void {
  let internalName: string | undefined;
  for (let i = 0; i < m.getNumExports(); i++) {
    const e = binaryen.getExportInfo(m.getExportByIndex(i));
    if (e.name === "memory" && e.kind === binaryen.ExternalMemory) internalName = e.value;
  }
  if (internalName === undefined) return;
  const info = m.getMemoryInfo(internalName);
  if (info.module || info.shared || info.is64) return;
  m.addMemoryImport(internalName, MEMORY_IMPORT.module, MEMORY_IMPORT.name);
  const limits = { initial: info.initial, ...(info.max === undefined ? {} : { maximum: info.max }) };
  m.addCustomSection(MEMORY_IMPORT.section, new TextEncoder().encode(JSON.stringify(limits)));
}

/**
 * Drops the argument the log-execution pass gives each of its calls of `tick`: a number counted across every module
 * this process instrumented, so the same module instrumented twice (a reload that did not touch it) came out with
 * other bytes, a new bundle hash, and its app's plane containers were replaced. binaryen's dead argument elimination
 * removes a parameter a function never reads, and every call's argument for it; every other function is exported
 * meanwhile, so it keeps its signature and its callers their arguments.
 */
function withoutIds(binaryen: typeof import("binaryen").default, m: import("binaryen").default.Module, tick: string): void {
  const held: string[] = [];
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const f = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
    if (f.base || f.name === tick) continue; // an import keeps its signature anyway
    const name = `__tandem_keep_${held.length}`;
    m.addFunctionExport(f.name, name);
    held.push(name);
  }
  m.runPasses(["dae"]);
  for (const name of held) m.removeExport(name);
}

/**
 * Adds the host's tick to every loop header and function exit of `bytes`, and makes its memory one the host
 * gives (`importMemory`); see the file's comment.
 */
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
    importMemory(binaryen, m);
    if (!internal) return new Uint8Array(m.emitBinary()); // no loops, no functions: nothing to bound
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
    withoutIds(binaryen, m, internal);
    if (!m.validate()) throw new WasmPrepareError("instrumenting the module produced an invalid module");
    return new Uint8Array(m.emitBinary());
  } finally {
    m.dispose();
  }
}
