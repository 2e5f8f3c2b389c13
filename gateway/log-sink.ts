/**
 * Log lines on their way into the apps' log stores (`LogStore`, one per app).
 * A line costs its call a push onto an array: the lines printed in this
 * isolate within `LOG_LIMITS.edgeBatchMs` go in one write per app, made after
 * the response (`waitUntil`) by the request that opened the batch, as the
 * ledger's ended calls are (gateway/isolate-batch.ts): no request ever awaits
 * another's promise, and no call's answer waits for a log write.
 */
import { isolateBatch, waitForBatch } from "./isolate-batch.js";
import { sendEdgeLinesToOtlp } from "./log-otlp.js";
import { LOG_LIMITS } from "../sdk/defaults.js";
import { cutLogLine, type LogLine, type LogSource } from "../sdk/protocol.js";
import type { Env } from "./env.js";
import { inEnvironment } from "./environments.js";
import type { LogStore } from "./log-store.js";
import type { OtlpSettings } from "../sdk/settings.js";

/** The log store of an app. */
export function logStoreFor(env: Env, app: string): DurableObjectStub<LogStore> {
  return env.LOGS.get(env.LOGS.idFromName(inEnvironment(env, app)));
}

/** Where a line a piece of running code prints goes: its app, function (or web label) and call; an agent's session. */
export interface LogOrigin {
  app: string;
  function: string | null;
  callId: string | null;
  /** An agent's: its session's fingerprint (`LogLine.session`). */
  session?: string;
}

/** What the sink says about a write that failed: the console as it was before lines were captured, so the report is not captured in turn. */
let report: (message: string) => void = () => {};

/** Sets where the sink reports a write that failed (the unpatched console). */
export function reportLogFailuresTo(write: (message: string) => void): void {
  report = write;
}

type KeepContext = { env: Env; config: { region: string; environment: string; otlp?: OtlpSettings | undefined }; waitUntil(promise: Promise<unknown>): void };

/** How a kept `system` line is printed as well, as a running call's own lines are (gateway/run-context.ts); none until set. */
let printSystem: (rc: KeepContext, line: string) => void = () => {};

/**
 * Sets how Tandem's own lines about a call (a retry, a failure, a call taken over) are printed besides being kept:
 * `tandem serve`'s terminal showed the function's lines and never why it ran again.
 */
export function printSystemLinesWith(print: (rc: KeepContext, line: string) => void): void {
  printSystem = print;
}

/**
 * Keeps what was printed at the edge: batched, and written after the response (and sent to the OTLP endpoint, when
 * `TANDEM_OTLP_ENDPOINT` names one: gateway/log-otlp.ts). Text of several lines is kept as that many lines, as a
 * plane keeps its containers' output, so a function prints the same lines in either tier.
 * @example keepEdgeLine(rc, { app: "shop", function: "checkout", callId }, "stdout", "charged 3 items");
 */
export function keepEdgeLine(rc: KeepContext, origin: LogOrigin, source: LogSource, text: string): void {
  const time = Date.now();
  const lines: LogLine[] = text
    .split(/\r?\n/)
    .map((line) => ({ time, ...origin, containerId: null, tier: "edge", region: rc.config.region, source, text: cutLogLine(line) }));
  keepLines(rc, lines);
  if (rc.config.otlp) sendEdgeLinesToOtlp(rc, rc.config.otlp, lines, report);
  if (source === "system") {
    const prefix = `[${origin.app}${origin.function === null ? "" : `.${origin.function}`}${origin.callId === null ? "" : ` ${origin.callId}`}] (system)`;
    printSystem(rc, lines.map((line) => `${prefix} ${line.text}`).join("\n"));
  }
}

const batchLines = isolateBatch(LOG_LIMITS.edgeBatchMs, (env: Env, lines: LogLine[]) => writeLines(env, lines));

/** Keeps lines (from the edge, or a plane's batch): one write per app after `LOG_LIMITS.edgeBatchMs`, by the request that opens the batch. */
export function keepLines(rc: { env: Env; waitUntil(promise: Promise<unknown>): void }, lines: LogLine[]): void {
  waitForBatch(rc, batchLines(rc.env, lines));
}

/**
 * Writes lines now, one write per app (more where its lines' JSON is longer than `LOG_LIMITS.maxAppendChars`); a write
 * that fails is reported with how many lines it lost, and the app's log gets a `system` line saying so.
 */
export async function writeLines(env: Env, lines: LogLine[]): Promise<void> {
  const byApp = new Map<string, LogLine[]>();
  for (const line of lines) {
    const list = byApp.get(line.app);
    if (list) list.push(line);
    else byApp.set(line.app, [line]);
  }
  const writes: Promise<void>[] = [];
  for (const [app, appLines] of byApp) {
    const store = logStoreFor(env, app);
    for (const { json, count } of jsonPieces(appLines, LOG_LIMITS.maxAppendChars)) {
      writes.push(
        store.append(json).catch(async (err: unknown) => {
          const why = (err as Error).message;
          report(`logs: could not keep ${count} lines of app ${app}: ${why}`);
          const said: LogLine = {
            ...SYSTEM_LINE,
            time: Date.now(),
            app,
            region: appLines[0]!.region,
            text: `${count} lines dropped: the log store could not keep them (${why})`,
          };
          await store.append(JSON.stringify([said])).catch(() => {});
        }),
      );
    }
  }
  await Promise.all(writes);
}

const SYSTEM_LINE = { function: null, callId: null, containerId: null, tier: "edge", source: "system" } as const;

/**
 * `lines` as JSON arrays of at most `maxChars` characters each (a longer line alone in one), in order, each with how
 * many lines it holds.
 */
export function jsonPieces(lines: readonly LogLine[], maxChars: number): { json: string; count: number }[] {
  if (lines.length === 1) return [{ json: `[${JSON.stringify(lines[0])}]`, count: 1 }];
  const pieces: { json: string; count: number }[] = [];
  let parts: string[] = [];
  let chars = 2;
  for (const line of lines) {
    const part = JSON.stringify(line);
    if (parts.length > 0 && chars + part.length + 1 > maxChars) {
      pieces.push({ json: `[${parts.join(",")}]`, count: parts.length });
      parts = [];
      chars = 2;
    }
    parts.push(part);
    chars += part.length + 1;
  }
  if (parts.length > 0) pieces.push({ json: `[${parts.join(",")}]`, count: parts.length });
  return pieces;
}
