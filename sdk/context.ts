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
  /** Aborts when the call is cancelled (on the plane); a long function may watch it and stop early. */
  signal?: AbortSignal;
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
