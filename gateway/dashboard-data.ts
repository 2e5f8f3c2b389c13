/**
 * What the dashboard's pages show, read from the Durable Objects that hold
 * it: an app's calls and their counts over time from every ledger shard (each
 * an indexed query, merged here), agents' sessions from their hubs, and cost
 * over time priced from the calls' run time.
 */
import type { App } from "../sdk/app.js";
import { DASHBOARD_DEFAULTS } from "../sdk/defaults.js";
import { containerResources } from "../sdk/options.js";
import { containerCost } from "../sdk/pricing.js";
import type { DashboardCallRow, DashboardDurationCount, DashboardSeriesPoint } from "../sdk/protocol.js";
import { hubFor, type AgentSessionInfo } from "./agents.js";
import { LEDGER_SHARDS, ledgerShard, type CallRowsQuery, type LedgerApi } from "./call-ledger-client.js";
import type { Env } from "./env.js";
import { registry } from "./registry.js";

function shards(env: Env): LedgerApi[] {
  return Array.from({ length: LEDGER_SHARDS }, (_, i) => ledgerShard(env, i));
}

/**
 * An app's calls (or one function's), newest first, from every ledger shard.
 * @example const rows = await recentCalls(env, { app: "shop", limit: 50 });
 */
export async function recentCalls(env: Env, query: CallRowsQuery): Promise<DashboardCallRow[]> {
  const parts = await Promise.all(shards(env).map((shard) => shard.callRows(query)));
  return parts
    .flat()
    .sort((a, b) => b.createdAt - a.createdAt || (a.callId < b.callId ? 1 : -1))
    .slice(0, query.limit);
}

/**
 * An app's calls (or one function's) counted per function and time bucket over the chart window, from every shard.
 * @example const { buckets, points } = await callSeries(env, { app: "shop" });
 */
export async function callSeries(env: Env, query: { app: string; function?: string; windowMs?: number }): Promise<CallSeries> {
  const { since, bucketMs } = chartWindow(query.windowMs);
  const ask = { app: query.app, since, bucketMs, ...(query.function === undefined ? {} : { function: query.function }) };
  const parts = await Promise.all(shards(env).map((shard) => shard.callSeries(ask)));
  const merged = new Map<string, DashboardSeriesPoint>();
  for (const point of parts.flat()) {
    const key = `${point.function}@${point.t}`;
    const known = merged.get(key);
    if (!known) merged.set(key, { ...point });
    else {
      known.calls += point.calls;
      known.errors += point.errors;
      known.retries += point.retries;
      known.ended += point.ended;
      known.runMsSum += point.runMsSum;
      known.runMsMax = Math.max(known.runMsMax, point.runMsMax);
      known.workMsSum += point.workMsSum;
    }
  }
  const buckets: number[] = [];
  for (let t = since; t <= Date.now(); t += bucketMs) buckets.push(t);
  return { buckets, points: [...merged.values()].sort((a, b) => a.t - b.t) };
}

/**
 * One function's times from start to end over the chart window, as percentiles: over the whole window and in each
 * bucket that has ended calls, from every shard's counts (`callDurations` in gateway/call-ledger.ts).
 * @example const { window } = await callDurations(env, { app: "shop", function: "checkout" }); // window?.p95
 */
export async function callDurations(env: Env, query: { app: string; function: string; windowMs?: number }): Promise<CallDurations> {
  const { since, bucketMs } = chartWindow(query.windowMs);
  const counts = (await Promise.all(shards(env).map((shard) => shard.callDurations({ app: query.app, function: query.function, since, bucketMs })))).flat();
  const byBucket = new Map<number, DashboardDurationCount[]>();
  for (const count of counts) byBucket.set(count.t, [...(byBucket.get(count.t) ?? []), count]);
  return {
    window: percentilesOf(counts),
    buckets: new Map([...byBucket].map(([t, inBucket]) => [t, percentilesOf(inBucket)!])),
  };
}

/** A function's times from start to end as percentiles (ms), over the window and per bucket start. */
export interface CallDurations {
  window: Percentiles | null;
  buckets: Map<number, Percentiles>;
}

/** Percentiles of calls' times (ms), each the time of the call at its rank (nearest rank: p95 of 20 calls is the 19th). */
export interface Percentiles {
  calls: number;
  p50: number;
  p95: number;
  p99: number;
}

/**
 * The percentiles of counted times, or null for none.
 * @example percentilesOf([{ t: 0, ms: 100, calls: 19 }, { t: 0, ms: 900, calls: 1 }]); // { calls: 20, p50: 100, p95: 100, p99: 900 }
 */
export function percentilesOf(counts: DashboardDurationCount[]): Percentiles | null {
  const sorted = [...counts].sort((a, b) => a.ms - b.ms);
  const calls = sorted.reduce((n, c) => n + c.calls, 0);
  if (calls === 0) return null;
  const at = (p: number) => {
    const rank = Math.max(1, Math.ceil((p / 100) * calls));
    let seen = 0;
    for (const c of sorted) if ((seen += c.calls) >= rank) return c.ms;
    return sorted[sorted.length - 1]!.ms;
  };
  return { calls, p50: at(50), p95: at(95), p99: at(99) };
}

/** The chart window's first bucket and the buckets' length: `windowMs` back from now in `DASHBOARD_DEFAULTS.chartBuckets` buckets. */
function chartWindow(windowMs: number = DASHBOARD_DEFAULTS.chartWindowMs): { since: number; bucketMs: number } {
  const bucketMs = Math.ceil(windowMs / DASHBOARD_DEFAULTS.chartBuckets);
  return { since: Math.floor((Date.now() - windowMs) / bucketMs) * bucketMs, bucketMs };
}

/** Calls over a window: every bucket's start (a chart's x axis, buckets without calls included), and the points that have calls. */
export interface CallSeries {
  buckets: number[];
  points: DashboardSeriesPoint[];
}

/** One function's totals over a window: the sum of its points. */
export interface FunctionTotals {
  function: string;
  calls: number;
  errors: number;
  retries: number;
  /** Of its calls, those that ended: the mean and longest are theirs. */
  ended: number;
  meanRunMs: number;
  maxRunMs: number;
}

/** Each function's totals from a series (functions with no calls in it are left out). */
export function totalsByFunction(points: DashboardSeriesPoint[]): FunctionTotals[] {
  const totals = new Map<string, DashboardSeriesPoint>();
  for (const p of points) {
    const t = totals.get(p.function) ?? { ...p, calls: 0, errors: 0, retries: 0, ended: 0, runMsSum: 0, runMsMax: 0, workMsSum: 0 };
    t.calls += p.calls;
    t.errors += p.errors;
    t.retries += p.retries;
    t.ended += p.ended;
    t.runMsSum += p.runMsSum;
    t.runMsMax = Math.max(t.runMsMax, p.runMsMax);
    totals.set(p.function, t);
  }
  return [...totals.values()].map((t) => ({
    function: t.function,
    calls: t.calls,
    errors: t.errors,
    retries: t.retries,
    ended: t.ended,
    meanRunMs: t.ended ? t.runMsSum / t.ended : 0,
    maxRunMs: t.runMsMax,
  }));
}

/** What the usage page counts a function's calls under once the app no longer has it: their time, not priced. */
export const NOT_SERVED = "no longer served (not priced)";

/**
 * What a second of a function's run costs, by the plane's price table (`sdk/pricing.ts`) for the resources it asks
 * for (its first GPU choice); edge functions cost nothing here. Calls' run time priced so, not containers' lives.
 */
export function pricePerSecond(app: string, fn: string): { usd: number; gpu: string | null; kind: string } {
  // A function the app no longer has (renamed, removed) keeps its calls' time, but no price to read it at (before: the
  // usage page was a 404 naming it).
  const registered = registry().find(app, fn);
  if (!registered) return { usd: 0, gpu: null, kind: NOT_SERVED };
  if (registered.spec.tier !== "plane") return { usd: 0, gpu: null, kind: "edge (not charged)" };
  const gpu = registered.planeSpec.gpu?.[0] ?? null;
  const resources = { gpu: gpu?.type ?? null, gpuCount: gpu?.count ?? 0, ...containerResources(registered.planeSpec) };
  const named = gpu ? `${gpu.type}${gpu.count > 1 ? `x${gpu.count}` : ""}` : null;
  return { usd: containerCost(1, resources), gpu: named, kind: named ?? "plane, no GPU" };
}

/** An app's agents' sessions, each with its agent's label. */
export async function agentSessions(env: Env, app: App): Promise<(AgentSessionInfo & { label: string })[]> {
  const found = await Promise.all(
    app.agents.flatMap((agent) =>
      Array.from({ length: agent.shards }, async (_, shard) =>
        (await hubFor(env, app.name, agent.label, shard, agent.shards).sessions()).map((s) => ({ ...s, label: agent.label })),
      ),
    ),
  );
  return found.flat().sort((a, b) => b.sockets - a.sockets || b.lastActive - a.lastActive);
}

/** The apps `principal` may see, as the registry holds them. */
export function visibleApps(apps: string[] | null): App[] {
  return registry().apps.filter((a) => apps === null || apps.includes(a.name));
}
