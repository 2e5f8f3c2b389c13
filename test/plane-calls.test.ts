/**
 * Plane functions calling functions, in real Docker with the gateway in real
 * workerd: the SDK inside a container sends `.remote()`, `.spawn()` and
 * `get()`, `.map()` and `.remoteGen()` through its plane, as it sends dict,
 * queue and volume requests, for functions of its own app only; the routes
 * that stop or deploy an app stay out of its reach.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RemoteError, lookup } from "../sdk/index.js";
import { GATEWAY_AUDIENCE, HEADERS, type CallRecord } from "../sdk/protocol.js";
import { signRequest } from "../sdk/signing.js";
import { ADMIN_TOKEN, authed } from "./helpers/gateway.js";
import { SECRET, startTestStack, type TestStack } from "./helpers/stack.js";

let stack: TestStack;
const fn = <A extends unknown[], R>(name: string) => lookup<A, R>("pcalls", name, { gateway: stack.url, token: ADMIN_TOKEN });

beforeAll(async () => {
  stack = await startTestStack(new URL("./fixtures/plane-calls-app.ts", import.meta.url).pathname);
}, 120_000);
afterAll(async () => {
  await stack?.dispose();
});

describe("calls from plane containers", () => {
  it("a plane function calls, spawns, maps and streams its app's functions through its plane", async () => {
    const out = await fn<[number], { remote: number; spawned: number; spawnedId: string; mapped: number[]; streamed: number[] }>("orchestrate").remote(7);
    expect(out).toMatchObject({ remote: 14, spawned: 49, mapped: [2, 4, 6], streamed: [0, 1, 2] });
    // The spawned call is an ordinary call of the app, in the ledger.
    const record = (await (await fetch(`${stack.url}/v1/calls/${out.spawnedId}`, authed())).json()) as CallRecord;
    expect(record).toMatchObject({ app: "pcalls", function: "square", status: "succeeded", result: 49 });
  }, 90_000);

  it("passes on an inner call's error with its stack, mapped to the app's file, from either tier to either tier", async () => {
    const thrown = (name: string) =>
      fn<[], never>(name)
        .remote()
        .then(
          () => expect.fail(`${name} returned`),
          (err: unknown) => err as RemoteError,
        );
    const stacks: Record<string, string | undefined> = {};
    for (const name of ["failE", "failP", "chainEP", "chainPE", "chainPP"]) {
      const err = await thrown(name);
      expect(err).toBeInstanceOf(RemoteError);
      expect([name, err.remoteName, err.message]).toEqual([name, "MyErr", "custom boom"]);
      expect([name, err.remoteStack]).toEqual([
        name,
        expect.stringMatching(/^MyErr: custom boom\n {4}at thrower \(test\/fixtures\/plane-calls-app\.ts:\d+:\d+\)\n/),
      ]);
      stacks[name] = err.remoteStack;
    }
    // Passed on, in either tier, as the function that threw it gave it: before, a plane function kept only the first line.
    expect([stacks.chainEP, stacks.chainPP, stacks.chainPE]).toEqual([stacks.failP, stacks.failP, stacks.failE]);
  }, 90_000);

  it("records a call that let an inner call's timeout through as failed, passing the timeout on as it came, in either tier", async () => {
    for (const name of ["passTimeoutE", "passTimeoutP"]) {
      const res = await fetch(`${stack.url}/v1/apps/pcalls/functions/${name}/call`, authed({ method: "POST", body: JSON.stringify({ args: [] }) }));
      const record = (await res.json()) as CallRecord;
      // Before, the outer call was recorded timed_out, though it ran within its own 30 s.
      expect([name, record.status, record.error?.code]).toEqual([name, "failed", "function_timeout"]);
      expect(record.error?.message).toMatch(/^pcalls\.slowE timed out after 1 s/);
      expect(record.error?.details?.callId).not.toBe(record.callId); // the inner call's, as it came
    }
  }, 90_000);

  it("gives every call a signal, in either tier: called, streamed, a class's method and its enter()", async () => {
    const fresh = "AbortSignal false";
    expect(await fn<[], string>("signalE").remote()).toBe(fresh);
    expect(await fn<[], string>("signalP").remote()).toBe(fresh);
    for (const name of ["signalGenE", "signalGenP"]) {
      const got: string[] = [];
      for await (const s of fn<[], AsyncGenerator<string>>(name).remoteGen()) got.push(s);
      expect([name, got]).toEqual([name, [fresh]]); // before, an edge generator's was undefined
    }
    for await (const s of fn<[number], string>("signalP").map([1])) expect(s).toBe(fresh);
    expect(await lookup<[Record<string, never>], string[]>("pcalls", "Signalled.both", { gateway: stack.url, token: ADMIN_TOKEN }).remote({})).toEqual([
      fresh,
      fresh,
    ]);
  }, 90_000);

  it("does not reach another app's functions", async () => {
    expect(await fn<[], string>("elsewhere").remote()).toMatch(
      /^forbidden: a container reaches only .*\/v1\/apps\/pcalls\/functions.*, not \/v1\/apps\/other\/functions\/f\/call$/,
    );
  }, 60_000);

  it("is refused, at the gateway too, the app routes that are not its functions'", async () => {
    const carried = async (method: string, path: string) => {
      const headers = await signRequest(SECRET, { audience: GATEWAY_AUDIENCE, method, path, body: new Uint8Array(), containerApp: "pcalls" });
      return fetch(stack.url + path, { method, headers: { ...headers, [HEADERS.containerApp]: "pcalls" } });
    };
    for (const [method, path] of [
      ["POST", "/v1/apps/pcalls/stop"],
      ["POST", "/v1/apps/pcalls/rollover"],
      ["GET", "/v1/apps"],
      ["POST", "/v1/apps/other/functions/f/call"],
    ] as const) {
      const res = await carried(method, path);
      expect([path, res.status]).toEqual([path, 403]);
    }
    const own = await carried("POST", "/v1/apps/pcalls/functions/double/call");
    expect(own.status).toBe(200);
  });
});
