/** LeftoverRemoval: a plane restarted after SIGKILL removes its previous run's containers, trying again until it can. */
import { describe, expect, it } from "vitest";
import { LeftoverRemoval } from "./leftovers.js";

const ZOMBIE = "(HTTP code 500) server error - Could not kill running container 93b2, cannot remove - container 93b2 PID 10495 is zombie and can not be killed";

describe("LeftoverRemoval", () => {
  it("tries again with backoff while removal fails, says why meanwhile, and takes calls once it succeeds", async () => {
    // Before, one failed removal left the plane unavailable for good, blaming the engine.
    let failures = 2;
    const tries: number[] = [];
    const lines: string[] = [];
    let removed = 0;
    const leftovers = new LeftoverRemoval({
      remove: async () => {
        tries.push(Date.now());
        if (failures-- > 0) throw new Error(ZOMBIE);
      },
      planeId: "pl-1",
      log: (line) => lines.push(line),
      removed: () => removed++,
      firstDelayMs: 20,
      maxDelayMs: 1_000,
    });
    await leftovers.start();
    expect(leftovers.pending).toMatch(/^the containers its previous run left behind are not all removed yet .*: \(HTTP code 500\)/);
    expect(lines).toEqual([expect.stringMatching(/^⚠ plane pl-1 is not taking calls yet: the containers its previous run left behind/)]);
    expect(lines.join("\n")).not.toMatch(/cannot start containers/);
    await expect.poll(() => removed, { timeout: 2_000 }).toBe(1);
    expect(leftovers.pending).toBeUndefined();
    expect(tries).toHaveLength(3);
    expect(tries[2]! - tries[1]!).toBeGreaterThanOrEqual(tries[1]! - tries[0]! - 5); // doubled, give or take the timer
    expect(lines.at(-1)).toBe("✓ plane pl-1 removed the containers its previous run left behind; it takes calls now");
  });

  it("takes calls at once when the first removal succeeds, and tries no more once stopped", async () => {
    let tries = 0;
    const ok = new LeftoverRemoval({ remove: async () => void tries++, planeId: "pl-2", log: () => {}, removed: () => {}, firstDelayMs: 5, maxDelayMs: 5 });
    await ok.start();
    expect(ok.pending).toBeUndefined();
    const failing = new LeftoverRemoval({
      remove: async () => {
        tries++;
        throw new Error("busy");
      },
      planeId: "pl-3",
      log: () => {},
      removed: () => {},
      firstDelayMs: 5,
      maxDelayMs: 5,
    });
    await failing.start();
    failing.stop();
    await new Promise((r) => setTimeout(r, 50));
    expect(tries).toBe(2);
  });
});
