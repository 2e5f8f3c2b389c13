/**
 * Items gathered in this isolate for `windowMs`, then written together, as
 * the ledger's ended calls and the edge's log lines are. The request that
 * opens a batch writes it, in its own context (its promise settles when the
 * batch is written; hand it to `waitUntil`); a request that joins an open
 * batch only adds its items (plain data) and gets `JOINED`, a settled
 * promise (`waitForBatch` hands it to no `waitUntil`). Sharing
 * the writer's promise instead made workerd warn, once per joining request,
 * that a promise was resolved from a different request context. A batch
 * whose write has not started 20 windows after it opened lost its request
 * (workerd ended it): the next one takes its items.
 *
 * @example
 * const add = isolateBatch(50, (env: Env, rows: Row[]) => write(env, rows));
 * waitForBatch(rc, add(rc.env, [row]));
 */
export function isolateBatch<C, T>(windowMs: number, write: (context: C, items: T[]) => Promise<void>): (context: C, items: T[]) => Promise<void> {
  let pending: { items: T[]; openedAt: number } | undefined;
  return (context, items) => {
    if (pending && Date.now() - pending.openedAt < 20 * windowMs) {
      pending.items.push(...items);
      return JOINED;
    }
    // No open batch, or one whose writer is gone: open one, adopting the items a lost writer left behind.
    const batch = { items: [...(pending?.items.splice(0) ?? []), ...items], openedAt: Date.now() };
    pending = batch;
    return new Promise<void>((resolve) => setTimeout(resolve, windowMs)).then(() => {
      if (pending === batch) pending = undefined;
      const items = batch.items.splice(0);
      return items.length ? write(context, items) : undefined; // empty when the next request took them (see above)
    });
  };
}

/** What a request that joined an open batch gets: nothing to wait for, as another request writes the batch. */
export const JOINED: Promise<void> = Promise.resolve();

/**
 * Hands what a batch call returned to `waitUntil`, unless the request only joined a batch another request writes: about
 * 10 µs of each logged line in bench/edge-call ((d) − (a), three runs alternated with the commit before).
 * @example waitForBatch(rc, add(rc.env, [row]));
 */
export function waitForBatch(rc: { waitUntil(promise: Promise<unknown>): void }, written: Promise<void>): void {
  if (written !== JOINED) rc.waitUntil(written);
}
