/**
 * How a container's failure reaches the caller: each way it can end a call (an
 * exit, an OOM kill, a kill, bytes that are not a frame, a call or a start past its
 * timeout) becomes the typed error that says which, with the last lines of
 * the container's log. Kept in one place so every path that ends a call
 * words the same failure the same way.
 */
import { ContainerFailedError, ProtocolError, functionTimeout, type FunctionTimeoutError } from "../sdk/errors.js";
import type { PlaneRunRequest } from "../sdk/protocol.js";
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
 * A container that exited under a call: `oom` (only when the runtime says the
 * OOM killer ended it), `killed` (by a signal: the plane's, or one from
 * outside such as `docker kill`, named in `details.signal` when known) or
 * `crashed` (with its exit code), `when` saying what it was doing.
 * @example
 * throw exitFailure(worker, await worker.container.exited, "during the call");
 * // ContainerFailedError: app.f container ctr-1a2b3c4d crashed with exit code 3 during the call; last log lines: …
 */
export function exitFailure(worker: Worker, exit: ExitInfo, when: string): ContainerFailedError {
  const tail = worker.logTail.slice();
  // Never guessed from the exit code: 137 is any SIGKILL, and `docker kill` is not a lack of memory.
  // A container the plane was stopping (scale-down, eviction, the app stopped, the plane shutting down) did not crash,
  // whatever its exit: its runner leaves with 0 when the plane closes its channel.
  const reason = exit.oomKilled ? "oom" : worker.stopping || exit.signal !== undefined || exit.code === 137 || exit.code === null ? "killed" : "crashed";
  const how = exit.signal ? ` (${exit.signal})` : exit.code !== null && exit.code !== 137 ? ` (exit code ${exit.code})` : "";
  const what =
    reason === "oom"
      ? `ran out of memory (limit ${worker.reservation.memoryMiB} MiB)`
      : reason === "crashed"
        ? `crashed with exit code ${exit.code}`
        : worker.stopping
          ? `was stopped by the plane${how}`
          : `was killed${exit.signal ? ` (${exit.signal})` : ""}`;
  const lastLines = tail.length ? `; last log lines:\n${tail.slice(-5).join("\n")}` : "";
  return new ContainerFailedError(`${worker.label} container ${worker.id} ${what} ${when}${lastLines}`, {
    reason,
    exitCode: exit.code,
    ...(exit.signal ? { signal: exit.signal } : {}),
    containerId: worker.id,
    logTail: tail,
  });
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
 * A container whose runner did not say it was ready before the deadline.
 * @example
 * if (ready === TIMED_OUT) throw startTimeout(worker, pool, 120);
 */
export function startTimeout(worker: Worker, pool: PoolDescriptor, waitedSeconds: number): FunctionTimeoutError {
  return functionTimeout({
    app: pool.app,
    function: pool.function,
    timeoutSeconds: waitedSeconds,
    where: `while container ${worker.id} started`,
    reason: "it did not say it was ready in time",
    containerId: worker.id,
    logTail: worker.logTail.slice(),
  });
}
