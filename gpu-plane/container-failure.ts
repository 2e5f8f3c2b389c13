/**
 * How a container's failure reaches the caller: each way it can end a call (an
 * exit, an OOM kill, a kill, bytes that are not a frame, a call or a start past its
 * timeout) becomes the typed error that says which, with the last lines of
 * the container's log; and the plane's line about a container that exited on
 * its own, with the error its app's code threw outside a call. Kept in one
 * place so every path that ends a call words the same failure the same way.
 */
import { ContainerFailedError, LOG_TAIL_MARK, ProtocolError, functionTimeout, type FunctionTimeoutError } from "../sdk/errors.js";
import { cutLogLine, type PlaneRunRequest, type UncaughtFrame } from "../sdk/protocol.js";
import type { Worker } from "./container-pool.js";
import type { ExitInfo } from "./drivers/driver.js";
import type { PoolDescriptor } from "./pool-descriptor.js";

/** How many of a container's last log lines its errors carry. */
export const LOG_TAIL_LINES = 20;

/**
 * Adds a line to a container's log tail, dropping the oldest past
 * {@link LOG_TAIL_LINES}.
 * @example
 * container.onOutput((_stream, line) => keepLogLine(worker.logTail, line));
 */
export function keepLogLine(tail: string[], line: string): void {
  tail.push(line);
  if (tail.length > LOG_TAIL_LINES) tail.shift();
}

/**
 * A message as one log line, at most 400 characters: an engine's error (gVisor's carry its whole Go stack trace after
 * the first line), or a call's failure (its container's last log lines follow the first).
 */
export function firstLine(message: string): string {
  const line = message.split("\n", 1)[0]!;
  return line.length > 400 ? `${line.slice(0, 400)}…` : line;
}

/**
 * A container that exited under a call: `oom` (only when the runtime says the
 * OOM killer ended it), `killed` (by a signal: the plane's, or one from
 * outside such as `docker kill`, named in `details.signal` when known) or
 * `crashed` (with its exit code), `when` saying what it was doing.
 * @example
 * throw exitFailure(worker, await worker.container.exited, "during the call");
 * // ContainerFailedError: app.f container ctr-1a2b3c4d crashed with exit code 3 during the call; last log lines: …
 */
export function exitFailure(worker: Worker, exit: ExitInfo, when: string): ContainerFailedError {
  // A container stopped for a cancel ended as asked: its last lines, maybe another call's, do not explain it.
  const tail = worker.stoppedForCancel ? [] : worker.logTail.slice();
  const { reason, what } = howItEnded(worker, exit);
  // The runner's report of what the app threw outside a call, its first line: the exit line has the stack.
  const uncaught =
    reason === "crashed" && worker.uncaught ? `, after ${uncaughtCause(worker.uncaught.origin)} (${uncaughtError(worker.uncaught).split("\n")[0]})` : "";
  const lastLines = tail.length ? `${LOG_TAIL_MARK}${tail.slice(-5).join("\n")}` : "";
  return new ContainerFailedError(`${worker.label} container ${worker.id} ${what} ${when}${uncaught}${lastLines}`, {
    reason,
    exitCode: exit.code,
    ...(exit.signal ? { signal: exit.signal } : {}),
    containerId: worker.id,
    logTail: tail,
  });
}

/**
 * The plane's line about a container that exited when the plane was not stopping it, idle or under calls: which, its
 * function, how it ended (and, after an uncaught error, that error with `stack`, its stack mapped to the app's files,
 * or its name and message), and what follows. Cut at `LOG_LIMITS.maxLineChars`.
 * @example
 * exitLine(worker, exit, 0, "TypeError: lost\n    at loop (app.ts:9:11)");
 * // "app.Model.predict container ctr-1a2b3c4d crashed with exit code 1 after an uncaught error in code outside a call; the next call starts a new container:\nTypeError: lost\n    at loop (app.ts:9:11)"
 */
export function exitLine(worker: Worker, exit: ExitInfo, inFlight: number, stack?: string): string {
  const { reason, what } = howItEnded(worker, exit);
  const uncaught = reason === "crashed" ? worker.uncaught : undefined;
  const calls = inFlight === 0 ? "" : inFlight === 1 ? "the call it was running fails, and " : `the ${inFlight} calls it was running fail, and `;
  const line = `${worker.label} container ${worker.id} ${what}${uncaught ? ` after ${uncaughtCause(uncaught.origin)}` : ""}; ${calls}the next call starts a new container`;
  return cutLogLine(uncaught ? `${line}:\n${stack ?? uncaughtError(uncaught)}` : line);
}

/**
 * How a runner's `uncaught` report names its cause.
 * @example uncaughtCause("rejection"); // "a promise rejection nobody handled"
 */
export function uncaughtCause(origin: UncaughtFrame["origin"]): string {
  return origin === "exception" ? "an uncaught error in code outside a call" : "a promise rejection nobody handled";
}

/** An uncaught error's name and message, as its stack's first line says them. */
function uncaughtError(uncaught: UncaughtFrame): string {
  return `${uncaught.error.name}: ${uncaught.error.message}`;
}

/** Why a container exited (`oom`, `killed`, `crashed`), and that said as a verb phrase. */
function howItEnded(worker: Worker, exit: ExitInfo): { reason: "oom" | "killed" | "crashed"; what: string } {
  // Never guessed from the exit code: 137 is any SIGKILL, and `docker kill` is not a lack of memory.
  // A container the plane was stopping (scale-down, eviction, the app stopped, the plane shutting down) did not crash,
  // whatever its exit: its runner leaves with 0 when the plane closes its channel.
  const reason = exit.oomKilled ? "oom" : worker.stopping || exit.signal !== undefined || exit.code === 137 || exit.code === null ? "killed" : "crashed";
  const how = exit.signal ? ` (${exit.signal})` : exit.code !== null && exit.code !== 137 ? ` (exit code ${exit.code})` : "";
  const what =
    reason === "oom"
      ? `ran out of memory (limit ${worker.reservation.memoryMiB} MiB)`
      : reason === "crashed"
        ? exit.code === 0
          ? "exited with code 0 (the app's code ended its process, as process.exit() does)" // no crash, but no answer either
          : `crashed with exit code ${exit.code}`
        : worker.stopping
          ? worker.stoppingWhy
            ? `was stopped by the plane ${worker.stoppingWhy}` // the exit code is the runner's leaving as asked: no news
            : `was stopped by the plane${how}`
          : `was killed${exit.signal ? ` (${exit.signal})` : ""}`;
  return { reason, what };
}

/**
 * A container that wrote something that is not a control frame (and was killed for it).
 * @example
 * if (worker.protocolError) throw protocolFailure(worker);
 */
export function protocolFailure(worker: Worker): ProtocolError {
  return new ProtocolError(`${worker.label} container ${worker.id} wrote something that is not a control frame (${worker.protocolError}); it was killed`, {
    logTail: worker.logTail.slice(),
  });
}

/**
 * An input that ran past its timeout on `worker` (which the caller then stops).
 * @example
 * if (outcome === TIMED_OUT) throw runTimeout(worker, req);
 */
export function runTimeout(worker: Worker, req: PlaneRunRequest): FunctionTimeoutError {
  return functionTimeout({
    app: req.app,
    function: req.function,
    timeoutSeconds: req.timeoutSeconds,
    callId: req.callId,
    attempt: req.attempt,
    where: `in container ${worker.id}`,
    reason: "the container was stopped",
    containerId: worker.id,
    logTail: worker.logTail.slice(),
  });
}

/**
 * A container whose image was still building at the deadline: the build goes on, and a later container uses it.
 * @example
 * if (built === TIMED_OUT) throw buildTimeout(pool, 60);
 */
export function buildTimeout(pool: PoolDescriptor, waitedSeconds: number): FunctionTimeoutError {
  return functionTimeout({
    app: pool.app,
    function: pool.function,
    timeoutSeconds: waitedSeconds,
    where: "while its image was building",
    reason: "the build goes on, and the next container of the function uses its image (the plane's log shows its steps)",
  });
}

/** What a start that timed out adds: the function's timeout bounds its containers' starts too. */
export const STARTS_IN_TIMEOUT =
  "a plane function's timeout also bounds the wait for its container to start (its image, a cold start, enter()), and the start is stopped with the attempt, so a timeout shorter than a start fails every call: give the function a longer timeout";

/**
 * A container whose runner did not say it was ready before the deadline.
 * @example
 * if (ready === TIMED_OUT) throw startTimeout(worker, pool, 120);
 */
export function startTimeout(worker: Worker, pool: PoolDescriptor, waitedSeconds: number, attempt?: number): FunctionTimeoutError {
  return functionTimeout({
    app: pool.app,
    function: pool.function,
    timeoutSeconds: waitedSeconds,
    attempt,
    where: `while container ${worker.id} started`,
    // Each such start is stopped with its attempt: a timeout shorter than a start would fail every call, said so.
    reason: `it did not say it was ready in time; ${STARTS_IN_TIMEOUT}`,
    containerId: worker.id,
    logTail: worker.logTail.slice(),
  });
}
