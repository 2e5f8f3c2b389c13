import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CPU_PRICE_PER_CORE_SECOND, GPU_PRICE_PER_SECOND, MEMORY_PRICE_PER_GIB_SECOND, containerCost } from "../sdk/pricing.js";
import { NotConfiguredError } from "../sdk/errors.js";
import { UsageLedger, openSqlite } from "./usage-ledger.js";

const dirs: string[] = [];
const ledger = () => {
  const dir = mkdtempSync(join(tmpdir(), "tandem-usage-"));
  dirs.push(dir);
  return new UsageLedger(join(dir, "usage.sqlite"));
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("the usage ledger", () => {
  it("prices container seconds by GPU type, CPU and memory, grouped by app, function and GPU", () => {
    const usage = ledger();
    const t0 = Date.now() - 100_000;
    usage.record({ containerId: "ctr-1", app: "a", function: "f", gpu: "A100", gpuCount: 2, cpu: 1, memoryMiB: 1024, startedAt: t0, endedAt: t0 + 10_000 });
    usage.record({ containerId: "ctr-2", app: "a", function: "f", gpu: "A100", gpuCount: 2, cpu: 1, memoryMiB: 1024, startedAt: t0, endedAt: t0 + 20_000 });
    usage.record({ containerId: "ctr-3", app: "b", function: "g", gpu: null, gpuCount: 0, cpu: 2, memoryMiB: 2048, startedAt: t0, endedAt: t0 + 5_000 });
    const rows = usage.summary();
    expect(rows).toHaveLength(2);
    const [a, b] = rows;
    expect(a).toMatchObject({ app: "a", function: "f", gpu: "A100:2", containers: 2, seconds: 30 });
    expect(a!.costUsd).toBeCloseTo(30 * (2 * GPU_PRICE_PER_SECOND.A100 + CPU_PRICE_PER_CORE_SECOND + MEMORY_PRICE_PER_GIB_SECOND), 12);
    expect(b).toMatchObject({ app: "b", gpu: null, containers: 1, seconds: 5 });
    expect(b!.costUsd).toBeCloseTo(5 * (2 * CPU_PRICE_PER_CORE_SECOND + 2 * MEMORY_PRICE_PER_GIB_SECOND), 12);
    expect(usage.summary({ app: "b" })).toHaveLength(1);
    usage.close();
  });

  it("counts only the time after `since`, and running containers up to now", () => {
    const usage = ledger();
    const now = Date.now();
    usage.record({
      containerId: "ctr-1",
      app: "a",
      function: "f",
      gpu: "T4",
      gpuCount: 1,
      cpu: 1,
      memoryMiB: 512,
      startedAt: now - 60_000,
      endedAt: now - 20_000,
    });
    expect(usage.summary({ since: now - 30_000 })[0]!.seconds).toBeCloseTo(10, 0);
    const running = [{ containerId: "ctr-2", app: "a", function: "f", gpu: "T4" as const, gpuCount: 1, cpu: 1, memoryMiB: 512, startedAt: now - 5_000 }];
    expect(usage.summary({ since: now - 30_000, running })[0]).toMatchObject({ containers: 2 });
    expect(usage.spent("a", running)).toBeGreaterThan(usage.spent("a"));
    usage.close();
  });

  it("sums thousands of container lives in SQLite, to the cost each would have alone", () => {
    const usage = ledger();
    const t0 = Date.now() - 1_000_000;
    let expected = 0;
    for (let i = 0; i < 3000; i++) {
      const life = {
        containerId: `ctr-${i}`,
        app: "a",
        function: i % 2 ? "f" : "g",
        gpu: i % 3 ? ("T4" as const) : null,
        gpuCount: i % 3 ? 1 : 0,
        cpu: 1 + (i % 2),
        memoryMiB: 512,
        startedAt: t0 + i,
        endedAt: t0 + i + 1_000 + i,
      };
      usage.record(life);
      expected += containerCost((1_000 + i) / 1000, life);
    }
    const rows = usage.summary();
    expect(rows.reduce((n, r) => n + r.containers, 0)).toBe(3000);
    expect(rows.reduce((sum, r) => sum + r.costUsd, 0)).toBeCloseTo(expected, 9);
    expect(rows.find((r) => r.function === "f" && r.gpu === "T4")).toMatchObject({ app: "a", containers: 1000 });
    usage.close();
  });
});

describe("opening the ledger's SQLite database", () => {
  it("says in one line what to do when better-sqlite3's native module is missing or will not load, not where bindings looked", () => {
    const dir = mkdtempSync(join(tmpdir(), "tandem-usage-"));
    dirs.push(dir);
    const notBuilt = join(dir, "missing", "better_sqlite3.node"); // npm install still building it
    const notNative = join(dir, "better_sqlite3.node"); // one that will not load (built for another Node, or broken)
    writeFileSync(notNative, "not a shared library");
    for (const nativeBinding of [notBuilt, notNative]) {
      const err = (() => {
        try {
          openSqlite(join(dir, "usage.sqlite"), { nativeBinding });
        } catch (e) {
          return e;
        }
      })();
      expect(err, nativeBinding).toBeInstanceOf(NotConfiguredError);
      expect((err as Error).message).toBe(
        "better-sqlite3's native module is missing or was built for another Node.js (the plane keeps its usage in SQLite): let `npm install` finish, or run `npm rebuild better-sqlite3`",
      );
    }
    expect(openSqlite(join(dir, "usage.sqlite")).pragma("journal_mode", { simple: true })).toBe("delete"); // the module npm built
  });
});
