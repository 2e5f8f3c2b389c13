/**
 * App bundles on this plane's disk, by content hash. A bundle missing here is
 * fetched from the gateway (a request signed for the gateway), checked against
 * its hash, and kept; concurrent calls for one bundle share one download.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, rename, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { InternalError } from "../sdk/errors.js";
import { GATEWAY_AUDIENCE, paths, type ImageBuildSpec } from "../sdk/protocol.js";
import { signRequest } from "../sdk/signing.js";
import { mapStackWith, traceMap } from "../sdk/stack-map.js";
import type { TraceMap } from "@jridgewell/trace-mapping";

export class BundleCache {
  readonly #dir: string;
  readonly #gatewayUrl: string;
  readonly #secret: string;
  readonly #downloads = new Map<string, Promise<string>>();
  readonly #maps = new Map<string, Promise<TraceMap | null>>();

  constructor(dir: string, gatewayUrl: string, secret: string) {
    this.#dir = dir;
    this.#gatewayUrl = gatewayUrl;
    this.#secret = secret;
  }

  /**
   * The local path of bundle `hash`, downloading it first if needed. Each
   * bundle has its own folder, so that a `node_modules` link beside it (for
   * native packages) resolves for processes as the mount does for containers.
   */
  async get(hash: string, nodeModules?: string): Promise<string> {
    const path = await this.#fetched(hash);
    if (nodeModules) {
      const link = join(dirname(path), "node_modules");
      if (!existsSync(link)) await symlink(nodeModules, link).catch(() => {});
    }
    return path;
  }

  #fetched(hash: string): Promise<string> {
    const path = join(this.#dir, hash, "bundle.mjs");
    if (existsSync(path)) return Promise.resolve(path);
    let download = this.#downloads.get(hash);
    if (!download) {
      download = this.#download(hash, path).finally(() => this.#downloads.delete(hash));
      this.#downloads.set(hash, download);
    }
    return download;
  }

  /**
   * `stack`, thrown inside bundle `hash`, mapped to the app's own files as the
   * edge maps its stacks (sdk/stack-map.ts). The bundle's source map is
   * fetched from the gateway on the first stack to map, then kept.
   */
  async mapStack(hash: string, stack: string): Promise<string> {
    let map = this.#maps.get(hash);
    if (!map) {
      map = this.#sourceMap(hash);
      this.#maps.set(hash, map);
    }
    return mapStackWith(await map, stack);
  }

  async #sourceMap(hash: string): Promise<TraceMap | null> {
    const route = paths.planeBundleMap(hash);
    try {
      const res = await this.#get(route);
      return res.ok ? traceMap(await res.text()) : null; // a bundle shipped without one: its stacks stay as they are
    } catch {
      this.#maps.delete(hash); // the gateway could not be reached: the next stack tries again
      return null;
    }
  }

  /** An image spec, by the hash of its JSON, fetched from the gateway and checked. */
  async image(hash: string): Promise<ImageBuildSpec> {
    const route = paths.planeImage(hash);
    const res = await this.#get(route);
    if (!res.ok)
      throw new InternalError(`could not fetch image spec ${hash.slice(0, 12)} from the gateway: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
    const text = await res.text();
    if (createHash("sha256").update(text).digest("hex") !== hash)
      throw new InternalError(`image spec ${hash.slice(0, 12)} from the gateway does not match its hash; refusing it`);
    return JSON.parse(text) as ImageBuildSpec;
  }

  /** A signed GET to the gateway. */
  async #get(route: string): Promise<Response> {
    return fetch(this.#gatewayUrl + route, { headers: await signRequest(this.#secret, { audience: GATEWAY_AUDIENCE, method: "GET", path: route }) });
  }

  async #download(hash: string, path: string): Promise<string> {
    const route = paths.planeBundle(hash);
    const res = await this.#get(route);
    if (!res.ok)
      throw new InternalError(`could not fetch bundle ${hash.slice(0, 12)} from the gateway: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const actual = createHash("sha256").update(bytes).digest("hex");
    if (actual !== hash) throw new InternalError(`bundle ${hash.slice(0, 12)} from the gateway has hash ${actual.slice(0, 12)}; refusing it`);
    for (const dir of [this.#dir, dirname(path)]) {
      await mkdir(dir, { recursive: true, mode: 0o755 });
      await chmod(dir, 0o755);
    }
    const partial = `${path}.${process.pid}.partial`;
    await writeFile(partial, bytes, { mode: 0o644 });
    await rename(partial, path);
    return path;
  }
}
