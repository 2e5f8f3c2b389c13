/**
 * What the code running a request knows: its bindings and the configuration
 * parsed from them at the entry, how to keep work alive past the response, and
 * (inside a function) the call. Kept in an
 * AsyncLocalStorage so that `.remote()` from user code, and `console.log`
 * prefixes, find it without it being passed through user code.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { installCallContextStore, type CallContext } from "../sdk/context.js";
import type { GatewayConfig } from "./config.js";
import type { Env } from "./env.js";

export interface RunContext {
  env: Env;
  /** Parsed once at the entry that began this work (the Worker's fetch, a Durable Object's constructor). */
  config: GatewayConfig;
  waitUntil(promise: Promise<unknown>): void;
  /** Put before every console line: `[app.fn fc-…]` or `[app/label]`. */
  logPrefix?: string;
  call?: CallContext;
}

export const runStore = new AsyncLocalStorage<RunContext>();

installCallContextStore({ getStore: () => runStore.getStore()?.call });

let consolePatched = false;

/** Prefixes every console line written inside a call or web request with where it came from. */
export function prefixConsoleLines(): void {
  if (consolePatched) return;
  consolePatched = true;
  for (const level of ["log", "info", "warn", "error", "debug"] as const) {
    const write = console[level].bind(console);
    console[level] = (...args: unknown[]) => {
      const prefix = runStore.getStore()?.logPrefix;
      if (prefix) write(prefix, ...args);
      else write(...args);
    };
  }
}
