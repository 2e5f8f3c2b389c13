/**
 * A plane function's `input` schema with real Docker: a bad argument is
 * refused at the gateway (`400 invalid_argument`) with no container started
 * for it, whether called, spawned, mapped or called from an edge function;
 * a good call runs in a container whose handler gets the schema's output.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError, lookup } from "../sdk/index.js";
import { HEADERS } from "../sdk/protocol.js";
import { authed } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/input-app.ts", import.meta.url).pathname;
let stack: TestStack;
const fn = <A extends unknown[] = any[], R = any>(name: string) => lookup<A, R>("input", name, { gateway: stack.url });
const post = (path: string, body: unknown) =>
  fetch(
    `${stack.url}/v1/apps/input/functions/${path}`,
    authed({ method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
  );
/** Containers the plane has started, running or not, and cold starts it counted. */
const containersStarted = () => {
  const status = stack.planes[0]!.status();
  return { containers: status.containers.length, coldStarts: status.functions.reduce((n, f) => n + f.coldStarts, 0) };
};

beforeAll(async () => {
  stack = await startTestStack(APP, { scaledownWindowSeconds: 30 });
});
afterAll(async () => {
  await stack?.dispose();
});

describe("a plane function's arguments", () => {
  it("are refused at the gateway with 400 invalid_argument, and no container starts for them", async () => {
    const called = await post("scale/call", { args: [-1] });
    expect(called.status).toBe(400);
    expect(called.headers.get(HEADERS.callId)).toBeNull();
    expect(await called.json()).toMatchObject({
      error: { code: "invalid_argument", message: "input.scale: argument 1: Too small: expected number to be >0 (got -1)", details: { argument: 1 } },
    });
    const spawned = await post("scale/spawn", { args: ["ten"] });
    expect(spawned.status).toBe(400);
    await expect(fn("scale").remote(2, 5)).rejects.toThrow("input.scale: argument 2: Invalid input: expected string, received number (got 5)");
    const mapped: unknown[] = [];
    for await (const y of fn("scale").map([0, -2], { returnExceptions: true })) mapped.push(y);
    expect(mapped.map((y) => y instanceof InvalidArgumentError)).toEqual([true, true]);
    expect(await fn("viaPlane").remote(0)).toMatchObject({ code: "invalid_argument" }); // from an edge function
    expect(containersStarted()).toEqual({ containers: 0, coldStarts: 0 });
    expect(stack.planeOutput.join("\n")).not.toMatch(/cold start: input\.scale/);
  });

  it("reach the handler in its container as the schema's output", async () => {
    const out = await fn("scale").remote(2, "  kg ");
    expect(out).toMatchObject({ scaled: 20, unit: "kg" }); // trimmed in the container
    expect(out.container).toMatch(/^ctr-[0-9a-f]{8}$/);
    expect(await fn("scale").remote(3)).toMatchObject({ scaled: 30, unit: "units", container: out.container }); // the default, filled in there
    const mixed: unknown[] = [];
    for await (const y of fn("scale").map([1, -1], { returnExceptions: true })) mixed.push(y);
    expect(mixed[0]).toMatchObject({ scaled: 10 });
    expect(mixed[1]).toBeInstanceOf(InvalidArgumentError);
    expect(containersStarted()).toEqual({ containers: 1, coldStarts: 1 });
  });
});
