/**
 * The gateway in real workerd: calls, spawns, maps, errors, timeouts, retries,
 * cancellation, the ledger, web endpoints and every bad input, through the SDK
 * client and raw HTTP.
 */
import http from "node:http";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CancelledError,
  Dict,
  FunctionCall,
  FunctionTimeoutError,
  GetTimeoutError,
  InvalidRequestError,
  NotFoundError,
  PayloadTooLargeError,
  PlaneUnavailableError,
  RemoteError,
  lookup,
  type CallRecord,
} from "../sdk/index.js";
import { API_LIMITS } from "../sdk/defaults.js";
import { CALL_BODY_NOTE } from "../sdk/errors.js";
import { DASHBOARD, ROUTE_METHODS, ROUTES, decodeValue, type LogLine } from "../sdk/protocol.js";
import { ADMIN_TOKEN, authed, eventually, startTestGateway, streamThenDrop, type TestGateway } from "./helpers/gateway.js";

const APP = new URL("./fixtures/edge-app.ts", import.meta.url).pathname;
let gw: TestGateway;
const fn = <A extends unknown[] = any[], R = any>(name: string) => lookup<A, R>("edge", name, { gateway: gw.url });
const post = (path: string, body: string | undefined, headers: Record<string, string> = {}) =>
  fetch(gw.url + path, authed({ method: "POST", body, headers: { "content-type": "application/json", ...headers } }));
const ledger = async (id: string) => (await (await fetch(`${gw.url}/v1/calls/${id}`, authed())).json()) as CallRecord;
/** A body of `total` bytes sent chunked (no length declared), in 16 KiB pieces. */
const chunkedBody = (total: number, byte = 0x61) => {
  let left = total;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (left <= 0) return controller.close();
      const piece = new Uint8Array(Math.min(16 * 1024, left)).fill(byte);
      left -= piece.length;
      controller.enqueue(piece);
    },
  });
};
const postChunked = (path: string, total: number) => fetch(gw.url + path, authed({ method: "POST", body: chunkedBody(total), duplex: "half" } as RequestInit));
/** Nothing of the gateway's own insides: no stack frame, no file of this host. */
const expectNoInternals = (text: string) => {
  expect(text).not.toMatch(/\n\s+at |worker\.mjs|\/tmp\/|file:\/\//);
};

beforeAll(async () => {
  gw = await startTestGateway(APP, { bindings: { TANDEM_MAX_BODY_BYTES: "4096" } });
});
afterAll(async () => {
  await gw?.dispose();
});

describe("remote calls", () => {
  it("returns the handler's result", async () => {
    expect(await fn<[number, number], number>("add-numbers").remote(2, 3)).toBe(5);
  });

  it("round-trips bytes, dates, maps, sets and undefined through the gateway", async () => {
    const args = [
      new Uint8Array([0, 1, 254, 255]),
      new Date("2026-01-02T03:04:05.678Z"),
      new Map([["a", 1]]),
      new Set(["x", "y"]),
      undefined,
      { nested: [undefined, null, 1.5, "s"] },
    ];
    const back = await fn("echo").remote(...args);
    expect(back).toEqual(args);
    expect(back[0]).toBeInstanceOf(Uint8Array);
    expect(back[1]).toBeInstanceOf(Date);
    expect(await fn("nothing").remote()).toBeUndefined();
  });

  it("answers curl-style plain JSON and records the call in the ledger", async () => {
    const res = await post("/v1/apps/edge/functions/square/call", JSON.stringify({ args: [9] }));
    expect(res.status).toBe(200);
    const body = (await res.json()) as CallRecord;
    expect(body).toMatchObject({ status: "succeeded", result: 81, app: "edge", function: "square" });
    expect(res.headers.get("tandem-call-id")).toBe(body.callId);
    await eventually(async () => (await fetch(`${gw.url}/v1/calls/${body.callId}`, authed())).status === 200);
    expect(await ledger(body.callId)).toMatchObject({ status: "succeeded", result: 81, kind: "remote", attempts: 1 });
  });

  it("raises a RemoteError with the remote name, message and stack when the handler throws", async () => {
    const err = await fn("boom")
      .remote("over quota")
      .catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.message).toBe("over quota");
    expect(err.remoteName).toBe("QuotaExceeded");
    expect(err.remoteStack).toMatch(/^QuotaExceeded: over quota\n\s+at .*\(test\/fixtures\/edge-app\.ts:\d+:\d+\)/);
    expect(err.remoteStack).not.toContain("worker.mjs");
    const callId = (err as RemoteError).callId!;
    expect(callId).toMatch(/^fc-[0-9a-z]{26}$/);
    await eventually(async () => (await fetch(`${gw.url}/v1/calls/${callId}`, authed())).status === 200);
    expect(await ledger(callId)).toMatchObject({ status: "failed", error: { code: "function_failed", remote: { name: "QuotaExceeded" } } });
  });

  it("raises FunctionTimeoutError past the timeout and records the call as timed out", async () => {
    const err = await fn("slow")
      .remote(5_000)
      .catch((e) => e);
    expect(err).toBeInstanceOf(FunctionTimeoutError);
    expect(err.message).toContain("timed out after 1 s");
    const callId = (err as FunctionTimeoutError).callId!;
    expect(callId).toMatch(/^fc-[0-9a-z]{26}$/);
    await eventually(async () => (await fetch(`${gw.url}/v1/calls/${callId}`, authed())).status === 200);
    expect(await ledger(callId)).toMatchObject({ status: "timed_out", error: { code: "function_timeout" } });
  });

  it("retries a failing function with backoff until an attempt succeeds", async () => {
    const result = await fn("flaky").remote("t1", 2);
    expect(result).toEqual({ token: "t1", attempt: 3, call: 3 });
  });

  it("gives up after maxRetries and reports the last error", async () => {
    const err = await fn("flaky")
      .remote("t2", 5)
      .catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.message).toBe("attempt 3 of t2 failed");
    await eventually(async () => (await fetch(`${gw.url}/v1/calls/${err.details.callId}`, authed())).status === 200);
    expect(await ledger(err.details.callId)).toMatchObject({ status: "failed", attempts: 3 });
  });

  it("gives the function its call context and env", async () => {
    const me = await fn("whoami").remote();
    expect(me).toMatchObject({ app: "edge", function: "whoami", mode: "test" });
    expect(me.callId).toMatch(/^fc-[0-9a-z]{26}$/);
  });

  it("prefixes the function's console output with the function and call id", async () => {
    await fn("chatty").remote("pineapple");
    await eventually(() => gw.output.some((l) => /\[edge\.chatty fc-[0-9a-z]{26}\] saying pineapple/.test(l)));
  });

  it("answers 503 for a plane function while no plane is connected", async () => {
    const err = await fn("onGpu")
      .remote()
      .catch((e) => e);
    expect(err).toBeInstanceOf(PlaneUnavailableError);
  });

  it("lets a function call another function's map from inside the isolate", async () => {
    expect(await fn("sumViaRemote").remote([1, 2, 3])).toBe(14);
  });
});

describe("spawn and FunctionCall", () => {
  it("spawns, then gets the result through FunctionCall.fromId", async () => {
    const call = await fn("napping").spawn(200);
    expect(call.id).toMatch(/^fc-/);
    expect(await FunctionCall.fromId(call.id, { gateway: gw.url }).get({ timeoutMs: 10_000 })).toBe("slept 200");
  });

  it("get({ timeoutMs }) raises GetTimeoutError while the call goes on", async () => {
    const call = await fn("napping").spawn(1_500);
    await expect(call.get({ timeoutMs: 100 })).rejects.toBeInstanceOf(GetTimeoutError);
    expect(await call.get({ timeoutMs: 10_000 })).toBe("slept 1500");
  });

  it("cancel() ends the call as cancelled", async () => {
    const call = await fn("napping").spawn(3_000);
    await call.cancel();
    await expect(call.get({ timeoutMs: 5_000 })).rejects.toBeInstanceOf(CancelledError);
    expect(await ledger(call.id)).toMatchObject({ status: "cancelled", error: { code: "call_cancelled" } });
  });

  it("a spawned call's RemoteError comes back through get()", async () => {
    const call = await fn("boom").spawn("later");
    const err = await call.get({ timeoutMs: 10_000 }).catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.message).toBe("later");
    expect(err.callId).toBe(call.id);
  });
});

describe("a call's signal at the edge", () => {
  const aborts = () => Dict.fromName<string, string>("aborts", { gateway: gw.url });
  /** Whether the call's log has the function's line, written after its loop on the signal ended. */
  const sawAbort = async (callId: string, line: string) =>
    (await FunctionCall.fromId(callId, { gateway: gw.url }).logs({ source: "stdout" })).some((l) => l.text === line);

  it("cancel() aborts the signal of a running call with a CancelledError, and the code after its loop runs: its line logged, its dict written", async () => {
    const token = `cancel-${Date.now()}`;
    const call = await fn("watchful").spawn(token);
    await new Promise((r) => setTimeout(r, 500));
    const cancelled = Date.now();
    await call.cancel();
    await expect(call.get({ timeoutMs: 5_000 })).rejects.toBeInstanceOf(CancelledError);
    expect(Date.now() - cancelled).toBeLessThan(1_000);
    await eventually(() => sawAbort(call.id, `saw abort ${token}: cancelled`), 5_000);
    expect(await aborts().get(token)).toBe("cancelled");
    expect(await ledger(call.id)).toMatchObject({ status: "cancelled", error: { code: "call_cancelled" } });
    expect(gw.output.filter((l) => /different request/.test(l))).toEqual([]); // the cancel came in another request
  });

  it("a timeout aborts the signal with a FunctionTimeoutError, answers the caller at once, and the code after the loop runs", async () => {
    const token = `timeout-${Date.now()}`;
    const started = Date.now();
    const err = await fn("watchfulTimed")
      .remote(token)
      .catch((e) => e);
    expect(err).toBeInstanceOf(FunctionTimeoutError);
    expect(Date.now() - started).toBeLessThan(2_500); // the 1 s timeout, not its grace
    await eventually(() => sawAbort(err.callId, `saw abort ${token}: timed out`), 5_000);
    expect(await aborts().get(token)).toBe("timed out");
    expect(await ledger(err.callId)).toMatchObject({ status: "timed_out", error: { code: "function_timeout" } });
  });

  it("keeps a line its abort listener prints at the timeout in the call's log, as at a cancel", async () => {
    const token = `listener-${Date.now()}`;
    const err = await fn("listenerTimed")
      .remote(token)
      .catch((e) => e);
    expect(err).toBeInstanceOf(FunctionTimeoutError);
    // Before, the listener ran outside the call's context: the line went to the terminal alone, without its call.
    await eventually(() => sawAbort(err.callId, `listener saw ${token}: FunctionTimeoutError`), 5_000);
  });

  it("does the same for a call made without an idempotency key (curl's), which is recorded only once it has ended", async () => {
    const token = `plain-${Date.now()}`;
    const started = Date.now();
    const res = await post("/v1/apps/edge/functions/watchfulTimed/call", JSON.stringify({ args: [token] }));
    expect(res.status).toBe(504);
    expect(Date.now() - started).toBeLessThan(2_500);
    const { callId } = (await res.json()) as CallRecord;
    await eventually(() => sawAbort(callId, `saw abort ${token}: timed out`), 5_000);
    expect(await aborts().get(token)).toBe("timed out");
  });
});

describe("map and starmap", () => {
  it("maps in input order by default", async () => {
    const out: number[] = [];
    for await (const y of fn<[number], number>("square").map([1, 2, 3, 4, 5])) out.push(y);
    expect(out).toEqual([1, 4, 9, 16, 25]);
  });

  it("yields every result when orderOutputs is false", async () => {
    const out: number[] = [];
    for await (const y of fn<[number], string>("napping").map([300, 10, 150], { orderOutputs: false })) out.push(y as unknown as number);
    expect(out).toEqual(["slept 10", "slept 150", "slept 300"]);
  });

  it("returns exceptions in place with returnExceptions, and throws without it", async () => {
    const out: unknown[] = [];
    for await (const y of fn<[number], number>("failOdd").map([2, 3, 4], { returnExceptions: true })) out.push(y);
    expect(out[0]).toBe(20);
    expect(out[1]).toBeInstanceOf(RemoteError);
    expect((out[1] as RemoteError).message).toBe("odd input 3");
    expect(out[2]).toBe(40);
    const consume = async () => {
      for await (const _ of fn("failOdd").map([2, 3])) void _;
    };
    await expect(consume()).rejects.toThrow("odd input 3");
  });

  it("splits a map request the gateway refuses as too large, and fails an input too large alone by itself", async () => {
    // This gateway takes 4,096 bytes a request: six inputs of 1,500 go in smaller requests, all of them run.
    const inputs = ["a", "b", "c", "d", "e", "f"].map((c) => c.repeat(1_500));
    const out: number[] = [];
    for await (const y of fn<[string], number>("lengthOf").map(inputs)) out.push(y);
    expect(out).toEqual(inputs.map((s) => s.length));
    const mixed: unknown[] = [];
    for await (const y of fn<[string], number>("lengthOf").map(["x", "y".repeat(5_000), "zz"], { returnExceptions: true }))
      mixed.push(y instanceof Error ? (y as Error & { code?: string }).code : y);
    expect(mixed).toEqual([1, "payload_too_large", 2]);
  });

  it("says what a call's arguments encode to when they are too large, binary data counting as base64", async () => {
    // 3,100 bytes are 4,136 as base64: over this gateway's 4,096 with the request around them.
    const err = await fn("lengthOf")
      .remote(new Uint8Array(3_100))
      .then(
        () => undefined,
        (e: unknown) => e as PayloadTooLargeError,
      );
    expect(err).toBeInstanceOf(PayloadTooLargeError);
    expect(err!.message).toMatch(
      /^edge\.lengthOf: its arguments encode to 4\d{3} bytes \(4\.\d kB\): request body is larger than 4096 bytes, the most this gateway accepts \(TANDEM_MAX_BODY_BYTES\): a call's arguments count as they travel, as JSON, binary data \(a Uint8Array, a Buffer\) about 4\/3 of its bytes as base64; pass large data by reference instead \(a volume's file\)$/,
    );
    await expect(fn("lengthOf").spawn(new Uint8Array(3_100))).rejects.toThrow("edge.lengthOf: its arguments encode to");
    const mapped: unknown[] = [];
    for await (const y of fn("lengthOf").map(["x", new Uint8Array(3_100)], { returnExceptions: true })) mapped.push(y);
    expect((mapped[1] as Error).message).toMatch(/^edge\.lengthOf: inputs\[1\] encode to 4\d{3} bytes .*about 4\/3 of its bytes as base64/);
    // A caller over HTTP is told what counts, too.
    const res = await fetch(
      `${gw.url}/v1/apps/edge/functions/lengthOf/call`,
      authed({ method: "POST", body: JSON.stringify({ args: ["x".repeat(5_000)] }), headers: { "content-type": "application/json" } }),
    );
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).error.message).toBe(
      `request body is larger than 4096 bytes, the most this gateway accepts (TANDEM_MAX_BODY_BYTES): ${CALL_BODY_NOTE}`,
    );
  });

  it("starmap spreads each tuple into arguments, from an async iterable too", async () => {
    async function* tuples() {
      yield [1, 2] as [number, number];
      yield [3, 4] as [number, number];
    }
    const out: number[] = [];
    for await (const y of fn<[number, number], number>("add-numbers").starmap(tuples())) out.push(y);
    expect(out).toEqual([3, 7]);
  });

  it("maps more inputs than one request carries", async () => {
    const inputs = Array.from({ length: 600 }, (_, i) => i);
    let count = 0;
    let last = -1;
    for await (const y of fn<[number], number>("square").map(inputs)) {
      expect(y).toBe(count * count);
      last = y;
      count++;
    }
    expect(count).toBe(600);
    expect(last).toBe(599 * 599);
  });
});

describe("generator functions", () => {
  it("streams the chunks a generator yields, in order", async () => {
    const out: string[] = [];
    for await (const t of fn<[number], AsyncGenerator<string>>("tokens").remoteGen(5)) out.push(t);
    expect(out).toEqual(["tok-0", "tok-1", "tok-2", "tok-3", "tok-4"]);
  });

  it("sends each chunk before the generator has finished", async () => {
    const stream = fn("gated").remoteGen()[Symbol.asyncIterator]();
    expect(await stream.next()).toEqual({ value: "first", done: false });
    await fn("release").remote();
    expect(await stream.next()).toEqual({ value: "second", done: false });
    expect((await stream.next()).done).toBe(true);
  });

  it("gives the chunks so far, then the error, when the generator throws midway", async () => {
    const got: unknown[] = [];
    const err = await (async () => {
      for await (const x of fn("tokensThenBoom").remoteGen(3)) got.push(x);
    })().catch((e) => e);
    expect(got).toEqual([0, 1, 2]);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.message).toBe("broke after 3");
  });

  it("stops the generator when the caller stops reading", async () => {
    let n = 0;
    for await (const _ of fn("endless").remoteGen()) if (++n === 3) break;
    await new Promise((r) => setTimeout(r, 300));
    const after = await fn<[], number>("endlessCount").remote();
    await new Promise((r) => setTimeout(r, 300));
    expect(await fn<[], number>("endlessCount").remote()).toBe(after); // no longer producing
    expect(after).toBeLessThan(20);
  });

  it("names its call from the first chunk on: the id a cancel from elsewhere takes (before: only the raw header had it)", async () => {
    const stream = fn("endless").remoteGen();
    expect(stream.callId).toBeUndefined(); // not begun: nothing has asked for a chunk
    const chunks = stream[Symbol.asyncIterator]();
    await chunks.next();
    expect(stream.callId).toMatch(/^fc-[0-9a-z]{26}$/);
    await eventually(async () => (await fetch(`${gw.url}/v1/calls/${stream.callId}`, authed())).status === 202); // recorded running
    await FunctionCall.fromId(stream.callId!, { gateway: gw.url }).cancel();
    const err = await (async () => {
      for (let i = 0; i < 10_000; i++) if ((await chunks.next()).done) return "ended";
      return "still going";
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CancelledError);
    expect(await ledger(stream.callId!)).toMatchObject({ kind: "stream", status: "cancelled" });
  });

  it("stops the generator, runs its finally and records the call as cancelled when the client drops the connection mid-stream", async () => {
    const finallyBefore = await fn<[], number>("endlessFinallyCount").remote();
    const callId = await streamThenDrop(`${gw.url}/v1/apps/edge/functions/endless/stream`, { authorization: `Bearer ${ADMIN_TOKEN}` });
    await eventually(async () => (await fn<[], number>("endlessFinallyCount").remote()) === finallyBefore + 1);
    await eventually(async () => (await fetch(`${gw.url}/v1/calls/${callId}`, authed())).status === 200);
    const record = await ledger(callId);
    expect(record).toMatchObject({ kind: "stream", status: "cancelled", error: { code: "call_cancelled" } });
    expect(record.error!.message).toMatch(/^the caller stopped reading once \d+ chunks? (was|were) sent$/);
    // Said in its logs too, as a failure or a timeout is (before: its lines ended with the function's own).
    const logs = await (await fetch(`${gw.url}/v1/calls/${callId}/logs`, authed())).text();
    expect(
      logs
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as LogLine)
        .filter((l) => l.source === "system")
        .map((l) => l.text),
    ).toEqual([`cancelled: ${record.error!.message}`]);
    // Its signal aborted before its `finally` ran, as a cancelled call's does (before, a streamed edge call had none).
    expect(await fn<[], string>("endlessAbortReason").remote()).toBe("CancelledError");
  });

  it("ends a stream at its timeout while its generator waits inside a step, then runs the generator's finally, its signal aborted", async () => {
    const got: unknown[] = [];
    const started = Date.now();
    const err = await (async () => {
      for await (const chunk of fn<[number], AsyncGenerator<string>>("stalling").remoteGen(6_000)) got.push(chunk);
    })().catch((e: unknown) => e);
    expect(got).toEqual(["first"]);
    expect(err).toBeInstanceOf(FunctionTimeoutError);
    // At its 1 s timeout, not when the 6 s step ended (before, the answer waited for the generator to return).
    expect(Date.now() - started).toBeLessThan(5_000);
    await eventually(async () => (await fn<[], string>("stallingFinally").remote()) === "FunctionTimeoutError", 15_000);
    // Its system line, as a call's timeout has (before, a stream's had none).
    const logs = async () => (await fetch(`${gw.url}/v1/apps/edge/logs?call=${(err as FunctionTimeoutError).callId}`, authed())).text();
    await eventually(async () => /"source":"system".*timed out/.test(await logs()));
  }, 30_000);

  it("streams through a web endpoint as Server-Sent Events", async () => {
    const res = await fetch(`${gw.url}/edge/sse/3`);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    expect(await res.text()).toBe('data: "tok-0"\n\ndata: "tok-1"\n\ndata: "tok-2"\n\nevent: done\ndata: null\n\n');
  });

  it("stops a function's stream behind a web endpoint, runs its finally and records the call as cancelled when the client drops the connection", async () => {
    const finallyBefore = await fn<[], number>("endlessFinallyCount").remote();
    await streamThenDrop(`${gw.url}/edge/endless-sse`, {}, 3, "GET");
    await eventually(async () => (await fn<[], number>("endlessFinallyCount").remote()) === finallyBefore + 1);
    const callId = await fn<[], string>("endlessLastCall").remote();
    await eventually(async () => (await fetch(`${gw.url}/v1/calls/${callId}`, authed())).status === 200);
    expect(await ledger(callId)).toMatchObject({ kind: "stream", status: "cancelled", error: { code: "call_cancelled" } });
  });

  it("stops a web endpoint's own generator and runs its finally when the client drops the connection", async () => {
    const before = await fn<[], number>("ownFinallyCount").remote();
    await streamThenDrop(`${gw.url}/edge/own-endless`, {}, 3, "GET");
    await eventually(async () => (await fn<[], number>("ownFinallyCount").remote()) === before + 1);
  });

  it("says to use remoteGen for a generator, and remote for the rest", async () => {
    const remote = await fn("tokens")
      .remote(2)
      .catch((e) => e);
    expect(remote).toBeInstanceOf(InvalidRequestError);
    expect(remote.message).toContain("is a generator function; stream it with .remoteGen()");
    const gen = await (async () => {
      for await (const _ of fn("square").remoteGen(2)) void _;
    })().catch((e) => e);
    expect(gen).toBeInstanceOf(InvalidRequestError);
    expect(gen.message).toContain("is not a generator function");
    // Declared generators are known when the app loads: spawn refuses one at once, and the app's manifest says which they are.
    const spawned = await post("/v1/apps/edge/functions/tokens/spawn", JSON.stringify({ args: [2] }));
    expect(spawned.status).toBe(400);
    expect(((await spawned.json()) as any).error.message).toBe("edge.tokens is a generator function; stream it with .remoteGen() (POST .../stream)");
    const manifest = (await (await fetch(`${gw.url}/v1/apps/edge`, authed())).json()) as { functions: { name: string; generator: boolean }[] };
    expect(manifest.functions.find((f) => f.name === "tokens")?.generator).toBe(true);
    expect(manifest.functions.find((f) => f.name === "square")?.generator).toBe(false);
    // Over HTTP: a 400 with the error, as a call answers, not a 200 stream holding it.
    const res = await post("/v1/apps/edge/functions/square/stream", JSON.stringify({ args: [2] }));
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error).toMatchObject({ code: "invalid_request", message: expect.stringContaining("is not a generator function") });
  });
});

/** A GET of `path` exactly as written, dot segments and empty ones included (fetch would normalise them away). */
function rawGet(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(gw.url);
    const req = http.get({ host: url.hostname, port: url.port, path }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
  });
}

describe("web endpoints", () => {
  it("serves a mounted hono app under /<app>/<label>/", async () => {
    expect(await (await fetch(`${gw.url}/edge/api/`)).json()).toEqual({ ok: true });
    expect(await (await fetch(`${gw.url}/edge/api/square/12`)).json()).toEqual({ result: 144 });
  });

  it("serves app.endpoint handlers with path parameters and JSON bodies", async () => {
    expect(await (await fetch(`${gw.url}/edge/hello/Ada`)).json()).toEqual({ hello: "Ada" });
    const res = await fetch(`${gw.url}/edge/submit`, { method: "POST", body: JSON.stringify({ n: 1 }) });
    expect(await res.json()).toEqual({ got: { n: 1 } });
  });

  it("gives an app's endpoints and web apps none of the gateway's bindings (its admin token, plane secret, secrets key)", async () => {
    // Before: TANDEM_ADMIN_TOKEN, TANDEM_PLANE_SECRET, TANDEM_SECRETS_KEY, LEDGER, … to anyone who asked a debug route.
    expect(await (await fetch(`${gw.url}/edge/bindings`)).json()).toEqual([]);
    expect(await (await fetch(`${gw.url}/edge/api/bindings`)).json()).toEqual([]);
    // The gateway's own work for the endpoint still has them: a function call from it answers.
    expect(await (await fetch(`${gw.url}/edge/api/square/3`)).json()).toEqual({ result: 9 });
  });

  it("answers 500 with the message but not the stack when an endpoint throws", async () => {
    const res = await fetch(`${gw.url}/edge/broken`);
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: { code: string; message: string; remote: { stack?: string } } };
    expect(body.error).toMatchObject({ code: "function_failed", message: "endpoint exploded" });
    expect(body.error.remote.stack).toBeUndefined();
  });

  it("answers a Tandem error an endpoint lets through with its own code and status, as /v1 does, not 500 function_failed", async () => {
    const timedOut = await fetch(`${gw.url}/edge/passesTimeout`);
    expect(timedOut.status).toBe(504);
    const timeout = ((await timedOut.json()) as any).error;
    expect(timeout).toMatchObject({ code: "function_timeout", message: expect.stringMatching(/^edge\.slow timed out after 1 s/) });
    expect(timeout.details).toBeUndefined(); // an endpoint may be public: no log tail, plane or call id of the inner call
    const badId = await fetch(`${gw.url}/edge/passesBadId/not-an-id`);
    expect(badId.status).toBe(400);
    expect(((await badId.json()) as any).error).toMatchObject({ code: "invalid_request", message: expect.stringContaining('"not-an-id" is not a call id') });
  });

  it("answers a function's own error an endpoint lets through with its name and message, not the call's id or stack", async () => {
    const res = await fetch(`${gw.url}/edge/passesFailure`);
    expect(res.status).toBe(500);
    const error = ((await res.json()) as any).error;
    expect(error).toMatchObject({ code: "function_failed", message: "from a public endpoint", remote: { name: "QuotaExceeded" } });
    expect([error.details, error.remote.stack]).toEqual([undefined, undefined]); // before: details.callId of the inner call
  });

  it("answers an HTTPException an endpoint throws with its own status, message or response, and the headers the handler set", async () => {
    const message = await fetch(`${gw.url}/edge/refused/message`);
    expect([message.status, message.headers.get("x-seen"), await message.text()]).toEqual([403, "yes", "not yours"]);
    const own = await fetch(`${gw.url}/edge/refused/response`);
    expect([own.status, own.headers.get("www-authenticate"), own.headers.get("x-seen"), await own.text()]).toEqual([
      401,
      'Bearer realm="edge"',
      "yes",
      "log in first",
    ]);
  });

  it("answers 500 naming the endpoint when its handler returns a value JSON cannot write (a function), not an empty 200", async () => {
    const res = await fetch(`${gw.url}/edge/unjsonable`);
    expect(res.status).toBe(500);
    expect(((await res.json()) as any).error).toMatchObject({
      code: "function_failed",
      message: 'endpoint "unjsonable" of app "edge" returned a function, which JSON leaves out: return data, a Response, or nothing (204)',
    });
  });

  it("answers 500 naming the path and what to return instead when a returned value holds what JSON would drop or change, anywhere in it", async () => {
    const refusal = async (which: string) => {
      const res = await fetch(`${gw.url}/edge/unfaithful/${which}`);
      expect(res.status).toBe(500);
      return ((await res.json()) as any).error as { code: string; message: string };
    };
    const said = (what: string) => `endpoint "unfaithful" of app "edge" returned ${what}`;
    expect(await refusal("fn")).toMatchObject({
      code: "function_failed",
      message: `${said("a function (at .f)")}, which JSON leaves out: return data, a Response, or nothing (204)`,
    });
    expect((await refusal("map")).message).toBe(
      `${said("a Map (at .m)")}, which JSON writes as {}: return Object.fromEntries(map), or [...map] for its entries`,
    );
    expect((await refusal("set")).message).toBe(`${said("a Set (at .rows[0].tags)")}, which JSON writes as {}: return [...set]`);
    expect((await refusal("bytes")).message).toBe(
      `${said("a Uint8Array (at .data)")}, which JSON writes as an object of indexes, or {}: return Array.from(it), or the bytes as a Response`,
    );
    expect((await refusal("nan")).message).toBe(`${said("NaN (at .ratio[1])")}, which JSON writes as null: return null or a string`);
    expect((await refusal("error")).message).toMatch(`${said("an Error (at .at)")}, which JSON writes as {}`);
    // What JSON does by its plain rules stays: an undefined field is left out, a Date is its ISO string, a class's
    // instance its own fields.
    const plain = await fetch(`${gw.url}/edge/unfaithful/plain`);
    expect([plain.status, await plain.json()]).toEqual([200, { d: "1970-01-01T00:00:00.000Z", list: [1, "two", null, { deep: true }], at: { x: 1 } }]);
    // A chunk an endpoint's own generator yields is checked as it goes out, and ends the events with the error.
    const events = await (await fetch(`${gw.url}/edge/unfaithful-chunks`)).text();
    expect(events).toContain('data: {"n":1}');
    expect(events).toMatch(/event: error\ndata: .*endpoint \\"unfaithful-chunks\\" of app \\"edge\\" yielded a Map \(at \.m\)/);
    expect(events).toContain("which JSON writes as {}: yield Object.fromEntries(map)"); // what a generator does instead (before: "return")
    expect(events).not.toContain('"n":3');
    // The generator is returned, its `finally` run, as for a client that goes (before: left at its yield for good, a
    // remote stream it read recorded running).
    await eventually(() => gw.output.some((line) => line.includes("unfaithful-chunks returned")), 5_000);
  });

  it("answers 400 naming the problem when a handler's c.req.json() or parseBody() meets a body that does not parse, not a 500 for the handler", async () => {
    const send = async (path: string, body: string, type: string) => {
      const res = await fetch(`${gw.url}${path}`, { method: "POST", body, headers: { "content-type": type } });
      return [res.status, await res.json()];
    };
    expect(await send("/edge/submit", '{"n":', "application/json")).toEqual([
      400,
      { error: { code: "invalid_request", message: expect.stringMatching(/^request body is not valid JSON: .*JSON/) } },
    ]);
    expect(await send("/edge/submit", "", "application/json")).toEqual([400, { error: expect.objectContaining({ code: "invalid_request" }) }]);
    expect(await send("/edge/form", "name=Ada", "multipart/form-data")).toEqual([
      400,
      { error: { code: "invalid_request", message: expect.stringMatching(/^request body is not a form its content-type describes: .*boundary/) } },
    ]);
    expect(await send("/edge/form", "garbage", "multipart/form-data; boundary=xyz")).toEqual([
      400,
      { error: expect.objectContaining({ code: "invalid_request" }) },
    ]);
    // Well-formed bodies parse as before; a handler that catches the error sees it as it was, and answers as it likes.
    expect(await send("/edge/form", "name=Ada&n=1", "application/x-www-form-urlencoded")).toEqual([200, { got: { name: "Ada", n: "1" } }]);
    expect(await send("/edge/lenient", "{", "application/json")).toEqual([200, { caught: "SyntaxError" }]);
    expect(await send("/edge/lenient", '{"n":2}', "application/json")).toEqual([200, { got: { n: 2 } }]);
  });

  it("answers a c.req.json() of bytes that are not UTF-8 with /v1's 400, not with U+FFFD in their place", async () => {
    const latin1 = new Uint8Array([...new TextEncoder().encode('{"a":"'), 0xff, 0xfe, ...new TextEncoder().encode('"}')]);
    const send = async (path: string, body: BodyInit) => {
      const res = await fetch(`${gw.url}${path}`, authed({ method: "POST", body, headers: { "content-type": "application/json" } }));
      return [res.status, await res.json()];
    };
    const refusal = { error: { code: "invalid_request", message: "request body is not UTF-8 text: send JSON encoded as UTF-8" } };
    expect(await send("/edge/submit", latin1)).toEqual([400, refusal]);
    expect(await send("/v1/apps/edge/functions/echo/call", latin1)).toEqual([400, refusal]);
    // A handler that catches it gets the refusal; UTF-8 (a BOM before it too) reads as it did.
    expect(await send("/edge/lenient", latin1)).toEqual([200, { caught: "InvalidRequestError" }]);
    expect(await send("/edge/submit", new TextEncoder().encode('\uFEFF{"a":"é"}'))).toEqual([200, { got: { a: "é" } }]);
  });

  it("refuses a c.req.json() too deep or with a number out of range as /v1 does (before: Infinity reached the handler, and any depth was parsed)", async () => {
    const send = async (path: string, body: string) => {
      const res = await fetch(`${gw.url}${path}`, authed({ method: "POST", body, headers: { "content-type": "application/json" } }));
      return [res.status, await res.json()];
    };
    for (const path of ["/edge/submit", "/v1/apps/edge/functions/echo/call"]) {
      const deep = await send(path, `{"args":[${"[".repeat(600)}${"]".repeat(600)}]}`);
      expect(deep).toEqual([
        400,
        { error: expect.objectContaining({ code: "invalid_request", message: expect.stringContaining("more than 512 levels deep") }) },
      ]);
      const huge = await send(path, '{"args":[1e999]}');
      expect(huge).toEqual([
        400,
        { error: expect.objectContaining({ code: "invalid_request", message: expect.stringContaining("beyond the range of a 64-bit float") }) },
      ]);
    }
    expect(await send("/edge/submit", '{"a":1e308}')).toEqual([200, { got: { a: 1e308 } }]);
    expect(await send("/edge/lenient", '{"a":-1e999}')).toEqual([200, { caught: "InvalidRequestError" }]);
  });

  it("answers a GET that carries a body (an empty one with content-length: 0, or a few bytes) as it answers one without", async () => {
    const get = (path: string, body: string) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = http.request(`${gw.url}${path}`, { method: "GET", headers: { "content-length": String(body.length) } }, (res) => {
          let text = "";
          res.on("data", (d) => (text += d));
          res.on("end", () => resolve({ status: res.statusCode!, text }));
        });
        req.on("error", reject);
        req.end(body);
      });
    for (const body of ["", "x"]) {
      expect(await get("/edge/hello/Ada", body)).toEqual({ status: 200, text: JSON.stringify({ hello: "Ada" }) });
      expect(await get("/edge/api/square/12", body)).toEqual({ status: 200, text: JSON.stringify({ result: 144 }) });
    }
  });

  it("answers 404 naming an unknown app or label", async () => {
    const app = await fetch(`${gw.url}/nosuchapp/x`);
    expect(app.status).toBe(404);
    expect(((await app.json()) as any).error.message).toContain('no app named "nosuchapp"');
    const label = await fetch(`${gw.url}/edge/nosuchlabel/`);
    expect(label.status).toBe(404);
    expect(((await label.json()) as any).error.message).toContain('no web endpoint "nosuchlabel"');
    // A known app with an empty label is that app's, not an unknown one; a dot segment sent encoded is named as sent.
    const asSent = async (path: string) => {
      const res = await rawGet(path);
      return `${res.status} ${JSON.parse(res.body).error.message}`;
    };
    for (const path of ["/edge", "/edge/", "/edge//hello/Ada"]) {
      expect(await asSent(path)).toMatch(/^404 app "edge" serves its endpoints under \/edge\/<label> \(endpoints: /);
    }
    expect(await asSent("/edge/hello/%2e%2e/Ada")).toBe('404 endpoint "hello" of app "edge" does not serve GET /../Ada (it serves GET /:name)');
    // A dashboard page that is not one is the dashboard's 404, not an app named "_tandem".
    const link = (await (await fetch(`${gw.url}/v1/dashboard/login-code`, authed({ method: "POST" }))).json()) as { url: string };
    const cookie = (await fetch(link.url, { redirect: "manual" })).headers.get("set-cookie")!.split(";")[0]!;
    const page = await fetch(`${gw.url}/_tandem/tokens`, { headers: { cookie } });
    expect([page.status, await page.text()]).toEqual([404, expect.stringContaining("the dashboard has no page /_tandem/tokens (pages: /_tandem/, ")]);
    // A first segment that is not valid percent-encoding is an unknown app too, named as it was sent.
    const malformed = await fetch(`${gw.url}/%E0%A4%A/x`);
    expect([malformed.status, ((await malformed.json()) as any).error]).toEqual([
      404,
      expect.objectContaining({ code: "not_found", message: expect.stringContaining('no app named "%E0%A4%A"') }),
    ]);
  });

  it("answers 500 naming what a mounted app's handler returned when it is not a Response, and stops the stream it returned", async () => {
    const res = await fetch(`${gw.url}/edge/api/stream`);
    expect([res.status, ((await res.json()) as any).error]).toEqual([
      500,
      {
        code: "function_failed",
        message:
          'web "api" of app "edge" answered GET /stream with an async iterable (RemoteStream), not a Response: return a Response (c.body(...), c.json(...), c.text(...)), or serve it from app.endpoint, which answers an async iterable with Server-Sent Events',
        remote: { name: "TypeError", message: expect.stringContaining("not a Response") },
      },
    ]);
    // A stream begun before it was returned is stopped: its generator's finally runs, and its call is recorded as cancelled.
    const finallyBefore = await fn<[], number>("endlessFinallyCount").remote();
    const begun = await fetch(`${gw.url}/edge/api/stream-begun`);
    expect([begun.status, ((await begun.json()) as any).error.message]).toEqual([500, expect.stringContaining("with an async iterable (RemoteStream)")]);
    await eventually(async () => (await fn<[], number>("endlessFinallyCount").remote()) === finallyBefore + 1);
    const callId = await fn<[], string>("endlessLastCall").remote();
    await eventually(async () => (await fetch(`${gw.url}/v1/calls/${callId}`, authed())).status === 200);
    expect(await ledger(callId)).toMatchObject({ kind: "stream", status: "cancelled" });
    // Behind middleware that rebuilds what the route returned as a Response (hono's cors()): a 500, not an empty 200,
    // its log naming the mistake, and the stream stopped.
    const finallyBeforeCors = await fn<[], number>("endlessFinallyCount").remote();
    const behindCors = await fetch(`${gw.url}/edge/api/cors/stream`);
    expect([behindCors.status, await behindCors.text()]).toEqual([500, "Internal Server Error"]);
    await eventually(() => gw.output.join("\n").includes("edge.endless.remoteGen() was returned where a Response was due"));
    await eventually(async () => (await fn<[], number>("endlessFinallyCount").remote()) === finallyBeforeCors + 1);
    // The log says what the answer says, not workerd's TypeError about a Promise.
    expect(gw.output.join("\n")).not.toContain("did not resolve to 'Response'");
  });

  it("keeps a path with a dot segment sent encoded inside the web app it was routed to: 400, never another endpoint", async () => {
    for (const path of [
      "/edge/api/%2e%2e/hello/Ada",
      "/edge/api/%2E%2E/submit",
      "/edge/api/.%2e/hello/Ada",
      "/edge/api/%2e%2e",
      "/edge/api/%2e%2e/%2e%2e/edge/hello/Ada",
    ]) {
      const res = await rawGet(path);
      expect([res.status, JSON.parse(res.body).error]).toEqual([
        400,
        expect.objectContaining({ code: "invalid_request", message: expect.stringContaining("mount") }),
      ]);
    }
    // An encoded slash ends no segment: the mounted app gets the path as sent, and answers it as its own (404 here).
    expect(await rawGet("/edge/api/..%2fhello/Ada")).toEqual({ status: 404, body: "404 Not Found" });
    expect(await rawGet("/edge/api/..%2f..%2fedge/hello/Ada")).toEqual({ status: 404, body: "404 Not Found" });
  });
});

describe("bad input", () => {
  it("answers 400 naming the problem for malformed JSON", async () => {
    const res = await post("/v1/apps/edge/functions/square/call", '{"args": [1');
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error).toMatchObject({ code: "invalid_request", message: expect.stringContaining("not valid JSON") });
  });

  it("answers 400 naming the field for a wrongly shaped body", async () => {
    const notArray = await post("/v1/apps/edge/functions/square/call", JSON.stringify({ args: 5 }));
    expect(notArray.status).toBe(400);
    expect(((await notArray.json()) as any).error.message).toContain('"args"');
    const extra = await post("/v1/apps/edge/functions/square/call", JSON.stringify({ args: [], argz: 1 }));
    expect(extra.status).toBe(400);
    expect(((await extra.json()) as any).error.message).toContain('unknown field "argz"; did you mean "args"?');
    const badMeta = await post("/v1/apps/edge/functions/echo/call", JSON.stringify({ args: [1], meta: { values: { "0": ["nonsense-type"] } } }));
    expect(badMeta.status).toBe(400);
    // Whichever tier would run the function (onGpu runs on a plane): the gateway sends a plane's arguments on as
    // they came, but still answers a meta that does not fit them itself.
    const badPlaneMeta = await post("/v1/apps/edge/functions/onGpu/call", JSON.stringify({ args: [1], meta: { values: { "0": ["nonsense-type"] } } }));
    expect(badPlaneMeta.status).toBe(400);
    expect(((await badPlaneMeta.json()) as any).error.message).toContain('"meta" does not describe "args"');
    const mapShape = await post("/v1/apps/edge/functions/square/map", JSON.stringify({ inputs: [1, 2] }));
    expect(mapShape.status).toBe(400);
    const call = await fn("napping").spawn(10);
    const cancelShape = await post(`/v1/calls/${call.id}/cancel`, JSON.stringify({ terminateContainer: "yes" }));
    expect(cancelShape.status).toBe(400);
    expect(((await cancelShape.json()) as any).error.message).toBe('request body has the wrong shape: field "terminateContainer" must be true or false');
  });

  it("answers 404 naming an unknown app or function", async () => {
    const app = await post("/v1/apps/ghost/functions/square/call", "{}");
    expect(app.status).toBe(404);
    expect(((await app.json()) as any).error.message).toContain('no app named "ghost"');
    const err = await fn("ghostly")
      .remote()
      .catch((e) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toContain('app "edge" has no function "ghostly"');
    // A long name is echoed cut, as an unknown app's is (before: all 300 characters of it).
    const long = await post(`/v1/apps/edge/functions/${"g".repeat(300)}/call`, "{}");
    expect(long.status).toBe(404);
    expect(((await long.json()) as any).error.message).toContain(`app "edge" has no function "${"g".repeat(80)}…" (functions: `);
    // Named as routed: the URL parser's normalised path ("/v1/apps/ghost") is a route, and would say there is none.
    const dotted = await rawGet("/v1/apps/edge/%2e%2e/ghost");
    expect([dotted.status, JSON.parse(dotted.body).error.message]).toEqual([404, "no such API route: GET /v1/apps/edge/../ghost (see docs/api.md)"]);
  });

  it("answers 413 for a body over the limit, declared or streamed", async () => {
    const big = JSON.stringify({ args: ["x".repeat(5000)] });
    const declared = await post("/v1/apps/edge/functions/echo/call", big);
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as any).error.code).toBe("payload_too_large");
    const chunked = await fetch(
      `${gw.url}/v1/apps/edge/functions/echo/spawn`,
      authed({
        method: "POST",
        body: new Blob([big]).stream(),
        duplex: "half",
      } as RequestInit),
    );
    expect(chunked.status).toBe(413);
  });

  it("answers 405 naming the method a known route takes", async () => {
    const res = await fetch(`${gw.url}/v1/apps/edge/functions/square/call`, authed());
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
    expect(((await res.json()) as any).error).toMatchObject({ code: "method_not_allowed", message: expect.stringContaining("takes POST, not GET") });
    // Named as sent and routed: "%2e%2e" is a function's name here (before: "/v1/apps/edge/call takes POST", a 404).
    const raw = await new Promise<string>((resolve, reject) => {
      const { port } = new URL(gw.url);
      const path = "/v1/apps/edge/functions/%2e%2e/call";
      const req = http.request({ host: "127.0.0.1", port, path, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }, (r) => {
        let body = "";
        r.on("data", (d: Buffer) => (body += d.toString()));
        r.on("end", () => resolve(`${r.statusCode} ${body}`));
      });
      req.on("error", reject);
      req.end();
    });
    expect(raw).toBe('405 {"error":{"code":"method_not_allowed","message":"/v1/apps/edge/functions/%2e%2e/call takes POST, not GET"}}');
  });

  it("answers 405 with an allow header on every /v1 route asked with a method it does not take", async () => {
    const params: Record<string, string> = {
      app: "edge",
      fn: "square",
      id: "fc-00000000000000000000000000",
      hash: "0".repeat(64),
      volume: "vol",
      dict: "d",
      queue: "q",
      op: "get",
      version: "1",
    };
    const wrong: string[] = [];
    for (const [name, methods] of Object.entries(ROUTE_METHODS)) {
      const path = ROUTES[name as keyof typeof ROUTES].replace(/:(\w+)/g, (_, p: string) => params[p]!);
      const taken = methods as readonly string[];
      const method = taken.includes("GET") ? (taken.includes("PUT") ? "PATCH" : "PUT") : "GET";
      const res = await fetch(gw.url + path, { method });
      const allow = (methods as readonly string[]).flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m])).join(", ");
      if (res.status !== 405 || res.headers.get("allow") !== allow) wrong.push(`${method} ${path}: ${res.status} allow=${res.headers.get("allow")}`);
    }
    expect(wrong).toEqual([]);
  });

  it("says its protocol version on every /v1 answer: a call's, an error's, a stream's and a log read's", async () => {
    const answers = {
      call: await post("/v1/apps/edge/functions/square/call", JSON.stringify({ args: [3] })),
      error: await post("/v1/apps/edge/functions/nope/call", JSON.stringify({ args: [] })),
      stream: await post("/v1/apps/edge/functions/tokens/stream", JSON.stringify({ args: [2] })),
      logs: await fetch(`${gw.url}/v1/apps/edge/logs?limit=1`, authed()), // a `Response` the route makes itself
    };
    const said = Object.fromEntries(Object.entries(answers).map(([k, res]) => [k, `${res.status} ${res.headers.get("tandem-protocol")}`]));
    await Promise.all(Object.values(answers).map((res) => res.text()));
    expect(said).toEqual({ call: "200 1", error: "404 1", stream: "200 1", logs: "200 1" });
  });

  it("says its protocol version on the errors of the checks before any route: a protocol it does not speak, a bad Tandem-Env", async () => {
    const version = await post("/v1/apps/edge/functions/square/call", JSON.stringify({ args: [1] }), { "tandem-protocol": "2" });
    const env = await fetch(`${gw.url}/v1/apps`, authed({ headers: { "tandem-env": "BAD" } }));
    const twice = await fetch(`${gw.url}/v1/usage?since=1h&since=2h`, authed());
    const said = [version, env, twice].map((res) => `${res.status} ${res.headers.get("tandem-protocol")}`);
    await Promise.all([version, env, twice].map((res) => res.text()));
    expect(said).toEqual(["400 1", "400 1", "400 1"]);
  });

  it("answers a preflight that carries a body, or a Tandem-Preflight that is not 1, 400, and runs nothing", async () => {
    const token = `preflight-${Date.now()}`;
    const call = (headers: Record<string, string>, body: string | undefined = JSON.stringify({ args: [token, 0] })) =>
      post("/v1/apps/edge/functions/countedNap/call", body, headers);
    const withBody = await call({ "tandem-preflight": "1" });
    expect(withBody.status).toBe(400);
    expect(((await withBody.json()) as any).error.message).toContain("carries none: send the body without the header");
    const other = await call({ "tandem-preflight": "2" });
    expect(other.status).toBe(400);
    expect(((await other.json()) as any).error.message).toContain('Tandem-Preflight: "2" is not 1');
    // The guard of a route that reads no body first answers it the same (an app's stop).
    const stop = await post("/v1/apps/edge/stop", "{}", { "tandem-preflight": "1" });
    expect(stop.status).toBe(400);
    await stop.text();
    expect(await fn<[string], number>("runsOf").remote(token)).toBe(0);
    // A preflight as the front door sends it, no body, is still let in: 204, and nothing runs.
    const asked = await fetch(
      `${gw.url}/v1/apps/edge/functions/countedNap/call`,
      authed({ method: "POST", headers: { "tandem-preflight": "1", "content-length": "0" } }),
    );
    expect(asked.status).toBe(204);
    expect(await fn<[string], number>("runsOf").remote(token)).toBe(0);
  });

  it("answers a query field given twice 400 on every /v1 route, and a field a route does not take 400 where it reads its query", async () => {
    const { callId } = (await (await post("/v1/apps/edge/functions/square/call", JSON.stringify({ args: [2] }))).json()) as CallRecord;
    const cases: [string, RegExp][] = [
      ["/v1/usage?since=1h&since=2h", /field "since" is given 2 times: give it once/],
      [`/v1/calls/${callId}?wait=1&wait=2`, /field "wait" is given 2 times/],
      ["/v1/schedules?app=edge&app=other", /field "app" is given 2 times/],
      ["/v1/apps?x=1&x=2", /field "x" is given 2 times/],
      [`/v1/calls/${callId}?wiat=100`, /GET \/v1\/calls\/:id takes wait, not "wiat"/],
      ["/v1/schedules?ap=edge", /GET \/v1\/schedules takes app, not "ap"/],
    ];
    for (const [path, message] of cases) {
      const res = await fetch(gw.url + path, authed());
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as any).error.message, path).toMatch(message);
    }
    const once = await fetch(`${gw.url}/v1/calls/${callId}?wait=1`, authed());
    expect(once.status).toBe(200);
    await once.text();
  });

  it("answers an app's stop or rollover with a body that is not empty, {} or JSON 400", async () => {
    for (const action of ["stop", "rollover"]) {
      const garbage = await post(`/v1/apps/edge/${action}`, "garbage");
      expect(garbage.status, action).toBe(400);
      await garbage.text();
      const field = await post(`/v1/apps/edge/${action}`, JSON.stringify({ force: true }));
      expect(field.status, action).toBe(400);
      expect(((await field.json()) as any).error.message, action).toContain("force");
      for (const body of [undefined, "{}"]) {
        const fine = await post(`/v1/apps/edge/${action}`, body);
        expect(fine.status, `${action} ${body}`).toBe(200);
        await fine.text();
      }
    }
  });

  it("answers 400 for a protocol version it does not speak, or a meta that is not an object", async () => {
    const version = await post("/v1/apps/edge/functions/square/call", JSON.stringify({ args: [1] }), { "tandem-protocol": "99" });
    expect(version.status).toBe(400);
    expect(((await version.json()) as any).error.message).toContain("speaks protocol 1");
    const meta = await post("/v1/apps/edge/functions/square/call", JSON.stringify({ args: [1], meta: "garbage" }));
    expect(meta.status).toBe(400);
    expect(((await meta.json()) as any).error.message).toContain('"meta"');
  });

  it("answers a WebSocket's upgrade to an endpoint 400, saying it is no agent", async () => {
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${gw.url}/edge/hello/Ada`, {
        headers: { connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" },
      });
      req.on("response", (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode!, body }));
      });
      req.on("upgrade", () => reject(new Error("upgraded")));
      req.on("error", reject);
      req.end();
    });
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body).error.message).toBe(
      '"hello" of app "edge" is a web endpoint (GET /:name), not a WebSocket agent: it takes HTTP requests, not a WebSocket\'s upgrade',
    );
  });

  it("says what an endpoint serves when the path does not match, and answers 405 naming its methods when the method does not", async () => {
    const path = await fetch(`${gw.url}/edge/hello/Ada/Lovelace`);
    expect(path.status).toBe(404);
    expect(((await path.json()) as any).error.message).toBe('endpoint "hello" of app "edge" does not serve GET /Ada/Lovelace (it serves GET /:name)');
    for (const method of ["POST", "DELETE", "PUT"]) {
      const res = await fetch(`${gw.url}/edge/hello/Ada`, { method });
      expect(res.status).toBe(405);
      expect(res.headers.get("allow")).toBe("GET, HEAD");
      expect(((await res.json()) as any).error).toMatchObject({
        code: "method_not_allowed",
        message: `endpoint "hello" of app "edge" takes GET, HEAD at /Ada, not ${method}`,
      });
    }
    const post = await fetch(`${gw.url}/edge/submit`);
    expect([post.status, post.headers.get("allow")]).toEqual([405, "POST"]);
    expect((await fetch(`${gw.url}/edge/hello/Ada`, { method: "HEAD" })).status).toBe(200);
  });

  it("answers HEAD on an endpoint with its GET's status and headers, Content-Length included, and no body", async () => {
    // As curl -I sends it: Node's fetch would ask for gzip, and workerd answers a compressed GET chunked.
    const ask = (method: string, path: string) =>
      new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
        const req = http.request(`${gw.url}${path}`, { method }, (res) => {
          let body = "";
          res.on("data", (d) => (body += d));
          res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        });
        req.on("error", reject).end();
      });
    // A Response of the handler's own (c.text), and a value the gateway answers as JSON.
    for (const path of ["/edge/greeting/Ada", "/edge/hello/Ada"]) {
      const [get, head] = [await ask("GET", path), await ask("HEAD", path)];
      expect(get.headers["content-length"], path).toBe(String(Buffer.byteLength(get.body)));
      // workerd sent a HEAD answer no Content-Length: hono's HEAD is the GET's answer with its body dropped.
      expect({ ...head, headers: { ...head.headers, date: undefined } }, path).toEqual({ ...get, headers: { ...get.headers, date: undefined }, body: "" });
    }
    // A stream is not waited for to its end (never, here): the answer comes without a length, as the GET's comes chunked.
    const started = Date.now();
    const streamed = await ask("HEAD", "/edge/trickle");
    expect([streamed.status, streamed.headers["content-length"], streamed.body]).toEqual([200, undefined, ""]);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("answers 400 for a malformed call id and 404 for an unknown one", async () => {
    expect((await fetch(`${gw.url}/v1/calls/not-an-id`, authed())).status).toBe(400);
    const unknown = await fetch(`${gw.url}/v1/calls/fc-00000000000000000000000000`, authed());
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as any).error.code).toBe("not_found");
    // ?wait= is whole milliseconds: Number() would have taken "", "0x10" and " 5" as 0, 16 and 5.
    for (const wait of ["", "0x10", "%205", "-1", "1e3", "abc", "1.5"]) {
      const res = await fetch(`${gw.url}/v1/calls/fc-00000000000000000000000000?wait=${wait}`, authed());
      expect(res.status, wait).toBe(400);
      expect(((await res.json()) as any).error.message, wait).toMatch(
        /^"wait" must be a whole number of milliseconds, 0 or more \(got ".*"\); a longer wait than 50000 is cut to 50000$/,
      );
    }
    // A wait of any length is whole milliseconds, cut to the longest: this one is a 404 at once, as any other.
    expect((await fetch(`${gw.url}/v1/calls/fc-00000000000000000000000000?wait=99999999999999999999`, authed())).status).toBe(404);
  });
});

describe("body limits", () => {
  const stats = async () => (await (await fetch(`${gw.url}/edge/upload-stats`)).json()) as { runs: number; read: number };

  it("answers 413 before an endpoint's handler runs when the declared length is over the limit", async () => {
    const before = await stats();
    const res = await fetch(`${gw.url}/edge/upload`, { method: "POST", body: "x".repeat(5000) });
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).error).toMatchObject({ code: "payload_too_large", details: { maxBytes: 4096, atLeast: 5000 } });
    expect((await stats()).runs).toBe(before.runs);
  });

  it("gives an endpoint a streamed body that stops at the limit, and answers 413", async () => {
    const before = await stats();
    // 48 KiB: small enough that the client has sent it all before workerd answers and closes (a larger body may see
    // the connection reset instead; the front door, in front of workerd under tandem serve, answers those: front-door.test.ts).
    const res = await postChunked("/edge/upload", 48 * 1024);
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).error).toMatchObject({
      code: "payload_too_large",
      message: "request body is larger than 4096 bytes, the most this gateway accepts (TANDEM_MAX_BODY_BYTES)",
    });
    const after = await stats();
    expect(after.runs).toBe(before.runs + 1);
    expect(after.read).toBeLessThanOrEqual(4096);
  });

  it("answers 413 even when the handler catches the error its read threw", async () => {
    const res = await postChunked("/edge/swallow", 64 * 1024);
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).error.code).toBe("payload_too_large");
  });

  it("limits a mounted web app's bodies too, with the gateway's limit or its own", async () => {
    const printed = gw.output.length;
    expect((await postChunked("/edge/api/size", 64 * 1024)).status).toBe(413);
    // The app's hono answers the read's error as the 413 it is: no stack of it in the app's log, as for a server fault.
    await new Promise((r) => setTimeout(r, 100));
    expect(gw.output.slice(printed).filter((l) => l.includes("[edge/api]") || /^\s+at /.test(l))).toEqual([]);
    expect(await (await postChunked("/edge/api/size", 3000)).json()).toEqual({ read: 3000 });
    expect(await (await postChunked("/edge/files/", 8000)).json()).toEqual({ read: 8000 });
    const over = await postChunked("/edge/files/", 9000);
    expect(over.status).toBe(413);
    // An app.web mount, said as elsewhere (before: `endpoint "files"`).
    expect(((await over.json()) as any).error.message).toBe(
      'request body is larger than 8192 bytes, the most web "files" of app "edge" accepts (its maxBodyBytes option)',
    );
  });

  it("lets an endpoint take more than the gateway's limit when it asks, or any size with Infinity", async () => {
    expect(await (await postChunked("/edge/big-upload", 90_000)).json()).toEqual({ read: 90_000 });
    const declared = await fetch(`${gw.url}/edge/big-upload`, { method: "POST", body: "x".repeat(100_001) });
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as any).error).toMatchObject({
      details: { maxBytes: 100_000, atLeast: 100_001 },
      message: 'request body is larger than 100000 bytes, the most endpoint "big-upload" of app "edge" accepts (its maxBodyBytes option)',
    });
    expect(await (await postChunked("/edge/any-upload", 3 * 1024 * 1024)).json()).toEqual({ read: 3 * 1024 * 1024 });
  });

  it("reads the dashboard's login form, which anyone may post, no further than the limit", async () => {
    const res = await fetch(`${gw.url}${DASHBOARD.login}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: chunkedBody(48 * 1024),
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(await res.text()).toContain("request body is larger than 4096 bytes");
  });

  it("stops reading a /v1 body at the limit when its content-length is smaller than what is sent", async () => {
    // A content-length beside a chunked transfer-encoding: the chunks frame the body, and there are 256 KiB of them.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(new URL(gw.url).port), "127.0.0.1");
      let got = "";
      socket.on("data", (d) => {
        got += d.toString();
        if (got.includes("\r\n\r\n") && got.includes("}}")) socket.destroy();
      });
      socket.on("close", () => resolve(got));
      socket.on("error", reject);
      socket.write(
        `POST /v1/apps/edge/functions/echo/call HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${ADMIN_TOKEN}\r\ncontent-length: 12\r\ntransfer-encoding: chunked\r\n\r\n`,
      );
      const piece = "[" + "1,".repeat(8191) + "1]";
      const head = '{"args":[[0]';
      socket.write(`${head.length.toString(16)}\r\n${head}\r\n`);
      for (let i = 0; i < 16; i++) socket.write(`${(piece.length + 1).toString(16)}\r\n,${piece}\r\n`);
      socket.write("2\r\n]}\r\n0\r\n\r\n");
      setTimeout(() => socket.destroy(), 10_000).unref();
    });
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).toContain('"code":"payload_too_large"');
  });
});

describe("deep JSON", () => {
  const nested = (depth: number) => "[".repeat(depth) + "1" + "]".repeat(depth);

  it("answers 400 for a body nested past the limit, at either tier and on every route that reads arguments, with no internals", async () => {
    for (const fn of ["echo", "onGpu"]) {
      for (const [route, body] of [
        ["call", `{"args":[${nested(1500)}]}`],
        ["spawn", `{"args":[${nested(1500)}]}`],
        ["map", `{"inputs":[[${nested(1500)}]]}`],
        ["stream", `{"args":[${nested(1500)}]}`],
      ] as const) {
        const res = await post(`/v1/apps/edge/functions/${fn}/${route}`, body);
        const text = await res.text();
        expect([fn, route, res.status]).toEqual([fn, route, 400]);
        expect(JSON.parse(text).error).toMatchObject({
          code: "invalid_request",
          message: expect.stringContaining(`more than ${API_LIMITS.maxJsonDepth} levels deep`),
          details: { maxDepth: API_LIMITS.maxJsonDepth },
        });
        expectNoInternals(text);
      }
    }
  });

  it("answers 400 for a meta whose references rebuild the arguments deeper than the limit", async () => {
    // Three chains of 200 arrays (the body is within the 4096-byte limit), each one's innermost element the next chain.
    const chain = nested(200);
    const leaf = "." + Array(200).fill("0").join(".");
    const meta = { referentialEqualities: { "1": [`0${leaf}`], "2": [`1${leaf}`] }, v: 1 };
    for (const fn of ["echo", "onGpu"]) {
      const res = await post(`/v1/apps/edge/functions/${fn}/call`, `{"args":[${chain},${chain},${chain}],"meta":${JSON.stringify(meta)}}`);
      const text = await res.text();
      expect(res.status).toBe(400);
      expect(JSON.parse(text).error.message).toContain('"meta" rebuilds "args" more than 512 levels deep');
      expectNoInternals(text);
    }
  });

  it("carries back an argument that holds itself twice, at once, and answers on (before: the result's check took 2³² steps, the gateway answering nothing)", async () => {
    const body = JSON.stringify({ args: [[1, 2]], meta: { referentialEqualities: { "0": ["0.0", "0.1"] }, v: 1 } });
    const res = await post("/v1/apps/edge/functions/echo/call", body);
    expect(res.status).toBe(200);
    const answer = (await res.json()) as { result: unknown; meta: unknown };
    const [[back]] = decodeValue(answer.result, answer.meta) as [[unknown[]]];
    expect(back[0]).toBe(back);
    expect(back[1]).toBe(back);
    expect((await fetch(`${gw.url}/v1/health`)).status).toBe(200);
  });

  it("still carries a value nested within the limit, both ways", async () => {
    const value = JSON.parse(nested(API_LIMITS.maxJsonDepth - 2)) as unknown;
    expect(await fn("echo").remote(value)).toEqual([value]);
  });

  it("fails a call whose result is nested too deep as the function's own error, saying why, with no stack of the gateway's", async () => {
    const res = await post("/v1/apps/edge/functions/deepResult/call", JSON.stringify({ args: [100_000] }));
    const text = await res.text();
    expect(res.status).toBe(500);
    const { error } = JSON.parse(text) as { error: { code: string; message: string; remote: { name: string; stack?: string } } };
    expect(error.code).toBe("function_failed");
    expect(error.remote.name).toBe("RangeError");
    expect(error.message).toContain("edge.deepResult returned a value nested more than 512 levels deep, the most a result may be: return it flatter");
    expectNoInternals(text);
  });
});

describe("request contexts", () => {
  it("records bursts of concurrent edge calls without workerd warning of a promise resolved from another request", async () => {
    const ids: string[] = [];
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => post("/v1/apps/edge/functions/square/call", JSON.stringify({ args: [i] }))));
      for (const res of answers) {
        expect(res.status).toBe(200);
        ids.push(res.headers.get("tandem-call-id")!);
        await res.arrayBuffer();
      }
    }
    // Every call reaches the ledger, batched.
    await eventually(async () =>
      (await Promise.all(ids.map(async (id) => (await fetch(`${gw.url}/v1/calls/${id}`, authed())).status))).every((s) => s === 200),
    );
    expect(gw.output.filter((l) => /different request context/.test(l))).toEqual([]);
  });

  it("answers a web app whose factory gave no app, or threw, with the app's error naming the mount, not the gateway's", async () => {
    const other = await startTestGateway(new URL("./fixtures/web-factory-app.ts", import.meta.url).pathname);
    try {
      const notApp = await fetch(`${other.url}/factories/notapp/`);
      expect(notApp.status).toBe(500);
      // Before: "webApp.fetch is not a function".
      expect(((await notApp.json()) as { error: { code: string; message: string } }).error).toMatchObject({
        code: "function_failed",
        message:
          'web "notapp" of app "factories": its factory returned an object (Object), not a web app (an object with a fetch method): return the hono app, new Hono() with its routes',
      });
      const broken = await fetch(`${other.url}/factories/broken/`);
      expect(broken.status).toBe(500);
      // Before: {"code":"internal","message":"factory boom"}, as if the gateway had failed.
      expect(((await broken.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: "function_failed", message: "factory boom" });
    } finally {
      await other.dispose();
    }
  });

  it("shows workerd's warning when an app's code does resolve a promise from another request (the check above can fail)", async () => {
    const other = await startTestGateway(new URL("./fixtures/cross-request-app.ts", import.meta.url).pathname);
    try {
      const call = (name: string) =>
        fetch(`${other.url}/v1/apps/crossrequest/functions/${name}/call`, authed({ method: "POST", body: JSON.stringify({ args: [] }) }));
      expect((await call("leave")).status).toBe(200);
      await new Promise((r) => setTimeout(r, 300)); // the first request has ended, its record written
      expect((await call("resolve")).status).toBe(200);
      await eventually(() => other.output.some((l) => /different request context/.test(l)));
    } finally {
      await other.dispose();
    }
  });
});

describe("the ledger across a restart", () => {
  it("keeps a spawned call's result when the gateway restarts", async () => {
    const call = await fn("square").spawn(21);
    expect(await call.get({ timeoutMs: 10_000 })).toBe(441);
    await gw.restart();
    expect(await FunctionCall.fromId(call.id, { gateway: gw.url }).get({ timeoutMs: 10_000 })).toBe(441);
  });
});

describe("the work requests leave behind them", () => {
  it("is awaited by the CLI that started the gateway: a spawned call's run, then nothing", async () => {
    const call = await fn("napping").spawn(1_500); // runs after the spawn's answer, in its request's waitUntil
    const t0 = performance.now();
    await gw.settled(10_000);
    const waited = performance.now() - t0;
    expect(waited).toBeGreaterThan(1_000);
    expect(await call.get({ timeoutMs: 1_000 })).toBeDefined(); // it had ended
    const t1 = performance.now();
    await gw.settled(10_000);
    expect(performance.now() - t1).toBeLessThan(1_000);
  });

  it("is not asked of a gateway without its CLI's key", async () => {
    const res = await fetch(`${gw.url}/_local/background`, authed());
    expect(res.status).toBe(401);
  });
});

describe("the local blob route", () => {
  const hash = "ab".repeat(32);
  const route = (key: string) => `${gw.url}/_local/blobs/${key}`;

  it("takes a plane bundle from the CLI that started the gateway, over HTTP", async () => {
    await gw.putBlob(`bundles/${hash}.mjs`, "export default 1;\n");
    expect(new TextDecoder().decode(await gw.blobBytes(`bundles/${hash}.mjs`))).toBe("export default 1;\n");
    // The same bytes again are not written again (a reload's workerd shares the store with the one serving); others are.
    const written = (await gw.blobWrites()).get(`bundles/${hash}.mjs`);
    await new Promise((r) => setTimeout(r, 20));
    await gw.putBlob(`bundles/${hash}.mjs`, "export default 1;\n");
    expect((await gw.blobWrites()).get(`bundles/${hash}.mjs`)).toBe(written);
    await gw.putBlob(`bundles/${hash}.mjs`, "export default 2;\n");
    expect(new TextDecoder().decode(await gw.blobBytes(`bundles/${hash}.mjs`))).toBe("export default 2;\n");
  });

  it("refuses anyone without its key, the admin token included, and keys that are not bundles, maps or image specs", async () => {
    for (const headers of [{}, { authorization: "Bearer wrong" }, { authorization: `Bearer ${ADMIN_TOKEN}` }] as Record<string, string>[]) {
      const res = await fetch(route(`images/${hash}.json`), { method: "PUT", body: "{}", headers });
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
    }
    expect(await gw.blobBytes(`images/${hash}.json`)).toBeUndefined();
    await expect(gw.putBlob("inputs/fc-0000000000abcdefghijklmnop", "x")).rejects.toThrow(/HTTP 400 .*is not a plane bundle, source map or image spec key/);
    await expect(gw.putBlob(`bundles/${hash}.mjs/../../results/x`, "x")).rejects.toThrow(/HTTP (400|404)/);
    // Past a deployment file's size, refused before the body is read (workerd answers 413 and may close the upload under way).
    await expect(gw.putBlob(`images/${hash}.json`, new Uint8Array(64 * 1024 * 1024 + 1))).rejects.toThrow(/HTTP 413 |fetch failed/);
    expect(await gw.blobBytes(`images/${hash}.json`)).toBeUndefined();
  });
});
