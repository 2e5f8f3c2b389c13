/**
 * A WebAssembly function with tier: "plane" runs in a plane container (real
 * Docker) through the same host as at the edge (real workerd), and gives the
 * same results and the same errors.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FunctionTimeoutError, lookup } from "../sdk/index.js";
import { ADMIN_TOKEN } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

let stack: TestStack;
const fn = <A extends unknown[], R>(name: string) => lookup<A, R>("wasmtiers", name, { gateway: stack.url });
// What a call gave, with the function's own name (upperEdge, rawPlane...) taken out of messages.
const outcome = (p: Promise<unknown>) =>
  p.then(
    (value) => ({ value: value instanceof Uint8Array ? new TextDecoder().decode(value) : value }),
    (e) => ({ error: e.constructor.name, name: e.remoteName, message: e.message.replace(/(upper|raw)(Edge|Plane)/g, "$1") }),
  );

beforeAll(async () => {
  stack = await startTestStack(new URL("./fixtures/wasm-plane-app.ts", import.meta.url).pathname, { scaledownWindowSeconds: 30 });
});
afterAll(async () => {
  await stack?.dispose();
});

describe("a WebAssembly function on the plane", () => {
  it("gives the same JSON results as at the edge, in a plane container", async () => {
    for (const input of ["hello", "ünïcode", ""]) {
      expect(await outcome(fn<[string], string[]>("upperPlane").remote(input))).toEqual(await outcome(fn<[string], string[]>("upperEdge").remote(input)));
    }
    expect(await fn<[string], string[]>("upperPlane").remote("hi")).toEqual(["HI"]);
    expect(stack.planes[0]!.status().functions.find((f) => f.function === "upperPlane")?.coldStarts).toBe(1);
  });

  it("refuses an argument its module cannot be given at the gateway, as at the edge: no call made, no container started", async () => {
    const coldStarts = () => stack.planes[0]!.status().functions.find((f) => f.function === "upperPlane")?.coldStarts ?? 0;
    const before = coldStarts();
    for (const name of ["upperPlane", "upperEdge"]) {
      const res = await fetch(`${stack.url}/v1/apps/wasmtiers/functions/${name}/call`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        body: JSON.stringify({ args: [[["a", 1]]], meta: { values: { "0": ["map"] } } }),
      });
      expect(res.status).toBe(400);
      expect(res.headers.get("tandem-call-id")).toBeNull(); // refused before a call was made
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(
        /takes its arguments as JSON: argument 1 is a Map, which JSON cannot carry/,
      );
    }
    expect(coldStarts()).toBe(before);
  });

  it("gives the same bytes, and the same errors, as at the edge", async () => {
    for (const input of ["x", "t", "o", "!"]) {
      expect(await outcome(fn<[string], Uint8Array>("rawPlane").remote(input))).toEqual(await outcome(fn<[string], Uint8Array>("rawEdge").remote(input)));
    }
    expect(await outcome(fn<[string], Uint8Array>("rawPlane").remote("t"))).toEqual({
      error: "RemoteError",
      name: "WasmTrapError",
      message: "raw trapped: unreachable",
    });
  });

  it("gets the same argv and reads the same read-only directory as at the edge", async () => {
    type Out = { argv: string[]; text: string; errnos: Record<string, number> };
    const plane = await fn<[], Out>("toolPlane").remote();
    const edge = await fn<[], Out>("toolEdge").remote();
    expect({ ...plane, argv: plane.argv.slice(1) }).toEqual({ ...edge, argv: edge.argv.slice(1) });
    expect(plane.argv).toEqual(["toolPlane", "/data", "sub/nested.txt"]);
    expect(plane.text).toBe("nested\n");
    expect(plane.errnos).toMatchObject({ openForWriting: 69, create: 69, unlink: 69, writeThroughReadFd: 8 });
    expect((await fn<[], Out>("toolPlane").remote()).text).toBe("nested\n");
  });

  it("times out a module that loops past its timeout, and the next call works", async () => {
    expect(
      await fn<[string], Uint8Array>("rawPlane")
        .remote("l")
        .catch((e) => e),
    ).toBeInstanceOf(FunctionTimeoutError);
    expect(new TextDecoder().decode(await fn<[string], Uint8Array>("rawPlane").remote("x"))).toBe("ok");
  });
});
