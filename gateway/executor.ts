/**
 * Runs edge functions: one attempt at a time inside the isolate, each bounded
 * by the function's timeout, retried with backoff, with the call's context in
 * scope for `currentCall()` and log prefixes. Outcomes go to the call ledger.
 */
import { withDeadline } from "../sdk/deadline.js";
import {
  CancelledError,
  FunctionTimeoutError,
  InvalidRequestError,
  RETRYABLE_CODES,
  TandemError,
  functionTimeout,
  remoteErrorFrom,
  toWireError,
} from "../sdk/errors.js";
import { retryDelayMs } from "../sdk/options.js";
import { encodeValue, newCallId, type CallKind, type CallStatus } from "../sdk/protocol.js";
import type { CallArgs } from "./call-args.js";
import { ledgerFor, recordEnded, type FinishedCall, type LedgerApi } from "./call-ledger-client.js";
import { EncodedResult } from "./encoded-result.js";
import { forwardToPlane } from "./forward-to-plane.js";
import type { RegisteredFunction } from "./registry.js";
import { mapStack } from "./source-map.js";
import { isGeneratorResult } from "../sdk/generator-result.js";
import { runStore, type RunContext } from "./run-context.js";

export interface Outcome {
  status: Exclude<CallStatus, "pending" | "running">;
  /** The result; an `EncodedResult` when it came from a plane. */
  value?: unknown;
  error?: TandemError;
  attempts: number;
  startedAt: number;
  finishedAt: number;
}

/**
 * Runs `fn` with its timeout and retry policy. `beforeAttempt` may veto an
 * attempt (the call was cancelled meanwhile).
 */
export async function execute(
  rc: RunContext,
  fn: RegisteredFunction,
  args: CallArgs,
  callId: string,
  options: { firstAttempt?: number; beforeAttempt?: (attempt: number) => Promise<boolean>; onPlane?: (planeId: string) => Promise<void> } = {},
): Promise<Outcome> {
  const startedAt = Date.now();
  const first = options.firstAttempt ?? 1;
  const lastAttempt = fn.spec.retries.maxRetries + 1;
  for (let attempt = first; ; attempt++) {
    if (options.beforeAttempt && !(await options.beforeAttempt(attempt))) {
      return {
        status: "cancelled",
        error: new CancelledError(`call ${callId} was cancelled`, { callId }),
        attempts: attempt - 1,
        startedAt,
        finishedAt: Date.now(),
      };
    }
    try {
      const value = await attemptOnce(rc, fn, args, callId, attempt, options.onPlane);
      return { status: "succeeded", value, attempts: attempt, startedAt, finishedAt: Date.now() };
    } catch (err) {
      const error = err instanceof TandemError ? err : remoteErrorFrom(err, { callId });
      if (attempt >= lastAttempt || !RETRYABLE_CODES.has(error.code)) {
        return { status: error instanceof FunctionTimeoutError ? "timed_out" : "failed", error, attempts: attempt, startedAt, finishedAt: Date.now() };
      }
      await sleep(retryDelayMs(fn.spec.retries, attempt));
    }
  }
}

async function attemptOnce(
  rc: RunContext,
  fn: RegisteredFunction,
  args: CallArgs,
  callId: string,
  attempt: number,
  onPlane?: (planeId: string) => Promise<void>,
): Promise<unknown> {
  // A plane gets the arguments in wire form; only a function run here needs their values.
  if (fn.spec.tier === "plane") return forwardToPlane(rc, fn, args, callId, attempt, onPlane);
  const context: RunContext = {
    ...rc,
    logPrefix: `[${fn.app}.${fn.name} ${callId}]`,
    call: { callId, app: fn.app, function: fn.name, attempt, env: fn.spec.env },
  };
  const running = runStore.run(context, async () => {
    let value: unknown;
    try {
      value = await fn.handler(...args.values);
    } catch (err) {
      throw err instanceof TandemError ? err : remoteErrorFrom(err, { callId }, mapStack);
    }
    if (isGeneratorResult(value)) {
      throw new InvalidRequestError(`${fn.app}.${fn.name} is a generator function; stream it with .remoteGen() (POST .../stream)`, { callId });
    }
    return value;
  });
  const deadline = Date.now() + fn.spec.timeoutSeconds * 1000;
  return withDeadline(running, deadline, () => functionTimeout({ app: fn.app, function: fn.name, timeoutSeconds: fn.spec.timeoutSeconds, callId, attempt }));
}

/** The ledger row for an outcome. */
export function finishedCall(id: string, fn: RegisteredFunction, kind: CallKind, createdAt: number, outcome: Outcome): FinishedCall {
  return {
    id,
    app: fn.app,
    function: fn.name,
    kind,
    status: outcome.status,
    attempts: outcome.attempts,
    createdAt,
    startedAt: outcome.startedAt,
    finishedAt: outcome.finishedAt,
    ...(outcome.status === "succeeded" ? { result: outcome.value instanceof EncodedResult ? outcome.value.encoded : encodeValue(outcome.value) } : {}),
    ...(outcome.error ? { error: toWireError(outcome.error) } : {}),
  };
}

/** Runs a call now and returns its outcome; the ledger records it after the response. */
export async function callNow(
  rc: RunContext,
  fn: RegisteredFunction,
  args: CallArgs,
  kind: CallKind = "remote",
): Promise<{ id: string; outcome: Outcome; row: FinishedCall }> {
  const id = newCallId();
  const createdAt = Date.now();
  const outcome = await execute(rc, fn, args, id);
  const row = finishedCall(id, fn, kind, createdAt, outcome);
  rc.waitUntil(recordEnded(rc.env, [row]).catch((err) => console.error(`ledger: could not record ${id}:`, err)));
  return { id, outcome, row };
}

/**
 * Records a spawned call (its arguments in wire form, as they came) and starts
 * it in the background; returns its id at once. A scheduled run is a spawned
 * call of kind "scheduled", with its due time.
 */
export async function spawnCall(
  rc: RunContext,
  fn: RegisteredFunction,
  args: CallArgs,
  options: { id?: string; kind?: "spawn" | "scheduled"; scheduledAt?: number } = {},
): Promise<string> {
  const id = options.id ?? newCallId();
  const createdAt = Date.now();
  const ledger = ledgerFor(rc.env, id);
  await ledger.create({
    id,
    app: fn.app,
    function: fn.name,
    kind: options.kind ?? "spawn",
    createdAt,
    input: args.encoded,
    ...(options.scheduledAt === undefined ? {} : { scheduledAt: options.scheduledAt }),
  });
  rc.waitUntil(runSpawned(rc, ledger, fn, id, args, 1, createdAt, options.kind === "scheduled"));
  return id;
}

/**
 * Runs a spawned call to its end, keeping its lease alive (renewed three
 * times a lease), and records the outcome once. Used right after `spawn`, and
 * by the ledger to resume a call whose runner was lost (gateway/worker.ts
 * hands it to the ledger).
 */
export async function runSpawned(
  rc: RunContext,
  ledger: LedgerApi,
  fn: RegisteredFunction,
  id: string,
  args: CallArgs,
  firstAttempt: number,
  createdAt: number,
  /** A scheduled run: nobody waits on it, so a failure goes to the logs too. */
  logFailure = false,
): Promise<void> {
  const renew = setInterval(() => void ledger.renew(id).catch(() => {}), rc.config.callLeaseMs / 3);
  try {
    const outcome = await execute(rc, fn, args, id, {
      firstAttempt,
      beforeAttempt: (attempt) => ledger.start(id, attempt),
      onPlane: (planeId) => ledger.runningOn(id, planeId),
    });
    if (outcome.status === "cancelled") return;
    if (logFailure && outcome.error) {
      const attempts = `${outcome.attempts} attempt${outcome.attempts === 1 ? "" : "s"}`;
      console.error(
        `[${fn.app}.${fn.name} ${id}] ${outcome.status === "timed_out" ? "timed out" : "failed"} after ${attempts}: ${outcome.error.name}: ${outcome.error.message}`,
      );
    }
    await ledger.finish(finishedCall(id, fn, "spawn", createdAt, outcome));
  } catch (err) {
    console.error(`call ${id}: could not record its outcome:`, err);
  } finally {
    clearInterval(renew);
  }
}

/**
 * Runs one call per input, `concurrency` at a time, handing each result to
 * `onResult` as it finishes; records them all in the ledger afterwards.
 */
export async function mapCalls(
  rc: RunContext,
  fn: RegisteredFunction,
  inputs: CallArgs[],
  onResult: (index: number, row: FinishedCall, outcome: Outcome) => void | Promise<void>,
  concurrency = 32,
): Promise<void> {
  const rows: FinishedCall[] = [];
  let next = 0;
  const worker = async () => {
    while (next < inputs.length) {
      const index = next++;
      const id = newCallId();
      const createdAt = Date.now();
      const outcome = await execute(rc, fn, inputs[index]!, id);
      const row = finishedCall(id, fn, "map", createdAt, outcome);
      rows.push(row);
      await onResult(index, row, outcome);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, inputs.length) }, worker));
  rc.waitUntil(recordEnded(rc.env, rows).catch((err) => console.error("ledger: could not record map calls:", err)));
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
