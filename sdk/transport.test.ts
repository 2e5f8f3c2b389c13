/**
 * The SDK's client in Node: requests go over `node:http` with kept-alive
 * connections (not Node's `fetch`), a call that runs longer than a connection
 * may sit idle still gets its answer, a connection the server closed while
 * idle is not used again, nor one idle past its time while the event loop
 * stood still (by a call or a stream), a stream its reader leaves closes its
 * connection, and a malformed token fails as itself; a map's requests stay
 * under the gateway's body limit. Against a real HTTP server on loopback.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { API_LIMITS, LOG_LIMITS } from "./defaults.js";
import { GatewayUnreachableError, InvalidArgumentError, ProtocolError } from "./errors.js";
import { FunctionCall, lookup } from "./index.js";

const TOKEN = "tk-0123456789abcdef.ts-0123456789abcdef0123456789abcdef";

interface Seen {
  headers: http.IncomingHttpHeaders;
  port: number;
  body: string;
}

let server: http.Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

/** Starts `server`, handing `answer` each request with its whole body read; resolves with its URL. */
async function serveBodies(answer: (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void): Promise<string> {
  server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => answer(req, body, res));
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A server that answers every call with a call record whose result is its first argument, after `delayMs`. */
async function gateway(options: { delayMs?: number; keepAliveTimeoutMs?: number } = {}): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const url = await serveBodies((req, body, res) => {
    seen.push({ headers: req.headers, port: req.socket.remotePort!, body });
    const args = (JSON.parse(body) as { args: unknown[] }).args;
    setTimeout(() => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ callId: "fc-0", status: "succeeded", result: args[0], attempts: 1 }));
    }, options.delayMs ?? 0);
  });
  if (options.keepAliveTimeoutMs !== undefined) server!.keepAliveTimeout = options.keepAliveTimeoutMs;
  return { url, seen };
}

describe("the SDK's client in Node", () => {
  it("sends a call over node:http, not fetch, and the next call on the same kept-alive connection", async () => {
    const { url, seen } = await gateway();
    const fn = lookup<[string], string>("shop", "echo", { gateway: url, token: TOKEN });
    expect(await fn.remote("one")).toBe("one");
    expect(await fn.remote("two")).toBe("two");
    expect(seen).toHaveLength(2);
    // Node's fetch sends the Fetch standard's headers; node:http sends none of them.
    expect(seen[0]!.headers["sec-fetch-mode"]).toBeUndefined();
    expect(seen[0]!.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(seen[0]!.headers["idempotency-key"]).toMatch(/^[0-9a-f]{32}$/);
    expect(seen[1]!.port).toBe(seen[0]!.port);
  });

  it("sends text that is not ASCII with its length in bytes, and reads an answer whose characters are split between chunks", async () => {
    const text = "ÉCHEC du téléchargement, Ärger 🙂";
    const seen: { length: string | undefined; body: string }[] = [];
    const url = await serveBodies((req, body, res) => {
      seen.push({ length: req.headers["content-length"], body });
      const answer = Buffer.from(
        JSON.stringify({ callId: "fc-0", status: "succeeded", result: (JSON.parse(body) as { args: string[] }).args[0], attempts: 1 }),
      );
      const cut = answer.indexOf(Buffer.from("🙂")) + 2; // inside the emoji's four bytes
      res.writeHead(200, { "content-type": "application/json" });
      res.write(answer.subarray(0, cut));
      setTimeout(() => res.end(answer.subarray(cut)), 20);
    });
    expect(await lookup<[string], string>("shop", "echo", { gateway: url, token: TOKEN }).remote(text)).toBe(text);
    expect(seen).toEqual([{ length: String(Buffer.byteLength(JSON.stringify({ args: [text] }))), body: JSON.stringify({ args: [text] }) }]);
  });

  it("waits for a call that answers after longer than a connection may sit idle", async () => {
    const { url } = await gateway({ delayMs: 4_500 });
    expect(await lookup<[string], string>("shop", "echo", { gateway: url, token: TOKEN }).remote("slow")).toBe("slow");
  }, 15_000);

  it("does not send a call on a connection the server closed while it was idle", async () => {
    const { url, seen } = await gateway({ keepAliveTimeoutMs: 300 });
    const fn = lookup<[string], string>("shop", "echo", { gateway: url, token: TOKEN });
    expect(await fn.remote("before")).toBe("before");
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(await fn.remote("after")).toBe("after");
    expect(seen.map((s) => JSON.parse(s.body).args[0])).toEqual(["before", "after"]); // no send lost, none sent again
    expect(seen[1]!.port).not.toBe(seen[0]!.port);
  });

  it("sends no request on a connection idle past its time while this process's event loop stood still", async () => {
    // The server runs on a thread of its own, so it closes the idle connection (as workerd does after 5 s) while this
    // thread is blocked, and this client's 4 s idle timer cannot fire. A cancel carries no idempotency key: sent on
    // that connection, it was lost ("socket hang up"), and the SDK may not send it again.
    const thread = new Worker(
      `const http = require("node:http");
       const { parentPort } = require("node:worker_threads");
       const server = http.createServer((req, res) => {
         req.resume();
         req.on("end", () => {
           res.writeHead(200, { "content-type": "application/json" });
           res.end(JSON.stringify({ callId: "fc-0", status: "cancelled" }));
         });
       });
       server.keepAliveTimeout = 4_500;
       server.listen(0, "127.0.0.1", () => parentPort.postMessage(server.address().port));`,
      { eval: true },
    );
    try {
      const port = await new Promise<number>((resolve) => thread.once("message", resolve));
      const call = FunctionCall.fromId("fc-01m8kahk46m9azssadeq4z196a", { gateway: `http://127.0.0.1:${port}`, token: TOKEN });
      await call.cancel();
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5_500); // a synchronous stretch of work, 5.5 s
      await expect(call.cancel()).resolves.toBeUndefined();
    } finally {
      await thread.terminate();
    }
  }, 20_000);

  it("sends no stream on a connection idle past its time while this process's event loop stood still", async () => {
    // As above, for a stream: a POST with no idempotency key that may have started a generator, so never sent twice.
    const thread = new Worker(
      `const http = require("node:http");
       const { parentPort } = require("node:worker_threads");
       let streams = 0;
       const server = http.createServer((req, res) => {
         req.resume();
         req.on("end", () => {
           parentPort.postMessage({ streams: ++streams });
           res.writeHead(200, { "content-type": "application/x-ndjson" });
           res.write(JSON.stringify({ chunk: "a" }) + "\\n");
           res.end(JSON.stringify({ done: true, callId: "fc-0", chunks: 1 }) + "\\n");
         });
       });
       server.keepAliveTimeout = 4_500;
       server.listen(0, "127.0.0.1", () => parentPort.postMessage({ port: server.address().port }));`,
      { eval: true },
    );
    try {
      const messages: { port?: number; streams?: number }[] = [];
      const port = await new Promise<number>((resolve) =>
        thread.on("message", (m: { port?: number; streams?: number }) => (m.port === undefined ? messages.push(m) : resolve(m.port))),
      );
      const fn = lookup<[], AsyncGenerator<string>>("shop", "tokens", { gateway: `http://127.0.0.1:${port}`, token: TOKEN });
      const read = async () => {
        const out: string[] = [];
        for await (const t of fn.remoteGen()) out.push(t);
        return out;
      };
      expect(await read()).toEqual(["a"]);
      await new Promise((resolve) => setTimeout(resolve, 100)); // the connection back in the pool
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5_500); // a synchronous stretch of work, 5.5 s
      expect(await read()).toEqual(["a"]);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(messages.at(-1)).toEqual({ streams: 2 }); // none sent again
    } finally {
      await thread.terminate();
    }
  }, 20_000);

  it("streams over node:http, and closes the connection when the reader stops early", async () => {
    let closed = false;
    let headers: http.IncomingHttpHeaders = {};
    const url = await serveBodies((req, _body, res) => {
      headers = req.headers;
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      let n = 0;
      const more = () => {
        while (!res.destroyed && res.write(JSON.stringify({ chunk: ++n }) + "\n"));
      };
      res.on("drain", more);
      res.on("close", () => (closed = true));
      more();
    });
    const fn = lookup<[], AsyncGenerator<number>>("shop", "endless", { gateway: url, token: TOKEN });
    const seen: number[] = [];
    for await (const n of fn.remoteGen()) if (seen.push(n) === 3) break;
    expect(seen).toEqual([1, 2, 3]);
    expect(headers["sec-fetch-mode"]).toBeUndefined(); // Node's fetch sends it
    for (let i = 0; i < 100 && !closed; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(closed).toBe(true);
  });

  it("refuses arguments nested too deep for the codec with the depth limit, before sending anything, for a call and a map", async () => {
    let requests = 0;
    const url = await serveBodies((_req, _body, res) => void (requests++, res.end("{}")));
    let deep: unknown = 1;
    for (let i = 0; i < 20_000; i++) deep = [deep];
    const echo = lookup<[unknown], unknown>("shop", "echo", { gateway: url, token: TOKEN });
    for (const attempt of [
      () => echo.remote(deep),
      () => echo.spawn(deep),
      async () => {
        for await (const _ of echo.map([deep]));
      },
    ]) {
      const err = await attempt().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toBe(
        `the arguments nest arrays and objects more than ${API_LIMITS.maxJsonDepth} levels deep, the most a call takes: send them flatter (docs/api.md, "Values")`,
      );
    }
    expect(requests).toBe(0);
  });

  it("refuses a stream line that is no chunk, error or end, rather than end the stream there as if it were done", async () => {
    const url = await serveBodies((_req, _body, res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.end([{ chunk: 1 }, {}, { chunk: 3 }, { done: true, callId: "fc-0", chunks: 2 }].map((l) => JSON.stringify(l) + "\n").join(""));
    });
    const seen: number[] = [];
    const err = await (async () => {
      for await (const n of lookup<[], AsyncGenerator<number>>("shop", "feed", { gateway: url, token: TOKEN }).remoteGen()) seen.push(n);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([1]);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as Error).message).toContain("sent a line that is no chunk, error or end: {}");
  });

  it("says where it looked for a gateway that does not answer, and how to name another", async () => {
    const url = await serveBodies(() => undefined);
    await new Promise<void>((resolve) => server!.close(() => resolve())); // its port, now with nothing on it
    server = undefined;
    const err = await lookup<[number], number>("shop", "echo", { gateway: url, token: TOKEN })
      .remote(1)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayUnreachableError);
    expect((err as Error).message).toMatch(
      new RegExp(
        `^could not reach the Tandem gateway at ${url} \\(.*ECONNREFUSED.*\\); is \`tandem serve\` running\\? One at another address: --gateway <url>, the gateway option or TANDEM_GATEWAY$`,
      ),
    );
  });

  it("waits past its few quick retries for a gateway that answered it before and then went away, and sends the call again with its key", async () => {
    const { url, seen } = await gateway();
    const port = Number(new URL(url).port);
    const fn = lookup<[string], string>("shop", "echo", { gateway: url, token: TOKEN });
    expect(await fn.remote("before")).toBe("before");
    await new Promise<void>((resolve) => server!.close(() => resolve())); // tandem serve stopped…
    server = undefined;
    const started = performance.now();
    const call = fn.remote("during");
    // …and started again 5 s later: past the 4 quick retries (about 3 s), which were all a call had before.
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const again = await gateway();
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    await new Promise<void>((resolve) => server!.listen(port, "127.0.0.1", resolve));
    expect(await call).toBe("during");
    expect(performance.now() - started).toBeGreaterThan(5_000);
    expect(again.seen).toHaveLength(1);
    expect(again.seen[0]!.headers["idempotency-key"]).toMatch(/^[0-9a-f]{32}$/);
    expect(again.seen[0]!.headers["idempotency-key"]).not.toBe(seen[0]!.headers["idempotency-key"]);
    expect(again.seen[0]!.headers["tandem-fresh-key"]).toBeUndefined(); // sent before, so not said to be fresh
  }, 20_000);

  it("waits as long when its first request was in flight as the gateway went away (before: it gave up after 3 s)", async () => {
    let cut!: () => void;
    const wasCut = new Promise<void>((resolve) => (cut = resolve));
    const url = await serveBodies((req) => {
      req.socket.destroy(); // tandem serve stopped with this request in flight: its connection lost, no answer
      cut();
    });
    const port = Number(new URL(url).port);
    const call = lookup<[string], string>("shop", "echo", { gateway: url, token: TOKEN }).remote("first");
    await wasCut;
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    server = undefined;
    await new Promise((resolve) => setTimeout(resolve, 5_000)); // past the 4 quick retries
    const again = await gateway();
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    await new Promise<void>((resolve) => server!.listen(port, "127.0.0.1", resolve));
    expect(await call).toBe("first");
    expect(again.seen).toHaveLength(1);
  }, 20_000);

  it("fails a malformed token option as itself, not as an unreachable gateway", async () => {
    const call = lookup<[number], number>("shop", "echo", { gateway: "http://127.0.0.1:9", token: "not-a-token" }).remote(1);
    await expect(call).rejects.toMatchObject({ code: "invalid_options", message: expect.stringContaining("does not hold a Tandem token") });
  });
});

describe("the SDK's log follow", () => {
  it("follows on when its connection drops mid-follow (the gateway restarted), from a little before its last line, each line once", async () => {
    const line = (time: number, text: string) => ({
      time,
      app: "shop",
      function: "f",
      callId: "fc-01m8kahk46m9azssadeq4z196a",
      containerId: null,
      tier: "edge",
      region: "local",
      source: "stdout",
      text,
    });
    const asked: string[] = [];
    const url = await serveBodies((req, _body, res) => {
      asked.push(req.url!);
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      if (asked.length === 1) {
        res.write(JSON.stringify(line(100_000, "one")) + "\n");
        setTimeout(() => res.socket?.destroy(), 50); // the gateway went away (tandem serve restarted)
      } else res.end([line(100_000, "one"), line(100_001, "two")].map((l) => JSON.stringify(l) + "\n").join("")); // the call ended
    });
    const seen: string[] = [];
    for await (const l of FunctionCall.fromId(line(0, "").callId, { gateway: url, token: TOKEN }).followLogs({ limit: 5 })) seen.push(l.text);
    expect(seen).toEqual(["one", "two"]);
    expect(asked).toHaveLength(2);
    const again = new URL(asked[1]!, url).searchParams;
    expect({ since: again.get("since"), limit: again.get("limit"), follow: again.get("follow") }).toEqual({
      since: String(100_000 - LOG_LIMITS.followOverlapMs),
      limit: String(LOG_LIMITS.maxLimit),
      follow: "1",
    });
  });

  it("says the gateway's stream broke off, naming the gateway, when a read that does not follow loses its connection", async () => {
    const url = await serveBodies((_req, _body, res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.write('{"time":1,"app":"shop","function":"f","callId":null,"containerId":null,"tier":"edge","region":"local","source":"stdout","text":"one"}\n');
      setTimeout(() => res.socket?.destroy(), 50);
    });
    const err = await FunctionCall.fromId("fc-01m8kahk46m9azssadeq4z196a", { gateway: url, token: TOKEN })
      .logs()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayUnreachableError);
    expect((err as Error).message).toMatch(new RegExp(`^the log stream from the Tandem gateway at ${url} broke off \\(.+\\); is \`tandem serve\` running\\?`));
  });
});

describe("the SDK's map requests", () => {
  it("keeps each request under the gateway's default body limit: inputs of a few MB each go in several", async () => {
    const sizes: number[] = [];
    const url = await serveBodies((_, body, res) => {
      sizes.push(Buffer.byteLength(body));
      const { inputs } = JSON.parse(body) as { inputs: [string][] };
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.end(inputs.map(([text], index) => JSON.stringify({ index, callId: `fc-${index}`, status: "succeeded", result: text.length })).join("\n") + "\n");
    });
    const inputs = Array.from({ length: 6 }, (_, i) => "a".repeat(3_000_000 + i));
    const out: number[] = [];
    for await (const n of lookup<[string], number>("shop", "len", { gateway: url, token: TOKEN }).map(inputs)) out.push(n);
    expect(out).toEqual(inputs.map((s) => s.length));
    expect(sizes.length).toBeGreaterThan(1);
    for (const size of sizes) expect(size).toBeLessThanOrEqual(10 * 1024 * 1024);
  });

  it("sends no more inputs while its reader leaves thousands of results untaken, and sends the rest as it takes them", async () => {
    let received = 0;
    const url = await serveBodies((_, body, res) => {
      const { inputs } = JSON.parse(body) as { inputs: [number][] };
      received += inputs.length;
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.end(inputs.map(([n], index) => JSON.stringify({ index, callId: `fc-${index}`, status: "succeeded", result: n * 2 })).join("\n") + "\n");
    });
    const inputs = Array.from({ length: 20_000 }, (_, i) => i);
    const out: number[] = [];
    for await (const n of lookup<[number], number>("shop", "double", { gateway: url, token: TOKEN }).map(inputs)) {
      out.push(n);
      if (out.length === 1) {
        await new Promise((r) => setTimeout(r, 1_000)); // a slow reader: the map runs ahead of it by a bounded amount
        expect(received).toBeGreaterThan(0);
        expect(received).toBeLessThan(8_000);
      }
    }
    expect(received).toBe(20_000);
    expect(out).toEqual(inputs.map((n) => n * 2));
  });
});
