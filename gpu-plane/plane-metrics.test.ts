/**
 * A plane's scraped usage series: each function's total written as its value, whatever float noise the sum of its
 * ledger's rows (one per GPU type, per container) would print.
 */
import { describe, expect, it } from "vitest";
import type { UsageRow } from "../sdk/protocol.js";
import { planeMetricsWith } from "../test/helpers/plane-metrics.js";

const row = (fn: string, gpu: string | null, seconds: number, costUsd: number): UsageRow => ({
  app: "shop",
  function: fn,
  gpu,
  containers: 1,
  seconds,
  costUsd,
});

describe("a plane's usage series", () => {
  it("writes each function's cost and GPU seconds as their sums' values, not 0.30000000000000004", async () => {
    const usage = [row("embed", "T4", 0.1, 0.1), row("embed", "T4", 0.2, 0.2), row("embed", null, 1, 0.00011969082999999999), row("rank", "A100:2", 0.7, 0.1)];
    const metrics = planeMetricsWith({ usage: () => usage });
    const lines = (await metrics.text()).split("\n");
    expect(lines).toContain('tandem_function_cost_usd_total{app="shop",function="embed"} 0.30011969083');
    expect(lines).toContain('tandem_function_cost_usd_total{app="shop",function="rank"} 0.1');
    expect(lines).toContain('tandem_function_gpu_seconds_total{app="shop",function="embed",gpu="T4"} 0.3');
    expect(lines).toContain('tandem_function_gpu_seconds_total{app="shop",function="rank",gpu="A100"} 1.4');
  });
});
