/**
 * What the code running a request knows: its bindings and the configuration
 * parsed from them at the entry, how to keep work alive past the response, and
 * (inside a function) the call. Kept in an
 * AsyncLocalStorage so that `.remote()` from user code, and `console.log`
 * prefixes, find it without it being passed through user code.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { format, inspect, type InspectOptions } from "node:util";
import { consoleTable } from "./console-table.js";
import { ClientWentError } from "./client-gone.js";
import { maskSecretValues } from "../sdk/secret.js";
import { mapPrinted } from "./source-map.js";
import { installCallContextStore, type CallContext } from "../sdk/context.js";
import type { GatewayConfig } from "./config.js";
import type { Env } from "./env.js";
import type { ClientWatch } from "./client-gone.js";
import type { CallEnv } from "./secret-env.js";
import { keepEdgeLine, printSystemLinesWith, reportLogFailuresTo, type LogOrigin } from "./log-sink.js";
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
  /**
   * Whether the web request this work answers lost its client (gateway/client-gone.ts): the `.remote()` calls its
   * handler waits on are then cancelled (executor.ts `callNow`). None outside a web endpoint or web app.
   */
  clientGone?: ClientWatch;
  /** Its console's groups, counts and timers (`console.group`, `console.count`, `console.time`), once it uses one. */
  consoleState?: ConsoleState;
}

/** What Node keeps per console, kept here per call (or for the isolate, outside any): how lines are indented, counts, timers. */
interface ConsoleState {
  indent: string;
  counts: Map<string, number>;
  timers: Map<string, number>;
}

const newConsoleState = (): ConsoleState => ({ indent: "", counts: new Map(), timers: new Map() });
/** Lines printed outside any call or request. */
const isolateConsole = newConsoleState();

/** `rc` running with `callEnv`: its `process.env`, and the secret values its logs and errors mask. */
export function withCallEnv(rc: RunContext, callEnv: CallEnv): RunContext {
  rc.processEnv = callEnv.env;
  rc.secretValues = callEnv.secretValues;
  if (rc.call) rc.call.secrets = callEnv.secrets; // the call's own object (an edge attempt's keeps its signal)
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
  return args.length === 1 && typeof args[0] === "string" ? args[0] : format(...args.map(saidShort));
}

/**
 * An argument as a line says it: a `ClientWentError` (a call cancelled because the web request waiting on it went) as
 * its name and message alone. hono's `stream()` and `streamSSE()` print what their callback throws, and a `.remoteGen()`
 * read there throws it when the client goes: its stack and fields said nothing the call's own `cancelled` line does not.
 */
function saidShort(arg: unknown): unknown {
  return arg instanceof ClientWentError ? `${arg.name}: ${arg.message}` : arg;
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
  // In order with the calls' own lines, which wait a moment to be printed together.
  const printTo = console.log.bind(console);
  printSystemLinesWith((rc, line) => waitForBatch(rc, printLater(null, [{ write: printTo, line }])));
  for (const level of ["log", "info", "warn", "error", "debug"] as const) {
    const write = console[level].bind(console);
    const source = level === "warn" || level === "error" ? "stderr" : "stdout";
    console[level] = (...args: unknown[]) => {
      const store = runStore.getStore();
      // Printed as a plane's line is: `[app.fn call] (stderr) …` for warn and error.
      const prefix = store?.logPrefix && source === "stderr" ? `${store.logPrefix} (stderr)` : store?.logPrefix;
      const indent = (store ? store.consoleState : isolateConsole)?.indent ?? ""; // within a console.group
      // A line of code that holds secrets is written as one string, their values masked.
      const masked = store?.secretValues?.length ? maskSecretValues(logText(args), store.secretValues) : undefined;
      // A line that is one string (the usual case) is handed to workerd as one string, prefix included: workerd
      // formats each argument it is given. A lone argument is never read as a format string.
      const text = masked ?? (args.length === 1 && typeof args[0] === "string" ? args[0] : undefined);
      // A stack printed names the app's files, as an error's does.
      const written = () => indented(indent, mapPrinted(text ?? logText(args)));
      if (store?.logTo) {
        // A line of running code is kept, and printed with the others of its moment in one write (workerd's write
        // of a line costs a call more than keeping it does). Each of its lines is printed with the prefix.
        const line = written();
        keepEdgeLine(store, store.logTo, source, line);
        waitForBatch(store, printLater(null, [{ write, line: prefix ? prefixLines(prefix, line) : line }]));
      } else if (text !== undefined || indent) write(prefix ? prefixLines(prefix, written()) : written());
      else if (prefix) write(prefix, ...args);
      else write(...args);
    };
  }
  installConsoleExtras();
}

/** `text` with `indent` before each of its lines. */
function indented(indent: string, text: string): string {
  return indent ? indent + text.replaceAll("\n", `\n${indent}`) : text;
}

/** The running call's console state (made on first use), or the isolate's outside any. */
function consoleState(): ConsoleState {
  const store = runStore.getStore();
  return store ? (store.consoleState ??= newConsoleState()) : isolateConsole;
}

/**
 * The rest of Node's console, written through the lines above (so kept, prefixed and masked as they are): groups,
 * tables, `dir`, `assert`, counts, timers and `trace`, each printing what Node's prints. workerd's own print nothing a
 * call keeps. Counts and timers are the call's own, as its groups are.
 */
function installConsoleExtras(): void {
  const warning = (message: string) => console.warn(`Warning: ${message}`); // Node's process warning, at the edge
  const group = (...label: unknown[]) => {
    if (label.length > 0) console.log(...label);
    consoleState().indent += "  ";
  };
  const elapsed = (label: string, method: string): string | undefined => {
    const started = consoleState().timers.get(label);
    if (started === undefined) warning(`No such label '${label}' for console.${method}()`);
    return started === undefined ? undefined : formatTime(performance.now() - started);
  };
  const extras: Partial<Console> = {
    group,
    groupCollapsed: group,
    groupEnd: () => {
      const state = consoleState();
      state.indent = state.indent.slice(0, -2);
    },
    table: (data: unknown, properties?: readonly string[]) => console.log(consoleTable(data, properties) ?? data),
    dir: (item: unknown, options?: InspectOptions) => console.log(inspect(item, { customInspect: false, ...options })),
    dirxml: (...data: unknown[]) => console.log(...data),
    assert: (condition?: boolean, ...data: unknown[]) => {
      if (condition) return;
      data[0] = `Assertion failed${data.length === 0 ? "" : `: ${String(data[0])}`}`;
      console.warn(...data);
    },
    count: (label: unknown = "default") => {
      const { counts } = consoleState();
      const name = String(label);
      const n = (counts.get(name) ?? 0) + 1;
      counts.set(name, n);
      console.log(`${name}: ${n}`);
    },
    countReset: (label: unknown = "default") => {
      const name = String(label);
      if (!consoleState().counts.delete(name)) warning(`Count for '${name}' does not exist`);
    },
    time: (label: unknown = "default") => {
      const { timers } = consoleState();
      const name = String(label);
      if (timers.has(name)) warning(`Label '${name}' already exists for console.time()`);
      else timers.set(name, performance.now());
    },
    timeLog: (label: unknown = "default", ...data: unknown[]) => {
      const name = String(label);
      const took = elapsed(name, "timeLog");
      if (took !== undefined) console.log("%s: %s", name, took, ...data);
    },
    timeEnd: (label: unknown = "default") => {
      const name = String(label);
      const took = elapsed(name, "timeEnd");
      if (took === undefined) return;
      consoleState().timers.delete(name);
      console.log("%s: %s", name, took);
    },
    trace: function trace(...data: unknown[]) {
      const shown = { name: "Trace", message: format(...data), stack: "" };
      Error.captureStackTrace(shown, trace);
      console.error(shown.stack);
    },
  };
  Object.assign(console, extras);
}

/** A duration as Node's `console.timeEnd` writes it: `0.912ms`, `1.204s`, `2:03.008 (m:ss.mmm)`. */
function formatTime(ms: number): string {
  let hours = 0;
  let minutes = 0;
  let seconds = 0;
  if (ms >= 1000) {
    if (ms >= 60_000) {
      if (ms >= 3_600_000) {
        hours = Math.floor(ms / 3_600_000);
        ms %= 3_600_000;
      }
      minutes = Math.floor(ms / 60_000);
      ms %= 60_000;
    }
    seconds = ms / 1000;
  }
  const pad = (n: number | string) => String(n).padStart(2, "0");
  if (hours !== 0 || minutes !== 0) {
    const [whole, fraction] = seconds.toFixed(3).split(".");
    return `${hours !== 0 ? `${hours}:${pad(minutes)}` : minutes}:${pad(whole!)}.${fraction} (${hours !== 0 ? "h:m" : ""}m:ss.mmm)`;
  }
  if (seconds !== 0) return `${seconds.toFixed(3)}s`;
  return `${Number(ms.toFixed(3))}ms`;
}
