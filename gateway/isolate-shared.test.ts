import { describe, expect, it } from "vitest";
import { isolateShared } from "./isolate-shared.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `pages` loops, each asking every `everyMs` for `ms`, starting at different moments; how many values each saw. */
async function pagesAsking(ask: () => Promise<number>, pages: number, everyMs: number, ms: number): Promise<number[][]> {
  const until = Date.now() + ms;
  return Promise.all(
    Array.from({ length: pages }, async (_, i) => {
      await sleep((i * everyMs) / pages);
      const seen: number[] = [];
      while (Date.now() < until) {
        seen.push(await ask());
        await sleep(everyMs);
      }
      return seen;
    }),
  );
}

describe("a read shared by the requests of an isolate", () => {
  it("is made once per window however many pages ask, and each page sees fresh values", async () => {
    let reads = 0;
    const shared = isolateShared(100, async (_: null, _key: string) => {
      await sleep(10);
      return ++reads;
    });
    const seen = await pagesAsking(() => shared(null, "shop/"), 8, 100, 1_000);
    const asks = seen.reduce((n, values) => n + values.length, 0);
    // Alone, every ask would be a read (about 80 here); shared, about one a window (about 10), however loaded the machine.
    expect(asks).toBeGreaterThanOrEqual(8 * 4);
    expect(reads).toBeGreaterThanOrEqual(3);
    expect(reads).toBeLessThanOrEqual(asks / 4);
    for (const values of seen) {
      expect(values).toEqual([...values].sort((a, b) => a - b)); // never an older value after a newer one
      expect(values.at(-1)!).toBeGreaterThanOrEqual(reads - 3); // each page kept up
    }
  });

  it("reads each key apart", async () => {
    const asked: string[] = [];
    const shared = isolateShared(1_000, async (_: null, key: string) => {
      asked.push(key);
      return key.toUpperCase();
    });
    expect(await Promise.all([shared(null, "a"), shared(null, "b"), shared(null, "a")])).toEqual(["A", "B", "A"]);
    expect(asked.sort()).toEqual(["a", "b"]);
  });

  it("gives a failed read's error to its reader only, and the next asker reads again", async () => {
    let calls = 0;
    const shared = isolateShared(1_000, async () => {
      calls++;
      if (calls === 1) throw new Error("shard unreachable");
      return calls;
    });
    await expect(shared(null, "k")).rejects.toThrow("shard unreachable");
    expect(await shared(null, "k")).toBe(2);
    expect(await shared(null, "k")).toBe(2); // fresh: not read again
  });

  it("reads again when a read never comes back (its request ended)", async () => {
    let calls = 0;
    const shared = isolateShared(10, async () => {
      calls++;
      if (calls === 1) return new Promise<number>(() => {}); // lost
      return calls;
    });
    void shared(null, "k");
    const started = Date.now();
    expect(await shared(null, "k")).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(150); // waited for the lost read 20 windows (200 ms)
  });
});
