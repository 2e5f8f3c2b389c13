import Database from "better-sqlite3";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CPU_PRICE_PER_CORE_SECOND, GPU_PRICE_PER_SECOND, MEMORY_PRICE_PER_GIB_SECOND, containerCost } from "../sdk/pricing.js";
import { NotConfiguredError } from "../sdk/errors.js";
import { CONTAINER_LABELS } from "../sdk/protocol.js";
import { UsageLedger, openSqlite, pricingLabels } from "./usage-ledger.js";

const dirs: string[] = [];
const ledgerFile = () => {
  const dir = mkdtempSync(join(tmpdir(), "tandem-usage-"));
  dirs.push(dir);
  return join(dir, "usage.sqlite");
};
const ledger = () => new UsageLedger(ledgerFile());
const life = (containerId: string, startedAt: number) => ({
  containerId,
  app: "a",
  function: "f",
  gpu: "T4" as const,
  gpuCount: 1,
  cpu: 1,
  memoryMiB: 512,
  startedAt,
});
/** What a driver's `cleanup` tells of a container it removed. */
const removed = (containerId: string, startedAt: number, endedAt: number, labels: Record<string, string> = {}) => ({
  labels: { [CONTAINER_LABELS.container]: containerId, ...labels },
  startedAt,
  endedAt,
});
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

  it("keeps a container's row open while it runs, and closes it as it stops", () => {
    const usage = ledger();
    const now = Date.now();
    usage.open(life("ctr-1", now - 30_000));
    expect(usage.summary()).toEqual([]); // counted by the plane's running containers, up to now, not twice
    expect(usage.summary({ running: [life("ctr-1", now - 30_000)] })[0]!.seconds).toBeCloseTo(30, 0);
    usage.record({ ...life("ctr-1", now - 30_000), endedAt: now - 10_000 });
    expect(usage.summary()[0]).toMatchObject({ containers: 1, seconds: 20 });
    usage.close();
  });

  it("closes the rows a killed plane left open at the time their containers stopped, as its next run removes them", () => {
    const file = ledgerFile();
    const t0 = Date.now() - 120_000;
    const before = new UsageLedger(file);
    before.open(life("ctr-left", t0));
    before.open(life("ctr-lost", t0));
    before.seen(t0 + 40_000);
    before.close(); // as a SIGKILL leaves it: rows open, nothing recorded since

    const after = new UsageLedger(file);
    after.open(life("ctr-new", t0 + 100_000)); // this run's own: not its previous run's to close
    expect(after.closeLeftover(removed("ctr-left", t0, t0 + 90_000))).toBe(true);
    expect(after.closeLeftover(removed("ctr-left", t0, t0 + 95_000))).toBe(false); // closed once
    expect(after.closeLost()).toBe(1); // ctr-lost, which the engine no longer had: up to its last sight
    expect(after.summary()[0]).toMatchObject({ app: "a", function: "f", gpu: "T4", containers: 2, seconds: 90 + 40 });
    expect(after.closeLeftover(removed("ctr-new", t0 + 100_000, t0 + 110_000))).toBe(false);
    after.close();
  });

  it("records a container left behind with no row from its labels, and never one whose labels do not price it", () => {
    const usage = ledger();
    const t0 = Date.now() - 60_000;
    const labels: Record<string, string> = {
      [CONTAINER_LABELS.app]: "a",
      [CONTAINER_LABELS.function]: "f",
      ...pricingLabels({ gpu: "A100", gpuCount: 2, cpu: 2, memoryMiB: 2048 }),
    };
    expect(labels[CONTAINER_LABELS.gpu]).toBe("A100:2");
    expect(usage.closeLeftover(removed("ctr-unrecorded", t0, t0 + 15_000, labels))).toBe(true);
    expect(usage.closeLeftover(removed("ctr-older-plane", t0, t0 + 15_000, { [CONTAINER_LABELS.app]: "a", [CONTAINER_LABELS.function]: "f" }))).toBe(false);
    const [row] = usage.summary();
    expect(row).toMatchObject({ app: "a", function: "f", gpu: "A100:2", containers: 1, seconds: 15 });
    expect(row!.costUsd).toBeCloseTo(containerCost(15, { gpu: "A100", gpuCount: 2, cpu: 2, memoryMiB: 2048 }), 12);
    usage.close();
  });

  it("bills no time of a prepared container while it is kept, and closes that time too when its plane was killed", () => {
    const file = ledgerFile();
    const t0 = Date.now() - 60_000;
    const before = new UsageLedger(file);
    const kept = { containerId: "ctr-prep", app: "a", function: "f", cpu: 1, memoryMiB: 512, startedAt: t0 };
    before.open({ ...kept, gpu: null, gpuCount: 0, startedAt: t0 + 1_000 }); // as it starts
    before.keepPrepared(kept); // ready, and paused
    before.close();
    const after = new UsageLedger(file);
    expect(after.closeLeftover(removed("ctr-prep", t0, t0 + 20_000))).toBe(true);
    expect(after.summary()).toEqual([{ app: "a", function: "f", gpu: null, containers: 0, seconds: 0, costUsd: 0, preparedSeconds: 20 }]);
    after.close();
  });

  it("opens a usage.sqlite of an older plane, whose rows could not be open, with its rows as they were", () => {
    const file = ledgerFile();
    const t0 = Date.now() - 60_000;
    const old = new Database(file);
    old.exec(`CREATE TABLE containers (
      container_id TEXT PRIMARY KEY, app TEXT NOT NULL, function TEXT NOT NULL, gpu TEXT, gpu_count INTEGER NOT NULL,
      cpu REAL NOT NULL, memory_mib INTEGER NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER NOT NULL);
      CREATE INDEX containers_app ON containers(app, ended_at);
      CREATE TABLE prepared (
      container_id TEXT PRIMARY KEY, app TEXT NOT NULL, function TEXT NOT NULL, cpu REAL NOT NULL, memory_mib INTEGER NOT NULL,
      started_at INTEGER NOT NULL, ended_at INTEGER NOT NULL);
      CREATE INDEX prepared_app ON prepared(app, ended_at);`);
    old.prepare("INSERT INTO containers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)").run("ctr-old", "a", "f", null, 0, 1, 512, t0, t0 + 10_000);
    old.prepare("INSERT INTO prepared VALUES (?, ?, ?, ?, ?, ?, ?)").run("ctr-oldprep", "a", "f", 1, 512, t0, t0 + 5_000);
    old.close();

    const usage = new UsageLedger(file);
    expect(usage.summary()).toEqual([expect.objectContaining({ app: "a", function: "f", gpu: null, containers: 1, seconds: 10, preparedSeconds: 5 })]);
    usage.open({ ...life("ctr-new", t0 + 20_000), gpu: null, gpuCount: 0 }); // an open row, which the old schema refused
    usage.close();
    const again = new UsageLedger(file); // and once migrated, opened as it is
    expect(again.closeLost()).toBe(1);
    expect(again.summary()[0]).toMatchObject({ containers: 2 });
    again.close();
    const indexes = new Database(file, { readonly: true });
    expect(indexes.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all()).toEqual([
      "containers_app",
      "containers_open",
      "prepared_app",
      "prepared_open",
    ]);
    indexes.close();
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
