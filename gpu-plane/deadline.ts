/**
 * Deadlines of the plane's dispatch: an input's own (its timeout, from now),
 * and a race of any wait against one. Kept apart because waiting for a
 * container, for a runner's answer and for a graceful exit all race the same
 * way.
 */
import type { PlaneRunRequest } from "../sdk/protocol.js";

/**
 * `timeout` seconds from now. An input gets it twice: once to wait for a
 * container (a free GPU, a slot under `maxContainers`: `no_capacity`; a cold
 * start: "did not start in time"), and once more, from when it reaches the
 * container, to run: waiting in the queue does not use up its run time.
 * @example
 * const deadline = timeoutFromNow(req); // Date.now() + req.timeoutSeconds * 1000
 */
export function timeoutFromNow(req: Pick<PlaneRunRequest, "timeoutSeconds">): number {
  return Date.now() + req.timeoutSeconds * 1000;
}

/**
 * What `promise` settles to, or `"timeout"` if `deadline` (ms since the epoch)
 * comes first. The timer is cleared either way, so nothing lingers.
 * @example
 * if ((await raceDeadline(container.exited, Date.now() + 10_000)) === "timeout") await container.kill();
 */
export async function raceDeadline<T>(promise: Promise<T>, deadline: number): Promise<T | "timeout"> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
