/**
 * App bundles on this plane's disk, by content hash. A bundle missing here is
 * fetched from the gateway (a request signed for the gateway), checked against
 * its hash, and kept; concurrent calls for one bundle share one download. A
 * bundle handed over by the process that built it (`tandem run`'s plane, on the
 * CLI's machine) is taken from there instead, with its source map: neither is
 * asked of the gateway.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, rename, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { InternalError, PlaneUnavailableError } from "../sdk/errors.js";
import { paths, type ImageBuildSpec } from "../sdk/protocol.js";
import { isFrameLine, mapFrameLine, mapStackWith, traceMap } from "../sdk/stack-map.js";
import type { TraceMap } from "@jridgewell/trace-mapping";
import { gatewayGet, networkReason } from "./gateway-get.js";
import { RuntimeCode, splitPlaneBundle } from "./runtime-code.js";

/**
 * What maps the stack frames a container prints (its log lines) to the app's files, with its bundle's source map,
 * fetched when a line first needs it (most containers print none), and asked again (by its ETag) once a new container
 * of the bundle has started: the same bundle can come again with another map.
 */
export interface LogLineMaps {
  /** A container of bundle `hash` started: its map is asked again when a line of it next needs one. */
  startedContainer(hash: string): void;
  /** `line` with a frame of bundle `hash` mapped (sdk/stack-map.ts `mapFrameLine`); null: left out; undefined: the map must come first ({@link fetchLineMap}). */
  mapLogLine(hash: string, line: string): string | null | undefined;
  /** Fetches bundle `hash`'s map for its lines; once it settles, {@link mapLogLine} answers (with none, as printed). */
  fetchLineMap(hash: string): Promise<void>;
}

/** The longest a container's lines wait for its bundle's map (`LogLineMaps.fetchLineMap`). */
const LINE_MAP_WAIT_MS = 2_000;

export class BundleCache implements LogLineMaps {
  readonly #dir: string;
  readonly #gatewayUrl: Promise<string>;
  readonly #secret: string;
  readonly #downloads = new Map<string, Promise<string>>();
  /** Each bundle's source map as last fetched, with its ETag. */
  readonly #maps = new Map<string, { etag: string; map: TraceMap }>();
  /** Bundles handed over (see `HandedBundle`), by hash; none if they failed to come. */
  readonly #handed: Promise<Map<string, HandedBundle>>;
  /** Their source maps, parsed when a stack first needs one. */
  readonly #handedMaps = new Map<string, TraceMap | null>();
  /** The maps log lines are mapped with, by bundle; `fresh` until a new container of the bundle starts. */
  readonly #lineMaps = new Map<string, { map: TraceMap | null; fresh: boolean }>();
  /** Their fetches under way: lines of several containers of one bundle wait on one. */
  readonly #lineMapsComing = new Map<string, Promise<void>>();

  /** Joined bundles' runtimes and their code caches (gpu-plane/runtime-code.ts). */
  readonly #runtimes: RuntimeCode;

  /**
   * `gatewayUrl` may be a promise: a plane gets ready while its gateway starts. `runtimesDir`: where joined bundles'
   * runtimes and their code caches are kept (default: `runtimes` in `dir`); one that outlives the plane (`tandem run`'s
   * project cache) keeps the code cache made once for the next plane.
   */
  constructor(
    dir: string,
    gatewayUrl: string | Promise<string>,
    secret: string,
    handed: HandedBundle[] | Promise<HandedBundle[]> = [],
    runtimesDir = join(dir, "runtimes"),
  ) {
    this.#dir = dir;
    this.#runtimes = new RuntimeCode(runtimesDir);
    this.#gatewayUrl = Promise.resolve(gatewayUrl);
    this.#gatewayUrl.catch(() => {}); // a gateway that never started: the plane's start says so
    this.#secret = secret;
    this.#handed = Promise.resolve(handed).then(
      (list) => new Map(list.map((b) => [b.hash, b])),
      () => new Map(), // what was to be handed over failed to build: the run that built it fails with it
    );
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
      download = this.#handed
        .then((handed) => {
          const bundle = handed.get(hash);
          return bundle ? this.#write(hash, bundle.bytes, path, "handed to this plane") : this.#download(hash, path);
        })
        .finally(() => this.#downloads.delete(hash));
      this.#downloads.set(hash, download);
    }
    return download;
  }

  /**
   * `stack`, thrown inside bundle `hash`, mapped to the app's own files as the
   * edge maps its stacks (sdk/stack-map.ts). The bundle's source map is asked
   * of the gateway for each stack, with the ETag of the one kept: the same
   * bundle can come again with another map (an edit that moved only edge code,
   * which plane bundles leave out), and a stack must name the lines as they are now.
   */
  async mapStack(hash: string, stack: string): Promise<string> {
    return mapStackWith(await this.#sourceMap(hash), stack);
  }

  startedContainer(hash: string): void {
    const kept = this.#lineMaps.get(hash);
    if (kept) kept.fresh = false;
  }

  mapLogLine(hash: string, line: string): string | null | undefined {
    const kept = this.#lineMaps.get(hash);
    if (kept?.fresh) return mapFrameLine(kept.map, line);
    return isFrameLine(line) ? undefined : line;
  }

  fetchLineMap(hash: string): Promise<void> {
    let coming = this.#lineMapsComing.get(hash);
    if (!coming) {
      // Lines wait for it at most LINE_MAP_WAIT_MS (a gateway that does not answer): then the map kept, if any, or none;
      // one that comes later maps the lines after it.
      const fetched = this.#sourceMap(hash).catch(() => null);
      void fetched.then((map) => map && this.#lineMaps.set(hash, { map, fresh: true }));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const waited = new Promise<TraceMap | null>((resolve) => {
        timer = setTimeout(() => resolve(this.#lineMaps.get(hash)?.map ?? null), LINE_MAP_WAIT_MS);
        timer.unref();
      });
      coming = Promise.race([fetched, waited])
        .then((map) => void this.#lineMaps.set(hash, { map, fresh: true }))
        .finally(() => {
          clearTimeout(timer);
          this.#lineMapsComing.delete(hash);
        });
      this.#lineMapsComing.set(hash, coming);
    }
    return coming;
  }

  async #sourceMap(hash: string): Promise<TraceMap | null> {
    const handed = (await this.#handed).get(hash);
    if (handed) {
      // Built with the bundle by the process that handed it over, and never changed since.
      if (!this.#handedMaps.has(hash)) this.#handedMaps.set(hash, handed.map === undefined ? null : traceMap(handed.map));
      return this.#handedMaps.get(hash)!;
    }
    const kept = this.#maps.get(hash);
    try {
      const res = await this.#get(paths.planeBundleMap(hash), kept ? { "if-none-match": kept.etag } : {});
      if (res.status === 304 && kept) return kept.map;
      if (!res.ok) return null; // a bundle shipped without one: its stacks stay as they are
      const map = traceMap(await res.text());
      const etag = res.headers.get("etag");
      if (map && etag) this.#maps.set(hash, { etag, map });
      return map;
    } catch {
      return kept?.map ?? null; // the gateway could not be reached: the map kept, if any
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

  /** A signed GET to the gateway, sent again when it got no answer. */
  async #get(route: string, headers: Record<string, string> = {}): Promise<Response> {
    return gatewayGet(await this.#gatewayUrl, this.#secret, route, headers);
  }

  /**
   * Keeps bundle `hash` that this plane was handed, not fetched (`tandem run`
   * built it, and starts a container of it before its gateway is up); checked
   * against its hash all the same.
   */
  async put(hash: string, bytes: Uint8Array): Promise<void> {
    await this.#write(hash, bytes, join(this.#dir, hash, "bundle.mjs"), "handed to this plane");
  }

  async #download(hash: string, path: string): Promise<string> {
    const route = paths.planeBundle(hash);
    const res = await this.#get(route).catch(async (err: unknown) => {
      // Nothing ran: the gateway tries the call on another plane, or this one again.
      throw new PlaneUnavailableError(`could not fetch bundle ${hash.slice(0, 12)} from the gateway at ${await this.#gatewayUrl}: ${networkReason(err)}`);
    });
    if (!res.ok)
      throw new InternalError(`could not fetch bundle ${hash.slice(0, 12)} from the gateway: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
    return this.#write(hash, new Uint8Array(await res.arrayBuffer()), path, "from the gateway");
  }

  async #write(hash: string, bytes: Uint8Array, path: string, from: string): Promise<string> {
    const actual = createHash("sha256").update(bytes).digest("hex");
    if (actual !== hash) throw new InternalError(`bundle ${hash.slice(0, 12)} ${from} has hash ${actual.slice(0, 12)}; refusing it`);
    for (const dir of [this.#dir, dirname(path)]) {
      await mkdir(dir, { recursive: true, mode: 0o755 });
      await chmod(dir, 0o755);
    }
    // A bundle that joins the runtime is kept as two files, its runtime loaded from V8's code cache.
    const split = splitPlaneBundle(new TextDecoder().decode(bytes));
    if (split) return this.#runtimes.write(dirname(path), split);
    const partial = `${path}.${process.pid}.partial`;
    await writeFile(partial, bytes, { mode: 0o644 });
    await rename(partial, path);
    return path;
  }
}

/**
 * A bundle handed to a plane by the process that built it, on the same machine (`tandem run`): the plane takes it,
 * and its source map, from here rather than from the gateway's blob store.
 */
export interface HandedBundle {
  hash: string;
  bytes: Uint8Array;
  /** Its source map (JSON), if it has one. */
  map?: string;
}
