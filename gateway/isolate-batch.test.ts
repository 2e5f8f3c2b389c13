import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { JOINED, isolateBatch, waitForBatch } from "./isolate-batch.js";

beforeEach(() => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] }));
afterEach(() => vi.useRealTimers());

describe("isolateBatch", () => {
  it("writes what the requests of a window add in one write, by the request that opened it; the others get a settled promise", async () => {
    const writes: number[][] = [];
    const add = isolateBatch(50, async (_: null, items: number[]) => void writes.push(items));
    const opener = add(null, [1]);
    let joinerSettled = false;
    void add(null, [2, 3]).then(() => (joinerSettled = true));
    await Promise.resolve();
    expect(joinerSettled).toBe(true); // a joiner never waits on the opener's promise (another request's, in workerd)
    expect(writes).toEqual([]);
    await vi.advanceTimersByTimeAsync(50);
    await opener;
    expect(writes).toEqual([[1, 2, 3]]);
  });

  it("hands only the opener's promise to waitUntil: a request that joined has nothing to wait for", async () => {
    const add = isolateBatch(50, async () => {});
    const waited: Promise<unknown>[] = [];
    const rc = { waitUntil: (p: Promise<unknown>) => void waited.push(p) };
    const opener = add(null, [1]);
    waitForBatch(rc, opener);
    waitForBatch(rc, add(null, [2]));
    expect(add(null, [3])).toBe(JOINED);
    expect(waited).toEqual([opener]);
    await vi.advanceTimersByTimeAsync(50);
  });

  it("hands a batch whose writer is gone (workerd ended its request before its timer) to the next request, items and all, written once", async () => {
    const writes: number[][] = [];
    const add = isolateBatch(50, async (_: null, items: number[]) => void writes.push(items));
    void add(null, [1]); // its request ends: in workerd its timer never fires; here, the clock moves on without it
    void add(null, [2]);
    vi.setSystemTime(Date.now() + 20 * 50);
    const taker = add(null, [3]);
    await vi.advanceTimersByTimeAsync(2_000); // both timers fire here; the lost writer's finds its items taken
    await taker;
    expect(writes).toEqual([[1, 2, 3]]);
  });
});
