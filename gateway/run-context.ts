/**
 * What the code running a request knows: its bindings and the configuration
 * parsed from them at the entry, how to keep work alive past the response, and
 * (inside a function) the call. Kept in an
 * AsyncLocalStorage so that `.remote()` from user code, and `console.log`
 * prefixes, find it without it being passed through user code.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { format } from "node:util";
import { maskSecretValues } from "../sdk/secret.js";
import { mapPrinted } from "./source-map.js";
import { installCallContextStore, type CallContext } from "../sdk/context.js";
import type { GatewayConfig } from "./config.js";
import type { Env } from "./env.js";
import type { CallEnv } from "./secret-env.js";
import { keepEdgeLine, reportLogFailuresTo, type LogOrigin } from "./log-sink.js";
import { isolateBatch, waitForBatch } from "./isolate-batch.js";
import { LOG_LIMITS } from "../sdk/defaults.js";

export interface RunContext {
  env: Env;
  /** Parsed once at the entry that began this work (the Worker's fetch, a Durable Object's constructor). */
  config: GatewayConfig;
  waitUntil(promise: Promise<unknown>): void;
  /** Put before every console line: `[app.fn fc-…]` or `[app/label]`. */
  logPrefix?: string;
  /** Whose log the console lines of this code go to (its app's `LogStore`); none: the terminal only. */
  logTo?: LogOrigin;
  call?: CallContext;
  /** What `process.env` shows the code running: its `env` option and its secrets (secret-env.ts); none outside a call. */
  processEnv?: Record<string, string>;
  /** Values that came from secrets: masked as `***` in the lines this code logs, and in its errors. */
  secretValues?: readonly string[];
  /**
   * The regions nearest the request this work began with, nearest first (gateway/plane-regions.ts): where its plane
   * calls would rather run. None: `TANDEM_REGION_PREFERENCE`'s `*` entry (scheduled runs, resumed calls).
   */
  nearRegions?: readonly string[];
}

/** `rc` running with `callEnv`: its `process.env`, and the secret values its logs and errors mask. */
export function withCallEnv(rc: RunContext, callEnv: CallEnv): RunContext {
  rc.processEnv = callEnv.env;
  rc.secretValues = callEnv.secretValues;
  if (rc.call) rc.call = { ...rc.call, secrets: callEnv.secrets };
  return rc;
}

export const runStore = new AsyncLocalStorage<RunContext>();

installCallContextStore({ getStore: () => runStore.getStore()?.call });

let envInstalled = false;

/**
 * Makes `process.env` the running call's own: many functions share one
 * isolate, and each sees only its `env` option and the keys of the secrets it
 * declares (`RunContext.processEnv`), nothing outside a call.
 */
export function installCallEnv(): void {
  const holder = (globalThis as { process?: { env: Record<string, string | undefined> } }).process;
  if (envInstalled || !holder) return;
  envInstalled = true;
  const current = () => runStore.getStore()?.processEnv ?? {};
  holder.env = new Proxy({} as Record<string, string | undefined>, {
    get: (_, key) => (typeof key === "string" && Object.hasOwn(current(), key) ? current()[key] : undefined),
    has: (_, key) => typeof key === "string" && Object.hasOwn(current(), key),
    ownKeys: () => Object.keys(current()),
    getOwnPropertyDescriptor: (_, key) =>
      typeof key === "string" && Object.hasOwn(current(), key) ? { value: current()[key], enumerable: true, configurable: true, writable: false } : undefined,
    // A write goes to this call's own copy; outside a call there is nothing to write to.
    set: (_, key, value) => {
      const env = runStore.getStore()?.processEnv;
      if (!env || typeof key !== "string") return false;
      env[key] = String(value);
      return true;
    },
    deleteProperty: (_, key) => {
      const env = runStore.getStore()?.processEnv;
      if (env && typeof key === "string") delete env[key];
      return true;
    },
  });
}

/**
 * A console line's arguments as text, as Node's console writes them (`util.format`: `%s`, `%d`, `%o` and the rest,
 * objects, `Map`s, cycles, errors with their stacks), so a line reads the same whichever tier printed it.
 */
function logText(args: unknown[]): string {
  return args.length === 1 && typeof args[0] === "string" ? args[0] : format(...args);
}

let consolePatched = false;

/** A console line waiting to be printed, and the console method that prints it. */
interface Printed {
  write: (text: string) => void;
  line: string;
}

/**
 * Lines of running code, printed together: those of `LOG_LIMITS.edgePrintMs` in one write per run of lines of the
 * same level, in the order they were written.
 */
const printLater = isolateBatch(LOG_LIMITS.edgePrintMs, async (_: null, printed: Printed[]) => {
  for (let i = 0; i < printed.length;) {
    const { write } = printed[i]!;
    let end = i + 1;
    while (end < printed.length && printed[end]!.write === write) end++;
    write(
      printed
        .slice(i, end)
        .map((p) => p.line)
        .join("\n"),
    );
    i = end;
  }
});

/** Each line of `text` with `prefix` before it: text of several lines reads as a plane's, a prefix a line. */
function prefixLines(prefix: string, text: string): string {
  return text
    .split(/\r?\n/)
    .map((line) => `${prefix} ${line}`)
    .join("\n");
}

/**
 * Prefixes every console line written inside a call or web request with where
 * it came from, and keeps it in its app's log (gateway/log-sink.ts): `log`,
 * `info` and `debug` as stdout, `warn` and `error` as stderr, secret values masked.
 */
export function prefixConsoleLines(): void {
  if (consolePatched) return;
  consolePatched = true;
  const reportTo = console.error.bind(console);
  reportLogFailuresTo((message) => reportTo(message));
  for (const level of ["log", "info", "warn", "error", "debug"] as const) {
    const write = console[level].bind(console);
    const source = level === "warn" || level === "error" ? "stderr" : "stdout";
    console[level] = (...args: unknown[]) => {
      const store = runStore.getStore();
      // A line of code that holds secrets is written as one string, their values masked.
      const masked = store?.secretValues?.length ? maskSecretValues(logText(args), store.secretValues) : undefined;
      // A line that is one string (the usual case) is handed to workerd as one string, prefix included: workerd
      // formats each argument it is given. A lone argument is never read as a format string.
      const text = masked ?? (args.length === 1 && typeof args[0] === "string" ? args[0] : undefined);
      if (store?.logTo) {
        // A line of running code is kept, and printed with the others of its moment in one write (workerd's write
        // of a line costs a call more than keeping it does). Each of its lines is printed with the prefix.
        const line = mapPrinted(text ?? logText(args)); // a stack printed names the app's files, as an error's does
        keepEdgeLine(store, store.logTo, source, line);
        waitForBatch(store, printLater(null, [{ write, line: store.logPrefix ? prefixLines(store.logPrefix, line) : line }]));
      } else if (text !== undefined) write(store?.logPrefix ? prefixLines(store.logPrefix, mapPrinted(text)) : mapPrinted(text));
      else if (store?.logPrefix) write(store.logPrefix, ...args);
      else write(...args);
    };
  }
}
