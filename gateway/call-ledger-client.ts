/**
 * How the rest of the gateway reaches the call ledger: which shard holds a
 * call (and a call's idempotency key), and the shapes of what is written to it.
 */
import { isolateBatch } from "./isolate-batch.js";
import { DELIVERY_DEFAULTS } from "../sdk/defaults.js";
import { ERROR_STATUS, InvalidRequestError, NotFoundError, type WireError } from "../sdk/errors.js";
import {
  CALL_ID_ALPHABET,
  CALL_ID_FORM,
  CALL_ID_PATTERN,
  newCallId,
  type CallKind,
  type CallRecord,
  type CallStatus,
  type DashboardCallRow,
  type DashboardDurationCount,
  type DashboardSeriesPoint,
  type EncodedValue,
  type PlaneRunTimings,
} from "../sdk/protocol.js";
import type { EdgeMetricRow } from "./edge-metrics.js";
import type { Env } from "./env.js";
import { echoedText } from "../sdk/value-text.js";

/**
 * A call id from a request, checked: 400 when it is not one.
 * @example const id = checkedCallId(c.req.param("id"));
 */
export function checkedCallId(id: string | undefined): string {
  if (id === undefined || !CALL_ID_PATTERN.test(id)) throw new InvalidRequestError(`${echoedText(id ?? "")} is not a call id (${CALL_ID_FORM})`);
  return id;
}

/**
 * The 404 of a call the ledger has no record of, or of another app's, which is as unknown as one that never was.
 * @example if (!record || !mayReach(principal, record.app)) throw unknownCall(id, c.var.config.resultTtlSeconds);
 */
export function unknownCall(id: string, resultTtlSeconds: number): NotFoundError {
  return new NotFoundError(
    `no call ${id}: a call is kept ${span(resultTtlSeconds)} after it ends, and one made without an Idempotency-Key is recorded once it has run for ${DELIVERY_DEFAULTS.keylessRecordWaitMs} ms, or as it ends`,
    { callId: id },
  );
}

/** "7 days", "2 hours", "90 seconds": a span in the largest unit that divides it. */
function span(seconds: number): string {
  const [unit, size] = (
    [
      ["day", 86_400],
      ["hour", 3_600],
      ["minute", 60],
    ] as const
  ).find(([, s]) => seconds % s === 0) ?? ["second", 1];
  const n = seconds / size;
  return `${n} ${unit}${n === 1 ? "" : "s"}`;
}

/**
 * Group commit: `write` takes several items at once; the items asked for
 * while one write is under way go together in the next. A keyed map marks each
 * input's attempt (and notes its plane) in the ledger as it runs it, and a
 * write per input was most of its time (bench/map-throughput).
 *
 * @example const start = grouped((marks) => ledger.startMany(marks)); if (await start({ id, attempt: 1 })) run();
 */
export function grouped<T, R>(write: (items: T[]) => Promise<R[]>): (item: T) => Promise<R> {
  let queued: { item: T; done: (result: R) => void; failed: (err: unknown) => void }[] = [];
  let writing = false;
  const flush = async () => {
    writing = true;
    while (queued.length) {
      const batch = queued;
      queued = [];
      try {
        const results = await write(batch.map((q) => q.item));
        batch.forEach((q, i) => q.done(results[i]!));
      } catch (err) {
        for (const q of batch) q.failed(err);
      }
    }
    writing = false;
  };
  return (item) =>
    new Promise<R>((done, failed) => {
      queued.push({ item, done, failed });
      if (!writing) void flush();
    });
}

/** Ledger shards. A call's shard comes from the random tail of its id. */
export const LEDGER_SHARDS = 16;

/** Which of an app's calls the ledger lists, latest first (`callRows`): of one function, status or kind, made before a time. */
export interface CallRowsQuery {
  app: string;
  function?: string;
  /** Functions whose names start so: a class's methods (`Model.`). */
  functionPrefix?: string;
  status?: CallStatus[];
  kind?: CallKind;
  /** Calls made at this time or later. */
  since?: number;
  before?: number;
  /** The calls listed after this one, latest first (`created_at`, then `id`, both descending): a page's cursor. */
  after?: { createdAt: number; callId: string };
  limit: number;
}

/** A call that has ended, as the executor hands it to the ledger. */
export interface FinishedCall {
  id: string;
  app: string;
  function: string;
  kind: CallKind;
  status: Exclude<CallStatus, "pending" | "running">;
  attempts: number;
  createdAt: number;
  startedAt: number;
  finishedAt: number;
  result?: EncodedValue;
  error?: WireError;
  /** Where its function runs, when known: the gateway's metrics count each call once by how it ended, per tier (gateway/edge-metrics.ts). */
  tier?: "edge" | "plane";
  /** Where a plane call's last attempt spent its time on its plane. */
  plane?: PlaneRunTimings;
  /** An edge function's call: its attempts' run times and errors, which the ledger adds to its metrics (gateway/edge-metrics.ts). */
  edge?: EdgeAttempts;
  /**
   * Its idempotency key, scoped (`keyScope`), for a call recorded once, as it ended: a fresh keyed edge call that ended
   * before its running record was due (`callOnce`). A key that names another call by then is left out, and said.
   */
  key?: string;
}

/**
 * What an edge call's metrics count beyond its row: the run time of each attempt that ran in this call's runner, and
 * the error of each one that was retried. A plane call has none: its plane counts its attempts.
 */
export interface EdgeAttempts {
  /** How long its last attempt ran, in ms (workerd's clock moves only between I/O). */
  runMs: number;
  /** The attempts before it that failed and were retried: each one's error code and run time. */
  retried?: { code: string; runMs: number }[];
}

/** A row whose `key` named another call when it was written: the row is kept without it, and its run was an extra one. */
export interface KeyTaken {
  id: string;
  key: string;
  /** The call the key names. */
  names: string;
}

/** The wire record of an ended call. */
export function toCallRecord(call: FinishedCall): CallRecord {
  const record: CallRecord = {
    callId: call.id,
    app: call.app,
    function: call.function,
    kind: call.kind,
    status: call.status,
    attempts: call.attempts,
    createdAt: call.createdAt,
    startedAt: call.startedAt,
    finishedAt: call.finishedAt,
  };
  if (call.result?.json !== undefined) record.result = call.result.json;
  if (call.result?.meta !== undefined) record.meta = call.result.meta;
  if (call.error) record.error = call.error;
  if (call.plane) record.plane = call.plane;
  return record;
}

/** The HTTP status a call record is answered with: 200 once it succeeded, its error's once it ended otherwise, 202 before. */
export function recordStatus(record: CallRecord): 200 | 202 | (typeof ERROR_STATUS)[keyof typeof ERROR_STATUS] {
  if (record.error) return ERROR_STATUS[record.error.code];
  return record.status === "succeeded" ? 200 : 202;
}

/**
 * A spawned call, recorded before it starts so that it survives a restart; or a call made without an idempotency key,
 * recorded as it runs on (`input` left out), which is never run again.
 */
export interface NewCall {
  id: string;
  app: string;
  function: string;
  kind: CallKind;
  createdAt: number;
  /**
   * Its arguments, which a runner that takes it over runs it with. None: a call made without an idempotency key
   * (executor.ts, `callNow`), whose caller goes with its runner: the ledger ends it as failed if that runner is lost.
   */
  input?: EncodedValue;
  /** A scheduled run: the time it was due. */
  scheduledAt?: number;
  /** Its idempotency key, scoped (`keyScope`): a second call with the same key gets this one's id instead. */
  key?: string;
  /** Its first attempt starts now (a keyed `call`, run by the request that made it): recorded as running, attempt 1. */
  running?: boolean;
  /** The plane its first attempt went to (`running` only): noted with the record instead of in a write of its own. */
  plane?: string;
}

/** What the executor needs of the ledger; both the Durable Object and its stub fit. */
export interface LedgerApi {
  /** Records a call before it runs; returns its id, or for a key already known, the id of the call it named. */
  create(call: NewCall): Promise<string>;
  /**
   * `create` for several calls in one write (a keyed map), in the same shard. With `mapScope`, a map whose key is known
   * (any input of it recorded) records nothing: each input the first request had is its call's id, one it had not is "".
   */
  createMany(calls: NewCall[], options?: { mapScope?: string }): Promise<string[]>;
  /** Marks attempt `attempt` as started; false when the call was cancelled. */
  start(id: string, attempt: number): Promise<boolean>;
  /** `start` for several calls in one write. */
  startMany(marks: { id: string; attempt: number }[]): Promise<boolean[]>;
  /** Renews a running call's lease; true when the call was cancelled (its runner stops it). */
  renew(id: string): Promise<boolean>;
  /** `renew` for several calls in one write; answers those of them that were cancelled. */
  renewAll(ids: string[]): Promise<string[]>;
  finish(call: FinishedCall): Promise<void>;
  /** Records ended calls; says which rows' keys named other calls (those rows are kept without their keys). */
  record(calls: FinishedCall[]): Promise<KeyTaken[]>;
  get(id: string, waitMs: number): Promise<CallRecord | null>;
  /** Cancels a call that has not ended; says which plane it was running on, if one. */
  /** `why`, when given, goes on the call's error message: `call <id> was cancelled: <why>`. */
  cancel(id: string, why?: string): Promise<{ record: CallRecord; plane: string | null } | null>;
  /**
   * `cancel` for every input of a keyed map request that has not ended (`scope`: its key as `keyScope` makes it); says
   * which it cancelled, and the plane each was running on, if one.
   */
  cancelMap(scope: string): Promise<{ id: string; plane: string | null }[]>;
  /** The inputs of the keyed map request `scope` that were cancelled (`cancelMap`, or each alone): none of them may start. */
  cancelledInputs(scope: string): Promise<string[]>;
  /** Notes that attempt `attempt` failed and its retry is due at `retryAt` (cleared when the next attempt starts). */
  retrying(id: string, attempt: number, retryAt: number): Promise<void>;
  runningOn(id: string, planeId: string): Promise<void>;
  /** `runningOn` for several calls in one write. */
  runningOnMany(notes: { id: string; planeId: string }[]): Promise<void[]>;
  /** The dashboard's list of this shard's calls of an app (or one function), newest first. */
  callRows(query: CallRowsQuery): Promise<DashboardCallRow[]>;
  /** This shard's cumulative counts of its edge functions' calls (gateway/edge-metrics.ts), for a scrape or an OTLP export. */
  metricRows(): Promise<EdgeMetricRow[]>;
  /** The dashboard's counts of this shard's calls over time, per function. */
  callSeries(query: { app: string; function?: string; since: number; bucketMs: number }): Promise<DashboardSeriesPoint[]>;
  /** The dashboard's counts of one function's ended calls in this shard by time from start to end, per time bucket. */
  callDurations(query: { app: string; function: string; since: number; bucketMs: number }): Promise<DashboardDurationCount[]>;
}

export function shardOf(callId: string): number {
  let hash = 0;
  for (let i = callId.length - 8; i < callId.length; i++) hash = (hash * 31 + callId.charCodeAt(i)) >>> 0;
  return hash % LEDGER_SHARDS;
}

/** What the gateway logs of a run started for a key sent as fresh that named another call (`Tandem-Fresh-Key`). */
export function extraRunLine(app: string, fn: string, key: string, names: string, extraId: string): string {
  return `[${app}.${fn}] key ${key} was sent as fresh but names call ${names}: this request's run ${extraId} was an extra one`;
}

/** An idempotency key as the ledger keeps it: per app and function. */
export function keyScope(app: string, fn: string, key: string): string {
  return `${app}/${fn}/${key}`;
}

/**
 * The key of one input of a keyed map request, in the map's shard: a space after the scope, which no key has, so no
 * other request's key names an input of this map, and the map's inputs are the keys that start with `${scope} `
 * (`cancelMap`).
 * @example mapInputKey(keyScope("shop", "resize", "5b0c…"), 7) // "shop/resize/5b0c… 7"
 */
export function mapInputKey(scope: string, index: number): string {
  return `${scope} ${index}`;
}

/** The ledger shard that answers for a scoped idempotency key (the whole key hashed: a key may be anything). */
export function shardOfKey(scope: string): number {
  let hash = 0;
  for (let i = 0; i < scope.length; i++) hash = (hash * 31 + scope.charCodeAt(i)) >>> 0;
  return hash % LEDGER_SHARDS;
}

/**
 * A new call id that falls in `shard`, so that a keyed call's record and its
 * key live in one shard and are written in one step (a key never names a call
 * that was not recorded). The shard hashes the id's last 8 characters; its
 * last character alone reaches 14 of the 16 shards, so the one before it
 * changes too when it must.
 */
export function newCallIdIn(shard: number): string {
  const id = newCallId();
  let hash = 0;
  for (let i = id.length - 8; i < id.length - 2; i++) hash = (hash * 31 + id.charCodeAt(i)) >>> 0;
  const ownPenultimate = id[id.length - 2]!;
  for (const penultimate of [ownPenultimate, ...CALL_ID_ALPHABET]) {
    const upTo = (hash * 31 + penultimate.charCodeAt(0)) >>> 0;
    const last = [...CALL_ID_ALPHABET].find((c) => ((upTo * 31 + c.charCodeAt(0)) >>> 0) % LEDGER_SHARDS === shard);
    if (last) return id.slice(0, -2) + penultimate + last;
  }
  throw new Error(`no call id falls in ledger shard ${shard}`); // every shard is reached by two characters
}

/** The ledger shard that holds `callId`. `cache` reuses stubs within one request. */
export function ledgerFor(env: Env, callId: string, cache?: Map<string, LedgerApi>): LedgerApi {
  return ledgerShard(env, shardOf(callId), cache);
}

/**
 * Each shard's Durable Object id, made once per isolate: `idFromName` hashes the name, and in a CPU profile of the
 * gateway's isolate under bench/plane-warm the line that made it took 0.085 ms of each call. An id is a value, kept
 * across requests; a stub is made per request.
 */
const ledgerIds: DurableObjectId[] = [];

/** Ledger shard `shard`. */
export function ledgerShard(env: Env, shard: number, cache?: Map<string, LedgerApi>): LedgerApi {
  const name = `ledger-${shard}`;
  const cached = cache?.get(name);
  if (cached) return cached;
  const stub = env.LEDGER.get((ledgerIds[shard] ??= env.LEDGER.idFromName(name))) as unknown as LedgerApi;
  cache?.set(name, stub);
  return stub;
}

/**
 * How long ended calls wait to be written together. One Durable Object write
 * per call was a measured part of a call's latency under load (bench/plane-warm:
 * 3.2 ms overhead with a write each, 2.5 ms batched); a call is still in the
 * ledger well within a second of its answer.
 */
const RECORD_BATCH_MS = 50;

/**
 * Records ended calls in the ledger, batched (gateway/isolate-batch.ts): rows
 * that end within a few milliseconds of each other in this isolate go in one
 * write per shard, so a stream of calls does not pay a Durable Object round
 * trip each. Hand what it returns to `waitUntil`; a write that fails is logged
 * with the ids it held.
 *
 * @example rc.waitUntil(recordEnded(rc.env, [row]).catch((err) => console.error(err)));
 */
export const recordEnded = isolateBatch(RECORD_BATCH_MS, async (env: Env, taken: FinishedCall[]) => {
  const stubs = new Map<string, LedgerApi>();
  try {
    await recordRows(env, taken, stubs);
  } catch (err) {
    // One row the ledger cannot take must not lose the others written with it: each is written alone, and one that
    // fails alone again with a result is written failed, saying why, so whoever waits for the call learns how it ended.
    if (taken.length > 1) {
      console.error(`ledger: could not record ${taken.length} calls in one write (${firstLine(err)}); writing each alone`);
      await Promise.all(taken.map((row) => recordAlone(env, row, stubs)));
    } else await recordAlone(env, taken[0]!, stubs, err);
  } finally {
    for (const row of taken) if (row.key !== undefined) unwrittenKeys.delete(row.key);
  }
});

/** Writes rows, one write per shard; a key that named another call is logged as an extra run. */
async function recordRows(env: Env, rows: FinishedCall[], stubs: Map<string, LedgerApi>): Promise<void> {
  const byShard = new Map<LedgerApi, FinishedCall[]>();
  for (const row of rows) {
    const stub = ledgerFor(env, row.id, stubs);
    const shardRows = byShard.get(stub);
    if (shardRows) shardRows.push(row);
    else byShard.set(stub, [row]);
  }
  const keysTaken = (await Promise.all([...byShard].map(([stub, shardRows]) => stub.record(shardRows)))).flat();
  for (const { id, key, names } of keysTaken) {
    const row = rows.find((r) => r.id === id)!;
    console.error(extraRunLine(row.app, row.function, key.slice(keyScope(row.app, row.function, "").length), names, id));
  }
}

/** One row, written alone (`failed`: its write failed already); with its result, it is written once more as failed. */
async function recordAlone(env: Env, row: FinishedCall, stubs: Map<string, LedgerApi>, failed?: unknown): Promise<void> {
  let err = failed;
  if (err === undefined) {
    try {
      return await recordRows(env, [row], stubs);
    } catch (thrown) {
      err = thrown;
    }
  }
  if (row.result === undefined) return console.error(`ledger: could not record ${row.id}:`, err);
  const error = {
    code: "internal" as const,
    message: `call ${row.id} ended, but the ledger could not keep its result: ${firstLine(err)}`,
    details: { callId: row.id },
  };
  console.error(`ledger: could not record ${row.id} with its result (${firstLine(err)}); recording it failed`);
  const { result: _result, ...rest } = row;
  await recordRows(env, [{ ...rest, status: "failed", error }], stubs).catch((again: unknown) => console.error(`ledger: could not record ${row.id}:`, again));
}

/** An error's first line, at most 300 characters: for a line of the gateway's about it. */
export function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0]!.slice(0, 300);
}

/**
 * The scoped keys of this isolate's fresh keyed calls that are not in the ledger yet (`callOnce` holds one from the
 * call's start until its record is written, running or ended): a request that sends such a key again, and reaches
 * this isolate meanwhile, waits for the record (`untilKeyWritten`) rather than starting the call a second time.
 */
export const unwrittenKeys = new Set<string>();

/**
 * Waits while `scope` is one of this isolate's `unwrittenKeys`, polling (each request waits in its own context), for
 * at most `maxMs`.
 */
export async function untilKeyWritten(scope: string, maxMs = 2_000): Promise<void> {
  for (const until = Date.now() + maxMs; unwrittenKeys.has(scope) && Date.now() < until;) await new Promise((r) => setTimeout(r, 5));
}
