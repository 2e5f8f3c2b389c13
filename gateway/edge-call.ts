/**
 * The call an edge function runs for, as `currentCall()` shows it, and how its attempt is stopped before the function
 * returns: cancelled, or at its timeout. Its `signal` then aborts, with the `CancelledError` or `FunctionTimeoutError`
 * as its reason, the caller is answered at once, and the isolate keeps working on the function's promise for
 * `STOP_DEFAULTS.edgeGraceMs` (executor.ts), so the code the function runs once it sees the abort (a `finally`, a last
 * log line, a dict write) runs and its lines are kept. Past the grace nothing waits for it: workerd stops a request's
 * work once nothing does.
 *
 * The signal is made when the function first reads it: a call that never does costs what it did before.
 *
 * A cancel is a write to the ledger, from whichever request made it. The ledger tells the attempts of recorded calls
 * running in its isolate (`cancelEdgeAttempts`) as plain data: workerd refuses to abort one request's AbortController
 * from another. Each attempt looks for it from its own request: every `STOP_DEFAULTS.edgeCancelCheckMs` once its
 * function has read its signal, and as its lease is renewed (`stopIfCancelled`), when the ledger also says whether the
 * call was cancelled from an isolate it does not share.
 */
import type { CallContext } from "../sdk/context.js";
import type { Stoppable } from "../sdk/deadline.js";
import { STOP_DEFAULTS } from "../sdk/defaults.js";
import { CancelledError } from "../sdk/errors.js";

/** The attempts of recorded calls (those a cancel can reach) running in this isolate, by call id. */
const recordedHere = new Map<string, EdgeCall>();

/**
 * The context of one edge attempt. Its methods are the gateway's: a function sees it as a `CallContext`.
 * @example
 * const call = new EdgeCall(callId, fn.app, fn.name, attempt, fn.spec.env, true);
 * try { return await withDeadline(running, deadline, () => call.stop(timedOut()), call); } finally { call.end(); }
 */
export class EdgeCall implements CallContext, Stoppable {
  readonly callId: string;
  readonly app: string;
  readonly function: string;
  readonly attempt: number;
  readonly env: Readonly<Record<string, string>>;
  secrets?: Readonly<Record<string, string>>;
  #recorded: boolean;
  #controller: AbortController | undefined;
  /** What stopped the attempt, once something did. */
  #stoppedBy: Error | undefined;
  /** A cancel reached this isolate: set from whichever request brought it. */
  #cancelled = false;
  #ended = false;
  #check: ReturnType<typeof setInterval> | undefined;
  /** Ends the attempt's race with its deadline (`onStop`). */
  #stop: ((reason: Error) => void) | undefined;

  /** `recorded`: the call is in the ledger, so a cancel can reach it. */
  constructor(callId: string, app: string, fn: string, attempt: number, env: Readonly<Record<string, string>>, recorded: boolean) {
    this.callId = callId;
    this.app = app;
    this.function = fn;
    this.attempt = attempt;
    this.env = env;
    this.#recorded = recorded;
    if (recorded) recordedHere.set(callId, this);
  }

  /** Aborts when the attempt is stopped; made as the function first reads it, in the function's own request. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#stoppedBy) this.#controller.abort(this.#stoppedBy);
      else if (this.#recorded && !this.#ended) this.#check = setInterval(() => this.stopIfCancelled(), STOP_DEFAULTS.edgeCancelCheckMs);
    }
    return this.#controller.signal;
  }

  /** Handed the end of the attempt's race with its deadline (`withDeadline`), which a cancel ends sooner (`stop`). */
  onStop(stop: (reason: Error) => void): void {
    this.#stop = stop;
  }

  /** Stops the attempt, from its own request: its signal aborts with `reason`, and its race ends with it. Returns `reason`. */
  stop(reason: Error): Error {
    if (this.#stoppedBy || this.#ended) return reason;
    this.#stoppedBy = reason;
    if (this.#check !== undefined) clearInterval(this.#check);
    this.#controller?.abort(reason);
    this.#stop?.(reason);
    return reason;
  }

  /** Whether `err` is what stopped the attempt (`stop`): the function did not end, and has its grace. */
  stoppedBy(err: unknown): boolean {
    return err !== undefined && err === this.#stoppedBy;
  }

  /** Stops the attempt, from its own request, if a cancel reached it (or `cancelled`: the ledger said so). */
  stopIfCancelled(cancelled = false): void {
    if (cancelled) this.#cancelled = true;
    if (this.#cancelled && !this.#stoppedBy && !this.#ended) this.stop(new CancelledError(`call ${this.callId} was cancelled`, { callId: this.callId }));
  }

  /**
   * The cancel that reached this isolate while the attempt ran, if one did (as `stopIfCancelled` would have acted on
   * it): the call was cancelled, as the ledger says, though its function, not reading its signal, ran on to its end.
   */
  cancelNoted(): CancelledError | undefined {
    return this.#cancelled ? new CancelledError(`call ${this.callId} was cancelled`, { callId: this.callId }) : undefined;
  }

  /**
   * The call was recorded while this attempt ran (one made without an idempotency key that ran on, executor.ts's
   * `callNow`): a cancel reaches it from now on.
   */
  recordedNow(): void {
    if (this.#recorded || this.#ended) return;
    this.#recorded = true;
    recordedHere.set(this.callId, this);
    if (this.#controller && !this.#stoppedBy) this.#check = setInterval(() => this.stopIfCancelled(), STOP_DEFAULTS.edgeCancelCheckMs);
  }

  /** The attempt ended: nothing looks for a cancel of it any more. */
  end(): void {
    this.#ended = true;
    if (this.#check !== undefined) clearInterval(this.#check);
    if (this.#recorded && recordedHere.get(this.callId) === this) recordedHere.delete(this.callId);
  }

  /** Notes, from any request, that the call was cancelled; its own request acts on it (`stopIfCancelled`). */
  static noteCancelled(id: string): void {
    const call = recordedHere.get(id);
    if (call) call.#cancelled = true;
  }
}

/**
 * Tells the attempts running in this isolate of calls the ledger cancelled (`ids`) that they were: each stops as its
 * own request next looks.
 * @example cancelEdgeAttempts([id]); // as the ledger marks the call cancelled
 */
export function cancelEdgeAttempts(ids: Iterable<string>): void {
  for (const id of ids) EdgeCall.noteCancelled(id);
}

/**
 * Stops the attempt of call `id` running in this isolate, from the request running it, if a cancel reached it or
 * `cancelled` (the ledger's answer to a renewal) says it was cancelled.
 * @example void ledger.renew(id).then((cancelled) => stopIfCancelled(id, cancelled));
 */
export function stopIfCancelled(id: string, cancelled = false): void {
  recordedHere.get(id)?.stopIfCancelled(cancelled);
}
