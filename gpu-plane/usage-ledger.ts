/**
 * The plane's usage ledger: one row per container life (app, function, GPU
 * type and count, CPU, memory, start and stop), in SQLite on the plane's
 * disk, priced with `sdk/pricing.ts`; and, apart, the time its prepared
 * containers were kept, shown and not billed. `tandem usage` reads it through the
 * gateway; spend caps read it before a container starts.
 *
 * A row is written as its container starts, open (no stop yet, its last sight
 * refreshed every `seenEveryMs`), and closed as the container stops. A plane
 * that dies (SIGKILL, a crash) leaves its rows open, and its containers,
 * which may run on: its next run on the same folder closes each row as it removes the
 * container, at the time the engine says the container stopped, or removed
 * it (`closeLeftover`); one the engine no longer knows, at its last sight
 * (`closeLost`).
 */
import Database from "better-sqlite3";
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { NotConfiguredError } from "../sdk/errors.js";
import { parseGpuSpec, formatGpu, type GpuType } from "../sdk/gpu.js";
import { containerCost } from "../sdk/pricing.js";
import { CONTAINER_LABELS, type UsageRow } from "../sdk/protocol.js";
import type { RemovedContainer } from "./drivers/driver.js";

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

/** What prices a container, as it is written on it (`CONTAINER_LABELS`), for a later run of its plane to read back. */
export function pricingLabels(resources: Pick<ContainerLife, "gpu" | "gpuCount" | "cpu" | "memoryMiB">): Record<string, string> {
  return {
    ...(resources.gpu ? { [CONTAINER_LABELS.gpu]: formatGpu({ type: resources.gpu, count: resources.gpuCount }) } : {}),
    [CONTAINER_LABELS.cpu]: String(resources.cpu),
    [CONTAINER_LABELS.memoryMiB]: String(resources.memoryMiB),
  };
}

/** A removed container's life read from its labels; undefined where they do not say what prices it (an older plane's). */
function lifeFromLabels(container: RemovedContainer): (ContainerLife & { endedAt: number }) | undefined {
  const labels = container.labels;
  const [containerId, app, fn] = [labels[CONTAINER_LABELS.container], labels[CONTAINER_LABELS.app], labels[CONTAINER_LABELS.function]];
  const cpu = Number(labels[CONTAINER_LABELS.cpu]);
  const memoryMiB = Number(labels[CONTAINER_LABELS.memoryMiB]);
  if (!containerId || !app || !fn || !(cpu > 0) || !(memoryMiB > 0)) return undefined;
  let gpu: { type: GpuType; count: number } | undefined;
  try {
    gpu = labels[CONTAINER_LABELS.gpu] ? parseGpuSpec(labels[CONTAINER_LABELS.gpu]) : undefined;
  } catch {
    return undefined;
  }
  return {
    containerId,
    app,
    function: fn,
    gpu: gpu?.type ?? null,
    gpuCount: gpu?.count ?? 0,
    cpu,
    memoryMiB,
    startedAt: container.startedAt,
    endedAt: container.endedAt,
  };
}

/**
 * Runs a write of the usage ledger about `containerId`; one that fails (a disk that refuses it) is said in the plane's
 * output and goes no further: the container and its calls go on. Returns what the write returned, or undefined.
 * @example
 * writeUsage(log, worker.id, () => usage.record({ ...worker.life, endedAt: Date.now() }));
 */
export function writeUsage<T>(log: (line: string) => void, containerId: string, write: () => T): T | undefined {
  try {
    return write();
  } catch (err) {
    log(`[plane] could not record the usage of ${containerId}: ${(err as Error).message}`);
    return undefined;
  }
}

/** The two tables, as this version writes them: `ended_at` NULL while the row is open. */
const TABLES = `CREATE TABLE IF NOT EXISTS containers (
  container_id TEXT PRIMARY KEY, app TEXT NOT NULL, function TEXT NOT NULL, gpu TEXT, gpu_count INTEGER NOT NULL,
  cpu REAL NOT NULL, memory_mib INTEGER NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER, plane_run TEXT, seen_at INTEGER);
  CREATE TABLE IF NOT EXISTS prepared (
  container_id TEXT PRIMARY KEY, app TEXT NOT NULL, function TEXT NOT NULL, cpu REAL NOT NULL, memory_mib INTEGER NOT NULL,
  started_at INTEGER NOT NULL, ended_at INTEGER, plane_run TEXT, seen_at INTEGER);`;
const INDEXES = `CREATE INDEX IF NOT EXISTS containers_app ON containers(app, ended_at);
  CREATE INDEX IF NOT EXISTS containers_open ON containers(plane_run) WHERE ended_at IS NULL;
  CREATE INDEX IF NOT EXISTS prepared_app ON prepared(app, ended_at);
  CREATE INDEX IF NOT EXISTS prepared_open ON prepared(plane_run) WHERE ended_at IS NULL;`;
const CONTAINER_COLUMNS = "container_id, app, function, gpu, gpu_count, cpu, memory_mib, started_at, ended_at, plane_run, seen_at";
const PREPARED_COLUMNS = "container_id, app, function, cpu, memory_mib, started_at, ended_at, plane_run, seen_at";

export interface UsageLedgerOptions {
  /** How often the open rows' last sight is written (one statement for all of them); none: only when `seen` is called. */
  seenEveryMs?: number;
}

/**
 * @example
 * const usage = new UsageLedger(join(stateDir, "usage.sqlite"), { seenEveryMs: 30_000 });
 * usage.open(life); // as it starts
 * usage.record({ ...life, endedAt: Date.now() }); // as it stops
 */
export class UsageLedger {
  readonly #db: Database.Database;
  /** This run of the plane: rows open under another are its previous runs', whose containers it removes. */
  readonly #run = randomBytes(8).toString("hex");
  readonly #seenTimer: NodeJS.Timeout | undefined;

  constructor(path: string, options: UsageLedgerOptions = {}) {
    mkdirSync(dirname(path), { recursive: true });
    this.#db = openSqlite(path);
    this.#db.pragma("journal_mode = WAL");
    this.#db.transaction(() => this.#migrate())();
    if (options.seenEveryMs) this.#seenTimer = setInterval(() => this.#seeSafely(), options.seenEveryMs).unref();
  }

  /**
   * Before open rows, `ended_at` was NOT NULL (a row was written once its container stopped): such a file's tables are
   * copied into this version's, their rows as they were (all closed).
   */
  #migrate(): void {
    const columns = (table: string) => this.#db.prepare("SELECT name FROM pragma_table_info(?)").pluck().all(table) as string[];
    const old = (["containers", "prepared"] as const).filter((t) => columns(t).length > 0 && !columns(t).includes("plane_run"));
    for (const table of old) this.#db.exec(`ALTER TABLE ${table} RENAME TO ${table}_before_open_rows`);
    this.#db.exec(TABLES);
    for (const table of old) {
      const kept = table === "containers" ? CONTAINER_COLUMNS : PREPARED_COLUMNS;
      const copied = kept.replace(", plane_run, seen_at", "");
      this.#db.exec(`INSERT INTO ${table} (${copied}) SELECT ${copied} FROM ${table}_before_open_rows; DROP TABLE ${table}_before_open_rows;`);
    }
    this.#db.exec(INDEXES);
  }

  /** Opens a container's row as its billed time starts: closed by `record` as it stops. */
  open(life: ContainerLife): void {
    this.#db
      .prepare(`INSERT OR REPLACE INTO containers (${CONTAINER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)`)
      .run(life.containerId, life.app, life.function, life.gpu, life.gpuCount, life.cpu, life.memoryMiB, life.startedAt, this.#run, life.startedAt);
  }

  /** Records a container's whole life once it has stopped, closing its row. */
  record(life: ContainerLife & { endedAt: number }): void {
    this.#db
      .prepare(`INSERT OR REPLACE INTO containers (${CONTAINER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(life.containerId, life.app, life.function, life.gpu, life.gpuCount, life.cpu, life.memoryMiB, life.startedAt, life.endedAt, this.#run, life.endedAt);
  }

  /**
   * A container started for its function's cold starts is kept, paused (prepared-containers.ts): its row, opened as it
   * started, is no longer billed; an open row of the time it is kept takes its place, closed by `recordPrepared`.
   */
  keepPrepared(life: Omit<ContainerLife, "gpu" | "gpuCount">): void {
    this.#db.transaction(() => {
      this.#db.prepare("DELETE FROM containers WHERE container_id = ? AND ended_at IS NULL").run(life.containerId);
      this.#db
        .prepare(`INSERT OR REPLACE INTO prepared (${PREPARED_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)`)
        .run(life.containerId, life.app, life.function, life.cpu, life.memoryMiB, life.startedAt, this.#run, life.startedAt);
    })();
  }

  /**
   * Records the time a prepared container (prepared-containers.ts) was kept for its function's cold starts: from its
   * start until a cold start took it, or it was stopped unused. Kept apart from the containers' lives: the plane
   * chose to keep it, so it is shown (`preparedSeconds`), not billed.
   */
  recordPrepared(life: Omit<ContainerLife, "gpu" | "gpuCount"> & { endedAt: number }): void {
    this.#db
      .prepare(`INSERT OR REPLACE INTO prepared (${PREPARED_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(life.containerId, life.app, life.function, life.cpu, life.memoryMiB, life.startedAt, life.endedAt, this.#run, life.endedAt);
  }

  /** Writes that this run's open rows' containers were up at `now`: where a dead run's rows end when nothing says more. */
  seen(now = Date.now()): void {
    for (const table of ["containers", "prepared"]) {
      this.#db.prepare(`UPDATE ${table} SET seen_at = ? WHERE plane_run = ? AND ended_at IS NULL`).run(now, this.#run);
    }
  }

  #seeSafely(): void {
    try {
      this.seen();
    } catch {
      // A disk that refuses a write now: the next one, or the stop of each container, writes it.
    }
  }

  /**
   * Closes the row of a container a previous run of this plane left behind, now removed (leftovers.ts), at the time it
   * stopped; one with no row (the plane died as it started it) is recorded from its labels. False when there was
   * nothing to close (its row was closed as it stopped), or its labels do not say what prices it.
   */
  closeLeftover(container: RemovedContainer): boolean {
    const id = container.labels[CONTAINER_LABELS.container];
    if (!id) return false;
    for (const table of ["containers", "prepared"]) {
      const closed = this.#db
        .prepare(`UPDATE ${table} SET ended_at = MAX(started_at, ?), seen_at = ? WHERE container_id = ? AND ended_at IS NULL AND plane_run IS NOT ?`)
        .run(container.endedAt, container.endedAt, id, this.#run);
      if (closed.changes > 0) return true;
    }
    const known = this.#db.prepare("SELECT 1 FROM containers WHERE container_id = ? UNION ALL SELECT 1 FROM prepared WHERE container_id = ?").get(id, id);
    const life = known ? undefined : lifeFromLabels(container);
    if (!life) return false;
    this.#db
      .prepare(`INSERT INTO containers (${CONTAINER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)`)
      .run(life.containerId, life.app, life.function, life.gpu, life.gpuCount, life.cpu, life.memoryMiB, life.startedAt, life.endedAt, life.endedAt);
    return true;
  }

  /**
   * Closes the rows previous runs left open whose containers were not found (the engine lost them, or the process
   * driver's ended with their plane), at their last sight; once the leftovers are removed. Returns how many.
   */
  closeLost(): number {
    let closed = 0;
    for (const table of ["containers", "prepared"]) {
      closed += this.#db
        .prepare(`UPDATE ${table} SET ended_at = COALESCE(seen_at, started_at) WHERE ended_at IS NULL AND plane_run IS NOT ?`)
        .run(this.#run).changes;
    }
    return closed;
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
    clearInterval(this.#seenTimer);
    this.#db.close();
  }
}
