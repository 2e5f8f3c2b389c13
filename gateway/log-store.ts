/**
 * An app's log lines: one SQLite-backed Durable Object per app (named by the
 * app), holding every line its functions printed in either tier, and
 * Tandem's own lines about its calls, for `TANDEM_LOG_RETENTION_DAYS`. One
 * object per app because every read names an app, and one app's lines arrive
 * batched (a write per isolate or plane every few hundred milliseconds), well
 * within what one object writes; an alarm deletes lines past their retention.
 */
import { DurableObject } from "cloudflare:workers";
import { LOG_LIMITS } from "../sdk/defaults.js";
import type { LogLine, LogSource } from "../sdk/protocol.js";
import { gatewayConfig } from "./config.js";
import type { Env } from "./env.js";

/** A stored line with its place in the app's log: later lines have larger `seq`s. */
export type StoredLogLine = LogLine & { seq: number };

/** What a read asks for: each filter optional; `after` only lines stored after that `seq`. */
export interface LogFilter {
  function?: string;
  callId?: string;
  containerId?: string;
  source?: LogSource;
  /** Lines printed at or after this time (ms since the epoch). */
  since?: number;
  /** Lines that contain this text, in any case. */
  search?: string;
  after?: number;
  limit: number;
}

type Row = {
  seq: number;
  time: number;
  app: string;
  function: string | null;
  call_id: string | null;
  container_id: string | null;
  tier: string;
  region: string;
  source: string;
};

/**
 * @example
 * const store = env.LOGS.get(env.LOGS.idFromName("shop"));
 * await store.append(lines);
 * const { lines: last } = await store.read({ callId, limit: 100 });
 */
export class LogStore extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  readonly #retentionMs: number;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#retentionMs = gatewayConfig(env).logRetentionMs;
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS lines (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, app TEXT NOT NULL, function TEXT, call_id TEXT,
        container_id TEXT, tier TEXT NOT NULL, region TEXT NOT NULL, source TEXT NOT NULL, text TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS lines_time ON lines (time);
      CREATE INDEX IF NOT EXISTS lines_call ON lines (call_id, seq);`);
  }

  /** Stores lines, in the order given; makes sure the retention alarm is set. */
  async append(lines: LogLine[]): Promise<void> {
    if (lines.length === 0) return;
    this.ctx.storage.transactionSync(() => {
      for (const l of lines) {
        this.#sql.exec(
          "INSERT INTO lines (time, app, function, call_id, container_id, tier, region, source, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
          l.time,
          l.app,
          l.function,
          l.callId,
          l.containerId,
          l.tier,
          l.region,
          l.source,
          l.text,
        );
      }
    });
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + this.#sweepMs());
  }

  /**
   * The lines that match, oldest first: with `after`, the first `limit` stored after it (a follow's next lines);
   * without, the last `limit` by time. `lastSeq` is the newest line stored, matching or not: a follow goes on from there.
   */
  async read(filter: LogFilter): Promise<{ lines: StoredLogLine[]; lastSeq: number }> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    const add = (clause: string, value: string | number | undefined) => {
      if (value === undefined) return;
      where.push(clause);
      params.push(value);
    };
    add("function = ?", filter.function);
    add("call_id = ?", filter.callId);
    add("container_id = ?", filter.containerId);
    add("source = ?", filter.source);
    add("time >= ?", filter.since);
    add("instr(lower(text), ?) > 0", filter.search?.toLowerCase());
    add("seq > ?", filter.after);
    const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
    const sql =
      filter.after === undefined
        ? `SELECT * FROM (SELECT * FROM lines ${clause} ORDER BY time DESC, seq DESC LIMIT ?) ORDER BY time, seq`
        : `SELECT * FROM lines ${clause} ORDER BY seq LIMIT ?`;
    const rows = this.#sql.exec<Row & { text: string }>(sql, ...params, filter.limit).toArray();
    const lastSeq = this.#sql.exec<{ seq: number | null }>("SELECT MAX(seq) AS seq FROM lines").one().seq ?? 0;
    return { lines: rows.map(toLine), lastSeq };
  }

  /** Deletes the lines past their retention; comes back while any are left. */
  override async alarm(): Promise<void> {
    this.#sql.exec("DELETE FROM lines WHERE time < ?", Date.now() - this.#retentionMs);
    const left = this.#sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM lines").one().n;
    if (left > 0) await this.ctx.storage.setAlarm(Date.now() + this.#sweepMs());
  }

  /** Hourly; sooner when lines are kept for less than an hour. */
  #sweepMs(): number {
    return Math.min(LOG_LIMITS.retentionSweepMs, this.#retentionMs);
  }
}

function toLine(row: Row & { text: string }): StoredLogLine {
  return {
    seq: row.seq,
    time: row.time,
    app: row.app,
    function: row.function,
    callId: row.call_id,
    containerId: row.container_id,
    tier: row.tier as LogLine["tier"],
    region: row.region,
    source: row.source as LogSource,
    text: row.text,
  };
}
