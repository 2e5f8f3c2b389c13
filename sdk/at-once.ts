/**
 * Work over many items, a few at once: for uploads and commits of many files, where one round trip after another
 * was the cost (volumes).
 */

/**
 * Runs `each` on every item, at most `limit` at once. The first failure stops new items from starting; it is thrown
 * once those already running have ended.
 * @example await eachAtOnce(files, 4, (file) => upload(file));
 */
export async function eachAtOnce<T>(items: readonly T[], limit: number, each: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: { err: unknown } | undefined;
  const runner = async () => {
    while (!failed && next < items.length) {
      const index = next++;
      await each(items[index]!, index).catch((err: unknown) => void (failed ??= { err }));
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, runner));
  if (failed) throw failed.err;
}

/** A limit shared by whoever holds its slots (`slotsOf`). */
export interface Slots {
  take(): Promise<void>;
  give(): void;
}

/**
 * At most `max` holders at once, across callers that share it (a put's files, each sending its blocks): `take` waits
 * for a slot, `give` hands it to the next waiting, as it is, or frees it.
 * @example const slots = slotsOf(4); await slots.take(); send().finally(() => slots.give());
 */
export function slotsOf(max: number): Slots {
  let taken = 0;
  const waiting: (() => void)[] = [];
  return {
    take: () => {
      if (taken < max) {
        taken++;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => waiting.push(resolve));
    },
    give: () => {
      const next = waiting.shift();
      if (next) return next();
      taken--;
    },
  };
}
