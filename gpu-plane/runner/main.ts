/**
 * The container entrypoint. Bundled with the user's app file into one module
 * (the plane bundle), it connects to the control socket, loads the app, says
 * it is ready, then runs the inputs the plane sends until it stops it. A
 * generator function's input streams: each yielded value goes out as a chunk,
 * and the next is pulled only when the plane asks for it (`next`), so a slow
 * reader slows the generator; `cancel` stops it. What the function writes to
 * process.stdout and process.stderr goes to the plane as `log` frames tagged
 * with its call (output-capture.ts); what else reaches the container's stdout
 * and stderr (child processes, native code) the plane reads and tags there.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { Console } from "node:console";
import http from "node:http";
import net from "node:net";
import { ClassInstances, loadAppModule, type FunctionHandle } from "../../sdk/app.js";
import { chunkIterator, isGeneratorResult } from "../../sdk/generator-result.js";
import { installCallContextStore, type CallContext } from "../../sdk/context.js";
import { CancelledError, InvalidRequestError, callFailure, remoteErrorFrom, stoppedReading, toWireError } from "../../sdk/errors.js";
import {
  CONTAINER_ENV,
  PLANE_RUNTIME_CODE_KEY,
  cutLogLine,
  decodeValue,
  encodeValue,
  type EncodedValue,
  type InputFrame,
  type PlaneFrame,
  type RunnerFrame,
  type UncaughtFrame,
} from "../../sdk/protocol.js";
import { LineSplitter } from "../../sdk/stream-lines.js";
import { encodeChunk, encodeResult } from "../../sdk/result-value.js";
import { maskedError } from "../../sdk/secret.js";
import { writeSync } from "node:fs";
import { wasmFunction } from "../../wasm/function.js";
import { IN_CONTAINER } from "../drivers/driver.js";
import { uncaughtCause } from "../container-failure.js";
import { installPlaneApi } from "./plane-api.js";
import { OutputCapture } from "./output-capture.js";

type Failed = Extract<RunnerFrame, { status: "failed" }>["error"];

/**
 * `wasm`: the prepared module of each plane-tier WebAssembly function, by name, and `wasmFiles`: the bundled
 * directories of those that have `files` (wasm/files.ts); both travel inside the bundle.
 */
export async function runFunctions(
  appExports: Record<string, unknown>,
  wasm: Record<string, Uint8Array<ArrayBuffer>> = {},
  wasmFiles: Record<string, Uint8Array<ArrayBuffer>> = {},
): Promise<void> {
  // What the plane told this container (sdk/protocol.ts CONTAINER_ENV), read once.
  const given = process.env;
  const socketPath = given[CONTAINER_ENV.controlSocket] ?? IN_CONTAINER.controlSocket;
  const containerFunction = given[CONTAINER_ENV.function];
  const clsParams = given[CONTAINER_ENV.clsParams];
  // The values of this container's secrets: masked as *** in every line it logs and every error it sends.
  const secrets = Object.fromEntries(
    (given[CONTAINER_ENV.secretKeys] ?? "").split(",").flatMap((key) => (key && given[key] !== undefined ? [[key, given[key]] as const] : [])),
  );
  const secretValues = Object.values(secrets);
  plainConsole();
  const calls = new AsyncLocalStorage<CallContext>();
  // Every line the app's code writes, through `console.*` or to process.stdout and stderr themselves, its secret values
  // masked; once connected, each with its call on the control channel, the ones held going before any other frame.
  const capture = new OutputCapture(() => {
    const callId = calls.getStore()?.callId;
    return callId && callId !== "-" ? callId : null;
  }, secretValues);
  // What the app's code throws outside a call goes to the plane, ahead of the lines held, in place of its ready frame:
  // once the runner is connected, or when it connects.
  let tellPlane: ((frame: UncaughtFrame) => void) | undefined;
  let uncaught: UncaughtFrame | undefined;
  leaveOnUncaught(secretValues, (frame) => ((uncaught = frame), tellPlane?.(frame)));
  installPlaneApi(given); // the SDK's requests go to the plane; mounted volumes commit and reload through it
  const app = loadAppModule("app", appExports);
  const functions = new Map<string, { handler: (...args: unknown[]) => unknown; env: Record<string, string> }>(
    app.functions.map((f) => [f.name, { handler: (f as FunctionHandle<unknown[], unknown>).handler!, env: f.spec?.env ?? {} }]),
  );
  const classes = app.classes.map((c) => new ClassInstances(c));
  app.classes.forEach((c, i) => {
    for (const m of c.methods) functions.set(`${c.name}.${m}`, { handler: classes[i]!.handler(m), env: c.spec.env });
  });
  // Compiled when the container starts, then a fresh instance per input, through the same host as at the edge.
  for (const w of app.wasmFunctions) {
    const bytes = wasm[w.name];
    if (bytes) functions.set(w.name, { handler: wasmFunction(app.name, w, new WebAssembly.Module(bytes), wasmFiles[w.name]), env: w.spec.env });
  }
  installCallContextStore(calls);

  // A class's container runs enter() before it is ready, so the first input (and a warm pool) finds it loaded.
  const clsIndex = app.classes.findIndex((c) => containerFunction?.startsWith(`${c.name}.`));
  // What a class's enter() and exit() run in: the container's own, no call's (`callId` "-"), so that their lines are
  // the container's, whichever call it ran last.
  const containerContext = (): CallContext => ({
    callId: "-",
    app: app.name,
    function: containerFunction ?? "-",
    attempt: 1,
    env: clsIndex >= 0 ? app.classes[clsIndex]!.spec.env : {},
    signal: new AbortController().signal, // no call to cancel: it never aborts
  });

  // Connected before enter() runs, so that its lines go to the plane as the container's (`log` frames with no call), not
  // through the container's stdout, which the plane files under the call the container was started for.
  let socket = await connectToPlane(socketPath);
  capture.attach((text) => socket.write(text));
  tellPlane = (frame) => socket.write(capture.take() + JSON.stringify(frame) + "\n", () => process.exit(1));
  if (uncaught) return tellPlane(uncaught);
  let enterFailed: Failed | undefined;
  if (clsParams !== undefined && clsIndex >= 0) {
    await calls
      .run(containerContext(), () => classes[clsIndex]!.prepare(JSON.parse(clsParams)))
      .catch((err: unknown) => (enterFailed = toWireError(maskedError(remoteErrorFrom(err), secretValues)) as Failed)); // the plane backs off and fails the inputs with it
    // A promise enter() left to reject is reported once the microtasks run out: before the ready frame, which it replaces.
    await new Promise((resolve) => setImmediate(resolve));
    if (uncaught) return; // told already; the runner leaves
  }
  const sendFrame = (frame: RunnerFrame) => socket.write(capture.take(frame.t === "output" ? frame.callId : undefined) + JSON.stringify(frame) + "\n");
  const send = sendFrame;
  // Only a class's container has instances whose exit() hooks a stop runs; a function's stops with nothing to run.
  const exitHooks = clsIndex >= 0 && classes[clsIndex]!.hasExitHook();
  // Set by the first line of a bundle whose runtime is kept apart (gpu-plane/runtime-code.ts).
  const runtimeCode = (globalThis as Record<symbol, unknown>)[Symbol.for(PLANE_RUNTIME_CODE_KEY)];
  const ready = () =>
    send({
      t: "ready",
      pid: process.pid,
      functions: [...functions.keys()],
      exitHooks,
      ...(runtimeCode === "cached" || runtimeCode === "compiled" ? { runtimeCode } : {}),
      ...(enterFailed ? { enterFailed } : {}),
    });
  ready();

  // What each streaming input waits for between chunks: the plane's `next` (true) or `cancel` (false).
  const demand = new Map<string, (more: boolean) => void>();
  // Each input's cancel signal (`currentCall().signal`); a cancelled input is answered at once, its late result dropped.
  const cancels = new Map<string, { controller: AbortController; context: CallContext }>();
  const answered = new Set<string>();
  for (;;) {
    const snapshot = await serve(socket);
    if (!snapshot) break;
    // The plane saves this container's memory once it holds no host socket; what runs next is a container restored
    // from that snapshot (or this one, if the save failed), whose plane answers on the control socket again.
    capture.detach();
    socket = await letGoForSnapshot(socket, socketPath);
    capture.attach((text) => socket.write(text));
    ready();
  }
  process.exit(0); // the plane closed the channel: it stopped this container, or went away

  /**
   * Reads the plane's frames until it closes the channel (false) or asks for a snapshot (true). Read as `data` events,
   * not with an async iterator: a warm call's input is handled in the same turn its bytes arrive, without the promises
   * an iterator makes for each chunk (each one more for AsyncLocalStorage's hook to follow).
   */
  function serve(socket: net.Socket): Promise<boolean> {
    const lines = new LineSplitter();
    socket.setEncoding("utf8");
    return new Promise((resolve) => {
      const done = (snapshot: boolean) => {
        socket.off("data", read).off("end", closed).off("close", closed);
        resolve(snapshot);
      };
      const closed = () => done(false);
      const read = (chunk: string) => {
        for (const line of lines.push(chunk)) {
          const frame = JSON.parse(line) as PlaneFrame;
          if (frame.t === "snapshot") return done(true); // sent before any input: nothing runs now
          if (frame.t === "shutdown") {
            socket.off("data", read); // nothing after it is read: the container is stopping
            return void stop();
          }
          handle(frame);
        }
      };
      socket.on("data", read).once("end", closed).once("close", closed);
    });
  }

  /** Runs each class's `exit()` (the container is stopping), sends their lines, and leaves. */
  async function stop(): Promise<never> {
    await calls.run(containerContext(), () => Promise.all(classes.map((c) => c.exitAll())));
    capture.detach(); // exit()'s lines sent
    process.exit(0);
  }

  function handle(frame: Exclude<PlaneFrame, { t: "snapshot" | "shutdown" }>): void {
    // Inputs run side by side: the plane sends a container no more at once than the function's concurrency allows.
    if (frame.t === "input") void run(frame);
    else if (frame.t === "cancel" && !demand.has(frame.callId) && cancels.has(frame.callId)) {
      // Its reason says why, as at the edge (gateway/edge-call.ts): `signal.reason instanceof CancelledError`.
      // In the call's context: what its abort listeners print is its lines, with its call id.
      const { controller, context } = cancels.get(frame.callId)!;
      calls.run(context, () => controller.abort(new CancelledError(`call ${frame.callId} was cancelled`, { callId: frame.callId })));
      answered.add(frame.callId);
      send({ t: "output", callId: frame.callId, status: "failed", error: { code: "call_cancelled", message: `call ${frame.callId} was cancelled` } });
    } else {
      const wake = demand.get(frame.callId);
      demand.delete(frame.callId);
      wake?.(frame.t === "next");
    }
  }

  async function run(input: InputFrame): Promise<void> {
    const fn = functions.get(input.function);
    const cancel = new AbortController();
    const context: CallContext = {
      callId: input.callId,
      app: app.name,
      function: input.function,
      attempt: input.attempt,
      env: fn?.env ?? {},
      secrets,
      signal: cancel.signal,
    };
    cancels.set(input.callId, { controller: cancel, context });
    const send = (frame: RunnerFrame) => {
      if (answered.has(input.callId)) return; // cancelled: answered already
      sendFrame(frame);
    };
    const failed = (err: unknown) =>
      send({
        t: "output",
        callId: input.callId,
        status: "failed",
        error: toWireError(maskedError(callFailure(err, { callId: input.callId }), secretValues)) as Failed,
      });
    try {
      if (!fn) throw new Error(`this bundle of app "${app.name}" has no function "${input.function}"`);
      const args = decodeValue(input.args.json, input.args.meta) as unknown[];
      // A handler that returns a value, not a promise, is answered in the same turn.
      const returned = calls.run(context, () => fn.handler(...args));
      const value = isThenable(returned) ? await returned : returned;
      const iterable = isGeneratorResult(value) ? value : undefined;
      if (!input.stream) {
        if (iterable)
          throw new InvalidRequestError(`${app.name}.${input.function} is a generator function; stream it with .remoteGen() (POST .../stream)`, {
            returnedGenerator: true, // as at the edge (gateway/executor.ts)
          });
        send({ t: "output", callId: input.callId, status: "succeeded", result: encodeResult(value, `${app.name}.${input.function}`) });
        return;
      }
      if (!iterable) throw new InvalidRequestError(`${app.name}.${input.function} is not a generator function; call it with .remote() (POST .../call)`);
      const iterator = chunkIterator(iterable);
      let chunks = 0;
      for (;;) {
        const step = await calls.run(context, async () => iterator.next());
        if (step.done) break;
        if (cancel.signal.aborted) {
          // Cancelled during the step (answered then): no chunk goes, and no ask for the next comes. Returned, so its
          // `finally` runs, as when its reader goes; it held its container's slot for good before.
          await calls.run(context, async () => iterator.return?.()).catch(() => {});
          break;
        }
        let chunk: EncodedValue;
        try {
          chunk = encodeChunk(step.value, `${app.name}.${input.function}`);
        } catch (err) {
          await calls.run(context, async () => iterator.return?.()).catch(() => {}); // its `finally` runs, as when a caller stops
          throw err;
        }
        send({ t: "chunk", callId: input.callId, value: chunk });
        chunks++;
        const more = await new Promise<boolean>((resolve) => demand.set(input.callId, resolve));
        if (!more) {
          // Its reader went (the plane's `cancel` while it waited to be asked): its signal aborts, as at the edge
          // (gateway/stream.ts), then it is returned, so its `finally` runs.
          const why = new CancelledError(`call ${input.callId} was cancelled: ${stoppedReading(chunks)}`, { callId: input.callId });
          calls.run(context, () => cancel.abort(why));
          await calls.run(context, async () => iterator.return?.());
          break;
        }
      }
      send({ t: "output", callId: input.callId, status: "succeeded", result: encodeValue({ chunks }) });
    } catch (err) {
      failed(err);
    } finally {
      cancels.delete(input.callId);
      answered.delete(input.callId);
    }
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === "object" || typeof value === "function") && value !== null && typeof (value as PromiseLike<unknown>).then === "function";
}

/**
 * The control socket, connected. A runner that cannot connect says so in one
 * line and exits 1 (the plane reports the container failed, with its log).
 * Once connected, the plane going away (its end closed or reset, a frame
 * written after it left) ends the runner quietly with 0: nobody is left to
 * answer, and a stack trace in the container's log would only mislead.
 */
async function connectToPlane(path: string): Promise<net.Socket> {
  const socket = net.connect(path);
  await new Promise<void>((resolve) => {
    const failed = (err: NodeJS.ErrnoException) => {
      console.error(`tandem runner: cannot reach the plane's control socket ${path} (${err.code ?? err.message}); leaving`);
      process.exit(1);
    };
    socket.once("error", failed).once("connect", () => {
      socket.off("error", failed);
      resolve();
    });
  });
  // Registered before the input loop reads the socket, so it runs before the loop would see the error as a throw.
  socket.on("error", () => process.exit(0));
  return socket;
}

/** How long a runner that met an uncaught error waits for its report to be written before it exits anyway. */
const UNCAUGHT_SEND_MS = 1_000;

/**
 * What the app's code throws outside any call's handler (a timer, a loop a class's `enter()` started) or a promise
 * rejection nobody handled ends the container with exit code 1, as in Node, but said in the plane's words: sent as an
 * `uncaught` frame, whose stack the plane maps to the app's files for its line about the exit, instead of Node's
 * report, which quotes the bundle's minified source line (64 KiB of it). Not sent within `UNCAUGHT_SEND_MS` (the
 * runner never connected), the error, cut, goes to stderr, which the plane reads as the container's output.
 */
function leaveOnUncaught(secretValues: string[], tell: (frame: UncaughtFrame) => void): void {
  let leaving = false;
  const leave = (thrown: unknown, origin: UncaughtFrame["origin"]) => {
    if (leaving) return; // another one while the first is told: the first is why the container ends
    leaving = true;
    process.exitCode = 1;
    const { name, message, stack } = toWireError(maskedError(remoteErrorFrom(thrown), secretValues)).remote!;
    const error = { name: cutLogLine(name), message: cutLogLine(message), ...(stack ? { stack: cutLogLine(stack) } : {}) };
    setTimeout(() => {
      try {
        writeSync(2, `tandem runner: ${uncaughtCause(origin)}: ${error.stack ?? `${error.name}: ${error.message}`}\n`);
      } finally {
        process.exit(1);
      }
    }, UNCAUGHT_SEND_MS);
    tell({ t: "uncaught", origin, error });
  };
  process.on("uncaughtException", (err) => leave(err, "exception"));
  process.on("unhandledRejection", (reason) => leave(reason, "rejection"));
}

/** How often a runner that let go for a snapshot dials its control socket again, and how many times before it leaves. */
const REDIAL_MS = 10;
const REDIAL_TRIES = 6_000;

/**
 * Lets go of the plane for a memory snapshot (`SnapshotFrame`): the control connection closed and the API socket's
 * kept-alive connections dropped, since gVisor cannot save a container that holds a connected host socket. The plane
 * takes the control socket away meanwhile; the runner dials it until it is back (in the restored container, whose
 * plane opened a new one at the same place), and returns the new connection. Tries counted, not time: the clock
 * jumps when a snapshot is restored.
 */
async function letGoForSnapshot(socket: net.Socket, path: string): Promise<net.Socket> {
  http.globalAgent.destroy();
  // Closing it here is expected, not the plane going away.
  socket.removeAllListeners("error").on("error", () => {});
  await new Promise<void>((resolve) => {
    if (socket.closed) return resolve();
    socket.once("close", () => resolve()).destroy();
  });
  for (let tries = 0; tries < REDIAL_TRIES; tries++) {
    await new Promise((resolve) => setTimeout(resolve, REDIAL_MS));
    const next = await dial(path).catch(() => undefined);
    if (next) {
      next.on("error", () => process.exit(0));
      return next;
    }
  }
  console.error(`tandem runner: the plane's control socket ${path} did not come back after a snapshot; leaving`);
  process.exit(1);
}

function dial(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    socket.once("error", reject).once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
  });
}

/**
 * `console.*` without a colour check on each line: Node's console asks whether to colour every line it writes (the
 * environment's FORCE_COLOR, then the stream), 0.5 µs a line in a loop and about 10 µs in a busy container, where the
 * answer here is always no (the output is a socket or a pipe, never a terminal). FORCE_COLOR set: left as it is.
 */
function plainConsole(): void {
  if (process.env.FORCE_COLOR !== undefined) return;
  const plain = new Console({ stdout: process.stdout, stderr: process.stderr, colorMode: false });
  for (const [name, method] of Object.entries(plain)) if (typeof method === "function" && name in console) Object.assign(console, { [name]: method });
}
