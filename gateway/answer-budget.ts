/**
 * A store's answer kept under what one Durable Object call may carry (32 MiB serialised, a character at most two
 * bytes there): a queue's get or peek, a dict's page. Rows are taken in order while their characters fit the budget,
 * the first one always (one value is at most 1 MiB), so a large batch comes back in parts instead of failing, and
 * nothing is taken from a queue that is not in the answer.
 */

/**
 * The first of `rows`, at most `most` of them, whose `chars` add up to at most `budget` (the first one whatever its
 * size); `more` is true when a row was left out for either reason.
 *
 * @example const { taken, more } = withinBudget(rows, (row) => row.value.length, QUEUE_LIMITS.maxAnswerChars, n);
 */
export function withinBudget<T>(rows: Iterable<T>, chars: (row: T) => number, budget: number, most: number): { taken: T[]; more: boolean } {
  const taken: T[] = [];
  let used = 0;
  for (const row of rows) {
    const size = chars(row);
    if (taken.length >= most || (taken.length > 0 && used + size > budget)) return { taken, more: true };
    taken.push(row);
    used += size;
  }
  return { taken, more: false };
}
