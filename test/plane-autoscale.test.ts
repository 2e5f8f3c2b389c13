/**
 * The plane's autoscaler with real Docker: warm minimums kept with no
 * traffic, bursts capped at maxContainers, scale-down back to the minimum,
 * several inputs per container, and `tandem app stop`; the planes' heartbeats
 * carry their warm containers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lookup } from "../sdk/index.js";
import { runCli } from "./helpers/cli.js";
import type { PlaneInfo } from "../sdk/protocol.js";
import { authed, eventually } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/scale-app.ts", import.meta.url).pathname;
let stack: TestStack;
const containersOf = (fn: string) => stack.planes[0]!.status().containers.filter((c) => c.app === "scale" && c.function === fn);

beforeAll(async () => {
  stack = await startTestStack(APP, { gpus: "T4:1" });
});
afterAll(async () => {
  await stack?.dispose();
});

describe("the autoscaler", () => {
  it("keeps minContainers warm with no traffic", async () => {
    await eventually(() => containersOf("burst").length === 1, 20_000);
    await new Promise((r) => setTimeout(r, 3_000)); // longer than its scale-down window
    expect(containersOf("burst").length).toBe(1);
    expect(stack.planeOutput.some((l) => /keeping scale\.burst ctr-[0-9a-f]{8} warm \(minContainers 1\)/.test(l))).toBe(true);
    // One short of what it asks for, for want of room: said once, not at every heartbeat (it was said never).
    await eventually(() => containersOf("warmT4s").length === 1, 20_000);
    await new Promise((r) => setTimeout(r, 7_000)); // two heartbeats more
    expect(containersOf("warmT4s").length).toBe(1);
    expect(stack.planeOutput.filter((l) => l.includes("scale.warmT4s keeps"))).toEqual([
      "[plane] scale.warmT4s keeps 1 of its minContainers 2 warm: this plane has no room for another (T4); it starts one when room frees",
    ]);
    // The plane's heartbeats say so (the dashboard's "warm now" sums them).
    await expect
      .poll(async () => ((await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: PlaneInfo[] }).planes[0]?.warm, { timeout: 10_000 })
      .toContainEqual({ app: "scale", function: "burst", busy: 0, idle: 1 });
  });

  it("raises the count for a burst up to maxContainers and no further, then falls back to minContainers", async () => {
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, containersOf("burst").length)), 20);
    const burst = lookup<[number], string>("scale", "burst", { gateway: stack.url });
    const results = await Promise.all(Array.from({ length: 9 }, () => burst.remote(700)));
    clearInterval(sampler);
    expect(peak).toBe(3);
    expect(new Set(results).size).toBe(3);
    await eventually(() => containersOf("burst").length === 1, 15_000);
  });

  it("gives one container several inputs at once with concurrency.maxInputs", async () => {
    let most = 0;
    const sampler = setInterval(() => (most = Math.max(most, ...containersOf("shared").map((c) => c.inputs), 0)), 20);
    const shared = lookup<[number], string>("scale", "shared", { gateway: stack.url });
    const results = await Promise.all(Array.from({ length: 4 }, () => shared.remote(800)));
    clearInterval(sampler);
    expect(new Set(results).size).toBe(1);
    expect(most).toBe(4);
  });

  it("keeps bufferContainers idle and ready beside the busy ones while the function has traffic", async () => {
    // Busy long enough for the buffer container to start beside it on a loaded machine, under gVisor (slower to start):
    // in a full run, with other files' containers starting, 8 s was once not enough.
    const running = lookup<[number], string>("scale", "buffered", { gateway: stack.url }).remote(15_000);
    await eventually(() => {
      const mine = containersOf("buffered");
      return mine.some((c) => c.busy) && mine.some((c) => !c.busy && c.ready);
    }, 15_000);
    expect(containersOf("buffered").length).toBe(2);
    await running;
  });

  it("stops every container of an app with tandem app stop, and keeps its pools cold", async () => {
    await eventually(() => containersOf("burst").length === 1, 20_000);
    // A call under way when its app is stopped is told why its container went, not its runner's exit code.
    const cut = lookup<[number], string>("scale", "burst", { gateway: stack.url })
      .remote(20_000)
      .catch((e: unknown) => e);
    await eventually(() => containersOf("burst").some((c) => c.busy), 15_000);
    const { code, stdout } = await runCli(["app", "stop", "scale", "--gateway", stack.url]);
    expect(code).toBe(0);
    expect(((await cut) as Error).message).toMatch(/^scale\.burst container \S+ was stopped by the plane as app scale was stopped during the call/);
    expect(stdout).toMatch(/stopped [1-9]\d* containers? of app scale/);
    expect(stack.planes[0]!.status().containers.filter((c) => c.app === "scale")).toEqual([]);
    await new Promise((r) => setTimeout(r, 4_000)); // a heartbeat later: not warmed again
    expect(containersOf("burst")).toEqual([]);
  });
});
