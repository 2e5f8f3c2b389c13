/**
 * A FAKE container runtime, for fast unit tests of the plane's scheduling
 * logic (gpu-plane/dispatcher.test.ts) and nothing else. Its "containers" are
 * not containers: no image, no process, no sandbox, no limits. Each is a small
 * state machine in the test's own process that connects to the control
 * socket and speaks the runner's frames (as gpu-plane/runner/main.ts does)
 * with handlers the test supplies, and that a test can make crash, be
 * OOM-killed, hang or write garbage. A test that passes on it shows what the
 * dispatcher decides, never that a feature works: the real runner in real
 * Docker containers (test/plane*.test.ts, drivers/docker.test.ts) stays the
 * proof. No plane ever runs it.
 */
import net from "node:net";
import { join } from "node:path";
import { chunkIterator, isGeneratorResult } from "../../sdk/generator-result.js";
import { remoteErrorFrom, toWireError } from "../../sdk/errors.js";
import { decodeValue, encodeValue, type ImageBuildSpec, type InputFrame, type PlaneFrame, type RunnerFrame } from "../../sdk/protocol.js";
import type { ContainerDriver, ContainerSpec, ExitInfo, StartedContainer } from "./driver.js";

type Failed = Extract<RunnerFrame, { status: "failed" }>["error"];

/**
 * A function as a fake container runs it: its arguments decoded, what it
 * returns encoded; for a streamed input, an (async) iterable's values go out
 * as chunks, one per `next`. Throwing fails the input as the function's error.
 */
export type MemoryFunction = (args: unknown[], call: MemoryCall) => unknown;

/** What a {@link MemoryFunction} is given besides its arguments. */
export interface MemoryCall {
  callId: string;
  /** The fake container running it: to log from, or to make fail. */
  container: MemoryContainer;
  /** Aborted when the plane cancels the input, or the container ends. */
  signal: AbortSignal;
}

/** How one fake container starts; by default it connects at once and says it is ready. */
export interface MemoryStartup {
  /** Milliseconds before it connects: a slow cold start. */
  delayMs?: number;
  /** Lines it writes (on stdout) before it connects. */
  logs?: string[];
  /** Exits with this code instead of connecting: a crash while loading. */
  exitCode?: number;
  /** Never connects: a start that hangs. */
  hang?: boolean;
  /** Says it has `exit()` hooks (a class's container whose class has one), which take this many ms when it is shut down. */
  exitHooksMs?: number;
  /** Says ready with this error, as a class whose `enter()` threw does. */
  enterFailed?: Extract<RunnerFrame, { t: "ready" }>["enterFailed"];
}

/** What a {@link MemoryDriver} runs. */
export interface MemoryDriverOptions {
  /** The app's functions by name (`"f"`, or `"Model.generate"` for a class method). */
  functions: Record<string, MemoryFunction>;
  /** How each container starts, asked per container (`index` counts from 0), so a test can make only the second one fail. */
  startup?: (spec: ContainerSpec, index: number) => MemoryStartup;
}

/**
 * A fake driver whose containers run in-process. For unit tests of scheduling only.
 * @example
 * const driver = new MemoryDriver({ functions: { double: ([x]) => (x as number) * 2 } });
 * const dispatcher = new Dispatcher({ driver, ... });
 * await dispatcher.run(request, bundle); // { status: "succeeded", result: 4, … }
 * driver.started[0]!.crash(3); // the next input there fails with ContainerFailedError (reason "crashed")
 */
export class MemoryDriver implements ContainerDriver {
  readonly name = "memory";
  readonly sandboxed = false;
  readonly pausable = true;
  /** The functions its containers run; a test may change them between calls. */
  readonly functions: Record<string, MemoryFunction>;
  /** Every container it started, in order. */
  readonly started: MemoryContainer[] = [];
  /** The image hashes it was asked to build, in order. */
  readonly builds: string[] = [];
  readonly #startup: (spec: ContainerSpec, index: number) => MemoryStartup;

  constructor(options: MemoryDriverOptions) {
    this.functions = options.functions;
    this.#startup = options.startup ?? (() => ({}));
  }

  async prepare(): Promise<void> {}

  async start(spec: ContainerSpec): Promise<StartedContainer> {
    const container = new MemoryContainer(spec, this.#startup(spec, this.started.length), this.functions);
    this.started.push(container);
    return container;
  }

  async cleanup(): Promise<void> {}

  /** Builds nothing: answers a tag made from the hash. */
  async buildImage(_spec: ImageBuildSpec, hash: string): Promise<string> {
    this.builds.push(hash);
    return `tandem-memory:${hash.slice(0, 12)}`;
  }
}

/**
 * One fake container: the runner's side of the control channel, in-process.
 * @example
 * container.log("loading weights");
 * container.oom(); // exited: { code: 137, oomKilled: true }
 */
export class MemoryContainer implements StartedContainer {
  readonly id: string;
  readonly runtimeId: string;
  /** What the plane asked the driver to start. */
  readonly spec: ContainerSpec;
  readonly exited: Promise<ExitInfo>;
  /** Every frame the plane sent it, in order. */
  readonly frames: PlaneFrame[] = [];
  readonly #functions: Record<string, MemoryFunction>;
  readonly #listeners: ((stream: "stdout" | "stderr", line: string) => void)[] = [];
  /** Lines written before anyone listened, delivered to the first listener (as the real drivers do). */
  readonly #early: ["stdout" | "stderr", string][] = [];
  /** What each streaming input waits for between chunks: `next` (true) or `cancel` (false). */
  readonly #demand = new Map<string, (more: boolean) => void>();
  readonly #cancels = new Map<string, AbortController>();
  readonly #answered = new Set<string>();
  #resolveExit!: (exit: ExitInfo) => void;
  #exit: ExitInfo | undefined;
  #socket: net.Socket | undefined;
  #paused = false;
  readonly #exitHooksMs: number | undefined;
  /** It was shut down and ran its (pretended) `exit()` hooks. */
  exitHooksRan = false;

  constructor(spec: ContainerSpec, startup: MemoryStartup, functions: Record<string, MemoryFunction>) {
    this.id = spec.id;
    this.#exitHooksMs = startup.exitHooksMs;
    this.runtimeId = `memory-${spec.id}`;
    this.spec = spec;
    this.#functions = functions;
    this.exited = new Promise((resolve) => (this.#resolveExit = resolve));
    void this.#boot(startup);
  }

  /** How it ended; undefined while it runs. */
  get exit(): ExitInfo | undefined {
    return this.#exit;
  }

  onOutput(listener: (stream: "stdout" | "stderr", line: string) => void): void {
    this.#listeners.push(listener);
    for (const [stream, line] of this.#early.splice(0)) listener(stream, line);
  }

  /** Whether it is paused: it reads no frame until it is resumed. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Stops reading the control socket, as a frozen runner would. */
  async pause(): Promise<void> {
    this.#paused = true;
    this.#socket?.pause();
  }

  async resume(): Promise<void> {
    this.#paused = false;
    this.#socket?.resume();
  }

  /** Writes a line of output, as a function's `console.log` would. */
  log(line: string, stream: "stdout" | "stderr" = "stdout"): void {
    if (this.#listeners.length) for (const l of this.#listeners) l(stream, line);
    else this.#early.push([stream, line]);
  }

  /** Exits with `code`, as a process that crashed. */
  crash(code = 1): void {
    this.#end({ code, oomKilled: false });
  }

  /** Is killed by the kernel's OOM killer, as Docker reports it. */
  oom(): void {
    this.#end({ code: 137, oomKilled: true });
  }

  /** Writes a line that is not a control frame on the control socket. */
  garbage(text = "this is not a frame"): void {
    if (!this.#exit) this.#socket?.write(text + "\n");
  }

  /** Stops at once, as `docker kill` does (exit code 137). Safe to call twice. */
  async kill(): Promise<void> {
    this.#end({ code: 137, oomKilled: false });
    await this.exited;
  }

  #end(exit: ExitInfo): void {
    if (this.#exit) return;
    this.#exit = exit;
    this.#socket?.destroy();
    for (const cancel of this.#cancels.values()) cancel.abort();
    this.#resolveExit(exit);
  }

  #send(frame: RunnerFrame): void {
    if (!this.#exit) this.#socket?.write(JSON.stringify(frame) + "\n");
  }

  async #boot(startup: MemoryStartup): Promise<void> {
    for (const line of startup.logs ?? []) this.log(line);
    if (startup.delayMs) await new Promise((resolve) => setTimeout(resolve, startup.delayMs));
    if (this.#exit) return; // killed while starting
    if (startup.exitCode !== undefined) return this.crash(startup.exitCode);
    if (startup.hang) return;
    const socket = net.connect(join(this.spec.controlDir, "control.sock"));
    this.#socket = socket;
    if (this.#paused) socket.pause();
    socket.setEncoding("utf8");
    socket.once("connect", () => {
      this.#send({
        t: "ready",
        pid: process.pid,
        functions: Object.keys(this.#functions),
        exitHooks: startup.exitHooksMs !== undefined,
        ...(startup.enterFailed ? { enterFailed: startup.enterFailed } : {}),
      });
    });
    // As the runner: an unusable socket is a crash, the plane closing it is the end.
    socket.on("error", () => this.crash(1));
    socket.on("close", () => this.#end({ code: 0, oomKilled: false }));
    let buffered = "";
    socket.on("data", (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const frame = JSON.parse(buffered.slice(0, newline)) as PlaneFrame;
        buffered = buffered.slice(newline + 1);
        this.frames.push(frame);
        this.#frame(frame);
      }
    });
  }

  #frame(frame: PlaneFrame): void {
    if (frame.t === "input") void this.#run(frame);
    else if (frame.t === "shutdown") {
      this.exitHooksRan = this.#exitHooksMs !== undefined;
      if (this.#exitHooksMs) setTimeout(() => this.#end({ code: 0, oomKilled: false }), this.#exitHooksMs);
      else this.#end({ code: 0, oomKilled: false });
    } else if (frame.t === "snapshot")
      return; // this fake takes no snapshots (no `checkpoint`), so is never asked for one
    else if (frame.t === "cancel" && !this.#demand.has(frame.callId) && this.#cancels.has(frame.callId)) {
      this.#cancels.get(frame.callId)!.abort();
      this.#answered.add(frame.callId);
      this.#send({ t: "output", callId: frame.callId, status: "failed", error: { code: "call_cancelled", message: `call ${frame.callId} was cancelled` } });
    } else {
      const wake = this.#demand.get(frame.callId);
      this.#demand.delete(frame.callId);
      wake?.(frame.t === "next");
    }
  }

  async #run(input: InputFrame): Promise<void> {
    const fn = this.#functions[input.function];
    const cancel = new AbortController();
    this.#cancels.set(input.callId, cancel);
    const send = (frame: RunnerFrame) => {
      if (!this.#answered.has(input.callId)) this.#send(frame); // cancelled: answered already
    };
    try {
      if (!fn) throw new Error(`the memory driver has no function "${input.function}"`);
      const value = await fn(decodeValue(input.args.json, input.args.meta) as unknown[], { callId: input.callId, container: this, signal: cancel.signal });
      if (!input.stream) {
        send({ t: "output", callId: input.callId, status: "succeeded", result: encodeValue(value) });
        return;
      }
      if (!isGeneratorResult(value)) throw new Error(`${input.function} is not a generator function`);
      const iterator = chunkIterator(value);
      let chunks = 0;
      for (;;) {
        const step = await iterator.next();
        if (step.done) break;
        send({ t: "chunk", callId: input.callId, value: encodeValue(step.value) });
        chunks++;
        const more = await new Promise<boolean>((resolve) => this.#demand.set(input.callId, resolve));
        if (!more) {
          await iterator.return?.();
          break;
        }
      }
      send({ t: "output", callId: input.callId, status: "succeeded", result: encodeValue({ chunks }) });
    } catch (err) {
      send({ t: "output", callId: input.callId, status: "failed", error: toWireError(remoteErrorFrom(err)) as Failed });
    } finally {
      this.#cancels.delete(input.callId);
      this.#answered.delete(input.callId);
    }
  }
}
