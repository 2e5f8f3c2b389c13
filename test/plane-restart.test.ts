/**
 * A plane started again where one ran before (`tandem serve` killed with SIGKILL and started again in its folder, on
 * the same --plane-port): the gateway, which knew the plane at that URL, sends it calls before it has reported, and
 * before it is ready. Real workerd for the gateway, real planes with the process runtime (no Docker); all on loopback.
 */
import { join } from "node:path";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { ProcessDriver } from "../gpu-plane/drivers/process.js";
import { Plane, type PlaneOptions } from "../gpu-plane/plane.js";
import { lookup, type CallRecord } from "../sdk/index.js";
import { PLANE_ROUTES } from "../sdk/protocol.js";
import { signRequest } from "../sdk/signing.js";
import { ADMIN_TOKEN, authed, eventually } from "./helpers/gateway.js";
import { SECRET, startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/plane-app.ts", import.meta.url).pathname;
/** The plane's fixed port: its second start listens where the gateway knew the first. */
const PLANE_PORT = 9641;
/** What the Docker engine answers while a container killed moments ago is still exiting. */
const ZOMBIE = "(HTTP code 500) server error - Could not kill running container 98fd, cannot remove - container 98fd PID 6388 is zombie and can not be killed";

let stack: TestStack;
const planes: Plane[] = [];

// A gateway each: a plane one test closed is listed healthy for a while, and would take the other's calls.
beforeEach(async () => {
  stack = await startTestStack(APP, { runtime: "process" }, { planes: 0 });
}, 120_000);

afterEach(async () => {
  vi.restoreAllMocks();
  for (const plane of planes.splice(0)) await plane.close({ quick: true }).catch(() => {});
  await stack?.dispose();
});

function planeOptions(stateDir: string, port: number): PlaneOptions {
  return {
    gatewayUrl: stack.url,
    secret: SECRET,
    host: "127.0.0.1",
    port,
    region: "test",
    runtime: "process",
    stateDir: join(stack.dir, stateDir),
    log: (line) => stack.planeOutput.push(line),
  };
}

async function registered(planeId: string): Promise<{ healthy: boolean; notReady?: string } | undefined> {
  const { planes } = (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: { planeId: string; healthy: boolean; notReady?: string }[] };
  return planes.find((p) => p.planeId === planeId);
}

async function spawnCall(fn: string, args: unknown[]): Promise<string> {
  const res = await fetch(`${stack.url}/v1/apps/plane/functions/${fn}/spawn`, authed({ method: "POST", body: JSON.stringify({ args }) }));
  expect(res.status).toBe(202);
  return ((await res.json()) as { callId: string }).callId;
}

async function ended(callId: string): Promise<CallRecord> {
  for (;;) {
    const res = await fetch(`${stack.url}/v1/calls/${callId}?wait=20000`, authed());
    if (res.status === 200) return (await res.json()) as CallRecord;
    expect(res.status).toBe(202);
  }
}

it("holds the calls that reach a plane still starting until it is ready, and runs them there", async () => {
  const first = await Plane.start(planeOptions("restarted", PLANE_PORT));
  await eventually(async () => (await registered(first.planeId))?.healthy === true);
  await first.close({ quick: true });
  // Started again on its folder and port, it listens at once, then waits for its gateway's URL (as `tandem serve`'s
  // plane waits while workerd starts). The gateway still lists it healthy, at that URL, from the first one's heartbeats.
  let gatewayKnown: () => void = () => {};
  const again = Plane.start({ ...planeOptions("restarted", PLANE_PORT), gatewayUrl: new Promise((resolve) => (gatewayKnown = () => resolve(stack.url))) });
  again.catch(() => {}); // met below
  await eventually(async () => (await fetch(`http://127.0.0.1:${PLANE_PORT}/v1/plane/status?probe=live`).catch(() => undefined))?.status === 200);
  const callId = await spawnCall("sayPlane", ["while it starts"]);
  const streamed = (async () => {
    const chunks: number[] = [];
    for await (const chunk of lookup<[number], AsyncGenerator<number>>("plane", "countPlane", { gateway: stack.url, token: ADMIN_TOKEN }).remoteGen(3))
      chunks.push(chunk);
    return chunks;
  })().catch((err: Error) => err.message);
  // The plane's status, as the gateway and `tandem planes` ask it, signed for this plane.
  const statusAnswer = (async () => {
    const signed = await signRequest(SECRET, { audience: first.planeId, method: "GET", path: PLANE_ROUTES.status });
    const res = await fetch(`http://127.0.0.1:${PLANE_PORT}${PLANE_ROUTES.status}`, { headers: signed });
    return { status: res.status, body: (await res.json()) as { planeId?: string } };
  })();
  await new Promise((r) => setTimeout(r, 1_500)); // all three reach the plane meanwhile
  gatewayKnown();
  const plane = await again;
  planes.push(plane);
  expect(plane.planeId).toBe(first.planeId);
  // Before, the plane's listener reached for a plane not made yet: the call failed `internal`, "Cannot read properties
  // of undefined (reading 'run')", and the stream likewise.
  expect(await ended(callId)).toMatchObject({ status: "succeeded", result: "while it starts", attempts: 1 });
  expect(await streamed).toEqual([0, 1, 2]);
  expect(await statusAnswer).toMatchObject({ status: 200, body: { planeId: first.planeId } });
  expect(stack.planeOutput.join("\n")).not.toMatch(/Cannot read properties of undefined/);
}, 90_000);

it("keeps a call for its only plane while that plane removes what its previous run left, and runs it there once it has", async () => {
  // A container the engine cannot kill yet (a zombie PID, moments after a SIGKILL) cannot be made on purpose, and the
  // process runtime leaves nothing behind: its removal of leftovers is made to fail twice, as the Docker engine's does.
  const cleanup = vi.spyOn(ProcessDriver.prototype, "cleanup").mockRejectedValueOnce(new Error(ZOMBIE)).mockRejectedValueOnce(new Error(ZOMBIE));
  const plane = await Plane.start(planeOptions("left-behind", 0));
  planes.push(plane);
  const listed = await registered(plane.planeId);
  const callId = await spawnCall("sayPlane", ["after the leftovers"]);
  // Before, the call failed at once, for good: plane_unavailable, "plane pl-… cannot start containers: the containers its
  // previous run left behind are not all removed yet …", though the plane said it was trying again.
  expect(await ended(callId)).toMatchObject({ status: "succeeded", result: "after the leftovers", attempts: 1 });
  // Meanwhile it was listed as not ready, for a reason that passes, rather than as unable to start containers.
  expect(listed).toMatchObject({
    healthy: false,
    notReady: expect.stringMatching(/^the containers its previous run left behind are not all removed yet .*PID 6388 is zombie/),
  });
  expect(listed).not.toHaveProperty("unavailable");
  expect(cleanup.mock.calls.length).toBeGreaterThanOrEqual(3);
  expect(stack.planeOutput.join("\n")).toContain(`✓ plane ${plane.planeId} removed the containers its previous run left behind; it takes calls now`);
}, 90_000);
