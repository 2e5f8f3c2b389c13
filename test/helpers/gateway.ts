/** Starts the gateway with an app file in real workerd, as `tandem serve` does, for a test. */
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { App } from "../../sdk/app.js";
import { buildApps } from "../../sdk/cli/local-stack.js";
import { startWorkerd } from "../../sdk/cli/workerd.js";
import { ADMIN_TOKEN } from "./tokens.js";

export { ADMIN_TOKEN };

export interface TestGateway {
  url: string;
  /** The app files' apps, as loaded in Node. */
  apps: App[];
  /** Every line the Worker wrote. */
  output: string[];
  dir: string;
  /** Keys in the gateway's blob store (R2). */
  blobKeys(): Promise<string[]>;
  /** When each object in the blob store was last written (ms since the epoch), by key. */
  blobWrites(): Promise<Map<string, number>>;
  /** An object's bytes in the blob store, as stored; undefined when there is none. */
  blobBytes(key: string): Promise<Uint8Array | undefined>;
  /** Puts a plane bundle, source map or image spec into the blob store, as `tandem serve` does. */
  putBlob(key: string, bytes: Uint8Array | string): Promise<void>;
  /** Resolves once the work its requests left behind them is done, or after `maxMs` (`RunningWorkerd.settled`). */
  settled(maxMs: number): Promise<void>;
  /** Calls the Worker's scheduled handler (the cron trigger) with this scheduled time, as `tandem serve` does. */
  scheduled(at: number): Promise<void>;
  /** Stops the gateway and starts it again on the same port, with the same state; `bindings` over those it began with, for this start. */
  restart(bindings?: Record<string, string>): Promise<void>;
  stop(): Promise<void>;
  dispose(): Promise<void>;
}

/** `init` with the admin token's `Authorization` header added, for raw `fetch` calls to `/v1`. */
export function authed<T extends RequestInit>(init?: T): T {
  return { ...init, headers: { ...(init?.headers as Record<string, string> | undefined), authorization: `Bearer ${ADMIN_TOKEN}` } } as unknown as T;
}

/** Starts a gateway serving `appFile` (or several app files) in real workerd. */
export async function startTestGateway(
  appFile: string | string[],
  options: { bindings?: Record<string, string>; persist?: boolean } = {},
): Promise<TestGateway> {
  const dir = await mkdtemp(join(tmpdir(), "tandem-test-"));
  const { worker: bundle, apps } = await buildApps(Array.isArray(appFile) ? appFile : [appFile], join(dir, "build"));
  const output: string[] = [];
  const start = (port = 0, bindings = options.bindings) =>
    startWorkerd({
      port,
      worker: bundle,
      persistDir: options.persist === false ? false : join(dir, "state"),
      bindings: { TANDEM_ADMIN_TOKEN: ADMIN_TOKEN, ...bindings },
      onOutput: (line) => output.push(line),
    });
  let running: Awaited<ReturnType<typeof start>> | undefined = await start();
  const gateway: TestGateway = {
    url: running.url.href.replace(/\/$/, ""),
    apps,
    output,
    dir,
    async blobKeys() {
      const bucket = await running!.miniflare.getR2Bucket("BLOBS");
      return (await bucket.list()).objects.map((o) => o.key);
    },
    async blobWrites() {
      const bucket = await running!.miniflare.getR2Bucket("BLOBS");
      return new Map((await bucket.list()).objects.map((o) => [o.key, o.uploaded.getTime()]));
    },
    async blobBytes(key: string) {
      const bucket = await running!.miniflare.getR2Bucket("BLOBS");
      const object = await bucket.get(key);
      return object ? new Uint8Array(await object.arrayBuffer()) : undefined;
    },
    settled: (maxMs) => running!.settled(maxMs),
    async putBlob(key, bytes) {
      await running!.putBlob(key, bytes);
    },
    async scheduled(at: number) {
      await running!.scheduled(new Date(at));
    },
    async restart(bindings) {
      const port = Number(new URL(gateway.url).port);
      await running?.dispose();
      running = await start(port, bindings ? { ...options.bindings, ...bindings } : options.bindings);
      gateway.url = running.url.href.replace(/\/$/, "");
    },
    async stop() {
      await running?.dispose();
      running = undefined;
    },
    async dispose() {
      await running?.dispose();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return gateway;
}

/** Polls `check` until it returns true or `ms` pass. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts a stream (`POST <url>`, no arguments; or `GET <url>`, a web endpoint's), reads its first `lines` lines, then
 * drops the connection as a client that goes away does; answers the stream's call id (a `POST .../stream`'s). Rejects
 * if the stream ends first.
 */
export function streamThenDrop(url: string, headers: Record<string, string>, lines = 3, method: "GET" | "POST" = "POST"): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const req = http.request(url, { method, headers: method === "POST" ? { ...headers, "content-type": "application/json" } : headers });
    req.on("error", () => {});
    req.on("response", (res) => {
      let seen = 0;
      res.on("data", (d: Buffer) => {
        seen += d.toString().split("\n").length - 1;
        if (seen < lines || req.destroyed) return;
        req.destroy();
        resolve(String(res.headers["tandem-call-id"]));
      });
    });
    req.on("close", () => setTimeout(() => reject(new Error(`the stream ended before ${lines} lines`)), 0).unref());
    req.end(method === "POST" ? JSON.stringify({ args: [] }) : undefined);
  });
}
