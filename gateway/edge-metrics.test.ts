import { describe, expect, it } from "vitest";
import type { FinishedCall } from "./call-ledger-client.js";
import { edgeIncrements, edgeMetricFamilies, type EdgeMetricRow } from "./edge-metrics.js";

const NOW = 1_800_000_000_000;
const row = (over: Partial<FinishedCall>): FinishedCall => ({
  id: "c",
  app: "a",
  function: "f",
  kind: "remote",
  status: "succeeded",
  attempts: 1,
  createdAt: NOW - 100,
  startedAt: NOW - 100,
  finishedAt: NOW - 50,
  ...over,
});
const of = (rows: EdgeMetricRow[], series: string, label = "") => rows.find((r) => r.series === series && r.label === label)?.value;

describe("edgeIncrements", () => {
  it("counts a plane call once by its status, and none of its attempts", () => {
    const rows = edgeIncrements([row({ tier: "plane", attempts: 2, status: "succeeded" })], NOW);
    expect(of(rows, "plane_outcomes", "succeeded")).toBe(1);
    expect(of(rows, "calls")).toBeUndefined();
    expect(of(rows, "outcomes", "succeeded")).toBeUndefined();
  });

  it("counts an edge stream's attempt and outcome without a run time", () => {
    const rows = edgeIncrements([row({ tier: "edge", kind: "stream", status: "failed", error: { code: "function_failed", message: "x" } })], NOW);
    expect(of(rows, "calls")).toBe(1);
    expect(of(rows, "outcomes", "failed")).toBe(1);
    expect(of(rows, "errors", "function_failed")).toBe(1);
    expect(of(rows, "run_count")).toBeUndefined();
  });

  it("counts a call the caller's own request failed (invalid_request) as refused, in either tier, not as failed", () => {
    const refused = { status: "failed", error: { code: "invalid_request", message: "no iterable" } } as const;
    const rows = edgeIncrements([row({ id: "1", tier: "plane", kind: "stream", ...refused }), row({ id: "2", tier: "edge", kind: "stream", ...refused })], NOW);
    expect(of(rows, "plane_outcomes", "refused")).toBe(1);
    expect(of(rows, "plane_outcomes", "failed")).toBeUndefined();
    expect(of(rows, "outcomes", "refused")).toBe(1);
    expect(of(rows, "outcomes", "failed")).toBeUndefined();
    expect(of(rows, "errors", "invalid_request")).toBeUndefined();
  });

  it("counts scheduled runs by status and keeps the latest success, across batches and shards", () => {
    const first = edgeIncrements(
      [
        row({ id: "1", tier: "plane", kind: "scheduled", finishedAt: NOW - 10 }),
        row({ id: "2", tier: "plane", kind: "scheduled", finishedAt: NOW - 30 }),
        row({ id: "3", tier: "plane", kind: "scheduled", status: "timed_out", finishedAt: NOW }),
      ],
      NOW,
    );
    expect(of(first, "scheduled_runs", "succeeded")).toBe(2);
    expect(of(first, "scheduled_runs", "timed_out")).toBe(1);
    expect(of(first, "scheduled_last_success")).toBe(NOW - 10);
    // Another shard's older success does not move it back.
    const older = edgeIncrements([row({ id: "4", tier: "plane", kind: "scheduled", finishedAt: NOW - 5_000 })], NOW);
    const { families } = edgeMetricFamilies([...first, ...older]);
    const last = families.find((f) => f.name === "tandem_schedule_last_success_timestamp_seconds")!;
    expect(last.values).toEqual([{ value: (NOW - 10) / 1000, labels: { app: "a", function: "f" } }]);
    const runs = families.find((f) => f.name === "tandem_schedule_runs_total")!;
    expect(runs.values).toContainEqual({ value: 3, labels: { app: "a", function: "f", status: "succeeded" } });
  });

  it("leaves a row of unknown tier out of the functions' series", () => {
    const rows = edgeIncrements([row({ status: "failed" })], NOW);
    expect(rows).toEqual([]);
  });
});
