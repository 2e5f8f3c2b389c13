import { describe, expect, it } from "vitest";
import { eachAtOnce, slotsOf } from "./at-once.js";

describe("eachAtOnce", () => {
  it("runs every item, never more than the limit at once", async () => {
    let running = 0;
    let most = 0;
    const done: number[] = [];
    await eachAtOnce([1, 2, 3, 4, 5, 6, 7], 3, async (n, i) => {
      most = Math.max(most, ++running);
      await new Promise((r) => setTimeout(r, 5 * (n % 3)));
      done[i] = n;
      running--;
    });
    expect(done).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(most).toBe(3);
  });

  it("starts nothing more after a failure, and throws it once the running ones end", async () => {
    const started: number[] = [];
    let ended = 0;
    const run = eachAtOnce([1, 2, 3, 4, 5, 6], 2, async (n) => {
      started.push(n);
      await new Promise((r) => setTimeout(r, 5));
      ended++;
      if (n === 2) throw new Error("two failed");
    });
    await expect(run).rejects.toThrow("two failed");
    expect(started).toEqual([1, 2, 3]);
    expect(ended).toBe(3);
  });

  it("shares slots: never more holders than its most, each waiting one let in as another gives its slot", async () => {
    const slots = slotsOf(2);
    let held = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        await slots.take();
        most = Math.max(most, ++held);
        await new Promise((r) => setTimeout(r, 2 + (i % 3)));
        held--;
        slots.give();
      }),
    );
    expect(most).toBe(2);
    expect(held).toBe(0);
  });
});
