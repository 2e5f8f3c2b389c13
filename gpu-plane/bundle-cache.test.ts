/**
 * The plane's bundle cache: a bundle handed over by the process that built it
 * (`tandem run`'s plane) is taken, with its source map, from there, and the
 * gateway is never asked for it; any other bundle is still fetched.
 */
import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { transform } from "esbuild";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { useHmacEngine } from "../sdk/signing.js";
import { BundleCache } from "./bundle-cache.js";
import { nodeHmacEngine } from "./node-hmac.js";

const SECRET = randomBytes(32).toString("hex");

describe("BundleCache", () => {
  let dir: string;
  let server: Server;
  let gatewayUrl: string;
  /** Paths the stand-in gateway was asked for: it has no bundle, and answers 404. */
  let asked: string[] = [];
  let bundle: { hash: string; bytes: Uint8Array; map: string };

  beforeAll(async () => {
    useHmacEngine(nodeHmacEngine);
    dir = await mkdtemp(join(tmpdir(), "tandem-bundle-cache-"));
    server = createServer((req, res) => {
      asked.push(req.url ?? "");
      res.writeHead(404).end("no such bundle");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    gatewayUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const built = await transform('export function fails() {\n  throw new Error("on purpose");\n}\n', {
      loader: "ts",
      format: "esm",
      sourcemap: "external",
      sourcefile: "app.ts",
    });
    const bytes = new TextEncoder().encode(built.code);
    bundle = { hash: createHash("sha256").update(bytes).digest("hex"), bytes, map: built.map };
  });
  afterAll(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    asked = [];
  });

  it("takes a handed bundle and its source map without asking the gateway", async () => {
    const cache = new BundleCache(join(dir, "handed"), gatewayUrl, SECRET, Promise.resolve([bundle]));
    const path = await cache.get(bundle.hash);
    expect(new Uint8Array(await readFile(path))).toEqual(bundle.bytes);
    // Line 2 of the bundle is the throw, line 2 of app.ts.
    const mapped = await cache.mapStack(bundle.hash, `Error: on purpose\n    at fails (file://${path}:2:9)`);
    expect(mapped).toBe("Error: on purpose\n    at fails (app.ts:2:9)");
    expect(asked).toEqual([]);
  });

  it("maps a container's printed frames with the map fetched when a line first needs one, and asked again after a container starts", async () => {
    const mapAsks: (string | undefined)[] = [];
    const mapServer = createServer((req, res) => {
      if (req.url !== `/v1/planes/bundles/${bundle.hash}/source-map`) return void res.writeHead(404).end();
      const tag = req.headers["if-none-match"];
      mapAsks.push(tag);
      if (tag === '"m1"') return void res.writeHead(304).end();
      res.writeHead(200, { etag: '"m1"', "content-type": "application/json" }).end(bundle.map);
    });
    await new Promise<void>((resolve) => mapServer.listen(0, "127.0.0.1", resolve));
    try {
      const cache = new BundleCache(join(dir, "line-maps"), `http://127.0.0.1:${(mapServer.address() as AddressInfo).port}`, SECRET);
      const frame = "    at fails (file:///tandem/app/bundle.mjs:2:9)";
      expect(cache.mapLogLine(bundle.hash, "resized 3 images at noon")).toBe("resized 3 images at noon"); // no map needed
      expect(cache.mapLogLine(bundle.hash, frame)).toBeUndefined(); // the map must come first
      expect(mapAsks).toEqual([]);
      await Promise.all([cache.fetchLineMap(bundle.hash), cache.fetchLineMap(bundle.hash)]);
      expect(mapAsks).toEqual([undefined]); // one fetch for both
      expect(cache.mapLogLine(bundle.hash, frame)).toBe("    at fails (app.ts:2:9)");
      cache.startedContainer(bundle.hash);
      expect(cache.mapLogLine(bundle.hash, frame)).toBeUndefined();
      await cache.fetchLineMap(bundle.hash);
      expect(mapAsks).toEqual([undefined, '"m1"']);
      expect(cache.mapLogLine(bundle.hash, frame)).toBe("    at fails (app.ts:2:9)");
      // A bundle with no map to be had: its lines stay as printed, without asking again for each.
      const other = createHash("sha256").update("no map").digest("hex");
      await cache.fetchLineMap(other);
      expect(cache.mapLogLine(other, frame)).toBe(frame);
    } finally {
      mapServer.close();
    }
  });

  it("lets a container's lines go on unmapped when the gateway does not answer for its map within 2 s", async () => {
    const silent = createServer(() => {}); // takes the request, never answers
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const cache = new BundleCache(join(dir, "silent"), `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, SECRET);
      const frame = "    at fails (file:///tandem/app/bundle.mjs:2:9)";
      const started = Date.now();
      await cache.fetchLineMap(bundle.hash);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(cache.mapLogLine(bundle.hash, frame)).toBe(frame);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it("still fetches a bundle it was not handed from the gateway", async () => {
    const cache = new BundleCache(join(dir, "other"), gatewayUrl, SECRET, [bundle]);
    const other = createHash("sha256").update("another bundle").digest("hex");
    await expect(cache.get(other)).rejects.toThrow(`could not fetch bundle ${other.slice(0, 12)} from the gateway: HTTP 404`);
    expect(asked).toEqual([`/v1/planes/bundles/${other}`]);
  });

  it("fetches from the gateway when what was to be handed over failed to come", async () => {
    const cache = new BundleCache(join(dir, "failed"), gatewayUrl, SECRET, Promise.reject(new Error("bundling failed")));
    await expect(cache.get(bundle.hash)).rejects.toThrow("HTTP 404");
    expect(asked).toEqual([`/v1/planes/bundles/${bundle.hash}`]);
  });

  it("refuses a handed bundle whose bytes do not match its hash", async () => {
    const wrong = { ...bundle, hash: createHash("sha256").update("something else").digest("hex") };
    const cache = new BundleCache(join(dir, "wrong"), gatewayUrl, SECRET, [wrong]);
    await expect(cache.get(wrong.hash)).rejects.toThrow(
      `bundle ${wrong.hash.slice(0, 12)} handed to this plane has hash ${bundle.hash.slice(0, 12)}; refusing it`,
    );
    expect(asked).toEqual([]);
  });
});

describe("BundleCache, fetching from the gateway", () => {
  let dir: string;
  let bundle: { hash: string; bytes: Uint8Array };
  beforeAll(async () => {
    useHmacEngine(nodeHmacEngine);
    dir = await mkdtemp(join(tmpdir(), "tandem-bundle-fetch-"));
    const bytes = new TextEncoder().encode("export const answer = 42;\n");
    bundle = { hash: createHash("sha256").update(bytes).digest("hex"), bytes };
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** A stand-in gateway that cuts the first `cuts` requests' connections unanswered, then serves the bundle. */
  async function cuttingGateway(cuts: number): Promise<{ url: string; asked: () => number; close(): void }> {
    let asked = 0;
    const server = createServer((req, res) => {
      if (++asked <= cuts) return req.socket.destroy();
      res.writeHead(200, { "content-type": "application/octet-stream" }).end(bundle.bytes);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, asked: () => asked, close: () => server.close() };
  }

  it("asks again when the gateway's connection broke off before its answer", async () => {
    const gateway = await cuttingGateway(2);
    try {
      const path = await new BundleCache(join(dir, "cut"), gateway.url, SECRET).get(bundle.hash);
      expect(new Uint8Array(await readFile(path))).toEqual(bundle.bytes);
      expect(gateway.asked()).toBe(3);
    } finally {
      gateway.close();
    }
  });

  it("fails as plane_unavailable, saying why, when no ask is answered, so the gateway tries the call elsewhere", async () => {
    const gateway = await cuttingGateway(Infinity);
    try {
      const failed = await new BundleCache(join(dir, "down"), gateway.url, SECRET).get(bundle.hash).catch((err: unknown) => err);
      expect(failed).toMatchObject({ code: "plane_unavailable" });
      expect((failed as Error).message).toMatch(new RegExp(`^could not fetch bundle ${bundle.hash.slice(0, 12)} from the gateway at ${gateway.url}: .+`));
      expect(gateway.asked()).toBe(3);
    } finally {
      gateway.close();
    }
  });
});
