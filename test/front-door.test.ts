/**
 * The local front door of `tandem serve` (sdk/cli/front-door.ts) with a real
 * workerd behind it: chunked bodies over the limit get the documented 413 on
 * every kind of route, the client reads it whole, and an endpoint that asks
 * for larger bodies gets them through the door too. A large body that the
 * gateway refuses before reading it (a token it refuses or that may not use the
 * route, an unknown function, a bad `?path=`) gets that answer, from the
 * gateway's preflight, never a reset.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FrontDoor, endpointBodyLimits, endpointsAskingToken, webMounts } from "../sdk/cli/front-door.js";
import { HUNG_REQUEST } from "../sdk/cli/workerd.js";
import { CALL_BODY_NOTE, unsignedPlaneRequest } from "../sdk/errors.js";
import { HEADERS } from "../sdk/protocol.js";
import { VOLUME_LIMITS } from "../sdk/defaults.js";
import { ADMIN_TOKEN, authed, eventually, startTestGateway, type TestGateway } from "./helpers/gateway.js";

const LIMIT = 1024 * 1024;
let gw: TestGateway;
let door: FrontDoor;
let doorUrl: URL;

beforeAll(async () => {
  const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
  gw = await startTestGateway([fixture("edge-app.ts"), fixture("auth-app.ts"), fixture("hung-app.ts")], {
    bindings: { TANDEM_MAX_BODY_BYTES: String(LIMIT) },
    persist: false,
  });
  ({ door, url: doorUrl } = await FrontDoor.listen("127.0.0.1", 0));
  door.maxBodyBytes = LIMIT;
  door.endpointBodyLimits = endpointBodyLimits(gw.apps);
  door.endpointsAskingToken = endpointsAskingToken(gw.apps);
  door.webMounts = webMounts(gw.apps);
  door.swap({ url: new URL(gw.url), dispose: async () => {} });
});
afterAll(async () => {
  await door?.close();
  await gw?.dispose();
});

interface Answer {
  status: number;
  body: string;
  /** How much of its body the client had written when the answer ended. */
  sent: number;
  /** Its `access-control-allow-origin`. */
  allowOrigin?: string | undefined;
}

/**
 * Sends `total` bytes chunked through the door (a POST, unless `method`) with
 * Node's own client, which reads the answer while it still writes. `untilAnswered`: write 64 KiB, then
 * the rest only once the answer has begun.
 */
function postChunked(
  path: string,
  total: number,
  options: { untilAnswered?: boolean; token?: string | false; method?: string; origin?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered: () => void = () => {};
    const answeredOnce = new Promise<void>((r) => (answered = r));
    const req = http.request(
      new URL(path, doorUrl),
      {
        method: options.method ?? "POST",
        headers: {
          "transfer-encoding": "chunked",
          ...(options.token === false ? {} : { authorization: `Bearer ${options.token ?? ADMIN_TOKEN}` }),
          ...(options.origin ? { origin: options.origin } : {}),
        },
      },
      (res) => {
        answered();
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode!, body, sent, allowOrigin: res.headers["access-control-allow-origin"] }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    const piece = Buffer.alloc(64 * 1024, 0x61);
    const pump = async () => {
      while (sent < total) {
        if (options.untilAnswered && sent === piece.length) await answeredOnce;
        sent += piece.length;
        if (!req.write(piece)) await new Promise((r) => req.once("drain", r));
      }
      req.end();
    };
    pump().catch(reject);
  });
}

describe("the front door of tandem serve", () => {
  it("lets a volume file larger than the gateway's body limit through: the volume routes keep their own limits", async () => {
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const made = await fetch(new URL("/v1/volumes", doorUrl), { method: "POST", headers: auth, body: JSON.stringify({ name: "through" }) });
    expect(made.status).toBe(201);
    const put = await fetch(new URL("/v1/volumes/through/file?path=big.bin", doorUrl), {
      method: "PUT",
      headers: auth,
      body: new Uint8Array(3 * LIMIT).fill(1),
    });
    expect(put.status).toBe(200);
    const got = await fetch(new URL("/v1/volumes/through/file?path=big.bin", doorUrl), { headers: auth });
    expect((await got.arrayBuffer()).byteLength).toBe(3 * LIMIT);
  });

  it("answers 413 to a volume block over a block's limit, every time, not a 502 (its limit is below the gateway's)", async () => {
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    expect((await fetch(new URL("/v1/volumes", doorUrl), { method: "POST", headers: auth, body: JSON.stringify({ name: "blocky" }) })).status).toBe(201);
    const over = new Uint8Array(VOLUME_LIMITS.blockBytes + 1);
    const hash = createHash("sha256").update(over).digest("hex");
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await fetch(new URL(`/v1/volumes/blocky/blocks/${hash}`, doorUrl), { method: "PUT", headers: auth, body: over });
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      seen.push(`${res.status} ${error.code} ${error.message}`);
    }
    // Before: mostly 502 gateway_unreachable ("write ECONNRESET, while the request's body was still being sent").
    expect(new Set(seen)).toEqual(
      new Set([`413 payload_too_large request body is larger than ${VOLUME_LIMITS.blockBytes} bytes, the most a volume block holds`]),
    );
  });

  it("lets a deployment's file larger than the gateway's body limit through: its route keeps its own limit", async () => {
    const bytes = new Uint8Array(3 * LIMIT).fill(2);
    const hash = createHash("sha256").update(bytes).digest("hex");
    const put = await fetch(new URL(`/v1/apps/edge/deployments/files/${hash}`, doorUrl), {
      method: "PUT",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      body: bytes,
    });
    expect(put.status).toBe(201);
    expect(await put.json()).toEqual({ sha256: hash, bytes: 3 * LIMIT, stored: true });
  });

  it("answers 413 itself, whole, to a chunked body 16 times the limit on the /v1 routes and a web endpoint", async () => {
    for (const path of ["/v1/apps/edge/functions/echo/call", "/v1/apps/edge/functions/echo/spawn", "/v1/apps/edge/functions/echo/map", "/edge/upload"]) {
      const answer = await postChunked(path, 16 * LIMIT);
      expect([path, answer.status]).toEqual([path, 413]);
      // A call's body is told what counts towards the limit: its arguments as they travel.
      const note = path.startsWith("/v1/") ? `: ${CALL_BODY_NOTE}` : "";
      expect(JSON.parse(answer.body).error).toMatchObject({
        code: "payload_too_large",
        message: `request body is larger than ${LIMIT} bytes, the most this gateway accepts (TANDEM_MAX_BODY_BYTES)${note}`,
        details: { maxBytes: LIMIT },
      });
    }
  });

  it("sends the gateway's own answer whole when it ends before the body does, as an unknown route's does", async () => {
    const answer = await postChunked("/nope/x", 16 * LIMIT, { untilAnswered: true });
    expect(answer.status).toBe(404);
    expect(JSON.parse(answer.body).error).toMatchObject({ code: "not_found", message: expect.stringContaining('no app named "nope"') });
  });

  it("sends the gateway's 404 to a huge body streamed without pause to a path that is no app's, every time, not a 502", async () => {
    const seen: number[] = [];
    for (const path of ["/nope/x", "/nothing", "/edge/no-such-label", "/nope/x", "/nothing", "/edge/no-such-label"]) {
      const answer = await postChunked(path, 16 * LIMIT);
      seen.push(answer.status);
      if (answer.status === 404) expect(JSON.parse(answer.body).error.code).toBe("not_found");
    }
    expect(seen).toEqual([404, 404, 404, 404, 404, 404]);
  });

  it("sends the gateway's 401 to a huge chunked body without a token, on every /v1 route that takes a body", async () => {
    for (const path of ["/v1/apps/edge/functions/echo/call", "/v1/apps/edge/functions/echo/spawn", "/v1/apps/edge/functions/echo/map", "/v1/secrets"]) {
      const answer = await postChunked(path, 16 * LIMIT, { token: false });
      expect([path, answer.status]).toEqual([path, 401]);
      expect(JSON.parse(answer.body).error).toMatchObject({ code: "unauthorized" });
    }
    // A plane's route takes a plane's signature, not a token: that is what its 401 asks for.
    const unsigned = await postChunked("/v1/planes/logs", 16 * LIMIT, { token: false });
    expect(unsigned.status).toBe(401);
    expect(JSON.parse(unsigned.body).error.message).toBe(unsignedPlaneRequest().message);
  });

  it("sends the gateway's 401 to a large body with a token it does not know, every time, not a 502", async () => {
    // Within the limit, so the whole body is sent on: workerd answers 401 before reading it and closes, and the reset
    // that followed once took the answer with it in about 1 request of 10.
    const unknown = "tk-unknown00000000.ts-unknown0000000000000000000000000";
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const answer = await postChunked("/v1/apps/edge/functions/echo/call", LIMIT - 64 * 1024, { token: unknown });
      statuses.push(answer.status);
      if (answer.status === 401) expect(JSON.parse(answer.body).error).toMatchObject({ code: "unauthorized" });
    }
    expect(statuses).toEqual(Array(20).fill(401));
  });

  it("sends the gateway's 403 to a large body with a token it knows that may not use the route, every time, not a 502", async () => {
    // A call token limited to app "guarded": another app's function, the gateway-wide volumes and dicts, and secrets
    // (deploy scope) are all refused before the gateway reads a body, as an unknown token is.
    const made = await fetch(
      new URL("/v1/tokens", gw.url),
      authed({ method: "POST", body: JSON.stringify({ name: "guarded only", scope: "call", apps: ["guarded"] }) }),
    );
    expect(made.status).toBe(201);
    const { token } = (await made.json()) as { token: string };
    const refusals = [
      { method: "POST", path: "/v1/apps/edge/functions/echo/call", message: 'may reach only app guarded, not "edge"' },
      { method: "PUT", path: "/v1/volumes/through/file?path=no.bin", message: "volumes belong to the whole gateway" },
      { method: "POST", path: "/v1/dicts/nowhere/put", message: "dicts belong to the whole gateway" },
      { method: "POST", path: "/v1/secrets", message: 'has scope "call"; POST /v1/secrets needs "deploy"' },
    ];
    const seen: string[] = [];
    const wanted: string[] = [];
    for (let i = 0; i < 20; i++) {
      const { method, path, message } = refusals[i % refusals.length]!;
      const answer = await postChunked(path, LIMIT - 64 * 1024, { token, method });
      seen.push(`${method} ${path}: ${answer.status}`);
      wanted.push(`${method} ${path}: 403`);
      if (answer.status === 403) expect(JSON.parse(answer.body).error).toMatchObject({ code: "forbidden", message: expect.stringContaining(message) });
    }
    expect(seen).toEqual(wanted);
  });

  it("sends the gateway's 401 or 403 to a large body for a web endpoint that asks for a token, every time, not a 502", async () => {
    // A web app with `auth: "token"` refuses a request before reading its body, as a /v1 route does: without a
    // token, with one it does not know, with one for another app, or with a connect token it did not sign.
    const made = await fetch(new URL("/v1/tokens", gw.url), authed({ method: "POST", body: JSON.stringify({ name: "edge only", apps: ["edge"] }) }));
    const { token: edgeOnly } = (await made.json()) as { token: string };
    const refusals = [
      { path: "/guarded/admin/upload", token: false as const, status: 401, message: "needs a token: send `Authorization: Bearer <token>`" },
      { path: "/guarded/admin/upload", token: "tk-0000000000000000.ts-00000000000000000000000000000000", status: 401, message: "not known to this gateway" },
      { path: "/guarded/admin/upload", token: edgeOnly, status: 403, message: 'may reach only app edge, not "guarded"' },
      { path: "/guarded/admin/upload?token=ct-forged.forged", token: false as const, status: 401, message: "not a connect token this gateway signed" },
    ];
    const seen: string[] = [];
    const wanted: string[] = [];
    for (let i = 0; i < 20; i++) {
      const { path, token, status, message } = refusals[i % refusals.length]!;
      const answer = await postChunked(path, LIMIT - 64 * 1024, { token });
      seen.push(`${i % refusals.length}: ${answer.status}`);
      wanted.push(`${i % refusals.length}: ${status}`);
      if (answer.status === status) expect(JSON.parse(answer.body).error.message).toContain(message);
    }
    expect(seen).toEqual(wanted);
    // With a token that will do, the body goes through whole, and with a connect token too.
    const through = await postChunked("/guarded/admin/upload", LIMIT - 64 * 1024);
    expect([through.status, JSON.parse(through.body)]).toEqual([200, { read: LIMIT - 64 * 1024 }]);
    const minted = await fetch(new URL("/v1/apps/guarded/connect-token", gw.url), authed({ method: "POST", body: JSON.stringify({ label: "admin" }) }));
    const { token: connect } = (await minted.json()) as { token: string };
    const withConnect = await postChunked(`/guarded/admin/upload?token=${connect}`, LIMIT - 64 * 1024, { token: false });
    expect([withConnect.status, JSON.parse(withConnect.body)]).toEqual([200, { read: LIMIT - 64 * 1024 }]);
    // From an origin the app's CORS allows, the refusal carries that origin, as a small body's does, so the page can
    // read why (before, the preflight that refused it went without the request's Origin: a network error to the page).
    for (const token of [false as const, "tk-0000000000000000.ts-00000000000000000000000000000000"]) {
      const refused = await postChunked("/guarded/admin/upload", LIMIT - 64 * 1024, { token, origin: "https://app.example" });
      expect([refused.status, refused.allowOrigin]).toEqual([401, "https://app.example"]);
    }
    const elsewhere = await postChunked("/guarded/admin/upload", LIMIT - 64 * 1024, { token: false, origin: "https://elsewhere.example" });
    expect([elsewhere.status, elsewhere.allowOrigin]).toEqual([401, undefined]);
  });

  it("sends the gateway's 401 or 403, not its own 413, to a declared length over the limit with credentials that will not do", async () => {
    // The gateway checks credentials before it looks at a body's size; the door answered a content-length over the
    // limit with 413 first, so a caller without a token was told to send less, as one that may send it is.
    const made = await fetch(new URL("/v1/tokens", gw.url), authed({ method: "POST", body: JSON.stringify({ name: "edge only, declared", apps: ["edge"] }) }));
    const { token: edgeOnly } = (await made.json()) as { token: string };
    const over = new Uint8Array(2 * LIMIT).fill(0x61);
    const send = (path: string, token?: string) =>
      fetch(new URL(path, doorUrl), { method: "POST", body: over, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
    const answers = [
      await send("/guarded/admin/upload"),
      await send("/guarded/admin/upload", edgeOnly),
      await send("/v1/apps/guarded/functions/hello/call", edgeOnly),
      await send("/v1/apps/guarded/functions/hello/call", "tk-unknown00000000.ts-unknown0000000000000000000000000"),
      await send("/guarded/admin/upload", ADMIN_TOKEN),
      await send("/v1/apps/guarded/functions/hello/call", ADMIN_TOKEN),
    ];
    const seen = await Promise.all(answers.map(async (a) => `${a.status} ${((await a.json()) as { error: { code: string } }).error.code}`));
    expect(seen).toEqual(["401 unauthorized", "403 forbidden", "403 forbidden", "401 unauthorized", "413 payload_too_large", "413 payload_too_large"]);
  });

  it("sends the gateway's 400 or 404 to a large body it refuses before reading it, every time, not a 502", async () => {
    // Refusals that come from the route itself, after the token passed: workerd answers them before it reads the body
    // and closes, as it does a 401, and the reset took the answer with it in about 1 request of 10.
    const refusals = [
      { method: "POST", path: "/v1/apps/edge/functions/nope/call", status: 404, message: 'no function "nope"' },
      { method: "POST", path: "/v1/apps/edge/functions/nope/spawn", status: 404, message: 'no function "nope"' },
      { method: "PUT", path: "/v1/volumes/through/file?path=/", status: 400, message: "?path= must name a file or directory" },
      { method: "POST", path: "/v1/dicts/nowhere/frobnicate", status: 404, message: 'dicts have no operation "frobnicate"' },
    ];
    const seen: string[] = [];
    const wanted: string[] = [];
    for (let i = 0; i < 20; i++) {
      const { method, path, status, message } = refusals[i % refusals.length]!;
      const answer = await postChunked(path, LIMIT - 64 * 1024, { method });
      seen.push(`${method} ${path}: ${answer.status}`);
      wanted.push(`${method} ${path}: ${status}`);
      if (answer.status === status) expect(JSON.parse(answer.body).error.message).toContain(message);
    }
    expect(seen).toEqual(wanted);
  });

  it("answers 400 saying what it takes to a request target that is not a path (absolute-form, `*`), not workerd's 500", async () => {
    for (const target of ["http://elsewhere.example/v1/whoami", "*"]) {
      const socket = net.connect(Number(doorUrl.port), doorUrl.hostname);
      socket.write(`GET ${target} HTTP/1.1\r\nhost: ${doorUrl.host}\r\nauthorization: Bearer ${ADMIN_TOKEN}\r\nconnection: close\r\n\r\n`);
      let raw = "";
      for await (const chunk of socket) raw += String(chunk);
      expect(raw.split("\r\n")[0], target).toBe("HTTP/1.1 400 Bad Request");
      expect(JSON.parse(raw.slice(raw.indexOf('{"error"'), raw.lastIndexOf("}") + 1)).error.message).toBe(
        `the request target must be a path (/…), not "${target}": tandem serve is no proxy`,
      );
    }
  });

  it("answers a call whose body stops coming 408, and the gateway logs no error for the body it could not read", async () => {
    const idleMs = door.bodyIdleMs;
    door.bodyIdleMs = 300;
    try {
      const socket = net.connect(Number(doorUrl.port), doorUrl.hostname);
      socket.write(
        `POST /v1/apps/edge/functions/echo/call HTTP/1.1\r\nhost: ${doorUrl.host}\r\nauthorization: Bearer ${ADMIN_TOKEN}\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{"a\r\n`,
      );
      let raw = "";
      for await (const chunk of socket) raw += String(chunk);
      expect(raw.split("\r\n")[0]).toBe("HTTP/1.1 408 Request Timeout");
      await new Promise((resolve) => setTimeout(resolve, 500));
      // Before: "gateway: Error: Network connection lost." and its stack (readBodyUpTo, readJsonBody, …), as a fault.
      expect(gw.output.filter((l) => l.includes("Network connection lost"))).toEqual([]);
    } finally {
      door.bodyIdleMs = idleMs;
    }
  });

  it("answers 400 saying so to an HTTP/1.1 request without a Host header (Node's own was an empty 400), as to its upgrade", async () => {
    for (const head of [`GET /v1/health HTTP/1.1\r\nconnection: close`, `GET /edge/chat HTTP/1.1\r\nupgrade: websocket\r\nconnection: Upgrade`]) {
      const socket = net.connect(Number(doorUrl.port), doorUrl.hostname);
      socket.write(`${head}\r\n\r\n`);
      let raw = "";
      for await (const chunk of socket) raw += String(chunk);
      expect(raw.split("\r\n")[0], head).toBe("HTTP/1.1 400 Bad Request");
      expect(JSON.parse(raw.slice(raw.indexOf('{"error"'), raw.lastIndexOf("}") + 1)).error).toEqual({
        code: "invalid_request",
        message: "an HTTP/1.1 request needs a Host header (Host: 127.0.0.1:<port>)",
      });
    }
    // HTTP/1.0 may leave it out.
    const socket = net.connect(Number(doorUrl.port), doorUrl.hostname);
    socket.write("GET /v1/health HTTP/1.0\r\n\r\n");
    let raw = "";
    for await (const chunk of socket) raw += String(chunk);
    expect(raw.split("\r\n")[0]).toMatch(/^HTTP\/1\.[01] 200 OK$/);
  });

  it("answers a client that waits to send its body (Expect: 100-continue) with the 413 for a declared length over the limit (or the 401 for no token), never telling it to go on first", async () => {
    const exchange = (path: string, length: number) =>
      new Promise<string>((resolve) => {
        const socket = net.connect(Number(doorUrl.port), doorUrl.hostname);
        let raw = "";
        let sent = false;
        socket.write(`POST ${path} HTTP/1.1\r\nhost: ${doorUrl.host}\r\ncontent-length: ${length}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n`);
        socket.on("data", (chunk) => {
          raw += String(chunk);
          // Told to go on: the body follows, as a client does.
          if (!sent && raw.startsWith("HTTP/1.1 100 Continue\r\n\r\n")) {
            sent = true;
            socket.write("x".repeat(length));
          }
        });
        socket.on("end", () => resolve(raw));
        socket.on("error", () => resolve(raw)); // closed while it still wrote the body it was told to send
      });
    const refused = await exchange("/edge/submit", 2 * LIMIT);
    expect(refused.split("\r\n")[0]).toBe("HTTP/1.1 413 Payload Too Large");
    expect(JSON.parse(refused.slice(refused.indexOf('{"error"'), refused.lastIndexOf("}") + 1)).error.code).toBe("payload_too_large");
    // So is a /v1 request without a token: its 401, and no body sent.
    expect((await exchange("/v1/apps/edge/functions/echo/call", 10)).split("\r\n")[0]).toBe("HTTP/1.1 401 Unauthorized");
    // Within the limit, it is told to go on, and its body is read.
    const taken = await exchange("/edge/files/", 10);
    expect(taken.split("\r\n")[0]).toBe("HTTP/1.1 100 Continue");
    expect(taken).toContain('{"read":10}');
  });

  it("answers a CONNECT (a proxy's tunnel) with that 400, where it closed the connection without a word", async () => {
    for (const [target, message] of [
      ["elsewhere.example:443", 'the request target must be a path (/…), not "elsewhere.example:443": tandem serve is no proxy'],
      ["/edge/hello/Ada", "CONNECT asks for a tunnel to another host: tandem serve is no proxy"],
    ]) {
      const socket = net.connect(Number(doorUrl.port), doorUrl.hostname);
      socket.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`);
      let raw = "";
      for await (const chunk of socket) raw += String(chunk);
      expect(raw.split("\r\n")[0], target).toBe("HTTP/1.1 400 Bad Request");
      expect(JSON.parse(raw.slice(raw.indexOf('{"error"'), raw.lastIndexOf("}") + 1)).error).toEqual({ code: "invalid_request", message });
    }
  });

  it("answers a request the gateway's code could never answer with the API's JSON 500 saying so, and prints why in words, not workerd's plain text and stack", async () => {
    const res = await fetch(new URL("/hung/never/", doorUrl));
    expect(res.status).toBe(500);
    expect(res.headers.get("content-type")).toBe("application/json");
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe("internal");
    expect(error.message).toContain("the code answering it could never answer");
    await eventually(() => gw.output.some((line) => line.includes(HUNG_REQUEST)));
    expect(gw.output.filter((line) => /workerd@[0-9a-f]+|had hung/.test(line))).toEqual([]);
  });

  it("keeps the connection usable: the next request on it is answered", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<number>((resolve, reject) =>
        http.get(new URL("/v1/health", doorUrl), { agent }, (res) => res.resume().on("end", () => resolve(res.statusCode!))).on("error", reject),
      );
    expect(await get()).toBe(200);
    const refused = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        new URL("/v1/apps/edge/functions/echo/call", doorUrl),
        { method: "POST", agent, headers: { "transfer-encoding": "chunked", authorization: `Bearer ${ADMIN_TOKEN}` } },
        (res) => res.resume().on("end", () => resolve(res.statusCode!)),
      );
      req.on("error", reject);
      req.end(Buffer.alloc(2 * LIMIT, 0x20));
    });
    expect(refused).toBe(413);
    expect(await get()).toBe(200);
    agent.destroy();
  });

  it("logs an upload its client killed midway as cut, with no answer, and no error of the gateway's: nothing is stored", async () => {
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    await fetch(new URL("/v1/volumes", doorUrl), { method: "POST", headers: auth, body: JSON.stringify({ name: "aborted", existOk: true }) });
    const logged: [string, string, number | undefined, boolean][] = [];
    door.onRequest = (method, path, status, _ms, cut) => void logged.push([method, path, status, cut]);
    const printed = gw.output.length;
    try {
      const req = http.request(new URL("/v1/volumes/aborted/file?path=aborted.bin", doorUrl), { method: "PUT", headers: auth });
      req.on("error", () => {});
      req.write(new Uint8Array(256 * 1024).fill(2)); // chunked: no length declared
      await new Promise((r) => setTimeout(r, 300)); // the gateway is reading it
      req.destroy();
      await eventually(() => logged.some(([, path]) => path.includes("aborted.bin")), 5_000);
      expect(logged.find(([, path]) => path.includes("aborted.bin"))).toEqual(["PUT", "/v1/volumes/aborted/file?path=aborted.bin", undefined, true]);
      await new Promise((r) => setTimeout(r, 500)); // the gateway's side of it ends
      expect(gw.output.slice(printed).filter((l) => /gateway:|Network connection lost/.test(l))).toEqual([]);
    } finally {
      door.onRequest = undefined;
    }
    const listed = await fetch(new URL("/v1/volumes/aborted/files?path=", doorUrl), { headers: auth });
    expect(((await listed.json()) as { entries: unknown[] }).entries).toEqual([]);
  });

  it("sends a call once when its client goes away before the answer, not again as if workerd had closed the connection", async () => {
    const call = (fn: string, body: unknown) =>
      fetch(new URL(`/v1/apps/edge/functions/${fn}/call`, doorUrl), {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const token = `left-${Date.now()}`;
    await (await call("countedNap", { args: [`${token}-warm`, 0] })).text(); // the door keeps its connection to workerd for the next
    const req = http.request(new URL("/v1/apps/edge/functions/countedNap/call", doorUrl), {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    });
    req.on("error", () => {});
    req.end(JSON.stringify({ args: [token, 1_000] }));
    await new Promise((r) => setTimeout(r, 300)); // the call is under way
    req.destroy();
    await new Promise((r) => setTimeout(r, 1_500)); // long enough for a second run to have begun
    const runs = ((await (await call("runsOf", { args: [token] })).json()) as { result: number }).result;
    expect(runs).toBe(1);
  });

  it("lets a body through to an endpoint whose own limit is larger, and refuses one over an endpoint's smaller limit", async () => {
    const any = await postChunked("/edge/any-upload", 4 * LIMIT);
    expect([any.status, JSON.parse(any.body)]).toEqual([200, { read: 4 * LIMIT }]);
    const files = await postChunked("/edge/files/", 128 * 1024);
    expect(files.status).toBe(413);
    expect(JSON.parse(files.body).error.message).toBe(
      'request body is larger than 8192 bytes, the most web "files" of app "edge" accepts (its maxBodyBytes option)',
    );
  });
});

describe("a preflight (the front door's, sent straight to the gateway)", () => {
  // As the front door sends it: the request's method, path and query, with no body (one with a body is a 400: gateway.test.ts).
  const preflight = (path: string, method: string) =>
    fetch(new URL(path, gw.url), authed({ method, headers: { [HEADERS.preflight]: "1", "content-length": "0" } }));
  const api = (path: string, init?: RequestInit) => fetch(new URL(path, gw.url), authed(init));

  it("answers 204 to an admin token on routes that change state, and runs nothing: no dict made or written, no function run", async () => {
    expect((await preflight("/v1/dicts", "POST")).status).toBe(204);
    expect((await api("/v1/dicts/preflighted")).status).toBe(404);

    expect((await api("/v1/dicts", { method: "POST", body: JSON.stringify({ name: "kept" }) })).status).toBe(201);
    expect((await preflight("/v1/dicts/kept/put", "POST")).status).toBe(204);
    const got = await api("/v1/dicts/kept/get", { method: "POST", body: JSON.stringify({ key: "k" }) });
    expect(await got.json()).toEqual({ found: false });

    const run = `preflight-${Date.now()}`;
    expect((await preflight("/v1/apps/edge/functions/countedNap/call", "POST")).status).toBe(204);
    expect((await preflight("/v1/apps/edge/functions/countedNap/spawn", "POST")).status).toBe(204);
    const runs = await api("/v1/apps/edge/functions/runsOf/call", { method: "POST", body: JSON.stringify({ args: [run] }) });
    expect(((await runs.json()) as { result: unknown }).result).toBe(0);
  });

  it("answers as the route's own checks before its body would: 404 for an unknown function, 400 for a bad ?path=; a 204 writes nothing", async () => {
    const unknownFn = await preflight("/v1/apps/edge/functions/nope/call", "POST");
    expect(unknownFn.status).toBe(404);
    expect(((await unknownFn.json()) as { error: { message: string } }).error.message).toContain('no function "nope"');
    expect((await preflight("/v1/apps/edge/functions/nope/map", "POST")).status).toBe(404);
    expect((await preflight("/v1/volumes/preflighted/file?path=/", "PUT")).status).toBe(400);
    expect((await preflight("/v1/dicts/kept/frobnicate", "POST")).status).toBe(404);
    expect((await preflight("/v1/apps/edge/deployments/files/not-a-hash", "PUT")).status).toBe(400);

    expect((await api("/v1/volumes", { method: "POST", body: JSON.stringify({ name: "preflighted" }) })).status).toBe(201);
    expect((await preflight("/v1/volumes/preflighted/file?path=a.txt", "PUT")).status).toBe(204);
    expect((await api("/v1/volumes/preflighted/file?path=a.txt")).status).toBe(404);
    expect((await api("/v1/queues", { method: "POST", body: JSON.stringify({ name: "preflighted" }) })).status).toBe(201);
    expect((await preflight("/v1/queues/preflighted/put", "POST")).status).toBe(204);
    const len = await api("/v1/queues/preflighted/len", { method: "POST", body: "{}" });
    expect(await len.json()).toMatchObject({ len: 0 });
  });

  it("answers an unknown route or method as the request itself would be (404, 405), and a bad token 401", async () => {
    expect((await preflight("/v1/nope", "POST")).status).toBe(404);
    expect((await preflight("/v1/apps/edge/functions/echo/call", "PUT")).status).toBe(405);
    const unknown = await fetch(new URL("/v1/dicts/kept/put", gw.url), {
      method: "POST",
      headers: { [HEADERS.preflight]: "1", authorization: "Bearer tk-unknown00000000.ts-unknown0000000000000000000000000" },
    });
    expect(unknown.status).toBe(401);
  });
});
