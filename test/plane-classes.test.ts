/** Classes with lifecycle, on the plane (real Docker) and at the edge (workerd). */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContainerFailedError, NotFoundError, RemoteError, lookup } from "../sdk/index.js";
import type { LogLine } from "../sdk/protocol.js";
import { authed, eventually } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack(new URL("./fixtures/class-app.ts", import.meta.url).pathname);
});
afterAll(async () => {
  await stack?.dispose();
});

const predict = (params: Record<string, unknown>, text: string) =>
  lookup<[Record<string, unknown>, string], string>("classes", "Model.predict", { gateway: stack.url }).remote(params, text);
const appLines = async () =>
  (await (await fetch(`${stack.url}/v1/apps/classes/logs?limit=1000`, authed())).text())
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LogLine);
const systemLines = async () => (await appLines()).filter((l) => l.source === "system");
const entersIn = (container: string, size: string) => stack.planeOutput.filter((l) => l.includes(container) && l.endsWith(`] enter ${size}`)).length;

describe("classes on the plane", () => {
  it("runs enter once per container, before the first input, and keeps the instance for the next", async () => {
    const outs = [await predict({ size: "small" }, "a"), await predict({ size: "small" }, "b"), await predict({ size: "small" }, "c")];
    const containers = new Set(outs.map((o) => o.split(":")[2]));
    expect(containers.size).toBe(1);
    expect(outs.map((o) => o.split(":").slice(0, 2).join(":"))).toEqual(["w-small:a", "w-small:b", "w-small:c"]);
    expect(entersIn([...containers][0]!, "small")).toBe(1);
  });

  it("answers a call of a class's name alone with 404 naming its methods", async () => {
    const err = await lookup("classes", "Model", { gateway: stack.url })
      .remote({})
      .catch((e) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    // Before: the app's functions alone, among them Model.predict, with nothing to say that Model is its class.
    expect(err.message).toContain('; "Model" is a class: call one of its methods, "Model.predict"');
  });

  it("gives each set of parameters its own pool", async () => {
    const small = (await predict({ size: "small" }, "x")).split(":")[2];
    const large = await predict({ size: "large" }, "x");
    expect(large.startsWith("w-large:x:")).toBe(true);
    expect(large.split(":")[2]).not.toBe(small);
  });

  it("runs exit when a container stops after its scale-down window, its lines and enter()'s the container's, under no call", async () => {
    await eventually(() => stack.planeOutput.some((l) => l.endsWith("] exit small")), 20_000);
    // Before, each was filed under a call: enter()'s under the one its container started for, exit()'s under the last one it ran.
    expect(stack.planeOutput.filter((l) => /\] (enter|exit) small$/.test(l))).toEqual([
      expect.stringMatching(/^\[classes\.Model - ctr-[0-9a-f]{8}\] enter small$/),
      expect.stringMatching(/^\[classes\.Model - ctr-[0-9a-f]{8}\] exit small$/),
    ]);
    await eventually(async () => (await appLines()).some((l) => l.text === "exit small"), 5_000);
    const own = (await appLines()).filter((l) => l.text === "enter small" || l.text === "exit small");
    expect(own.map(({ function: fn, callId, text }) => ({ function: fn, callId, text }))).toEqual([
      { function: "Model", callId: null, text: "enter small" },
      { function: "Model", callId: null, text: "exit small" },
    ]);
  });

  it("fails every input with the error when enter throws, and backs off before another container tries", async () => {
    for (let i = 0; i < 3; i++) {
      const err = await lookup("classes", "Broken.predict", { gateway: stack.url })
        .remote({})
        .catch((e) => e);
      expect(err).toBeInstanceOf(RemoteError);
      expect(err.message).toMatch(
        i === 0
          ? /^could not load the weights$/
          : /^could not load the weights \(the class's enter\(\) failed so \d+ s ago; the plane tries a new container in 1 s\)$/,
      );
    }
    // The first call's container failed to enter; the next ones, within the backoff, got the error without a new one.
    expect(stack.planeOutput.filter((l) => l.includes("classes.Broken: enter() failed (could not load the weights); no new container for 1 s"))).toHaveLength(
      1,
    );
  });

  it("says why a container went away when code its enter() started threw outside a call, with the stack in the app's file", async () => {
    const wait = lookup<[Record<string, unknown>, number], string>("classes", "Looping.wait", { gateway: stack.url });
    const container = await wait.remote({}, 10); // idle when its loop throws, 1.5 s after enter()
    const crashLine = async () => (await systemLines()).find((l) => l.containerId === container && l.text.includes(" crashed "));
    await expect.poll(crashLine, { timeout: 20_000 }).toBeDefined();
    const line = await crashLine();
    expect(line!.callId).toBeNull();
    expect(line!.text).toMatch(
      new RegExp(
        `^classes\\.Looping container ${container} crashed with exit code 1 after an uncaught error in code outside a call; ` +
          `the next call starts a new container:\nTypeError: the background loop lost its queue\n {4}at \\S*tick \\(\\S*class-app\\.ts:\\d+:\\d+\\)`,
      ),
    );
    // Not Node's report of it, which quotes the bundle's minified source line.
    const its = (await appLines()).filter((l) => l.containerId === container);
    expect(its.filter((l) => /bundle\.mjs|evalmachine|__defProp/.test(l.text))).toEqual([]);
    expect(stack.planeOutput.some((l) => l.startsWith(`[plane] classes.Looping container ${container} crashed with exit code 1`))).toBe(true);
    expect(await wait.remote({}, 10)).not.toBe(container);
  });

  it("fails a call in flight on a container that crashed that way, naming the error", async () => {
    const err = await lookup("classes", "Looping.wait", { gateway: stack.url })
      .remote({}, 10_000)
      .catch((e) => e);
    expect(err).toBeInstanceOf(ContainerFailedError);
    expect(err.details).toMatchObject({ reason: "crashed", exitCode: 1 });
    expect(err.message).toMatch(
      /^classes\.Looping container ctr-[0-9a-f]{8} crashed with exit code 1 during the call, after an uncaught error in code outside a call \(TypeError: the background loop lost its queue\)/,
    );
    const container = err.details.containerId as string;
    const crashLines = async () => (await systemLines()).filter((l) => l.containerId === container && l.text.includes(" crashed "));
    await expect.poll(async () => (await crashLines()).length, { timeout: 20_000 }).toBe(2);
    const lines = await crashLines();
    expect(lines.map((l) => l.callId)).toEqual([err.details.callId, err.details.callId]);
    expect(lines.map((l) => l.text.split("\n")[0])).toEqual(
      expect.arrayContaining([
        `classes.Looping container ${container} crashed with exit code 1 after an uncaught error in code outside a call; the call it was running fails, and the next call starts a new container:`,
        err.message.split("\n")[0],
      ]),
    );
  });

  it("says so too when enter() left a promise that rejected before the container was ready", async () => {
    const err = await lookup("classes", "Rejecting.wait", { gateway: stack.url })
      .remote({})
      .catch((e) => e);
    expect(err).toBeInstanceOf(ContainerFailedError);
    expect(err.message).toMatch(
      /^classes\.Rejecting container ctr-[0-9a-f]{8} crashed with exit code 1 while starting, after a promise rejection nobody handled \(RangeError: nobody awaited this\)/,
    );
    const crashLine = async () =>
      (await systemLines()).find((l) => l.containerId === err.details.containerId && l.text.includes(" crashed with exit code 1 after "));
    await expect.poll(crashLine, { timeout: 20_000 }).toBeDefined();
    expect((await crashLine())!.text).toMatch(/:\nRangeError: nobody awaited this\n {4}at \S*enter \(\S*class-app\.ts:\d+:\d+\)$/);
  });

  it("keeps a class with minContainers warm, entered before any input, one container for all its methods", async () => {
    await eventually(() => stack.planeOutput.some((l) => /ctr-[0-9a-f]{8}\] warm enter/.test(l)), 20_000);
    const warm = (name: string) => lookup("classes", `Warm.${name}`, { gateway: stack.url });
    expect(await warm("ping").remote({})).toBe(true);
    const container = await warm("pong").remote({});
    expect(stack.planeOutput.filter((l) => l.includes(container) && l.endsWith("] warm enter"))).toHaveLength(1);
    expect(stack.planeOutput.filter((l) => l.endsWith("] warm enter"))).toHaveLength(1);
  });

  it("counts a class's containers, and their time, as the class's, whichever method started them", async () => {
    const warm = (name: string) => lookup("classes", `Warm.${name}`, { gateway: stack.url });
    expect(await warm("ping").remote({})).toBe(true);
    const report = stack.planes[0]!.report();
    expect(report.warm?.filter((w) => w.app === "classes" && w.function.startsWith("Warm"))).toEqual([{ app: "classes", function: "Warm", busy: 0, idle: 1 }]);
    const status = stack.planes[0]!.status();
    expect(status.functions.find((f) => f.app === "classes" && f.function.startsWith("Warm"))).toMatchObject({ function: "Warm", idle: 1 });
    const rows = ((await (await fetch(`${stack.url}/v1/usage?app=classes`, authed())).json()) as { rows: { function: string }[] }).rows;
    expect(rows.map((r) => r.function)).toContain("Warm");
    expect(rows.map((r) => r.function).filter((f) => f.startsWith("Warm."))).toEqual([]);
    // Each method's page shows the class's containers, whichever method started them.
    for (const method of ["ping", "pong"]) {
      const page = await (await fetch(`${stack.url}/_tandem/apps/classes/functions/Warm.${method}`, authed())).text();
      expect(page).not.toContain("No plane containers.");
      expect(page).toContain(`<td>${stack.planes[0]!.planeId}</td>`);
    }
  });

  it("lists class methods as functions", async () => {
    const manifest = (await (await fetch(`${stack.url}/v1/apps/classes`, authed())).json()) as { functions: { name: string; tier: string }[] };
    expect(manifest.functions.map((f) => f.name)).toEqual(expect.arrayContaining(["Model.predict", "Broken.predict", "Counter.bump"]));
  });
});

describe("classes at the edge", () => {
  it("keeps one instance per isolate and parameters", async () => {
    const bump = lookup<[Record<string, unknown>, number], number>("classes", "Counter.bump", { gateway: stack.url });
    expect(await bump.remote({ start: 10 }, 1)).toBe(11);
    expect(await bump.remote({ start: 10 }, 1)).toBe(12);
    expect(await bump.remote({ start: 100 }, 5)).toBe(105);
  });

  it("refuses parameters that are not strings, numbers, booleans or null, with a 400 naming the parameter", async () => {
    const res = await fetch(
      `${stack.url}/v1/apps/classes/functions/Counter.bump/call`,
      authed({
        method: "POST",
        body: JSON.stringify({ args: [{ start: [1, 2] }, 1] }),
      }),
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe(
      'classes.Counter.bump: class parameter "start" must be a string, number, boolean or null (got an array)',
    );
  });
});

describe("a class's container stopped with its app", () => {
  it("files the lines of its exit() under the container, not under the last call it ran", async () => {
    expect((await predict({ size: "stopped" }, "x")).startsWith("w-stopped:x:")).toBe(true);
    const stopped = await fetch(`${stack.url}/v1/apps/classes/stop`, authed({ method: "POST" }));
    expect(stopped.status).toBe(200);
    await eventually(() => stack.planeOutput.some((l) => l.endsWith("] exit stopped")), 20_000);
    expect(stack.planeOutput.filter((l) => l.endsWith("] exit stopped"))).toEqual([
      expect.stringMatching(/^\[classes\.Model - ctr-[0-9a-f]{8}\] exit stopped$/),
    ]);
  });
});
