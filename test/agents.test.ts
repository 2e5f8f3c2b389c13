/**
 * WebSocket agents with a real `ws` client against real workerd: echo, state
 * through hibernation and a gateway restart, the SDK client's reconnect and
 * resume, rooms, every limit with its close code, a throwing handler, bad
 * frames, and hono's own WebSocket upgrade in an app.web mount.
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { connect, type AgentMessageEvent, type AgentSocket } from "../sdk/index.js";
import { AGENT_PING, AGENT_PONG, type LogLine } from "../sdk/protocol.js";
import { sha256Hex } from "../sdk/hex.js";
import { shardOf } from "../gateway/shard.js";
import { LOG_LIMITS } from "../sdk/defaults.js";
import { runCli } from "./helpers/cli.js";
import { documentedSeries, parsePrometheus, sampleValue } from "./helpers/prometheus.js";
import { ADMIN_TOKEN, authed, eventually, startTestGateway, type TestGateway } from "./helpers/gateway.js";

let gw: TestGateway;
const wsUrl = (path: string) => gw.url.replace(/^http/, "ws") + path;

beforeAll(async () => {
  gw = await startTestGateway(new URL("./fixtures/agent-app.ts", import.meta.url).pathname);
});
afterAll(async () => {
  await gw?.dispose();
});

/** A `ws` client whose frames and close can be awaited in order. */
async function client(path: string) {
  const ws = new WebSocket(wsUrl(path));
  const frames: (string | number[])[] = [];
  let wake = () => {};
  ws.on("message", (data: Buffer, binary: boolean) => {
    frames.push(binary ? [...data] : data.toString());
    wake();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  return {
    ws,
    closed,
    async next(ms = 5000): Promise<string | number[]> {
      const deadline = Date.now() + ms;
      while (frames.length === 0) {
        if (Date.now() > deadline) throw new Error(`no frame within ${ms} ms`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
      return frames.shift()!;
    },
  };
}
const json = async (c: { next(): Promise<string | number[]> }) => JSON.parse((await c.next()) as string);
/** A session's fingerprint, which its printed and kept lines carry instead of its id. */
const tag = async (sessionId: string) => (await sha256Hex(sessionId)).slice(0, 12);

/** Writes a raw, masked client frame: `ws` itself refuses to send the close codes and reasons RFC 6455 forbids. */
function writeFrame(ws: WebSocket, opcode: number, payload: Buffer): void {
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  const length = payload.length < 126 ? [0x80 | payload.length] : [0x80 | 126, payload.length >> 8, payload.length & 0xff];
  (ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.concat([Buffer.from([0x80 | opcode, ...length]), mask, masked]));
}
const closePayload = (code: number, reason: Buffer = Buffer.alloc(0)) => Buffer.concat([Buffer.from([code >> 8, code & 0xff]), reason]);

describe("a WebSocket agent", () => {
  it("greets, echoes text and binary frames, and calls functions from its handlers", async () => {
    const c = await client("/agents/echo?session=echo-session-1");
    expect(await json(c)).toEqual({ hello: "echo-session-1", resumed: false, messages: 0 });
    c.ws.send("hi");
    expect(await c.next()).toBe("echo:hi");
    c.ws.send(Buffer.from([1, 2, 3]));
    expect(await c.next()).toEqual([3, 2, 1]);
    c.ws.send("shout quiet please");
    expect(await c.next()).toBe("QUIET PLEASE");
    c.ws.close();
  });

  it("cancels the call a handler waits on when its socket ends, closed or dropped (before: it ran to its end for nobody)", async () => {
    const last = async () =>
      (await (await fetch(`${gw.url}/v1/apps/agents/functions/patientLast/call`, authed({ method: "POST", body: "{}" }))).json()) as {
        result: { callId?: string; stoppedBy?: string };
      };
    for (const end of ["close", "terminate"] as const) {
      const c = await client(`/agents/echo?session=waits-${end}`);
      await c.next();
      c.ws.send("wait 20000");
      await eventually(async () => (await last()).result.callId !== undefined && (await last()).result.stoppedBy === undefined);
      const { callId } = (await last()).result;
      if (end === "close") c.ws.close();
      else c.ws.terminate();
      await eventually(async () => (await last()).result.stoppedBy === "CancelledError", 10_000);
      await eventually(async () => ((await (await fetch(`${gw.url}/v1/calls/${callId}`, authed())).json()) as { status: string }).status === "cancelled");
      // Nothing failed: the handler's end is not logged as its failure (before: "onMessage threw: CancelledError", with a stack).
      await new Promise((resolve) => setTimeout(resolve, 300));
      const waits = await tag(`waits-${end}`);
      expect(gw.output.filter((l) => l.includes(`[agents/echo ${waits}]`) && l.includes("threw"))).toEqual([]);
    }
    // A .remoteGen() it reads, too: a chat's generation stops with its socket (before: it streamed to its end for nobody).
    const dripLast = async () =>
      (await (await fetch(`${gw.url}/v1/apps/agents/functions/dripLast/call`, authed({ method: "POST", body: "{}" }))).json()) as {
        result: { callId?: string; yielded: number; stoppedBy?: string };
      };
    {
      const c = await client("/agents/echo?session=drips-session-1");
      await c.next();
      c.ws.send("drip 300");
      for (let i = 0; i < 3; i++) expect(await c.next()).toBe(`drip:${i}`);
      const { callId } = (await dripLast()).result;
      c.ws.terminate();
      await eventually(async () => (await dripLast()).result.stoppedBy === "CancelledError", 10_000);
      expect((await dripLast()).result.yielded).toBeLessThan(100);
      const record = async () => (await (await fetch(`${gw.url}/v1/calls/${callId}`, authed())).json()) as { status: string; error?: { message: string } };
      await eventually(async () => (await record()).status === "cancelled");
      expect((await record()).error?.message).toContain("the client waiting on it went");
      await new Promise((resolve) => setTimeout(resolve, 300));
      const drips = await tag("drips-session-1");
      expect(gw.output.filter((l) => l.includes(`[agents/echo ${drips}]`) && l.includes("threw"))).toEqual([]);
    }
    // A socket that stays gets its answer.
    const c = await client("/agents/echo?session=waits-stays");
    await c.next();
    c.ws.send("wait 100");
    expect(await c.next()).toBe("waited");
    expect((await last()).result.stoppedBy).toBe("its time");
    c.ws.close();
  }, 40_000);

  it("sends a generator's chunks one by one, as they are produced", async () => {
    const c = await client("/agents/echo?session=stream-session");
    await c.next();
    c.ws.send("stream one two three");
    const arrived: [string | number[], number][] = [];
    for (let i = 0; i < 4; i++) arrived.push([await c.next(), Date.now()]);
    expect(arrived.map(([f]) => f)).toEqual(["token:one", "token:two", "token:three", "done"]);
    // 150 ms between chunks: the first arrived well before the generator finished.
    expect(arrived[2]![1] - arrived[0]![1]).toBeGreaterThan(200);
    c.ws.close();
  });

  it("gives a session without an id a fresh one", async () => {
    const c = await client("/agents/echo");
    const hello = await json(c);
    expect(hello.hello).toMatch(/^[0-9a-f-]{36}$/);
    c.ws.close();
  });

  it("keeps the session's state through hibernation", { timeout: 40_000 }, async () => {
    const c = await client("/agents/echo?session=sleepy-session");
    await c.next();
    c.ws.send("note before sleeping");
    c.ws.send("memory");
    expect(await c.next()).toBe("read from storage");
    c.ws.send("memory");
    expect(await c.next()).toBe("in memory");
    // Idle: the object is evicted and the socket stays open.
    await new Promise((r) => setTimeout(r, 15_000));
    c.ws.send("memory");
    expect(await c.next()).toBe("read from storage");
    c.ws.send("state");
    expect(await json(c)).toEqual({ messages: 5, notes: ["before sleeping"] });
    c.ws.close();
  });

  it("broadcasts to a room's sockets, and to no one else", async () => {
    const [a, b, outsider] = await Promise.all(["room-a-1234", "room-b-1234", "room-c-1234"].map((s) => client(`/agents/echo?session=${s}`)));
    for (const c of [a, b, outsider]) await c!.next();
    a!.ws.send("join lobby");
    b!.ws.send("join lobby");
    await new Promise((r) => setTimeout(r, 200));
    a!.ws.send("say hello room");
    expect(await b!.next()).toBe("room-a-1234: hello room");
    expect(await a!.next()).toBe("reached:1");
    outsider!.ws.send("hi");
    expect(await outsider!.next()).toBe("echo:hi"); // it got nothing from the room
    for (const c of [a, b, outsider]) c!.ws.close();
  });

  it("spreads a sharded agent's sessions over its shards, and a room still reaches them all", async () => {
    const sessions = Array.from({ length: 8 }, (_, i) => `crowd-session-${i}`);
    expect(new Set(sessions.map((s) => shardOf(s, 4))).size).toBeGreaterThan(2);
    const clients = await Promise.all(sessions.map((s) => client(`/agents/crowd?session=${s}`)));
    await new Promise((r) => setTimeout(r, 200)); // every onOpen has joined the room
    clients[0]!.ws.send("hello all");
    for (const c of clients) expect(await c.next()).toBe("crowd-session-0: hello all");
    expect(await clients[0]!.next()).toBe("reached:8");
    for (const c of clients) c.ws.close();
  });

  it("answers keep-alive pings: protocol pings, and the text ping browsers send", async () => {
    const c = await client("/agents/echo?session=keepalive-1");
    await c.next();
    const pong = new Promise<string>((resolve) => c.ws.once("pong", (data) => resolve(data.toString())));
    c.ws.ping("are you there");
    expect(await pong).toBe("are you there");
    c.ws.send(AGENT_PING);
    expect(await c.next()).toBe(AGENT_PONG);
    c.ws.send("state");
    expect(await json(c)).toEqual({ messages: 1, notes: [] }); // the text ping never reached the handler
    c.ws.close();
  });

  it("answers 426 to a plain request and 400 to a bad session id", async () => {
    const plain = await fetch(`${gw.url}/agents/echo`);
    expect(plain.status).toBe(426);
    expect(((await plain.json()) as { error: { message: string } }).error.message).toContain('websocket "echo" of app "agents" takes WebSocket connections');
    const refused = await new Promise<string>((resolve) => new WebSocket(wsUrl("/agents/echo?session=no")).on("error", (e) => resolve(e.message)));
    expect(refused).toBe("Unexpected server response: 400");
    const refusal = (query: string) =>
      new Promise<[number | undefined, string]>((resolve) =>
        new WebSocket(wsUrl(`/agents/echo?${query}`)).on("unexpected-response", (_req, res) => {
          let body = "";
          res.on("data", (chunk: Buffer) => (body += chunk.toString()));
          res.on("end", () => resolve([res.statusCode, (JSON.parse(body) as { error: { message: string } }).error.message]));
        }),
      );
    // Twice: said so (the first was taken, and the message echoed only it); too long: cut, saying so.
    expect(await refusal("session=aaaaaaaa&session=bbbbbbbb")).toEqual([400, '"session" is given 2 times; give it once']);
    expect(await refusal(`session=${"x".repeat(129)}`)).toEqual([
      400,
      `session ids are 8-128 letters, digits, '-' or '_' (got "${"x".repeat(40)}…", 129 characters)`,
    ]);
    // A path under the agent's: said so, where it said the app had no agent "echo" (listing "echo").
    const under = await fetch(`${gw.url}/agents/echo/extra/path`);
    expect(under.status).toBe(404);
    expect(((await under.json()) as { error: { message: string } }).error.message).toBe(
      'websocket "echo" of app "agents" takes WebSocket connections at /agents/echo?session=<id> only, not at a path under it (/extra/path)',
    );
  });
});

describe("limits and bad input", () => {
  it("refuses an upgrade that is not an RFC 6455 handshake with 400, before any session is kept or handler run", async () => {
    const handshake = (headers: string, method = "GET") =>
      new Promise<string>((resolve, reject) => {
        const { hostname, port } = new URL(gw.url);
        const socket = net.connect(Number(port), hostname, () =>
          socket.write(`${method} /agents/echo?session=bad-handshake-1 HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n${headers}\r\n`),
        );
        let answer = "";
        socket.setEncoding("utf8").on("data", (d: string) => {
          answer += d;
          if (answer.includes("}")) socket.destroy(); // the JSON error has come
        });
        socket.on("close", () => resolve(answer)).on("error", reject);
      });
    const body = (answer: string) =>
      (JSON.parse(answer.slice(answer.indexOf("{"), answer.lastIndexOf("}") + 1)) as { error: { code: string; message: string } }).error;
    const oldVersion = await handshake("sec-websocket-version: 8\r\n");
    expect(oldVersion.split("\r\n")[0]).toBe("HTTP/1.1 400 Bad Request");
    expect(body(oldVersion)).toEqual({
      code: "invalid_request",
      message: 'not a WebSocket handshake RFC 6455 allows: Sec-WebSocket-Version must be 13, not "8"',
    });
    expect(body(await handshake("sec-websocket-version: 13\r\n")).message).toBe("not a WebSocket handshake RFC 6455 allows: it lacks a Sec-WebSocket-Key");
    expect(body(await handshake("sec-websocket-version: 13\r\nsec-websocket-key: short==\r\n")).message).toBe(
      'not a WebSocket handshake RFC 6455 allows: Sec-WebSocket-Key must be 16 bytes in base64, not "short=="',
    );
    // A handshake is a GET (RFC 6455, 4.1): another method's upgrade read as one, as the hub saw a GET.
    const posted = await handshake("sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\ncontent-length: 0\r\n", "POST");
    expect(posted.split("\r\n")[0]).toBe("HTTP/1.1 400 Bad Request");
    expect(body(posted).message).toBe("not a WebSocket handshake RFC 6455 allows: its method must be GET, not POST");
    // No session was kept, nor did onOpen run: the first real connection with that id begins it.
    const c = await client("/agents/echo?session=bad-handshake-1");
    expect(await json(c)).toEqual({ hello: "bad-handshake-1", resumed: false, messages: 0 });
    c.ws.close();
  });

  it("closes a socket that sends a frame over the limit with 1009, and no other", async () => {
    const [big, other] = await Promise.all([client("/agents/echo?session=big-sender-1"), client("/agents/echo?session=bystander-1")]);
    await big.next();
    await other.next();
    big.ws.send("x".repeat(2000));
    expect(await big.closed).toEqual({ code: 1009, reason: "message too big: 2000 bytes, the limit is 1024" });
    other.ws.send("still here");
    expect(await other.next()).toBe("echo:still here");
    other.ws.close();
  });

  it("closes a flooding socket with 1008", async () => {
    const flood = await client("/agents/echo?session=flooder-1234");
    await flood.next();
    for (let i = 0; i < 40; i++) flood.ws.send(`m${i}`);
    expect(await flood.closed).toEqual({ code: 1008, reason: "too many messages: the limit is 10 a second" });
  });

  it("closes with 1011 when a handler throws, keeping the state it wrote before", async () => {
    const c = await client("/agents/echo?session=thrower-1234");
    await c.next();
    c.ws.send("note first");
    c.ws.send("throw");
    expect(await c.closed).toEqual({ code: 1011, reason: "onMessage failed: Error: the handler broke" });
    const thrower = await tag("thrower-1234");
    await eventually(() => gw.output.some((l) => l.includes(`[agents/echo ${thrower}] (stderr) onMessage threw: Error: the handler broke`)));
    const again = await client("/agents/echo?session=thrower-1234");
    expect(await json(again)).toMatchObject({ resumed: true });
    again.ws.send("state");
    expect(await json(again)).toEqual({ messages: 3, notes: ["first", "before the error"] });
    again.ws.close();
  });

  it("keeps a handler's error, with its stack, and a state it could not save in the app's logs, after the lines before them", async () => {
    const c = await client("/agents/echo?session=logged-thrower-1");
    await c.next();
    c.ws.send("throw");
    await c.closed;
    const cyclic = await client("/agents/echo?session=logged-cycle-1");
    await cyclic.next();
    cyclic.ws.send("cycle");
    await cyclic.closed;
    let lines: { function: string; source: string; text: string }[] = [];
    await eventually(async () => {
      const res = await fetch(`${gw.url}/v1/apps/agents/logs?function=echo&source=stderr&limit=1000`, authed());
      lines = (await res.text())
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l));
      return lines.some((l) => l.text.includes("could not be saved"));
    });
    // Each line of the stack is a line of the log, mapped to the app's file.
    const threw = lines.findIndex((l) => l.text === "onMessage threw: Error: the handler broke");
    expect(threw).toBeGreaterThanOrEqual(0);
    expect(lines[threw + 1]?.text).toMatch(/^\s+at onMessage \(test\/fixtures\/agent-app\.ts:\d+:\d+\)$/);
    expect(lines.map((l) => l.text)).toContain(
      "the session's state could not be saved, so it is back to its last saved state: Converting circular structure to JSON",
    );
    // In the terminal, the handler's own lines come before the error they led to, each with the session's prefix once.
    // Tagged with the session's fingerprint, never its id, which resumes it (before: the id, for whoever reads the terminal).
    const loggedThrower = await tag("logged-thrower-1");
    const printed = gw.output.filter((l) => l.includes(`[agents/echo ${loggedThrower}]`));
    expect(printed.slice(0, 2)).toEqual([
      `[agents/echo ${loggedThrower}] about to break`,
      `[agents/echo ${loggedThrower}] (stderr) onMessage threw: Error: the handler broke`,
    ]);
    expect(gw.output.filter((l) => l.includes("logged-thrower-1"))).toEqual([]);
  });

  it("keeps each of a session's lines with its fingerprint, which the logs API, tandem logs --session and the dashboard filter by", async () => {
    const fingerprint = (await sha256Hex("fingerprinted-1")).slice(0, 12);
    const c = await client("/agents/echo?session=fingerprinted-1");
    await c.next();
    c.ws.send("throw");
    await c.closed;
    const other = await client("/agents/echo?session=fingerprinted-2");
    await other.next();
    other.ws.send("throw");
    await other.closed;
    const read = async (query: string) =>
      (await (await fetch(`${gw.url}/v1/apps/agents/logs${query}`, authed())).text())
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as LogLine);
    let lines: LogLine[] = [];
    // Before: its lines had no session (a 1011 in the log could not be traced to the session that got it).
    await eventually(async () => (lines = await read(`?session=${fingerprint}`)).some((l) => l.text === "onMessage threw: Error: the handler broke"));
    expect(lines.every((l) => l.session === fingerprint && l.function === "echo")).toBe(true);
    expect(lines.map((l) => l.text)).toContain("about to break");
    // A function's lines have none.
    expect((await read("?limit=1000")).filter((l) => l.callId !== null).every((l) => l.session === undefined)).toBe(true);
    const cli = await runCli(["logs", "agents", "--session", fingerprint, "--source", "stderr", "--gateway", gw.url, "--token", ADMIN_TOKEN]);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain(`agents/echo ${fingerprint} (edge, stderr) onMessage threw: Error: the handler broke`);
    expect(cli.stdout).not.toContain((await sha256Hex("fingerprinted-2")).slice(0, 12));
    const bad = await fetch(`${gw.url}/v1/apps/agents/logs?session=fingerprinted-1`, authed());
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toContain('field "session" must be an agent session\'s fingerprint');
  });

  it("counts each agent's open sockets, sessions and sockets ended by close code in /v1/metrics, as the docs list them", async () => {
    const scrape = async () => parsePrometheus(await (await fetch(`${gw.url}/v1/metrics`, authed())).text());
    const of = (families: ReturnType<typeof parsePrometheus>, name: string, labels: Record<string, string> = {}) =>
      sampleValue(families, name, { app: "agents", agent: "echo", ...labels });
    let families = await scrape();
    // Every series the docs list, each agent's closes worth an alert there from the start.
    const documented = documentedSeries(await readFile(new URL("../docs/observability.md", import.meta.url), "utf8"), "### Agents' series");
    expect(documented).toEqual(["tandem_agent_sockets", "tandem_agent_sessions", "tandem_agent_socket_closes_total"]);
    for (const name of documented)
      expect(
        families.some((f) => f.name === name && f.metrics.length > 0),
        name,
      ).toBe(true);
    const failedBefore = of(families, "tandem_agent_socket_closes_total", { code: "1011" })!;
    expect(failedBefore).toBeGreaterThanOrEqual(0);
    const open = await client("/agents/echo?session=metrics-open-1");
    await open.next();
    await eventually(async () => (of((families = await scrape()), "tandem_agent_sockets") ?? 0) >= 1);
    expect(of(families, "tandem_agent_sessions")).toBeGreaterThanOrEqual(1);
    // Before: nothing counted a handler's failure, so no alert could see one.
    const thrower = await client("/agents/echo?session=metrics-thrower-1");
    await thrower.next();
    thrower.ws.send("throw");
    await thrower.closed;
    await eventually(async () => of((families = await scrape()), "tandem_agent_socket_closes_total", { code: "1011" }) === failedBefore + 1);
    open.ws.close(1000, "done");
    await open.closed;
  });

  // About 10 s: after workerd's 1002, the client waits for the connection to end.
  it("survives a client close without a code, and a malformed frame closes only its socket", { timeout: 45_000 }, async () => {
    const quiet = await client("/agents/echo?session=no-code-close");
    await quiet.next();
    quiet.ws.terminate(); // no close frame at all
    const polite = await client("/agents/echo?session=no-code-close");
    await polite.next();
    polite.ws.close(); // a close frame without a code (1005): the agent answers with 1000
    expect(await polite.closed).toEqual({ code: 1000, reason: "" });
    const [broken, other] = await Promise.all([client("/agents/echo?session=malformed-1"), client("/agents/echo?session=bystander-2")]);
    await broken.next();
    await other.next();
    // A frame with the reserved bits set and no mask: a protocol error.
    (broken.ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.from([0xf1, 0x02, 0x68, 0x69]));
    expect((await broken.closed).code).toBe(1002);
    other.ws.send("fine");
    expect(await other.next()).toBe("echo:fine");
    // What workerd does with each fault alone: an unmasked client frame is taken as if masked (RFC 6455 section 5.1
    // says the server must close); a reserved bit set, masked, is the protocol error.
    const unmasked = await client("/agents/echo?session=unmasked-1");
    await unmasked.next();
    (unmasked.ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.from([0x81, 0x02, 0x68, 0x69]));
    expect(await unmasked.next()).toBe("echo:hi");
    unmasked.ws.close();
    const reserved = await client("/agents/echo?session=reserved-bit-1");
    await reserved.next();
    (reserved.ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.from([0xc1, 0x82, 0, 0, 0, 0, 0x68, 0x69]));
    expect((await reserved.closed).code).toBe(1002);
    other.ws.close();
    // workerd notes the protocol error itself; no handler failed (a handler's lines are printed within edgePrintMs).
    await new Promise((resolve) => setTimeout(resolve, 20 * LOG_LIMITS.edgePrintMs));
    const tags = await Promise.all(["no-code-close", "malformed-1", "bystander-2"].map(tag));
    expect(gw.output.filter((l) => tags.some((t) => l.includes(`[agents/echo ${t}]`)) && l.includes("threw"))).toEqual([]);
  });

  it("closes with 1011 when the state cannot be saved, and keeps the last state that could", async () => {
    const c = await client("/agents/echo?session=cyclic-state-1");
    await c.next();
    const sibling = await client("/agents/echo?session=cyclic-state-1"); // the same session in another tab
    await sibling.next();
    c.ws.send("note saved");
    c.ws.send("cycle");
    const closed = await c.closed;
    expect(closed.code).toBe(1011);
    expect(closed.reason).toMatch(/^the session's state could not be saved: Converting circular structure to JSON$/);
    // The other socket carries on from the last saved state, not the one that could not be saved.
    sibling.ws.send("state");
    expect(await json(sibling)).toEqual({ messages: 2, notes: ["saved"] });
    sibling.ws.close();
    await sibling.closed;
    const again = await client("/agents/echo?session=cyclic-state-1");
    await again.next();
    again.ws.send("state");
    // The note's message was saved; the cycle's was not (its count with it); each "state" counts itself.
    expect(await json(again)).toEqual({ messages: 3, notes: ["saved"] });
    again.ws.close();
  });

  it("closes with 1011 when initialState throws, keeps its stack in the app's logs, and keeps no session", async () => {
    const c = await client("/agents/unready?session=unready-session-1");
    expect(await c.closed).toEqual({ code: 1011, reason: "initialState failed: Error: no state for you" });
    let lines: { text: string }[] = [];
    await eventually(async () => {
      const res = await fetch(`${gw.url}/v1/apps/agents/logs?function=unready&source=stderr`, authed());
      lines = (await res.text())
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l));
      return lines.length >= 2;
    });
    expect(lines[0]?.text).toBe("initialState threw: Error: no state for you");
    expect(lines[1]?.text).toMatch(/^\s+at (Object\.)?initialState \(test\/fixtures\/agent-app\.ts:\d+:\d+\)$/);
    // Printed within a moment of being kept, not with it: looked for until it is.
    const printed = `[agents/unready ${await tag("unready-session-1")}] (stderr) initialState threw: Error: no state for you`;
    await eventually(() => gw.output.some((l) => l.includes("initialState threw")), 5_000);
    expect(gw.output.filter((l) => l.includes("initialState threw"))).toEqual([printed]);
    // No session was kept: the same id tries to begin one again, not to resume.
    const again = await client("/agents/unready?session=unready-session-1");
    expect((await again.closed).code).toBe(1011);
  });

  it("closes with 1011 when a handler puts a function in the state, even when nothing else changed", async () => {
    const c = await client("/agents/keeper?session=function-state-1");
    c.ws.send("keep this");
    expect(await c.next()).toBe("kept a function");
    expect(await c.closed).toEqual({ code: 1011, reason: "the session's state could not be saved: a function (at state.callback) cannot be saved" });
  });

  it("forgets a session once it has had no socket for its sessionTtl", async () => {
    const c = await client("/agents/brief?session=brief-session-1");
    expect(await json(c)).toEqual({ resumed: false, notes: [] });
    c.ws.send("remember me");
    await new Promise((r) => setTimeout(r, 100));
    c.ws.close();
    await c.closed;
    const soon = await client("/agents/brief?session=brief-session-1");
    expect(await json(soon)).toEqual({ resumed: true, notes: ["remember me"] });
    soon.ws.close();
    await soon.closed;
    await new Promise((r) => setTimeout(r, 2500));
    const later = await client("/agents/brief?session=brief-session-1");
    expect(await json(later)).toEqual({ resumed: false, notes: [] });
    later.ws.close();
  });

  // About 10 s: after workerd's 1002, the client waits for the connection to end.
  it("runs onClose, and starts the session's time to live, when the runtime ends a socket for a protocol error", { timeout: 30_000 }, async () => {
    const [closer, huge, brief] = await Promise.all([
      client("/agents/closer?session=protocol-error-1"),
      client("/agents/closer?session=huge-frame-1"),
      client("/agents/brief?session=brief-broken-1"),
    ]);
    expect(await json(brief)).toEqual({ resumed: false, notes: [] });
    brief.ws.send("kept for a second");
    await new Promise((r) => setTimeout(r, 100));
    // A frame with the reserved bits set and no mask: workerd ends the socket with 1002 and hands the agent an error, not a close.
    for (const c of [closer, brief]) (c.ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.from([0xf1, 0x02, 0x68, 0x69]));
    // A frame over workerd's own 32 MiB: refused by the runtime before any limit of the agent's is checked.
    huge.ws.send("x".repeat(33 * 1024 * 1024));
    expect((await closer.closed).code).toBe(1002);
    expect((await brief.closed).code).toBe(1002);
    expect(await huge.closed).toEqual({ code: 1009, reason: "Message is too large" });
    await eventually(() => gw.output.some((l) => /closer protocol-error-1 got 1006 ".*protocol error/i.test(l)));
    await eventually(() => gw.output.some((l) => /closer huge-frame-1 got 1006 ".*Message is too large/.test(l)));
    await new Promise((r) => setTimeout(r, 1500));
    const later = await client("/agents/brief?session=brief-broken-1");
    expect(await json(later)).toEqual({ resumed: false, notes: [] });
    later.ws.close();
  });

  it("answers a client's close frame as RFC 6455 asks: a valid code echoed, a code that may not be sent with 1002", { timeout: 30_000 }, async () => {
    const answers: Record<string, { code: number; reason: string }> = {};
    const cases: [string, Buffer][] = [
      ...[0, 999, 1004, 1006, 1015, 1016, 2000, 2999, 5000].map((code): [string, Buffer] => [`code ${code}`, closePayload(code)]),
      ["code 1000", closePayload(1000, Buffer.from("bye"))],
      ["code 1012", closePayload(1012, Buffer.from("restarting"))],
      ["code 3000", closePayload(3000)],
      ["code 4999", closePayload(4999, Buffer.from("é".repeat(61)))], // 122 bytes of reason
    ];
    for (const [name, payload] of cases) {
      const c = await client(`/agents/closer?session=close-${name.replace(" ", "-")}`);
      writeFrame(c.ws, 0x8, payload);
      answers[name] = await c.closed;
    }
    const protocolError = { code: 1002, reason: expect.stringMatching(/^close code \d+ may not be sent \(RFC 6455 section 7\.4\)$/) };
    expect(answers).toEqual({
      "code 0": protocolError,
      "code 999": protocolError,
      "code 1004": protocolError,
      "code 1006": protocolError,
      "code 1015": protocolError,
      "code 1016": protocolError,
      "code 2000": protocolError,
      "code 2999": protocolError,
      "code 5000": protocolError,
      "code 1000": { code: 1000, reason: "bye" },
      "code 1012": { code: 1012, reason: "restarting" },
      "code 3000": { code: 3000, reason: "" },
      "code 4999": { code: 4999, reason: "é".repeat(61) },
    });
    // The agent's onClose was told the code the client sent, whatever the answer.
    await eventually(() => gw.output.some((l) => /closer close-code-2000 got 2000 ""/.test(l)));
    // Counted by the code answered (before: each forbidden code a client sent became a label of its own).
    const closes = async () =>
      parsePrometheus(await (await fetch(`${gw.url}/v1/metrics`, authed())).text())
        .find((f) => f.name === "tandem_agent_socket_closes_total")!
        .metrics.filter((m) => m.labels?.agent === "closer")
        .map((m) => m.labels!.code!);
    await eventually(async () => (await closes()).includes("1002"));
    // No code a client may not send is a label (1006 is: a socket that dropped is counted by it).
    expect((await closes()).filter((code) => ["0", "999", "1004", "1015", "1016", "2000", "2999", "5000"].includes(code))).toEqual([]);
    expect(await closes()).toEqual(expect.arrayContaining(["1000", "1012", "3000", "4999"]));
  });

  it("answers a close reason over 123 bytes with 1002", async () => {
    const c = await client("/agents/closer?session=close-long-reason");
    writeFrame(c.ws, 0x8, closePayload(4000, Buffer.alloc(124, 0x61)));
    expect(await c.closed).toEqual({ code: 1002, reason: "a close reason is at most 123 bytes (this one had 124)" });
  });

  it("hands on what workerd decided itself: invalid UTF-8 as U+FFFD, and a one-byte close payload as no code", async () => {
    const text = await client("/agents/closer?session=invalid-utf8-text");
    writeFrame(text.ws, 0x1, Buffer.from([0x61, 0xff, 0xfe, 0x62]));
    expect(await text.next()).toBe("[97,65533,65533,98]"); // not closed with 1007
    writeFrame(text.ws, 0x8, closePayload(4000, Buffer.from([0x61, 0xff])));
    expect(await text.closed).toEqual({ code: 4000, reason: "a\ufffd" }); // the agent cannot tell the reason was not UTF-8
    const short = await client("/agents/closer?session=one-byte-close");
    writeFrame(short.ws, 0x8, Buffer.from([0x03]));
    expect(await short.closed).toEqual({ code: 1000, reason: "" });
    await eventually(() => gw.output.some((l) => /closer one-byte-close got 1005 ""/.test(l)));
  });

  it("closes with the code a handler asks for", async () => {
    const c = await client("/agents/echo?session=leaver-12345");
    await c.next();
    c.ws.send("bye");
    expect(await c.closed).toEqual({ code: 4001, reason: "asked to leave" });
  });

  // About 10 s: the runtime ends the connection then.
  it("sends a close from onOpen at once, and ends its connection about 10 s later, as for a session's other sockets", { timeout: 30_000 }, async () => {
    const started = Date.now();
    const c = await client("/agents/doorman?session=turned-away-1");
    await eventually(() => c.ws.readyState === WebSocket.CLOSING, 2000); // its close frame came
    expect(await c.closed).toEqual({ code: 4002, reason: "not today" });
    expect(Date.now() - started).toBeGreaterThan(5000);
  });
});

describe("the SDK client", () => {
  const messages = (socket: AgentSocket) => {
    const got: (string | Uint8Array)[] = [];
    socket.addEventListener("message", (e) => got.push((e as AgentMessageEvent).data));
    return got;
  };
  const until = async (check: () => boolean, ms = 10_000) => {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) throw new Error("timed out");
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  it("reconnects after the gateway restarts and resumes the same session", { timeout: 30_000 }, async () => {
    const socket = connect("agents", "echo", { gateway: gw.url });
    const got = messages(socket);
    const opens: boolean[] = [];
    socket.addEventListener("open", (e) => opens.push((e as Event & { resumed: boolean }).resumed));
    socket.send("note kept across restarts"); // queued until open
    await until(() => got.length >= 1);
    expect(JSON.parse(got[0] as string)).toEqual({ hello: socket.sessionId, resumed: false, messages: 0 });
    await gw.restart();
    await until(() => opens.length === 2, 20_000);
    expect(opens).toEqual([false, true]);
    await until(() => got.length >= 2);
    expect(JSON.parse(got[1] as string)).toEqual({ hello: socket.sessionId, resumed: true, messages: 1 });
    socket.send("state");
    await until(() => got.length >= 3);
    expect(JSON.parse(got[2] as string)).toEqual({ messages: 2, notes: ["kept across restarts"] });
    socket.send(new Uint8Array([9, 8]));
    await until(() => got.length >= 4);
    expect(got[3]).toEqual(new Uint8Array([8, 9]));
    socket.close();
    expect(socket.readyState).toBeGreaterThanOrEqual(2);
  });

  it("resumes a session by its id from another client, and does not reconnect after a policy close", async () => {
    const first = connect("agents", "echo", { gateway: gw.url });
    const got = messages(first);
    first.send("note from the first client");
    await until(() => got.length >= 1);
    first.close();
    const second = connect("agents", "echo", { gateway: gw.url, sessionId: first.sessionId });
    const got2 = messages(second);
    second.send("state");
    await until(() => got2.length >= 2);
    expect(JSON.parse(got2[0] as string)).toMatchObject({ resumed: true });
    expect(JSON.parse(got2[1] as string).notes).toEqual(["from the first client"]);
    const closes: { code: number; willReconnect: boolean }[] = [];
    second.addEventListener("close", (e) => closes.push(e as never));
    second.send("x".repeat(5000));
    await until(() => closes.length === 1);
    expect(closes[0]).toMatchObject({ code: 1009, willReconnect: false });
    expect(second.readyState).toBe(3);
    expect(() => connect("agents", "echo", { gateway: gw.url, sessionId: "bad id" })).toThrow("sessionId must be 8-128 letters");
  });

  it("stops, with the gateway's message, when the agent does not exist, instead of retrying forever", async () => {
    const socket = connect("agents", "no-such-agent", { gateway: gw.url });
    const errors: string[] = [];
    const closes: { reason: string; willReconnect: boolean }[] = [];
    socket.addEventListener("error", (e) => errors.push((e as Event & { message: string }).message));
    socket.addEventListener("close", (e) => closes.push(e as never));
    await until(() => closes.length === 1);
    // An app with agents names them with its endpoints: the message said "no web endpoint", as if agents were not asked.
    expect(errors).toEqual([
      expect.stringMatching(/^the gateway refused the connection \(HTTP 404\): app "agents" has no web endpoint or agent "no-such-agent" \(labels: .*echo/),
    ]);
    expect(closes[0]).toMatchObject({ willReconnect: false, reason: errors[0] });
    expect(socket.readyState).toBe(3);
    await new Promise((r) => setTimeout(r, 600)); // past the first reconnect delay: nothing more happens
    expect(closes.length).toBe(1);
    // A send once closed is dropped, as a browser's WebSocket drops it (before: it threw, and ended a Node process
    // whose send raced the close event).
    expect(() => socket.send("x")).not.toThrow();
    expect(errors.length).toBe(1);
    socket.close(); // as a WebSocket's close() on a closed socket: nothing, no second close event
    expect(closes.length).toBe(1);
  });
});

describe("app.web with hono's WebSocket upgrade", () => {
  it("upgrades in workerd", async () => {
    const c = await client("/agents/raw/ws");
    c.ws.send("ping?");
    expect(await c.next()).toBe("hono:ping?");
    c.ws.close();
  });

  it("answers a client's close with its code, as a browser's server would", async () => {
    const c = await client("/agents/raw/ws");
    c.ws.send("ping?");
    expect(await c.next()).toBe("hono:ping?");
    c.ws.close(1000, "done");
    // Without the runtime's reply, ws waits 30 s for one and then reports 1006: the connection dropped.
    const closed = await Promise.race([c.closed, new Promise<string>((r) => setTimeout(() => r("no close reply within 3 s"), 3000))]);
    expect(closed).toEqual({ code: 1000, reason: "done" });
  });
});
