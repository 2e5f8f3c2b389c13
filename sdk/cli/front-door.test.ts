/**
 * The `tandem serve` front door's connections to workerd, against a stand-in
 * upstream that closes kept-alive connections the way workerd does (at 5 s
 * idle) and, for the race, resets one as a request arrives on it. That
 * workerd closes idle connections after 5 s is a fact of workerd (checked in
 * test/delivery.test.ts against the real one); here the front door's answer
 * to it is tested on its own. So is how it ends a WebSocket on a workerd a
 * reload replaced: with 1012, between two of that workerd's frames.
 */
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { afterEach, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { DELIVERY_DEFAULTS } from "../defaults.js";
import { AGENT_CLOSE, HEADERS } from "../protocol.js";
import { FrontDoor } from "./front-door.js";

interface Upstream {
  url: URL;
  /** Bodies of the requests answered, in order. */
  answered: string[];
  /** The Authorization header of each request answered. */
  authorizations: (string | undefined)[];
  connections: number;
  /** When each connection closed, in ms after the last answer on it. */
  closedAfterMs: number[];
  close(): Promise<void>;
}

/** An upstream that echoes bodies; with `resetSecond`, it resets a connection when a second request comes on it. */
async function startUpstream(options: { resetSecond: boolean }): Promise<Upstream> {
  const perSocket = new WeakMap<object, number>();
  const lastAnswer = new WeakMap<object, number>();
  const upstream: Upstream = { url: new URL("http://127.0.0.1"), answered: [], authorizations: [], connections: 0, closedAfterMs: [], close: async () => {} };
  const server = http.createServer(async (req, res) => {
    const n = (perSocket.get(req.socket) ?? 0) + 1;
    perSocket.set(req.socket, n);
    if (options.resetSecond && n === 2) return void req.socket.resetAndDestroy(); // closed just as the request came in
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString();
    upstream.answered.push(body);
    upstream.authorizations.push(req.headers.authorization);
    res.end(`echo ${body}`, () => lastAnswer.set(req.socket, performance.now()));
  });
  server.keepAliveTimeout = 60_000; // so any close seen is the front door's
  server.on("connection", (socket) => {
    upstream.connections++;
    socket.on("close", () => upstream.closedAfterMs.push(performance.now() - (lastAnswer.get(socket) ?? 0)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  upstream.url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  upstream.close = () => new Promise((resolve) => server.close(() => resolve()));
  return upstream;
}

const open: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of open.splice(0).reverse()) await close();
});

async function doorTo(upstream: Upstream): Promise<string> {
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  door.swap({ url: upstream.url, dispose: async () => {} });
  open.push(
    () => upstream.close(),
    () => door.close(),
  );
  return url.href.replace(/\/$/, "");
}

it("sends a request again on a new connection when the kept-alive one it went out on was reset before any answer", async () => {
  const upstream = await startUpstream({ resetSecond: true });
  const door = await doorTo(upstream);
  const first = await fetch(`${door}/v1/apps/a/functions/f/spawn`, { method: "POST", body: "one", headers: { authorization: "Bearer t" } });
  expect(await first.text()).toBe("echo one");
  // The front door reuses its idle connection for this one, and the upstream resets it.
  const second = await fetch(`${door}/v1/apps/a/functions/f/spawn`, { method: "POST", body: "two", headers: { authorization: "Bearer t" } });
  expect(second.status).toBe(200);
  expect(await second.text()).toBe("echo two");
  expect(upstream.answered).toEqual(["one", "two"]);
  expect(upstream.connections).toBe(2);
});

it("closes a connection it keeps idle before workerd's 5 s, so none is reused as workerd closes it", async () => {
  const upstream = await startUpstream({ resetSecond: false });
  const door = await doorTo(upstream);
  expect(await (await fetch(`${door}/v1/health`)).text()).toBe("echo ");
  const deadline = Date.now() + DELIVERY_DEFAULTS.serverIdleCloseMs + 1_000;
  while (upstream.closedAfterMs.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(upstream.closedAfterMs).toHaveLength(1);
  expect(upstream.closedAfterMs[0]).toBeLessThan(DELIVERY_DEFAULTS.serverIdleCloseMs - 500);
  expect(upstream.closedAfterMs[0]).toBeGreaterThanOrEqual(DELIVERY_DEFAULTS.frontDoorIdleSocketMs - 100);
});

it("answers a /v1 request with a body and no token with the gateway's 401 itself, and sends nothing on", async () => {
  const upstream = await startUpstream({ resetSecond: false });
  const door = await doorTo(upstream);
  const refused = await fetch(`${door}/v1/apps/a/functions/f/call`, { method: "POST", body: "x".repeat(1000) });
  expect(refused.status).toBe(401);
  expect(((await refused.json()) as { error: { code: string; message: string } }).error).toMatchObject({
    code: "unauthorized",
    message: expect.stringContaining("Authorization: Bearer <token>"),
  });
  // A signed plane request carries no token, nor does a request without a body: both go on.
  const signed = await fetch(`${door}/v1/planes/heartbeat`, { method: "POST", body: "beat", headers: { [HEADERS.signature]: "s" } });
  expect(await signed.text()).toBe("echo beat");
  expect(await (await fetch(`${door}/v1/health`)).text()).toBe("echo ");
  expect(upstream.answered).toEqual(["beat", ""]);
});

it("tells onRequest of a path without the credentials its query holds: a connect token, a login code", async () => {
  const upstream = await startUpstream({ resetSecond: false });
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  door.swap({ url: upstream.url, dispose: async () => {} });
  open.push(
    () => upstream.close(),
    () => door.close(),
  );
  const told: string[] = [];
  door.onRequest = (method, path) => told.push(`${method} ${path}`);
  await (await fetch(new URL("/shop/chat?session=s1&token=ct-eyJhIjoi.c2lnbmVk&x=1", url))).text();
  await (await fetch(new URL("/_tandem/login?code=lc-0123456789abcdef", url))).text();
  expect(told).toEqual(["GET /shop/chat?session=s1&token=ct-…&x=1", "GET /_tandem/login?code=lc-…"]);
});

it("tells onRequest which requests a plane carried for a function's container (serve prints only those that fail)", async () => {
  const upstream = await startUpstream({ resetSecond: false });
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  door.swap({ url: upstream.url, dispose: async () => {} });
  open.push(
    () => upstream.close(),
    () => door.close(),
  );
  const told: string[] = [];
  door.onRequest = (method, path, _status, _ms, _cut, forContainer) => told.push(`${method} ${path} ${forContainer === true ? "container" : "client"}`);
  const base = url.href.replace(/\/$/, "");
  await through(base, "POST", "/v1/queues/work/get", { [HEADERS.containerApp]: "shop", [HEADERS.signature]: "sig" });
  await through(base, "POST", "/v1/queues/work/get", { authorization: "Bearer tk-x" });
  expect(told).toEqual(["POST /v1/queues/work/get container", "POST /v1/queues/work/get client"]);
});

it("ends a WebSocket on a replaced workerd with 1012 between two of its frames, once that workerd has drained", async () => {
  // A stand-in gateway that streams 100 KiB messages (many TCP chunks each) as fast as the socket takes them.
  const server = http.createServer();
  const wss = new WebSocketServer({ server });
  let streaming = true;
  wss.on("connection", (ws) => {
    const payload = "x".repeat(100 * 1024);
    const pump = () => {
      if (!streaming || ws.readyState !== WebSocket.OPEN) return;
      ws.send(payload, () => setImmediate(pump));
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const backend = { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`), disposed: false };
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  door.swap({ url: backend.url, dispose: async () => void (backend.disposed = true) });
  open.push(
    async () => {
      streaming = false;
      wss.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
    () => door.close(),
  );

  const client = new WebSocket(`${url.href.replace(/^http/, "ws")}agent`);
  const sizes = new Set<number>();
  client.on("message", (data: Buffer) => sizes.add(data.length));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => client.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve) => client.once("open", resolve));
  await new Promise((resolve) => setTimeout(resolve, 200));
  const swappedAt = performance.now();
  door.swap({ url: new URL("http://127.0.0.1:9/"), dispose: async () => {} }); // a reload: the old workerd has no request in flight
  const { code, reason } = await closed;
  expect(code).toBe(AGENT_CLOSE.serviceRestart);
  expect(reason).toBe("the gateway is restarting; reconnect to resume the session");
  // After the grace for the work its last requests left behind, never before.
  expect(performance.now() - swappedAt).toBeGreaterThanOrEqual(DELIVERY_DEFAULTS.frontDoorRetireGraceMs - 50);
  expect([...sizes]).toEqual([100 * 1024]); // every message whole: the close frame came between two of them
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(backend.disposed).toBe(true);
}, 15_000);

it("stops a retired backend as soon as it says the work its requests left is done, and waits while it is not", async () => {
  const { door } = await FrontDoor.listen("127.0.0.1", 0);
  open.push(() => door.close());
  let finishWork = () => {};
  const work = new Promise<void>((resolve) => (finishWork = resolve));
  const asked: number[] = [];
  let disposed = false;
  door.swap({ url: new URL("http://127.0.0.1:9/"), dispose: async () => void (disposed = true), settled: (maxMs) => (asked.push(maxMs), work) });
  const held = door.hold(); // a reload: requests wait until the old one has stopped
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect({ disposed, asked }).toEqual({ disposed: false, asked: [DELIVERY_DEFAULTS.frontDoorRetireGraceMs] }); // its work is under way
  const finishedAt = performance.now();
  finishWork();
  await held;
  expect(disposed).toBe(true);
  expect(performance.now() - finishedAt).toBeLessThan(DELIVERY_DEFAULTS.frontDoorRetireGraceMs / 2); // not the rest of the grace
});

/** An upstream that answers no request until `finish()`: requests in flight for as long as a test needs. */
function startHanging(): ReturnType<typeof startAnswering> {
  return startAnswering(/(?:)/);
}

/** A request through the door: its status, or how it failed (a cut connection: "cut"). */
function through(door: string, method: string, path: string, headers: Record<string, string> = {}): Promise<number | "cut"> {
  return new Promise((resolve) => {
    const req = http.request(`${door}${path}`, { method, headers: { ...headers, connection: "close" } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", () => resolve("cut"));
    });
    req.on("error", () => resolve("cut"));
    req.end(method === "POST" ? '{"args":[]}' : undefined);
  });
}

it("cuts a reload's requests in flight that their clients send again, reads at once and keyed calls after a moment, rather than hold every request until they end", async () => {
  const upstream = await startHanging();
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  open.push(upstream.close, () => door.close());
  door.resumableWaitMs = 1_000;
  let disposed = false;
  door.swap({ url: upstream.url, dispose: async () => void (disposed = true), settled: async () => {} });
  const base = url.href.replace(/\/$/, "");
  const answers = [
    through(base, "GET", "/v1/apps/shop/logs?follow=1"),
    through(base, "GET", "/_tandem/apps/shop/events"),
    through(base, "POST", "/v1/apps/shop/functions/slow/call", { "idempotency-key": "k-1", authorization: "Bearer tk-x" }),
  ];
  while (upstream.arrived.length < 3) await new Promise((resolve) => setTimeout(resolve, 10));
  const waiting: [string[], string][] = [];
  door.onHoldWaiting = (requests, until) => waiting.push([requests, until]);
  const started = performance.now();
  const hold = door.hold();
  // The reads at once (nothing runs for them; their clients reconnect); the call after a moment, in which it may have
  // ended, answered 503 gateway_unreachable, which the SDK sends again (and curl shows), rather than cut without a word.
  expect(await Promise.race([Promise.all(answers.slice(0, 2)), new Promise((resolve) => setTimeout(() => resolve("still open"), 500))])).toEqual([
    "cut",
    "cut",
  ]);
  expect(await Promise.race([answers[2], "in flight"])).toBe("in flight");
  await hold;
  expect(performance.now() - started).toBeLessThan(3_000);
  expect(disposed).toBe(true);
  expect(await answers[2]).toBe(503);
  // Serve said at once what the hold waited for, and for how long: the call, until it was cut.
  expect(waiting).toEqual([[["POST /v1/apps/shop/functions/slow/call"], "cut"]]);
});

it("waits, in a reload, for a stream or a web request in flight to end, and says what it waits for", async () => {
  const upstream = await startHanging();
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  open.push(upstream.close, () => door.close());
  door.resumableWaitMs = 200;
  let disposed = false;
  door.swap({ url: upstream.url, dispose: async () => void (disposed = true), settled: async () => {} });
  const base = url.href.replace(/\/$/, "");
  const answers = [through(base, "POST", "/v1/apps/shop/functions/feed/stream", { authorization: "Bearer tk-x" }), through(base, "POST", "/shop/web/export")];
  while (upstream.arrived.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
  const waiting: [string[], string][] = [];
  door.onHoldWaiting = (requests, until) => waiting.push([requests, until]);
  let held = false;
  const hold = door.hold().then(() => void (held = true));
  await new Promise((resolve) => setTimeout(resolve, 600));
  expect({ held, disposed }).toEqual({ held: false, disposed: false });
  expect(waiting).toEqual([[["POST /v1/apps/shop/functions/feed/stream", "POST /shop/web/export"], "end"]]);
  upstream.finish();
  await hold;
  expect(disposed).toBe(true);
  expect(await Promise.all(answers)).toEqual([200, 200]);
});

it("stops taking requests when serve stops, lets those in flight end, and answers those still in flight 503, logged as 503", async () => {
  const upstream = await startHanging();
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  open.push(upstream.close, () => door.close());
  door.swap({ url: upstream.url, dispose: async () => {}, settled: async () => {} });
  const told: string[] = [];
  door.onRequest = (method, path, status, _ms, cut) => told.push(`${method} ${path} ${status ?? "none"}${cut ? " cut" : ""}`);
  const base = url.href.replace(/\/$/, "");
  const call = "/v1/apps/shop/functions/slow/call";
  const first = through(base, "POST", call, { authorization: "Bearer tk-x" });
  while (upstream.arrived.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  let drained = false;
  const draining = door.drain().then(() => void (drained = true));
  expect(door.waitingFor).toEqual([`POST ${call}`]);
  // A new request is refused with the gateway's error, one the SDK sends again; the local plane's own still pass.
  expect(await through(base, "POST", call, { authorization: "Bearer tk-x" })).toBe(503);
  void through(base, "POST", "/v1/planes/heartbeat", { [HEADERS.signature]: "sig" });
  while (upstream.arrived.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(drained).toBe(false);
  upstream.finish(); // both end: the drain is over
  await draining;
  expect(await first).toBe(200);
  expect(told.filter((t) => t.includes(call))).toEqual([`POST ${call} 503`, `POST ${call} 200`]);
});

it("answers a request in flight 503 when serve stops before the gateway answered, and logs the 503, not Node's default 200", async () => {
  const upstream = await startHanging();
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  open.push(upstream.close);
  door.swap({ url: upstream.url, dispose: async () => {}, settled: async () => {} });
  const told: string[] = [];
  door.onRequest = (method, path, status, _ms, cut) => told.push(`${method} ${path} ${status ?? "none"}${cut ? " cut" : ""}`);
  const base = url.href.replace(/\/$/, "");
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request(`${base}/v1/apps/shop/functions/slow/call`, { method: "POST", headers: { authorization: "Bearer tk-x" } }, (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end('{"args":[]}');
  });
  while (upstream.arrived.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  await door.close();
  const { status, body } = await answer;
  expect(status).toBe(503);
  expect(JSON.parse(body)).toMatchObject({
    error: { code: "gateway_unreachable", message: expect.stringMatching(/^tandem serve stopped before the gateway answered/) },
  });
  expect(told).toEqual(["POST /v1/apps/shop/functions/slow/call 503"]);
});

it("tells onRequest that a request got no answer when its client left first, rather than Node's default 200", async () => {
  const upstream = await startHanging();
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  open.push(upstream.close, () => door.close());
  door.swap({ url: upstream.url, dispose: async () => {} });
  const told: string[] = [];
  door.onRequest = (method, path, status, _ms, cut) => told.push(`${method} ${path} ${status ?? "none"}${cut ? " cut" : ""}`);
  const req = http.request(`${url.href}v1/apps/shop/functions/slow/call`, { method: "POST", headers: { authorization: "Bearer tk-x" } });
  req.on("error", () => {});
  req.end('{"args":[]}');
  while (upstream.arrived.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  req.destroy();
  while (told.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(told).toEqual(["POST /v1/apps/shop/functions/slow/call none cut"]);
});

it("answers headers past Node's limit, and bytes that are not HTTP, in the gateway's error form, and sends two Authorization headers on as one", async () => {
  const upstream = await startUpstream({ resetSecond: false });
  const door = new URL(await doorTo(upstream));
  const raw = (request: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(door.port), door.hostname, () => socket.write(request));
      let answer = "";
      socket.setEncoding("utf8").on("data", (d: string) => (answer += d));
      socket.on("end", () => resolve(answer)).on("error", reject);
    });
  const huge = await raw(`GET /v1/whoami HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${"a".repeat(20_000)}\r\n\r\n`);
  expect(huge.split("\r\n")[0]).toBe("HTTP/1.1 431 Request Header Fields Too Large");
  expect(JSON.parse(huge.slice(huge.indexOf("\r\n\r\n") + 4))).toEqual({
    error: { code: "invalid_request", message: `request headers are larger than ${http.maxHeaderSize} bytes, the most tandem serve reads` },
  });
  // Two Authorization headers go on joined, as fetch and workerd join them (the gateway refuses that), not as the first.
  const twice = await raw("GET /v1/whoami HTTP/1.1\r\nhost: x\r\nauthorization: Bearer one\r\nauthorization: Bearer two\r\nconnection: close\r\n\r\n");
  expect(twice.split("\r\n")[0]).toBe("HTTP/1.1 200 OK");
  expect(upstream.authorizations).toEqual(["Bearer one, Bearer two"]);
  const garbage = await raw("NOT HTTP AT ALL\r\n\r\n");
  expect(garbage.split("\r\n")[0]).toBe("HTTP/1.1 400 Bad Request");
  expect((JSON.parse(garbage.slice(garbage.indexOf("\r\n\r\n") + 4)) as { error: { code: string } }).error.code).toBe("invalid_request");
  expect(upstream.answered).toEqual([""]);
});

/** A raw connection that sends `request` and then nothing: what it got, and when, once the door closed it. */
function stalled(door: URL, request: string): Promise<{ answer: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = net.connect(Number(door.port), door.hostname, () => socket.write(request));
    let answer = "";
    socket.setEncoding("utf8").on("data", (d: string) => (answer += d));
    socket.on("close", () => resolve({ answer, ms: performance.now() - started })).on("error", reject);
  });
}

it("answers a request whose body stops coming 408 once no byte came for bodyIdleMs, logged as 408, and closes its connection", async () => {
  const upstream = await startHanging();
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  open.push(upstream.close, () => door.close());
  door.bodyIdleMs = 300;
  door.swap({ url: upstream.url, dispose: async () => {}, settled: async () => {} });
  const told: string[] = [];
  door.onRequest = (method, path, status, _ms, cut) => told.push(`${method} ${path} ${status ?? "none"}${cut ? " cut" : ""}`);
  // 7 bytes of the 100 declared, then nothing; the connection stays open.
  const { answer, ms } = await stalled(url, 'POST /shop/json HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a": 1');
  expect(answer.split("\r\n")[0]).toBe("HTTP/1.1 408 Request Timeout");
  expect(JSON.parse(answer.slice(answer.indexOf("{"), answer.lastIndexOf("}") + 1))).toEqual({
    error: {
      code: "invalid_request",
      message:
        "the request's body stopped coming: no byte for 0.3 s after 7 bytes of the 100 its Content-Length declares; tandem serve ends such a request rather than hold it open",
    },
  });
  expect(ms).toBeGreaterThanOrEqual(300);
  expect(ms).toBeLessThan(2_000);
  expect(told).toEqual(["POST /shop/json 408"]);
});

it("gives a body that keeps coming, however slowly, all the time it needs", async () => {
  const upstream = await startUpstream({ resetSecond: false });
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  open.push(upstream.close, () => door.close());
  door.bodyIdleMs = 300;
  door.swap({ url: upstream.url, dispose: async () => {} });
  const answer = new Promise<string>((resolve, reject) => {
    const req = http.request(`${url.href}shop/upload`, { method: "POST", headers: { "content-length": "6" } }, (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk));
      res.on("end", () => resolve(`${res.statusCode} ${body}`));
    });
    req.on("error", reject);
    for (const [i, part] of ["ab", "cd", "ef"].entries()) setTimeout(() => req.write(part), i * 200); // 400 ms in all
    setTimeout(() => req.end(), 450);
  });
  expect(await answer).toBe("200 echo abcdef");
});

it("holds a reload no longer than bodyIdleMs for a request whose body stopped coming, and sends the requests it held on", async () => {
  const upstream = await startHanging();
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  open.push(upstream.close, () => door.close());
  door.bodyIdleMs = 500;
  door.swap({ url: upstream.url, dispose: async () => {}, settled: async () => {} });
  const upload = stalled(url, 'POST /shop/json HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"a": 1');
  while (upstream.arrived.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  const started = performance.now();
  const hold = door.hold();
  // A request that comes meanwhile waits for the new version, which comes once the stalled upload was answered 408.
  const next = await startUpstream({ resetSecond: false });
  open.push(next.close);
  const health = fetch(`${url.href}v1/health`).then((res) => res.text());
  await hold;
  door.swap({ url: next.url, dispose: async () => {} });
  expect(await health).toBe("echo ");
  expect(performance.now() - started).toBeLessThan(500 + 1_500);
  expect((await upload).answer.split("\r\n")[0]).toBe("HTTP/1.1 408 Request Timeout");
});

/** An upstream that answers each request at once, but holds those whose path `hangs` matches until `finish`. */
async function startAnswering(hangs?: RegExp): Promise<{ url: URL; arrived: string[]; finish: () => void; close: () => Promise<void> }> {
  const arrived: string[] = [];
  const waiting: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    arrived.push(`${req.method} ${req.url}`);
    req.resume();
    if (hangs?.test(req.url ?? "")) waiting.push(res);
    else res.end("answered");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`),
    arrived,
    finish: () => waiting.splice(0).forEach((res) => res.end("done")),
    close: () => new Promise((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

it("sends the local plane's own requests, while a reload waits for a stream, to the workerd still running, and holds them once it stops", async () => {
  const old = await startAnswering(/\/stream$/);
  const next = await startAnswering();
  const { door, url } = await FrontDoor.listen("127.0.0.1", 0);
  open.push(old.close, next.close, () => door.close());
  door.resumableWaitMs = 200;
  let settle: () => void = () => {};
  let stopping = false;
  const settled = new Promise<void>((resolve) => (settle = resolve));
  door.swap({ url: old.url, dispose: async () => {}, settled: () => ((stopping = true), settled) });
  const base = url.href.replace(/\/$/, "");
  const signed = { [HEADERS.signature]: "sig" };
  const stream = through(base, "POST", "/v1/apps/shop/functions/feed/stream", { authorization: "Bearer tk-x" });
  while (old.arrived.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  const waiting: [string[], string][] = [];
  door.onHoldWaiting = (requests, until) => waiting.push([requests, until]);
  const hold = door.hold();

  // The plane's heartbeat and log lines are answered by the workerd that runs, while the stream goes on; a client's
  // request waits for the next workerd.
  const timely = (answer: Promise<number | "cut">) => Promise.race([answer, new Promise((resolve) => setTimeout(() => resolve("held"), 1_000))]);
  expect(await timely(through(base, "POST", "/v1/planes/heartbeat", signed))).toBe(200);
  expect(await timely(through(base, "POST", "/v1/planes/logs", signed))).toBe(200);
  const client = through(base, "GET", "/v1/apps", { authorization: "Bearer tk-x" });
  expect(await timely(client)).toBe("held");
  expect(old.arrived).toEqual(["POST /v1/apps/shop/functions/feed/stream", "POST /v1/planes/heartbeat", "POST /v1/planes/logs"]);
  // What the reload waits for is the stream alone.
  expect(waiting).toEqual([[["POST /v1/apps/shop/functions/feed/stream"], "end"]]);

  // Once the old workerd begins to stop, the plane's requests wait too: two workerd never run on one state folder.
  old.finish();
  expect(await stream).toBe(200);
  while (!stopping) await new Promise((resolve) => setTimeout(resolve, 10));
  const late = through(base, "POST", "/v1/planes/heartbeat", signed);
  expect(await timely(late)).toBe("held");
  settle();
  await hold;
  door.swap({ url: next.url, dispose: async () => {} });
  expect(await Promise.all([late, client])).toEqual([200, 200]);
  expect(old.arrived).toHaveLength(3);
  expect(next.arrived.sort()).toEqual(["GET /v1/apps", "POST /v1/planes/heartbeat"]);
});
