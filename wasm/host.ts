/**
 * The WebAssembly host: runs a WASI (preview1) command module the same way in
 * workerd (the edge) and in Node (the plane, local tools), on wasi/
 * (@bjorn3/browser_wasi_shim, with a file system of Tandem's own). A call gets a fresh instance: arguments, an
 * environment, stdin, stdout and stderr captured (up to a limit), clocks and
 * random from the runtime, sleeps that never outlast the run's time limit
 * (wasi-calls.ts), an in-memory file system preopened at `/`, and the exit
 * code. Modules are compiled once by the caller (workerd refuses to compile
 * bytes at run time: ship them as modules) and instantiated per call.
 */
import { ConsoleStdout, Directory, File, OpenFile, PreopenDirectory, WASI, WASIProcExit, type Fd, type Inode } from "./wasi/index.js";
import { FUNCTION_DEFAULTS, WASM_DEFAULTS } from "../sdk/defaults.js";
import { wasiCalls } from "./wasi-calls.js";

/** What one run of a module may take; past any, the run fails with `WasmLimitError`. */
export interface WasmLimits {
  /** Bytes on stdout and stderr together (default 10 MiB). */
  maxOutputBytes: number;
  /** Linear memory, in 64 KiB pages (default 4096: 256 MiB). */
  maxMemoryPages: number;
  /**
   * Milliseconds of wall time (default 300 s). Checked at every tick of a
   * module instrumented by wasm/prepare.ts, and at the end of the run.
   */
  maxWallMs: number;
}

export const DEFAULT_WASM_LIMITS: WasmLimits = {
  maxOutputBytes: WASM_DEFAULTS.maxOutputBytes,
  maxMemoryPages: WASM_DEFAULTS.maxMemoryPages,
  maxWallMs: FUNCTION_DEFAULTS.timeoutSeconds * 1000,
};

/**
 * The import an instrumented module calls once per `TICK_EVERY` loop
 * iterations and function exits, so the host can stop a run that is past its
 * time or memory limit (wasm/prepare.ts adds it).
 */
export const TICK_IMPORT = { module: "tandem", name: "tick" } as const;
export const TICK_EVERY = 8192;

/**
 * The import a prepared module takes its memory from (wasm/prepare.ts), with
 * its limits (`{"initial":pages,"maximum"?:pages}`) in the custom section
 * named `section`. Each run still gets a new instance and a memory holding
 * nothing from an earlier run: the memory a run leaves, when it did not grow
 * past its initial size, is zeroed and handed to the next run of the same
 * module, which costs far less than the address-space reservation (with
 * guard pages) a new memory takes. A memory over `REUSED_MEMORY_MAX_PAGES`
 * costs more to zero than to make, and is made anew each run.
 */
export const MEMORY_IMPORT = { module: "tandem", name: "memory", section: "tandem.memory" } as const;
const REUSED_MEMORY_MAX_PAGES = 16;

export interface WasiRunOptions {
  /** argv[1..]; argv[0] is the module's name. */
  args?: string[];
  env?: Record<string, string>;
  stdin?: Uint8Array;
  /** Files in the in-memory file system, by absolute path (`/data/input.txt`), preopened at `/`. */
  files?: Record<string, Uint8Array>;
  /** More directories, each preopened at its own guest path after `/` (wasm/files.ts: a function's bundled directories, read-only). */
  preopens?: Fd[];
  limits?: Partial<WasmLimits>;
}

export interface WasiRunResult {
  exitCode: number;
  stdout: Uint8Array;
  stderr: Uint8Array;
  /** Linear memory at the end, in pages. */
  memoryPages: number;
}

/** A module that is not a WASI command, or asks for an import the host does not give. */
export class WasmModuleError extends Error {
  override name = "WasmModuleError";
}

/** A run went past one of its limits (`limit` says which). */
export class WasmLimitError extends Error {
  override name = "WasmLimitError";
  constructor(
    readonly limit: "output" | "memory" | "time",
    message: string,
  ) {
    super(message);
  }
}

/**
 * The module trapped (an unreachable, an out-of-bounds access, a stack
 * overflow). A Rust panic or a C `assert` writes why to stderr first: the
 * message ends with stderr's last lines, `stderrTail` holds them, and
 * `stderr` all the run wrote there.
 * @example
 * catch (e) { if (e instanceof WasmTrapError) console.error(e.stderrTail) } // panicked at src/main.rs:4:5: ...
 */
export class WasmTrapError extends Error {
  override name = "WasmTrapError";
  /** stderr's last lines (up to `STDERR_TAIL_LINES`), "" when it wrote none. */
  readonly stderrTail: string;
  constructor(
    message: string,
    readonly stderr: Uint8Array = new Uint8Array(),
  ) {
    const tail = stderrTail(stderr);
    super(tail ? `${message}: ${tail}` : message);
    this.stderrTail = tail;
  }
}

/**
 * The module raised a signal whose default action ends a process
 * (`proc_raise`: SIGABRT, SIGTERM, ...), and the run was stopped; `signal`
 * names it. (Raising SIGCHLD, SIGCONT, SIGURG or SIGWINCH does nothing, as in
 * a POSIX process.)
 */
export class WasmSignalError extends WasmTrapError {
  override name = "WasmSignalError";
  constructor(
    readonly signal: string,
    message: string,
    stderr?: Uint8Array,
  ) {
    super(message, stderr);
  }
}

/** How many of stderr's last lines an exit, a trap or a signal carries in its message. */
export const STDERR_TAIL_LINES = 10;

/** The last `STDERR_TAIL_LINES` lines of `stderr`, trimmed. */
export function stderrTail(stderr: Uint8Array | string): string {
  const text = typeof stderr === "string" ? stderr : new TextDecoder().decode(stderr);
  return text.trim().split("\n").slice(-STDERR_TAIL_LINES).join("\n");
}

/** Thrown through the module by `proc_raise`; runWasi turns it into WasmSignalError with stderr's tail. */
class RaisedSignal {
  constructor(
    readonly number: number,
    readonly signal: string,
  ) {}
}

const WASI_MODULE = "wasi_snapshot_preview1";
/** The WASI functions the host gives: every one the shim implements, some answered by the host itself (wasi-calls.ts). */
// `debug: false`: the shim logs every call unless told not to.
const PROVIDED = new Set(Object.keys(new WASI([], [], [], { debug: false }).wasiImport));

/**
 * Checks that `module` is a WASI command this host can run: it exports
 * `_start` and `memory`, and imports only WASI functions the host provides.
 * Throws `WasmModuleError` naming the module (`name`) and what is wrong.
 */
export function checkWasiCommand(module: WebAssembly.Module, name: string): void {
  const exports = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]));
  if (exports.get("_start") !== "function") throw new WasmModuleError(`${name} is not a WASI command: it exports no _start function`);
  if (exports.get("memory") !== "memory") throw new WasmModuleError(`${name} is not a WASI command: it exports no memory`);
  const missing: { what: string; why: string }[] = [];
  for (const i of WebAssembly.Module.imports(module)) {
    if (i.module === TICK_IMPORT.module && i.name === TICK_IMPORT.name && i.kind === "function") continue;
    if (i.module === MEMORY_IMPORT.module && i.name === MEMORY_IMPORT.name && i.kind === "memory" && memoryShape(module)) continue;
    if (i.module !== WASI_MODULE || !PROVIDED.has(i.name)) {
      // The host gives every preview1 function, so another name under wasi_snapshot_preview1 is some runtime's
      // extension (WasmEdge's sock_open): "it provides wasi_snapshot_preview1 functions only" would read as if it were one.
      const why =
        i.module === WASI_MODULE ? `${i.name} is not part of WASI preview1, but another runtime's extension` : `it provides ${WASI_MODULE} functions only`;
      missing.push({ what: `${i.module}.${i.name} (${i.kind})`, why });
    }
  }
  // Every one named at once, so a build is not fixed one import a try.
  if (missing.length === 1) throw new WasmModuleError(`${name} imports ${missing[0]!.what}, which this host does not provide (${missing[0]!.why})`);
  if (missing.length > 1) {
    const shown = missing.slice(0, 10).map((m) => `${m.what}: ${m.why}`);
    if (missing.length > 10) shown.push(`and ${missing.length - 10} more`);
    throw new WasmModuleError(`${name} imports ${missing.length} things this host does not provide: ${shown.join("; ")}`);
  }
}

/** Runs `module` once, in a fresh instance. */
export function runWasi(module: WebAssembly.Module, name: string, options: WasiRunOptions = {}): WasiRunResult {
  const limits = { ...DEFAULT_WASM_LIMITS, ...options.limits };
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  let written = 0;
  const capture = (sink: Uint8Array[]) => (bytes: Uint8Array) => {
    written += bytes.length;
    if (written > limits.maxOutputBytes)
      throw new WasmLimitError(
        "output",
        `${name} wrote more than ${limits.maxOutputBytes} bytes of output, stdout and stderr together (its maxOutputBytes option)`,
      );
    sink.push(bytes.slice());
  };
  const env = Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`);
  const stdout = new ConsoleStdout(capture(out));
  const stderr = new ConsoleStdout(capture(err));
  const wasi = new WASI(
    [name, ...(options.args ?? [])],
    env,
    [
      new OpenFile(new File(options.stdin ?? new Uint8Array())),
      stdout,
      stderr,
      new PreopenDirectory("/", fileTree(options.files ?? {})),
      ...(options.preopens ?? []),
    ],
    { debug: false },
  );
  const started = Date.now();
  /** Its memory's pages once instantiated: a module that starts past its limit did not grow past it. */
  let initialPages: number | undefined;
  const checkLimits = () => {
    // Before its instance exists (a start section runs inside `new WebAssembly.Instance`), only a memory the host gave.
    const buffer = exports?.memory.buffer ?? memory?.buffer;
    const pages = buffer ? buffer.byteLength / 65536 : 0;
    if (pages > limits.maxMemoryPages) {
      const what = pages === initialPages ? `starts with ${pages} pages of memory` : `grew its memory to ${pages} pages`;
      throw new WasmLimitError(
        "memory",
        `${name} ${what}, past its limit of ${limits.maxMemoryPages} (${formatMiB(limits.maxMemoryPages)}; its maxMemoryPages option)`,
      );
    }
    const elapsed = Date.now() - started;
    if (elapsed > limits.maxWallMs)
      throw new WasmLimitError("time", `${name} ran for ${elapsed} ms, past its limit of ${limits.maxWallMs} ms, and was stopped`);
  };
  // Calls the host answers itself (wasm/wasi-calls.ts): waits bounded by the deadline, no sockets, signals.
  const calls = wasiCalls({
    memory: () => (exports ?? notInstantiated()).memory.buffer,
    fds: wasi.fds,
    checkLimits,
    writableBytes: (fd) => (fd === stdout || fd === stderr ? limits.maxOutputBytes - written : undefined),
    sleep(ms, done) {
      if (Date.now() + ms - started > limits.maxWallMs) {
        throw new WasmLimitError("time", `${name} asked to sleep ${Math.round(ms)} ms, past its limit of ${limits.maxWallMs} ms, and was stopped`);
      }
      while (!done()) checkLimits();
    },
    raise(signal, signalName) {
      throw new RaisedSignal(signal, signalName);
    },
  });
  const imports = { ...wasi.wasiImport, ...calls };
  let exports: { memory: WebAssembly.Memory; _start: () => unknown } | undefined;
  /** A WASI call from a start section, which runs before the instance exists: the shim has no memory to answer with. */
  const notInstantiated = (): never => {
    throw new WasmModuleError(
      `${name} called WASI from its start section, before its instance existed; this host answers WASI calls from _start on (move that work into _start: AssemblyScript puts a file's top-level statements in the start section)`,
    );
  };
  const shape = memoryShape(module);
  const memory = shape ? takeMemory(shape) : undefined;
  const tandem = { [TICK_IMPORT.name]: checkLimits, ...(memory ? { [MEMORY_IMPORT.name]: memory } : {}) };
  try {
    let exitCode: number;
    try {
      // A start section runs in here: its traps, limits and WASI calls are the call's, as _start's are.
      const instance = new WebAssembly.Instance(module, { [WASI_MODULE]: imports, [TICK_IMPORT.module]: tandem });
      exports = instance.exports as NonNullable<typeof exports>;
      initialPages = exports.memory.buffer.byteLength / 65536;
      checkLimits(); // one that starts past its memory limit runs no _start
      exitCode = wasi.start({ exports });
    } catch (thrown) {
      if (thrown instanceof WasmLimitError || thrown instanceof WasmModuleError) throw thrown;
      if (exports === undefined && thrown instanceof TypeError) notInstantiated(); // the shim's own calls read its instance
      if (thrown instanceof WASIProcExit) exitCode = thrown.code;
      else if (thrown instanceof RaisedSignal) {
        throw new WasmSignalError(thrown.signal, `${name} raised ${thrown.signal} (signal ${thrown.number}) and was stopped`, concat(err));
      } else if (thrown instanceof WebAssembly.RuntimeError || thrown instanceof RangeError) {
        checkLimits(); // a trap because memory could not grow is the memory limit
        throw new WasmTrapError(`${name} trapped: ${thrown.message}`, concat(err));
      } else throw thrown;
    }
    checkLimits();
    return { exitCode, stdout: concat(out), stderr: concat(err), memoryPages: exports!.memory.buffer.byteLength / 65536 };
  } finally {
    if (shape && memory) giveBack(shape, memory);
  }
}

/** A prepared module's memory limits, and the zeroed memory its next run takes. */
interface MemoryShape {
  initial: number;
  maximum?: number;
  spare?: WebAssembly.Memory;
}

/** Per compiled module: its memory's shape, or null when it does not import its memory from the host. */
const memoryShapes = new WeakMap<WebAssembly.Module, MemoryShape | null>();

function memoryShape(module: WebAssembly.Module): MemoryShape | null {
  let shape = memoryShapes.get(module);
  if (shape === undefined) {
    shape = null;
    const [section] = WebAssembly.Module.customSections(module, MEMORY_IMPORT.section);
    if (section) {
      try {
        const { initial, maximum } = JSON.parse(new TextDecoder().decode(section)) as { initial: unknown; maximum?: unknown };
        const pages = (n: unknown) => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 65536;
        if (pages(initial) && (maximum === undefined || pages(maximum))) {
          shape = { initial: initial as number, ...(maximum === undefined ? {} : { maximum: maximum as number }) };
        }
      } catch {
        // Not JSON: the module is refused as importing what the host does not give.
      }
    }
    memoryShapes.set(module, shape);
  }
  return shape;
}

/** The memory for one run: the one the last run left, zeroed, or a new one. */
function takeMemory(shape: MemoryShape): WebAssembly.Memory {
  const spare = shape.spare;
  shape.spare = undefined; // a run inside this one (none today) would get its own
  return spare ?? new WebAssembly.Memory({ initial: shape.initial, ...(shape.maximum === undefined ? {} : { maximum: shape.maximum }) });
}

/** Keeps a run's memory for the next run, zeroed at once (nothing a run wrote outlives it), unless it grew or is large. */
function giveBack(shape: MemoryShape, memory: WebAssembly.Memory): void {
  if (shape.initial > REUSED_MEMORY_MAX_PAGES || memory.buffer.byteLength !== shape.initial * 65536) return;
  new Uint8Array(memory.buffer).fill(0);
  shape.spare = memory;
}

const formatMiB = (pages: number) => `${(pages * 64) / 1024} MiB`;

function fileTree(files: Record<string, Uint8Array>): Map<string, Inode> {
  const root = new Map<string, Inode>();
  for (const [path, data] of Object.entries(files)) {
    const parts = path.split("/").filter(Boolean);
    let dir = root;
    for (const part of parts.slice(0, -1)) {
      let next = dir.get(part);
      if (!(next instanceof Directory)) {
        next = new Directory(new Map());
        dir.set(part, next);
      }
      dir = (next as Directory).contents;
    }
    dir.set(parts[parts.length - 1]!, new File(data));
  }
  return root;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}
