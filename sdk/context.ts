/**
 * The call a function is running for. The gateway keeps it in an
 * AsyncLocalStorage it provides (`installCallContextStore`); the SDK reads it
 * without importing any runtime module itself.
 */

export interface CallContext {
  callId: string;
  app: string;
  function: string;
  /** 1 for the first attempt, 2 for the first retry, ... */
  attempt: number;
  /** The function's `env` option. */
  env: Readonly<Record<string, string>>;
  /** The variables its secrets set, by key (as `process.env` shows them): a WebAssembly function's WASI environment has them too. */
  secrets?: Readonly<Record<string, string>>;
  /**
   * Aborts when the call is cancelled, or at the edge when an attempt runs past its timeout (a plane stops the
   * container instead); its `reason` is the `CancelledError` or `FunctionTimeoutError`. A long function may watch it
   * and stop early: at the edge it then has `STOP_DEFAULTS.edgeGraceMs` (10 s) to clean up (docs/api.md, "A call's signal").
   * Always there inside a call, in both tiers; in a class's `enter()` and `exit()` on the plane, which run for no call,
   * it never aborts.
   * @example
   * while (!currentCall()!.signal.aborted) await step();
   */
  signal: AbortSignal;
}

interface ContextStore {
  getStore(): CallContext | undefined;
}

let store: ContextStore | undefined;

/** Used by the runtimes that execute functions. */
export function installCallContextStore(s: ContextStore): void {
  store = s;
}

/**
 * The current call, inside a function; `undefined` outside one (and in `.local()`).
 * @example
 * export const whoami = app.function({ env: { MODE: "demo" } }, () => {
 *   const call = currentCall();
 *   return `${call?.callId} ${call?.env.MODE}`;
 * });
 */
export function currentCall(): CallContext | undefined {
  return store?.getStore();
}
