/**
 * The recorded calls whose runner is alive in this isolate. A lapsed lease is
 * how the call ledger learns that a runner it cannot see was lost; a runner in
 * the ledger's own isolate it can see: every call the ledger resumed runs in
 * the ledger itself, and under `tandem serve` every runner shares its isolate.
 * A loaded process runs its timers late, and the ledger's alarm may then come
 * before the renewals that were due: such a call is not run again, its lease
 * is extended.
 *
 * A runner beats as it renews its lease. A hold whose runner has not beaten
 * for `silenceMs` (a few leases) is not taken for alive: a runner whose request
 * workerd ended without running its `finally` is then taken for lost as
 * before, only later.
 *
 * @example
 * const release = holdRunner([id]);
 * const renew = setInterval(() => beatRunners([id]), leaseMs / 3);
 * try { await run(); } finally { clearInterval(renew); release(); }
 */
const holds = new Map<string, Set<{ beatAt: number }>>();

/** Notes `ids` as run by a live runner of this isolate, until the returned function is called; beaten now. */
export function holdRunner(ids: readonly string[]): () => void {
  const hold = { beatAt: Date.now() };
  for (const id of ids) holds.set(id, (holds.get(id) ?? new Set()).add(hold));
  let released = false;
  return () => {
    if (released) return;
    released = true;
    for (const id of ids) {
      const held = holds.get(id);
      held?.delete(hold);
      if (held?.size === 0) holds.delete(id);
    }
  };
}

/** Says that the runners holding `ids` are alive now (with each renewal of their leases). */
export function beatRunners(ids: Iterable<string>): void {
  const now = Date.now();
  for (const id of ids) for (const hold of holds.get(id) ?? []) hold.beatAt = now;
}

/**
 * Whether a runner of this isolate holds `id` and has beaten within `silenceMs` of `now`. A hold silent longer is let
 * go here: its call is taken for lost and resumed, and a runner whose request ended without its `finally` leaves no
 * hold behind for good.
 */
export function runnerAliveHere(id: string, now: number, silenceMs: number): boolean {
  const held = holds.get(id);
  if (!held) return false;
  let alive = false;
  for (const hold of held) {
    if (now - hold.beatAt <= silenceMs) alive = true;
    else held.delete(hold);
  }
  if (held.size === 0) holds.delete(id);
  return alive;
}
