/**
 * Arguments checked against a function's `input` schema, in real workerd:
 * refused with `400 invalid_argument` before the function runs (called,
 * spawned, streamed, a class method, a WebAssembly function, a plane function
 * before any plane is asked), a bad map input failing by itself, the same
 * from inside the gateway, the handler given the schema's output; and hono's
 * validator in a web app.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError, InvalidRequestError, lookup, type CallRecord } from "../sdk/index.js";
import { HEADERS } from "../sdk/protocol.js";
import { authed, eventually, startTestGateway, type TestGateway } from "./helpers/gateway.js";

const APP = new URL("./fixtures/input-app.ts", import.meta.url).pathname;
let gw: TestGateway;
const fn = <A extends unknown[] = any[], R = any>(name: string) => lookup<A, R>("input", name, { gateway: gw.url });
const post = (path: string, body: unknown) =>
  fetch(`${gw.url}/v1/apps/input/functions/${path}`, authed({ method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } }));
const refusal = (promise: Promise<unknown>) =>
  promise.then(
    (value) => {
      throw new Error(`accepted: ${JSON.stringify(value)}`);
    },
    (err: unknown) => err as InvalidArgumentError,
  );

beforeAll(async () => {
  gw = await startTestGateway(APP);
});
afterAll(async () => {
  await gw?.dispose();
});

describe("an edge function's arguments", () => {
  it("are refused with 400 invalid_argument, naming the argument and what was expected, before the function runs", async () => {
    const before = await fn("addRunCount").remote();
    const res = await post("add/call", { args: [1, "two"] });
    expect(res.status).toBe(400);
    expect(res.headers.get(HEADERS.callId)).toBeNull(); // refused before a call was made
    expect(await res.json()).toEqual({
      error: {
        code: "invalid_argument",
        message: 'input.add: argument 2: Invalid input: expected number, received string (got "two")',
        details: { argument: 2, issues: [{ argument: 2, path: [], message: "Invalid input: expected number, received string" }] },
      },
    });
    const err = await refusal(fn("add").remote("one", 2));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toBe('input.add: argument 1: Invalid input: expected number, received string (got "one")');
    expect(await fn("add").remote(1, 2)).toBe(3);
    expect(await fn("addRunCount").remote()).toBe(before + 1); // only the good call ran
  });

  it("say which field inside an argument is wrong, which is missing, and when there are too many", async () => {
    const person = await refusal(fn("describePerson").remote({ name: "Ada", age: -1, title: "Countess" }));
    expect(person.message).toBe(
      'input.describePerson: argument 1: field "age" Too small: expected number to be >=0 (got -1); argument 1: unknown field "title"',
    );
    expect((await refusal(fn("add").remote(1))).message).toBe("input.add: argument 2: Invalid input: expected number, received undefined");
    expect((await refusal(fn("add").remote(1, 2, 3))).message).toBe("input.add: takes at most 2 arguments (got 3)");
  });

  it("reach the handler as the schema's output: trimmed, defaults filled in, transformed", async () => {
    expect(await fn("shout").remote("  hey ")).toEqual({ said: "HEY!HEY!", on: null });
    expect(await fn("shout").remote("a", 1, "2026-03-01")).toEqual({ said: "A!", on: 2026 });
    expect((await refusal(fn("shout").remote("a", 1, "March"))).message).toBe('input.shout: argument 3: Invalid ISO date (got "March")');
    // .local(), in this process, checks the same way.
    const local = gw.apps[0]!.functions.find((f) => f.name === "describePerson")!;
    expect(await local.local({ name: "Ada", age: 36 })).toBe("Ada is 36");
    await expect(local.local({ name: "Ada" })).rejects.toThrow(
      'input.describePerson: argument 1: field "age" Invalid input: expected number, received undefined',
    );
  });

  it("of a spawned call are refused at spawn, with no call recorded", async () => {
    const res = await post("add/spawn", { args: [1, null] });
    expect(res.status).toBe(400);
    expect(res.headers.get(HEADERS.callId)).toBeNull();
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_argument");
    await expect(fn("add").spawn("x", 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(await (await fn("add").spawn(2, 2)).get({ timeoutMs: 10_000 })).toBe(4);
  });

  it("of a map input that is bad fail that input alone, as invalid_argument", async () => {
    const out: unknown[] = [];
    for await (const y of fn("add").starmap(
      [
        [1, 2],
        [1, "x"],
        [3, 4],
      ],
      { returnExceptions: true },
    ))
      out.push(y);
    expect(out[0]).toBe(3);
    expect(out[1]).toBeInstanceOf(InvalidArgumentError);
    expect((out[1] as InvalidArgumentError).message).toBe('input.add: argument 2: Invalid input: expected number, received string (got "x")');
    expect(out[2]).toBe(7);
    // Without returnExceptions, the bad input throws when its turn comes, as a failed input does.
    const seen: unknown[] = [];
    const thrown = await (async () => {
      for await (const y of fn("add").starmap([
        [1, 1],
        [null, 1],
      ]))
        seen.push(y);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([2]);
    expect(thrown).toBeInstanceOf(InvalidArgumentError);
  });

  it("of a generator are refused before its first chunk", async () => {
    const chunks: unknown[] = [];
    for await (const c of fn("countTo").remoteGen(3)) chunks.push(c);
    expect(chunks).toEqual([1, 2, 3]);
    const err = await refusal(
      (async () => {
        for await (const c of fn("countTo").remoteGen(9)) chunks.push(c);
      })(),
    );
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toBe("input.countTo: argument 1: Too big: expected number to be <=5 (got 9)");
    const res = await post("countTo/stream", { args: ["3"] });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_argument");
  });
});

describe("other kinds of function", () => {
  it("check a class method's own arguments against its schema, after its parameters", async () => {
    const greet = fn("Greeter.greet");
    expect(await greet.remote({ greeting: "Hi" }, "Ada")).toBe("Hi, Ada");
    const err = await refusal(greet.remote({}, ""));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toBe('input.Greeter.greet: argument 1: Too small: expected string to have >=1 characters (got "")');
    await expect(greet.remote("not params", "Ada")).rejects.toBeInstanceOf(InvalidRequestError); // the parameters' own rule
  });

  it("check a WebAssembly function's arguments, and hand the module the schema's output", async () => {
    expect(await fn("upperWord").remote("  quiet ")).toEqual(["QUIET"]);
    expect((await refusal(fn("upperWord").remote(5))).message).toBe("input.upperWord: argument 1: Invalid input: expected string, received number (got 5)");
  });

  it("refuse a plane function's bad argument at the gateway, before any plane is asked", async () => {
    // This gateway has no plane: a good call cannot run, a bad one is refused first.
    const res = await post("scale/call", { args: [-1] });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe("input.scale: argument 1: Too small: expected number to be >0 (got -1)");
    expect((await post("scale/call", { args: [2] })).status).toBe(503);
    const mapped = await post("scale/map", { inputs: [["x"]] });
    const line = JSON.parse((await mapped.text()).trim()) as { status: string; error: { code: string } };
    expect(line).toMatchObject({ status: "failed", error: { code: "invalid_argument" } });
  });
});

describe("arguments the wire cannot carry", () => {
  it("are refused before a request is sent, naming the argument and where in it: a function or a symbol", async () => {
    const before = await fn("addRunCount").remote();
    const err = await refusal(fn("add").remote(1, (() => 2) as unknown as number));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toBe('argument 2 is a function, which a call cannot carry: arguments travel as data (docs/api.md, "Values")');
    const nested = await refusal(fn("describePerson").remote({ name: "Ada", age: 36, tags: [Symbol("x")] }));
    expect(nested.message).toMatch(/^argument 1 \(at \.tags\[0\]\) is a symbol, which a call cannot carry/);
    const mapped = fn<[number, number]>("add").starmap([[1, (() => 2) as unknown as number]]);
    expect((await refusal(mapped[Symbol.asyncIterator]().next())).code).toBe("invalid_argument");
    expect(await fn("addRunCount").remote()).toBe(before); // none of them ran
  });

  it("are refused the same way inside the gateway, where an edge function's could have passed as they are", async () => {
    expect(await fn("viaRemoteWithFunction").remote()).toEqual({
      code: "invalid_argument",
      message: 'argument 2 is a function, which a call cannot carry: arguments travel as data (docs/api.md, "Values")',
    });
  });
});

describe("calls from inside the gateway", () => {
  it("are checked the same way: a call or spawn throws, a map input fails alone", async () => {
    expect(await fn("viaRemote").remote(1, 2)).toEqual({ value: 3 });
    expect(await fn("viaRemote").remote(1, "2")).toEqual({
      code: "invalid_argument",
      message: 'input.add: argument 2: Invalid input: expected number, received string (got "2")',
    });
    expect(await fn("viaSpawn").remote(2, 3)).toEqual({ value: 5 });
    expect(await fn("viaSpawn").remote(2, [3])).toMatchObject({ code: "invalid_argument" });
    expect(
      await fn("viaMap").remote([
        [1, 2],
        ["1", 2],
      ]),
    ).toEqual([3, { code: "invalid_argument" }]);
    expect(await fn("viaPlane").remote("x")).toMatchObject({ code: "invalid_argument" });
    expect(await fn("viaPlane").remote(2)).toMatchObject({ code: "plane_unavailable" }); // checked, then sent on
  });

  it("record a refused map input in the ledger as failed with invalid_argument", async () => {
    const res = await post("add/map", { inputs: [["a", 1]] });
    const line = JSON.parse((await res.text()).trim()) as { callId: string };
    let record: CallRecord | undefined;
    await eventually(async () => {
      const found = await fetch(`${gw.url}/v1/calls/${line.callId}`, authed()); // recorded after the answer
      if (found.ok) record = (await found.json()) as CallRecord;
      return found.ok;
    });
    expect(record).toMatchObject({ status: "failed", attempts: 1, error: { code: "invalid_argument" } });
  });
});

describe("a web app with hono's validator", () => {
  const signup = (body: unknown) =>
    fetch(`${gw.url}/input/forms/signup`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });

  it("answers a good request from its handler, with the validated body", async () => {
    const res = await signup({ name: "Ada", age: 36 });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ welcome: "Ada", age: 36 });
  });

  it("answers a bad one with its own 400, before the handler runs", async () => {
    const res = await signup({ name: "", age: 12 });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: "invalid signup",
      issues: ["name: Too small: expected string to have >=1 characters", "age: Too small: expected number to be >=13"],
    });
  });
});
