/**
 * How the SDK's HTTP clients reach the gateway: `fetch`, unless the runtime
 * installed another way. Inside a plane container (no network) the runner
 * installs one that sends each request over the unix socket to its plane,
 * which carries it to the gateway (docs/security.md).
 *
 * In Node every request goes over `node:http` instead, on kept-alive
 * connections each let go after 4 s idle, before workerd's 5 s would close it
 * under a request. A request whose answer is read whole (every JSON route:
 * `.remote()`, `.spawn()`, lookups) is read whole there (`gatewayExchange`):
 * Node's `fetch` spent about 0.25 ms more of the client's time on each small
 * POST than `node:http` did on loopback, a third of an edge call's whole round
 * trip (bench/README.md, "The SDK's client in Node"). Streams and bytes
 * (`gatewayFetch`: `.remoteGen()`, `.map()`, log follows, files) come back as a
 * web `Response` whose body streams: Node's `fetch` keeps its connections on a
 * timer too, and after a stretch of synchronous work longer than 5 s it sent
 * the next stream on a connection the gateway had closed ("other side
 * closed"), a POST it may not send again. Browsers and workerd keep `fetch`.
 */
import { joinChunks } from "./bounded-body.js";

/** A `fetch` for the gateway's `/v1` routes. */
export type GatewayFetch = (url: string, init: RequestInit) => Promise<Response>;

let installed: GatewayFetch | undefined;

/** Used by the plane's runner: every request the SDK sends to a gateway goes through `transport`. */
export function installGatewayFetch(transport: GatewayFetch | undefined): void {
  installed = transport;
}

/**
 * Sends a request to the gateway, through the installed transport, `node:http` in Node (its answer's body streams
 * as it comes, read or cancelled as `fetch`'s is), or `fetch`.
 *
 * @example const res = await gatewayFetch(url, { method: "POST", headers, body: JSON.stringify({ args }) });
 */
export function gatewayFetch(url: string, init: RequestInit): Promise<Response> {
  if (installed) return installed(url, init);
  const node = nodeClient();
  const { body } = init;
  const sendable = body === undefined || body === null || typeof body === "string" || body instanceof Uint8Array;
  return node && sendable ? nodeFetch(url.startsWith("https:") ? node.https : node.http, url, init, body ?? undefined) : fetch(url, init);
}

/** `gatewayFetch` over `node:http`: the answer as a web `Response` as soon as its head comes. */
function nodeFetch(client: NodeClient, url: string, init: RequestInit, text: string | Uint8Array | undefined): Promise<Response> {
  client.letGoStale();
  const body = typeof text === "string" ? encoder.encode(text) : text;
  const headers: Record<string, string> = {};
  new Headers(init.headers).forEach((value, name) => (headers[name] = value));
  if (body !== undefined) headers["content-length"] = String(body.byteLength);
  const signal = init.signal ?? undefined;
  return new Promise<Response>((resolve, reject) => {
    const req = client.request(url, { method: init.method ?? "GET", agent: client.agent, headers, ...(signal ? { signal } : {}) });
    req.on("error", reject); // once answered, a later error reaches the body instead (a settled promise ignores it)
    req.once("response", (res) => {
      try {
        resolve(webResponse(req, res, signal));
      } catch (err) {
        req.destroy(); // a status no `Response` may have
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
    req.end(body);
  });
}

/**
 * An answer of `node:http` as a web `Response`. Its body is pulled as it is read (the socket pauses while
 * `BODY_QUEUE_BYTES` wait unread); cancelling it closes the connection, so the gateway sees the reader leave (a
 * generator returns); one that breaks off fails the read as `fetch`'s does (`TypeError: terminated`, the cause
 * within), or with the signal's reason when the signal stopped it.
 */
function webResponse(req: NodeClientRequest, res: NodeIncomingMessage, signal: AbortSignal | undefined): Response {
  const status = res.statusCode ?? 0;
  const headers = new Headers();
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
  const init = { status, statusText: res.statusMessage ?? "", headers };
  if (status === 204 || status === 205 || status === 304) {
    res.resume(); // a body these may not have: the connection goes back to the pool
    return new Response(null, init);
  }
  let open = true;
  const body = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        res.on("data", (chunk) => {
          if (!open) return;
          controller.enqueue(chunk);
          if ((controller.desiredSize ?? 0) <= 0) res.pause();
        });
        res.once("end", () => {
          if (open) controller.close();
          open = false;
        });
        res.once("error", (err) => {
          if (open) controller.error(signal?.aborted ? signal.reason : new TypeError("terminated", { cause: err }));
          open = false;
        });
      },
      pull() {
        res.resume();
      },
      cancel() {
        open = false;
        req.destroy();
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: BODY_QUEUE_BYTES }),
  );
  return new Response(body, init);
}

/** A request whose answer is read whole. */
export interface GatewayExchange {
  method: string;
  headers: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
}

/** An answer read whole: its status and its body as text. */
export interface GatewayAnswer {
  status: number;
  text: string;
}

/**
 * Sends a request and reads its whole answer: over `node:http`/`node:https`
 * in Node (kept-alive connections, each let go after 4 s idle, before
 * workerd's 5 s would close it under a request), else through `gatewayFetch`.
 * Fails as `fetch` does when no answer comes (the connection refused or
 * reset), so callers retry the same way.
 *
 * @example const { status, text } = await gatewayExchange(url, { method: "POST", headers, body: JSON.stringify(args) });
 */
export async function gatewayExchange(url: string, exchange: GatewayExchange): Promise<GatewayAnswer> {
  const node = installed ? undefined : nodeClient();
  if (!node) {
    const res = await gatewayFetch(url, exchange);
    return { status: res.status, text: await res.text() };
  }
  const { request, agent, letGoStale } = url.startsWith("https:") ? node.https : node.http;
  letGoStale();
  const { body } = exchange;
  return new Promise<GatewayAnswer>((resolve, reject) => {
    const req = request(url, {
      method: exchange.method,
      agent,
      headers: body === undefined ? exchange.headers : { ...exchange.headers, "content-length": String(encoder.encode(body).byteLength) },
      ...(exchange.signal ? { signal: exchange.signal } : {}),
    });
    req.once("error", reject);
    req.once("response", (res) => {
      const chunks: Uint8Array[] = [];
      let total = 0;
      res.on("data", (chunk) => {
        chunks.push(chunk);
        total += chunk.byteLength;
      });
      res.once("error", reject);
      res.once("end", () => resolve({ status: res.statusCode ?? 0, text: decoder.decode(joinChunks(chunks, total)) }));
    });
    req.end(body); // as text: Node writes it with the request's head (as bytes, it went on after it: 2 µs more a call)
  });
}

/** What the SDK uses of `node:http` and `node:https` (the SDK's code imports no node module: it runs in workerd and browsers too). */
interface NodeHttpModule {
  request(url: string, options: { method: string; agent: unknown; headers: Record<string, string>; signal?: AbortSignal }): NodeClientRequest;
  Agent: new (options: { keepAlive: boolean; timeout: number }) => NodeAgent;
}
/** The documented parts of Node's `http.Agent` used here: its idle connections, and the hook that keeps one. */
interface NodeAgent {
  freeSockets: Record<string, { destroy(): void }[] | undefined>;
  keepSocketAlive(socket: object): boolean;
}
interface NodeClientRequest {
  on(event: "error", listener: (err: Error) => void): this;
  once(event: "error", listener: (err: Error) => void): this;
  once(event: "response", listener: (res: NodeIncomingMessage) => void): this;
  end(body?: Uint8Array | string): void;
  destroy(): void;
}
interface NodeIncomingMessage {
  statusCode?: number;
  statusMessage?: string;
  /** Header names and values, alternating, as they came. */
  rawHeaders: string[];
  on(event: "data", listener: (chunk: Uint8Array) => void): this;
  once(event: "error", listener: (err: Error) => void): this;
  once(event: "end", listener: () => void): this;
  pause(): void;
  resume(): void;
}

interface NodeClient {
  request: NodeHttpModule["request"];
  agent: NodeAgent;
  /** Closes the kept-alive connections idle for `IDLE_MS` or more, which the agent's own timer has not let go yet. */
  letGoStale(): void;
}

let node: { http: NodeClient; https: NodeClient } | null | undefined;

/** `node:http` and `node:https` with their agents, in Node; null elsewhere (browsers, workerd, Deno's and Bun's own fetch). */
function nodeClient(): { http: NodeClient; https: NodeClient } | null {
  if (node !== undefined) return node;
  const proc = (globalThis as { process?: { versions?: { node?: string; bun?: string; deno?: string }; getBuiltinModule?: (id: string) => unknown } }).process;
  const workerd = (globalThis as { navigator?: { userAgent?: string } }).navigator?.userAgent === "Cloudflare-Workers";
  const plainNode = proc?.versions?.node !== undefined && proc.versions.bun === undefined && proc.versions.deno === undefined;
  const load = (id: string) => (!workerd && plainNode ? (proc?.getBuiltinModule?.(id) as NodeHttpModule | undefined) : undefined);
  const http = load("node:http");
  const https = load("node:https");
  const client = (module: NodeHttpModule): NodeClient => {
    const agent = new module.Agent({ keepAlive: true, timeout: IDLE_MS });
    // The agent lets a connection go after IDLE_MS on a timer, which cannot fire while the event loop stands still
    // (synchronous work between calls): past workerd's 5 s the gateway has closed it, and a request sent on it is
    // lost ("socket hang up"), one without an idempotency key for good. So each request first lets such ones go.
    const idleSince = new WeakMap<object, number>();
    const keep = agent.keepSocketAlive.bind(agent);
    agent.keepSocketAlive = (socket) => {
      idleSince.set(socket, Date.now());
      return keep(socket);
    };
    const letGoStale = () => {
      const now = Date.now();
      for (const sockets of Object.values(agent.freeSockets)) {
        for (const socket of sockets ?? []) if (now - (idleSince.get(socket) ?? now) >= IDLE_MS) socket.destroy(); // the agent skips destroyed ones
      }
    };
    return { request: module.request, agent, letGoStale };
  };
  node = http && https ? { http: client(http), https: client(https) } : null;
  return node;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The most bytes of an answer's body held unread before its connection pauses: enough that the socket keeps flowing
 * under a reader that keeps up (with none, each small chunk waited for its read), few enough to bound what a slow one costs.
 */
const BODY_QUEUE_BYTES = 64 * 1024;
/** How long a kept-alive connection may sit idle before the client lets it go (Node's agent applies it to idle connections only). */
const IDLE_MS = 4_000;
