/**
 * Prepared containers with real Docker (gVisor where the engine has it): once a function has started cold twice,
 * the plane keeps a container of it started, ready and paused in the engine; the next cold start resumes that one,
 * which has run no input (a class's enter() ran as it was prepared); the time it was kept shows in usage, not
 * billed; and the plane leaves none behind when it stops, a class's exit() hooks run.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lookup } from "../sdk/index.js";
import type { UsageAnswer } from "../sdk/protocol.js";
import { authed, eventually } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/prepared-app.ts", import.meta.url).pathname;
/** Whether the engine has the container paused. */
const paused = async (runtimeId: string) => (await promisify(execFile)("docker", ["inspect", "-f", "{{.State.Paused}}", runtimeId])).stdout.trim() === "true";
let stack: TestStack;
const METRICS_TOKEN = "metrics-token-for-prepared-tests";

type Ran = { container: string; runs: number; enteredAt?: number };
const which = () => lookup<[], Ran>("prepared", "which", { gateway: stack.url });
const ask = () => lookup<[Record<string, never>], Ran>("prepared", "Loaded.ask", { gateway: stack.url });

beforeAll(async () => {
  stack = await startTestStack(APP, { metricsToken: METRICS_TOKEN });
}, 120_000);
afterAll(async () => {
  await stack?.dispose();
});

/** Calls `call` on a cold container: waits first for the plane to have none of `fn`'s running. */
async function cold(fn: string, call: () => Promise<Ran>): Promise<Ran> {
  await eventually(() => !stack.planes[0]!.status().containers.some((c) => c.function === fn), 30_000);
  return call();
}

/** The one prepared container of `fn`, once it is kept. */
async function preparedOf(fn: string) {
  await eventually(() => stack.planes[0]!.status().prepared.some((p) => p.function === fn), 60_000);
  const kept = stack.planes[0]!.status().prepared.filter((p) => p.function === fn);
  expect(kept).toHaveLength(1);
  await eventually(() => paused(kept[0]!.runtimeId), 10_000);
  return kept[0]!;
}

describe("prepared containers", () => {
  it("are kept paused after a function's second cold start, and the next cold start resumes one that has run nothing", async () => {
    const first = await cold("which", () => which().remote());
    const second = await cold("which", () => which().remote());
    expect([first.runs, second.runs]).toEqual([1, 1]);
    const kept = await preparedOf("which");
    expect(kept).toMatchObject({ app: "prepared", function: "which" });
    // It runs nothing: it is not among the plane's containers (the second call's may still be, until its scaledown
    // window ends, when the prepared one was ready and paused sooner than that).
    expect(stack.planes[0]!.status().containers.map((c) => c.id)).not.toContain(kept.id);
    const scrape = await (await fetch(`${stack.planes[0]!.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
    expect(scrape).toMatch(/^tandem_function_prepared_containers\{app="prepared",function="which"\} 1$/m);

    const third = await cold("which", () => which().remote());
    expect(third).toEqual({ container: kept.id, runs: 1 });
    expect(await paused(kept.runtimeId)).toBe(false);
    expect(stack.planeOutput.some((l) => l.startsWith(`[plane] cold start: prepared.which ${kept.id} resumed in `))).toBe(true);
    expect(stack.planes[0]!.status().functions.find((f) => f.function === "which")?.coldStarts).toBe(3);
  });

  it("run a class's enter() as they are prepared, not when a cold start takes one", async () => {
    await cold("Loaded", () => ask().remote({}));
    await cold("Loaded", () => ask().remote({}));
    const kept = await preparedOf("Loaded");
    expect(stack.planeOutput.some((l) => l.endsWith(`loaded enter in ${kept.id}`))).toBe(true);
    const calledAt = Date.now();
    const answer = await cold("Loaded", () => ask().remote({}));
    expect(answer).toMatchObject({ container: kept.id, runs: 1 });
    expect(answer.enteredAt).toBeLessThan(calledAt);
  });

  it("show the time they were kept in usage, apart from the billed seconds", async () => {
    const usage = (await (await fetch(`${stack.url}/v1/usage?app=prepared`, authed())).json()) as UsageAnswer;
    const row = usage.rows.find((r) => r.function === "which")!;
    expect(row.preparedSeconds).toBeGreaterThan(0);
    expect(row.containers).toBeGreaterThanOrEqual(3);
    expect(usage.totalSeconds).toBeCloseTo(
      usage.rows.reduce((sum, r) => sum + r.seconds, 0),
      3,
    ); // each to the millisecond
  });

  it("are stopped with the plane, a class's exit() hooks run, and none is left in the engine", async () => {
    await eventually(() => stack.planes[0]!.status().prepared.length === 2, 60_000); // both functions, prepared again
    const kept = stack.planes[0]!.status().prepared.find((p) => p.function === "Loaded")!;
    const planeId = stack.planes[0]!.planeId;
    await stack.planes[0]!.close();
    expect(stack.planeOutput.some((l) => l.endsWith(`loaded exit in ${kept.id}`))).toBe(true);
    expect((await promisify(execFile)("docker", ["ps", "-aq", "--filter", `label=tandem.plane=${planeId}`])).stdout.trim()).toBe("");
  });
});
