/**
 * The plane's end of one container's control channel: a unix socket in a
 * folder mounted into the container. One runner connects; frames are
 * newline-delimited JSON checked against the protocol. Anything else (bytes
 * that are not a frame, a second connection, an oversized line) is a
 * protocol error, reported once so the plane can kill the container.
 */
import { chmod, mkdir, rm } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { TIMED_OUT, raceDeadline } from "../sdk/deadline.js";
import { PLANE_DEFAULTS } from "../sdk/defaults.js";
import { RunnerFrameSchema, type InputFrame, type LogFrame, type PlaneFrame, type RunnerFrame, type UncaughtFrame } from "../sdk/protocol.js";
import { LineSplitter } from "../sdk/stream-lines.js";

/** How a log frame as the runner writes it begins (`JSON.stringify` of a `LogFrame`). */
const LOG_FRAME_START = '{"t":"log",';

/** How many of a container's last calls its late lines may still name (`ControlChannel`'s log frames). */
const RECENT_CALLS = 64;

export type Ready = Extract<RunnerFrame, { t: "ready" }>;
type Output = Extract<RunnerFrame, { t: "output" }>;
export type Chunk = Extract<RunnerFrame, { t: "chunk" }>;

export class ControlChannel {
  readonly dir: string;
  readonly #server: net.Server;
  #socket: net.Socket | undefined;
  #ready!: (frame: Ready) => void;
  /** Inputs in flight, by call id: a container may run several at once (`concurrency.maxInputs`). */
  readonly #pending = new Map<string, { fn: string; resolve: (o: Output) => void; reject: (e: Error) => void; onChunk?: (c: Chunk) => void }>();
  /** Unset until the plane listens: a runner may connect and log (a class's enter()) before its container's start returns. */
  #onLog: ((frame: LogFrame, functions: (string | undefined)[], readAt: number) => void) | undefined;
  /** The calls this container ran last (`RECENT_CALLS` of them), with their functions: a line written late by one of them keeps its call. */
  readonly #recent = new Map<string, string>();
  /** Log frames read and not yet handed on: as read (their parse waits too), or parsed; each with when it was read. */
  #logs: { frame: string | LogFrame; readAt: number }[] = [];
  #failure: Error | undefined;
  #onProtocolError: (message: string) => void = () => {};
  #onUncaught: ((frame: UncaughtFrame) => void) | undefined;
  /** An uncaught frame read before the plane listened for one: handed to it when it does. */
  #uncaught: UncaughtFrame | undefined;
  /** Settles when the runner says it is ready. */
  readonly ready: Promise<Ready>;

  private constructor(dir: string) {
    this.dir = dir;
    this.ready = new Promise((resolve) => (this.#ready = resolve));
    this.#server = net.createServer((socket) => this.#accept(socket));
  }

  /** Listens on `<dir>/control.sock`, which the container's non-root user may connect to (the folder stays the plane's). */
  static async open(dir: string): Promise<ControlChannel> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o755);
    const channel = new ControlChannel(dir);
    const path = join(dir, "control.sock");
    await new Promise<void>((resolve, reject) => channel.#server.once("error", reject).listen(path, () => resolve()));
    await chmod(path, 0o666);
    return channel;
  }

  /** Called once, with what went wrong, when the runner breaks the protocol. */
  onProtocolError(listener: (message: string) => void): void {
    this.#onProtocolError = listener;
  }

  /** Called with the runner's report of what the app's code threw outside a call; the container exits next. */
  onUncaught(listener: (frame: UncaughtFrame) => void): void {
    this.#onUncaught = listener;
    if (this.#uncaught) listener(this.#uncaught);
  }

  /**
   * Called with each `log` frame (the lines the function wrote, each with its call) and the function of each line's
   * call (undefined: a line of no call this container runs or ran lately), in the order the runner sent them. A call's
   * lines come before its output; they are read and handed on just after the frames read with them, so the output of
   * a call that logged goes back first.
   */
  onLog(listener: (frame: LogFrame, functions: (string | undefined)[], readAt: number) => void): void {
    this.#onLog = listener;
    if (this.#logs.length > 0) setImmediate(() => this.#handOnLogs()); // those read before it listened
  }

  /**
   * Sends one input and waits for its output. For a streaming input
   * (`input.stream`), each chunk goes to `onChunk`, and the runner yields the
   * next only after `next()`.
   */
  run(input: InputFrame, onChunk?: (chunk: Chunk) => void): Promise<Output> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (!this.#socket) return Promise.reject(new Error("the runner is not connected"));
    if (this.#pending.has(input.callId)) return Promise.reject(new Error(`${input.callId} is already running here`));
    return new Promise<Output>((resolve, reject) => {
      this.#pending.set(input.callId, { fn: input.function, resolve, reject, ...(onChunk ? { onChunk } : {}) });
      this.#send(input);
    });
  }

  /** Whether `callId`'s input was sent here and has not been answered yet. */
  running(callId: string): boolean {
    return this.#pending.has(callId);
  }

  /** Asks a streaming input for its next chunk. */
  next(callId: string): void {
    this.#send({ t: "next", callId });
  }

  /** Asks the runner to run its classes' `exit()` hooks and leave. */
  shutdown(): void {
    this.#send({ t: "shutdown" });
  }

  /**
   * Asks the runner to let go of its plane for a memory snapshot (`SnapshotFrame`), and waits until it has closed its
   * connection: true then, false if it has not within `ms`.
   */
  async letGo(ms: number): Promise<boolean> {
    const socket = this.#socket;
    if (!socket || this.#failure) return false;
    const closed = new Promise<void>((resolve) => (socket.closed ? resolve() : socket.once("close", () => resolve())));
    // No new connection from now: the runner dials again as soon as it has let go, and its next connection must be
    // the restored container's, not one to this socket before the plane saves it.
    this.#server.close();
    await rm(join(this.dir, "control.sock"), { force: true });
    this.#send({ t: "snapshot" });
    return (await raceDeadline(closed, Date.now() + ms)) !== TIMED_OUT;
  }

  /** Stops a streaming input: the runner returns its generator and ends the input. */
  cancel(callId: string): void {
    this.#send({ t: "cancel", callId });
  }

  #send(frame: PlaneFrame): void {
    if (!this.#failure) this.#socket?.write(JSON.stringify(frame) + "\n");
  }

  /** Fails every input in flight (the container died). */
  abort(error: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(error);
  }

  async close(): Promise<void> {
    this.#socket?.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }

  #accept(socket: net.Socket): void {
    if (this.#socket) {
      socket.destroy();
      return this.#fail("a second connection on the control socket");
    }
    this.#socket = socket;
    const lines = new LineSplitter();
    const max = PLANE_DEFAULTS.maxControlFrameBytes;
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      const complete = lines.push(chunk);
      if (lines.pendingLength > max) return this.#fail(`a frame over ${max} bytes`);
      for (const line of complete) {
        // A log frame as the runner writes it is parsed when it is handed on, after the answer of a call that came
        // with it: a call that logged is answered as soon as one that did not.
        if (line.startsWith(LOG_FRAME_START)) {
          this.#log(line);
          continue;
        }
        try {
          this.#frame(line);
        } catch (err) {
          this.#fail(`a frame the plane could not handle: ${(err as Error).message}`);
        }
        if (this.#failure) return;
      }
    });
    socket.on("error", () => {});
  }

  #frame(line: string): void {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      return this.#fail(`bytes that are not a frame: ${JSON.stringify(line.slice(0, 80))}`);
    }
    const parsed = RunnerFrameSchema.safeParse(json);
    if (!parsed.success) return this.#fail(`a frame of the wrong shape: ${JSON.stringify(line.slice(0, 80))}`);
    const frame = parsed.data;
    if (frame.t === "ready") return this.#ready(frame);
    if (frame.t === "log") return this.#log(frame);
    if (frame.t === "uncaught") return this.#onUncaught ? this.#onUncaught(frame) : void (this.#uncaught = frame);
    const pending = this.#pending.get(frame.callId);
    if (frame.t === "chunk") {
      if (!pending?.onChunk) return this.#fail(`a chunk for ${frame.callId} with no stream in flight`);
      return pending.onChunk(frame);
    }
    if (!pending) return this.#fail(`an output for ${frame.callId} with no input in flight`);
    this.#pending.delete(frame.callId);
    this.#recent.set(frame.callId, pending.fn);
    if (this.#recent.size > RECENT_CALLS) this.#recent.delete(this.#recent.keys().next().value!);
    pending.resolve(frame);
  }

  /** Keeps a log frame (its line as read, or parsed) to hand on after the frames read with it. */
  #log(frame: string | LogFrame): void {
    // Its lines' time is when they were read, before the output read with them: handed on after it, they would be
    // later than the gateway's line about how the call ended.
    if (this.#logs.push({ frame, readAt: Date.now() }) > 1 || !this.#onLog) return;
    setImmediate(() => this.#handOnLogs());
  }

  #handOnLogs(): void {
    const logs = this.#logs;
    this.#logs = [];
    for (const { frame, readAt } of logs) {
      const parsed = typeof frame === "string" ? this.#parseLog(frame) : frame;
      if (parsed) this.#handOn(parsed, readAt);
    }
  }

  /** A log frame read as text, parsed and checked as `#frame` checks the others (a protocol error if it is none). */
  #parseLog(line: string): LogFrame | undefined {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      this.#fail(`bytes that are not a frame: ${JSON.stringify(line.slice(0, 80))}`);
      return undefined;
    }
    const parsed = RunnerFrameSchema.safeParse(json);
    if (parsed.success && parsed.data.t === "log") return parsed.data;
    this.#fail(`a frame of the wrong shape: ${JSON.stringify(line.slice(0, 80))}`);
    return undefined;
  }

  #handOn(frame: LogFrame, readAt: number): void {
    // A line tagged with a call this container never ran is its own (a container could claim another call's id): it
    // is kept as written outside any call.
    const fnOf = (callId: string) => this.#pending.get(callId)?.fn ?? this.#recent.get(callId);
    if (frame.lines.some((line) => line.callId !== null && fnOf(line.callId) === undefined))
      frame = { ...frame, lines: frame.lines.map((line) => (line.callId === null || fnOf(line.callId) !== undefined ? line : { ...line, callId: null })) };
    this.#onLog!(
      frame,
      frame.lines.map((line) => (line.callId === null ? undefined : fnOf(line.callId))),
      readAt,
    );
  }

  #fail(message: string): void {
    if (this.#failure) return;
    this.#failure = new Error(message);
    this.#socket?.destroy();
    this.abort(this.#failure);
    this.#onProtocolError(message);
  }
}
