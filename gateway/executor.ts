/**
 * Runs functions: one attempt at a time (inside the isolate, or on a plane),
 * each bounded by the function's timeout, retried with backoff, with the
 * call's context in scope for `currentCall()` and log prefixes. Outcomes go to
 * the call ledger.
 *
 * `attempts` counts the attempts that ran, or may have: one lost with its
 * isolate or plane (docs/api.md, "Delivery") is counted, and the next one
 * starts without using a retry. A spawned call, and any call made with an
 * idempotency key, is recorded before it runs and marks each attempt in the
 * ledger before it starts it, so a runner that takes it over after a crash
 * knows where it got to. A call made without a key is recorded as it ends, or
 * as running once it has run a while, and is never taken over. An attempt
 * cut by its plane stopping together with this gateway (`tandem serve`
 * stopping) is no failure and is not retried: a call the ledger can take over
 * is left to it as it stands, and any other ends, saying why.
 */
import { raceDeadline, withDeadline } from "../sdk/deadline.js";
import { API_LIMITS, DELIVERY_DEFAULTS, STOP_DEFAULTS } from "../sdk/defaults.js";
import {
  CancelledError,
  ContainerFailedError,
  FunctionTimeoutError,
  InternalError,
  InvalidRequestError,
  RETRYABLE_CODES,
  RemoteError,
  TandemError,
  callFailure,
  errorOfCall,
  functionTimeout,
  remoteErrorFrom,
  toWireError,
  withoutLogTail,
} from "../sdk/errors.js";
import { retryDelayMs } from "../sdk/options.js";
import { TERMINAL_STATUSES, encodeValue, newCallId, type CallKind, type CallRecord, type CallStatus, type PlaneRunTimings } from "../sdk/protocol.js";
import type { CallArgs } from "./call-args.js";
import { checkArguments } from "./check-arguments.js";
import type { ResumePoint } from "./call-ledger.js";
import {
  grouped,
  keyScope,
  ledgerFor,
  ledgerShard,
  mapInputKey,
  newCallIdIn,
  extraRunLine,
  recordEnded,
  shardOfKey,
  untilKeyWritten,
  unwrittenKeys,
  toCallRecord,
  type EdgeAttempts,
  type FinishedCall,
  type LedgerApi,
  type NewCall,
  firstLine,
} from "./call-ledger-client.js";
import { ClientWentError, cancelWhenClientGoes } from "./client-gone.js";
import { EdgeCall, stopIfCancelled } from "./edge-call.js";
import { EncodedResult } from "./encoded-result.js";
import { encodeResult } from "../sdk/result-value.js";
import { AttemptLost, StoppedWithGateway, forwardToPlane, type ForwardOptions } from "./forward-to-plane.js";
import { waitForBatch } from "./isolate-batch.js";
import { registry, type RegisteredFunction } from "./registry.js";
import { RunBatch } from "./plane-runs.js";
import { mapStack } from "./source-map.js";
import { isGeneratorResult } from "../sdk/generator-result.js";
import { runStore, withCallEnv, type RunContext } from "./run-context.js";
import { cancelOnPlane } from "./plane-client.js";
import { maskedError } from "../sdk/secret.js";
import { keepEdgeLine } from "./log-sink.js";
import { beatRunners, holdRunner } from "./live-runners.js";

export interface Outcome {
  status: Exclude<CallStatus, "pending" | "running">;
  /** The result, in wire form (an `EncodedResult`) when a function returned it, in either tier. */
  value?: unknown;
  error?: TandemError;
  attempts: number;
  startedAt: number;
  finishedAt: number;
  /** Where the last attempt's time went on the plane that ran it (a plane call that reached one). */
  plane?: PlaneRunTimings;
  /** An edge call's attempts, for its function's metrics (gateway/edge-metrics.ts). */
  edge?: EdgeAttempts;
}

/** A call that has not begun. */
const NOT_STARTED: ResumePoint = { attempts: 0, running: false, plane: null };

export interface ExecuteOptions {
  /** Where a recorded call got to, when this runner takes it over from one that was lost. */
  from?: ResumePoint;
  /** May veto an attempt (the call was cancelled meanwhile); a recorded call marks the attempt started here. */
  beforeAttempt?: (attempt: number) => Promise<boolean>;
  /** Told which plane each try of a plane attempt goes to, before it is sent. */
  onPlane?: (planeId: string) => Promise<void>;
  /** Told which plane each try of a plane attempt went to, once its request is on its way. */
  onSent?: (planeId: string) => void;
  /** Told that an attempt failed and when its retry is due, before the wait for it (a recorded call notes it). */
  onRetryWait?: (attempt: number, retryAt: number) => Promise<void>;
  /** Sends a plane attempt together with the others of its request ready at the same moment (a `.map`'s inputs). */
  batch?: RunBatch;
  /** The call is in the ledger, where a cancel can reach it: its edge attempts stop on one (gateway/edge-call.ts). */
  recorded?: boolean;
  /**
   * The ledger holds the call's arguments and takes it over when its runner is lost: an attempt cut by its plane
   * stopping with this gateway is left to it (`StoppedWithGateway` is thrown), not ended.
   */
  resumable?: boolean;
  /** Told of each edge attempt as it starts (a call recorded while it runs makes the one under way reachable by a cancel). */
  onEdgeAttempt?: (call: EdgeCall) => void;
}

/**
 * Runs `fn` with its timeout and retry policy, from where `options.from`
 * says the call got to (a new call: attempt 1).
 *
 * A resumed attempt that had begun at the edge died with its isolate: it ran,
 * or began to, so the next one is a new attempt. One that had begun on a
 * plane may still be running there, or have ended there: it is asked for
 * again, under its number, from the plane it was sent to, which answers with
 * its outcome rather than run it twice. An attempt lost with a plane (or a
 * plane's memory of it) is counted, and the next one starts at once; such
 * lost attempts use no retry, and at most `maxLostAttempts` are taken. One
 * whose last attempt had failed and was waiting for its retry (`from.retryAt`)
 * goes on with that retry, when it is due: it is no lost attempt.
 */
export async function execute(rc: RunContext, fn: RegisteredFunction, args: CallArgs, callId: string, options: ExecuteOptions = {}): Promise<Outcome> {
  const startedAt = Date.now();
  const from = options.from ?? NOT_STARTED;
  const plane = fn.spec.tier === "plane";
  const retrying = from.running && from.retryAt !== undefined;
  let attempt = retrying || (from.running && !plane) ? from.attempts + 1 : Math.max(1, from.attempts);
  let lost = from.running && !plane && !retrying ? 1 : 0;
  if (retrying) await sleep(Math.max(0, from.retryAt! - Date.now()));
  const forward: ForwardOptions = {
    ...(options.onPlane ? { onPlane: options.onPlane } : {}),
    ...(options.onSent ? { onSent: options.onSent } : {}),
    ...(from.running && plane && from.plane && !retrying ? { sentTo: from.plane } : {}),
    ...(options.batch ? { batch: options.batch } : {}),
  };
  const lastAttempt = () => fn.spec.retries.maxRetries + 1 + lost;
  const origin = { app: fn.app, function: fn.name, callId };
  let planeTimings: PlaneRunTimings | undefined;
  if (plane) forward.onTimings = (timings) => (planeTimings = timings);
  // An edge attempt's start, and the attempts retried before it: what its function's metrics count, kept in the ledger row.
  let attemptAt = startedAt;
  let retried: EdgeAttempts["retried"];
  const ended = (outcome: Omit<Outcome, "plane" | "startedAt" | "finishedAt" | "edge">): Outcome => {
    const finishedAt = Date.now();
    return {
      ...outcome,
      // Whatever ended it (no capacity, a plane that cannot run it, a bad argument), the error names the call it ended.
      ...(outcome.error ? { error: errorOfCall(outcome.error, callId) } : {}),
      startedAt,
      finishedAt,
      ...(planeTimings ? { plane: planeTimings } : {}),
      ...(plane ? {} : { edge: retried ? { runMs: finishedAt - attemptAt, retried } : { runMs: finishedAt - attemptAt } }),
    };
  };
  // Bounded: every pass either returns or moves to the next attempt, and attempts stop at the last one.
  for (let pass = 0; pass <= fn.spec.retries.maxRetries + 1 + DELIVERY_DEFAULTS.maxLostAttempts + 1; pass++) {
    planeTimings = undefined; // the last attempt's, not an earlier one's
    if (options.beforeAttempt && !(await options.beforeAttempt(attempt))) {
      return ended({ status: "cancelled", error: new CancelledError(`call ${callId} was cancelled`, { callId }), attempts: attempt - 1 });
    }
    attemptAt = Date.now();
    try {
      const value = await attemptOnce(rc, fn, args, callId, attempt, forward, options);
      return ended({ status: "succeeded", value, attempts: attempt });
    } catch (err) {
      if (err instanceof StoppedWithGateway) {
        // Not the function's failure, and no retry here: the gateway stops too, and nothing would run it. The ledger
        // runs a call it can take over again when the gateway runs again; any other ends, saying why.
        if (options.resumable) throw err;
        return ended({ status: "failed", error: err.failure, attempts: attempt });
      }
      if (err instanceof AttemptLost) {
        if (lost >= DELIVERY_DEFAULTS.maxLostAttempts) {
          const error = new InternalError(`call ${callId} lost ${lost + 1} attempts to planes that died or restarted; the last: ${err.message}`, { callId });
          keepEdgeLine(rc, origin, "system", failedLine(error, attempt));
          return ended({ status: "failed", error, attempts: attempt });
        }
        // Kept as a system line, which is printed too (once: it was printed a second time, plain, before).
        keepEdgeLine(rc, origin, "system", `${err.message}; it counts as attempt ${attempt}, attempt ${attempt + 1} starts now`);
        lost++;
        attempt++;
        delete forward.sentTo;
        forward.avoid = err.planes;
        continue; // nothing failed: no backoff
      }
      // The handler's own errors arrive as RemoteError already (attemptOnce); anything else is the gateway's fault,
      // told without its stack or this host's paths.
      const error = err instanceof TandemError ? err : new InternalError(`call ${callId} failed inside the gateway: ${firstLine(err)}`, { callId });
      if (attempt >= lastAttempt() || !RETRYABLE_CODES.has(error.code)) {
        // An inner call's error the function let through (its timeout, its cancel, its container's failure) is passed
        // on as it came, and this call failed: it did not time out, nor was it cancelled.
        const own = error.callId === undefined || error.callId === callId;
        // A timeout at the edge is Tandem's to tell; a plane tells its own (with its container). The last of several
        // attempts ends with the call's summary, as a failed one does (before: a timeout line like each retried one's).
        if (own && error instanceof FunctionTimeoutError) {
          if (attempt > 1) keepEdgeLine(rc, origin, "system", `timed out after ${attempt} attempts: ${firstLine(error)}`);
          else if (!plane) keepEdgeLine(rc, origin, "system", error.message);
        }
        // A cancel that reached the plane comes back as its error: the call was cancelled, as its record says.
        const status = !own ? "failed" : error instanceof FunctionTimeoutError ? "timed_out" : error instanceof CancelledError ? "cancelled" : "failed";
        // A timeout has its line already (above, or the plane's), and so has a container that failed (the plane's line
        // says it ran out of memory, crashed or was killed, with its container); any other failure's is the gateway's.
        // A generator returned to a call is its caller's mistake, told to it (`tandem run` streams it then), not a failure.
        const callersMistake = error.details?.returnedGenerator === true;
        if (status === "failed" && !(own && error instanceof ContainerFailedError) && !callersMistake)
          keepEdgeLine(rc, origin, "system", failedLine(error, attempt));
        return ended({ status, error, attempts: attempt });
      }
      if (!plane) (retried ??= []).push({ code: error.code, runMs: Date.now() - attemptAt });
      const delayMs = retryDelayMs(fn.spec.retries, attempt - lost);
      // One line: a container's failure without the last log lines its message ends with (its lines are kept already).
      keepEdgeLine(rc, origin, "system", `attempt ${attempt} failed (${firstLine(withoutLogTail(error.message))}); attempt ${attempt + 1} in ${delayMs} ms`);
      const retryAt = Date.now() + delayMs;
      await options.onRetryWait?.(attempt, retryAt).catch((err: unknown) => console.error(`ledger: could not note the retry of ${callId}:`, err));
      await sleep(Math.max(0, retryAt - Date.now()));
      attempt++;
      delete forward.sentTo;
      delete forward.avoid;
    }
  }
  throw new InternalError(`call ${callId} ran past its last attempt`, { callId }); // unreachable: the loop returns first
}

async function attemptOnce(
  rc: RunContext,
  fn: RegisteredFunction,
  args: CallArgs,
  callId: string,
  attempt: number,
  forward: ForwardOptions,
  options: Pick<ExecuteOptions, "recorded" | "onEdgeAttempt">,
): Promise<unknown> {
  // A plane gets the arguments in wire form; only a function run here needs their values. Arguments its `input`
  // refuses fail the attempt here, before a plane is asked (a map input, a scheduled run): at the edge, the handler checks them.
  if (fn.spec.tier === "plane") {
    if (fn.input || fn.wasmInput) await checkArguments(fn, args);
    return forwardToPlane(rc, fn, args, callId, attempt, forward);
  }
  const callEnv = await registry().processEnvOf(rc, fn);
  const call = new EdgeCall(callId, fn.app, fn.name, attempt, fn.spec.env, options.recorded === true); // ended below, whatever happens
  options.onEdgeAttempt?.(call);
  const context: RunContext = { ...rc, logPrefix: `[${fn.app}.${fn.name} ${callId}]`, logTo: { app: fn.app, function: fn.name, callId }, call };
  withCallEnv(context, callEnv);
  const running = runStore.run(context, async () => {
    let value: unknown;
    try {
      value = await fn.handler(...args.values);
    } catch (err) {
      throw maskedError(callFailure(err, { callId }, mapStack), context.secretValues);
    }
    if (isGeneratorResult(value)) {
      throw new InvalidRequestError(`${fn.app}.${fn.name} is a generator function; stream it with .remoteGen() (POST .../stream)`, {
        callId,
        returnedGenerator: true, // a function that returned one (a wrapper): `tandem run` streams it instead
      });
    }
    // In wire form here, as a plane's runner sends it: a result the wire cannot carry fails the call, in either tier alike.
    try {
      return new EncodedResult(encodeResult(value, `${fn.app}.${fn.name}`));
    } catch (err) {
      throw remoteErrorFrom(err, { callId });
    }
  });
  const deadline = Date.now() + fn.spec.timeoutSeconds * 1000;
  try {
    const value = await withDeadline(
      running,
      deadline,
      // In the call's context, as a cancel's stop is: what its abort listeners print is its lines, with its call id.
      () =>
        runStore.run(context, () => call.stop(functionTimeout({ app: fn.app, function: fn.name, timeoutSeconds: fn.spec.timeoutSeconds, callId, attempt }))),
      call, // a cancel ends it sooner
    );
    // Cancelled before it returned, which it did not look for in time: the call was cancelled, as its record says, and
    // its value is no outcome of it (before: a map's line said succeeded where the input's record said cancelled).
    const cancelled = call.cancelNoted();
    if (cancelled) throw cancelled;
    return value;
  } catch (err) {
    // Stopped (cancelled, or at its timeout) before the function returned: the caller is answered now, and the
    // function, told by its signal, has a grace to clean up; its lines are kept meanwhile.
    if (call.stoppedBy(err)) rc.waitUntil(raceDeadline(running, Date.now() + STOP_DEFAULTS.edgeGraceMs).catch(() => {}));
    throw err;
  } finally {
    call.end();
  }
}

/** The ledger row for an outcome. */
export function finishedCall(id: string, fn: RegisteredFunction, kind: CallKind, createdAt: number, outcome: Outcome): FinishedCall {
  return {
    id,
    app: fn.app,
    function: fn.name,
    kind,
    tier: fn.spec.tier,
    status: outcome.status,
    attempts: outcome.attempts,
    createdAt,
    startedAt: outcome.startedAt,
    finishedAt: outcome.finishedAt,
    ...(outcome.status === "succeeded" ? { result: outcome.value instanceof EncodedResult ? outcome.value.encoded : encodeValue(outcome.value) } : {}),
    ...(outcome.error ? { error: toWireError(outcome.error) } : {}),
    ...(outcome.plane ? { plane: outcome.plane } : {}),
    ...(outcome.edge ? { edge: outcome.edge } : {}),
  };
}

/**
 * Runs a call made without an idempotency key now and returns its outcome; the ledger records it after the response,
 * or as running once it has run `DELIVERY_DEFAULTS.keylessRecordWaitMs` (`recordIfLong`).
 */
export async function callNow(
  rc: RunContext,
  fn: RegisteredFunction,
  args: CallArgs,
  kind: CallKind = "remote",
): Promise<{ id: string; outcome: Outcome; row: FinishedCall }> {
  const id = newCallId();
  const createdAt = Date.now();
  const record = recordIfLong(rc, fn, id, kind, createdAt);
  // A `.remote()` a web request's handler waits on is cancelled when that request's client goes: nobody waits for it.
  const watch = kind === "remote" ? cancelWhenClientGoes(rc, record.cancel) : undefined;
  let outcome: Outcome;
  try {
    outcome = await execute(rc, fn, args, id, record.options);
  } catch (err) {
    record.abandon(); // its running record, if written, is ended by the ledger once its lease lapses
    throw err;
  } finally {
    watch?.stop();
  }
  // Said as such to the handler, which ends its request quietly (ClientWentError), and in the call's record.
  if (watch?.went() && outcome.status === "cancelled") outcome = { ...outcome, error: new ClientWentError(id) };
  const row = finishedCall(id, fn, kind, createdAt, outcome);
  record.ended(row);
  return { id, outcome, row };
}

/**
 * The running record of a call made without an idempotency key (`callNow`, and a stream: gateway/stream.ts), written once it has run
 * `DELIVERY_DEFAULTS.keylessRecordWaitMs`, so the dashboard, `GET /v1/calls/:id` and `tandem logs --call` know of a long
 * call while it runs. A call that ends sooner costs a timer set and cleared: it is written once, as it ended, in the
 * next batch of ended calls (`ended`), as before. Once recorded, the call is kept like a keyed one while it runs: its
 * lease renewed, each later attempt marked (a cancel stops the next), the plane each try goes to noted (a cancel
 * reaches it there), its edge attempt under way reachable by a cancel. Its arguments are not kept: its caller goes
 * with its runner, so a runner lost leaves it to the ledger to end as failed, never to run again (gateway/call-ledger.ts).
 */
export function recordIfLong(
  rc: RunContext,
  fn: RegisteredFunction,
  id: string,
  kind: CallKind,
  createdAt: number,
): { options: ExecuteOptions; ended: (row: FinishedCall, cancelledHere?: boolean) => void; abandon: () => void; cancel: (why?: string) => Promise<void> } {
  let attempt = 1;
  let plane: string | undefined;
  let edgeAttempt: EdgeCall | undefined;
  /** Settles true once the running record is in the ledger (false: its write failed); unset until it is due. */
  let written: Promise<boolean> | undefined;
  let renew: ReturnType<typeof setInterval> | undefined;
  let release: (() => void) | undefined;
  let ledger: LedgerApi | undefined;
  const writeRecord = () => {
    const stub = (ledger = ledgerFor(rc.env, id));
    release = holdRunner([id]); // from before its record: a ledger in this isolate never takes it for lost while it runs here
    written = stub
      .create({ id, app: fn.app, function: fn.name, kind, createdAt, running: true, ...(plane ? { plane } : {}) })
      .then(async () => {
        if (attempt > 1) await stub.start(id, attempt); // a retry began before the record was due
        return true;
      })
      .catch((err: unknown) => {
        console.error(`ledger: could not record ${id} as running:`, err);
        return false;
      });
    rc.waitUntil(written);
    renew = renewLease(rc, stub, id);
    edgeAttempt?.recordedNow();
  };
  const timer = setTimeout(writeRecord, DELIVERY_DEFAULTS.keylessRecordWaitMs);
  let over = false;
  const stop = () => {
    over = true;
    clearTimeout(timer);
    clearInterval(renew);
  };
  const options: ExecuteOptions = {
    beforeAttempt: (n) => {
      attempt = n;
      // Recorded: the attempt is marked, and refused if the call was cancelled meanwhile.
      return written && ledger ? written.then((ok) => !ok || ledger!.start(id, n)) : Promise.resolve(true);
    },
    onSent: (planeId) => {
      plane = planeId;
      if (written && ledger)
        rc.waitUntil(
          written
            .then(async (ok) => {
              if (ok) await ledger!.runningOn(id, planeId);
            })
            .catch((err) => console.error(`ledger: could not note the plane of ${id}:`, err)),
        );
    },
    onEdgeAttempt: (call) => {
      edgeAttempt = call;
      if (written) call.recordedNow();
    },
  };
  return {
    options,
    ended: (row, cancelledHere = false) => {
      stop();
      // A write that fails is logged by the batch, with the calls it held.
      if (!written) return waitForBatch(rc, recordEnded(rc.env, [row]));
      // After its running record (an insert of the row once its end is in fails), unless a cancel ended it there (not
      // one made here: a stream whose reader went).
      rc.waitUntil(written.then(() => (row.status === "cancelled" && !cancelledHere ? undefined : recordEnded(rc.env, [row]))).finally(release));
    },
    abandon: () => {
      stop();
      release?.();
    },
    // Cancelled as `POST /v1/calls/:id/cancel` cancels it: recorded now if it was not yet, so the ledger can stop it
    // wherever it runs (its edge attempt here, its input on its plane); the call then ends `cancelled`.
    cancel: async (why) => {
      if (over) return;
      if (!written) {
        clearTimeout(timer);
        writeRecord();
      }
      // Its edge attempt stops now, from this request, which runs it: with its grace, whatever else ends the request
      // meanwhile (a handler that fails on another call's cancel). The ledger's cancel then records it.
      try {
        edgeAttempt?.stopIfCancelled(true);
      } catch {
        // Told from another request than the one running it (a socket's end, in an agent's object): workerd may refuse
        // to abort its signal from here; the ledger's cancel below reaches it as its own request next looks.
      }
      if (!(await written)) return;
      const cancelled = await ledger!.cancel(id, why);
      if (cancelled?.plane) await cancelOnPlane(rc, cancelled.plane, [id], false);
    },
  };
}

/**
 * Runs a call made with an idempotency key: recorded first (running, attempt
 * 1, with its arguments, so it is resumed if this runner is lost), then run
 * here. A key already known answers with the record of the call it named,
 * waiting for it to end. Returns the call's record.
 *
 * `fresh`: the client made the key for this request and sends it for the first
 * time (`Tandem-Fresh-Key`), so no earlier call can hold it. The call then
 * runs at once, and its answer waits for the run only. Its running record is
 * written once it has run `DELIVERY_DEFAULTS.freshRecordWaitMs` (a plane call's
 * as its first plane is chosen, with that plane), and its later attempts, the
 * plane it went to and its end record wait for that write. An edge call that
 * ends sooner is written once, as it ended, with its key, in the next batch of
 * ended calls: a Durable Object call less on the isolate's thread (about half
 * of a `.remote()`'s time through `tandem serve`, bench/README.md). A key that
 * turns out to be known after all (a client that said fresh of a key it had
 * sent) is answered with the call it names when the ledger said so before the
 * run ended; the run this request started is logged as an extra one.
 *
 * @example const record = await callOnce(rc, fn, args, "5b0c…", false); // the same record for the same key
 */
export async function callOnce(rc: RunContext, fn: RegisteredFunction, args: CallArgs, key: string, fresh = false): Promise<CallRecord> {
  const scope = keyScope(fn.app, fn.name, key);
  const id = newCallIdIn(shardOfKey(scope));
  const ledger = ledgerFor(rc.env, id);
  const createdAt = Date.now();
  const create = (plane?: string) =>
    ledger.create({
      id,
      app: fn.app,
      function: fn.name,
      kind: "remote",
      createdAt,
      input: args.encoded,
      key: scope,
      running: true,
      ...(plane ? { plane } : {}),
    });
  const ended = (outcome: Outcome) => ({ ...finishedCall(id, fn, "remote", createdAt, outcome), startedAt: createdAt }); // as recorded: begun when accepted
  const recordEnd = (row: FinishedCall) => waitForBatch(rc, recordEnded(rc.env, [row])); // a failed write is logged by the batch
  // Cut as its plane stopped with this gateway: left to the ledger, unended; the request, cut by serve's front door
  // already, is answered with the plane's error.
  const leftToLedger = (err: unknown): never => {
    throw err instanceof StoppedWithGateway ? err.failure : err;
  };
  if (!fresh) {
    await untilKeyWritten(scope); // a fresh call of this key under way in this isolate, not in the ledger yet
    const callId = await create();
    if (callId !== id) return awaitRecord(ledger, callId, fn, rc);
    const row = ended(await runRecorded(rc, ledger, fn, id, args, NOT_STARTED, { renew: true, firstMarked: true, waited: true }).catch(leftToLedger));
    // The answer goes first; the row follows in the next batch (a request sent again meanwhile waits for it).
    if (row.status !== "cancelled") recordEnd(row);
    return toCallRecord(row);
  }
  unwrittenKeys.add(scope);
  const record = deferredRecord(create);
  let known: string | undefined; // what the ledger said of the key, once it has
  const written = record.written.then((callId) => (known = callId));
  written.then(
    () => unwrittenKeys.delete(scope),
    () => unwrittenKeys.delete(scope), // a failed write is logged with the end record that waits for it
  );
  const afterRecord = <T>(write: () => Promise<T>) => written.then(write);
  const outcome = await runRecorded(rc, ledger, fn, id, args, NOT_STARTED, {
    renew: true,
    firstMarked: true,
    waited: true,
    start: (mark) => (record.now(), afterRecord(() => ledger.start(mark.id, mark.attempt))),
    notePlane: (note) => (record.now(note.planeId) ? written.then(() => {}) : afterRecord(() => ledger.runningOn(note.id, note.planeId))),
    noteRetry: (note) => (record.now(), afterRecord(() => ledger.retrying(note.id, note.attempt, note.retryAt))),
  }).catch(leftToLedger);
  const row = ended(outcome);
  // An edge call that ended before its record was due is written once, ended; any other is written now if it is not yet.
  if (fn.spec.tier === "edge" && record.drop()) {
    recordEnd({ ...row, key: scope }); // the batch writer lets go of the key, and says if it named another call
    return toCallRecord(row);
  }
  record.now();
  const extra = (callId: string) => console.error(extraRunLine(fn.app, fn.name, key, callId, id));
  if (known !== undefined && known !== id) {
    extra(known);
    return awaitRecord(ledger, known, fn, rc);
  }
  rc.waitUntil(
    written
      .then((callId) => (callId === id ? (row.status === "cancelled" ? undefined : recordEnd(row)) : extra(callId)))
      .catch((err) => console.error(`ledger: could not record ${id}:`, err)),
  );
  return toCallRecord(row);
}

/**
 * A fresh keyed call's running record, written `DELIVERY_DEFAULTS.freshRecordWaitMs` after the call starts unless
 * `now` writes it sooner (with the plane its first attempt goes to: true when that plane is noted with it), or `drop`
 * says it never will be (true: it was not written, and the call's end row, with its key, stands for it).
 */
function deferredRecord(create: (plane?: string) => Promise<string>): {
  written: Promise<string>;
  now: (plane?: string) => boolean;
  drop: () => boolean;
} {
  let write!: (plane?: string) => boolean;
  let settled = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const settle = () => {
    if (settled) return false;
    settled = true;
    clearTimeout(timer);
    return true;
  };
  const written = new Promise<string>((resolve, reject) => {
    write = (plane) => {
      if (!settle()) return false;
      create(plane).then(resolve, reject);
      return true;
    };
  });
  timer = setTimeout(() => write(), DELIVERY_DEFAULTS.freshRecordWaitMs);
  return { written, now: (plane) => write(plane), drop: settle };
}

/**
 * Records a spawned call (its arguments in wire form, as they came) and starts
 * it in the background; returns its id at once. A scheduled run is a spawned
 * call of kind "scheduled", with its due time. With an idempotency `key`
 * already known, returns the id of the call it named and starts nothing.
 */
export async function spawnCall(
  rc: RunContext,
  fn: RegisteredFunction,
  args: CallArgs,
  options: { id?: string; kind?: "spawn" | "scheduled"; scheduledAt?: number; key?: string } = {},
): Promise<string> {
  const scope = options.key === undefined ? undefined : keyScope(fn.app, fn.name, options.key);
  const id = options.id ?? (scope === undefined ? newCallId() : newCallIdIn(shardOfKey(scope)));
  const createdAt = Date.now();
  const ledger = ledgerFor(rc.env, id);
  // Held from before its record: a ledger in this isolate never takes it for lost while this runner lives.
  const release = holdRunner([id]);
  let callId: string;
  try {
    callId = await ledger.create({
      id,
      app: fn.app,
      function: fn.name,
      kind: options.kind ?? "spawn",
      createdAt,
      input: args.encoded,
      ...(options.scheduledAt === undefined ? {} : { scheduledAt: options.scheduledAt }),
      ...(scope === undefined ? {} : { key: scope }),
    });
  } catch (err) {
    release();
    throw err;
  }
  if (callId !== id) {
    release();
    return callId; // sent again: the call its key named is running or ran
  }
  rc.waitUntil(runSpawned(rc, ledger, fn, id, args, NOT_STARTED, createdAt, options.kind ?? "spawn").finally(release));
  return id;
}

/**
 * `spawnCall` with an idempotency key: also says whether the key was known already (the request sent again), so its
 * answer can tell the call's status as it stands rather than `pending`.
 */
export async function spawnCallOnce(rc: RunContext, fn: RegisteredFunction, args: CallArgs, key: string): Promise<{ callId: string; sentAgain: boolean }> {
  const id = newCallIdIn(shardOfKey(keyScope(fn.app, fn.name, key)));
  const callId = await spawnCall(rc, fn, args, { id, key });
  return { callId, sentAgain: callId !== id };
}

/**
 * Runs a spawned call to its end, keeping its lease alive (renewed three
 * times a lease), and records the outcome once. Used right after `spawn`, and
 * by the ledger to resume a call whose runner was lost (gateway/worker.ts
 * hands it to the ledger), from where it got to. `kind`: as it was made (a
 * scheduled run, a keyed `.remote()` resumed), as its end record counts it.
 */
export async function runSpawned(
  rc: RunContext,
  ledger: LedgerApi,
  fn: RegisteredFunction,
  id: string,
  args: CallArgs,
  from: ResumePoint,
  createdAt: number,
  kind: CallKind,
): Promise<void> {
  const release = holdRunner([id]); // until its outcome is recorded
  try {
    // A failure nobody waits on (a scheduled run's) is in its system lines, kept and printed (gateway/log-sink.ts).
    const outcome = await runRecorded(rc, ledger, fn, id, args, from, { renew: true });
    if (outcome.status === "cancelled") return;
    await ledger.finish(finishedCall(id, fn, kind, createdAt, outcome));
  } catch (err) {
    if (!(err instanceof StoppedWithGateway)) console.error(`call ${id}: could not record its outcome:`, err); // else left to the ledger (runRecorded)
  } finally {
    release();
  }
}

/**
 * Runs a call that the ledger holds: each attempt marked started there before
 * it runs (`firstMarked`: the first was, when the call was recorded), the
 * plane each try goes to noted, and (with `renew`) its lease renewed three
 * times a lease while it runs. `waited`: someone waits for the answer, so the
 * plane is noted just after the request to it rather than before (a runner
 * lost in that fraction of a millisecond leaves it unnoted, and the call
 * resumes on whichever plane fits); a spawned call notes it first. Throws
 * `StoppedWithGateway` when its plane stopped under it with this gateway: the
 * call is left to the ledger, unended.
 */
async function runRecorded(
  rc: RunContext,
  ledger: LedgerApi,
  fn: RegisteredFunction,
  id: string,
  args: CallArgs,
  from: ResumePoint,
  options: {
    renew: boolean;
    firstMarked?: boolean;
    waited?: boolean;
    /** How attempts are marked and planes noted, when not one write each (a keyed map groups them). */
    start?: (mark: { id: string; attempt: number }) => Promise<boolean>;
    notePlane?: (note: { id: string; planeId: string }) => Promise<void>;
    /** How a failed attempt's retry is noted, when not as a write of its own at once (a fresh keyed call's waits for its record). */
    noteRetry?: (note: { id: string; attempt: number; retryAt: number }) => Promise<void>;
    batch?: RunBatch;
  },
): Promise<Outcome> {
  let marked = options.firstMarked === true;
  const start = options.start ?? ((mark: { id: string; attempt: number }) => ledger.start(mark.id, mark.attempt));
  const notePlane = options.notePlane ?? ((note: { id: string; planeId: string }) => ledger.runningOn(note.id, note.planeId));
  const noteRetry = options.noteRetry ?? ((note: { id: string; attempt: number; retryAt: number }) => ledger.retrying(note.id, note.attempt, note.retryAt));
  const renew = options.renew ? renewLease(rc, ledger, id) : undefined;
  const release = holdRunner([id]); // see gateway/live-runners.ts
  try {
    return await execute(rc, fn, args, id, {
      from,
      recorded: true,
      resumable: true,
      ...(options.batch ? { batch: options.batch } : {}),
      beforeAttempt: (attempt) => {
        if (!marked) return start({ id, attempt });
        marked = false;
        return Promise.resolve(true);
      },
      ...(options.waited
        ? {
            // After the request, so the note's Durable Object write overlaps the plane's run rather than delaying the
            // request on the isolate's thread (bench/README.md, "The plane noted after the request").
            onSent: (planeId: string) =>
              rc.waitUntil(
                new Promise((r) => setTimeout(r, 0))
                  .then(() => notePlane({ id, planeId }))
                  .catch((err) => console.error(`ledger: could not note the plane of ${id}:`, err)),
              ),
          }
        : { onPlane: (planeId: string) => notePlane({ id, planeId }) }),
      onRetryWait: (attempt, retryAt) => noteRetry({ id, attempt, retryAt }),
    });
  } catch (err) {
    if (err instanceof StoppedWithGateway) {
      const line = `${err.message}; its record stays as it is, and the ledger runs it again when the gateway runs again`;
      keepEdgeLine(rc, { app: fn.app, function: fn.name, callId: id }, "system", line); // printed too, once
    }
    throw err;
  } finally {
    clearInterval(renew);
    release();
  }
}

/**
 * Renews the lease of recorded call `id` three times a lease while its runner lives here, and stops its edge attempt
 * under way on a cancel; `clearInterval` what it returns once the call's run ends.
 * @example const renew = renewLease(rc, ledger, id); try { await run(); } finally { clearInterval(renew); }
 */
function renewLease(rc: RunContext, ledger: LedgerApi, id: string): ReturnType<typeof setInterval> {
  return setInterval(() => {
    beatRunners([id]);
    stopIfCancelled(id); // a cancel the ledger of this isolate told of
    void ledger.renew(id).then(
      (cancelled) => stopIfCancelled(id, cancelled === true), // one from anywhere, told by the ledger
      () => {},
    );
  }, rc.config.callLeaseMs / 3);
}

/**
 * The record of a call, once it has ended: waits for it in the ledger (long
 * polls), for as long as the function could run with every retry; a call still
 * going after that is answered as it stands.
 */
async function awaitRecord(ledger: LedgerApi, id: string, fn: RegisteredFunction, rc: RunContext): Promise<CallRecord> {
  const attempts = fn.spec.retries.maxRetries + 1 + DELIVERY_DEFAULTS.maxLostAttempts;
  const perAttemptMs = 2 * fn.spec.timeoutSeconds * 1000 + 10_000 + fn.spec.retries.maxDelayMs;
  const deadline = Date.now() + attempts * perAttemptMs + rc.config.callLeaseMs;
  for (;;) {
    const record = await ledger.get(id, Math.max(0, Math.min(API_LIMITS.maxWaitMs, deadline - Date.now())));
    if (!record) throw new InternalError(`call ${id}, named by this idempotency key, is missing from the ledger`, { callId: id });
    if (TERMINAL_STATUSES.has(record.status) || Date.now() >= deadline) return record;
  }
}

/**
 * Runs one call per input, `concurrency` at a time, handing each result to
 * `onResult` as it finishes; records them all in the ledger afterwards. Once
 * `stopped` says so (its reader left), no input not begun yet starts.
 */
export async function mapCalls(
  rc: RunContext,
  fn: RegisteredFunction,
  inputs: CallArgs[],
  onResult: (index: number, row: FinishedCall, outcome: Outcome) => void | Promise<void>,
  options: { concurrency?: number; stopped?: () => boolean } = {},
): Promise<void> {
  const rows: FinishedCall[] = [];
  const batch = new RunBatch();
  const concurrency = options.concurrency ?? 32;
  let next = 0;
  const worker = async () => {
    while (next < inputs.length && !options.stopped?.()) {
      const index = next++;
      const id = newCallId();
      const createdAt = Date.now();
      const outcome = await execute(rc, fn, inputs[index]!, id, { batch });
      const row = finishedCall(id, fn, "map", createdAt, outcome);
      rows.push(row);
      await onResult(index, row, outcome);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, inputs.length) }, worker));
  rc.waitUntil(recordEnded(rc.env, rows).catch((err) => console.error("ledger: could not record map calls:", err)));
}

/**
 * `mapCalls` for a map request with an idempotency key: every input is
 * recorded first (in one write, in the key's shard, each with the key and its
 * index), so that the request sent again streams the same calls' records, as
 * each ends, instead of running them again; and calls whose runner is lost
 * are resumed. Leases are renewed for every input until the map records them
 * as it ends, those that ended first included.
 *
 * `fresh` (see `callOnce`), for a plane function: the inputs are recorded as
 * running their first attempt, so none waits for a mark before it starts, and
 * they go to their planes while that write is made. A map cancelled meanwhile
 * (`cancelMap`) starts none of those not started yet: a cancel that reaches this
 * isolate says so at once (`stopMapHere`); one that reaches another, or the
 * cancel of one input alone, is read from the ledger every `mapCancelPollMs`. A line, a later attempt's mark and a
 * plane's note wait for the record. A runner lost before an input started
 * leaves it counted as an attempt that may not have run, as the record of
 * any lost attempt is (docs/api.md, "Delivery").
 */
export async function mapCallsOnce(
  rc: RunContext,
  fn: RegisteredFunction,
  inputs: CallArgs[],
  key: string,
  onRecord: (index: number, record: CallRecord) => void | Promise<void>,
  options: { fresh?: boolean; concurrency?: number } = {},
): Promise<void> {
  const scope = keyScope(fn.app, fn.name, key);
  const shard = shardOfKey(scope);
  const ledger = ledgerShard(rc.env, shard);
  const createdAt = Date.now();
  const early = options.fresh === true && fn.spec.tier === "plane";
  const concurrency = Math.min(options.concurrency ?? 32, inputs.length);
  const calls: NewCall[] = inputs.map((args, index) => ({
    id: newCallIdIn(shard),
    app: fn.app,
    function: fn.name,
    kind: "map",
    createdAt,
    input: args.encoded,
    key: mapInputKey(scope, index),
    ...(early ? { running: true } : {}),
  }));
  // Held from before their records until the map's end records them: see gateway/live-runners.ts.
  const release = holdRunner(calls.map((call) => call.id));
  const recorded = ledger.createMany(calls, { mapScope: scope });
  const ids = early
    ? calls.map((call) => call.id)
    : await recorded.catch((err: unknown) => {
        release();
        throw err;
      });
  const mine = new Set(ids.filter((id, index) => id === calls[index]!.id));
  /** Sent again with more inputs: how many its first request had (its ids end at the first ""). */
  const firstHad = ids.indexOf("");
  const afterRecord = <T>(write: () => Promise<T>) => recorded.then(write);
  const startMarks = grouped((marks: { id: string; attempt: number }[]) => ledger.startMany(marks));
  const planeNotes = grouped((notes: { id: string; planeId: string }[]) => ledger.runningOnMany(notes));
  const start = early ? (mark: { id: string; attempt: number }) => afterRecord(() => startMarks(mark)) : startMarks;
  const notePlane = (note: { id: string; planeId: string }) => {
    stopped.planes.set(note.id, note.planeId); // a cancel that comes before the ledger has it still finds the plane
    return early ? afterRecord(() => planeNotes(note)) : planeNotes(note);
  };
  const renew = setInterval(() => {
    beatRunners(mine);
    if (!mine.size) return;
    for (const id of mine) stopIfCancelled(id); // an edge input whose cancel the ledger of this isolate told of
    void ledger.renewAll([...mine]).then(
      (cancelled) => cancelled?.forEach((id) => stopIfCancelled(id, true)), // one cancelled from anywhere
      () => {},
    );
  }, rc.config.callLeaseMs / 3);
  // Inputs recorded as started have no mark to refuse them once the map is cancelled: they ask this instead.
  // Plain data: workerd refuses an AbortController of this request another request aborts.
  const stopped: MapHere = { yes: false, planes: new Map() };
  const here = runningMaps.get(scope) ?? new Set<MapHere>();
  runningMaps.set(scope, here.add(stopped));
  const cancelled = new Set<string>();
  const poll = early
    ? setInterval(
        () =>
          void ledger.cancelledInputs(scope).then(
            (ids) => ids.forEach((id) => cancelled.add(id)),
            () => {},
          ),
        DELIVERY_DEFAULTS.mapCancelPollMs,
      )
    : undefined;
  const firstStart = ({ id, attempt }: { id: string; attempt: number }) =>
    attempt === 1 ? Promise.resolve(!stopped.yes && !cancelled.has(id)) : start({ id, attempt });
  const rows: FinishedCall[] = [];
  const batch = new RunBatch();
  let next = 0;
  const worker = async () => {
    while (next < inputs.length) {
      const index = next++;
      const id = ids[index]!;
      if (id === "") {
        await onRecord(index, notInMap(fn, key, index, firstHad)); // nothing runs for it
        continue;
      }
      if (!mine.has(id)) {
        await onRecord(index, await awaitRecord(ledger, id, fn, rc)); // made by the first request with this key
        continue;
      }
      let outcome: Outcome;
      try {
        outcome = await runRecorded(rc, ledger, fn, id, inputs[index]!, NOT_STARTED, {
          renew: false,
          waited: true,
          start: early ? firstStart : start,
          notePlane,
          batch,
        });
      } catch (err) {
        if (err instanceof StoppedWithGateway) return; // left to the ledger, unended; the plane is gone, so no more inputs here
        throw err;
      }
      // Still renewed once it ended: its record is written as the map ends, and a lapsed lease would resume it.
      if (early) {
        const known = (await recorded)[index]!;
        if (known !== id) {
          console.error(`[${fn.app}.${fn.name}] map key ${key} was sent as fresh but names calls already: input ${index}'s run ${id} was an extra one`);
          await onRecord(index, await awaitRecord(ledger, known, fn, rc));
          continue;
        }
      }
      const row = finishedCall(id, fn, "map", createdAt, outcome);
      if (outcome.status !== "cancelled") rows.push(early ? { ...row, startedAt: createdAt } : row);
      await onRecord(index, toCallRecord(row));
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    clearInterval(renew);
    clearInterval(poll);
    here.delete(stopped);
    if (!here.size) runningMaps.delete(scope);
    rc.waitUntil(
      recordEnded(rc.env, rows)
        .catch((err) => console.error("ledger: could not record map calls:", err))
        .finally(release),
    );
  }
}

/**
 * The line of an input a keyed map sent again has that its first request had not (`first` inputs): nothing runs for
 * it, since the key names the map its first request made.
 */
function notInMap(fn: RegisteredFunction, key: string, index: number, first: number): CallRecord {
  const error = new InvalidRequestError(
    `map key ${key} of ${fn.app}.${fn.name} is known: its first request had ${first} input${first === 1 ? "" : "s"}, and input ${index} is not one of them, so nothing ran for it (a key names the map its first request made: send other inputs with another key)`,
    { key, index },
  );
  return { callId: "", app: fn.app, function: fn.name, kind: "map", status: "failed", attempts: 0, createdAt: Date.now(), error: toWireError(error) };
}

/** A keyed map request running in this isolate: whether its map was cancelled, and the plane each input went to. */
interface MapHere {
  yes: boolean;
  planes: Map<string, string>;
}
/** The keyed map requests running in this isolate, by scope (`keyScope`), each stopped by the cancel of its map. */
const runningMaps = new Map<string, Set<MapHere>>();

/**
 * Stops the inputs not started yet of a keyed map request running in this isolate, once `cancelMap` has cancelled
 * them in the ledger; a request running in another isolate reads it from the ledger (`mapCallsOnce`). Returns the
 * plane each of its inputs went to, as this isolate knows it: the ledger may not have it yet.
 * @example const planes = stopMapHere(scope); // after `await ledger.cancelMap(scope)`
 */
export function stopMapHere(scope: string): Map<string, string> {
  const planes = new Map<string, string>();
  for (const stopped of runningMaps.get(scope) ?? []) {
    stopped.yes = true;
    for (const [id, plane] of stopped.planes) planes.set(id, plane);
  }
  return planes;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The system line of a call that ended failed: `failed after 2 attempts: Error: flaky boom` (its error already masked). */
export function failedLine(error: TandemError, attempts: number): string {
  return `failed after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${errorName(error)}: ${firstLine(error)}`;
}

/** An error's name as the app threw it (`Error`, `TypeError`), not the `RemoteError` the gateway carries it in. */
function errorName(error: TandemError): string {
  return error instanceof RemoteError ? error.remoteName : error.name;
}
