/**
 * Racing work against a deadline, the one way every tier does it: the
 * gateway's attempts and streams, the plane's container starts and inputs.
 * The timer is always cleared, so a finished race leaves nothing behind.
 */

/** What `raceDeadline` settles with when the deadline passes first. */
export const TIMED_OUT: unique symbol = Symbol("timed out");

/**
 * Settles as `promise` does, or with `TIMED_OUT` once `deadline` (ms since
 * the epoch) passes first. `promise` itself runs on; stopping it is the caller's.
 * @example
 * const ready = await raceDeadline(channel.ready, Date.now() + 5_000);
 * if (ready === TIMED_OUT) throw new Error("no ready frame in 5 s");
 */
export async function raceDeadline<T>(promise: Promise<T>, deadline: number): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(() => resolve(TIMED_OUT), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Like `raceDeadline`, but throws `onTimeout()`'s error when the deadline passes first. */
export async function withDeadline<T>(promise: Promise<T>, deadline: number, onTimeout: () => Error): Promise<T> {
  const outcome = await raceDeadline(promise, deadline);
  if (outcome === TIMED_OUT) throw onTimeout();
  return outcome;
}
