/**
 * The gateway's metrics: per edge function, its attempts, errors and retries, and its run time as a histogram, named
 * as a plane names its own (gpu-plane/plane-metrics.ts) with `tier="edge"`; per function of either tier, its calls
 * once each by how they ended (`tier="edge"` or `"plane"`: a plane counts attempts, so a retried success reads as an
 * error there); per scheduled function, its runs by outcome, its last success and, from the scheduler, its next run
 * and the runs it skipped or missed. Nothing is counted on a call's path: the call ledger adds each batch of ended
 * calls to cumulative counts in the same write that records them (`CallLedger.record`, `edgeIncrements` here), one
 * table per shard that expiring calls never touch, so the counts only grow. A scrape (`GET /v1/metrics`) and the OTLP
 * export (gateway/metrics-exporter.ts) sum the 16 shards. The series are listed in docs/observability.md, "The
 * gateway's series".
 */
import { METRICS_DEFAULTS } from "../sdk/defaults.js";
import type { QueueInfo } from "../sdk/protocol.js";
import type { MetricFamilyValues } from "../sdk/otlp-json.js";
import { LEDGER_SHARDS, ledgerShard, type FinishedCall } from "./call-ledger-client.js";
import type { Env } from "./env.js";
import type { ScheduleMetricRow } from "./scheduler.js";
import type { AgentHubMetrics } from "./agents.js";

/**
 * What a ledger shard keeps per function: `series` and its `label` (an error code, a status, a bucket's bound).
 * `outcomes` are an edge function's calls by status, `plane_outcomes` a plane function's; `scheduled_runs` a
 * scheduled function's runs by status, `scheduled_last_success` when its last successful run ended (ms, the latest kept).
 */
export type EdgeSeries =
  | "calls"
  | "retries"
  | "errors"
  | "outcomes"
  | "plane_outcomes"
  | "scheduled_runs"
  | "scheduled_last_success"
  | "run_bucket"
  | "run_sum"
  | "run_count"
  | "since";

/** One cumulative count of a function's, as a ledger shard keeps it (`since`: when its first call was counted, ms). */
export interface EdgeMetricRow {
  app: string;
  function: string;
  series: EdgeSeries;
  label: string;
  value: number;
}

const RUN_BOUNDS: readonly number[] = METRICS_DEFAULTS.runBuckets;
const INF = "+Inf";

/**
 * What ended calls add to their functions' counts, summed per function and series. An edge call counts each of its
 * attempts (an attempt lost with its isolate too), each attempt after the first as a retry, the error of each attempt
 * that failed or timed out (not a caller's `invalid_request`, as a plane and the dashboard count it), each attempt's
 * run time, and the call once by its status (a stream, or a call lost with its runner, has no run time here); a plane
 * call only the last (its plane counts its attempts); a scheduled run, of either tier, its status and, when it
 * succeeded, its end. A row of unknown tier (the lost call of a function no longer served) counts as a scheduled run only.
 * @example ledgerSql.exec(UPSERT, JSON.stringify(edgeIncrements(rows, Date.now()).map(Object.values)));
 */
export function edgeIncrements(calls: readonly FinishedCall[], now: number): EdgeMetricRow[] {
  const sums = new Map<string, EdgeMetricRow>();
  const add = (call: FinishedCall, series: EdgeSeries, label: string, value: number) => {
    const key = `${call.app}\u0000${call.function}\u0000${series}\u0000${label}`;
    const row = sums.get(key);
    if (row) row.value = combined(series, row.value, value);
    else sums.set(key, { app: call.app, function: call.function, series, label, value });
  };
  const ran = (call: FinishedCall, ms: number) => {
    const seconds = Math.max(0, ms) / 1000;
    add(call, "run_bucket", String(RUN_BOUNDS.find((bound) => seconds <= bound) ?? INF), 1);
    add(call, "run_sum", "", seconds);
    add(call, "run_count", "", 1);
  };
  for (const call of calls) {
    if (call.tier || call.edge || call.kind === "scheduled") add(call, "since", "", now);
    if (call.kind === "scheduled") {
      add(call, "scheduled_runs", call.status, 1);
      if (call.status === "succeeded") add(call, "scheduled_last_success", "", call.finishedAt);
    }
    if (call.tier === "plane") add(call, "plane_outcomes", outcomeOf(call), 1);
    const edge = call.edge;
    if (!edge && call.tier !== "edge") continue;
    add(call, "calls", "", call.attempts);
    add(call, "retries", "", Math.max(0, call.attempts - 1)); // 0 too: a function with no retry yet has the series
    add(call, "outcomes", outcomeOf(call), 1);
    for (const attempt of edge?.retried ?? []) {
      if (attempt.code !== "invalid_request") add(call, "errors", attempt.code, 1);
      ran(call, attempt.runMs);
    }
    const code = call.error?.code;
    if ((call.status === "failed" || call.status === "timed_out") && code !== undefined && code !== "invalid_request") add(call, "errors", code, 1);
    // A stream's chunks, or a call lost with its runner, have no run time of their own.
    if (edge && call.status !== "cancelled") ran(call, edge.runMs);
  }
  return [...sums.values()];
}

/**
 * Two counts of one series as one, as a batch sums its calls, a shard's write adds a batch (`CallLedger.#meter`, in
 * SQL) and a scrape sums the shards: `since` the earliest, a last success the latest, any other their sum.
 */
function combined(series: EdgeSeries, a: number, b: number): number {
  return series === "since" ? Math.min(a, b) : series === "scheduled_last_success" ? Math.max(a, b) : a + b;
}

/** How a call ends, as `tandem_schedule_runs_total` counts it. */
const ENDED_STATUSES = ["succeeded", "failed", "timed_out", "cancelled"] as const;

/** How a call ends, as `tandem_function_call_outcomes_total` counts it: its status, or `refused` (the caller's mistake). */
const OUTCOMES = [...ENDED_STATUSES, "refused"] as const;

/**
 * A call's outcome: its status, but `refused` for one that failed as `invalid_request` (a stream of a function that
 * returned no iterable): the caller's mistake, a call but not an error, as the dashboard and the error series count it.
 */
function outcomeOf(call: FinishedCall): (typeof OUTCOMES)[number] {
  return call.status === "failed" && call.error?.code === "invalid_request" ? "refused" : call.status;
}

/**
 * Counts of 0 for what each function served here may count: its calls by every status (and an edge function's
 * attempts), a scheduled one's runs by every status. Added to the shards' counts, they put each series in a scrape
 * from the start, so `increase()` and `rate()` see a function's first failure: a series that first appears at 1 reads
 * as no increase, and an alert on it stayed silent until the second.
 */
export function zeroRows(functions: readonly { app: string; name: string; tier: "edge" | "plane"; scheduled: boolean }[]): EdgeMetricRow[] {
  return functions.flatMap((fn) => {
    const row = (series: EdgeSeries, label = ""): EdgeMetricRow => ({ app: fn.app, function: fn.name, series, label, value: 0 });
    return [
      ...(fn.tier === "edge" ? [row("calls"), row("retries")] : []),
      ...OUTCOMES.map((outcome) => row(fn.tier === "edge" ? "outcomes" : "plane_outcomes", outcome)),
      ...(fn.scheduled ? ENDED_STATUSES.map((status) => row("scheduled_runs", status)) : []),
    ];
  });
}

/** Every shard's counts, as each keeps them. */
export async function edgeMetricRows(env: Env): Promise<EdgeMetricRow[]> {
  const shards = await Promise.all(Array.from({ length: LEDGER_SHARDS }, (_, shard) => ledgerShard(env, shard).metricRows()));
  return shards.flat();
}

/**
 * The shards' counts summed into metric families (prom-client's JSON shape, which `prometheusText` writes and
 * `otlpMetricsRequest` sends), and when the first of them began (ms; undefined before any call was counted).
 * @example const { families } = edgeMetricFamilies(await edgeMetricRows(env));
 */
export function edgeMetricFamilies(rows: readonly EdgeMetricRow[]): { families: MetricFamilyValues[]; since: number | undefined } {
  // Per function, in the order functions come: each series' values by label.
  const byFunction = new Map<string, { app: string; function: string; values: Map<string, number> }>();
  let since: number | undefined;
  for (const row of rows) {
    const key = `${row.app}\u0000${row.function}`;
    let fn = byFunction.get(key);
    if (!fn) byFunction.set(key, (fn = { app: row.app, function: row.function, values: new Map() }));
    const name = `${row.series}\u0000${row.label}`;
    if (row.series === "since") {
      since = since === undefined ? row.value : combined("since", since, row.value);
      continue;
    }
    const was = fn.values.get(name);
    fn.values.set(name, was === undefined ? row.value : combined(row.series, was, row.value));
  }
  const functions = [...byFunction.values()].sort((a, b) => a.app.localeCompare(b.app) || a.function.localeCompare(b.function));
  /** The values of one series of each function's, as samples labelled `labels` and, when named, the series' own label. */
  const samples = (series: EdgeSeries, labels: Record<string, string>, labelName?: string): MetricFamilyValues["values"] =>
    functions.flatMap((fn) =>
      [...fn.values]
        .filter(([key]) => key.startsWith(`${series}\u0000`))
        .map(([key, value]) => {
          const label = key.slice(series.length + 1);
          return { value, labels: { app: fn.app, function: fn.function, ...labels, ...(labelName ? { [labelName]: label } : {}) } };
        }),
    );
  const counter = (name: string, help: string, series: EdgeSeries, labelName?: string): MetricFamilyValues => ({
    name,
    help,
    type: "counter",
    values: samples(series, { tier: "edge" }, labelName),
  });
  const run: MetricFamilyValues = {
    name: "tandem_function_run_seconds",
    help: "Time an edge function's attempt ran, from its start until its result or error (workerd's clock moves only between I/O).",
    type: "histogram",
    values: functions.flatMap((fn) => {
      const count = fn.values.get("run_count\u0000");
      if (count === undefined) return [];
      const labels = { app: fn.app, function: fn.function, tier: "edge" };
      // Each count under the first bound of today's that holds its own (the same one, unless the bounds changed).
      const perBound = RUN_BOUNDS.map(() => 0);
      for (const [key, n] of fn.values) {
        if (!key.startsWith("run_bucket\u0000")) continue;
        const le = Number(key.slice("run_bucket\u0000".length)); // NaN for +Inf: counted by `count` alone
        const i = RUN_BOUNDS.findIndex((bound) => le <= bound);
        if (i >= 0) perBound[i]! += n;
      }
      let cumulative = 0;
      const buckets = RUN_BOUNDS.map((bound, i) => {
        cumulative += perBound[i]!;
        return { value: cumulative, labels: { ...labels, le: bound }, metricName: "tandem_function_run_seconds_bucket" };
      });
      return [
        ...buckets,
        { value: count, labels: { ...labels, le: INF }, metricName: "tandem_function_run_seconds_bucket" },
        { value: fn.values.get("run_sum\u0000") ?? 0, labels, metricName: "tandem_function_run_seconds_sum" },
        { value: count, labels, metricName: "tandem_function_run_seconds_count" },
      ];
    }),
  };
  const families = [
    counter("tandem_function_calls_total", "Attempts of edge functions that ended (each attempt once), by function.", "calls"),
    counter(
      "tandem_function_errors_total",
      "Attempts of edge functions that failed or timed out, by function and error code (not the caller's invalid_request).",
      "errors",
      "code",
    ),
    counter("tandem_function_retries_total", "Attempts of edge functions that were a retry (attempt 2 or later), by function.", "retries"),
    {
      name: "tandem_function_call_outcomes_total",
      help: "Calls that ended, each once, by function, tier and how it ended (status).",
      type: "counter",
      values: [...samples("outcomes", { tier: "edge" }, "status"), ...samples("plane_outcomes", { tier: "plane" }, "status")],
    },
    run,
    {
      name: "tandem_schedule_runs_total",
      help: "Scheduled runs that ended, by function and how they ended (status).",
      type: "counter",
      values: samples("scheduled_runs", {}, "status"),
    },
    {
      name: "tandem_schedule_last_success_timestamp_seconds",
      help: "When the last scheduled run of a function that succeeded ended, in seconds since the epoch.",
      type: "gauge",
      values: samples("scheduled_last_success", {}).map((v) => ({ ...v, value: v.value / 1000 })), // whole ms: no 0.6100001
    },
  ];
  return { families, since };
}

/**
 * The scheduler's series: each scheduled function's next run, and the runs it skipped (overlap "skip") or missed
 * (nothing ticked), counted since its schedule was last seen new.
 */
export function scheduleMetricFamilies(rows: readonly ScheduleMetricRow[]): MetricFamilyValues[] {
  const sorted = [...rows].sort((a, b) => a.app.localeCompare(b.app) || a.function.localeCompare(b.function));
  const of = (value: (row: ScheduleMetricRow) => number) => sorted.map((row) => ({ value: value(row), labels: { app: row.app, function: row.function } }));
  return [
    {
      name: "tandem_schedule_next_run_timestamp_seconds",
      help: "When a scheduled function runs next, in seconds since the epoch.",
      type: "gauge",
      values: of((row) => row.nextRun / 1000),
    },
    {
      name: "tandem_schedule_skipped_runs_total",
      help: "Scheduled runs skipped because the previous run was still under way (overlap skip).",
      type: "counter",
      values: of((row) => row.skipped),
    },
    {
      name: "tandem_schedule_missed_runs_total",
      help: "Scheduled runs missed while nothing ticked (caught up once by the latest).",
      type: "counter",
      values: of((row) => row.missed),
    },
  ];
}

/**
 * Each queue's items, summed over its partitions: those waiting to be taken (a consumer's backlog) and those out on a
 * lease (taken, not yet acknowledged), as `tandem queue list` shows them.
 */
export function queueMetricFamilies(queues: readonly QueueInfo[]): MetricFamilyValues[] {
  const sorted = [...queues].sort((a, b) => a.name.localeCompare(b.name));
  const of = (value: (queue: QueueInfo) => number) => sorted.map((q) => ({ value: value(q), labels: { queue: q.name } }));
  return [
    { name: "tandem_queue_items", help: "A queue's items waiting to be taken, over all its partitions.", type: "gauge", values: of((q) => q.len) },
    { name: "tandem_queue_leased_items", help: "A queue's items out on a lease: taken, not yet acknowledged.", type: "gauge", values: of((q) => q.leased) },
  ];
}

/** Close codes each agent has a series of from the start (at 0): a handler's failure and the limits, to alert on. */
const ALERTED_CLOSES = ["1008", "1009", "1011"] as const;

/**
 * Each agent's sockets open now, sessions kept and sockets ended by close code, summed over its hub's shards; the
 * close codes worth an alert are there at 0 from the first scrape, as a function's outcomes are.
 */
export function agentMetricFamilies(hubs: readonly { app: string; agent: string; metrics: AgentHubMetrics }[]): MetricFamilyValues[] {
  const byAgent = new Map<string, { app: string; agent: string; sockets: number; sessions: number; closes: Map<string, number> }>();
  for (const { app, agent, metrics } of hubs) {
    const key = `${app}\u0000${agent}`;
    let sum = byAgent.get(key);
    if (!sum) byAgent.set(key, (sum = { app, agent, sockets: 0, sessions: 0, closes: new Map(ALERTED_CLOSES.map((code) => [code, 0])) }));
    sum.sockets += metrics.sockets;
    sum.sessions += metrics.sessions;
    for (const [code, count] of Object.entries(metrics.closes)) sum.closes.set(code, (sum.closes.get(code) ?? 0) + count);
  }
  const agents = [...byAgent.values()].sort((a, b) => a.app.localeCompare(b.app) || a.agent.localeCompare(b.agent));
  const of = (value: (agent: (typeof agents)[number]) => number) => agents.map((a) => ({ value: value(a), labels: { app: a.app, agent: a.agent } }));
  return [
    { name: "tandem_agent_sockets", help: "An agent's WebSockets open now.", type: "gauge", values: of((a) => a.sockets) },
    { name: "tandem_agent_sessions", help: "An agent's sessions kept: live, or idle within their time to live.", type: "gauge", values: of((a) => a.sessions) },
    {
      name: "tandem_agent_socket_closes_total",
      help: "An agent's WebSockets that ended, by close code (1011 a handler failed, 1008 and 1009 a limit, 1006 a dropped connection).",
      type: "counter",
      values: agents.flatMap((a) =>
        [...a.closes].sort(([x], [y]) => Number(x) - Number(y)).map(([code, value]) => ({ value, labels: { app: a.app, agent: a.agent, code } })),
      ),
    },
  ];
}

/**
 * Families in Prometheus's text exposition format (version 0.0.4), as prom-client writes a plane's.
 * @example new Response(prometheusText(families), { headers: { "content-type": PROMETHEUS_CONTENT_TYPE } });
 */
export function prometheusText(families: readonly MetricFamilyValues[]): string {
  let text = "";
  for (const family of families) {
    text += `# HELP ${family.name} ${family.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}\n# TYPE ${family.name} ${family.type}\n`;
    for (const v of family.values) {
      const labels = Object.entries(v.labels)
        .filter((entry): entry is [string, string | number] => entry[1] !== undefined)
        .map(([k, value]) => `${k}="${String(value).replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')}"`);
      text += `${v.metricName ?? family.name}${labels.length ? `{${labels.join(",")}}` : ""} ${sampleText(v.value)}\n`;
    }
  }
  return text;
}

/** The content type of `prometheusText`'s answer (the one a plane's `/metrics` answers with). */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

function sampleText(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}
