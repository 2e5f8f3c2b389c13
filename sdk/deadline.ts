/**
 * Racing work against a deadline, the one way every tier does it: the
 * gateway's attempts and streams, the plane's container starts and inputs.
 * The timer is always cleared, so a finished race leaves nothing behind.
 */

/** What `raceDeadline` settles with when the deadline passes first. */
export const TIMED_OUT: unique symbol = Symbol("timed out");

/** Work that may be stopped before its deadline: handed the function that ends its race (`raceDeadline`) with an error. */
export interface Stoppable {
  onStop(stop: (reason: Error) => void): void;
}

/**
 * Settles as `promise` does, or with `TIMED_OUT` once `deadline` (ms since
 * the epoch) passes first, or rejects once `stoppable` is stopped first (an
 * edge attempt whose call was cancelled). `promise` itself runs on; stopping
 * it is the caller's.
 * @example
 * const ready = await raceDeadline(channel.ready, Date.now() + 5_000);
 * if (ready === TIMED_OUT) throw new Error("no ready frame in 5 s");
 */
export async function raceDeadline<T>(promise: Promise<T>, deadline: number, stoppable?: Stoppable): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve, reject) => {
    timer = setTimeout(() => resolve(TIMED_OUT), Math.max(0, deadline - Date.now()));
    stoppable?.onStop(reject);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Like `raceDeadline`, but throws `onTimeout()`'s error when the deadline passes first. */
export async function withDeadline<T>(promise: Promise<T>, deadline: number, onTimeout: () => Error, stoppable?: Stoppable): Promise<T> {
  const outcome = await raceDeadline(promise, deadline, stoppable);
  if (outcome === TIMED_OUT) throw onTimeout();
  return outcome;
}
