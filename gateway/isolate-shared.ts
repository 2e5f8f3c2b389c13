/**
 * A read shared by the requests of this isolate: whoever asks for a key
 * within `maxAgeMs` of its last read gets that read's value (plain data), and
 * a request that asks while another request reads it waits for that read's
 * value by looking again every `maxAgeMs / 10`, never by awaiting the other
 * request's promise (workerd warns, and may cancel the continuation, when a
 * promise is resolved from another request's context). A read that has not
 * come back after 20 × `maxAgeMs` lost its request (workerd ended it): the
 * next asker reads. The dashboard's live pages share their poll of the
 * ledger's shards this way.
 *
 * @example
 * const calls = isolateShared(250, (env: Env, key: string) => recentCalls(env, parse(key)));
 * const rows = await calls(env, "shop/checkout"); // one read every 250 ms however many pages ask
 */
export function isolateShared<C, T>(maxAgeMs: number, read: (context: C, key: string) => Promise<T>): (context: C, key: string) => Promise<T> {
  type Entry = { value?: { of: T; at: number }; readingSince?: number };
  const entries = new Map<string, Entry>();
  const lostAfterMs = 20 * maxAgeMs;
  return async (context, key) => {
    for (;;) {
      const now = Date.now();
      const entry = entries.get(key);
      if (entry?.value && now - entry.value.at < maxAgeMs) return entry.value.of;
      if (entry?.readingSince !== undefined && now - entry.readingSince < lostAfterMs) {
        await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.floor(maxAgeMs / 10))));
        continue;
      }
      // Keys nobody asks for any more are dropped as a read starts, so the map holds what is being asked for.
      for (const [k, e] of entries) if (k !== key && e.readingSince === undefined && now - (e.value?.at ?? 0) > lostAfterMs) entries.delete(k);
      const mine: Entry = { ...(entry?.value ? { value: entry.value } : {}), readingSince: now };
      entries.set(key, mine);
      try {
        const of = await read(context, key);
        if (entries.get(key) === mine) entries.set(key, { value: { of, at: Date.now() } });
        return of;
      } catch (err) {
        if (entries.get(key) === mine) entries.delete(key); // the next asker reads again
        throw err;
      }
    }
  };
}
