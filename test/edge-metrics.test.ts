/**
 * The gateway's metrics, with real workerd: after edge calls that succeed, fail, are retried and time out, and
 * scheduled runs that succeed and fail, the gateway's `GET /v1/metrics`, read by `parse-prometheus-text-format`,
 * carries the series docs/observability.md lists for the gateway, with the counts the calls explain, and only to an
 * admin token or the metrics token; the counts outlive the calls' records; and a collector on loopback receives them
 * over OTLP/HTTP as a schema-valid `ExportMetricsServiceRequest`. (A plane function's outcomes: test/metrics.test.ts.)
 */
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Queue, lookup } from "../sdk/index.js";
import { authed, eventually, startTestGateway, type TestGateway } from "./helpers/gateway.js";
import { MetricsRequest, attrs, checkAgainstSchema, startCollector, type TestCollector } from "./helpers/otlp.js";
import { documentedSeries, histogram, parsePrometheus, quantile, sampleValue } from "./helpers/prometheus.js";

const APP = new URL("./fixtures/edge-metrics-app.ts", import.meta.url).pathname;
const DOCS = new URL("../docs/observability.md", import.meta.url).pathname;
const METRICS_TOKEN = "edge-metrics-token-for-tests-42";

let gw: TestGateway;
let collector: TestCollector;
let spawnedId: string;
let triggeredAt: number;
const fn = <A extends unknown[] = any[], R = any>(name: string) => lookup<A, R>("edgemetrics", name, { gateway: gw.url });
const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

beforeAll(async () => {
  collector = await startCollector();
  gw = await startTestGateway(APP, {
    bindings: {
      TANDEM_METRICS_TOKEN: METRICS_TOKEN,
      TANDEM_OTLP_ENDPOINT: collector.url,
      TANDEM_OTLP_HEADERS: "x-collector-key=k%3D1",
      TANDEM_OTLP_METRICS_INTERVAL_SECONDS: "1",
      // Ended calls' records expire in a second: the counts must not go with them.
      TANDEM_RESULT_TTL_SECONDS: "1",
    },
  });
  const square = fn<[number], number>("square");
  for (const n of [1, 2, 3]) expect(await square.remote(n)).toBe(n * n);
  const spawned = await square.spawn(4);
  spawnedId = spawned.id;
  expect(await spawned.get()).toBe(16);
  await expect(fn("boom").remote()).rejects.toThrow(/boom on purpose/);
  expect(await fn("flaky").remote()).toBe(2); // attempt 1 failed, its retry succeeded
  await expect(fn("slow").remote()).rejects.toThrow(/timed out|timeout/i);
  // A queue with a backlog and an item out on a lease.
  const jobs = Queue.fromName("metricsjobs", { createIfMissing: true, gateway: gw.url });
  await jobs.putMany(["a", "b", "c"]);
  expect(await jobs.get({ lease: 60, timeoutMs: 0 })).toMatchObject({ value: "a" });
  triggeredAt = Date.now();
  for (const name of ["nightly", "nightlyFails"]) {
    const res = await fetch(`${gw.url}/v1/apps/edgemetrics/functions/${name}/trigger`, authed({ method: "POST" }));
    expect(res.status).toBe(202);
  }
  // The ledger writes ended calls in batches, after the answers.
  await eventually(async () => {
    const families = parsePrometheus(await scrape());
    return (
      sampleValue(families, "tandem_function_calls_total", { function: "slow" }) === 1 &&
      sampleValue(families, "tandem_schedule_runs_total", { function: "nightlyFails", status: "failed" }) === 1
    );
  }, 10_000);
}, 120_000);
afterAll(async () => {
  await gw?.dispose();
  collector?.close();
});

async function scrape(token = METRICS_TOKEN): Promise<string> {
  const res = await fetch(`${gw.url}/v1/metrics`, bearer(token));
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

describe("GET /v1/metrics", () => {
  it("parses, and carries every series the docs list for the gateway, a function's labelled tier=edge", async () => {
    const text = await scrape();
    const families = parsePrometheus(text);
    const docs = await readFile(DOCS, "utf8");
    const documented = documentedSeries(docs, "### The gateway's series");
    expect(documented.length).toBeGreaterThanOrEqual(10);
    const others = [...documentedSeries(docs, "### Agents' series"), ...documentedSeries(docs, "### Queues' series")];
    expect(families.map((f) => f.name).sort()).toEqual([...documented, ...others].sort());
    for (const f of families) expect(f.metrics.length, f.name).toBeGreaterThan(0);
    expect(families.find((f) => f.name === "tandem_function_calls_total")?.type).toBe("COUNTER");
    expect(families.find((f) => f.name === "tandem_function_run_seconds")?.type).toBe("HISTOGRAM");
    expect(families.find((f) => f.name === "tandem_schedule_last_success_timestamp_seconds")?.type).toBe("GAUGE");
    for (const f of families.filter((f) => f.type === "COUNTER" && f.name.startsWith("tandem_function_"))) {
      for (const m of f.metrics) expect(m.labels).toMatchObject({ app: "edgemetrics", tier: m.labels?.function === "onPlane" ? "plane" : "edge" });
    }
  });

  it("says each queue's items waiting and out on a lease", async () => {
    const families = parsePrometheus(await scrape());
    expect(sampleValue(families, "tandem_queue_items", { queue: "metricsjobs" })).toBe(2);
    expect(sampleValue(families, "tandem_queue_leased_items", { queue: "metricsjobs" })).toBe(1);
    expect(families.find((f) => f.name === "tandem_queue_items")?.type).toBe("GAUGE");
  });

  it("counts each scheduled function's runs by outcome, and says when it last succeeded and runs next", async () => {
    const families = parsePrometheus(await scrape());
    const of = (name: string, fnName: string, more: Record<string, string> = {}) =>
      sampleValue(families, name, { app: "edgemetrics", function: fnName, ...more });
    expect(of("tandem_schedule_runs_total", "nightly", { status: "succeeded" })).toBe(1);
    expect(of("tandem_schedule_runs_total", "nightly", { status: "failed" })).toBe(0);
    expect(of("tandem_schedule_runs_total", "nightlyFails", { status: "failed" })).toBe(1);
    const lastSuccess = of("tandem_schedule_last_success_timestamp_seconds", "nightly")!;
    expect(lastSuccess * 1000).toBeGreaterThanOrEqual(triggeredAt - 1);
    expect(lastSuccess * 1000).toBeLessThanOrEqual(Date.now());
    // One that never succeeded has no last success: an alert on its age fires on "absent", not on 1970.
    expect(of("tandem_schedule_last_success_timestamp_seconds", "nightlyFails")).toBeUndefined();
    // Due at 03:00 on January 1st, in UTC.
    const next = new Date(of("tandem_schedule_next_run_timestamp_seconds", "nightly")! * 1000);
    expect(next.getTime()).toBeGreaterThan(Date.now());
    expect([next.getUTCMonth(), next.getUTCDate(), next.getUTCHours(), next.getUTCMinutes()]).toEqual([0, 1, 3, 0]);
    expect(of("tandem_schedule_skipped_runs_total", "nightly")).toBe(0);
    expect(of("tandem_schedule_missed_runs_total", "nightlyFails")).toBe(0);
    // A triggered run is a call too, of its tier, counted once by how it ended.
    expect(of("tandem_function_call_outcomes_total", "nightlyFails", { tier: "edge", status: "failed" })).toBe(1);
  });

  it("counts each function's attempts, errors by code, retries and calls by how they ended", async () => {
    const families = parsePrometheus(await scrape());
    const of = (name: string, fnName: string, more: Record<string, string> = {}) =>
      sampleValue(families, name, { app: "edgemetrics", function: fnName, tier: "edge", ...more });
    expect(of("tandem_function_calls_total", "square")).toBe(4); // three .remote() and a spawn
    expect(of("tandem_function_retries_total", "square")).toBe(0);
    expect(of("tandem_function_errors_total", "square")).toBeUndefined();
    expect(of("tandem_function_call_outcomes_total", "square", { status: "succeeded" })).toBe(4);
    expect(of("tandem_function_calls_total", "boom")).toBe(1);
    expect(of("tandem_function_errors_total", "boom", { code: "function_failed" })).toBe(1);
    expect(of("tandem_function_call_outcomes_total", "boom", { status: "failed" })).toBe(1);
    // flaky's first attempt failed and was retried; the retry succeeded: two attempts, one error, one call that succeeded.
    expect(of("tandem_function_calls_total", "flaky")).toBe(2);
    expect(of("tandem_function_retries_total", "flaky")).toBe(1);
    expect(of("tandem_function_errors_total", "flaky", { code: "function_failed" })).toBe(1);
    expect(of("tandem_function_call_outcomes_total", "flaky", { status: "succeeded" })).toBe(1);
    expect(of("tandem_function_call_outcomes_total", "flaky", { status: "failed" })).toBe(0); // there from the start, so rate() sees a first failure
    expect(of("tandem_function_errors_total", "slow", { code: "function_timeout" })).toBe(1);
    expect(of("tandem_function_call_outcomes_total", "slow", { status: "timed_out" })).toBe(1);
    // A plane function's attempts are its plane's to count; the gateway counts its calls, none yet.
    const onPlane = families.flatMap((f) => f.metrics.map((m) => ({ name: f.name, labels: m.labels }))).filter((m) => m.labels?.function === "onPlane");
    expect(new Set(onPlane.map((m) => m.name))).toEqual(new Set(["tandem_function_call_outcomes_total"]));
    expect(of("tandem_function_call_outcomes_total", "onPlane", { tier: "plane", status: "succeeded" })).toBe(0);
  });

  it("times each attempt's run as a histogram a p50/p95/p99 is read from", async () => {
    const text = await scrape();
    const run = histogram(text, "tandem_function_run_seconds", { app: "edgemetrics", function: "square", tier: "edge" })!;
    expect(run.count).toBe(4);
    expect(run.sum).toBeGreaterThanOrEqual(0.08); // four runs of a 20 ms timer
    expect(run.sum).toBeLessThan(30);
    expect(run.buckets["+Inf"]).toBe(4);
    const p50 = quantile(run.buckets, 0.5);
    expect(p50).toBeGreaterThanOrEqual(0.01);
    expect(quantile(run.buckets, 0.99)).toBeGreaterThanOrEqual(p50);
    const slow = histogram(text, "tandem_function_run_seconds", { app: "edgemetrics", function: "slow", tier: "edge" })!;
    expect(slow.sum).toBeGreaterThanOrEqual(0.9); // until its 1 s timeout
    const flaky = histogram(text, "tandem_function_run_seconds", { app: "edgemetrics", function: "flaky", tier: "edge" })!;
    expect(flaky.count).toBe(2); // each attempt
  });

  it("keeps counting up once the calls' records have expired", async () => {
    const before = sampleValue(parsePrometheus(await scrape()), "tandem_function_calls_total", { function: "square" })!;
    // Records last a second here; the ledger's alarm deletes them then.
    await eventually(async () => (await fetch(`${gw.url}/v1/calls/${spawnedId}`, authed())).status === 404, 10_000);
    expect(sampleValue(parsePrometheus(await scrape()), "tandem_function_calls_total", { function: "square" })).toBe(before);
    expect(await fn<[number], number>("square").remote(5)).toBe(25);
    await eventually(async () => sampleValue(parsePrometheus(await scrape()), "tandem_function_calls_total", { function: "square" }) === before + 1, 10_000);
  });

  it("answers an admin token and the metrics token, and no one else", async () => {
    const none = await fetch(`${gw.url}/v1/metrics`);
    expect(none.status).toBe(401);
    // Says how, as a 401 should, and names the metrics token this gateway has (before: only the API token's way).
    expect(none.headers.get("www-authenticate")).toBe('Bearer realm="tandem"');
    expect(((await none.json()) as { error: { message: string } }).error.message).toMatch(
      /^this gateway's metrics take its metrics token \(TANDEM_METRICS_TOKEN\) or an admin API token/,
    );
    const wrong = await fetch(`${gw.url}/v1/metrics`, bearer("not-the-metrics-token"));
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { message: string } }).error.message).toMatch(/TANDEM_METRICS_TOKEN/);
    const admin = await fetch(`${gw.url}/v1/metrics`, authed());
    expect(admin.status).toBe(200);
    expect(await admin.text()).toMatch(/^tandem_function_calls_total\{app="edgemetrics",function="boom",tier="edge"\} 1$/m);
    // A token of scope call may call the functions, not read the whole gateway's metrics.
    const made = await fetch(
      `${gw.url}/v1/tokens`,
      authed({ method: "POST", headers: { "content-type": "application/json" }, body: '{"name":"caller","scope":"call"}' }),
    );
    const { token } = (await made.json()) as { token: string };
    expect((await fetch(`${gw.url}/v1/metrics`, bearer(token))).status).toBe(403);
  });
});

describe("OTLP export", () => {
  it("sends the edge series to <endpoint>/v1/metrics as a schema-valid ExportMetricsServiceRequest of service tandem-gateway", async () => {
    let latest: any;
    await eventually(() => {
      latest = collector.received.filter((r) => r.path === "/v1/metrics").at(-1);
      const metrics: any[] = latest?.body.resourceMetrics[0].scopeMetrics[0].metrics ?? [];
      return metrics.some(
        (m) => m.name === "tandem_function_calls_total" && m.sum.dataPoints.some((p: any) => attrs(p.attributes).function === "slow" && p.asDouble === 1),
      );
    }, 15_000);
    checkAgainstSchema(MetricsRequest, latest.body);
    expect(latest.headers["content-type"]).toBe("application/json");
    expect(latest.headers["x-collector-key"]).toBe("k=1");
    expect(attrs(latest.body.resourceMetrics[0].resource.attributes)).toEqual({
      "service.name": "tandem-gateway",
      "tandem.region": "local",
      "deployment.environment.name": "main",
    });
    const metrics: any[] = latest.body.resourceMetrics[0].scopeMetrics[0].metrics;
    const calls = metrics.find((m) => m.name === "tandem_function_calls_total");
    expect(calls.sum).toMatchObject({ aggregationTemporality: 2, isMonotonic: true });
    const boom = calls.sum.dataPoints.find((p: any) => attrs(p.attributes).function === "boom");
    expect(attrs(boom.attributes)).toEqual({ app: "edgemetrics", function: "boom", tier: "edge" });
    expect(boom.asDouble).toBe(1);
    const errors = metrics.find((m) => m.name === "tandem_function_errors_total");
    expect(errors.sum.dataPoints.map((p: any) => attrs(p.attributes))).toContainEqual({
      app: "edgemetrics",
      function: "flaky",
      tier: "edge",
      code: "function_failed",
    });
    const run = metrics.find((m) => m.name === "tandem_function_run_seconds");
    expect(run.unit).toBe("s");
    const point = run.histogram.dataPoints.find((p: any) => attrs(p.attributes).function === "square");
    expect(point.bucketCounts).toHaveLength(point.explicitBounds.length + 1);
    const runs = metrics.find((m) => m.name === "tandem_schedule_runs_total");
    expect(runs.sum.dataPoints.map((p: any) => [attrs(p.attributes), p.asDouble])).toContainEqual([
      { app: "edgemetrics", function: "nightly", status: "succeeded" },
      1,
    ]);
    // The agents' series too, as the scrape has them, the alerted close codes at 0 from the start.
    const closes = metrics.find((m) => m.name === "tandem_agent_socket_closes_total");
    expect(closes?.sum.dataPoints.map((p: any) => attrs(p.attributes))).toContainEqual({ app: "edgemetrics", agent: "echo", code: "1011" });
    expect(metrics.find((m) => m.name === "tandem_agent_sockets")?.gauge.dataPoints.map((p: any) => attrs(p.attributes))).toEqual([
      { app: "edgemetrics", agent: "echo" },
    ]);
    const nextRun = metrics.find((m) => m.name === "tandem_schedule_next_run_timestamp_seconds");
    expect(nextRun.gauge.dataPoints.length).toBe(2);
    expect(point.bucketCounts.reduce((sum: number, n: string) => sum + Number(n), 0)).toBe(Number(point.count));
    expect(Number(point.count)).toBeGreaterThanOrEqual(4);
    // Cumulative: one start for every point, before the time of the point.
    expect(BigInt(point.startTimeUnixNano)).toBeLessThan(BigInt(point.timeUnixNano));
    // Sent again every interval (1 s here).
    const sent = collector.received.filter((r) => r.path === "/v1/metrics").length;
    await eventually(() => collector.received.filter((r) => r.path === "/v1/metrics").length > sent, 5_000);
  });
});
