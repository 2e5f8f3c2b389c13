/**
 * Delivery between a client and the gateway in real workerd: a request sent
 * again with its `Idempotency-Key` gets the call the first one made, not a
 * second call; the SDK sends such a request again when the first got no
 * answer (a proxy on loopback drops it), and the function runs once; and the
 * workerd fact the `tandem serve` front door is built around.
 */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lookup, type CallRecord } from "../sdk/index.js";
import { HEADERS, newCallId, type MapResultLine } from "../sdk/protocol.js";
import { DELIVERY_DEFAULTS } from "../sdk/defaults.js";
import { authed, eventually, startTestGateway, type TestGateway } from "./helpers/gateway.js";

const APP = new URL("./fixtures/edge-app.ts", import.meta.url).pathname;
let gw: TestGateway;
let tokens = 0;
const token = () => `t${Date.now()}-${tokens++}`;
const runsOf = (t: string) => lookup<[string], number>("edge", "runsOf", { gateway: gw.url }).remote(t);
const post = (path: string, body: unknown, key?: string) =>
  fetch(gw.url + path, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json", ...(key === undefined ? {} : { [HEADERS.idempotencyKey]: key }), ...authed().headers },
  });
const mapLines = async (res: Response) =>
  (await res.text())
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as MapResultLine)
    .sort((a, b) => a.index - b.index);

beforeAll(async () => {
  gw = await startTestGateway(APP);
});
afterAll(async () => {
  await gw?.dispose();
});

describe("an Idempotency-Key", () => {
  it("makes a spawn sent twice one call: the same call id, one run", async () => {
    const t = token();
    const first = await post("/v1/apps/edge/functions/countedNap/spawn", { args: [t, 300] }, `spawn-${t}`);
    const second = await post("/v1/apps/edge/functions/countedNap/spawn", { args: [t, 300] }, `spawn-${t}`);
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    const a = (await first.json()) as { callId: string };
    const b = (await second.json()) as { callId: string };
    expect(b.callId).toBe(a.callId);
    expect(second.headers.get(HEADERS.callId)).toBe(a.callId);
    const record = (await (await fetch(`${gw.url}/v1/calls/${a.callId}?wait=10000`, authed())).json()) as CallRecord;
    expect(record).toMatchObject({ status: "succeeded", attempts: 1, result: { token: t, runs: 1 } });
    expect(await runsOf(t)).toBe(1);
    // Sent once more after it ended: its status as it stands (before: "pending", for a call that had succeeded).
    const third = await post("/v1/apps/edge/functions/countedNap/spawn", { args: [t, 300] }, `spawn-${t}`);
    expect(await third.json()).toEqual({ callId: a.callId, status: "succeeded" });
    expect(await runsOf(t)).toBe(1);
  });

  it("makes a call sent again while the first runs wait for it and answer with its record", async () => {
    const t = token();
    const first = post("/v1/apps/edge/functions/countedNap/call", { args: [t, 1_000] }, `call-${t}`);
    await new Promise((r) => setTimeout(r, 200));
    const second = await post("/v1/apps/edge/functions/countedNap/call", { args: [t, 1_000] }, `call-${t}`);
    const a = (await (await first).json()) as CallRecord;
    const b = (await second.json()) as CallRecord;
    expect(second.status).toBe(200);
    expect(b).toEqual(a);
    expect(a).toMatchObject({ status: "succeeded", kind: "remote", attempts: 1, result: { token: t, runs: 1 } });
    expect(await runsOf(t)).toBe(1);
    // And once it has ended, from its record.
    const third = (await (await post("/v1/apps/edge/functions/countedNap/call", { args: [t, 1_000] }, `call-${t}`)).json()) as CallRecord;
    expect(third).toEqual(a);
    expect(await runsOf(t)).toBe(1);
  });

  it("makes a map sent twice the same calls, each run once", async () => {
    const t = [token(), token(), token()];
    const inputs = t.map((x) => [x, 200]);
    const first = await mapLines(await post("/v1/apps/edge/functions/countedNap/map", { inputs }, `map-${t[0]}`));
    const second = await mapLines(await post("/v1/apps/edge/functions/countedNap/map", { inputs }, `map-${t[0]}`));
    expect(first.map((l) => l.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
    expect(second.map((l) => l.callId)).toEqual(first.map((l) => l.callId));
    expect(second.map((l) => l.result)).toEqual(first.map((l) => l.result));
    for (const x of t) expect(await runsOf(x)).toBe(1);
    const record = (await (await fetch(`${gw.url}/v1/calls/${first[0]!.callId}`, authed())).json()) as CallRecord;
    expect(record).toMatchObject({ kind: "map", status: "succeeded", attempts: 1 });
  });

  it("starts nothing for a map sent again with more inputs: the ones its first request had not are refused, each on its line", async () => {
    const t = [token(), token(), token()];
    const key = `map-more-${t[0]}`;
    const first = await mapLines(await post("/v1/apps/edge/functions/countedNap/map", { inputs: [[t[0], 10]] }, key));
    const again = await mapLines(await post("/v1/apps/edge/functions/countedNap/map", { inputs: t.map((x) => [x, 10]) }, key));
    expect(again.map((l) => [l.index, l.callId, l.status])).toEqual([
      [0, first[0]!.callId, "succeeded"],
      [1, "", "failed"],
      [2, "", "failed"],
    ]);
    expect(again[1]!.error).toMatchObject({
      code: "invalid_request",
      message: `map key ${key} of edge.countedNap is known: its first request had 1 input, and input 1 is not one of them, so nothing ran for it (a key names the map its first request made: send other inputs with another key)`,
    });
    // Before: inputs 1 and 2 ran, as new calls under the known key.
    expect([await runsOf(t[0]!), await runsOf(t[1]!), await runsOf(t[2]!)]).toEqual([1, 0, 0]);
  });

  it("names a call per app and function: the same key elsewhere, or another key, is another call", async () => {
    const t = token();
    const key = `shared-${t}`;
    const a = (await (await post("/v1/apps/edge/functions/countedNap/spawn", { args: [t, 10] }, key)).json()) as { callId: string };
    const b = (await (await post("/v1/apps/edge/functions/napping/spawn", { args: [10] }, key)).json()) as { callId: string };
    const c = (await (await post("/v1/apps/edge/functions/countedNap/spawn", { args: [t, 10] }, `other-${t}`)).json()) as { callId: string };
    expect(new Set([a.callId, b.callId, c.callId]).size).toBe(3);
  });

  it("must be 1 to 255 visible characters", async () => {
    const res = await post("/v1/apps/edge/functions/countedNap/spawn", { args: ["x", 1] }, "has space");
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain(HEADERS.idempotencyKey);
  });
});

describe("a fresh keyed edge call (Tandem-Fresh-Key)", () => {
  const fresh = (key: string, t: string, ms: number) =>
    fetch(gw.url + "/v1/apps/edge/functions/countedNap/call", {
      method: "POST",
      body: JSON.stringify({ args: [t, ms] }),
      headers: { "content-type": "application/json", [HEADERS.idempotencyKey]: key, [HEADERS.freshKey]: "1", ...authed().headers },
    });

  it("that ends at once is written once it ended, and both its id and its key find it from the moment it answers", async () => {
    for (let i = 0; i < 5; i++) {
      const t = token();
      const a = (await (await fresh(`quick-${t}`, t, 0)).json()) as CallRecord;
      expect(a).toMatchObject({ status: "succeeded", attempts: 1, result: { token: t, runs: 1 } });
      // Asked for at once, before the batch of ended calls that holds its row is written.
      const [byId, again] = await Promise.all([
        fetch(`${gw.url}/v1/calls/${a.callId}`, authed()),
        post("/v1/apps/edge/functions/countedNap/call", { args: [t, 0] }, `quick-${t}`),
      ]);
      expect(byId.status).toBe(200);
      expect((await byId.json()) as CallRecord).toEqual(a);
      expect((await again.json()) as CallRecord).toEqual(a);
      expect(await runsOf(t)).toBe(1);
    }
  });

  it("that runs on is recorded as running, so the key sent again meanwhile waits for it", async () => {
    const t = token();
    const first = fresh(`slow-${t}`, t, 800);
    await new Promise((r) => setTimeout(r, 150));
    const running = await post("/v1/apps/edge/functions/countedNap/call", { args: [t, 800] }, `slow-${t}`);
    const a = (await (await first).json()) as CallRecord;
    expect((await running.json()) as CallRecord).toEqual(a);
    expect(a).toMatchObject({ status: "succeeded", attempts: 1, result: { token: t, runs: 1 } });
    expect(await runsOf(t)).toBe(1);
  });

  it("sent as fresh twice runs twice, keeps the key on the first, and says the second was an extra run", async () => {
    const t = token();
    const a = (await (await fresh(`twice-${t}`, t, 0)).json()) as CallRecord;
    await new Promise((r) => setTimeout(r, 300)); // the first is in the ledger
    const b = (await (await fresh(`twice-${t}`, t, 0)).json()) as CallRecord;
    expect(b.callId).not.toBe(a.callId);
    expect(b).toMatchObject({ status: "succeeded", result: { token: t, runs: 2 } });
    await eventually(
      () => gw.output.some((l) => l.includes(`key twice-${t} was sent as fresh but names call ${a.callId}: this request's run ${b.callId} was an extra one`)),
      5_000,
    );
    // Its own record is kept, without the key; the key still names the first.
    expect((await (await fetch(`${gw.url}/v1/calls/${b.callId}`, authed())).json()) as CallRecord).toEqual(b);
    expect(((await (await post("/v1/apps/edge/functions/countedNap/call", { args: [t, 0] }, `twice-${t}`)).json()) as CallRecord).callId).toBe(a.callId);
  });

  it("leaves an unknown id a 404, after waiting for it only while it is young", async () => {
    const old = `fc-${"0".repeat(26)}`;
    const started = Date.now();
    expect((await fetch(`${gw.url}/v1/calls/${old}`, authed())).status).toBe(404);
    const young = newCallId();
    expect((await fetch(`${gw.url}/v1/calls/${young}`, authed())).status).toBe(404);
    expect(Date.now() - started).toBeGreaterThanOrEqual(DELIVERY_DEFAULTS.youngCallWaitMs - 200);
  });
});

/**
 * A TCP proxy on loopback in front of the gateway that spoils its first
 * connection: `drop` passes the request on and drops the answer (the client
 * sees its connection reset, the gateway ran the call); `reset` resets it
 * before passing anything on. Records each request's idempotency key.
 */
async function faultyProxy(mode: "drop" | "reset"): Promise<{ url: string; keys: string[]; fresh: boolean[]; close(): Promise<void> }> {
  const upstream = new URL(gw.url);
  const keys: string[] = [];
  const fresh: boolean[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((client) => {
    const first = connections++ === 0;
    sockets.add(client);
    client.on("data", (d) => {
      const key = new RegExp(`^${HEADERS.idempotencyKey}: (\\S+)`, "im").exec(d.toString("latin1"))?.[1];
      if (key) keys.push(key);
      if (key) fresh.push(new RegExp(`^${HEADERS.freshKey}: 1\\r?$`, "im").test(d.toString("latin1")));
    });
    if (first && mode === "reset") return void client.once("data", () => client.resetAndDestroy());
    const gateway = net.connect(Number(upstream.port), upstream.hostname);
    sockets.add(gateway);
    client.pipe(gateway);
    if (first) gateway.once("data", () => (client.resetAndDestroy(), gateway.destroy()));
    else gateway.pipe(client);
    client.on("error", () => gateway.destroy());
    gateway.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    keys,
    fresh,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy(); // the client's kept-alive connection would hold the close
      }),
  };
}

describe("the SDK, when a request gets no answer", () => {
  it("sends a call again with the same key when its answer was dropped, and the function runs once", async () => {
    const proxy = await faultyProxy("drop");
    try {
      const t = token();
      const out = await lookup("edge", "countedNap", { gateway: proxy.url }).remote(t, 100);
      expect(out).toEqual({ token: t, runs: 1 });
      expect(await runsOf(t)).toBe(1);
      expect(proxy.keys).toHaveLength(2);
      expect(proxy.keys[1]).toBe(proxy.keys[0]);
      expect(proxy.fresh).toEqual([true, false]); // a key's first send says it is fresh; a send again never does
    } finally {
      await proxy.close();
    }
  });

  it("sends a spawn again with the same key when its connection was reset first, and gets one call", async () => {
    const proxy = await faultyProxy("reset");
    try {
      const t = token();
      const call = await lookup("edge", "countedNap", { gateway: proxy.url }).spawn(t, 100);
      expect(await call.get({ timeoutMs: 10_000 })).toEqual({ token: t, runs: 1 });
      expect(proxy.keys.slice(0, 2)).toEqual([proxy.keys[0], proxy.keys[0]]);
      expect(proxy.fresh.slice(0, 2)).toEqual([true, false]);
      expect(await runsOf(t)).toBe(1);
    } finally {
      await proxy.close();
    }
  });

  it("sends a map batch again with the same key when its answer was dropped, and each input runs once", async () => {
    const proxy = await faultyProxy("drop");
    try {
      const t = [token(), token()];
      const out: unknown[] = [];
      for await (const r of lookup<[string, number]>("edge", "countedNap", { gateway: proxy.url }).starmap(t.map((x) => [x, 50] as [string, number])))
        out.push(r);
      expect(out).toEqual([
        { token: t[0], runs: 1 },
        { token: t[1], runs: 1 },
      ]);
      for (const x of t) expect(await runsOf(x)).toBe(1);
      expect(proxy.fresh.slice(0, 2)).toEqual([true, false]); // the batch sent again is not fresh
    } finally {
      await proxy.close();
    }
  });
});

it("is needed because workerd closes a kept-alive connection idle for 5 s", async () => {
  const socket = net.connect(Number(new URL(gw.url).port), "127.0.0.1");
  let answeredAt = 0;
  socket.once("data", () => (answeredAt = Date.now()));
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now())));
  socket.write("GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n");
  const idleMs = (await closed) - answeredAt;
  expect(idleMs).toBeGreaterThanOrEqual(DELIVERY_DEFAULTS.serverIdleCloseMs - 100);
  expect(idleMs).toBeLessThan(DELIVERY_DEFAULTS.serverIdleCloseMs + 1_000);
});
