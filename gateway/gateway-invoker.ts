/**
 * `.remote()`, `.spawn()`, `.map()` and `FunctionCall` as seen from code
 * running inside the gateway (a web endpoint, or a function calling another):
 * the call runs here through the executor, with no network hop.
 */
import { checkSendable } from "../sdk/arguments.js";
import { InternalError, NotFoundError, fromWireError } from "../sdk/errors.js";
import type { Invoker, MapOutcome } from "../sdk/invoker.js";
import { API_LIMITS } from "../sdk/defaults.js";
import { TERMINAL_STATUSES, decodeValue, newCallId } from "../sdk/protocol.js";
import { CallArgs } from "./call-args.js";
import { checkArguments } from "./check-arguments.js";
import { ledgerFor } from "./call-ledger-client.js";
import { plainValue } from "./encoded-result.js";
import { callNow, mapCalls, spawnCall } from "./executor.js";
import { cancelOnPlane } from "./plane-client.js";
import { registry } from "./registry.js";
import { runStore, type RunContext } from "./run-context.js";
import { streamCall } from "./stream.js";

/** A call's arguments from code in this isolate, refused as the SDK's client refuses them (`checkSendable`): the same in either tier. */
function sendableArgs(args: unknown[]): CallArgs {
  checkSendable(args);
  return CallArgs.of(args);
}

export class GatewayInvoker implements Invoker {
  // Arguments are checked before a call is made, as the HTTP API does: a bad one throws here, with no call recorded.
  async call(app: string, fn: string, args: unknown[]): Promise<unknown> {
    const target = registry().function(app, fn);
    const given = sendableArgs(args);
    await checkArguments(target, given);
    const { outcome } = await callNow(context(), target, given);
    if (outcome.error) throw outcome.error;
    return plainValue(outcome.value);
  }

  async spawn(app: string, fn: string, args: unknown[]): Promise<string> {
    const target = registry().function(app, fn);
    const given = sendableArgs(args);
    await checkArguments(target, given);
    return spawnCall(context(), target, given);
  }

  // Each result is handed on as it ends; a loop left early (a break, a return, a throw), or a web request's client that
  // goes, starts no input not begun yet, and those under way run to their end and are recorded, as the map's would be.
  async *map(app: string, fn: string, inputs: AsyncIterable<unknown[]>): AsyncIterable<MapOutcome> {
    const rc = context();
    const target = registry().function(app, fn);
    const all: CallArgs[] = [];
    for await (const input of inputs) all.push(sendableArgs(input));
    const ended: MapOutcome[] = [];
    const state = { done: false, left: false, failure: undefined as unknown };
    let wake: (() => void) | undefined;
    const running = mapCalls(
      rc,
      target,
      all,
      (index, _row, outcome) => {
        ended.push(outcome.error ? { index, ok: false, error: outcome.error } : { index, ok: true, value: plainValue(outcome.value) });
        wake?.();
      },
      { stopped: () => state.left },
    )
      .catch((err: unknown) => void (state.failure = err))
      .finally(() => {
        state.done = true;
        wake?.();
      });
    rc.waitUntil(running);
    // A web request's client that goes leaves it as a loop left early would: no input not begun yet starts.
    const unwatch = rc.clientGone?.onGone(() => {
      state.left = true;
    });
    try {
      for (;;) {
        if (ended.length) yield ended.shift()!;
        else if (state.failure !== undefined) throw state.failure;
        else if (state.done) return;
        else await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      state.left = true;
      unwatch?.();
    }
  }

  async *stream(app: string, fn: string, args: unknown[], onCallId?: (id: string) => void): AsyncIterable<unknown> {
    const target = registry().function(app, fn);
    const given = sendableArgs(args);
    await checkArguments(target, given);
    const callId = newCallId();
    onCallId?.(callId);
    for await (const chunk of streamCall(context(), target, given, callId)) yield plainValue(chunk);
  }

  async get(callId: string, timeoutMs: number | undefined): Promise<unknown> {
    const rc = context();
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    for (;;) {
      const record = await ledgerFor(rc.env, callId).get(callId, Math.max(0, Math.min(API_LIMITS.maxWaitMs, deadline - Date.now())));
      if (!record) throw new NotFoundError(`no call ${callId}`, { callId });
      if (record.error) throw fromWireError(record.error);
      if (TERMINAL_STATUSES.has(record.status)) return decodeValue(record.result, record.meta);
      if (Date.now() >= deadline)
        throw fromWireError({ code: "get_timeout", message: `call ${callId} did not finish within ${timeoutMs} ms`, details: { callId } });
    }
  }

  async cancel(callId: string, options: { terminateContainer?: boolean } = {}): Promise<void> {
    const rc = context();
    const cancelled = await ledgerFor(rc.env, callId).cancel(callId);
    if (!cancelled) throw new NotFoundError(`no call ${callId}`, { callId });
    if (cancelled.plane) await cancelOnPlane(rc, cancelled.plane, [callId], options.terminateContainer ?? false);
  }
}

function context(): RunContext {
  const rc = runStore.getStore();
  if (!rc) throw new InternalError("a function handle was called outside a request; call functions from inside handlers");
  return rc;
}
