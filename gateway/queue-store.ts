/**
 * The `QueueStore` Durable Object (SQLite): one object per queue holds its
 * items in partitions, each first in, first out. A get takes the oldest items
 * of its partition that are not out on a lease: without a lease it deletes
 * them; with one it marks them leased until a time, and an item not acked by
 * then is the next one handed out again (its place kept).
 *
 * A get that finds nothing waits here, up to `QUEUE_LIMITS.maxWaitMs`, on a
 * waiter of its partition that a put (or a lease running out, through the
 * object's alarm) wakes: the item is handed over in the same turn as the put
 * that brought it. One more object of the class, the catalog, lists the
 * queues by name.
 */
import { DurableObject } from "cloudflare:workers";
import { QUEUE_LIMITS } from "../sdk/defaults.js";
import { NotFoundError, QueueFullError } from "../sdk/errors.js";
import type { EncodedValue, QueueAnswers, QueueInfo, QueueItem } from "../sdk/protocol.js";
import type { Env } from "./env.js";
import { withinBudget } from "./answer-budget.js";
import { answer, NameCatalog, type Outcome } from "./store-catalog.js";

/** The default partition's name in storage (a partition a request names is never empty). */
const DEFAULT_PARTITION = "";

/** A queue operation as the object takes it: values encoded as text and measured, partitions filled in. */
export type QueueCommand =
  | { op: "put"; values: string[]; partition: string }
  | { op: "get"; n: number; partition: string; timeoutMs: number; leaseSeconds?: number }
  | { op: "ack"; leases: string[] }
  | { op: "extend"; leases: string[]; leaseSeconds: number }
  | { op: "len"; partition: string; total: boolean }
  | { op: "peek"; partition: string; after: number; limit: number }
  | { op: "clear"; partition: string; all: boolean };

type ItemRow = { id: number; value: string; lease_id: string | null; lease_until: number | null };
type QueueRow = { name: string; created_at: number };

/** Items a get may take: not leased, or leased no longer. */
const AVAILABLE = "(lease_until IS NULL OR lease_until <= ?)";

export class QueueStore extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  readonly #catalog: NameCatalog;
  /** Gets waiting for an item, by partition. */
  readonly #waiters = new Map<string, Set<() => void>>();
  #alarmAt: number | null | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL, created_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY AUTOINCREMENT, part TEXT NOT NULL, value TEXT NOT NULL, lease_id TEXT, lease_until INTEGER);
      CREATE INDEX IF NOT EXISTS items_part ON items(part, id);
      CREATE INDEX IF NOT EXISTS items_lease ON items(lease_until) WHERE lease_until IS NOT NULL;
      CREATE UNIQUE INDEX IF NOT EXISTS items_lease_id ON items(lease_id) WHERE lease_id IS NOT NULL;`);
    this.#catalog = new NameCatalog(this.#sql, QUEUE_LIMITS.maxQueues);
  }

  async create(name: string): Promise<Outcome<{ created: boolean; info: QueueInfo }>> {
    const existing = this.#queue();
    if (existing) return { ok: { created: false, info: this.#info(existing) } };
    this.#sql.exec("INSERT INTO queue (id, name, created_at) VALUES (1, ?, ?)", name, Date.now());
    return { ok: { created: true, info: this.#info(this.#queue()!) } };
  }

  async info(name: string): Promise<Outcome<QueueInfo>> {
    return answer(() => this.#info(this.#need(name)));
  }

  /** Forgets the queue and its items; waiting gets answer empty. */
  async drop(name: string): Promise<Outcome<QueueInfo>> {
    const outcome = answer(() => {
      const info = this.#info(this.#need(name));
      this.#sql.exec("DELETE FROM items; DELETE FROM queue;");
      return info;
    });
    for (const partition of [...this.#waiters.keys()]) this.#wake(partition);
    return outcome;
  }

  async run(name: string, command: QueueCommand): Promise<Outcome<QueueAnswers[QueueCommand["op"]]>> {
    if (command.op === "get") return this.#get(name, command);
    const outcome = answer(() => this.ctx.storage.transactionSync(() => this.#run(this.#need(name), command)));
    if ("ok" in outcome && command.op === "put") this.#wake(command.partition);
    return outcome;
  }

  /** A lease ran out: wake the gets waiting on its partition, then set the alarm for the next. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    const parts = this.#sql.exec<{ part: string }>("SELECT DISTINCT part FROM items WHERE lease_until <= ?", now).toArray();
    this.#sql.exec("UPDATE items SET lease_id = NULL, lease_until = NULL WHERE lease_until <= ?", now);
    for (const { part } of parts) this.#wake(part);
    this.#alarmAt = null;
    await this.#scheduleAlarm();
  }

  async catalogAdd(name: string, createdAt: number): Promise<boolean> {
    return this.#catalog.add(name, createdAt);
  }

  async catalogRemove(name: string): Promise<void> {
    this.#catalog.remove(name);
  }

  async catalogList(): Promise<string[]> {
    return this.#catalog.list();
  }

  // -------------------------------------------------------------------------

  /** Takes items, waiting for one up to the command's timeout: woken by a put to the partition, or a lease running out. */
  async #get(name: string, command: Extract<QueueCommand, { op: "get" }>): Promise<Outcome<QueueAnswers["get"]>> {
    const deadline = Date.now() + Math.min(command.timeoutMs, QUEUE_LIMITS.maxWaitMs);
    for (;;) {
      const outcome = answer(() => this.ctx.storage.transactionSync(() => this.#take(this.#need(name), command)));
      if ("error" in outcome || outcome.ok.items.length > 0) {
        if ("ok" in outcome && command.leaseSeconds !== undefined) await this.#scheduleAlarm();
        return outcome;
      }
      const left = deadline - Date.now();
      if (left <= 0) return outcome;
      await this.#waitFor(command.partition, left);
    }
  }

  #take(_queue: QueueRow, command: Extract<QueueCommand, { op: "get" }>): QueueAnswers["get"] {
    const now = Date.now();
    const cursor = this.#sql.exec<ItemRow>(
      `SELECT id, value FROM items WHERE part = ? AND ${AVAILABLE} ORDER BY id LIMIT ?`,
      command.partition,
      now,
      command.n,
    );
    const { taken: rows, more } = withinBudget(cursor, (row) => row.value.length, QUEUE_LIMITS.maxAnswerChars, command.n); // the rest stay, for the next get
    const most = more ? { more: true as const } : {};
    if (command.leaseSeconds === undefined) {
      for (const row of rows) this.#sql.exec("DELETE FROM items WHERE id = ?", row.id);
      return { items: rows.map((row) => ({ id: row.id, value: JSON.parse(row.value) as EncodedValue })), ...most };
    }
    const until = now + Math.round(command.leaseSeconds * 1000);
    const items: QueueItem[] = [];
    for (const row of rows) {
      const lease = `${row.id}.${crypto.randomUUID()}`;
      this.#sql.exec("UPDATE items SET lease_id = ?, lease_until = ? WHERE id = ?", lease, until, row.id);
      items.push({ id: row.id, value: JSON.parse(row.value) as EncodedValue, lease, leaseUntil: until });
    }
    return { items, ...most };
  }

  #run(queue: QueueRow, command: Exclude<QueueCommand, { op: "get" }>): QueueAnswers[QueueCommand["op"]] {
    const now = Date.now();
    switch (command.op) {
      case "put": {
        const held = this.#count(command.partition);
        if (held + command.values.length > QUEUE_LIMITS.maxItemsPerPartition) {
          throw new QueueFullError(
            `queue "${queue.name}"${partitionWords(command.partition)} holds ${held} items; a partition holds at most ${QUEUE_LIMITS.maxItemsPerPartition}, so ${command.values.length} more do not fit (get or clear some first)`,
            { queue: queue.name, limit: "maxItemsPerPartition", maxItems: QUEUE_LIMITS.maxItemsPerPartition, held },
          );
        }
        if (held === 0) {
          const partitions = this.#sql.exec<{ n: number }>("SELECT COUNT(DISTINCT part) AS n FROM items").one().n;
          if (partitions >= QUEUE_LIMITS.maxPartitions) {
            throw new QueueFullError(
              `queue "${queue.name}" holds items in ${partitions} partitions, the most one queue holds; empty one before putting into another`,
              { queue: queue.name, limit: "maxPartitions", maxPartitions: QUEUE_LIMITS.maxPartitions },
            );
          }
        }
        for (const value of command.values) this.#sql.exec("INSERT INTO items (part, value) VALUES (?, ?)", command.partition, value);
        return { put: command.values.length };
      }
      case "ack": {
        let acked = 0;
        for (const lease of command.leases) acked += this.#sql.exec("DELETE FROM items WHERE lease_id = ? AND lease_until > ?", lease, now).rowsWritten;
        return { acked };
      }
      case "extend": {
        // The alarm set for a lease's old end finds it still held, and is set again for the soonest end.
        const until = now + Math.round(command.leaseSeconds * 1000);
        let extended = 0;
        for (const lease of command.leases) {
          // Counted by the rows it answers: `rowsWritten` counts the index entries it rewrites too.
          extended += this.#sql
            .exec("UPDATE items SET lease_until = ? WHERE lease_id = ? AND lease_until > ? RETURNING id", until, lease, now)
            .toArray().length;
        }
        return { extended, leaseUntil: until };
      }
      case "len": {
        const where = command.total ? "" : "WHERE part = ?";
        const args = command.total ? [now] : [now, command.partition];
        const { len, leased } = this.#sql
          .exec<{
            len: number | null;
            leased: number | null;
          }>(
            `SELECT SUM(CASE WHEN ${AVAILABLE} THEN 1 ELSE 0 END) AS len, SUM(CASE WHEN ${AVAILABLE} THEN 0 ELSE 1 END) AS leased FROM items ${where}`,
            now,
            ...args,
          )
          .one();
        return { len: len ?? 0, leased: leased ?? 0 };
      }
      case "peek": {
        const rows = this.#sql.exec<ItemRow>(
          `SELECT id, value FROM items WHERE part = ? AND id > ? AND ${AVAILABLE} ORDER BY id LIMIT ?`,
          command.partition,
          command.after,
          now,
          command.limit + 1,
        );
        const { taken: page, more } = withinBudget(rows, (row) => row.value.length, QUEUE_LIMITS.maxAnswerChars, command.limit);
        const items = page.map((row) => ({ id: row.id, value: JSON.parse(row.value) as EncodedValue }));
        return more ? { items, next: page[page.length - 1]!.id } : { items };
      }
      case "clear": {
        const cursor = command.all ? this.#sql.exec("DELETE FROM items") : this.#sql.exec("DELETE FROM items WHERE part = ?", command.partition);
        return { removed: cursor.rowsWritten };
      }
    }
  }

  #count(partition: string): number {
    return this.#sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM items WHERE part = ?", partition).one().n;
  }

  #queue(): QueueRow | undefined {
    return this.#sql.exec<QueueRow>("SELECT name, created_at FROM queue WHERE id = 1").toArray()[0];
  }

  #need(name: string): QueueRow {
    const queue = this.#queue();
    if (!queue) throw missingQueue(name);
    return queue;
  }

  #info(queue: QueueRow): QueueInfo {
    const now = Date.now();
    const row = this.#sql
      .exec<{
        len: number | null;
        leased: number | null;
        partitions: number;
      }>(
        `SELECT SUM(CASE WHEN ${AVAILABLE} THEN 1 ELSE 0 END) AS len, SUM(CASE WHEN ${AVAILABLE} THEN 0 ELSE 1 END) AS leased, COUNT(DISTINCT part) AS partitions FROM items`,
        now,
        now,
      )
      .one();
    return { name: queue.name, len: row.len ?? 0, leased: row.leased ?? 0, partitions: row.partitions, createdAt: queue.created_at };
  }

  #waitFor(partition: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.#waiters.get(partition) ?? new Set();
      this.#waiters.set(partition, waiters);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(done);
        if (waiters.size === 0) this.#waiters.delete(partition);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiters.add(done);
    });
  }

  #wake(partition: string): void {
    for (const done of [...(this.#waiters.get(partition) ?? [])]) done();
  }

  /** Sets the alarm for the soonest lease to run out, unless it is set for sooner. */
  async #scheduleAlarm(): Promise<void> {
    const next = this.#sql.exec<{ t: number | null }>("SELECT MIN(lease_until) AS t FROM items WHERE lease_until IS NOT NULL").one().t;
    if (next === null) return;
    if (this.#alarmAt === undefined) this.#alarmAt = await this.ctx.storage.getAlarm();
    if (this.#alarmAt === null || next < this.#alarmAt) {
      await this.ctx.storage.setAlarm(next);
      this.#alarmAt = next;
    }
  }
}

/**
 * The 404 of a queue that is not there. The object knows its name, not its environment: the gateway, which does,
 * says it again with `where` (`lookedIn`), so that the message names the environment and the command's `--env`.
 */
export function missingQueue(name: string, where: { words: string; flag: string } = { words: "", flag: "" }): NotFoundError {
  return new NotFoundError(
    `no queue named "${name}"${where.words} (tandem queue create ${name}${where.flag} makes it; Queue.fromName("${name}", { createIfMissing: true }) and POST /v1/queues too)`,
    { queue: name, missing: true },
  );
}

function partitionWords(partition: string): string {
  return partition === DEFAULT_PARTITION ? "" : ` (partition "${partition}")`;
}

export { DEFAULT_PARTITION };
