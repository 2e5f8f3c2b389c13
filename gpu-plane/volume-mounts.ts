/**
 * Volumes mounted into a plane's containers (docs/volumes.md).
 *
 * The cache: each file of a volume the plane has seen, whole, under
 * `<stateDir>/volumes/cache/files/<key>` (the key: the SHA-256 of its block
 * list, and whether it is executable), assembled from blocks fetched from the
 * gateway and checked against their hashes, read-only (0444), shared by every
 * container and every volume and version that holds the same bytes. A second
 * container mounting the same version downloads nothing.
 *
 * A mount: a folder per container and mount (`mounts/<container>/<n>`), bound
 * into the container, with each file taken from the cache without copying its
 * bytes where the file system allows it:
 * - read-only mounts: hard links (Docker binds the folder `:ro`, so every
 *   write is `EROFS`);
 * - writable mounts: small files (`VOLUME_LIMITS.copyBelowBytes`) are copied,
 *   and so writable in place; larger ones are reflinked (a copy-on-write clone,
 *   writable in place) where the file system can, else hard-linked. A
 *   hard-linked file is the cache's own inode, read-only and owned by the
 *   plane, so the container (another user, with no capabilities) can neither
 *   write it in place nor chmod it: it replaces it (write another file and
 *   rename it over, or remove it first), and the cache is never touched.
 *
 * What the mount holds is remembered per file (its blocks and the inode, size
 * and mtime it had when placed or committed). A commit walks the folder: a
 * file whose inode, size and mtime are as remembered is unchanged and is not
 * read; any other is split into blocks as it is copied into the cache (a
 * snapshot: the container may go on writing it), the gateway is asked which
 * blocks it lacks and only those are uploaded, and the puts and removals are
 * committed as one compare-and-swap on the mount's version. A commit then
 * brings in others' commits to files the container has not changed, so the
 * mount is at the version it committed. Background commits run every
 * `VOLUME_LIMITS.backgroundCommitMs`, and once more when the container stops:
 * the folder is the plane's, so even a killed container's writes are there.
 *
 * Everything the plane does inside a mount's folder (listing, reading for a
 * commit, placing, removing) goes through `MountFolder` (`mount-folder.ts`),
 * which never follows a link or other special entry the container left there,
 * in any name of a path, even one swapped in as the plane works: the plane
 * runs as root, and a link planted where a volume's file goes would otherwise
 * have it overwrite, chmod or read any file of the host's. Such entries are
 * never committed, and are replaced when a volume's file or folder comes to
 * their path. The folder is removed (`rm`, which removes a link, not what it
 * points at) only once the container has ended.
 */
import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { chmod, copyFile, link, lstat, mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import type { Server } from "node:http";
import { dirname, join } from "node:path";
import { eachAtOnce } from "../sdk/at-once.js";
import { VOLUME_LIMITS } from "../sdk/defaults.js";
import { InternalError, InvalidRequestError, NotFoundError, VolumeConflictError, fromWireError, type WireError } from "../sdk/errors.js";
import {
  paths,
  reservedVolumeName,
  volumePath,
  type BlocksMissingAnswer,
  type ContainerMount,
  type PlaneFunctionSpec,
  type VolumeChange,
  type VolumeCommitAnswer,
  type VolumeManifest,
  type VolumeManifestFile,
} from "../sdk/protocol.js";
import { blocksOf } from "../sdk/volume-blocks.js";
import { ContainerGateway, openContainerApi } from "./container-api.js";
import type { PlaneLogLine } from "./log-shipper.js";
import { MountFolder, type FileStat, type MakeFile } from "./mount-folder.js";

export type MountRequest = NonNullable<PlaneFunctionSpec["volumes"]>[number];

/** What a writable mount folder is (`<n>.mount.json` beside it): kept, should the plane be killed, to say whose it was. */
interface LeftoverMount {
  app: string;
  function: string;
  volume: string;
  path: string;
  /** Why the last commit, made as its container stopped, failed: the files were kept for that, not for a killed plane. */
  lastCommitFailed?: string;
}
const LEFTOVER_NOTE = ".mount.json";
/** Where a writable mount's `LeftoverMount` lies: beside its folder, out of the container's reach. */
const leftoverNote = (hostDir: string) => `${hostDir}${LEFTOVER_NOTE}`;

/** A folder of the plane's to bind into the container. */
export interface HostMount {
  hostPath: string;
  containerPath: string;
  readOnly: boolean;
}

/** A file as the mount holds it: its content (blocks, size, mode) and how it looked on disk when placed or committed. */
interface HeldFile {
  blocks: string[];
  size: number;
  mode: number;
  ino: number;
  mtimeMs: number;
}

interface Mount {
  request: MountRequest;
  hostDir: string;
  /** The folder, worked on without following what the container leaves in it. */
  folder: MountFolder;
  version: number;
  files: Map<string, HeldFile>;
  /** Paths in the folder a volume cannot hold, each told once (`#commit`): a commit leaves them out. */
  unfit: Set<string>;
  /** Operations on this mount, one at a time. */
  queue: Promise<unknown>;
}

interface Attached {
  containerId: string;
  app: string;
  /** The function (or class) whose container this is, for the lines its app's log gets. */
  function: string;
  /** Volumes whose background commit failed and was logged, until one of theirs succeeds: a failure is logged once. */
  failing: Set<string>;
  root: string;
  mounts: Mount[];
  api: Server | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** What a cache download did, for logs and tests. */
export interface CacheStats {
  blocksDownloaded: number;
  bytesDownloaded: number;
}

export class VolumeMounts {
  readonly #dir: string;
  readonly #gateway: ContainerGateway;
  readonly #log: (line: string) => void;
  readonly #onLogLine: ((line: PlaneLogLine) => void) | undefined;
  readonly #attached = new Map<string, Attached>();
  readonly #finishing = new Set<Promise<void>>();
  readonly #downloads = new Map<string, Promise<string>>();
  /** Whether this file system clones files (reflink); learnt on the first try. */
  #reflink: boolean | undefined;
  readonly stats: CacheStats = { blocksDownloaded: 0, bytesDownloaded: 0 };
  readonly #uploaded = { blocks: 0, bytes: 0 };

  /**
   * `dir`: the plane's `<stateDir>/volumes` (the cache and the mounts: one file system, for hard links). `log`: the
   * plane's console; `onLogLine`: the apps' logs, which get a failed commit of their containers' mounts.
   */
  constructor(dir: string, gateway: ContainerGateway, log: (line: string) => void, onLogLine?: (line: PlaneLogLine) => void) {
    this.#dir = dir;
    this.#gateway = gateway;
    this.#log = log;
    this.#onLogLine = onLogLine;
  }

  /**
   * Opens the container's API socket in `controlDir` and readies its mounts
   * (fetching what the cache lacks). Returns what to bind and what to tell the
   * runner. A missing volume (without `createIfMissing`) throws its
   * `NotFoundError`.
   */
  async attach(
    containerId: string,
    owner: { app: string; function: string },
    controlDir: string,
    requests: MountRequest[],
  ): Promise<{ binds: HostMount[]; env: ContainerMount[] }> {
    const { app } = owner;
    const root = join(this.#dir, "mounts", containerId);
    const attached: Attached = { containerId, app, function: owner.function, failing: new Set(), root, mounts: [], api: undefined, timer: undefined };
    this.#attached.set(containerId, attached);
    attached.api = await openContainerApi(controlDir, app, this.#gateway, {
      commit: (volume) => this.#each(attached, volume, "commit"),
      reload: (volume) => this.#each(attached, volume, "reload"),
    });
    if (requests.length === 0) return { binds: [], env: [] };
    const began = performance.now();
    const before = { ...this.stats };
    let manifestMs = 0;
    for (const [i, request] of requests.entries()) {
      const hostDir = join(root, String(i));
      await mkdir(hostDir, { recursive: true });
      await chmod(hostDir, 0o777);
      // Beside the folder, out of the container's reach: what it is, should this plane be killed before its last commit.
      if (!request.readOnly) {
        const about: LeftoverMount = { app, function: owner.function, volume: request.volume, path: request.path };
        await writeFile(leftoverNote(hostDir), JSON.stringify(about));
      }
      // A folder in the way of a volume's file goes aside, beside the mounts, and with them when the container ends.
      const folder = new MountFolder(hostDir, join(root, ".aside"));
      const mount: Mount = { request, hostDir, folder, version: 0, files: new Map(), unfit: new Set(), queue: Promise.resolve() };
      attached.mounts.push(mount);
      if (request.createIfMissing) await this.#ask(app, "POST", paths.volumes(), { name: request.volume, existOk: true }, true);
      const asked = performance.now();
      const manifest = await this.#manifest(app, request.volume);
      manifestMs += performance.now() - asked;
      await this.#refresh(attached, mount, manifest, true);
    }
    const files = attached.mounts.reduce((n, m) => n + m.files.size, 0);
    this.#log(
      `[plane] ${containerId} mounts ${attached.mounts.map((m) => `"${m.request.volume}" v${m.version} at ${m.request.path}${m.request.readOnly ? " (read-only)" : ""}`).join(", ")}: ${files} file(s), ${this.stats.blocksDownloaded - before.blocksDownloaded} block(s) downloaded, in ${Math.round(performance.now() - began)} ms (${Math.round(manifestMs)} ms asking the gateway)`,
    );
    if (attached.mounts.some((m) => !m.request.readOnly)) {
      attached.timer = setInterval(() => void this.#background(containerId, attached), VOLUME_LIMITS.backgroundCommitMs);
      attached.timer.unref();
    }
    return {
      binds: attached.mounts.map((m) => ({ hostPath: m.hostDir, containerPath: m.request.path, readOnly: m.request.readOnly })),
      env: attached.mounts.map((m) => ({
        path: m.request.path,
        volume: m.request.volume,
        readOnly: m.request.readOnly,
        subPath: m.request.subPath,
        version: m.version,
      })),
    };
  }

  /** The container is gone (or never started): a last commit of its writable mounts, then its folders and socket go. */
  finish(containerId: string): Promise<void> {
    const attached = this.#attached.get(containerId);
    if (!attached) return Promise.resolve();
    this.#attached.delete(containerId);
    clearInterval(attached.timer);
    const done = (async () => {
      let kept = false;
      for (const mount of attached.mounts.filter((m) => !m.request.readOnly)) {
        await this.#queued(mount, () => this.#commit(attached, mount)).catch(async (err: unknown) => {
          kept = true;
          const reason = (err as Error).message;
          this.#tell(
            containerId,
            attached,
            `the last commit of volume "${mount.request.volume}" at ${mount.request.path} failed (${reason}); its files are kept in ${mount.hostDir}`,
          );
          // Said again as the plane starts, as for a killed plane's mounts, but for what it was.
          const about: LeftoverMount = {
            app: attached.app,
            function: attached.function,
            volume: mount.request.volume,
            path: mount.request.path,
            lastCommitFailed: reason,
          };
          await writeFile(leftoverNote(mount.hostDir), JSON.stringify(about)).catch(() => undefined);
        });
      }
      await new Promise<void>((resolve) => (attached.api ? attached.api.close(() => resolve()) : resolve()));
      if (!kept) await rm(attached.root, { recursive: true, force: true });
    })();
    this.#finishing.add(done);
    void done.finally(() => this.#finishing.delete(done));
    return done;
  }

  /**
   * The mount folders a previous run of this plane left (it was killed before its containers' last commits): a writable
   * mount's files, what its container wrote after its last background commit included, are kept where they are for
   * `VOLUME_LIMITS.leftoverKeepMs` and said so, in the plane's log and the app's, each time the plane starts; read-only
   * mounts, and writable ones kept that long, go. Run as the plane starts, before a container of its own mounts one.
   */
  async keepLeftovers(): Promise<void> {
    const mountsDir = join(this.#dir, "mounts");
    const containers = await readdir(mountsDir).catch(() => [] as string[]);
    for (const containerId of containers) {
      if (this.#attached.has(containerId)) continue;
      const root = join(mountsDir, containerId);
      const info = await lstat(root).catch(() => undefined);
      if (!info?.isDirectory()) continue;
      const kept: { about: LeftoverMount; dir: string }[] = [];
      if (Date.now() - info.mtimeMs < VOLUME_LIMITS.leftoverKeepMs) {
        for (const name of await readdir(root)) {
          if (!name.endsWith(LEFTOVER_NOTE)) continue;
          const about = (await readFile(join(root, name), "utf8").then(JSON.parse, () => undefined)) as LeftoverMount | undefined;
          if (about?.volume) kept.push({ about, dir: join(root, name.slice(0, -LEFTOVER_NOTE.length)) });
        }
      }
      if (kept.length === 0) {
        await rm(root, { recursive: true, force: true });
        continue;
      }
      const until = new Date(info.mtimeMs + VOLUME_LIMITS.leftoverKeepMs).toISOString().slice(0, 10);
      for (const { about, dir } of kept) {
        const text = about.lastCommitFailed
          ? `the last commit of volume "${about.volume}" at ${about.path} failed as its container stopped (${about.lastCommitFailed}): what the container wrote after its last commit is not in the volume; its files are kept in ${dir} until ${until} (put one back with tandem volume put ${about.volume} <file> <path>)`
          : `this plane was stopped without its last commit of volume "${about.volume}" at ${about.path} (it was killed): what the container wrote after its last background commit is not in the volume; its files are kept in ${dir} until ${until} (put one back with tandem volume put ${about.volume} <file> <path>)`;
        this.#log(`[plane] ${containerId}: ${text}`);
        this.#onLogLine?.({ app: about.app, function: about.function, callId: null, containerId, source: "system", text });
      }
    }
  }

  /** Waits for the last commits of containers that stopped. */
  async idle(): Promise<void> {
    while (this.#finishing.size > 0) await Promise.all([...this.#finishing]);
  }

  async #background(containerId: string, attached: Attached): Promise<void> {
    for (const mount of attached.mounts.filter((m) => !m.request.readOnly)) {
      const { volume } = mount.request;
      await this.#queued(mount, () => this.#commit(attached, mount)).then(
        () => attached.failing.delete(volume),
        (err: unknown) => {
          // Tried again every few seconds while the container lives (its changes stay), told once.
          if (attached.failing.has(volume)) return;
          attached.failing.add(volume);
          this.#tell(containerId, attached, `a background commit of volume "${volume}" at ${mount.request.path} failed: ${(err as Error).message}`);
        },
      );
    }
  }

  /** A line about a container's mounts for the plane's console and, as a system line, for its app's log. */
  #tell(containerId: string, attached: Attached, text: string): void {
    this.#log(`[plane] ${containerId}: ${text}`);
    this.#onLogLine?.({ app: attached.app, function: attached.function, callId: null, containerId, source: "system", text });
  }

  /** Commits or reloads every mount of `volume` in the container; the version the last one is at. */
  async #each(attached: Attached, volume: string, what: "commit" | "reload"): Promise<number> {
    const all = attached.mounts.filter((m) => m.request.volume === volume);
    if (all.length === 0) throw new InvalidRequestError(`volume "${volume}" is not mounted in this container`, { volume });
    // A commit publishes the writable mounts (a read-only one has nothing to publish); a reload brings in every one.
    const mounts = what === "commit" ? all.filter((m) => !m.request.readOnly) : all;
    if (mounts.length === 0) throw new InvalidRequestError(`volume "${volume}" is mounted read-only here; it has nothing to commit`, { volume });
    let version = 0;
    for (const mount of mounts) version = Math.max(version, await this.#queued(mount, () => this.#commit(attached, mount, what === "reload")));
    return version;
  }

  #queued<T>(mount: Mount, work: () => Promise<T>): Promise<T> {
    const run = mount.queue.then(work, work);
    mount.queue = run.catch(() => {});
    return run;
  }

  /**
   * Publishes the mount's changes (nothing is sent when there are none), then
   * brings in others' commits; the version the mount is at. `reloadOnly`:
   * publishes nothing, and a file changed here that another commit changed
   * too is a conflict.
   */
  async #commit(attached: Attached, mount: Mount, reloadOnly = false): Promise<number> {
    const { request } = mount;
    if (reloadOnly) return this.#refresh(attached, mount, await this.#manifest(attached.app, request.volume), true);
    const present = await this.#scan(mount, (rel, problem) => {
      if (mount.unfit.has(rel)) return;
      mount.unfit.add(rel);
      const shown = JSON.stringify(rel.length > 120 ? `${rel.slice(0, 120)}…` : rel);
      this.#tell(attached.containerId, attached, `commit() leaves out ${shown} at ${request.path}: a path in volume "${request.volume}" ${problem}`);
    });
    const changed = [...present].filter(([rel, st]) => !sameOnDisk(mount.files.get(rel), st));
    const removed = [...mount.files.keys()].filter((rel) => !present.has(rel));
    if (changed.length === 0 && removed.length === 0) return mount.version;
    const began = performance.now();
    const sent = { ...this.#uploaded };
    const puts = new Array<{ rel: string; held: HeldFile; change: VolumeChange }>(changed.length);
    const ingest = async (i: number) => {
      const [rel, st] = changed[i]!;
      const mode = st.mode & 0o111 ? 0o755 : 0o644;
      const { blocks, size } = await this.#ingest(attached.app, request.volume, mount.folder, rel, mode);
      puts[i] = {
        rel,
        held: { blocks, size, mode, ino: st.ino, mtimeMs: st.mtimeMs },
        change: { op: "put", path: this.#inVolume(mount, rel), blocks, size, mode },
      };
    };
    // Files of one block at most, several at once (2,000 small files, one round trip after another, took 38 s); larger
    // ones one at a time, each sending its blocks a few at once, so a commit holds no more blocks in memory than before.
    const indexes = changed.map((_, i) => i);
    await eachAtOnce(
      indexes.filter((i) => changed[i]![1].size <= VOLUME_LIMITS.blockBytes),
      VOLUME_LIMITS.uploadConcurrency,
      ingest,
    );
    for (const i of indexes.filter((i) => changed[i]![1].size > VOLUME_LIMITS.blockBytes)) await ingest(i);
    const changes: VolumeChange[] = [...puts.map((p) => p.change), ...removed.map((rel): VolumeChange => ({ op: "remove", path: this.#inVolume(mount, rel) }))];
    const answer = (await this.#ask(attached.app, "POST", paths.volumeCommit(request.volume), { changes, baseVersion: mount.version }).catch((err: unknown) => {
      if (!(err instanceof VolumeConflictError) || typeof err.details?.path !== "string") throw err;
      // The gateway's words are for a write over its API; in a mount, what works is what `conflictAdvice` says.
      const path = err.details.path;
      throw new VolumeConflictError(
        `"${path}" in volume "${request.volume}" was changed by version ${String(err.details.version)} since version ${mount.version}, which this mount is at, so commit() cannot publish this container's: ${conflictAdvice(mount, path)}`,
        { ...err.details },
      );
    })) as VolumeCommitAnswer;
    for (const p of puts) mount.files.set(p.rel, p.held);
    for (const rel of removed) mount.files.delete(rel);
    mount.version = answer.version;
    this.#log(
      `[plane] committed volume "${request.volume}" v${answer.version} from ${request.path}: ${puts.length} file(s) put (${this.#uploaded.blocks - sent.blocks} block(s) uploaded, ${Math.round((this.#uploaded.bytes - sent.bytes) / 1024)} KiB), ${removed.length} removed, in ${Math.round(performance.now() - began)} ms`,
    );
    // Others' commits since the base, to files not changed here: the mount is then at the version committed.
    const manifest = await this.#manifest(attached.app, request.volume);
    await this.#refresh(attached, mount, manifest, false);
    return mount.version;
  }

  /**
   * Brings the mount to `manifest`: files it lacks or holds older bytes of are
   * placed from the cache (downloading what it lacks), files gone from the
   * volume are removed, each only where the container has not changed it.
   * `strict`: any file changed here that the manifest changes too is a
   * `VolumeConflictError`, and nothing is touched.
   */
  async #refresh(attached: Attached, mount: Mount, manifest: VolumeManifest, strict: boolean): Promise<number> {
    const wanted = new Map<string, VolumeManifestFile>();
    const sub = mount.request.subPath;
    for (const file of manifest.files) {
      // A name the plane keeps for itself (a volume may hold one written before the gateway refused them): never
      // placed, so never held, and a commit (whose scan skips such names) does not take it for removed.
      if (reservedVolumeName(file.path) !== undefined) continue;
      if (sub === "") wanted.set(file.path, file);
      else if (file.path.startsWith(`${sub}/`)) wanted.set(file.path.slice(sub.length + 1), file);
    }
    const present = await this.#scan(mount);
    const changedHere = (rel: string) => {
      const st = present.get(rel);
      const held = mount.files.get(rel);
      return st !== undefined && !sameOnDisk(held, st);
    };
    const place: [string, VolumeManifestFile][] = [];
    const drop: string[] = [];
    const conflicts: string[] = [];
    for (const [rel, file] of wanted) {
      const held = mount.files.get(rel);
      if (held && sameContent(held, file)) continue;
      if (changedHere(rel)) conflicts.push(rel);
      else place.push([rel, file]);
    }
    for (const rel of mount.files.keys()) {
      if (wanted.has(rel)) continue;
      if (changedHere(rel)) conflicts.push(rel);
      else drop.push(rel);
    }
    if (strict && conflicts.length > 0) {
      const path = this.#inVolume(mount, conflicts[0]!);
      throw new VolumeConflictError(
        `"${path}" in volume "${mount.request.volume}" was changed in this container and by another commit since version ${mount.version}: ${conflictAdvice(mount, path)}`,
        { volume: mount.request.volume, path, ...(conflicts.length > 1 ? { others: conflicts.length - 1 } : {}) },
      );
    }
    const cached = await this.#cachedAll(
      attached.app,
      mount.request.volume,
      place.map(([, file]) => file),
    );
    for (const [i, [rel, file]] of place.entries()) {
      // Made beside it and renamed over it: a reader sees the old file or the new one, never a part, and a link the
      // container left at its path is replaced, not written through. A folder of the container's there goes when the
      // file was the mount's (as its own file would be replaced), else it is an error, as it was.
      const st = await mount.folder.put(rel, this.#place(cached[i]!, file, mount.request.readOnly), { replaceFolder: mount.files.has(rel) });
      mount.files.set(rel, { blocks: file.blocks, size: file.size, mode: file.mode, ino: st.ino, mtimeMs: st.mtimeMs });
    }
    for (const rel of drop) {
      await mount.folder.remove(rel);
      mount.files.delete(rel);
    }
    // Older than the mount only when the volume was deleted and made again: its versions start over.
    mount.version = manifest.version;
    return mount.version;
  }

  /**
   * How one file comes from the cache into a mount: linked, cloned or copied (see the top of this file), at a fresh
   * path `MountFolder.put` gives, which a copy never opens if it is there (`COPYFILE_EXCL`); the mode to give it.
   */
  #place(cached: string, file: VolumeManifestFile, readOnly: boolean): MakeFile {
    const writableMode = file.mode & 0o111 ? 0o777 : 0o666;
    const copy = (path: string, mode: number, clone = constants.COPYFILE_FICLONE) => copyFile(cached, path, constants.COPYFILE_EXCL | clone).then(() => mode);
    // A hard link is the cache's own inode, read-only and the plane's: its mode stays, and the container replaces it to change it.
    const linked = (path: string, mode: number) =>
      link(cached, path).then(
        () => undefined,
        () => copy(path, mode),
      );
    return async (path) => {
      if (readOnly) return linked(path, 0o444);
      if (file.size <= VOLUME_LIMITS.copyBelowBytes) return copy(path, writableMode);
      if (this.#reflink !== false) {
        try {
          const mode = await copy(path, writableMode, constants.COPYFILE_FICLONE_FORCE);
          this.#reflink = true;
          return mode;
        } catch {
          this.#reflink = false;
        }
      }
      return linked(path, writableMode);
    };
  }

  /** The cache's path of each file, downloading those it lacks (a few at once). */
  async #cachedAll(app: string, volume: string, files: VolumeManifestFile[]): Promise<string[]> {
    const out: string[] = new Array<string>(files.length);
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const i = next++;
        out[i] = await this.#cached(app, volume, files[i]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(VOLUME_LIMITS.downloadConcurrency, files.length) }, worker));
    return out;
  }

  /** A file's path in the cache, downloaded first when the cache lacks it (once, however many ask at once). */
  #cached(app: string, volume: string, file: VolumeManifestFile): Promise<string> {
    const key = cacheKey(file.blocks, file.mode);
    const path = join(this.#dir, "cache", "files", key);
    let pending = this.#downloads.get(key);
    if (!pending) {
      pending = stat(path).then(
        () => path,
        () => this.#download(app, volume, file, path),
      );
      this.#downloads.set(key, pending);
      void pending.finally(() => this.#downloads.delete(key)).catch(() => {});
    }
    return pending;
  }

  async #download(app: string, volume: string, file: VolumeManifestFile, path: string): Promise<string> {
    await mkdir(dirname(path), { recursive: true });
    const temp = `${path}.${randomBytes(6).toString("hex")}.part`;
    const handle = await open(temp, "w");
    try {
      for (let i = 0; i < file.blocks.length; i += VOLUME_LIMITS.downloadConcurrency) {
        const window = file.blocks.slice(i, i + VOLUME_LIMITS.downloadConcurrency);
        const bytes = await Promise.all(window.map((hash) => this.#block(app, volume, hash, file.path)));
        for (const b of bytes) await handle.write(b);
      }
    } catch (err) {
      await handle.close();
      await rm(temp, { force: true });
      throw err;
    }
    await handle.close();
    await chmod(temp, file.mode & 0o111 ? 0o555 : 0o444);
    await rename(temp, path);
    return path;
  }

  async #block(app: string, volume: string, hash: string, path: string): Promise<Uint8Array> {
    const res = await this.#gateway.request(app, "GET", paths.volumeBlock(volume, hash), undefined, {}, { resend: true });
    if (!res.ok) await failed(res);
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (createHash("sha256").update(bytes).digest("hex") !== hash) {
      throw new InternalError(`block ${hash} of "${path}" in volume "${volume}" came from the gateway with other bytes`, { volume, block: hash });
    }
    this.stats.blocksDownloaded++;
    this.stats.bytesDownloaded += bytes.byteLength;
    return bytes;
  }

  /**
   * A file the container wrote, split into blocks as it is copied into the
   * cache (the copy is what is uploaded and kept: the container may go on
   * writing its own); the blocks the gateway lacks are uploaded.
   */
  async #ingest(app: string, volume: string, folder: MountFolder, rel: string, mode: number): Promise<{ blocks: string[]; size: number }> {
    await mkdir(join(this.#dir, "cache", "files"), { recursive: true });
    // Opened without following a link in any name of its path: the container may have swapped one in since the scan.
    const source = await folder.openFile(rel);
    const temp = join(this.#dir, "cache", "files", `.ingest-${randomBytes(6).toString("hex")}.part`);
    const handle = await open(temp, "w+").catch(async (err: unknown) => {
      await source.close();
      throw err;
    });
    const blocks: string[] = [];
    let size = 0;
    try {
      for await (const block of blocksOf(source.createReadStream({ highWaterMark: 1024 * 1024, autoClose: false }))) {
        blocks.push(createHash("sha256").update(block).digest("hex"));
        size += block.byteLength;
        await handle.write(block);
      }
      const missing = new Set<string>();
      for (let i = 0; i < blocks.length; i += VOLUME_LIMITS.maxBlocksPerQuery) {
        const hashes = blocks.slice(i, i + VOLUME_LIMITS.maxBlocksPerQuery);
        const answer = (await this.#ask(app, "POST", paths.volumeBlocksMissing(volume), { hashes }, true)) as BlocksMissingAnswer;
        for (const hash of answer.missing) missing.add(hash);
      }
      const sends = blocks.flatMap((hash, i) => (missing.delete(hash) ? [{ hash, i }] : []));
      let next = 0;
      const worker = async () => {
        while (next < sends.length) {
          const { hash, i } = sends[next++]!;
          const bytes = new Uint8Array(Math.min(VOLUME_LIMITS.blockBytes, size - i * VOLUME_LIMITS.blockBytes));
          await handle.read(bytes, 0, bytes.byteLength, i * VOLUME_LIMITS.blockBytes);
          const res = await this.#gateway.request(
            app,
            "PUT",
            paths.volumeBlock(volume, hash),
            bytes,
            { "content-type": "application/octet-stream" },
            { resend: true },
          );
          if (!res.ok) await failed(res);
          await res.body?.cancel();
          this.#uploaded.blocks++;
          this.#uploaded.bytes += bytes.byteLength;
        }
      };
      await Promise.all(Array.from({ length: Math.min(VOLUME_LIMITS.uploadConcurrency, sends.length) }, worker));
    } finally {
      await source.close();
      await handle.close();
    }
    await chmod(temp, mode & 0o111 ? 0o555 : 0o444);
    await rename(temp, join(this.#dir, "cache", "files", cacheKey(blocks, mode)));
    return { blocks, size };
  }

  async #manifest(app: string, volume: string): Promise<VolumeManifest> {
    return (await this.#ask(app, "GET", paths.volumeManifest(volume), undefined, true)) as VolumeManifest;
  }

  /**
   * A JSON request to the gateway as the app's container; its error thrown as its typed error. `resend`: a query
   * that may be sent twice (a commit may not: its compare-and-swap would fail on the version its first send made).
   */
  async #ask(app: string, method: string, path: string, body?: unknown, resend = false): Promise<unknown> {
    const bytes = body === undefined ? undefined : new TextEncoder().encode(JSON.stringify(body));
    const res = await this.#gateway.request(app, method, path, bytes, bytes ? { "content-type": "application/json" } : {}, { resend });
    if (!res.ok) await failed(res);
    return res.json();
  }

  /**
   * Every regular file in the mount's folder, by its path there (links and other special entries are not files of the
   * volume), but the plane's own (a file being replaced) and those whose path the volume cannot hold (`unfit` hears
   * of each, with why).
   */
  async #scan(mount: Mount, unfit?: (rel: string, problem: string) => void): Promise<Map<string, FileStat>> {
    const found = await mount.folder.files();
    for (const rel of found.keys()) {
      if (reservedVolumeName(rel) !== undefined) found.delete(rel);
      else {
        const checked = volumePath(this.#inVolume(mount, rel));
        if ("problem" in checked) {
          found.delete(rel);
          unfit?.(rel, checked.problem);
        }
      }
    }
    return found;
  }

  #inVolume(mount: Mount, rel: string): string {
    return mount.request.subPath === "" ? rel : `${mount.request.subPath}/${rel}`;
  }
}

/**
 * What a container does about a file of its mount that it changed and another commit changed too: the mount's
 * commit() and reload() both refuse it, and commit() has no force of its own.
 */
function conflictAdvice(mount: Mount, volumePath: string): string {
  const sub = mount.request.subPath;
  const here = join(mount.request.path, sub === "" ? volumePath : volumePath.slice(sub.length + 1));
  return (
    `to take the volume's, delete ${here} and reload(); to keep this container's, write it over the volume's ` +
    `(await vol.writeFile(${JSON.stringify(volumePath)}, bytes, { force: true })), then delete ${here} and reload()`
  );
}

function sameOnDisk(held: HeldFile | undefined, st: FileStat): boolean {
  // Whether it is executable too: a chmod changes no inode, size or mtime, and a volume keeps 0o755 or 0o644.
  const executable = (mode: number) => (mode & 0o111) !== 0;
  return held !== undefined && held.ino === st.ino && held.size === st.size && held.mtimeMs === st.mtimeMs && executable(held.mode) === executable(st.mode);
}

function sameContent(held: HeldFile, file: VolumeManifestFile): boolean {
  return held.size === file.size && (held.mode & 0o111) === (file.mode & 0o111) && held.blocks.join() === file.blocks.join();
}

/** A file's name in the cache: its bytes (by their blocks' hashes), and whether it is executable. */
function cacheKey(blocks: string[], mode: number): string {
  return createHash("sha256")
    .update(`${blocks.join(",")}${mode & 0o111 ? ":x" : ""}`)
    .digest("hex");
}

async function failed(res: Response): Promise<never> {
  const text = await res.text();
  let error: WireError | undefined;
  try {
    error = (JSON.parse(text) as { error?: WireError }).error;
  } catch {
    // not Tandem's JSON
  }
  if (error) throw fromWireError(error);
  if (res.status === 404) throw new NotFoundError(`the gateway answered 404: ${text.slice(0, 200)}`);
  throw new InternalError(`the gateway answered HTTP ${res.status}: ${text.slice(0, 200)}`);
}
