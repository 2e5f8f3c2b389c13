/**
 * The dispatcher's decisions, fast: containers here are the MemoryDriver's
 * in-process fakes (drivers/memory.ts), with a real Inventory, a real
 * UsageLedger and real control sockets. That a function really runs in a
 * container is proven by test/plane*.test.ts against Docker, not here.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { GpuType } from "../sdk/gpu.js";
import { newCallId, type PlaneFunctionSpec, type PlaneRunRequest, type PlaneRunTimings } from "../sdk/protocol.js";
import type { PlaneLogLine } from "./log-shipper.js";
import { STARTS_IN_TIMEOUT } from "./container-failure.js";
import { Dispatcher } from "./dispatcher.js";
import { MemoryDriver, type MemoryDriverOptions, type MemoryFunction } from "./drivers/memory.js";
import { Inventory, simulatedGpus } from "./inventory.js";
import { OutcomeCache } from "./outcome-cache.js";
import { SnapshotStore } from "./snapshots.js";
import { UsageLedger } from "./usage-ledger.js";

/** The fake driver never reads the bundle. */
const BUNDLE = { path: "/nonexistent/bundle.mjs", nodeModules: undefined };
const BUNDLE_HASH = "b".repeat(64);
const MEMORY_TOTAL_MIB = 4096;

interface Harness {
  dispatcher: Dispatcher;
  driver: MemoryDriver;
  inventory: Inventory;
  usage: UsageLedger;
  /** Every line the plane logged. */
  lines: string[];
  /** Every line for the apps' logs (`onLogLine`). */
  records: PlaneLogLine[];
  /** The call ids of the inputs handed to a container (`onInput`), in order. */
  inputs: string[];
  /** What the dispatcher told its meter as each input ended (`meter.callEnded`), in order. */
  ended: { fn: string; attempt: number; timings: PlaneRunTimings; errorCode: string | undefined }[];
  dir: string;
}

const harnesses: Harness[] = [];

afterEach(async () => {
  for (const h of harnesses.splice(0)) {
    await h.dispatcher.close();
    h.usage.close();
    rmSync(h.dir, { recursive: true, force: true });
  }
});

function harness(
  functions: Record<string, MemoryFunction>,
  options: {
    startup?: MemoryDriverOptions["startup"];
    gpus?: Partial<Record<GpuType, number>>;
    scaledownWindowMs?: number;
    /** Give the dispatcher a snapshot store (the fake driver cannot take snapshots). */
    snapshots?: boolean;
    versionDrainTimeoutMs?: number;
    exitGraceMs?: number;
    /** How long an image takes to build (none: at once). */
    imageBuildMs?: number;
    /** Most prepared containers per function (none unless given), and the window of their demand. */
    prepared?: number;
    preparedWindowMs?: number;
  } = {},
): Harness {
  const dir = mkdtempSync(join(tmpdir(), "tandem-dispatcher-"));
  const driver = new MemoryDriver({ functions, ...(options.startup ? { startup: options.startup } : {}) });
  const inventory = new Inventory(simulatedGpus(options.gpus ?? {}), 8, MEMORY_TOTAL_MIB);
  const usage = new UsageLedger(join(dir, "usage.sqlite"));
  const lines: string[] = [];
  const records: PlaneLogLine[] = [];
  const inputs: string[] = [];
  const ended: Harness["ended"] = [];
  const outcomes = new OutcomeCache<unknown>(); // as the plane's: what ran here
  const dispatcher = new Dispatcher({
    driver,
    inventory,
    usage,
    planeId: "pl-test",
    region: "test",
    stateDir: dir,
    scaledownWindowMs: options.scaledownWindowMs ?? 60_000,
    ...(options.versionDrainTimeoutMs === undefined ? {} : { versionDrainTimeoutMs: options.versionDrainTimeoutMs }),
    ...(options.exitGraceMs === undefined ? {} : { exitGraceMs: options.exitGraceMs }),
    ...(options.prepared === undefined ? {} : { preparedPerFunction: options.prepared }),
    ...(options.preparedWindowMs === undefined ? {} : { preparedWindowMs: options.preparedWindowMs }),
    log: (line) => lines.push(line),
    onLogLine: (line) => records.push(line),
    imageFor: async (hash) => {
      if (options.imageBuildMs) await sleep(options.imageBuildMs);
      return driver.buildImage({ steps: [], force: false }, hash);
    },
    onInput: (req) => {
      inputs.push(req.callId);
      outcomes.ran(req.callId, req.attempt);
    },
    endedHere: (callId) => outcomes.endedHere(callId),
    meter: { callEnded: (_app, fn, attempt, timings, errorCode) => ended.push({ fn, attempt, timings, errorCode }) },
    ...(options.snapshots
      ? { snapshots: new SnapshotStore({ dir: join(dir, "snapshots"), maxCount: 4, maxBytes: 1 << 20, log: (line) => lines.push(line) }) }
      : {}),
  });
  const h = { dispatcher, driver, inventory, usage, lines, records, inputs, ended, dir };
  harnesses.push(h);
  return h;
}

function request(
  fn: string,
  options: {
    args?: unknown[];
    timeoutSeconds?: number;
    clsParams?: Record<string, unknown>;
    spec?: Partial<Omit<PlaneFunctionSpec, "autoscaler">>;
    autoscaler?: Partial<PlaneFunctionSpec["autoscaler"]>;
  } = {},
): PlaneRunRequest {
  return {
    callId: newCallId(),
    app: "app",
    function: fn,
    bundleHash: BUNDLE_HASH,
    ...(options.clsParams ? { clsParams: options.clsParams } : {}),
    attempt: 1,
    timeoutSeconds: options.timeoutSeconds ?? 5,
    args: options.args ?? [],
    spec: {
      gpu: null,
      cpu: 1,
      memory: 256,
      env: {},
      spendCapUsd: null,
      image: null,
      ...options.spec,
      autoscaler: {
        minContainers: 0,
        maxContainers: 4,
        bufferContainers: 0,
        scaledownWindowSeconds: null,
        maxInputs: 1,
        targetInputs: 1,
        ...options.autoscaler,
      },
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check: () => boolean, what: string, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await sleep(10);
  }
}

/** A gate a handler waits at until the test opens it. */
function gate(): { open: () => void; opened: Promise<void> } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

const never = () => new Promise<never>(() => {});

describe("the dispatcher, on fake containers", () => {
  it("starts a snapshot: true function fresh where the runtime cannot take snapshots, and says so once", async () => {
    const h = harness({ double: ([x]) => (x as number) * 2 }, { snapshots: true, scaledownWindowMs: 50 });
    const first = await h.dispatcher.run(request("double", { args: [1], spec: { snapshot: true } }), BUNDLE);
    await until(() => h.dispatcher.containers().length === 0, "the container to scale down");
    const second = await h.dispatcher.run(request("double", { args: [2], spec: { snapshot: true } }), BUNDLE);
    expect([first, second]).toMatchObject([
      { status: "succeeded", result: 2, coldStart: true },
      { status: "succeeded", result: 4, coldStart: true },
    ]);
    expect(h.driver.started.map((c) => c.spec.restoreFrom)).toEqual([undefined, undefined]);
    expect(h.lines.filter((l) => l.includes("asks for memory snapshots, but the memory runtime cannot save a container's memory"))).toEqual([
      "[plane] app.double asks for memory snapshots, but the memory runtime cannot save a container's memory; its containers start fresh",
    ]);
  });

  it("gives an input the container started ahead for it, waiting for it rather than starting another", async () => {
    const h = harness({ double: ([x]) => (x as number) * 2 }, { startup: () => ({ delayMs: 300 }) });
    const req = request("double", { args: [21] });
    h.dispatcher.startAhead(req, BUNDLE);
    await sleep(50); // still starting when the input comes
    const answer = await h.dispatcher.run(req, BUNDLE);
    expect(answer).toMatchObject({ status: "succeeded", result: 42, coldStart: false, containerId: h.driver.started[0]!.spec.id });
    expect(h.driver.started).toHaveLength(1);
  });

  it("starts a container for the input when the one started ahead fails", async () => {
    const h = harness({ double: ([x]) => (x as number) * 2 }, { startup: (_spec, index) => (index === 0 ? { delayMs: 100, exitCode: 1 } : {}) });
    const req = request("double", { args: [4] });
    h.dispatcher.startAhead(req, BUNDLE);
    expect(await h.dispatcher.run(req, BUNDLE)).toMatchObject({ status: "succeeded", result: 8, coldStart: true });
    expect(h.driver.started).toHaveLength(2);
    expect(h.lines.some((l) => l.startsWith("[plane] could not start a container ahead for app.double"))).toBe(true);
  });

  it("reuses the warm container for a second call instead of starting another", async () => {
    const h = harness({ double: ([x]) => (x as number) * 2 });
    const first = await h.dispatcher.run(request("double", { args: [2] }), BUNDLE);
    const second = await h.dispatcher.run(request("double", { args: [5] }), BUNDLE);
    expect(first).toMatchObject({ status: "succeeded", result: 4, coldStart: true });
    expect(second).toMatchObject({ status: "succeeded", result: 10, coldStart: false, containerId: first.containerId });
    expect(h.driver.started).toHaveLength(1);
    expect(h.lines.filter((l) => l.startsWith(`[plane] cold start: app.double ${first.containerId} ready in`))).toHaveLength(1);
    expect(h.driver.started[0]!.spec.env).toMatchObject({ TANDEM_APP: "app", TANDEM_FUNCTION: "double", TANDEM_CONTAINER_ID: first.containerId });
  });

  it("tells its meter each input's cold start, queue wait and run, and the code of each failure", async () => {
    const h = harness(
      { nap: async ([ms]) => void (await sleep(ms as number)), boom: () => Promise.reject(new RangeError("no")) },
      { startup: () => ({ delayMs: 200 }) },
    );
    const one = { autoscaler: { maxContainers: 1 } };
    const [first, second] = await Promise.all([
      h.dispatcher.run(request("nap", { args: [150], ...one }), BUNDLE),
      sleep(20).then(() => h.dispatcher.run(request("nap", { args: [10], ...one }), BUNDLE)),
    ]);
    expect([first.coldStart, second.coldStart]).toEqual([true, false]);
    const [a, b] = h.ended;
    expect(a).toMatchObject({ fn: "nap", attempt: 1, errorCode: undefined });
    expect(a!.timings.coldStartMs).toBeGreaterThanOrEqual(190);
    expect(a!.timings.queueMs).toBeLessThan(100); // its cold start is not counted as queueing
    expect(a!.timings.runMs).toBeGreaterThanOrEqual(145);
    // The second waited for the only container: its start and the first input's run.
    expect(b!.timings.coldStartMs).toBeUndefined();
    expect(b!.timings.queueMs).toBeGreaterThanOrEqual(300);
    expect(b!.timings.runMs).toBeGreaterThanOrEqual(5);
    const failed = await h.dispatcher.run({ ...request("boom"), attempt: 2 }, BUNDLE);
    expect(h.ended[2]).toMatchObject({ fn: "boom", attempt: 2, errorCode: failed.error!.code });
    const tooBig = await h.dispatcher.run(request("nap", { spec: { memory: 2 * MEMORY_TOTAL_MIB } }), BUNDLE);
    expect(h.ended[3]).toMatchObject({ fn: "nap", errorCode: "no_capacity", timings: { queueMs: expect.any(Number) } });
    expect(h.ended[3]!.timings.runMs).toBeUndefined();
    expect(tooBig.error?.code).toBe("no_capacity");
  });

  it("tells the plane of each input as it reaches a container, and of none that never did", async () => {
    const h = harness({ double: ([x]) => (x as number) * 2 }, { gpus: { T4: 1 } });
    const ran = request("double", { args: [2] });
    const tooBig = request("double", { spec: { gpu: [{ type: "H100", count: 1 }] } });
    expect(await h.dispatcher.run(ran, BUNDLE)).toMatchObject({ status: "succeeded" });
    expect(await h.dispatcher.run(tooBig, BUNDLE)).toMatchObject({ status: "failed", error: { code: "no_capacity" } });
    expect(h.inputs).toEqual([ran.callId]);
  });

  it("runs up to maxInputs inputs at once on one container and queues the next", async () => {
    let running = 0;
    let most = 0;
    const h = harness({
      work: async () => {
        most = Math.max(most, ++running);
        await sleep(150);
        running--;
        return "done";
      },
    });
    const autoscaler = { maxContainers: 1, maxInputs: 2, targetInputs: 2 };
    const answers = await Promise.all([1, 2, 3].map(() => h.dispatcher.run(request("work", { autoscaler }), BUNDLE)));
    expect(answers.map((a) => a.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
    expect(new Set(answers.map((a) => a.containerId)).size).toBe(1);
    expect(most).toBe(2);
    expect(h.driver.started).toHaveLength(1);
  });

  it("starts another container once the warm ones reach targetInputs, then fills them up to maxInputs", async () => {
    const hold = gate();
    let running = 0;
    const h = harness({
      work: async () => {
        running++;
        await hold.opened;
        return "done";
      },
    });
    const autoscaler = { maxContainers: 2, maxInputs: 2, targetInputs: 1 };
    const answers = Promise.all([1, 2, 3, 4].map(() => h.dispatcher.run(request("work", { autoscaler }), BUNDLE)));
    await until(() => running === 4, "four inputs to run at once");
    expect(h.driver.started).toHaveLength(2);
    hold.open();
    const done = await answers;
    expect(done.map((a) => a.status)).toEqual(["succeeded", "succeeded", "succeeded", "succeeded"]);
    expect(new Set(done.map((a) => a.containerId)).size).toBe(2);
  });

  it("runs a queued input on the container once it is free, with its whole timeout", async () => {
    const h = harness({ work: () => sleep(300).then(() => "done") });
    const autoscaler = { maxContainers: 1 };
    const first = h.dispatcher.run(request("work", { autoscaler }), BUNDLE);
    await until(() => h.dispatcher.containers().some((c) => c.ready && c.busy), "the first input to run");
    const started = Date.now();
    const second = await h.dispatcher.run(request("work", { autoscaler, timeoutSeconds: 0.5 }), BUNDLE);
    expect(second).toMatchObject({ status: "succeeded", result: "done", coldStart: false, containerId: (await first).containerId });
    expect(Date.now() - started).toBeGreaterThan(500); // waited, then ran 0.3 s: waiting did not use up its 0.5 s
  });

  it("fails a queued input with no_capacity at its deadline while maxContainers are busy", async () => {
    const hold = gate();
    const h = harness({ work: () => hold.opened.then(() => "done") });
    const autoscaler = { maxContainers: 1 };
    const first = h.dispatcher.run(request("work", { autoscaler }), BUNDLE);
    await until(() => h.dispatcher.containers().some((c) => c.ready && c.busy), "the first input to run");
    const started = Date.now();
    const second = await h.dispatcher.run(request("work", { autoscaler, timeoutSeconds: 0.4 }), BUNDLE);
    expect(Date.now() - started).toBeGreaterThanOrEqual(390);
    expect(second.status).toBe("failed");
    expect(second.error).toMatchObject({ code: "no_capacity" });
    expect(second.error!.message).toContain("all 1 of its containers are busy (maxContainers 1, 1 input each)");
    hold.open();
    expect(await first).toMatchObject({ status: "succeeded", result: "done" });
  });

  it("answers an input cancelled while it waits for a busy container as cancelled at once, and never runs it", async () => {
    const hold = gate();
    const h = harness({ work: () => hold.opened.then(() => "done") });
    const autoscaler = { maxContainers: 1 };
    const first = h.dispatcher.run(request("work", { autoscaler }), BUNDLE);
    await until(() => h.dispatcher.containers().some((c) => c.ready && c.busy), "the first input to run");
    const queued = request("work", { autoscaler, timeoutSeconds: 30 });
    const second = h.dispatcher.run(queued, BUNDLE);
    await sleep(50);
    const started = Date.now();
    expect(h.dispatcher.cancel([queued.callId], false)).toEqual([queued.callId]);
    expect(await second).toMatchObject({ status: "failed", error: { code: "call_cancelled" } });
    expect(Date.now() - started).toBeLessThan(500);
    expect(h.lines).toContain(`[plane] cancelling ${queued.callId}, waiting for a container`);
    hold.open();
    expect(await first).toMatchObject({ status: "succeeded", result: "done" });
    expect(h.inputs).not.toContain(queued.callId);
    expect(h.dispatcher.cancel([queued.callId], false)).toEqual([]); // it has left the queue
  });

  it("drops the queued inputs a cancel names before it stops the running ones, so a container a stop frees takes none of them", async () => {
    // A map's cancel names all its inputs on a plane in one request; the running one comes first here.
    const h = harness({ work: (_args, call) => new Promise((resolve) => call.signal.addEventListener("abort", () => resolve("stopped"))) });
    const autoscaler = { maxContainers: 1 };
    const running = request("work", { autoscaler });
    const first = h.dispatcher.run(running, BUNDLE);
    await until(() => h.dispatcher.containers().some((c) => c.ready && c.busy), "the first input to run");
    const queued = [request("work", { autoscaler, timeoutSeconds: 30 }), request("work", { autoscaler, timeoutSeconds: 30 })];
    const waiting = queued.map((q) => h.dispatcher.run(q, BUNDLE));
    await sleep(50);
    const named = [running.callId, ...queued.map((q) => q.callId)];
    expect(h.dispatcher.cancel(named, false).sort()).toEqual([...named].sort());
    for (const answer of [first, ...waiting]) expect(await answer).toMatchObject({ status: "failed", error: { code: "call_cancelled" } });
    expect(h.inputs).toEqual([running.callId]);
  });

  it("answers as cancelled, and never runs, a call whose cancel came before it (a map's input still on its way)", async () => {
    const h = harness({ f: () => "ran" });
    const late = request("f");
    expect(h.dispatcher.cancel([late.callId], false)).toEqual([]); // not here
    expect(h.lines).toContain(`[plane] cancelling ${late.callId} not running or waiting here: none will run if it comes`);
    expect(await h.dispatcher.run(late, BUNDLE)).toMatchObject({ status: "failed", error: { code: "call_cancelled" } });
    expect(h.inputs).toEqual([]);
    expect(await h.dispatcher.run(request("f"), BUNDLE)).toMatchObject({ status: "succeeded", result: "ran" }); // others run
  });

  it("does not call the calls a cancel names that ended here calls to come (a map cancelled once most of its inputs ran)", async () => {
    const h = harness({ f: () => "ran" });
    const done = [request("f"), request("f")];
    for (const r of done) expect(await h.dispatcher.run(r, BUNDLE)).toMatchObject({ status: "succeeded" });
    const late = request("f");
    expect(h.dispatcher.cancel([...done.map((r) => r.callId), late.callId], false)).toEqual([]);
    expect(h.lines.filter((l) => l.includes("not running or waiting here"))).toEqual([
      `[plane] cancelling ${late.callId} not running or waiting here: none will run if it comes`,
    ]);
    expect(await h.dispatcher.run(late, BUNDLE)).toMatchObject({ status: "failed", error: { code: "call_cancelled" } });
  });

  it("stops a container after its scale-down window with no inputs, and records its life", async () => {
    const h = harness({ f: () => "ok" });
    const answer = await h.dispatcher.run(request("f", { autoscaler: { scaledownWindowSeconds: 0.3 } }), BUNDLE);
    const container = h.driver.started[0]!;
    expect(h.inventory.summary().memoryMiB.free).toBe(MEMORY_TOTAL_MIB - 256);
    await until(() => container.exit !== undefined, "the idle container to stop");
    expect(h.lines).toContain(`[plane] app.f ${answer.containerId} idle for 0.3 s; stopping it`);
    expect(container.frames.at(-1)).toEqual({ t: "shutdown" }); // graceful: the runner may run exit() hooks
    expect(h.dispatcher.containers()).toEqual([]);
    expect(h.inventory.summary().memoryMiB.free).toBe(MEMORY_TOTAL_MIB);
    expect(h.usage.summary({ app: "app" })).toMatchObject([{ function: "f", containers: 1 }]);
  });

  it("says in the app's log when it stops an idle container, tagged with the container and its function (a class's: the class)", async () => {
    const h = harness({ f: () => "ok", "Model.generate": () => "text" });
    const autoscaler = { scaledownWindowSeconds: 0.2 };
    const f = await h.dispatcher.run(request("f", { autoscaler }), BUNDLE);
    const model = await h.dispatcher.run(request("Model.generate", { clsParams: {}, autoscaler }), BUNDLE);
    await until(() => h.dispatcher.containers().length === 0, "the idle containers to stop");
    const stopped = h.records.filter((r) => r.text.endsWith("stopping it"));
    expect(stopped).toEqual(
      expect.arrayContaining([
        { app: "app", function: "f", callId: null, containerId: f.containerId, source: "system", text: "idle for 0.2 s; stopping it" },
        { app: "app", function: "Model", callId: null, containerId: model.containerId, source: "system", text: "idle for 0.2 s; stopping it" },
      ]),
    );
    expect(stopped).toHaveLength(2);
  });

  it("uses the plane's scale-down window for a function that sets none", async () => {
    const h = harness({ f: () => "ok" }, { scaledownWindowMs: 200 });
    const answer = await h.dispatcher.run(request("f"), BUNDLE);
    await until(() => h.dispatcher.containers().length === 0, "the idle container to stop");
    expect(h.lines).toContain(`[plane] app.f ${answer.containerId} idle for 0.2 s; stopping it`);
  });

  it("keeps minContainers warm with no calls, and never scales below them", async () => {
    const h = harness({ f: () => sleep(150).then(() => "ok") });
    const warm = request("f", { autoscaler: { minContainers: 1, scaledownWindowSeconds: 0.2 } });
    h.dispatcher.keepWarm([{ app: warm.app, function: warm.function, bundleHash: warm.bundleHash, spec: warm.spec, bundle: async () => BUNDLE }]);
    await until(() => h.lines.some((l) => /^\[plane\] keeping app\.f ctr-[0-9a-f]{8} warm \(minContainers 1\)$/.test(l)), "the warm container");
    const warmId = h.driver.started[0]!.id;
    const [a, b] = await Promise.all([h.dispatcher.run({ ...warm, callId: newCallId() }, BUNDLE), h.dispatcher.run({ ...warm, callId: newCallId() }, BUNDLE)]);
    expect(a).toMatchObject({ status: "succeeded", containerId: warmId, coldStart: false });
    expect(b).toMatchObject({ status: "succeeded", coldStart: true });
    await until(() => h.driver.started.some((c) => c.exit !== undefined), "the extra container to stop");
    await sleep(500); // more windows pass: the last one stays
    expect(h.dispatcher.containers()).toHaveLength(1);
    expect(h.driver.started.filter((c) => c.exit !== undefined)).toHaveLength(1);
    expect(h.lines.filter((l) => l.includes("s; stopping it"))).toHaveLength(1);
  });

  it("rolls over an app: a busy container finishes its call first, new calls start new containers with the values they carry", async () => {
    const busy = gate();
    const h = harness({ f: async ([wait]) => ((wait as boolean) ? busy.opened.then(() => "finished") : "quick") });
    const old = { ...request("f", { args: [true] }), secrets: { API_KEY: "old-value" } };
    const running = h.dispatcher.run(old, BUNDLE);
    await until(() => h.inputs.length === 1, "the first input to reach its container");
    const idle = await h.dispatcher.run({ ...request("f", { args: [false] }), secrets: { API_KEY: "old-value" } }, BUNDLE); // a second container, idle after
    expect(h.dispatcher.rolloverApp("app")).toBe(2);
    expect(h.dispatcher.rolloverApp("other")).toBe(0);
    await until(() => h.driver.started[1]!.exit !== undefined, "the idle container to stop at once");
    expect(h.driver.started[0]!.exit).toBeUndefined(); // mid-call: not killed
    const next = await h.dispatcher.run({ ...request("f", { args: [false] }), secrets: { API_KEY: "new-value" } }, BUNDLE);
    expect(next).toMatchObject({ status: "succeeded", result: "quick", coldStart: true });
    expect(next.containerId).not.toBe(idle.containerId);
    expect(h.driver.started[2]!.spec.env).toMatchObject({ API_KEY: "new-value" });
    busy.open();
    expect(await running).toMatchObject({ status: "succeeded", result: "finished" });
    await until(() => h.driver.started[0]!.exit !== undefined, "the rolled-over container to stop once its call ended");
    expect(h.dispatcher.containers().map((c) => c.id)).toEqual([next.containerId]);
    expect(h.lines.filter((l) => l.endsWith("finished its inputs after a rollover; stopping it"))).toHaveLength(2);
  });

  it("asks a warm pool for its secrets for each container it starts, and replaces its containers at a rollover", async () => {
    const h = harness({ f: () => process.env.NOTHING ?? "ok" });
    const warm = request("f", { autoscaler: { minContainers: 1 } });
    let asked = 0;
    const fetchSecrets = async () => ({ API_KEY: `value-${++asked}` });
    h.dispatcher.keepWarm([{ app: warm.app, function: warm.function, bundleHash: warm.bundleHash, spec: warm.spec, bundle: async () => BUNDLE, fetchSecrets }]);
    await until(() => h.driver.started.length === 1 && h.dispatcher.containers()[0]?.ready === true, "the warm container");
    expect(h.driver.started[0]!.spec.env).toMatchObject({ API_KEY: "value-1" });
    expect(h.dispatcher.rolloverApp("app")).toBe(1);
    await until(() => h.driver.started.length === 2 && h.driver.started[0]!.exit !== undefined, "a new warm container, the old one stopped");
    expect(h.driver.started[1]!.spec.env).toMatchObject({ API_KEY: "value-2" });
    expect(asked).toBe(2);
  });

  it("switches a function to its new version: new inputs start new containers, the old busy one finishes its input, then stops", async () => {
    const busy = gate();
    const h = harness({ f: async ([wait]) => ((wait as boolean) ? busy.opened.then(() => "finished") : "quick") });
    const v1 = request("f");
    const running = h.dispatcher.run({ ...v1, args: [true] }, BUNDLE);
    await until(() => h.inputs.length === 1, "the first input to reach its container");
    const idle = await h.dispatcher.run({ ...v1, callId: newCallId(), args: [false] }, BUNDLE);
    const v2 = { ...request("f", { args: [false] }), bundleHash: "c".repeat(64) };
    const next = await h.dispatcher.run(v2, BUNDLE);
    expect(next).toMatchObject({ status: "succeeded", result: "quick", coldStart: true });
    expect([h.driver.started[0]!.id, idle.containerId]).not.toContain(next.containerId);
    await until(() => h.driver.started[1]!.exit !== undefined, "the old version's idle container to stop");
    expect(h.driver.started[0]!.exit).toBeUndefined(); // mid-call: not stopped
    // An input of the new version while the old one is busy takes the new version's container.
    expect(await h.dispatcher.run({ ...v2, callId: newCallId() }, BUNDLE)).toMatchObject({ containerId: next.containerId, coldStart: false });
    busy.open();
    expect(await running).toMatchObject({ status: "succeeded", result: "finished" });
    await until(() => h.driver.started[0]!.exit !== undefined, "the old version's busy container to stop once its input ended");
    expect(h.dispatcher.containers().map((c) => c.id)).toEqual([next.containerId]);
    expect(h.lines).toContain("[plane] a new version of app.f is live: 2 containers of the old one take no new input and stop once their inputs end");
    expect(h.lines.filter((l) => l.endsWith("finished its inputs after a new version went live; stopping it"))).toHaveLength(2);
  });

  it("keeps the old version's idle warm container until the new version's minContainers are ready", async () => {
    const h = harness({ f: () => "ok" }, { startup: (_spec, index) => (index === 1 ? { delayMs: 400 } : {}) });
    const v1 = request("f", { autoscaler: { minContainers: 1 } });
    const pool = (req: PlaneRunRequest) => ({ app: req.app, function: req.function, bundleHash: req.bundleHash, spec: req.spec, bundle: async () => BUNDLE });
    h.dispatcher.keepWarm([pool(v1)]);
    await until(() => h.dispatcher.containers()[0]?.ready === true, "the old version's warm container");
    const v2 = { ...v1, bundleHash: "c".repeat(64) };
    h.dispatcher.keepWarm([pool(v2)]); // the gateway's next heartbeat assigns the new version
    await until(() => h.driver.started.length === 2, "the new version's warm container to start");
    await sleep(200); // the new one is still starting: the old one stays
    expect(h.driver.started[0]!.exit).toBeUndefined();
    await until(() => h.driver.started[0]!.exit !== undefined, "the old version's warm container to stop once the new one is ready");
    expect(h.dispatcher.containers()).toEqual([expect.objectContaining({ id: h.driver.started[1]!.id, ready: true })]);
    await sleep(200); // the old pool is not filled again
    expect(h.driver.started).toHaveLength(2);
  });

  it("stops an old version's container still busy at the version drain timeout", async () => {
    const h = harness({ f: async ([wait]) => ((wait as boolean) ? never() : "quick") }, { versionDrainTimeoutMs: 300 });
    const stuck = h.dispatcher.run(request("f", { args: [true] }), BUNDLE);
    await until(() => h.inputs.length === 1, "the old version's input to reach its container");
    await h.dispatcher.run({ ...request("f", { args: [false] }), bundleHash: "c".repeat(64) }, BUNDLE);
    const failed = await stuck;
    expect(failed).toMatchObject({ status: "failed", error: { code: "container_failed" } });
    expect(failed.error!.message).toContain("was stopped by the plane as a new version of app.f went live and the version drain timeout (0.3 s) passed");
    expect(h.driver.started[0]!.exit).toBeDefined();
    expect(h.lines.some((l) => /of an old version still runs 1 input\(s\) after the version drain timeout \(0\.3 s\); stopping it$/.test(l))).toBe(true);
  });

  it("stops the old version's containers at once with the recreate strategy, failing their inputs in flight with why", async () => {
    const h = harness({ f: async ([wait]) => ((wait as boolean) ? never() : "quick") });
    const stuck = h.dispatcher.run(request("f", { args: [true] }), BUNDLE);
    await until(() => h.inputs.length === 1, "the old version's input to reach its container");
    const next = await h.dispatcher.run({ ...request("f", { args: [false] }), bundleHash: "c".repeat(64), strategy: "recreate" }, BUNDLE);
    expect(next).toMatchObject({ status: "succeeded", result: "quick" });
    const failed = await stuck;
    expect(failed).toMatchObject({ status: "failed", error: { code: "container_failed" } });
    expect(failed.error!.message).toContain("was stopped by the plane as a new version of app.f went live (strategy recreate)");
    expect(h.lines).toContain("[plane] a new version of app.f is live (strategy recreate): stopping 1 container of the old one now");
  });

  it("stops the old version's containers at once when a heartbeat says a newer version is live, though no input of it came here (recreate)", async () => {
    const h = harness({ f: async ([wait]) => ((wait as boolean) ? never() : "quick"), g: () => "g" });
    h.dispatcher.liveVersions([{ app: "app", bundleHash: BUNDLE_HASH, since: 1_000 }]);
    const stuck = h.dispatcher.run(request("f", { args: [true] }), BUNDLE);
    const idle = await h.dispatcher.run(request("g"), BUNDLE);
    await until(() => h.inputs.length === 2, "the old version's inputs to reach their containers");
    h.dispatcher.liveVersions([{ app: "app", bundleHash: "c".repeat(64), strategy: "recreate", since: 2_000 }]);
    const failed = await stuck;
    expect(failed).toMatchObject({ status: "failed", error: { code: "container_failed" } });
    expect(failed.error!.message).toContain("was stopped by the plane as a new version of app.f went live (strategy recreate)");
    await until(() => h.driver.started.every((c) => c.exit !== undefined), "every container of the old version to stop");
    expect(h.driver.started.map((c) => c.id)).toContain(idle.containerId);
    expect(h.lines).toContain("[plane] a new version of app.f is live (strategy recreate): stopping 1 container of the old one now");
    expect(h.lines).toContain("[plane] a new version of app.g is live (strategy recreate): stopping 1 container of the old one now");
  });

  it("stops the old version's idle container at once when a heartbeat says a newer version is live (rolling), and lets a busy one finish", async () => {
    const busy = gate();
    const h = harness({ f: async ([wait]) => ((wait as boolean) ? busy.opened.then(() => "finished") : "quick") }, { scaledownWindowMs: 600_000 });
    const running = h.dispatcher.run(request("f", { args: [true] }), BUNDLE);
    await until(() => h.inputs.length === 1, "the first input to reach its container");
    const idle = await h.dispatcher.run(request("f", { args: [false] }), BUNDLE);
    h.dispatcher.liveVersions([{ app: "app", bundleHash: "c".repeat(64), since: 2_000 }]);
    await until(() => h.driver.started.find((c) => c.id === idle.containerId)!.exit !== undefined, "the old version's idle container to stop");
    expect(h.driver.started[0]!.exit).toBeUndefined(); // mid-call: not stopped
    busy.open();
    expect(await running).toMatchObject({ status: "succeeded", result: "finished" });
    await until(() => h.dispatcher.containers().length === 0, "the old version's busy container to stop once its input ended");
    expect(h.lines).toContain("[plane] a new version of app.f is live: 2 containers of the old one take no new input and stop once their inputs end");
  });

  it("never switches back to a version told after a newer one, by a heartbeat or by an input (two gateway versions during a rollout)", async () => {
    const h = harness({ f: async ([wait]) => ((wait as boolean) ? never() : "quick") });
    const v1 = request("f", { args: [true] });
    const v2 = { ...request("f", { args: [true] }), bundleHash: "c".repeat(64), strategy: "recreate" as const };
    h.dispatcher.liveVersions([{ app: "app", bundleHash: v1.bundleHash, since: 1_000 }]);
    h.dispatcher.liveVersions([{ app: "app", bundleHash: v2.bundleHash, strategy: "recreate", since: 2_000 }]);
    const onNew = h.dispatcher.run(v2, BUNDLE);
    await until(() => h.inputs.length === 1, "the new version's input to reach its container");
    // The old Worker version answers a heartbeat, then sends an input of its own: the new version's container stays.
    h.dispatcher.liveVersions([{ app: "app", bundleHash: v1.bundleHash, strategy: "recreate", since: 1_000 }]);
    expect(await h.dispatcher.run({ ...v1, args: [false] }, BUNDLE)).toMatchObject({ status: "succeeded", result: "quick" });
    await sleep(100);
    expect(h.driver.started[0]!.exit).toBeUndefined();
    expect(h.lines.filter((l) => l.includes("a new version of app.f is live"))).toEqual([]);
    // A rollback is a later version, though its bundle is an old one: it switches.
    h.dispatcher.liveVersions([{ app: "app", bundleHash: v1.bundleHash, strategy: "recreate", since: 3_000 }]);
    const failed = await onNew;
    expect(failed.error!.message).toContain("was stopped by the plane as a new version of app.f went live (strategy recreate)");
  });

  it("stops an idle container of another function to make room for a new one", async () => {
    const h = harness({ f: () => "f", g: () => "g" }, { gpus: { T4: 1 } });
    const t4 = { spec: { gpu: [{ type: "T4" as const, count: 1 }] } };
    const f = await h.dispatcher.run(request("f", t4), BUNDLE);
    const g = await h.dispatcher.run(request("g", t4), BUNDLE);
    expect(f).toMatchObject({ status: "succeeded", gpu: "T4" });
    expect(g).toMatchObject({ status: "succeeded", gpu: "T4", coldStart: true });
    expect(h.lines).toContain(`[plane] stopping idle app.f ${f.containerId} to make room`);
    expect(h.records).toContainEqual({
      app: "app",
      function: "f",
      callId: null,
      containerId: f.containerId,
      source: "system",
      text: "evicted: stopped while idle to make room for app.g",
    });
    expect(await h.driver.started[0]!.exited).toEqual({ code: 137, oomKilled: false });
    expect(h.dispatcher.containers().map((c) => c.id)).toEqual([g.containerId]);
  });

  it("to make room, lets a class's container run its exit() first, and starts the new one once it has left", async () => {
    let startedBeforeItLeft: boolean | undefined;
    const h = harness(
      { "Model.generate": () => "text", g: () => "g" },
      {
        gpus: { T4: 1 },
        startup: (_spec, index) => {
          if (index === 1) startedBeforeItLeft = h.driver.started[0]!.exit === undefined;
          return index === 0 ? { exitHooksMs: 300 } : {};
        },
      },
    );
    const t4 = { spec: { gpu: [{ type: "T4" as const, count: 1 }] } };
    const model = await h.dispatcher.run(request("Model.generate", { ...t4, clsParams: {} }), BUNDLE);
    const g = await h.dispatcher.run(request("g", t4), BUNDLE);
    expect(g).toMatchObject({ status: "succeeded", gpu: "T4", coldStart: true });
    expect(h.lines).toContain(`[plane] stopping idle app.Model ${model.containerId} to make room`);
    // The container's line, filed under its class as its scale-down's is (before: under Model.generate, its last method).
    expect(h.records).toContainEqual(
      expect.objectContaining({ function: "Model", containerId: model.containerId, text: "evicted: stopped while idle to make room for app.g" }),
    );
    // Before: killed at once (137), its exit() never run, and the new container started beside it on its GPU.
    expect(h.driver.started[0]!.exitHooksRan).toBe(true);
    expect(await h.driver.started[0]!.exited).toEqual({ code: 0, oomKilled: false });
    expect(startedBeforeItLeft).toBe(false);
    expect(h.inventory.summary().gpus.T4).toEqual({ total: 1, free: 0 });
  });

  it("fails an input whose room's idle container is still running its exit() at the input's timeout, saying so", async () => {
    const h = harness(
      { "Model.generate": () => "text", g: () => "g" },
      { gpus: { T4: 1 }, startup: (_spec, index) => (index === 0 ? { exitHooksMs: 3_000 } : {}) },
    );
    const t4 = { spec: { gpu: [{ type: "T4" as const, count: 1 }] } };
    await h.dispatcher.run(request("Model.generate", { ...t4, clsParams: {} }), BUNDLE);
    const asked = Date.now();
    const g = await h.dispatcher.run(request("g", { ...t4, timeoutSeconds: 1 }), BUNDLE);
    // Before: it waited out the other's exit() (3 s here, up to 10), then "timed out after -2 s while container … started".
    expect(Date.now() - asked).toBeLessThan(2_500);
    expect(g).toMatchObject({
      status: "failed",
      error: {
        code: "no_capacity",
        message:
          "no capacity for T4 for app.g on plane pl-test within 1 s: the idle container stopped to make room for it was still running its class's exit()",
      },
    });
    expect(h.driver.started).toHaveLength(1); // none started for it
  });

  it("says so when a class's exit() is cut off at its grace, and kills its container", async () => {
    const h = harness({ "Model.generate": () => "text" }, { startup: () => ({ exitHooksMs: 60_000 }), exitGraceMs: 200 });
    const model = await h.dispatcher.run(request("Model.generate", { clsParams: {} }), BUNDLE);
    expect(await h.dispatcher.stopApp("app")).toBe(1);
    expect(await h.driver.started[0]!.exited).toEqual({ code: 137, oomKilled: false });
    const text = "exit() had not ended after 0.2 s; the container is killed";
    expect(h.lines).toContain(`[plane] app.Model ${model.containerId} ${text}`);
    expect(h.records).toContainEqual(expect.objectContaining({ containerId: model.containerId, source: "system", text }));
  });

  it("to make room, stops an idle container beyond its pool's minContainers before one that keeps a pool warm", async () => {
    const h = harness({ f: () => "f", g: () => "g", k: () => "k" }, { gpus: { T4: 2 } });
    const t4 = { spec: { gpu: [{ type: "T4" as const, count: 1 }] } };
    const warm = request("f", { ...t4, autoscaler: { minContainers: 1 } });
    h.dispatcher.keepWarm([{ app: warm.app, function: warm.function, bundleHash: warm.bundleHash, spec: warm.spec, bundle: async () => BUNDLE }]);
    await until(() => h.lines.some((l) => /^\[plane\] keeping app\.f ctr-[0-9a-f]{8} warm \(minContainers 1\)$/.test(l)), "the warm container");
    const warmId = h.driver.started[0]!.id;
    const g = await h.dispatcher.run(request("g", t4), BUNDLE); // the second T4, idle after
    const k = await h.dispatcher.run(request("k", t4), BUNDLE); // needs one of them
    expect(k).toMatchObject({ status: "succeeded", gpu: "T4", coldStart: true });
    // Before, the oldest idle container went, the warm pool's: app.f then had none warm until a T4 came free.
    expect(h.lines).toContain(`[plane] stopping idle app.g ${g.containerId} to make room`);
    expect(h.dispatcher.containers().map((c) => c.id)).toEqual(expect.arrayContaining([warmId, k.containerId]));
  });

  it("keeps a warm container of a function with GPU choices on the one GPU it took, the others left free", async () => {
    const h = harness({ f: () => "f" }, { gpus: { T4: 1, A100: 1 } });
    const warm = request("f", {
      spec: {
        gpu: [
          { type: "T4", count: 1 },
          { type: "A100", count: 1 },
        ],
      },
      autoscaler: { minContainers: 1 },
    });
    h.dispatcher.keepWarm([{ app: warm.app, function: warm.function, bundleHash: warm.bundleHash, spec: warm.spec, bundle: async () => BUNDLE }]);
    await until(() => h.lines.some((l) => /^\[plane\] keeping app\.f ctr-[0-9a-f]{8} warm/.test(l)), "the warm container");
    // Before: every choice that fitted was reserved and only the first kept, the A100 held by no container for good.
    expect(h.inventory.summary().gpus).toMatchObject({ T4: { total: 1, free: 0 }, A100: { total: 1, free: 1 } });
  });

  it("refills a warm pool a burst emptied from an idle container beyond its own pool's minimum, not after its scale-down window", async () => {
    const h = harness({ f: () => "f", k: () => "k" }, { gpus: { T4: 1 } });
    const t4 = { spec: { gpu: [{ type: "T4" as const, count: 1 }] } };
    const warm = request("f", { ...t4, autoscaler: { minContainers: 1 } });
    const pools = [{ app: warm.app, function: warm.function, bundleHash: warm.bundleHash, spec: warm.spec, bundle: async () => BUNDLE }];
    h.dispatcher.keepWarm(pools);
    await until(() => h.lines.some((l) => /^\[plane\] keeping app\.f ctr-[0-9a-f]{8} warm/.test(l)), "the warm container");
    const k = await h.dispatcher.run(request("k", t4), BUNDLE); // the only T4: the warm one goes for it
    expect(k).toMatchObject({ status: "succeeded", coldStart: true });
    h.dispatcher.keepWarm(pools); // the next heartbeat
    // Before: "app.f keeps 0 of its minContainers 1 warm: this plane has no room for another", until k's window passed.
    await until(() => h.lines.includes(`[plane] stopping idle app.k ${k.containerId} to make room`), "k's container stopped");
    await until(() => h.lines.filter((l) => /^\[plane\] keeping app\.f ctr-[0-9a-f]{8} warm/.test(l)).length === 2, "f warm again");
    // A pool's refill takes no other pool's warm container: two pools on one T4 do not take it from each other.
    const mark = h.lines.length;
    const other = request("g", { ...t4, autoscaler: { minContainers: 1 } });
    h.dispatcher.keepWarm([...pools, { app: other.app, function: other.function, bundleHash: other.bundleHash, spec: other.spec, bundle: async () => BUNDLE }]);
    await until(() => h.lines.some((l) => l.startsWith("[plane] app.g keeps 0 of its minContainers 1 warm")), "g short of room");
    expect(h.lines.slice(mark).filter((l) => l.startsWith("[plane] stopping idle"))).toEqual([]);
  });

  it("fails a class's inputs with its enter() error, and starts no container for it until the backoff passes", async () => {
    const enterFailed = { code: "function_failed", message: "could not load the weights", remote: { name: "Error", message: "could not load the weights" } };
    const h = harness({ "Model.generate": () => "text" }, { startup: (_spec, index) => (index === 0 ? { enterFailed } : {}) });
    const call = () => h.dispatcher.run(request("Model.generate", { clsParams: {} }), BUNDLE);
    const first = await call();
    expect(first).toMatchObject({ status: "failed", error: { code: "function_failed", message: "could not load the weights" } });
    expect(h.lines).toContain("[plane] app.Model: enter() failed (could not load the weights); no new container for 1 s");
    const second = await call();
    // Said to be the last container's, and for how long: before, only "could not load the weights", as if this call's.
    expect(second).toMatchObject({
      status: "failed",
      error: {
        code: "function_failed",
        message: "could not load the weights (the class's enter() failed so 0 s ago; the plane tries a new container in 1 s)",
      },
    });
    expect(h.driver.started).toHaveLength(1); // the same error at once, from no new container
    expect(h.driver.started[0]!.spec.env.TANDEM_CLS_PARAMS).toBe("{}");
    await sleep(1_050);
    expect(await call()).toMatchObject({ status: "succeeded", result: "text", coldStart: true });
    expect(h.driver.started).toHaveLength(2);
  });

  it("answers a call cancelled while its container starts as cancelled, and never sends it the input", async () => {
    const h = harness({ f: () => "ran" }, { startup: () => ({ delayMs: 500 }) });
    const req = request("f");
    const answer = h.dispatcher.run(req, BUNDLE);
    await until(() => h.dispatcher.containers().length === 1, "the container to start");
    expect(h.dispatcher.cancel([req.callId], false)).toEqual([req.callId]);
    expect(await answer).toMatchObject({ status: "failed", error: { code: "call_cancelled" } });
    expect(h.lines).toContain(`[plane] cancelling app.f ${req.callId}`);
    expect(h.driver.started[0]!.frames.filter((f) => f.t === "input")).toEqual([]);
    expect(h.dispatcher.cancel([newCallId()], false)).toEqual([]);
    expect(await h.dispatcher.run(request("f"), BUNDLE)).toMatchObject({ status: "succeeded", result: "ran", coldStart: false }); // the container stays
  });

  it("fails an input whose image is still building at its timeout, saying so, and gives its room back", async () => {
    const h = harness({ f: () => "ran" }, { imageBuildMs: 1_500 });
    const image = { spec: { image: "i".repeat(64) } };
    const started = Date.now();
    const first = await h.dispatcher.run(request("f", { timeoutSeconds: 1, ...image }), BUNDLE);
    // Before: it waited for the whole build, then failed as a container that "did not say it was ready in time".
    expect(Date.now() - started).toBeLessThan(1_400);
    expect(first).toMatchObject({
      status: "timed_out",
      error: {
        code: "function_timeout",
        message:
          "app.f timed out after 1 s while its image was building: the build goes on, and the next container of the function uses its image (the plane's log shows its steps)",
      },
    });
    expect(h.driver.started).toHaveLength(0);
    expect(h.inventory.summary().memoryMiB.free).toBe(MEMORY_TOTAL_MIB); // its room given back
    expect(await h.dispatcher.run(request("f", { timeoutSeconds: 5, ...image }), BUNDLE)).toMatchObject({ status: "succeeded", result: "ran" });
  });

  it("tells the inputs a container ran beside one that timed out why it stopped under them", async () => {
    const h = harness({ f: ([ms]) => sleep(ms as number).then(() => "done") });
    const shared = { autoscaler: { maxContainers: 1, maxInputs: 2, targetInputs: 2 } };
    const late = request("f", { args: [60_000], timeoutSeconds: 1, ...shared });
    const timedOut = h.dispatcher.run(late, BUNDLE);
    await until(() => h.dispatcher.containers().length === 1, "the container");
    const beside = await h.dispatcher.run(request("f", { args: [3_000], timeoutSeconds: 10, ...shared }), BUNDLE);
    expect(await timedOut).toMatchObject({ status: "timed_out" });
    // Before: "was stopped by the plane (SIGKILL)", with nothing of why.
    expect(beside).toMatchObject({
      status: "failed",
      error: {
        code: "container_failed",
        message: expect.stringContaining(`was stopped by the plane as call ${late.callId} ran past its timeout (1 s) during the call`),
      },
    });
  });

  it("holds what a container writes itself (a child process's output) to the runner's lines a second, and says how many it left out", async () => {
    const h = harness({
      f: (_args, call) => {
        for (let i = 0; i < 15_000; i++) call.container.log(`child line ${i}`);
        return "done";
      },
    });
    const answer = await h.dispatcher.run(request("f"), BUNDLE);
    expect(answer).toMatchObject({ status: "succeeded", result: "done" });
    // Before: all 15,000, to the plane's terminal and the app's log, whatever the runner's limit.
    expect(h.lines.filter((l) => l.includes("child line")).length).toBe(10_000);
    const text = "5000 lines dropped: more than 10000 lines a second";
    await until(() => h.lines.includes(`[plane] app.f ${answer.containerId}: ${text}`), "the dropped lines' notice", 3_000);
    expect(h.records).toContainEqual(expect.objectContaining({ app: "app", function: "f", containerId: answer.containerId, source: "system", text }));
  });

  it("ends a call whose container crashes with ContainerFailedError (reason crashed) and its log tail", async () => {
    const h = harness({
      f: (_args, call) => {
        call.container.log("loading the weights");
        call.container.log("segfault in the extension", "stderr");
        call.container.crash(3);
        return never();
      },
    });
    const req = request("f");
    const answer = await h.dispatcher.run(req, BUNDLE);
    expect(answer.status).toBe("failed");
    expect(answer.error).toMatchObject({
      code: "container_failed",
      details: { reason: "crashed", exitCode: 3, containerId: answer.containerId, logTail: ["loading the weights", "segfault in the extension"] },
    });
    expect(answer.error!.message).toBe(
      `app.f container ${answer.containerId} crashed with exit code 3 during the call; last log lines:\nloading the weights\nsegfault in the extension`,
    );
    expect(h.lines).toContain(`[app.f ${req.callId} ${answer.containerId}] (stderr) segfault in the extension`);
    expect(h.dispatcher.containers()).toEqual([]);
    expect(h.inventory.summary().memoryMiB.free).toBe(MEMORY_TOTAL_MIB);
  });

  it("masks a container's secret values in the lines of its own output: the plane's log, the app's log and a crash's log tail", async () => {
    const h = harness({
      f: (_args, call) => {
        call.container.log("child says k-secret-1");
        call.container.log("fd 2 says k-secret-1", "stderr");
        call.container.log("mode plain"); // its env option's value, which a secret may repeat: not a secret
        call.container.crash(3);
        return never();
      },
    });
    const req = { ...request("f", { spec: { env: { MODE: "plain" } } }), secrets: { API_KEY: "k-secret-1", MODE: "plain" } };
    const answer = await h.dispatcher.run(req, BUNDLE);
    expect(answer.error).toMatchObject({ code: "container_failed", details: { logTail: ["child says ***", "fd 2 says ***", "mode plain"] } });
    expect(answer.error!.message).toContain("last log lines:\nchild says ***\nfd 2 says ***\nmode plain");
    expect(h.lines).toContain(`[app.f ${req.callId} ${answer.containerId}] (stderr) fd 2 says ***`);
    expect(h.records.filter((r) => r.source !== "system").map((r) => r.text)).toEqual(["child says ***", "fd 2 says ***", "mode plain"]);
    expect(JSON.stringify([h.lines, h.records, answer])).not.toContain("k-secret-1");
  });

  it("says a container the plane stopped mid-call (the plane shutting down) was stopped by the plane, not that it crashed", async () => {
    const h = harness({ f: () => never() });
    const running = h.dispatcher.run(request("f"), BUNDLE);
    await vi.waitFor(() => expect(h.dispatcher.containers()).toHaveLength(1));
    await h.dispatcher.close();
    const answer = await running;
    expect(answer.error).toMatchObject({ code: "container_failed", details: { reason: "killed" } });
    expect(answer.error!.message).toMatch(new RegExp(`^app\\.f container ${answer.containerId} was stopped by the plane .*during the call`));
  });

  it("says a container stopped by cancel({ terminateContainer }) was stopped as that call was cancelled, with no other call's last lines", async () => {
    const h = harness({
      f: async ([wait], call) => {
        if (!wait) return call.container.log("aborted at 30"); // an earlier call's line, still in the container's tail
        return never();
      },
    });
    const earlier = await h.dispatcher.run(request("f", { args: [false] }), BUNDLE);
    const req = request("f", { args: [true] });
    const running = h.dispatcher.run(req, BUNDLE);
    await until(() => h.inputs.includes(req.callId), "the call to reach its container");
    expect(h.dispatcher.cancel([req.callId], true)).toEqual([req.callId]);
    const answer = await running;
    expect(answer.containerId).toBe(earlier.containerId);
    const said = `app.f container ${answer.containerId} was stopped by the plane as call ${req.callId} was cancelled (terminateContainer) during the call`;
    expect(answer.error).toEqual({ code: "container_failed", message: said, details: expect.objectContaining({ reason: "killed", logTail: [] }) });
    expect(h.records.filter((r) => r.callId === req.callId && r.source === "system").map((r) => r.text)).toEqual([said]);
  });

  it("ends a call whose container crashes while starting with ContainerFailedError, saying so", async () => {
    const h = harness({ f: () => "ok" }, { startup: () => ({ logs: ["Error: Cannot find module 'sharp'"], exitCode: 1 }) });
    const answer = await h.dispatcher.run(request("f"), BUNDLE);
    expect(answer.error).toMatchObject({
      code: "container_failed",
      details: { reason: "crashed", exitCode: 1, logTail: ["Error: Cannot find module 'sharp'"] },
    });
    expect(answer.error!.message).toContain("crashed with exit code 1 while starting");
  });

  it("ends a call whose container never says it is ready with FunctionTimeoutError, and stops it", async () => {
    const h = harness({ f: () => "ok" }, { startup: () => ({ hang: true }) });
    const answer = await h.dispatcher.run(request("f", { timeoutSeconds: 0.3 }), BUNDLE);
    expect(answer.status).toBe("timed_out");
    expect(answer.error).toMatchObject({ code: "function_timeout" });
    // Its attempt, as a run's timeout says it (before: neither in the message nor in details).
    expect(answer.error!.message).toBe(
      `app.f timed out after 0.3 s while container ${h.driver.started[0]!.id} started (attempt 1): it did not say it was ready in time; ${STARTS_IN_TIMEOUT}`,
    );
    expect(answer.error!.details).toMatchObject({ attempt: 1 });
    expect(h.driver.started[0]!.exit).toEqual({ code: 137, oomKilled: false });
    expect(h.inventory.summary().memoryMiB.free).toBe(MEMORY_TOTAL_MIB);
  });

  it("ends a call whose container runs out of memory with ContainerFailedError (reason oom)", async () => {
    const h = harness({
      f: (_args, call) => {
        call.container.oom();
        return never();
      },
    });
    const answer = await h.dispatcher.run(request("f"), BUNDLE);
    expect(answer.error).toMatchObject({ code: "container_failed", details: { reason: "oom", exitCode: 137 } });
    expect(answer.error!.message).toContain("ran out of memory (limit 256 MiB) during the call");
  });

  it("ends a call past its timeout with FunctionTimeoutError and stops its container", async () => {
    const h = harness({ f: never });
    const answer = await h.dispatcher.run(request("f", { timeoutSeconds: 0.3 }), BUNDLE);
    expect(answer.status).toBe("timed_out");
    expect(answer.error).toMatchObject({ code: "function_timeout", details: { timeoutSeconds: 0.3, containerId: answer.containerId } });
    expect(answer.error!.message).toBe(`app.f timed out after 0.3 s in container ${answer.containerId} (attempt 1): the container was stopped`);
    expect(await h.driver.started[0]!.exited).toEqual({ code: 137, oomKilled: false });
    expect(h.dispatcher.containers()).toEqual([]);
  });

  it("ends a call whose container writes garbage on the control socket with ProtocolError, and kills it", async () => {
    const h = harness({
      f: (_args, call) => {
        call.container.garbage("{not json");
        return never();
      },
    });
    const answer = await h.dispatcher.run(request("f"), BUNDLE);
    expect(answer.error).toMatchObject({ code: "protocol_error" });
    expect(answer.error!.message).toContain(
      `app.f container ${answer.containerId} wrote something that is not a control frame (bytes that are not a frame: "{not json"); it was killed`,
    );
    expect(h.lines.some((l) => l.startsWith(`[plane] app.f ${answer.containerId} broke the control protocol`))).toBe(true);
    expect(h.driver.started[0]!.exit).toEqual({ code: 137, oomKilled: false });
  });

  it("never shares a container between two specs of a function that differ in one field", async () => {
    const h = harness({ f: () => "ok" });
    const base = await h.dispatcher.run(request("f"), BUNDLE);
    const capped = await h.dispatcher.run(request("f", { spec: { spendCapUsd: 1_000 } }), BUNDLE);
    const concurrent = await h.dispatcher.run(request("f", { autoscaler: { maxInputs: 4 } }), BUNDLE);
    const again = await h.dispatcher.run(request("f"), BUNDLE);
    expect(new Set([base.containerId, capped.containerId, concurrent.containerId]).size).toBe(3);
    // Each spec is a version of the function (version-switch.ts): the first one again is a version of its own.
    expect([capped.containerId, concurrent.containerId]).not.toContain(again.containerId);
  });

  /** App "app" has run a container for 100 s on the harness's plane: past any cap of a millionth of a dollar. */
  const ranAContainerFor100s = (h: ReturnType<typeof harness>) => {
    const now = Date.now();
    h.usage.record({
      containerId: "ctr-00000000",
      app: "app",
      function: "f",
      gpu: null,
      gpuCount: 0,
      cpu: 1,
      memoryMiB: 256,
      startedAt: now - 100_000,
      endedAt: now,
    });
  };

  it("refuses to start a container for an app past its spend cap", async () => {
    const h = harness({ f: () => "ok" });
    ranAContainerFor100s(h);
    const answer = await h.dispatcher.run(request("f", { spec: { spendCapUsd: 0.000001 } }), BUNDLE);
    expect(answer.error).toMatchObject({ code: "spend_cap_reached", details: { app: "app", spendCapUsd: 0.000001 } });
    expect(answer.error!.message).toContain('app "app" reached its spend cap of $0.000001');
    expect(h.driver.started).toEqual([]);
    expect(h.inventory.summary().memoryMiB.free).toBe(MEMORY_TOTAL_MIB);
  });

  it("refuses a call past its app's spend cap before it stops an idle container to make room for it", async () => {
    const h = harness({ f: () => "f", g: () => "g" }, { gpus: { T4: 1 } });
    const t4 = { spec: { gpu: [{ type: "T4" as const, count: 1 }] } };
    const f = await h.dispatcher.run(request("f", t4), BUNDLE);
    ranAContainerFor100s(h);
    const g = await h.dispatcher.run(request("g", { spec: { ...t4.spec, spendCapUsd: 0.000001 } }), BUNDLE);
    expect(g.error).toMatchObject({ code: "spend_cap_reached" });
    expect(h.lines.filter((l) => l.includes("to make room"))).toEqual([]);
    expect(h.dispatcher.containers().map((c) => c.id)).toEqual([f.containerId]); // still warm, for a call that may start
    expect(h.inventory.summary().gpus).toEqual({ T4: { total: 1, free: 0 } }); // still f's
  });

  it("streams a generator's chunks as the reader asks, and cancels it when the reader stops early", async () => {
    let finished = false;
    const h = harness({
      count: async function* () {
        try {
          for (let i = 0; ; i++) yield i;
        } finally {
          finished = true;
        }
      },
      f: () => "ok",
    });
    const chunks: unknown[] = [];
    for await (const chunk of h.dispatcher.stream(request("count"), BUNDLE)) {
      chunks.push(chunk.json);
      if (chunks.length === 3) break;
    }
    expect(chunks).toEqual([0, 1, 2]);
    const container = h.driver.started[0]!;
    expect(container.frames.filter((f) => f.t === "next")).toHaveLength(2);
    expect(container.frames.at(-1)).toMatchObject({ t: "cancel" });
    expect(finished).toBe(true);
    expect(h.dispatcher.containers()).toMatchObject([{ id: container.id, busy: false }]); // released, not retired
  });

  it("keeps a container warm when its generator throws midway: the error is the function's, the container is sound", async () => {
    const h = harness({
      count: async function* () {
        yield 0;
        throw new Error("boom mid-stream");
      },
    });
    const chunks: unknown[] = [];
    await expect(
      (async () => {
        for await (const chunk of h.dispatcher.stream(request("count"), BUNDLE)) chunks.push(chunk.json);
      })(),
    ).rejects.toMatchObject({ code: "function_failed", message: "boom mid-stream" });
    expect(chunks).toEqual([0]);
    const container = h.driver.started[0]!;
    expect(h.dispatcher.containers()).toMatchObject([{ id: container.id, busy: false }]); // released, not retired
    expect(container.frames.filter((f) => f.t === "cancel")).toEqual([]);
  });
});

describe("prepared containers, on fake containers", () => {
  /** Calls `f` once per element of `args`, each on a cold container: the last one's scale-down window is over before the next call. */
  async function coldCalls(h: Harness, args: number[], options: Parameters<typeof request>[1] = {}) {
    const answers = [];
    for (const x of args) {
      answers.push(await h.dispatcher.run(request("f", { args: [x], autoscaler: { scaledownWindowSeconds: 0.05 }, ...options }), BUNDLE));
      await until(() => h.dispatcher.containers().length === 0, "the container to scale down");
    }
    return answers;
  }

  it("prepares a container once a function has started cold twice, paused, and the next cold start resumes it", async () => {
    const h = harness({ f: ([x]) => x }, { prepared: 2 });
    const [first, second] = await coldCalls(h, [1, 2]);
    expect(first).toMatchObject({ coldStart: true });
    expect(h.driver.started.length).toBeGreaterThanOrEqual(2);
    await until(() => h.dispatcher.prepared().length === 1, "a prepared container");
    const [kept] = h.dispatcher.prepared();
    const container = h.driver.started.find((c) => c.id === kept!.id)!;
    expect(kept).toMatchObject({ app: "app", function: "f" });
    await until(() => container.paused, "the prepared container to be paused");
    expect(container.frames.filter((f) => f.t === "input")).toEqual([]); // fresh: it has run no input
    expect(h.dispatcher.containers()).toEqual([]); // not among the containers that run inputs
    expect(h.inventory.summary().memoryMiB.free).toBe(MEMORY_TOTAL_MIB - 256); // it holds its memory
    expect(h.inventory.summary().cpu.free).toBe(8); // and no CPU

    const third = await h.dispatcher.run(request("f", { args: [3], autoscaler: { scaledownWindowSeconds: 0.05 } }), BUNDLE);
    expect(third).toMatchObject({ status: "succeeded", result: 3, coldStart: true, containerId: kept!.id });
    expect(container.paused).toBe(false);
    expect(second!.containerId).not.toBe(kept!.id);
    await until(() => h.dispatcher.containers().length === 0 && h.dispatcher.prepared().length === 1, "the next prepared container");
    expect(h.inventory.summary()).toMatchObject({ cpu: { free: 8 }, memoryMiB: { free: MEMORY_TOTAL_MIB - 256 } }); // all given back, but the new one's memory
    expect(h.lines.some((l) => l.startsWith(`[plane] cold start: app.f ${kept!.id} resumed in `))).toBe(true);
    expect(h.records).toContainEqual(expect.objectContaining({ callId: expect.any(String), containerId: kept!.id, source: "system" }));
    expect(h.dispatcher.stats()).toMatchObject([{ function: "f", coldStarts: 3 }]);
    // Its time kept paused is in the ledger, apart: not billed. Its time running the input is, like any container's.
    await until(() => h.dispatcher.containers().length === 0, "the resumed container to scale down");
    const [row] = h.usage.summary({ app: "app" });
    expect(row).toMatchObject({ function: "f", containers: 3 });
    expect(row!.preparedSeconds).toBeGreaterThan(0);
  });

  it("answers a call cancelled while its prepared container resumes as cancelled, and never sends it the input", async () => {
    // The function would wait for its cancel, and for nothing else.
    const h = harness(
      { f: ([x], call) => (x === "wait" ? new Promise((resolve) => call.signal.addEventListener("abort", () => resolve("aborted"))) : x) },
      { prepared: 1 },
    );
    await coldCalls(h, [1, 2]);
    await until(() => h.dispatcher.prepared().length === 1, "a prepared container");
    const container = h.driver.started.find((c) => c.id === h.dispatcher.prepared()[0]!.id)!;
    await until(() => container.paused, "the prepared container to be paused");
    const resume = container.resume.bind(container);
    let resumed = false;
    container.resume = async () => {
      await sleep(200); // an engine's unpause, slow on a loaded node
      await resume();
      resumed = true;
    };
    const req = request("f", { args: ["wait"], timeoutSeconds: 3, autoscaler: { scaledownWindowSeconds: 0.05 } });
    const answer = h.dispatcher.run(req, BUNDLE);
    await until(() => h.dispatcher.containers().some((c) => c.id === container.id), "the input to take the prepared container");
    expect(resumed).toBe(false);
    expect(h.dispatcher.cancel([req.callId], false)).toEqual([req.callId]);
    // Before: the cancel reached the runner before the input did, which dropped it; the input then ran to its timeout.
    expect(await answer).toMatchObject({ status: "failed", error: { code: "call_cancelled" }, containerId: container.id });
    expect(container.frames.filter((f) => f.t === "input")).toEqual([]);
  });

  it("prepares none for a function that started cold once, with --prepared 0, or that asks for a GPU", async () => {
    const once = harness({ f: ([x]) => x }, { prepared: 2 });
    await coldCalls(once, [1]);
    const off = harness({ f: ([x]) => x }, { prepared: 0 });
    await coldCalls(off, [1, 2, 3]);
    const gpu = harness({ f: ([x]) => x }, { prepared: 2, gpus: { T4: 1 } });
    await coldCalls(gpu, [1, 2, 3], { spec: { gpu: [{ type: "T4", count: 1 }] } });
    await sleep(100);
    expect([once, off, gpu].map((h) => [h.dispatcher.prepared().length, h.driver.started.length])).toEqual([
      [0, 1],
      [0, 3],
      [0, 3],
    ]);
  });

  it("prepares none beyond a function's maxContainers, nor for a snapshot: true function", async () => {
    const release = gate();
    const capped = harness({ f: async ([x]) => (await release.opened, x) }, { prepared: 2 });
    const burst = [1, 2, 3].map((x) =>
      capped.dispatcher.run(request("f", { args: [x], autoscaler: { maxContainers: 2, scaledownWindowSeconds: 60 } }), BUNDLE),
    );
    await until(() => capped.dispatcher.containers().length === 2, "two containers for the burst");
    const snapped = harness({ f: ([x]) => x }, { prepared: 2, snapshots: true });
    await coldCalls(snapped, [1, 2], { spec: { snapshot: true } });
    release.open();
    await Promise.all(burst);
    await sleep(100);
    expect([capped, snapped].map((h) => [h.dispatcher.prepared().length, h.driver.started.length])).toEqual([
      [0, 2],
      [0, 2],
    ]);
  });

  it("prepares as many as the largest burst of cold starts, up to the limit", async () => {
    const release = gate();
    const h = harness({ f: async ([x]) => (await release.opened, x) }, { prepared: 2 });
    // Room under maxContainers for the burst's three and the two prepared ones beside them.
    const burst = [1, 2, 3].map((x) => h.dispatcher.run(request("f", { args: [x], autoscaler: { maxContainers: 5, scaledownWindowSeconds: 0.05 } }), BUNDLE));
    await until(() => h.dispatcher.containers().length === 3, "three containers for the burst");
    release.open();
    await Promise.all(burst);
    await until(() => h.dispatcher.prepared().length === 2, "two prepared containers");
    await sleep(100);
    expect(h.dispatcher.prepared()).toHaveLength(2);
  });

  it("does not give a prepared container to a call whose secrets changed: it is stopped and a new one started", async () => {
    const h = harness({ f: ([x]) => x }, { prepared: 1 });
    await coldCalls(h, [1, 2]);
    await until(() => h.dispatcher.prepared().length === 1, "a prepared container");
    const kept = h.dispatcher.prepared()[0]!.id;
    const answer = await h.dispatcher.run(
      { ...request("f", { args: [3], autoscaler: { scaledownWindowSeconds: 0.05 } }), secrets: { API_KEY: "rotated" } },
      BUNDLE,
    );
    expect(answer).toMatchObject({ status: "succeeded", coldStart: true });
    expect(answer.containerId).not.toBe(kept);
    expect(h.lines).toContain(`[plane] stopping prepared app.f ${kept}: its function's secrets changed`);
    expect(h.driver.started.find((c) => c.id === kept)!.exit).toBeDefined();
  });

  it("stops the prepared containers of a function's old version once its new version is live", async () => {
    const h = harness({ f: ([x]) => x }, { prepared: 1 });
    await coldCalls(h, [1, 2]);
    await until(() => h.dispatcher.prepared().length === 1, "a prepared container");
    const kept = h.dispatcher.prepared()[0]!.id;
    const next = await h.dispatcher.run({ ...request("f", { args: [3], autoscaler: { scaledownWindowSeconds: 0.05 } }), bundleHash: "c".repeat(64) }, BUNDLE);
    expect(next).toMatchObject({ status: "succeeded", result: 3, coldStart: true });
    expect(next.containerId).not.toBe(kept);
    expect(h.lines).toContain(`[plane] stopping prepared app.f ${kept}: a new version went live`);
    expect(h.dispatcher.prepared()).toEqual([]);
  });

  it("stops an app's prepared containers at a rollover: they were made with what the app declared before", async () => {
    const h = harness({ f: ([x]) => x }, { prepared: 1 });
    await coldCalls(h, [1, 2]);
    await until(() => h.dispatcher.prepared().length === 1, "a prepared container");
    const kept = h.dispatcher.prepared()[0]!.id;
    h.dispatcher.rolloverApp("app");
    expect(h.dispatcher.prepared()).toEqual([]);
    expect(h.lines).toContain(`[plane] stopping prepared app.f ${kept}: app app was stopped or rolled over`);
    await until(() => h.driver.started.find((c) => c.id === kept)!.exit !== undefined, "the prepared container to stop");
  });

  it("counts an app's prepared containers among those its stop stopped, and answers once they have stopped", async () => {
    const h = harness({ f: ([x]) => x }, { prepared: 1 });
    await coldCalls(h, [1, 2]);
    await until(() => h.dispatcher.prepared().length === 1, "a prepared container");
    const kept = h.dispatcher.prepared()[0]!.id;
    expect(await h.dispatcher.stopApp("app")).toBe(1);
    expect(h.driver.started.find((c) => c.id === kept)!.exit).toBeDefined();
    expect(h.lines).toContain("[plane] stopped 1 container of app app");
  });

  it("stops a prepared container when an input needs its memory", async () => {
    const h = harness({ f: ([x]) => x, big: () => "big" }, { prepared: 1 });
    await coldCalls(h, [1, 2], { spec: { memory: 1024 } });
    await until(() => h.dispatcher.prepared().length === 1, "a prepared container");
    const kept = h.dispatcher.prepared()[0]!.id;
    const big = await h.dispatcher.run(request("big", { spec: { memory: MEMORY_TOTAL_MIB - 512 } }), BUNDLE);
    expect(big).toMatchObject({ status: "succeeded", result: "big" });
    expect(h.lines).toContain(`[plane] stopping prepared app.f ${kept}: an input needed its memory`);
    expect(h.dispatcher.prepared()).toEqual([]);
  });

  it("stops a prepared container left unused for the window, and every one when the app stops or the plane closes", async () => {
    const h = harness({ f: ([x]) => x }, { prepared: 1, preparedWindowMs: 400 });
    await coldCalls(h, [1, 2]);
    await until(() => h.dispatcher.prepared().length === 1, "a prepared container");
    const kept = h.dispatcher.prepared()[0]!.id;
    await until(() => h.dispatcher.prepared().length === 0, "the unused prepared container to stop", 3_000);
    expect(h.lines).toContain(`[plane] stopping prepared app.f ${kept}: unused for 0.4 s`);
    expect(h.inventory.summary().memoryMiB.free).toBe(MEMORY_TOTAL_MIB);

    const again = harness({ f: ([x]) => x }, { prepared: 1 });
    await coldCalls(again, [1, 2]);
    await until(() => again.dispatcher.prepared().length === 1, "a prepared container");
    await again.dispatcher.stopApp("app");
    expect(again.dispatcher.prepared()).toEqual([]);
    await coldCalls(again, [3, 4]);
    await until(() => again.dispatcher.prepared().length === 1, "a prepared container after the app's stop");
    await again.dispatcher.close();
    expect(again.driver.started.every((c) => c.exit !== undefined)).toBe(true);
    expect(again.inventory.summary().memoryMiB.free).toBe(MEMORY_TOTAL_MIB);
  });
});
