import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { LogLine } from "../sdk/protocol.js";
import { planeMetricsWith } from "../test/helpers/plane-metrics.js";
import { OtlpExporter } from "./otlp-exporter.js";

const PLANE = "pl-0123456789abcdef";

/** A collector on a real socket: keeps each request's body by path, or answers 503 while `down`. */
async function fakeCollector(): Promise<{ url: string; bodies: Map<string, any[]>; down: boolean; server: Server }> {
  const state = { url: "", bodies: new Map<string, any[]>(), down: false, server: undefined as unknown as Server };
  state.server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      if (state.down) return void res.writeHead(503).end();
      state.bodies.set(req.url!, [...(state.bodies.get(req.url!) ?? []), JSON.parse(body)]);
      res.writeHead(200).end("{}");
    });
  });
  await new Promise<void>((resolve) => state.server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
  return state;
}

const metricsOf = () => planeMetricsWith({ planeId: PLANE });
const line = (text: string): LogLine => ({
  time: Date.now(),
  app: "shop",
  function: "resize",
  callId: null,
  containerId: "ctr-1",
  tier: "plane",
  region: "local",
  source: "stderr",
  text,
});
/** Waits for `check` to hold, at most `ms`. */
async function eventually(check: () => boolean, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
const records = (bodies: any[] = []) => bodies.flatMap((b) => b.resourceLogs[0].scopeLogs[0].logRecords);

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup) await c();
  cleanup = [];
});

describe("OtlpExporter", () => {
  it("keeps at most its buffer's records while the collector is down, counts the rest dropped, and sends what it kept once it is back", async () => {
    const collector = await fakeCollector();
    collector.down = true;
    const metrics = metricsOf();
    const said: string[] = [];
    const otlp = new OtlpExporter({
      endpoint: collector.url,
      headers: {},
      planeId: PLANE,
      region: "local",
      metrics,
      log: (l) => said.push(l),
      logsFlushMs: 20,
      maxBufferedRecords: 3,
    });
    cleanup.push(async () => {
      await otlp.close();
      collector.server.close();
    });
    const before = await metrics.text();
    expect(before).toMatch(/^tandem_plane_otlp_export_failures_total\{signal="logs"\} 0$/m);
    expect(before).toMatch(/^tandem_plane_otlp_export_failures_total\{signal="metrics"\} 0$/m);
    for (let i = 0; i < 5; i++) otlp.addLog(line(`line ${i}`));
    expect(otlp.buffered).toBe(3);
    await eventually(() => said.length > 0);
    expect(said).toEqual([expect.stringMatching(/could not send its logs to the OTLP endpoint .* \(HTTP 503\); keeping up to 3 records meanwhile/)]);
    const text = await metrics.text();
    expect(text).toMatch(/^tandem_plane_otlp_dropped_log_records_total 2$/m);
    expect(text).toMatch(/^tandem_plane_otlp_export_failures_total\{signal="logs"\} [1-9]/m);
    collector.down = false;
    await eventually(() => otlp.buffered === 0, 5_000);
    expect(records(collector.bodies.get("/v1/logs")).map((r) => r.body.stringValue)).toEqual(["line 0", "line 1", "line 2"]);
    expect(records(collector.bodies.get("/v1/logs"))[0]).toMatchObject({ severityNumber: 13, severityText: "WARN" });
    expect(said.at(-1)).toMatch(/is sending its logs to .* again/);
  });

  it("sends a histogram's cumulative buckets as the counts of each bucket, with the same bounds", async () => {
    const collector = await fakeCollector();
    const metrics = metricsOf();
    const otlp = new OtlpExporter({
      endpoint: collector.url,
      headers: { "x-k": "v" },
      planeId: PLANE,
      region: "local",
      metrics,
      log: () => {},
      metricsIntervalMs: 60_000,
    });
    cleanup.push(async () => void collector.server.close());
    for (const ms of [0.2, 3, 3, 40_000]) metrics.callEnded("shop", "resize", 1, { queueMs: ms, runMs: ms }, undefined);
    await otlp.close(); // sends the metrics once more
    const sent = collector.bodies.get("/v1/metrics")!.at(-1).resourceMetrics[0].scopeMetrics[0].metrics as any[];
    const queue = sent.find((m) => m.name === "tandem_function_queue_wait_seconds").histogram.dataPoints[0];
    expect(queue.explicitBounds[0]).toBe(0.0005);
    expect(queue.bucketCounts).toHaveLength(queue.explicitBounds.length + 1);
    expect(queue.count).toBe("4");
    expect(queue.sum).toBeCloseTo(40.0062, 4);
    // 0.2 ms in the first bucket (≤ 0.5 ms), two 3 ms in (2.5 ms, 5 ms], 40 s in (30 s, 60 s].
    const counts = queue.bucketCounts.map(Number);
    expect(counts[0]).toBe(1);
    expect(counts[queue.explicitBounds.indexOf(0.005)]).toBe(2);
    expect(counts[queue.explicitBounds.indexOf(60)]).toBe(1);
    expect(counts.reduce((a: number, b: number) => a + b, 0)).toBe(4);
    const retries = sent.find((m) => m.name === "tandem_function_retries_total");
    expect(retries.sum.dataPoints).toEqual([
      expect.objectContaining({
        asDouble: 0,
        attributes: [
          { key: "app", value: { stringValue: "shop" } },
          { key: "function", value: { stringValue: "resize" } },
        ],
      }),
    ]);
  });
});
