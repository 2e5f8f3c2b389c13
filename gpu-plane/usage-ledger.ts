/**
 * The plane's usage ledger: one row per container life (app, function, GPU
 * type and count, CPU, memory, start and stop), in SQLite on the plane's
 * disk, priced with `sdk/pricing.ts`; and, apart, the time its prepared
 * containers were kept, shown and not billed. `tandem usage` reads it through the
 * gateway; spend caps read it before a container starts.
 */
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { NotConfiguredError } from "../sdk/errors.js";
import type { GpuType } from "../sdk/gpu.js";
import { containerCost } from "../sdk/pricing.js";
import type { UsageRow } from "../sdk/protocol.js";

export interface ContainerLife {
  containerId: string;
  app: string;
  function: string;
  gpu: GpuType | null;
  gpuCount: number;
  cpu: number;
  memoryMiB: number;
  startedAt: number;
  /** Undefined while the container runs: counted up to now. */
  endedAt?: number;
}

/**
 * Opens the SQLite database at `path` with better-sqlite3, whose native module `npm install` builds. A plane started
 * before it was built (`tandem serve` while the install still runs, an install that could not build it, a Node since
 * upgraded) fails with one line that says so and what to do, not the list of paths `bindings` tried. `options` as
 * better-sqlite3 takes them (`nativeBinding`: the native module's path).
 * @example const db = openSqlite(".tandem/plane/usage.db");
 */
export function openSqlite(path: string, options: Database.Options = {}): Database.Database {
  try {
    return new Database(path, options);
  } catch (err) {
    if (!nativeModuleMissing(err)) throw err;
    throw new NotConfiguredError(
      "better-sqlite3's native module is missing or was built for another Node.js (the plane keeps its usage in SQLite): let `npm install` finish, or run `npm rebuild better-sqlite3`",
      { cause: (err as Error).message },
    );
  }
}

/** Whether `err` is the native module failing to load: not found (`bindings`, a `nativeBinding` path), or not loadable (another Node's ABI). */
function nativeModuleMissing(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  return (
    err.message.startsWith("Could not locate the bindings file") ||
    code === "ERR_DLOPEN_FAILED" ||
    (code === "MODULE_NOT_FOUND" && err.message.includes("better_sqlite3.node"))
  );
}

export class UsageLedger {
  readonly #db: Database.Database;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.#db = openSqlite(path);
    this.#db.pragma("journal_mode = WAL");
    this.#db.exec(`CREATE TABLE IF NOT EXISTS containers (
      container_id TEXT PRIMARY KEY, app TEXT NOT NULL, function TEXT NOT NULL, gpu TEXT, gpu_count INTEGER NOT NULL,
      cpu REAL NOT NULL, memory_mib INTEGER NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS containers_app ON containers(app, ended_at);
      CREATE TABLE IF NOT EXISTS prepared (
      container_id TEXT PRIMARY KEY, app TEXT NOT NULL, function TEXT NOT NULL, cpu REAL NOT NULL, memory_mib INTEGER NOT NULL,
      started_at INTEGER NOT NULL, ended_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS prepared_app ON prepared(app, ended_at);`);
  }

  /** Records a container's whole life once it has stopped. */
  record(life: ContainerLife & { endedAt: number }): void {
    this.#db
      .prepare("INSERT OR REPLACE INTO containers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
      .run(life.containerId, life.app, life.function, life.gpu, life.gpuCount, life.cpu, life.memoryMiB, life.startedAt, life.endedAt);
  }

  /**
   * Records the time a prepared container (prepared-containers.ts) was kept for its function's cold starts: from its
   * start until a cold start took it, or it was stopped unused. Kept apart from the containers' lives: the plane
   * chose to keep it, so it is shown (`preparedSeconds`), not billed.
   */
  recordPrepared(life: Omit<ContainerLife, "gpu" | "gpuCount"> & { endedAt: number }): void {
    this.#db
      .prepare("INSERT OR REPLACE INTO prepared VALUES (?, ?, ?, ?, ?, ?, ?)")
      .run(life.containerId, life.app, life.function, life.cpu, life.memoryMiB, life.startedAt, life.endedAt);
  }

  /**
   * Seconds and dollars by app, function and GPU type, for container time
   * after `since` (ms), stopped containers from the ledger plus `running` ones
   * up to now. The stopped ones are summed in SQLite, by app, function and
   * resources (a container's cost is its seconds times its resources' price),
   * so a scrape of the plane's metrics, which asks for all of it, reads one
   * row per kind of container, not one per container.
   */
  summary(options: { app?: string; since?: number; running?: ContainerLife[]; prepared?: ContainerLife[] } = {}): UsageRow[] {
    const since = options.since ?? 0;
    const now = Date.now();
    const stopped = this.#db
      .prepare(
        `SELECT app, function, gpu, gpu_count, cpu, memory_mib, COUNT(*) AS containers, SUM(ended_at - MAX(started_at, ?)) AS ms
         FROM containers WHERE ended_at > ? ${options.app ? "AND app = ?" : ""} GROUP BY app, function, gpu, gpu_count, cpu, memory_mib`,
      )
      .all(...(options.app ? [since, since, options.app] : [since, since])) as {
      app: string;
      function: string;
      gpu: GpuType | null;
      gpu_count: number;
      cpu: number;
      memory_mib: number;
      containers: number;
      ms: number;
    }[];
    const groups = [
      ...stopped.map((r) => ({
        app: r.app,
        function: r.function,
        resources: { gpu: r.gpu, gpuCount: r.gpu_count, cpu: r.cpu, memoryMiB: r.memory_mib },
        containers: r.containers,
        seconds: Math.max(0, r.ms) / 1000,
      })),
      ...(options.running ?? [])
        .filter((l) => !options.app || l.app === options.app)
        .map((l) => ({ app: l.app, function: l.function, resources: l, containers: 1, seconds: Math.max(0, now - Math.max(l.startedAt, since)) / 1000 })),
    ];
    const rows = new Map<string, UsageRow>();
    for (const { app, function: fn, resources, containers, seconds } of groups) {
      // As a spec reads: "A100:2" for a container with two.
      const gpu = resources.gpu === null ? null : resources.gpuCount > 1 ? `${resources.gpu}:${resources.gpuCount}` : resources.gpu;
      const key = `${app}\u0000${fn}\u0000${gpu ?? ""}`;
      const row = rows.get(key) ?? { app, function: fn, gpu, containers: 0, seconds: 0, costUsd: 0 };
      row.containers += containers;
      row.seconds += seconds;
      row.costUsd += containerCost(seconds, resources);
      rows.set(key, row);
    }
    for (const { app, function: fn, seconds } of this.#preparedSeconds(since, options.app, options.prepared ?? [], now)) {
      const key = `${app}\u0000${fn}\u0000`;
      const row = rows.get(key) ?? { app, function: fn, gpu: null, containers: 0, seconds: 0, costUsd: 0 };
      row.preparedSeconds = (row.preparedSeconds ?? 0) + seconds;
      rows.set(key, row);
    }
    return [...rows.values()].sort((a, b) => a.app.localeCompare(b.app) || a.function.localeCompare(b.function));
  }

  /** Prepared containers' seconds after `since` by app and function: stopped ones from the ledger, `kept` ones up to `now`. */
  #preparedSeconds(since: number, app: string | undefined, kept: ContainerLife[], now: number): { app: string; function: string; seconds: number }[] {
    const stopped = this.#db
      .prepare(
        `SELECT app, function, SUM(ended_at - MAX(started_at, ?)) AS ms FROM prepared WHERE ended_at > ? ${app ? "AND app = ?" : ""} GROUP BY app, function`,
      )
      .all(...(app ? [since, since, app] : [since, since])) as { app: string; function: string; ms: number }[];
    return [
      ...stopped.map((r) => ({ app: r.app, function: r.function, seconds: Math.max(0, r.ms) / 1000 })),
      ...kept
        .filter((l) => !app || l.app === app)
        .map((l) => ({ app: l.app, function: l.function, seconds: Math.max(0, now - Math.max(l.startedAt, since)) / 1000 })),
    ];
  }

  /** Dollars `app` has spent on this plane, running containers included. */
  spent(app: string, running: ContainerLife[] = []): number {
    return this.summary({ app, running }).reduce((sum, row) => sum + row.costUsd, 0);
  }

  close(): void {
    this.#db.close();
  }
}
