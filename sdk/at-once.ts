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
