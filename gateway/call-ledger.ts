/**
 * The call ledger: a SQLite-backed Durable Object (one per shard) holding
 * every call's status, attempts, result or error, for at least 7 days after
 * it ends. `get` long-polls here. Spawned calls are written before they run
 * and carry a lease that their runner renews; when a lease lapses (the runner
 * was lost, for example in a restart) the ledger's alarm runs the call again,
 * so a spawned call's result is never lost. It runs it with the function the
 * Worker's entry hands it (`setResumeCall`), not by importing the executor,
 * which writes to the ledger, from where the record says it got to: which
 * attempt had begun (the runner marks each one with `start` before it runs
 * it), and on which plane.
 *
 * A lapsed lease is taken for a lost runner only when no runner of this
 * isolate holds the call (gateway/live-runners.ts): one that the ledger
 * resumed runs here, and a loaded process runs its renewals late. A call's
 * `attempts` only grows: an end record counts at least the attempts marked
 * begun, whichever runner writes it.
 *
 * A call made with an idempotency key keeps it in its row (unique), so a
 * second request with the key finds the call instead of making another, for
 * as long as the record is kept.
 *
 * A call made without one is recorded while it runs only once it has run a
 * while (`DELIVERY_DEFAULTS.keylessRecordWaitMs`), with no arguments: its caller
 * is gone with its runner, and it promised no run after a loss, so a lapsed
 * lease ends it as failed, saying its gateway was lost, and it is not run again.
 *
 * An edge call's end also adds to its function's metrics (gateway/edge-metrics.ts), in the same write that records
 * it: cumulative counts in a table of their own, which the expiry of calls never touches.
 */
import { DurableObject } from "cloudflare:workers";
import { boundedWireError, type WireError } from "../sdk/errors.js";
import { API_LIMITS, DELIVERY_DEFAULTS } from "../sdk/defaults.js";
import {
  BLOB_KEYS,
  TERMINAL_STATUSES,
  callIdTime,
  type CallKind,
  type CallRecord,
  type CallStatus,
  type DashboardCallRow,
  type DashboardDurationCount,
  type DashboardSeriesPoint,
  type EncodedValue,
  type PlaneRunTimings,
} from "../sdk/protocol.js";
import { CallArgs } from "./call-args.js";
import { edgeIncrements, type EdgeMetricRow } from "./edge-metrics.js";
import { metricsExporter } from "./metrics-exporter.js";
import type { CallRowsQuery, FinishedCall, KeyTaken, LedgerApi, NewCall } from "./call-ledger-client.js";
import { cancelEdgeAttempts } from "./edge-call.js";
import { gatewayConfig, type GatewayConfig } from "./config.js";
import type { Env } from "./env.js";
import { holdRunner, runnerAliveHere } from "./live-runners.js";
import { keepEdgeLine } from "./log-sink.js";
import { registry, type RegisteredFunction } from "./registry.js";
import { runStore, type RunContext } from "./run-context.js";

/**
 * Where a recorded call got to when its runner was lost: how many attempts
 * had begun, whether the last one was under way (the call was `running`), and
 * the plane that attempt was last sent to.
 */
export interface ResumePoint {
  attempts: number;
  running: boolean;
  plane: string | null;
  /** Attempt `attempts` failed, and its retry is due then (`retrying`): the next attempt uses a retry, not a lost one. */
  retryAt?: number;
}

/**
 * Runs a resumed call to its end and records its outcome in `ledger`, from
 * where it got to, its arguments as they were stored: the executor's
 * `runSpawned`.
 */
export type ResumeCall = (
  rc: RunContext,
  ledger: LedgerApi,
  fn: RegisteredFunction,
  id: string,
  args: CallArgs,
  from: ResumePoint,
  createdAt: number,
  kind: CallKind,
) => Promise<void>;

let resumeCall: ResumeCall | undefined;

/**
 * Hands the ledger how to run a call whose runner was lost; set once when the
 * Worker module loads.
 *
 * @example setResumeCall(runSpawned);
 */
export function setResumeCall(resume: ResumeCall): void {
  resumeCall = resume;
}

type Row = {
  id: string;
  app: string;
  fn: string;
  kind: string;
  status: string;
  attempts: number;
  input: string | null;
  result: string | null;
  error: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  lease_until: number | null;
  expires_at: number | null;
  plane: string | null;
  scheduled_at: number | null;
  idem_key: string | null;
  plane_timings: string | null;
  retry_at: number | null;
};

const NOT_ENDED = "status IN ('pending', 'running')";

/**
 * A map input that had ended before its map was cancelled (`cancelMap`) keeps its outcome: a keyed map writes its
 * inputs' records as it ends, so the cancel found it not yet recorded as ended.
 */
const ENDED_BEFORE_MAP_CANCEL =
  "calls.kind = 'map' AND calls.status = 'cancelled' AND excluded.status <> 'cancelled' AND excluded.finished_at <= calls.finished_at";

/** Resumed calls named one by one in the log, per alarm; the rest are counted. */
const RESUMES_LOGGED = 10;

export class CallLedger extends DurableObject<Env> implements LedgerApi {
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #sql: SqlStorage;
  readonly #config: GatewayConfig;
  readonly #leaseMs: number;
  /** When the alarm is set for: undefined until read, null when none is. */
  #alarmAt: number | null | undefined;
  /** This object told the OTLP metrics exporter to run (gateway/metrics-exporter.ts): once per object's life. */
  #exportArmed = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#config = gatewayConfig(env); // this object's entry: parsed here, for everything it runs
    this.#leaseMs = this.#config.callLeaseMs;
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS calls (
        id TEXT PRIMARY KEY, app TEXT NOT NULL, fn TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, input TEXT, result TEXT, error TEXT,
        created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER, lease_until INTEGER, expires_at INTEGER);
      CREATE INDEX IF NOT EXISTS calls_lease ON calls(lease_until) WHERE lease_until IS NOT NULL;
      CREATE INDEX IF NOT EXISTS calls_expiry ON calls(expires_at) WHERE expires_at IS NOT NULL;`);
    // Added after the first release: the plane a spawned call runs on, so a cancel can reach it; a scheduled run's due time.
    const columns = new Set(
      this.#sql
        .exec<{ name: string }>("PRAGMA table_info(calls)")
        .toArray()
        .map((c) => c.name),
    );
    if (!columns.has("plane")) this.#sql.exec("ALTER TABLE calls ADD COLUMN plane TEXT");
    if (!columns.has("scheduled_at")) this.#sql.exec("ALTER TABLE calls ADD COLUMN scheduled_at INTEGER");
    // An idempotency key names one call, for as long as the call's record is kept (it goes with the row).
    if (!columns.has("idem_key")) this.#sql.exec("ALTER TABLE calls ADD COLUMN idem_key TEXT");
    // Where a plane call's last attempt spent its time on its plane (PlaneRunTimings, JSON), for the dashboard.
    if (!columns.has("plane_timings")) this.#sql.exec("ALTER TABLE calls ADD COLUMN plane_timings TEXT");
    // When the retry of a failed attempt is due, while the call waits for it: that attempt ended, and is no lost one.
    if (!columns.has("retry_at")) this.#sql.exec("ALTER TABLE calls ADD COLUMN retry_at INTEGER");
    this.#sql.exec("CREATE UNIQUE INDEX IF NOT EXISTS calls_key ON calls(idem_key) WHERE idem_key IS NOT NULL");
    // The dashboard's reads: an app's calls, or one function's, newest first, and their counts over time.
    this.#sql.exec(`
      CREATE INDEX IF NOT EXISTS calls_app_time ON calls(app, created_at);
      CREATE INDEX IF NOT EXISTS calls_fn_time ON calls(app, fn, created_at);`);
    // Edge functions' metrics (gateway/edge-metrics.ts): cumulative, kept apart from the calls, which expire.
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS edge_metrics (
        app TEXT NOT NULL, fn TEXT NOT NULL, series TEXT NOT NULL, label TEXT NOT NULL, value REAL NOT NULL,
        PRIMARY KEY (app, fn, series, label)) WITHOUT ROWID;`);
  }

  /** This shard's cumulative counts of its edge functions' calls. */
  async metricRows(): Promise<EdgeMetricRow[]> {
    return this.#sql
      .exec<{ app: string; fn: string; series: EdgeMetricRow["series"]; label: string; value: number }>(
        "SELECT app, fn, series, label, value FROM edge_metrics",
      )
      .toArray()
      .map((row) => ({ app: row.app, function: row.fn, series: row.series, label: row.label, value: row.value }));
  }

  /**
   * Adds ended calls to their functions' counts (gateway/edge-metrics.ts): one statement for the whole batch. `since`
   * keeps the earliest time, a schedule's last success the latest; every other series adds.
   */
  #meter(calls: FinishedCall[]): void {
    const rows = edgeIncrements(calls, Date.now());
    if (!rows.length) return;
    this.#sql.exec(
      `INSERT INTO edge_metrics (app, fn, series, label, value)
       SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]')
       FROM json_each(?) WHERE true
       ON CONFLICT (app, fn, series, label) DO UPDATE SET
         value = CASE WHEN series = 'since' THEN MIN(value, excluded.value) WHEN series = 'scheduled_last_success' THEN MAX(value, excluded.value)
           ELSE value + excluded.value END`,
      JSON.stringify(rows.map((r) => [r.app, r.function, r.series, r.label, r.value])),
    );
    if (this.#config.otlp && !this.#exportArmed) {
      this.#exportArmed = true;
      this.ctx.waitUntil(
        metricsExporter(this.env)
          .arm()
          .catch((err: unknown) => {
            this.#exportArmed = false; // the next batch tries again
            console.error("ledger: could not start the OTLP metrics export:", err);
          }),
      );
    }
  }

  /** The dashboard's list: an app's calls (or one function's), newest first, created before `before` when given. */
  async callRows(query: CallRowsQuery): Promise<DashboardCallRow[]> {
    const where = ["app = ?"];
    const params: (string | number)[] = [query.app];
    if (query.function !== undefined) {
      where.push("fn = ?");
      params.push(query.function);
    }
    if (query.functionPrefix !== undefined) {
      where.push("substr(fn, 1, ?) = ?");
      params.push(query.functionPrefix.length, query.functionPrefix);
    }
    if (query.status !== undefined) {
      where.push("status IN (SELECT value FROM json_each(?))");
      params.push(JSON.stringify(query.status));
    }
    if (query.since !== undefined) {
      where.push("created_at >= ?");
      params.push(query.since);
    }
    if (query.kind !== undefined) {
      where.push("kind = ?");
      params.push(query.kind);
    }
    if (query.before !== undefined) {
      where.push("created_at < ?");
      params.push(query.before);
    }
    if (query.after !== undefined) {
      // Past a listed call, in the order below: calls made in its millisecond after it too (ids break the tie).
      where.push("(created_at < ? OR (created_at = ? AND id < ?))");
      params.push(query.after.createdAt, query.after.createdAt, query.after.callId);
    }
    return this.#sql
      .exec<Pick<Row, "id" | "app" | "fn" | "kind" | "status" | "attempts" | "created_at" | "started_at" | "finished_at" | "error" | "plane_timings">>(
        `SELECT id, app, fn, kind, status, attempts, created_at, started_at, finished_at, error, plane_timings FROM calls
         WHERE ${where.join(" AND ")} ORDER BY created_at DESC, id DESC LIMIT ?`,
        ...params,
        query.limit,
      )
      .toArray()
      .map((row) => {
        const error = row.error === null ? null : (JSON.parse(row.error) as WireError);
        return {
          callId: row.id,
          app: row.app,
          function: row.fn,
          kind: row.kind as CallKind,
          status: row.status as CallStatus,
          attempts: row.attempts,
          createdAt: row.created_at,
          startedAt: row.started_at,
          finishedAt: row.finished_at,
          error: error && { code: error.code, message: error.remote ? `${error.remote.name}: ${error.remote.message}` : error.message },
          plane: row.plane_timings === null ? null : (JSON.parse(row.plane_timings) as PlaneRunTimings),
        };
      });
  }

  /**
   * The dashboard's charts: an app's calls (or one function's) since `since`, counted per function in buckets of
   * `bucketMs`. A call that failed as `invalid_request` is the caller's mistake, not the function's error: a stream of
   * a function that turned out not to be a generator, or a call of one that did (known only once it ran).
   */
  async callSeries(query: { app: string; function?: string; since: number; bucketMs: number }): Promise<DashboardSeriesPoint[]> {
    const bucket = Math.max(1, Math.floor(query.bucketMs)); // bound as a float: the division is made whole in the query
    const params: (string | number)[] = [bucket, bucket, query.app, query.since];
    const byFunction = query.function === undefined ? "" : "AND fn = ?";
    if (query.function !== undefined) params.push(query.function);
    return this.#sql
      .exec<DashboardSeriesPoint & Record<string, SqlStorageValue>>(
        `SELECT fn AS function, CAST(created_at / ? AS INTEGER) * ? AS t, COUNT(*) AS calls,
           SUM(status = 'timed_out' OR (status = 'failed' AND json_extract(error, '$.code') IS NOT 'invalid_request')) AS errors,
           SUM(MAX(attempts - 1, 0)) AS retries,
           COUNT(finished_at) AS ended, COALESCE(SUM(finished_at - started_at), 0) AS runMsSum,
           COALESCE(MAX(finished_at - started_at), 0) AS runMsMax,
           COALESCE(SUM(CASE WHEN finished_at IS NULL THEN 0 ELSE COALESCE(json_extract(plane_timings, '$.runMs'), finished_at - started_at) END), 0) AS workMsSum
         FROM calls WHERE app = ? AND created_at >= ? ${byFunction} GROUP BY fn, t ORDER BY t`,
        ...params,
      )
      .toArray()
      .map((point) => ({ ...point }));
  }

  /**
   * The function page's percentiles: one function's ended calls since `since`, counted per bucket of `bucketMs` by
   * their time from start to end (the charts' measure), kept to four significant figures so the answer stays small
   * however many calls there were (at most 9,000 times a decade, and far fewer in practice), yet exact under 10 s.
   */
  async callDurations(query: { app: string; function: string; since: number; bucketMs: number }): Promise<DashboardDurationCount[]> {
    const bucket = Math.max(1, Math.floor(query.bucketMs));
    return this.#sql
      .exec<DashboardDurationCount & Record<string, SqlStorageValue>>(
        `SELECT t, CASE WHEN d < 10000 THEN d WHEN d < 100000 THEN d / 10 * 10 WHEN d < 1000000 THEN d / 100 * 100
             WHEN d < 10000000 THEN d / 1000 * 1000 ELSE d / 10000 * 10000 END AS ms, COUNT(*) AS calls
         FROM (SELECT CAST(created_at / ? AS INTEGER) * ? AS t, MAX(finished_at - started_at, 0) AS d FROM calls
               WHERE app = ? AND fn = ? AND created_at >= ? AND finished_at IS NOT NULL AND started_at IS NOT NULL)
         GROUP BY t, ms`,
        bucket,
        bucket,
        query.app,
        query.function,
        query.since,
      )
      .toArray()
      .map((count) => ({ ...count }));
  }

  async create(call: NewCall): Promise<string> {
    return (await this.createMany([call]))[0]!;
  }

  async createMany(calls: NewCall[], options: { mapScope?: string } = {}): Promise<string[]> {
    if (options.mapScope !== undefined && this.#mapKnown(options.mapScope)) {
      // Sent again: it starts nothing, not even an input the first request did not have (its key would be new).
      return calls.map((call) => (call.key === undefined ? "" : (this.#callWithKey(call.key) ?? "")));
    }
    const ids: string[] = [];
    let leaseUntil = 0;
    for (const call of calls) {
      const text = call.input === undefined ? null : JSON.stringify(call.input);
      let input = text;
      if (text !== null && text.length > API_LIMITS.maxInlineValueBytes) {
        // A key already known stores nothing; it is checked again after the write to R2, during which a request with
        // the same key may have come in.
        const known = call.key === undefined ? undefined : this.#callWithKey(call.key);
        if (known) {
          ids.push(known);
          continue;
        }
        input = await this.#storeValue(BLOB_KEYS.input(call.id), call.input!);
      }
      leaseUntil = Date.now() + this.#leaseMs;
      // One statement: a key already known inserts nothing (the unique index on keys), and is then looked up.
      const inserted = this.#sql.exec(
        `INSERT INTO calls (id, app, fn, kind, status, attempts, input, created_at, started_at, lease_until, scheduled_at, idem_key, plane)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (idem_key) WHERE idem_key IS NOT NULL DO NOTHING RETURNING id`,
        call.id,
        call.app,
        call.function,
        call.kind,
        call.running ? "running" : "pending",
        call.running ? 1 : 0,
        input,
        call.createdAt,
        call.running ? call.createdAt : null, // its first attempt begins as it is accepted
        leaseUntil,
        call.scheduledAt ?? null,
        call.key ?? null,
        call.plane ?? null,
      );
      const isNew = inserted.toArray().length > 0;
      ids.push(isNew ? call.id : this.#callWithKey(call.key!)!);
      if (isNew) this.#wake(call.id); // a `get` of a young id waits for its row
    }
    if (leaseUntil) await this.#scheduleAlarm(leaseUntil);
    return ids;
  }

  async start(id: string, attempt: number): Promise<boolean> {
    return this.#start(id, attempt);
  }

  async startMany(marks: { id: string; attempt: number }[]): Promise<boolean[]> {
    // One statement per attempt number, not one per input: a keyed map marks every input's attempt.
    const marked = new Set<string>();
    const now = Date.now();
    for (const [attempt, ids] of groupBy(
      marks,
      (m) => m.attempt,
      (m) => m.id,
    )) {
      const rows = this.#sql.exec<{ id: string }>(
        `UPDATE calls SET status = 'running', attempts = MAX(attempts, ?), started_at = COALESCE(started_at, ?), lease_until = ?, retry_at = NULL
         WHERE id IN (SELECT value FROM json_each(?)) AND ${NOT_ENDED} RETURNING id`,
        attempt,
        now,
        now + this.#leaseMs,
        JSON.stringify(ids),
      );
      for (const row of rows) marked.add(row.id);
    }
    return marks.map(({ id }) => marked.has(id));
  }

  #start(id: string, attempt: number): boolean {
    const now = Date.now();
    const marked = this.#sql.exec(
      `UPDATE calls SET status = 'running', attempts = MAX(attempts, ?), started_at = COALESCE(started_at, ?), lease_until = ?, retry_at = NULL WHERE id = ? AND ${NOT_ENDED} RETURNING id`,
      attempt,
      now,
      now + this.#leaseMs,
      id,
    );
    return marked.toArray().length > 0;
  }

  /**
   * Notes that attempt `attempt` failed and its retry is due at `retryAt`: a runner lost while it waits leaves a call
   * whose next attempt uses a retry, as it would have, rather than one more run as if that attempt had been cut off.
   */
  async retrying(id: string, attempt: number, retryAt: number): Promise<void> {
    this.#sql.exec(`UPDATE calls SET retry_at = ? WHERE id = ? AND attempts = ? AND ${NOT_ENDED}`, retryAt, id, attempt);
  }

  /** Notes the plane a call's attempt was sent to. */
  async runningOn(id: string, planeId: string): Promise<void> {
    this.#sql.exec("UPDATE calls SET plane = ? WHERE id = ?", planeId, id);
  }

  /** `runningOn` for many calls: one statement per plane (a map's inputs mostly go to a few). */
  async runningOnMany(notes: { id: string; planeId: string }[]): Promise<void[]> {
    for (const [planeId, ids] of groupBy(
      notes,
      (n) => n.planeId,
      (n) => n.id,
    )) {
      this.#sql.exec("UPDATE calls SET plane = ? WHERE id IN (SELECT value FROM json_each(?))", planeId, JSON.stringify(ids));
    }
    return notes.map(() => undefined); // one per note, as `grouped` hands them back
  }

  async renew(id: string): Promise<boolean> {
    this.#sql.exec("UPDATE calls SET lease_until = ? WHERE id = ? AND lease_until IS NOT NULL", Date.now() + this.#leaseMs, id);
    return this.#sql.exec<Pick<Row, "status">>("SELECT status FROM calls WHERE id = ?", id).toArray()[0]?.status === "cancelled";
  }

  async renewAll(ids: string[]): Promise<string[]> {
    const list = JSON.stringify(ids);
    this.#sql.exec(
      "UPDATE calls SET lease_until = ? WHERE id IN (SELECT value FROM json_each(?)) AND lease_until IS NOT NULL",
      Date.now() + this.#leaseMs,
      list,
    );
    return this.#sql
      .exec<Pick<Row, "id">>("SELECT id FROM calls WHERE id IN (SELECT value FROM json_each(?)) AND status = 'cancelled'", list)
      .toArray()
      .map((row) => row.id);
  }

  async finish(call: FinishedCall): Promise<void> {
    const row = this.#row(call.id);
    if (row && TERMINAL_STATUSES.has(row.status as CallStatus)) return; // cancelled meanwhile, or already recorded once
    await this.record([call]);
  }

  async record(calls: FinishedCall[]): Promise<KeyTaken[]> {
    const expiresAt = Date.now() + this.#config.resultTtlSeconds * 1000;
    const taken: KeyTaken[] = [];
    const written: FinishedCall[] = []; // the rows this write ended: a call already ended (cancelled, or sent twice) is not counted again
    for (const call of calls) {
      const result = call.result === undefined ? null : await this.#storeValue(BLOB_KEYS.result(call.id), call.result);
      let key = call.key ?? null;
      if (key !== null) {
        const names = this.#callWithKey(key);
        if (names !== undefined && names !== call.id) {
          taken.push({ id: call.id, key, names });
          key = null;
        }
      }
      const inserted = this.#sql.exec(
        `INSERT INTO calls (id, app, fn, kind, status, attempts, result, error, created_at, started_at, finished_at, lease_until, expires_at, plane_timings, idem_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET status = excluded.status, attempts = MAX(calls.attempts, excluded.attempts), result = excluded.result,
           error = excluded.error, started_at = COALESCE(calls.started_at, excluded.started_at), finished_at = excluded.finished_at,
           lease_until = NULL, expires_at = excluded.expires_at, plane_timings = excluded.plane_timings
         WHERE calls.${NOT_ENDED} OR (${ENDED_BEFORE_MAP_CANCEL}) RETURNING id`,
        call.id,
        call.app,
        call.function,
        call.kind,
        call.status,
        call.attempts,
        result,
        call.error ? JSON.stringify(boundedWireError(call.error)) : null, // one too large to keep whole would fail the row
        call.createdAt,
        call.startedAt,
        call.finishedAt,
        expiresAt,
        call.plane ? JSON.stringify(call.plane) : null,
        key,
      );
      if (inserted.toArray().length > 0) written.push(call);
      this.#wake(call.id);
    }
    this.#meter(written);
    await this.#scheduleAlarm(expiresAt);
    return taken;
  }

  async get(id: string, waitMs: number): Promise<CallRecord | null> {
    let row = this.#row(id) ?? (await this.#youngRow(id));
    if (!row) return null;
    if (!TERMINAL_STATUSES.has(row.status as CallStatus) && waitMs > 0) {
      await this.#waitFor(id, waitMs);
      row = this.#row(id) ?? row;
    }
    return this.#toRecord(row);
  }

  async cancel(id: string, why?: string): Promise<{ record: CallRecord; plane: string | null } | null> {
    const row = this.#row(id) ?? (await this.#youngRow(id));
    if (!row) return null;
    const wasRunning = !TERMINAL_STATUSES.has(row.status as CallStatus);
    if (wasRunning) {
      this.#markCancelled(id, why);
      await this.#scheduleAlarm();
      // A cancel asked for (no other reason given) is said in the call's log, as a cancel for a client that went is
      // by what it stopped (before: a cancelled call's lines just ended, in either tier).
      if (why === undefined) {
        const rc: RunContext = { env: this.env, config: this.#config, waitUntil: (p) => this.ctx.waitUntil(p) };
        keepEdgeLine(rc, { app: row.app, function: row.fn, callId: id }, "system", `cancelled (FunctionCall.cancel(), or POST /v1/calls/${id}/cancel)`);
      }
    }
    return { record: await this.#toRecord(this.#row(id)!), plane: wasRunning ? row.plane : null };
  }

  /** Whether a keyed map's key is known: any input of it recorded (its inputs' keys are `${scope} ${index}`). */
  #mapKnown(scope: string): boolean {
    return this.#sql.exec(`SELECT 1 FROM calls WHERE idem_key >= ? AND idem_key < ? LIMIT 1`, `${scope} `, `${scope}!`).toArray().length > 0;
  }

  async cancelMap(scope: string): Promise<{ id: string; plane: string | null }[]> {
    // A map's inputs are keyed `${scope} ${index}`, and no key has a space: the range holds exactly this map's.
    const open = this.#sql
      .exec<Pick<Row, "id" | "plane">>(`SELECT id, plane FROM calls WHERE idem_key >= ? AND idem_key < ? AND ${NOT_ENDED}`, `${scope} `, `${scope}!`)
      .toArray();
    for (const { id } of open) this.#markCancelled(id);
    if (open.length) await this.#scheduleAlarm();
    return open;
  }

  async cancelledInputs(scope: string): Promise<string[]> {
    return this.#sql
      .exec<Pick<Row, "id">>(`SELECT id FROM calls WHERE idem_key >= ? AND idem_key < ? AND status = 'cancelled'`, `${scope} `, `${scope}!`)
      .toArray()
      .map((row) => row.id);
  }

  /** Ends a call that has not ended as `cancelled`, with a `call_cancelled` error, and wakes those waiting for it. */
  #markCancelled(id: string, why?: string): void {
    const error: WireError = { code: "call_cancelled", message: `call ${id} was cancelled${why ? `: ${why}` : ""}`, details: { callId: id } };
    const expiresAt = Date.now() + this.#config.resultTtlSeconds * 1000;
    this.#sql.exec(
      "UPDATE calls SET status = 'cancelled', error = ?, finished_at = ?, lease_until = NULL, expires_at = ? WHERE id = ?",
      JSON.stringify(error),
      Date.now(),
      expiresAt,
      id,
    );
    this.#wake(id);
    cancelEdgeAttempts([id]); // an attempt of it running in this isolate stops: its signal aborts
  }

  /** Drops expired calls, and resumes recorded calls whose runner was lost (ends those made without a key). */
  override async alarm(): Promise<void> {
    this.#alarmAt = null; // spent
    const now = Date.now();
    for (const row of this.#sql.exec<{ id: string }>("SELECT id FROM calls WHERE expires_at <= ?", now).toArray()) {
      this.#sql.exec("DELETE FROM calls WHERE id = ?", row.id);
      await this.env.BLOBS.delete([BLOB_KEYS.input(row.id), BLOB_KEYS.result(row.id)]);
    }
    const lapsed = this.#sql.exec<Row>(`SELECT * FROM calls WHERE lease_until <= ? AND ${NOT_ENDED}`, now).toArray();
    // A runner of this isolate is alive, however late its renewals came: its lease is extended, its call not run again.
    const silenceMs = Math.max(DELIVERY_DEFAULTS.runnerSilenceLeases * this.#leaseMs, DELIVERY_DEFAULTS.runnerSilenceMinMs);
    const alive = new Set(lapsed.filter((row) => runnerAliveHere(row.id, now, silenceMs)).map((row) => row.id));
    if (alive.size)
      this.#sql.exec("UPDATE calls SET lease_until = ? WHERE id IN (SELECT value FROM json_each(?))", now + this.#leaseMs, JSON.stringify([...alive]));
    const orphans = lapsed.filter((row) => !alive.has(row.id));
    orphans.forEach((row, i) => this.#resume(row, i < RESUMES_LOGGED));
    // A line each would be thousands after a crash under load: workerd writes them to a pipe, and `tandem serve`
    // blocks on a synchronous miniflare call as it starts, so a full pipe once stalled both for good.
    if (orphans.length > RESUMES_LOGGED) console.warn(`ledger: resuming ${orphans.length - RESUMES_LOGGED} more calls whose runner was lost`);
    await this.#scheduleAlarm(undefined, true);
  }

  #resume(row: Row, logged: boolean): void {
    const rc: RunContext = { env: this.env, config: this.#config, waitUntil: (p) => this.ctx.waitUntil(p) };
    // Said in the call's own log too, where whoever reads it (`tandem logs --call`) sees why it ran twice, or ended so.
    const say = (text: string) => keepEdgeLine(rc, { app: row.app, function: row.fn, callId: row.id }, "system", text);
    if (row.input === null) {
      // Made without an idempotency key (recorded as it ran on): nobody waits for it any more, and it is not run again.
      const where = `attempt ${row.attempts} was under way${row.plane ? ` on plane ${row.plane}, which may have run it to its end` : ""}`;
      if (logged)
        console.warn(`ledger: ${row.app}.${row.fn} ${row.id}, made without an Idempotency-Key, lost its gateway (${where}): ended as failed, not run again`);
      say(`lost with its gateway (${where}): ended as failed, not run again, as a call made without an Idempotency-Key is not`);
      void this.record([
        this.#lost(
          row,
          `was lost with its gateway (${where}); a call made without an Idempotency-Key is not run again: send one, or spawn the call, to have it taken over`,
        ),
      ]);
      return;
    }
    const resume = resumeCall;
    if (!resume) {
      void this.record([this.#lost(row, "could not be resumed: this gateway did not hand its ledger a way to run calls (setResumeCall)")]);
      return;
    }
    let fn;
    try {
      fn = registry().function(row.app, row.fn);
    } catch (err) {
      void this.record([this.#lost(row, `could not be resumed: its function is no longer deployed: ${(err as Error).message}`)]);
      return;
    }
    const release = holdRunner([row.id]); // runs here from now: not taken for lost again while it lives
    this.#sql.exec("UPDATE calls SET lease_until = ? WHERE id = ?", Date.now() + this.#leaseMs, row.id);
    const from: ResumePoint = {
      attempts: row.attempts,
      running: row.status === "running",
      plane: row.plane,
      ...(row.retry_at === null ? {} : { retryAt: row.retry_at }),
    };
    const where = !from.running
      ? "it had not started"
      : from.retryAt !== undefined
        ? `attempt ${row.attempts} had failed, and its retry was due ${new Date(from.retryAt).toISOString()}`
        : `attempt ${row.attempts} was under way${row.plane ? ` on plane ${row.plane}` : ""}`;
    if (logged) console.warn(`ledger: resuming ${row.app}.${row.fn} ${row.id}, whose runner was lost (${where})`);
    say(
      `its runner was lost, as when its gateway stops or restarts mid-call (${where}): the ledger takes it over from there${from.running && fn.spec.tier === "edge" && from.retryAt === undefined ? `, so it runs again as attempt ${row.attempts + 1}, and what attempt ${row.attempts} did may be done twice` : ""}`,
    );
    this.ctx.waitUntil(
      (async () => {
        // As stored: a plane gets them as they came; an edge function decodes them when it runs.
        const args = CallArgs.received(JSON.parse(await this.#loadValue(row.input!)) as EncodedValue);
        await runStore.run(rc, () => resume(rc, this, fn, row.id, args, from, row.created_at, row.kind as CallKind));
      })()
        .catch((err) => this.record([this.#lost(row, `could not be resumed: ${String(err)}`)]))
        .finally(release),
    );
  }

  /** The end record, failed, of a call that lost its runner and is not run again: `call <id> ${what}`. */
  #lost(row: Row, what: string): FinishedCall {
    return {
      id: row.id,
      app: row.app,
      function: row.fn,
      kind: row.kind as CallKind,
      ...tierOf(row.app, row.fn),
      status: "failed",
      attempts: row.attempts,
      createdAt: row.created_at,
      startedAt: row.started_at ?? Date.now(),
      finishedAt: Date.now(),
      error: { code: "internal", message: `call ${row.id} ${what}`, details: { callId: row.id } },
    };
  }

  #callWithKey(key: string): string | undefined {
    return this.#sql.exec<{ id: string }>("SELECT id FROM calls WHERE idem_key = ?", key).toArray()[0]?.id;
  }

  /**
   * The row of a call made a moment ago and not written yet, once it is: a fresh keyed edge call that ends within
   * `DELIVERY_DEFAULTS.freshRecordWaitMs` is written only as it ended, in the next batch of ended calls (gateway/executor.ts, `callOnce`),
   * so its id, in its answer, can be asked for before its row is here. Waits until the id is `DELIVERY_DEFAULTS.youngCallWaitMs` old.
   */
  async #youngRow(id: string): Promise<Row | undefined> {
    const age = Date.now() - (callIdTime(id) ?? 0);
    if (age < 0 || age >= DELIVERY_DEFAULTS.youngCallWaitMs) return undefined;
    await this.#waitFor(id, DELIVERY_DEFAULTS.youngCallWaitMs - age);
    return this.#row(id);
  }

  #row(id: string): Row | undefined {
    return this.#sql.exec<Row>("SELECT * FROM calls WHERE id = ?", id).toArray()[0];
  }

  async #toRecord(row: Row): Promise<CallRecord> {
    const record: CallRecord = {
      callId: row.id,
      app: row.app,
      function: row.fn,
      kind: row.kind as CallKind,
      status: row.status as CallStatus,
      attempts: row.attempts,
      createdAt: row.created_at,
      ...(row.started_at === null ? {} : { startedAt: row.started_at }),
      ...(row.finished_at === null ? {} : { finishedAt: row.finished_at }),
      ...(row.scheduled_at === null ? {} : { scheduledAt: row.scheduled_at }),
      ...(row.plane_timings === null ? {} : { plane: JSON.parse(row.plane_timings) as PlaneRunTimings }),
    };
    if (row.result !== null) {
      const value = JSON.parse(await this.#loadValue(row.result)) as EncodedValue;
      if (value.json !== undefined) record.result = value.json;
      if (value.meta !== undefined) record.meta = value.meta;
    }
    if (row.error !== null) record.error = JSON.parse(row.error) as WireError;
    return record;
  }

  /** Stores an encoded value inline, or in R2 when it is large; returns what the row keeps. */
  async #storeValue(key: string, value: EncodedValue): Promise<string> {
    const text = JSON.stringify(value);
    if (text.length <= API_LIMITS.maxInlineValueBytes) return text;
    await this.env.BLOBS.put(key, text);
    return JSON.stringify({ $ref: key });
  }

  async #loadValue(stored: string): Promise<string> {
    if (!stored.startsWith('{"$ref":')) return stored;
    const { $ref } = JSON.parse(stored) as { $ref: string };
    const object = await this.env.BLOBS.get($ref);
    if (!object) throw new Error(`stored value ${$ref} is missing from blob storage`);
    return object.text();
  }

  #waitFor(id: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.#waiters.get(id) ?? new Set();
      this.#waiters.set(id, waiters);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(done);
        if (waiters.size === 0) this.#waiters.delete(id);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiters.add(done);
    });
  }

  #wake(id: string): void {
    for (const done of [...(this.#waiters.get(id) ?? [])]) done();
  }

  /**
   * Sets the alarm to the next lease to check or row to expire. `always`: inside `alarm()`, where the old one is
   * spent. `due`: the time a row just written needs the alarm by; an alarm set for then or sooner already serves it
   * (it sets the next one when it fires), so a call recorded under way costs no query here.
   */
  async #scheduleAlarm(due?: number, always = false): Promise<void> {
    // The alarm is only ever set here, so this object knows it once it has read it: no storage read on every call recorded.
    if (this.#alarmAt === undefined) this.#alarmAt = await this.ctx.storage.getAlarm();
    if (!always && due !== undefined && this.#alarmAt !== null && this.#alarmAt <= due) return;
    const next = this.#sql
      .exec<{ t: number | null }>(
        "SELECT MIN(t) AS t FROM (SELECT MIN(lease_until) AS t FROM calls WHERE lease_until IS NOT NULL UNION ALL SELECT MIN(expires_at) FROM calls WHERE expires_at IS NOT NULL)",
      )
      .one().t;
    if (next === null) return;
    const current = always ? null : this.#alarmAt;
    if (current === null || next < current) {
      await this.ctx.storage.setAlarm(next);
      this.#alarmAt = next;
    }
  }
}

/** `items`' values grouped by their keys, in the order each key first came. */
function groupBy<T, K, V>(items: T[], keyOf: (item: T) => K, valueOf: (item: T) => V): Map<K, V[]> {
  const groups = new Map<K, V[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group) group.push(valueOf(item));
    else groups.set(key, [valueOf(item)]);
  }
  return groups;
}

/** `{ tier }` of a function this gateway serves, or nothing for one it no longer does (a lost call's row is counted only with it). */
function tierOf(app: string, fn: string): { tier?: "edge" | "plane" } {
  const tier = registry().find(app, fn)?.spec.tier;
  return tier ? { tier } : {};
}
