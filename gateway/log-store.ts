/**
 * An app's log lines: one SQLite-backed Durable Object per app (named by the
 * app), holding every line its functions printed in either tier, and
 * Tandem's own lines about its calls, for `TANDEM_LOG_RECENT_HOURS`; then in
 * R2 (gateway/log-archive.ts) until `TANDEM_LOG_RETENTION_DAYS` ends. One
 * object per app because every read names an app, and one app's lines arrive
 * batched (a write per isolate or plane every few hundred milliseconds), well
 * within what one object writes. An hourly alarm moves older lines to R2,
 * listing each object it writes in its own table, and deletes the objects
 * past their retention.
 */
import { DurableObject } from "cloudflare:workers";
import { LOG_LIMITS } from "../sdk/defaults.js";
import { encodeLogArchive, type LogArchiveRef } from "./log-archive.js";
import type { LogLine, LogSource } from "../sdk/protocol.js";
import { gatewayConfig } from "./config.js";
import type { Env } from "./env.js";

/** A stored line with its place in the app's log: later lines have larger `seq`s. */
export type StoredLogLine = LogLine & { seq: number };

/** What a read asks for: each filter optional; `after` only lines stored after that `seq`. */
export interface LogFilter {
  /** A function's, class method's or web label's lines; a class's name: its methods' and its containers' (`logLineOfFunction`). */
  function?: string;
  callId?: string;
  containerId?: string;
  /** An agent session's lines, by its fingerprint. */
  session?: string;
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
  session: string | null;
  tier: string;
  region: string;
  source: string;
};

/**
 * @example
 * const store = env.LOGS.get(env.LOGS.idFromName("shop"));
 * await store.append(JSON.stringify(lines));
 * const { lines: last } = await store.read({ callId, limit: 100 });
 */
export class LogStore extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  readonly #retentionMs: number;
  readonly #recentMs: number;
  /** The retention alarm is known to be set (until it runs and leaves nothing to sweep): an append need not ask. */
  #alarmSet = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    const config = gatewayConfig(env);
    this.#retentionMs = config.logRetentionMs;
    this.#recentMs = Math.min(config.logRecentMs, config.logRetentionMs);
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS lines (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, app TEXT NOT NULL, function TEXT, call_id TEXT,
        container_id TEXT, tier TEXT NOT NULL, region TEXT NOT NULL, source TEXT NOT NULL, text TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS lines_time ON lines (time);
      CREATE INDEX IF NOT EXISTS lines_call ON lines (call_id, seq);
      CREATE TABLE IF NOT EXISTS archives (key TEXT PRIMARY KEY, first_time INTEGER NOT NULL, last_time INTEGER NOT NULL, lines INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS archives_last_time ON archives (last_time);`);
    // Added after the table was first made: a log kept from before gets it empty.
    const columns = new Set(
      this.#sql
        .exec<{ name: string }>("SELECT name FROM pragma_table_info('lines')")
        .toArray()
        .map((c) => c.name),
    );
    if (!columns.has("session")) this.#sql.exec("ALTER TABLE lines ADD COLUMN session TEXT");
  }

  /**
   * Stores lines, in the order given; makes sure the retention alarm is set. `json` is the lines' JSON (an array of
   * `LogLine`, as `writeLines` in log-sink.ts makes it): one string crosses from the isolate to this object where an
   * array is copied object by object, about 3 µs a line less of workerd's thread (bench/README.md, "A plane's log
   * batch at the gateway"). One statement for the whole batch, the rows read by SQLite from that JSON: a statement a
   * line cost about 20 µs a line (bench/README.md, "A plane function's log line").
   */
  async append(json: string): Promise<void> {
    if (json === "[]") return;
    this.#sql.exec(
      `INSERT INTO lines (time, app, function, call_id, container_id, session, tier, region, source, text)
       SELECT value ->> 'time', value ->> 'app', value ->> 'function', value ->> 'callId', value ->> 'containerId', value ->> 'session',
              value ->> 'tier', value ->> 'region', value ->> 'source', value ->> 'text'
       FROM json_each(?)`,
      json,
    );
    if (this.#alarmSet) return;
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + this.#sweepMs());
    this.#alarmSet = true;
  }

  /**
   * The lines that match, oldest first: with `after`, the first `limit` stored after it (a follow's next lines);
   * without, the last `limit` by time. `lastSeq` is the newest line stored, matching or not: a follow goes on from there.
   * Without `after`, when fewer than `limit` match here, `archives` lists the R2 objects of older lines that may hold
   * more (those that end at or after `since`), newest first: `readLog` (gateway/log-archive.ts) reads them.
   */
  async read(filter: LogFilter): Promise<{ lines: StoredLogLine[]; lastSeq: number; archives: LogArchiveRef[] }> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    const add = (clause: string, value: string | number | undefined) => {
      if (value === undefined) return;
      where.push(clause);
      params.push(value);
    };
    // As `logLineOfFunction` (sdk/protocol.ts) reads it: the name itself, or a class's methods (`Class.` begins them).
    if (filter.function !== undefined) {
      where.push("(function = ? OR instr(function, ?) = 1)");
      params.push(filter.function, `${filter.function}.`);
    }
    add("call_id = ?", filter.callId);
    add("container_id = ?", filter.containerId);
    add("session = ?", filter.session);
    add("source = ?", filter.source);
    add("time >= ?", filter.since);
    // SQLite's lower() folds ASCII letters only: the search folded as JavaScript folds it finds "télé" in "TÉLÉ" no more
    // than "ÉCHEC" in "ÉCHEC" (its lower() is "Échec", the search's "échec"); folded as SQLite folds it, the second.
    if (filter.search !== undefined) {
      where.push("(instr(lower(text), ?) > 0 OR instr(lower(text), lower(?)) > 0)");
      params.push(filter.search.toLowerCase(), filter.search);
    }
    add("seq > ?", filter.after);
    const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
    const sql =
      filter.after === undefined
        ? `SELECT * FROM (SELECT * FROM lines ${clause} ORDER BY time DESC, seq DESC LIMIT ?) ORDER BY time, seq`
        : `SELECT * FROM lines ${clause} ORDER BY seq LIMIT ?`;
    const rows = this.#sql.exec<Row & { text: string }>(sql, ...params, filter.limit).toArray();
    const lastSeq = this.#sql.exec<{ seq: number | null }>("SELECT MAX(seq) AS seq FROM lines").one().seq ?? 0;
    const archives =
      filter.after === undefined && rows.length < filter.limit
        ? this.#sql
            .exec<{ key: string; first_time: number; last_time: number }>(
              "SELECT key, first_time, last_time FROM archives WHERE last_time >= ? ORDER BY last_time DESC, key DESC",
              filter.since ?? 0,
            )
            .toArray()
            .map((a) => ({ key: a.key, firstTime: a.first_time, lastTime: a.last_time }))
        : [];
    return { lines: rows.map(toLine), lastSeq, archives };
  }

  /**
   * Deletes the lines and R2 objects past their retention, moves the lines older than `TANDEM_LOG_RECENT_HOURS`
   * to R2; comes back while any line or object is left (at once when a sweep's worth was moved and more wait).
   */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.#sql.exec("DELETE FROM lines WHERE time < ?", now - this.#retentionMs);
    await this.#deleteExpiredArchives(now - this.#retentionMs);
    const done = await this.#archive(now - this.#recentMs);
    const left = this.#sql.exec<{ n: number }>("SELECT (SELECT COUNT(*) FROM lines) + (SELECT COUNT(*) FROM archives) AS n").one().n;
    if (left > 0) await this.ctx.storage.setAlarm(Date.now() + (done ? this.#sweepMs() : 1_000));
    this.#alarmSet = left > 0;
  }

  /**
   * Moves the lines printed before `cutoff` to R2, oldest first, one object per hour (or per
   * `LOG_LIMITS.archiveObjectLines`); each object is listed and its lines deleted in one transaction once R2 has
   * it. Lines stored while an object is written get larger `seq`s, so the delete leaves them. False when it
   * stopped at `LOG_LIMITS.archiveSweepLines` with more to move.
   */
  async #archive(cutoff: number): Promise<boolean> {
    for (let moved = 0; moved < LOG_LIMITS.archiveSweepLines;) {
      const first = this.#sql.exec<{ time: number }>("SELECT time FROM lines WHERE time < ? ORDER BY time LIMIT 1", cutoff).toArray()[0];
      if (!first) return true;
      const before = Math.min(cutoff, Math.floor(first.time / 3_600_000) * 3_600_000 + 3_600_000);
      const rows: StoredLogLine[] = [];
      let chars = 0;
      for (const row of this.#sql.exec<Row & { text: string }>(
        "SELECT * FROM lines WHERE time < ? ORDER BY time, seq LIMIT ?",
        before,
        LOG_LIMITS.archiveObjectLines,
      )) {
        rows.push(toLine(row));
        chars += row.text.length;
        if (chars >= LOG_LIMITS.archiveObjectChars) break;
      }
      const last = rows.at(-1)!;
      const maxSeq = rows.reduce((max, l) => Math.max(max, l.seq), 0);
      const { key, body } = await encodeLogArchive(this.ctx.id.toString(), rows);
      await this.env.BLOBS.put(key, body, { httpMetadata: { contentType: "application/gzip" } });
      this.ctx.storage.transactionSync(() => {
        this.#sql.exec("INSERT OR REPLACE INTO archives (key, first_time, last_time, lines) VALUES (?, ?, ?, ?)", key, rows[0]!.time, last.time, rows.length);
        this.#sql.exec(
          "DELETE FROM lines WHERE time < ? AND seq <= ? AND (time < ? OR (time = ? AND seq <= ?))",
          before,
          maxSeq,
          last.time,
          last.time,
          last.seq,
        );
      });
      moved += rows.length;
    }
    return false;
  }

  /** Deletes the R2 objects whose last line is older than `cutoff`, and their entries. */
  async #deleteExpiredArchives(cutoff: number): Promise<void> {
    for (;;) {
      const keys = this.#sql
        .exec<{ key: string }>("SELECT key FROM archives WHERE last_time < ? ORDER BY last_time LIMIT 1000", cutoff)
        .toArray()
        .map((a) => a.key);
      if (!keys.length) return;
      await this.env.BLOBS.delete(keys);
      this.ctx.storage.transactionSync(() => {
        for (const key of keys) this.#sql.exec("DELETE FROM archives WHERE key = ?", key);
      });
    }
  }

  /** Hourly; sooner when lines are kept, or moved, sooner than that. */
  #sweepMs(): number {
    return Math.min(LOG_LIMITS.retentionSweepMs, this.#recentMs);
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
    ...(row.session === null ? {} : { session: row.session }),
  };
}
