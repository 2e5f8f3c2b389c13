/**
 * Schedules fired from the edge: one SQLite-backed Durable Object holds each
 * scheduled function's state (when it was first seen, the last time it was
 * due, its last run), so each (function, scheduled time) fires exactly once
 * however many ticks arrive: a tick claims a due time by moving `last_due`
 * forward before anything awaits, and a tick that finds nothing new past
 * `last_due` fires nothing. Ticks come from the Worker's cron trigger (every
 * minute), from this object's alarm (set for the next due time, for timing
 * finer than a minute) and, locally, from `tandem serve`.
 *
 * Policies (docs/schedules.md):
 * - a schedule seen for the first time fires from then on, never for earlier times;
 *   a Period's first run is one period after that; a schedule removed from the app is
 *   forgotten at the next tick, so one put back later is seen for the first time again;
 * - runs missed while nothing ticked (the edge down) are caught up once: the latest
 *   due time fires, the others are counted as missed;
 * - overlap "skip" (default): a run due while the previous one is still pending or
 *   running is skipped and counted; "allow": it fires as well.
 * Every run is a spawned call of kind "scheduled" in the call ledger, with its due time,
 * following the function's timeout and retry policy.
 */
import { DurableObject } from "cloudflare:workers";
import { TERMINAL_STATUSES, newCallId, type CallRecord, type ScheduleInfo } from "../sdk/protocol.js";
import type { Schedule } from "../sdk/schedule.js";
import { CallArgs } from "./call-args.js";
import { ledgerFor } from "./call-ledger-client.js";
import { gatewayConfig, type GatewayConfig } from "./config.js";
import type { Env } from "./env.js";
import { inEnvironment } from "./environments.js";
import { spawnCall } from "./executor.js";
import { keepEdgeLine } from "./log-sink.js";
import { registry, type RegisteredFunction } from "./registry.js";
import { runStore, type RunContext } from "./run-context.js";

type Row = {
  key: string;
  description: string;
  anchor: number;
  last_due: number;
  last_call: string | null;
  last_scheduled_at: number | null;
  skipped: number;
  missed: number;
};

/** A scheduled function's state as the gateway's metrics show it: its next run (ms), and the runs it skipped or missed since its schedule was last seen new. */
export interface ScheduleMetricRow {
  app: string;
  function: string;
  nextRun: number;
  skipped: number;
  missed: number;
}

/** The most missed runs counted one by one after a long gap (a period's are computed). */
const MAX_COUNTED = 10_000;

export class Scheduler extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  readonly #config: GatewayConfig;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#config = gatewayConfig(env); // this object's entry: parsed here, for the runs it fires
    this.#sql.exec(`CREATE TABLE IF NOT EXISTS schedules (
      key TEXT PRIMARY KEY, description TEXT NOT NULL, anchor INTEGER NOT NULL, last_due INTEGER NOT NULL,
      last_call TEXT, last_scheduled_at INTEGER, skipped INTEGER NOT NULL DEFAULT 0, missed INTEGER NOT NULL DEFAULT 0)`);
  }

  /** Fires every function due at `at` (ms) that has not fired for that time yet. */
  async tick(at: number): Promise<void> {
    const launches: Promise<void>[] = [];
    const functions = scheduledFunctions();
    this.#forgetRemoved(functions);
    for (const fn of functions) {
      const schedule = fn.spec.schedule!;
      const row = this.#state(fn, schedule, at);
      const next = schedule.nextAfter(row.last_due, row.anchor);
      if (next > at) continue;
      // Every time due in (last_due, at]: the latest fires, the rest were missed.
      const latest = schedule.latestAtOrBefore(at, row.anchor);
      let due = 1;
      if (schedule.periodMs) due = Math.round((latest - next) / schedule.periodMs) + 1;
      else for (let t = next; t < latest && due < MAX_COUNTED; t = schedule.nextAfter(t, row.anchor)) due++;
      // Claimed before anything awaits: a second tick for the same time finds nothing due.
      this.#sql.exec("UPDATE schedules SET last_due = ?, missed = missed + ? WHERE key = ?", latest, due - 1, row.key);
      const note = due > 1 ? `caught up once for ${due - 1}${due === MAX_COUNTED ? "+" : ""} missed run${due === 2 ? "" : "s"}` : undefined;
      launches.push(
        this.#fireUnlessOverlapping(fn, schedule, row, latest).then((fired) => {
          if (note && fired) this.#say(fn, fired, `scheduled run of ${new Date(latest).toISOString()} ${note} (nothing ticked meanwhile)`);
        }),
      );
    }
    await Promise.all(launches);
    await this.#setAlarm(at);
  }

  /** Ticks on time between cron triggers (and locally between `serve`'s ticks). */
  override async alarm(): Promise<void> {
    await this.tick(Date.now());
  }

  /** Fires one run of scheduled `app.fn` now, whatever its schedule and the overlap policy (`tandem schedule trigger`). */
  async trigger(app: string, name: string, at: number): Promise<string> {
    const fn = registry().function(app, name);
    const row = this.#state(fn, fn.spec.schedule!, at);
    return this.#fire(fn, row, at);
  }

  /** Each scheduled function with its next runs and its last run's outcome; `app` filters. */
  async list(app: string | undefined, now: number): Promise<ScheduleInfo[]> {
    const infos: ScheduleInfo[] = [];
    for (const fn of scheduledFunctions()) {
      if (app !== undefined && fn.app !== app) continue;
      const schedule = fn.spec.schedule!;
      const row = this.#state(fn, schedule, now);
      const nextRuns: number[] = [];
      for (let t = row.last_due; nextRuns.length < 3;) nextRuns.push((t = schedule.nextAfter(Math.max(t, now - 1), row.anchor)));
      const info: ScheduleInfo = {
        app: fn.app,
        function: fn.name,
        schedule: schedule.description,
        kind: schedule.kind,
        ...(schedule.expression ? { expression: schedule.expression } : {}),
        timezone: schedule.timezone,
        ...(schedule.periodMs ? { periodMs: schedule.periodMs } : {}),
        overlap: schedule.overlap,
        nextRuns,
        skipped: row.skipped,
        missed: row.missed,
      };
      if (row.last_call) {
        const record = await ledgerFor(this.env, row.last_call).get(row.last_call, 0);
        info.lastRun = {
          callId: row.last_call,
          scheduledAt: row.last_scheduled_at ?? 0,
          status: record?.status ?? "expired", // past the ledger's retention
          ...(record ? { attempts: record.attempts } : {}),
          ...(record?.startedAt !== undefined && record.finishedAt !== undefined ? { durationMs: record.finishedAt - record.startedAt } : {}),
          ...(record?.error ? { error: record.error } : {}),
        };
      }
      infos.push(info);
    }
    return infos;
  }

  /** Each scheduled function's next run and the runs it skipped or missed, for the gateway's metrics (gateway/edge-metrics.ts). */
  async metrics(now: number): Promise<ScheduleMetricRow[]> {
    return scheduledFunctions().map((fn) => {
      const schedule = fn.spec.schedule!;
      const row = this.#state(fn, schedule, now);
      return {
        app: fn.app,
        function: fn.name,
        nextRun: schedule.nextAfter(Math.max(row.last_due, now - 1), row.anchor),
        skipped: row.skipped,
        missed: row.missed,
      };
    });
  }

  /**
   * Drops the rows of functions that no longer have a schedule here (removed from the app, or the app no longer
   * served): put back later, a schedule starts afresh, as a changed one does, instead of catching up the runs due
   * while it was gone as if nothing had ticked.
   */
  #forgetRemoved(functions: RegisteredFunction[]): void {
    const current = new Set(functions.map((fn) => `${fn.app}/${fn.name}`));
    for (const { key } of this.#sql.exec<{ key: string }>("SELECT key FROM schedules").toArray()) {
      if (current.has(key)) continue;
      this.#sql.exec("DELETE FROM schedules WHERE key = ?", key);
      console.log(`schedule: ${key} is no longer scheduled; put back, it counts from then`);
    }
  }

  /** A function's row, made when its schedule is first seen (or changed): it fires from `at` on. */
  #state(fn: RegisteredFunction, schedule: Schedule, at: number): Row {
    const key = `${fn.app}/${fn.name}`;
    const row = this.#sql.exec<Row>("SELECT * FROM schedules WHERE key = ?", key).toArray()[0];
    if (row && row.description === schedule.description) return row;
    // A cron time equal to `at` is due now; a period's first run is one period after `at`.
    const fresh: Row = {
      key,
      description: schedule.description,
      anchor: at,
      last_due: schedule.kind === "period" ? at : at - 1,
      last_call: null,
      last_scheduled_at: null,
      skipped: 0,
      missed: 0,
    };
    this.#sql.exec(
      "INSERT OR REPLACE INTO schedules (key, description, anchor, last_due, skipped, missed) VALUES (?, ?, ?, ?, 0, 0)",
      key,
      fresh.description,
      fresh.anchor,
      fresh.last_due,
    );
    if (row) console.log(`schedule: ${key} is now ${schedule.description}; it counts from now`);
    return fresh;
  }

  /** Fires the run due at `scheduledAt`, unless the overlap policy skips it; returns the call id, or null when skipped. */
  async #fireUnlessOverlapping(fn: RegisteredFunction, schedule: Schedule, row: Row, scheduledAt: number): Promise<string | null> {
    if (schedule.overlap === "skip" && row.last_call) {
      const previous: CallRecord | null = await ledgerFor(this.env, row.last_call).get(row.last_call, 0);
      if (previous && !TERMINAL_STATUSES.has(previous.status)) {
        this.#sql.exec("UPDATE schedules SET skipped = skipped + 1 WHERE key = ?", row.key);
        this.#say(
          fn,
          null,
          `scheduled run of ${new Date(scheduledAt).toISOString()} skipped: the run of ${new Date(row.last_scheduled_at ?? 0).toISOString()} (${row.last_call}) is still ${previous.status}`,
        );
        return null;
      }
    }
    return this.#fire(fn, row, scheduledAt);
  }

  /** A line about `fn`'s schedule (a run skipped, runs missed): a system line of its app's log, printed as every one is (gateway/log-sink.ts). */
  #say(fn: RegisteredFunction, callId: string | null, text: string): void {
    const rc = { env: this.env, config: this.#config, waitUntil: (p: Promise<unknown>) => this.ctx.waitUntil(p) };
    keepEdgeLine(rc, { app: fn.app, function: fn.name, callId }, "system", text);
  }

  /** Starts one run: a spawned call of kind "scheduled", recorded in the ledger before it runs. */
  async #fire(fn: RegisteredFunction, row: Row, scheduledAt: number): Promise<string> {
    const id = newCallId();
    this.#sql.exec("UPDATE schedules SET last_call = ?, last_scheduled_at = ? WHERE key = ?", id, scheduledAt, row.key);
    const rc: RunContext = { env: this.env, config: this.#config, waitUntil: (p) => this.ctx.waitUntil(p) };
    await runStore.run(rc, () => spawnCall(rc, fn, CallArgs.of([]), { id, kind: "scheduled", scheduledAt }));
    return id;
  }

  /** The alarm goes off at the next due time of any schedule. */
  async #setAlarm(after: number): Promise<void> {
    let soonest = Infinity;
    for (const fn of scheduledFunctions()) {
      const row = this.#sql.exec<Row>("SELECT * FROM schedules WHERE key = ?", `${fn.app}/${fn.name}`).toArray()[0];
      if (row) soonest = Math.min(soonest, fn.spec.schedule!.nextAfter(Math.max(row.last_due, after), row.anchor));
    }
    if (soonest === Infinity) return;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || soonest < current || current <= Date.now()) await this.ctx.storage.setAlarm(soonest);
  }
}

function scheduledFunctions(): RegisteredFunction[] {
  return registry()
    .all()
    .filter((fn) => fn.spec.schedule !== undefined);
}

/** The one Scheduler of this gateway's environment. */
export function schedulerFor(env: Env): DurableObjectStub<Scheduler> {
  return env.SCHEDULER.get(env.SCHEDULER.idFromName(inEnvironment(env, "scheduler")));
}
