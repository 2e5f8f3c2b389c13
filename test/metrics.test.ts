/**
 * A plane's metrics and OTLP export, with real workerd and Docker: a Prometheus scrape after real calls, read by
 * `parse-prometheus-text-format`, carries every series docs/observability.md lists, with values the calls explain;
 * who may scrape; the OTLP/HTTP JSON a collector on loopback receives, checked against OpenTelemetry's protobuf
 * schema (`@opentelemetry/otlp-transformer`'s generated root) and carrying each line's app, function, call and
 * container; a collector that fails is counted and told once.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lookup } from "../sdk/index.js";
import { ROOT, startServe } from "./helpers/cli.js";
import { authed, eventually } from "./helpers/gateway.js";
import { freePort } from "./helpers/ports.js";
import { LogsRequest, MetricsRequest, attrs, checkAgainstSchema, startCollector, type Received, type TestCollector } from "./helpers/otlp.js";
import { documentedSeries, histogram, parsePrometheus, quantile, sampleValue } from "./helpers/prometheus.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/metrics-app.ts", import.meta.url).pathname;
const DOCS = new URL("../docs/observability.md", import.meta.url).pathname;
const METRICS_TOKEN = "metrics-token-for-tests-0123";

let collector: TestCollector;
let stack: TestStack;
const fn = <A extends unknown[] = any[], R = any>(name: string) => lookup<A, R>("metrics", name, { gateway: stack.url });

beforeAll(async () => {
  collector = await startCollector();
  stack = await startTestStack(
    APP,
    {
      gpus: "T4:1",
      metricsToken: METRICS_TOKEN,
      metricsListen: { host: "127.0.0.1", port: 0 },
      otlp: { endpoint: collector.url, headers: { "x-collector-key": "k=1" }, logsFlushMs: 100, metricsIntervalMs: 300 },
    },
    { bindings: { TANDEM_OTLP_ENDPOINT: collector.url, TANDEM_OTLP_HEADERS: "x-collector-key=k%3D1" } },
  );
}, 180_000);
afterAll(async () => {
  await stack?.dispose();
  collector?.close();
});

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
const scrape = async () => {
  const res = await fetch(stack.planes[0]!.metricsUrl!, bearer(METRICS_TOKEN));
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
};

describe("Prometheus /metrics", () => {
  let text: string;
  const callIds: string[] = [];

  beforeAll(async () => {
    const work = fn<[number], number>("work");
    for (const ms of [50, 120, 200]) {
      const call = await work.spawn(ms);
      callIds.push(call.id);
      expect(await call.get()).toBe(ms);
    }
    // A stream of a function that is not a generator: the caller's mistake, known once it ran.
    const notStreamed = await fetch(
      `${stack.url}/v1/apps/metrics/functions/plain/stream`,
      authed({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ args: [10] }) }),
    );
    expect(((await notStreamed.json()) as { error: { code: string } }).error.code).toBe("invalid_request");
    await expect(fn("boom").remote()).rejects.toThrow(/boom on purpose/);
    expect(await fn("flaky").remote()).toBe(2);
    expect(await fn("onGpu").remote()).toBe("0");
    text = await scrape();
  }, 120_000);

  it("parses, and carries every series the docs list", async () => {
    const families = parsePrometheus(text);
    const names = new Set(families.map((f) => f.name));
    const documented = documentedSeries(await readFile(DOCS, "utf8"), "## Metrics"); // a plane's: the first table
    expect(documented.length).toBeGreaterThan(20);
    // A histogram family is named without its _bucket/_sum/_count suffixes, as the docs list it.
    expect(documented.filter((name) => !names.has(name))).toEqual([]);
    for (const f of families.filter((f) => f.name.startsWith("tandem_function_") || f.name.startsWith("tandem_host_"))) {
      expect(documented, `${f.name} is served but not documented`).toContain(f.name);
    }
    expect(families.find((f) => f.name === "tandem_function_run_seconds")?.type).toBe("HISTOGRAM");
    expect(families.find((f) => f.name === "tandem_function_calls_total")?.type).toBe("COUNTER");
  });

  it("counts the calls, errors and retries each function had", () => {
    const families = parsePrometheus(text);
    const of = (name: string, fnName: string, more: Record<string, string> = {}) => sampleValue(families, name, { app: "metrics", function: fnName, ...more });
    expect(of("tandem_function_calls_total", "work")).toBe(3);
    expect(of("tandem_function_errors_total", "work")).toBeUndefined();
    // The stream that found plain no generator: its call, not its error.
    expect(of("tandem_function_calls_total", "plain")).toBe(1);
    expect(of("tandem_function_errors_total", "plain", { code: "invalid_request" })).toBeUndefined();
    expect(of("tandem_function_calls_total", "boom")).toBe(1);
    expect(of("tandem_function_errors_total", "boom", { code: "function_failed" })).toBe(1);
    // flaky's first attempt failed on the plane; the gateway's retry ran there as attempt 2.
    expect(of("tandem_function_calls_total", "flaky")).toBe(2);
    expect(of("tandem_function_retries_total", "flaky")).toBe(1);
    expect(of("tandem_function_errors_total", "flaky", { code: "function_failed" })).toBe(1);
    expect(of("tandem_function_retries_total", "work")).toBe(0);
  });

  it("counts each plane call once at the gateway, by how its caller saw it end (tier=plane), and a plane function's scheduled runs", async () => {
    const gatewayScrape = async () => parsePrometheus(await (await fetch(`${stack.url}/v1/metrics`, authed())).text());
    const of = (families: ReturnType<typeof parsePrometheus>, fnName: string, status: string) =>
      sampleValue(families, "tandem_function_call_outcomes_total", { app: "metrics", function: fnName, tier: "plane", status });
    let families = await gatewayScrape();
    // The ledger writes ended calls in batches, after the answers.
    await eventually(async () => of((families = await gatewayScrape()), "onGpu", "succeeded") === 1, 10_000);
    expect(of(families, "work", "succeeded")).toBe(3);
    expect(of(families, "boom", "failed")).toBe(1);
    // flaky: two attempts and an error on its plane, one call that succeeded here.
    expect(of(families, "flaky", "succeeded")).toBe(1);
    expect(of(families, "flaky", "failed")).toBe(0);
    // The stream of a function that returned no iterable: the caller's mistake, refused, not a failure (as on the dashboard).
    expect(of(families, "plain", "refused")).toBe(1);
    expect(of(families, "plain", "failed")).toBe(0);
    // A plane function's scheduled run is counted by the gateway as an edge one's is: its runs by outcome, its last success.
    const triggered = Date.now();
    expect((await fetch(`${stack.url}/v1/apps/metrics/functions/planeNightly/trigger`, authed({ method: "POST" }))).status).toBe(202);
    const runs = () => sampleValue(families, "tandem_schedule_runs_total", { app: "metrics", function: "planeNightly", status: "succeeded" });
    await eventually(async () => ((families = await gatewayScrape()), runs() === 1), 60_000);
    expect(sampleValue(families, "tandem_schedule_runs_total", { app: "metrics", function: "planeNightly", status: "failed" })).toBe(0);
    expect(
      sampleValue(families, "tandem_schedule_last_success_timestamp_seconds", { app: "metrics", function: "planeNightly" })! * 1000,
    ).toBeGreaterThanOrEqual(triggered - 1);
    expect(of(families, "planeNightly", "succeeded")).toBe(1);
    // Its attempts are its plane's to count: the gateway has no plane function's attempt series.
    const attempts = families.find((f) => f.name === "tandem_function_calls_total")?.metrics ?? [];
    expect(attempts.some((m) => m.labels?.app === "metrics" && m.labels.function !== "edgeSay")).toBe(false);
  }, 90_000);

  it("times the queue, the cold start and the run of each call as histograms a p50/p95/p99 is read from", () => {
    const labels = { app: "metrics", function: "work" };
    const run = histogram(text, "tandem_function_run_seconds", labels)!;
    expect(run.count).toBe(3);
    expect(run.sum).toBeGreaterThanOrEqual(0.37); // 50 + 120 + 200 ms asleep
    expect(run.sum).toBeLessThan(30);
    const p50 = quantile(run.buckets, 0.5);
    expect(p50).toBeGreaterThan(0.05);
    expect(p50).toBeLessThanOrEqual(0.5);
    expect(quantile(run.buckets, 0.99)).toBeGreaterThanOrEqual(p50);
    const cold = histogram(text, "tandem_function_cold_start_seconds", labels)!;
    expect(cold.count).toBe(1); // the first call started the container; the next two found it warm
    expect(cold.sum).toBeGreaterThan(0.05);
    const queue = histogram(text, "tandem_function_queue_wait_seconds", labels)!;
    expect(queue.count).toBe(3);
    expect(queue.sum).toBeGreaterThanOrEqual(0);
    expect(queue.sum).toBeLessThan(cold.sum + 5);
  });

  it("shows warm containers, GPU seconds and cost, and the plane's GPUs, containers, CPU and memory", () => {
    const families = parsePrometheus(text);
    const v = (name: string, labels: Record<string, string> = {}) => sampleValue(families, name, labels);
    expect(v("tandem_function_warm_containers", { app: "metrics", function: "work" })).toBe(1);
    expect(v("tandem_function_running_containers", { app: "metrics", function: "work" })).toBe(0);
    expect(v("tandem_function_prepared_containers", { app: "metrics", function: "work" })).toBe(0); // a series at 0, not none
    expect(v("tandem_function_gpu_seconds_total", { app: "metrics", function: "onGpu", gpu: "T4" })).toBeGreaterThan(0.3);
    expect(v("tandem_function_gpu_seconds_total", { function: "work" })).toBeUndefined();
    expect(v("tandem_function_cost_usd_total", { app: "metrics", function: "onGpu" })).toBeGreaterThan(0);
    expect(v("tandem_function_cost_usd_total", { app: "metrics", function: "work" })).toBeGreaterThan(0);
    // One simulated T4, held by onGpu's warm container.
    expect(v("tandem_plane_gpus", { type: "T4", state: "used", simulated: "true" })).toBe(1);
    expect(v("tandem_plane_gpus", { type: "T4", state: "free", simulated: "true" })).toBe(0);
    expect(v("tandem_plane_info", { plane: stack.planes[0]!.planeId, simulated: "true", runtime: "docker" })).toBe(1);
    expect(v("tandem_plane_containers", { state: "idle" })).toBe(5); // one for each function
    // What an operator alerts on (before: a log line only): the plane's state, and whether its gateway takes its heartbeats.
    expect([
      v("tandem_plane_state", { state: "ready" }),
      v("tandem_plane_state", { state: "draining" }),
      v("tandem_plane_state", { state: "unavailable" }),
    ]).toEqual([1, 0, 0]);
    expect(v("tandem_plane_gateway_reachable")).toBe(1);
    expect(Date.now() / 1000 - v("tandem_plane_last_heartbeat_timestamp_seconds")!).toBeLessThan(60);
    expect(v("tandem_plane_cpu_cores", { state: "reserved" })).toBeGreaterThan(0);
    expect(v("tandem_plane_memory_bytes", { state: "reserved" })).toBeGreaterThanOrEqual(4 * 6 * 1024 * 1024);
    expect(v("tandem_plane_process_resident_memory_bytes")).toBeGreaterThan(10 * 1024 * 1024);
    expect(v("tandem_plane_process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(v("tandem_host_memory_bytes", { state: "total" })).toBeGreaterThan(v("tandem_host_memory_bytes", { state: "free" })!);
    expect(v("tandem_host_cpu_cores")).toBeGreaterThan(0);
    expect(v("tandem_host_cpu_seconds_total", { mode: "user" })).toBeGreaterThan(0);
  });

  it("answers a scrape only with the metrics token, on the API port and on the metrics listener", async () => {
    const plane = stack.planes[0]!;
    const apiMetrics = `${plane.url}/metrics`;
    const refused = await fetch(apiMetrics);
    expect(refused.status).toBe(401);
    expect(refused.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(/TANDEM_METRICS_TOKEN/);
    const wrong = await fetch(apiMetrics, bearer("not-the-token"));
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { message: string } }).error.message).toBe(
      "the bearer token is not this plane's metrics token (TANDEM_METRICS_TOKEN)",
    );
    const right = await fetch(apiMetrics, bearer(METRICS_TOKEN));
    expect(right.status).toBe(200);
    expect(await right.text()).toMatch(/^tandem_function_calls_total\{app="metrics",function="work"\} 3$/m);
    expect((await fetch(plane.metricsUrl!)).status).toBe(401);
    const post = await fetch(plane.metricsUrl!, { method: "POST", ...bearer(METRICS_TOKEN) });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    expect(((await post.json()) as { error: unknown }).error).toEqual({ code: "method_not_allowed", message: "/metrics answers GET and HEAD only, not POST" });
    const other = await fetch(plane.metricsUrl!.replace(/\/metrics$/, "/v1/plane/status"));
    expect(other.status).toBe(404);
  });
});

describe("OTLP export", () => {
  it("sends each line a container prints to <endpoint>/v1/logs as a schema-valid LogRecord carrying its app, function, call and container", async () => {
    const call = await fn<[number], number>("work").spawn(10);
    expect(await call.get()).toBe(10);
    const text = `working 10 ms for ${call.id}`;
    let found: { record: any; request: Received } | undefined;
    await eventually(() => {
      for (const request of collector.received.filter((r) => r.path === "/v1/logs")) {
        for (const record of request.body.resourceLogs?.[0]?.scopeLogs?.[0]?.logRecords ?? []) {
          if (record.body?.stringValue === text) found = { record, request };
        }
      }
      return found !== undefined;
    }, 10_000);
    const { record, request } = found!;
    expect(request.headers["content-type"]).toBe("application/json");
    expect(request.headers["x-collector-key"]).toBe("k=1");
    for (const r of collector.received.filter((r) => r.path === "/v1/logs")) checkAgainstSchema(LogsRequest, r.body);
    const resourceLogs = request.body.resourceLogs[0];
    expect(attrs(resourceLogs.resource.attributes)).toMatchObject({
      "service.name": "tandem-plane",
      "service.instance.id": stack.planes[0]!.planeId,
      "tandem.plane_id": stack.planes[0]!.planeId,
      "tandem.region": "test",
    });
    expect(resourceLogs.scopeLogs[0].scope.name).toBe("tandem");
    const containerId = stack.planes[0]!.status().containers.find((c) => c.function === "work")!.id;
    expect(attrs(record.attributes)).toEqual({
      "tandem.app": "metrics",
      "tandem.function": "work",
      "tandem.call_id": call.id,
      "tandem.container_id": containerId,
      "tandem.tier": "plane",
      "tandem.region": "test",
      "tandem.source": "stdout",
    });
    expect(record.severityNumber).toBe(9);
    expect(record.severityText).toBe("INFO");
    const printedMs = Number(BigInt(record.timeUnixNano) / 1_000_000n);
    expect(Math.abs(Date.now() - printedMs)).toBeLessThan(60_000);
  });

  it("sends a line an edge function prints from the gateway too, as a schema-valid LogRecord of service tandem-gateway", async () => {
    const call = await fn<[string], string>("edgeSay").spawn("hello");
    expect(await call.get()).toBe("hello");
    let found: { record: any; request: Received } | undefined;
    await eventually(() => {
      for (const request of collector.received.filter((r) => r.path === "/v1/logs")) {
        for (const record of request.body.resourceLogs?.[0]?.scopeLogs?.[0]?.logRecords ?? []) {
          if (record.body?.stringValue === "edge says hello") found = { record, request };
        }
      }
      return found !== undefined;
    }, 10_000);
    const { record, request } = found!;
    checkAgainstSchema(LogsRequest, request.body);
    expect(request.headers["x-collector-key"]).toBe("k=1");
    // Sent by the gateway itself: not passed through a local Worker of miniflare's, which adds a header naming a made-up zone.
    expect(request.headers["cf-worker"]).toBeUndefined();
    expect(attrs(request.body.resourceLogs[0].resource.attributes)).toEqual({
      "service.name": "tandem-gateway",
      "tandem.region": "local",
      "deployment.environment.name": "main",
    });
    expect(attrs(record.attributes)).toEqual({
      "tandem.app": "metrics",
      "tandem.function": "edgeSay",
      "tandem.call_id": call.id,
      "tandem.tier": "edge",
      "tandem.region": "local",
      "tandem.source": "stdout",
    });
    // The gateway sends edge lines only: a plane's lines come from the plane, once.
    const fromGateway = collector.received.filter(
      (r) => r.path === "/v1/logs" && attrs(r.body.resourceLogs[0].resource.attributes)["service.name"] === "tandem-gateway",
    );
    const tiers = fromGateway.flatMap((r) => r.body.resourceLogs[0].scopeLogs[0].logRecords.map((l: any) => attrs(l.attributes)["tandem.tier"]));
    expect(new Set(tiers)).toEqual(new Set(["edge"]));
  });

  it("sends the plane's series to <endpoint>/v1/metrics as a schema-valid ExportMetricsServiceRequest", async () => {
    let latest: Received | undefined;
    await eventually(() => {
      latest = collector.received.filter((r) => r.path === "/v1/metrics").at(-1);
      const metrics: any[] = latest?.body.resourceMetrics[0].scopeMetrics[0].metrics ?? [];
      // Counting the call the test above made too.
      return metrics.some(
        (m) => m.name === "tandem_function_calls_total" && m.sum.dataPoints.some((p: any) => attrs(p.attributes).function === "work" && p.asDouble >= 4),
      );
    }, 10_000);
    checkAgainstSchema(MetricsRequest, latest!.body);
    expect(attrs(latest!.body.resourceMetrics[0].resource.attributes)["service.name"]).toBe("tandem-plane");
    const metrics: any[] = latest!.body.resourceMetrics[0].scopeMetrics[0].metrics;
    const calls = metrics.find((m) => m.name === "tandem_function_calls_total");
    expect(calls.sum).toMatchObject({ aggregationTemporality: 2, isMonotonic: true });
    const workCalls = calls.sum.dataPoints.find((p: any) => attrs(p.attributes).function === "work");
    expect(attrs(workCalls.attributes)).toEqual({ app: "metrics", function: "work" });
    expect(workCalls.asDouble).toBeGreaterThanOrEqual(4);
    const run = metrics.find((m) => m.name === "tandem_function_run_seconds");
    expect(run.unit).toBe("s");
    const point = run.histogram.dataPoints.find((p: any) => attrs(p.attributes).function === "work");
    expect(point.bucketCounts).toHaveLength(point.explicitBounds.length + 1);
    expect(point.bucketCounts.reduce((sum: number, n: string) => sum + Number(n), 0)).toBe(Number(point.count));
    expect(Number(point.count)).toBeGreaterThanOrEqual(4);
    const gpus = metrics.find((m) => m.name === "tandem_plane_gpus");
    expect(gpus.gauge.dataPoints.map((p: any) => attrs(p.attributes))).toContainEqual({ type: "T4", state: "used", simulated: "true" });
  });

  it("counts failed sends, says so once while the collector is down, and sends again once it is back", async () => {
    const plane = stack.planes[0]!;
    const failures = async () =>
      (sampleValue(parsePrometheus(await scrape()), "tandem_plane_otlp_export_failures_total", { signal: "metrics" }) ?? 0) +
      (sampleValue(parsePrometheus(await scrape()), "tandem_plane_otlp_export_failures_total", { signal: "logs" }) ?? 0);
    const before = await failures();
    const said = () => stack.planeOutput.filter((l) => l.includes("could not send its metrics to the OTLP endpoint")).length;
    collector.failing = true;
    try {
      await eventually(() => collector.refused >= 4, 10_000); // several metrics sends, each every 300 ms
      expect(await failures()).toBeGreaterThanOrEqual(before + 4);
      expect(said()).toBe(1);
      expect(stack.planeOutput.find((l) => l.includes("could not send its metrics"))).toMatch(
        new RegExp(`plane ${plane.planeId} could not send its metrics to the OTLP endpoint ${collector.url} \\(HTTP 503: collector down\\)`),
      );
    } finally {
      collector.failing = false;
    }
    await eventually(() => stack.planeOutput.some((l) => l.includes(`plane ${plane.planeId} is sending its metrics to ${collector.url} again`)), 10_000);
  });
});

// Last: a second plane registered with the gateway could be handed the calls of the tests above.
describe("a plane without a metrics token", () => {
  it("answers the metrics listener to anyone on loopback when no token is set, and the API port to no one", async () => {
    const open = await stack.addPlane({ metricsToken: undefined, metricsListen: { host: "127.0.0.1", port: 0 }, otlp: undefined });
    expect(open.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const res = await fetch(open.metricsUrl!);
    expect(res.status).toBe(200);
    expect(sampleValue(parsePrometheus(await res.text()), "tandem_plane_info", { plane: open.planeId })).toBe(1);
    const api = await fetch(`${open.url}/metrics`, bearer("anything"));
    expect(api.status).toBe(401);
    expect(((await api.json()) as { error: { message: string } }).error.message).toMatch(/need a token: start the plane with TANDEM_METRICS_TOKEN/);
    await open.close();
    stack.planes.splice(stack.planes.indexOf(open), 1);
  });

  it("serves tandem serve's local plane's metrics on --metrics-port, and prints where", async () => {
    const port = await freePort();
    // Its own folder: a serve from the repository's root would share its local plane's folder with cli.test.ts's.
    const dir = await mkdtemp(join(tmpdir(), "tandem-metrics-port-"));
    const fixture = join(ROOT, "test/fixtures/edge-app.ts");
    const served = await startServe([fixture, "--no-watch", "--runtime", "process", "--metrics-port", String(port)], dir, {
      TANDEM_METRICS_TOKEN: "",
    });
    try {
      await served.waitFor(`metrics at http://127.0.0.1:${port}/metrics`);
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      expect(parsePrometheus(await res.text()).some((family) => family.name === "tandem_plane_info")).toBe(true);
    } finally {
      await served.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
