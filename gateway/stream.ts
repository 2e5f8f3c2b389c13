/**
 * Generator functions: their chunks go to the caller as they are yielded,
 * pulled one at a time (so a slow reader slows the generator, and nothing
 * piles up), within the function's timeout. A caller that stops reading stops
 * the generator. A stream is not retried once it has begun.
 */
import { raceDeadline, withDeadline } from "../sdk/deadline.js";
import { STOP_DEFAULTS } from "../sdk/defaults.js";
import {
  CancelledError,
  ContainerFailedError,
  FunctionTimeoutError,
  InvalidRequestError,
  TandemError,
  callFailure,
  errorOfCall,
  functionTimeout,
  stoppedReading,
  toWireError,
} from "../sdk/errors.js";
import { chunkIterator, isGeneratorResult } from "../sdk/generator-result.js";
import { encodeValue, type CallStatus } from "../sdk/protocol.js";
import { encodeChunk } from "../sdk/result-value.js";
import type { CallArgs } from "./call-args.js";
import { EncodedResult } from "./encoded-result.js";
import { failedLine, recordIfLong } from "./executor.js";
import { CLIENT_WENT, ClientWentError, cancelWhenClientGoes } from "./client-gone.js";
import { EdgeCall } from "./edge-call.js";
import { forwardStreamToPlane, planeAttemptMs } from "./forward-to-plane.js";
import { keepEdgeLine } from "./log-sink.js";
import { registry, type RegisteredFunction } from "./registry.js";
import { runStore, withCallEnv, type RunContext } from "./run-context.js";
import { maskedError } from "../sdk/secret.js";
import { mapStack } from "./source-map.js";
import { streamLines } from "../sdk/stream-lines.js";

/**
 * Runs `fn` as a generator and yields its chunks; records the call (with how
 * many chunks it sent, and how it ended) in the ledger when it is over.
 */
export async function* streamCall(rc: RunContext, fn: RegisteredFunction, args: CallArgs, callId: string): AsyncGenerator<unknown, void, undefined> {
  const createdAt = Date.now();
  // Recorded as running once it has run half a second, as a call without a key is: `GET /v1/calls/:id`, the dashboard
  // and a cancel find it while it streams.
  const record = recordIfLong(rc, fn, callId, "stream", createdAt);
  // A `.remoteGen()` a web request's or an agent's handler reads is cancelled when that client goes, as a `.remote()`
  // is (executor.ts, `callNow`): a chat's generation stops with its socket, rather than stream to nobody.
  const watch = cancelWhenClientGoes(rc, record.cancel);
  // Its `currentCall()`, as a call's: its signal aborts when the stream ends before the generator does (its timeout, a
  // cancel, or the caller gone), so that code waiting on it in the generator stops.
  const call = new EdgeCall(callId, fn.app, fn.name, 1, fn.spec.env, false);
  void call.signal; // made now: once recorded, the stream looks for a cancel every moment, not only at each lease renewal
  record.options.onEdgeAttempt?.(call);
  const context: RunContext = {
    ...rc,
    logPrefix: `[${fn.app}.${fn.name} ${callId}]`,
    logTo: { app: fn.app, function: fn.name, callId },
    call,
  };
  // A plane times its stream out itself (and stops its container, as for a call): the gateway waits past that.
  const plane = fn.spec.tier === "plane";
  const deadline = createdAt + (plane ? planeAttemptMs(fn) : fn.spec.timeoutSeconds * 1000);
  let status: Exclude<CallStatus, "pending" | "running"> = "cancelled";
  let error: TandemError | undefined;
  let chunks = 0;
  let iterator: AsyncIterator<unknown> | Iterator<unknown> | undefined;
  // Held open until the stream ends (at most its timeout): a client that goes away otherwise ends the request's work
  // with it, and the `finally` below never ran (no record, a plane's input counted in flight for good).
  let ended = () => {};
  const held = new Promise<void>((resolve) => (ended = resolve));
  rc.waitUntil(raceDeadline(held, deadline));
  try {
    if (!plane) withCallEnv(context, await registry().processEnvOf(rc, fn));
    const produced = plane
      ? forwardStreamToPlane(rc, fn, args, callId, record.options.onSent)
      : await runStore.run(context, async () => fn.handler(...args.values));
    if (!isGeneratorResult(produced)) {
      throw new InvalidRequestError(`${fn.app}.${fn.name} is not a generator function; call it with .remote() (POST .../call)`);
    }
    iterator = chunkIterator(produced);
    for (;;) {
      const step = await withDeadline(
        runStore.run(context, () => Promise.resolve(iterator!.next())),
        deadline,
        () => functionTimeout({ app: fn.app, function: fn.name, timeoutSeconds: fn.spec.timeoutSeconds, callId, where: "while streaming" }),
        call, // a cancel ends the wait for the next chunk
      );
      if (step.done) break;
      // A plane's chunk was checked where it was yielded; an edge one is checked here, as a result is.
      const chunk = plane ? step.value : new EncodedResult(encodeChunk(step.value, `${fn.app}.${fn.name}`));
      chunks++;
      yield chunk;
    }
    status = "succeeded";
  } catch (err) {
    error = errorOfCall(maskedError(callFailure(err, { callId }, mapStack), context.secretValues), callId);
    status = error instanceof FunctionTimeoutError ? "timed_out" : error instanceof CancelledError ? "cancelled" : "failed";
    if (watch.went() && status === "cancelled") error = new ClientWentError(callId); // its reader ends quietly
    // Its system line, as a call's (gateway/executor.ts): a plane tells its own timeouts and its containers' failures.
    const origin = { app: fn.app, function: fn.name, callId };
    if (status === "timed_out" && !plane) keepEdgeLine(rc, origin, "system", error.message);
    if (status === "failed" && !(plane && error instanceof ContainerFailedError)) keepEdgeLine(rc, origin, "system", failedLine(error, 1));
    throw error;
  } finally {
    watch.stop();
    // Also reached when the caller stops reading: the generator's own `finally` runs now.
    if (status === "timed_out" || status === "cancelled") {
      const reason = error ?? new CancelledError(`call ${callId} was cancelled: ${stoppedReading(chunks)}`, { callId });
      runStore.run(context, () => call.stop(reason)); // what its abort listeners print is the call's lines
    }
    call.end();
    // The call's own line about its end, as a failure or a timeout has one: a caller that went is no error of its.
    if (status === "cancelled" && (error === undefined || error instanceof ClientWentError))
      keepEdgeLine(rc, { app: fn.app, function: fn.name, callId }, "system", `cancelled: ${error ? CLIENT_WENT : stoppedReading(chunks)}`);
    if (status !== "succeeded") {
      // Not waited for: a generator stopped inside a step (awaiting a timer, a fetch) returns only once that step
      // ends, and the caller is answered now, as a stopped call's is; the function gets the grace a stopped call does.
      const returned = runStore.run(context, () => Promise.resolve(iterator?.return?.())).catch(() => {});
      rc.waitUntil(raceDeadline(returned, Date.now() + STOP_DEFAULTS.edgeGraceMs));
    }
    record.ended(
      {
        id: callId,
        app: fn.app,
        function: fn.name,
        kind: "stream",
        tier: fn.spec.tier,
        status,
        attempts: 1,
        createdAt,
        startedAt: createdAt,
        finishedAt: Date.now(),
        ...(status === "succeeded" ? { result: encodeValue({ chunks }) } : {}),
        ...(error
          ? { error: { ...toWireError(error), details: { ...error.details, chunks } } }
          : status === "cancelled"
            ? { error: { code: "call_cancelled" as const, message: stoppedReading(chunks), details: { callId, chunks } } }
            : {}),
      },
      error === undefined, // its reader went: ended here, not by a cancel the ledger holds already
    );
    ended();
  }
}

/**
 * The NDJSON body of `POST .../stream`: one line a chunk, pulled as the client
 * reads, then `done` or `error`. When the client goes away, the generator is
 * returned (its `finally` runs) and the call is recorded as cancelled.
 */
export function streamResponseBody(
  chunks: AsyncGenerator<unknown, void, undefined>,
  callId: string,
  first?: IteratorResult<unknown, void>,
): ReadableStream<Uint8Array> {
  return streamLines(chunks, callId, (chunk) => (chunk instanceof EncodedResult ? chunk.encoded : encodeValue(chunk)), first);
}
