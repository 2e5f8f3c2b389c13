/** LeftoverRemoval: a plane restarted after SIGKILL removes its previous run's containers, trying again until it can. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CONTAINER_LABELS } from "../sdk/protocol.js";
import type { ContainerDriver, RemovedContainer } from "./drivers/driver.js";
import { LeftoverRemoval, leftoverRemover } from "./leftovers.js";
import { UsageLedger, pricingLabels } from "./usage-ledger.js";

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

describe("leftoverRemover", () => {
  it("counts what every pass removed and metered, not the last pass alone, once the last one succeeds", async () => {
    // Before, a plane that left 5 containers, 2 of them still exiting on its first pass, said it removed 1 and recorded
    // the usage of 1: what the passes that failed removed went uncounted.
    const dir = mkdtempSync(join(tmpdir(), "tandem-leftovers-"));
    const usage = new UsageLedger(join(dir, "usage.sqlite"));
    try {
      const left = new Map(
        ["ctr-1", "ctr-2", "ctr-3", "ctr-4", "ctr-5"].map((id) => [
          id,
          {
            labels: {
              [CONTAINER_LABELS.plane]: "pl-1",
              [CONTAINER_LABELS.container]: id,
              [CONTAINER_LABELS.app]: "a",
              [CONTAINER_LABELS.function]: "f",
              ...pricingLabels({ gpu: null, gpuCount: 0, cpu: 1, memoryMiB: 512 }),
            },
            startedAt: 1_000,
            endedAt: 2_000,
          },
        ]),
      );
      // Still exiting: ctr-4 for the first pass, ctr-5 for the first two.
      const exitingFor = new Map([
        ["ctr-4", 1],
        ["ctr-5", 2],
      ]);
      // A driver as the Docker one behaves: each container tried, those removed told, the pass failing if one was not.
      const driver = {
        async cleanup(_planeId: string, removed?: (container: RemovedContainer) => void) {
          let failed = 0;
          for (const [id, container] of left) {
            const passes = exitingFor.get(id) ?? 0;
            if (passes > 0) {
              exitingFor.set(id, passes - 1);
              failed++;
              continue;
            }
            left.delete(id);
            removed?.(container);
          }
          if (failed > 0) throw new Error(`${failed} container(s) could not be removed: ${ZOMBIE}`);
        },
      } as Pick<ContainerDriver, "cleanup"> as ContainerDriver;
      const lines: string[] = [];
      let takesCalls = false;
      const leftovers = new LeftoverRemoval({
        remove: leftoverRemover(driver, "pl-1", usage, (line) => lines.push(line)),
        planeId: "pl-1",
        log: (line) => lines.push(line),
        removed: () => (takesCalls = true),
        firstDelayMs: 10,
        maxDelayMs: 100,
      });
      await leftovers.start();
      await expect.poll(() => takesCalls, { timeout: 2_000 }).toBe(true);
      expect(left.size).toBe(0);
      expect(lines.filter((line) => line.startsWith("[plane]"))).toEqual([
        "[plane] removed 5 container(s) its previous run left behind",
        "[plane] recorded the usage of 5 container(s) its previous run left running",
      ]);
      expect(usage.summary()).toMatchObject([{ app: "a", function: "f", containers: 5 }]);
    } finally {
      usage.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
