/**
 * A handle on a spawned call. It holds only the call id, so it can be rebuilt
 * from any process with `FunctionCall.fromId(id)`.
 */
import { InvalidRequestError } from "./errors.js";
import type { ClientOptions } from "./app.js";
import { invokerFor } from "./invoker.js";
import { CALL_ID_PATTERN } from "./protocol.js";

/**
 * @example
 * const call = await square.spawn(4);
 * const again = FunctionCall.fromId(call.id);   // in another process
 * console.log(await again.get({ timeoutMs: 10_000 }));
 */
export class FunctionCall<R = unknown> {
  readonly id: string;
  readonly #client: ClientOptions;

  constructor(id: string, options: ClientOptions = {}) {
    if (!CALL_ID_PATTERN.test(id)) throw new InvalidRequestError(`"${id}" is not a call id (they look like fc-01jc3k…, 29 characters)`);
    this.id = id;
    this.#client = options;
  }

  /** A handle on an existing call, from its id. */
  static fromId<R = unknown>(id: string, options: ClientOptions = {}): FunctionCall<R> {
    return new FunctionCall<R>(id, options);
  }

  /**
   * Waits for the result. Throws the call's error (`RemoteError`,
   * `FunctionTimeoutError`, `CancelledError`), or `GetTimeoutError` when
   * `timeoutMs` passes first (the call goes on). No `timeoutMs`: wait as long as it takes.
   */
  async get(options: { timeoutMs?: number } = {}): Promise<R> {
    return (await invokerFor(this.#client.gateway, this.#client.token).get(this.id, options.timeoutMs)) as R;
  }

  /**
   * Cancels the call if it has not finished; `get()` then throws
   * `CancelledError`. On the plane the input is stopped: a function sees
   * `currentCall().signal` abort; with `terminateContainer` its container is
   * stopped too (for a function that does not watch the signal).
   */
  async cancel(options: { terminateContainer?: boolean } = {}): Promise<void> {
    await invokerFor(this.#client.gateway, this.#client.token).cancel(this.id, options);
  }

  toJSON(): { id: string } {
    return { id: this.id };
  }
}
