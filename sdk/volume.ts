/**
 * `Volume`: files that outlive a call, kept by the gateway (docs/volumes.md).
 * A handle is lazy: `Volume.fromName` sends nothing; its first operation
 * does. Outside the gateway it speaks the `/v1/volumes` API with a token, as
 * `lookup` does; inside the gateway (edge functions, web endpoints, agents)
 * the Worker installs a backend that reaches storage through its bindings.
 *
 * Each write through a handle is one commit. A handle remembers the volume
 * version it started from (its first operation's, then each of its own
 * commits'): a write that changes a file another commit changed since then
 * fails with `VolumeConflictError` naming the file, unless it is forced.
 */
import { joinChunks } from "./bounded-body.js";
import { LazyBackend } from "./lazy-backend.js";
import { InvalidOptionsError, NotFoundError } from "./errors.js";
import {
  VOLUME_NAME_PATTERN,
  reservedVolumeNameProblem,
  volumePath,
  type VolumeChange,
  type VolumeCommitAnswer,
  type VolumeEntry,
  type VolumeInfo,
  type VolumeListing,
} from "./protocol.js";
import type { ByteSource } from "./volume-blocks.js";
import { httpVolumes } from "./volume-client.js";

/** A file's bytes to write: text (UTF-8), bytes, a `Blob`, or a stream of bytes (a Web stream, or Node's `fs.createReadStream`). */
export type FileData = string | Blob | ByteSource;

/** One file of a write: where it goes, its bytes, its mode. */
export interface FileUpload {
  path: string;
  source: ByteSource;
  mode?: number;
}

/** A commit's terms: the base version it is checked against (none: the current one) and whether it overrides conflicts. */
export interface CommitTerms {
  baseVersion?: number;
  force?: boolean;
}

/** A file being read: its size, mode and the version it was read at, and its bytes, as a stream or all at once. */
export interface FileRead {
  size: number;
  mode: number;
  version: number;
  body: ReadableStream<Uint8Array>;
}

/** How a `Volume` reaches its storage: the gateway's HTTP API, or the gateway's bindings from inside it. */
export interface VolumeBackend {
  create(name: string, existOk: boolean): Promise<VolumeInfo>;
  info(name: string): Promise<VolumeInfo>;
  delete(name: string): Promise<VolumeInfo>;
  list(): Promise<VolumeInfo[]>;
  listdir(name: string, path: string, recursive: boolean): Promise<VolumeListing>;
  read(name: string, path: string): Promise<FileRead>;
  /** Uploads the files' blocks (only those the gateway lacks), then commits them, with `changes` after them, as one version. */
  write(name: string, files: FileUpload[], changes: VolumeChange[], terms: CommitTerms): Promise<VolumeCommitAnswer>;
  /**
   * The work running now, when a handle's base version belongs to it rather than to the handle: inside the gateway,
   * the call or request (a handle kept at module scope serves every call of the isolate, and one call's base must
   * not be another's). None: the handle's own.
   */
  scope?(): object | undefined;
}

let installed: VolumeBackend | undefined;

/** Inside a plane container: what `commit()` and `reload()` do for the volumes mounted there (the runner installs it). */
export interface MountedVolumes {
  /** True when `name` is mounted in this container and may be written (not read-only). */
  mounted(name: string): { readOnly: boolean } | undefined;
  /** Publishes this container's changes to every mount of `name`; the new version. */
  commit(name: string): Promise<number>;
  /** Brings others' commits into every mount of `name`; the version it is at now. */
  reload(name: string): Promise<number>;
}

let mounts: MountedVolumes | undefined;

/** Used by the plane's runner: the volumes mounted in this container. */
export function installMountedVolumes(next: MountedVolumes | undefined): void {
  mounts = next;
}

const VOLUME_BRAND = Symbol.for("tandem.volume");

/** True for a `Volume` (from any copy of the SDK). */
export function isVolume(value: unknown): value is Volume {
  return typeof value === "object" && value !== null && VOLUME_BRAND in value;
}

/** How a function mounts a volume (`vol.readOnly()`, `vol.subPath("dir")`). */
export interface VolumeMountSpec {
  volume: string;
  readOnly: boolean;
  /** The directory of the volume mounted, in its one form (`""`: the root). */
  subPath: string;
  createIfMissing: boolean;
}

/** Used by the gateway runtime: handles in this isolate without a `gateway` or `token` of their own use `backend`. */
export function installVolumeBackend(backend: VolumeBackend | undefined): void {
  installed = backend;
}

export interface VolumeOptions {
  /** Make the volume on first use when it does not exist (needs a token of scope `deploy`). */
  createIfMissing?: boolean;
  /** The gateway to reach (outside the gateway; default `TANDEM_GATEWAY`, then the local one). */
  gateway?: string;
  /** The API token to send (default: as `lookup` finds one). */
  token?: string;
  /** The environment to address (`dev`); default `TANDEM_ENV`, then the gateway's own. See docs/deploy.md, "Environments". */
  env?: string;
}

/**
 * A file read from a volume: iterate it for its bytes as they arrive (big
 * files), or take them all at once with `bytes()` or `text()` (small ones).
 * @example
 * const file = await vol.readFile("config.json"); JSON.parse(await file.text());
 * for await (const chunk of await vol.readFile("weights.bin")) hash.update(chunk);
 */
export class VolumeFile implements AsyncIterable<Uint8Array> {
  constructor(
    readonly path: string,
    /** Its size in bytes, its mode, and the volume version it was read at. */
    readonly size: number,
    readonly mode: number,
    readonly version: number,
    /** Its bytes as they arrive; read it once. */
    readonly stream: ReadableStream<Uint8Array>,
  ) {}

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    const reader = this.stream.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        yield value;
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
  }

  /** All of its bytes, in memory. */
  async bytes(): Promise<Uint8Array> {
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of this) {
      chunks.push(chunk);
      total += chunk.byteLength;
    }
    return joinChunks(chunks, total);
  }

  /** Its bytes as UTF-8 text. */
  async text(): Promise<string> {
    return new TextDecoder().decode(await this.bytes());
  }
}

/**
 * A named volume.
 * @example
 * const vol = Volume.fromName("models", { createIfMissing: true });
 * await vol.writeFile("notes/hello.txt", "hello");
 * const text = await (await vol.readFile("notes/hello.txt")).text();
 */
export class Volume {
  readonly name: string;
  readonly [VOLUME_BRAND] = true;
  readonly #options: VolumeOptions;
  readonly #mount: { readOnly: boolean; subPath: string };
  readonly #store: LazyBackend<VolumeBackend>;
  /** The version writes start from, when the backend has no scope of work (`VolumeBackend.scope`). */
  #version: number | undefined;
  /** Inside the gateway: each call's or request's own base version, by the work it belongs to. */
  readonly #versions = new WeakMap<object, number>();

  private constructor(name: string, options: VolumeOptions, mount = { readOnly: false, subPath: "" }) {
    this.name = name;
    this.#options = options;
    this.#store = new LazyBackend(() => backendFor(options), name, options.createIfMissing ?? false);
    this.#mount = mount;
  }

  /**
   * The same volume mounted read-only: in a plane function's container every write to it fails with `EROFS`.
   * @example app.function({ volumes: { "/models": vol.readOnly() } }, …)
   */
  readOnly(): Volume {
    return new Volume(this.name, this.#options, { ...this.#mount, readOnly: true });
  }

  /**
   * One directory of the volume, mounted as the mount's root (`vol.subPath("llama")` at `/models` shows the
   * volume's `llama/weights.bin` as `/models/weights.bin`).
   */
  subPath(dir: string): Volume {
    const checked = volumePath(typeof dir === "string" ? dir : "");
    if (typeof dir !== "string" || "problem" in checked) {
      throw new InvalidOptionsError(`subPath("${String(dir)}"): ${"problem" in checked ? `the path ${checked.problem}` : "must be a path in the volume"}`);
    }
    const subPath = [this.#mount.subPath, checked.path].filter((p) => p !== "").join("/");
    return new Volume(this.name, this.#options, { ...this.#mount, subPath });
  }

  /** How a function's container mounts this handle (read by the SDK's options; `vol.readOnly()` and `vol.subPath()` set it). */
  get mountSpec(): VolumeMountSpec {
    return { volume: this.name, ...this.#mount, createIfMissing: this.#options.createIfMissing ?? false };
  }

  /**
   * Inside a plane function whose container mounts this volume: publishes the container's changes to it (only
   * the blocks the gateway lacks are sent; a compare-and-swap on the version the mount is at) and returns the new
   * version. The plane also commits every few seconds and when the container stops. A file another commit changed
   * since is a `VolumeConflictError` naming it. Elsewhere each write is its own commit, and this throws.
   */
  async commit(): Promise<number> {
    const mounted = mounts?.mounted(this.name);
    if (!mounted) {
      throw new InvalidOptionsError(
        `volume "${this.name}" is not mounted here: commit() publishes a plane container's changes to a mounted volume (app.function({ volumes: { "/path": vol } })); elsewhere each write is a commit`,
      );
    }
    if (mounted.readOnly) throw new InvalidOptionsError(`volume "${this.name}" is mounted read-only here; it has nothing to commit`);
    return this.#setBase(await mounts!.commit(this.name));
  }

  /** A handle on the volume `name`; nothing is sent until its first operation. */
  static fromName(name: string, options: VolumeOptions = {}): Volume {
    if (typeof name !== "string" || !VOLUME_NAME_PATTERN.test(name)) {
      throw new InvalidOptionsError(`"${String(name)}" is not a volume name: letters, digits, '-' and '_', up to 64, starting with a letter or digit`);
    }
    return new Volume(name, options);
  }

  /** Makes a volume; `existOk` answers an existing one instead of refusing it. Needs a token of scope `deploy`. */
  static async create(name: string, options: Omit<VolumeOptions, "createIfMissing"> & { existOk?: boolean } = {}): Promise<VolumeInfo> {
    const vol = Volume.fromName(name, options);
    return vol.#backendOf().create(name, options.existOk ?? false);
  }

  /** Every volume of the gateway. */
  static async list(options: Omit<VolumeOptions, "createIfMissing"> = {}): Promise<VolumeInfo[]> {
    return backendFor(options).list();
  }

  /** Deletes a volume and its files. Needs a token of scope `deploy`. */
  static async delete(name: string, options: Omit<VolumeOptions, "createIfMissing"> = {}): Promise<VolumeInfo> {
    return Volume.fromName(name, options).#backendOf().delete(name);
  }

  /**
   * The version this handle's writes start from: its first operation's, then each of its own commits'. Undefined
   * before any. Inside the gateway, each call's (or request's) own: its first operation's in that call.
   */
  get version(): number | undefined {
    return this.#base();
  }

  /** The volume's version, files and bytes now. */
  async info(): Promise<VolumeInfo> {
    const info = await (await this.#ready_()).info(this.name);
    this.#seen(info.version);
    return info;
  }

  /**
   * Moves this handle to the volume's latest version, so that its writes start from it; returns it. Inside a plane
   * container that mounts the volume, also brings others' commits into the mount (files this container changed
   * and has not committed stay as they are; one another commit changed too is a `VolumeConflictError`).
   */
  async reload(): Promise<number> {
    if (mounts?.mounted(this.name)) return this.#setBase(await mounts.reload(this.name));
    return this.#setBase((await (await this.#ready_()).info(this.name)).version);
  }

  /** The files and directories in `path` (default the root), or every file and directory under it (`recursive`). */
  async listdir(path = "/", options: { recursive?: boolean } = {}): Promise<VolumeEntry[]> {
    const what = `volume "${this.name}" listdir`;
    checkedPath(what, path);
    checkedOptions(what, options, { recursive: "boolean" });
    const listing = await (await this.#ready_()).listdir(this.name, path, options.recursive ?? false).catch((err: unknown) => this.#notThere(err));
    this.#seen(listing.version);
    return listing.entries;
  }

  /** A file: its bytes as a stream (`for await`), or all at once (`bytes()`, `text()`). */
  async readFile(path: string): Promise<VolumeFile> {
    checkedPath(`volume "${this.name}" readFile`, path, "read", true);
    const read = await (await this.#ready_()).read(this.name, path).catch((err: unknown) => this.#notThere(err));
    this.#seen(read.version);
    return new VolumeFile(path, read.size, read.mode, read.version, read.body);
  }

  /** Writes one file, in one commit; returns the volume's new version. */
  async writeFile(path: string, data: FileData, options: { mode?: number; force?: boolean } = {}): Promise<number> {
    const what = `volume "${this.name}" writeFile`;
    checkedPath(what, path, "write", true);
    checkedOptions(what, options, { mode: "mode", force: "boolean" });
    const source = sourceOf(what, data);
    return this.#commit([{ path, source, ...(options.mode === undefined ? {} : { mode: options.mode }) }], [], options.force);
  }

  /** Removes a file, or a directory with everything in it (`recursive`), in one commit; returns the new version. */
  async remove(path: string, options: { recursive?: boolean; force?: boolean } = {}): Promise<number> {
    const what = `volume "${this.name}" remove`;
    checkedPath(what, path);
    checkedOptions(what, options, { recursive: "boolean", force: "boolean" });
    return this.#commit([], [{ op: "remove", path, recursive: options.recursive ?? false }], options.force);
  }

  /**
   * Copies files or directories, as `cp -r` does: into `destination` when it
   * is a directory, ends in `/` (made if need be), or there are several
   * sources, else to it. No bytes move: the copies name the same blocks. One
   * commit; returns the new version.
   */
  async copyFiles(sources: string[], destination: string, options: { force?: boolean } = {}): Promise<number> {
    const what = `volume "${this.name}" copyFiles`;
    if (!Array.isArray(sources) || sources.length === 0) {
      throw new InvalidOptionsError(`${what}: the sources must be a list of one or more paths, like ["notes/a.txt"] (got ${describe(sources)})`);
    }
    for (const source of sources) checkedPath(what, source);
    checkedPath(what, destination, "write");
    checkedOptions(what, options, { force: "boolean" });
    return this.#commit([], [{ op: "copy", sources, destination }], options.force);
  }

  /**
   * Several files in one commit.
   * @example
   * const batch = vol.batchUpload();
   * batch.putFile("./model.bin", "/models/model.bin");     // a local file (Node), or bytes, a Blob, a stream
   * batch.putDirectory("./tokenizer", "/models/tokenizer"); // a local directory (Node)
   * const version = await batch.commit();
   */
  batchUpload(options: { force?: boolean } = {}): VolumeBatch {
    checkedOptions(`volume "${this.name}" batchUpload`, options, { force: "boolean" });
    return new VolumeBatch(this.name, (files) => this.#commit(files, [], options.force));
  }

  async #commit(files: FileUpload[], changes: VolumeChange[], force: boolean | undefined): Promise<number> {
    for (const file of files) checkedPath(`volume "${this.name}" write`, file.path, "write"); // a batch's directory's files too
    const backend = await this.#ready_();
    const base = this.#base();
    const terms: CommitTerms = { ...(base === undefined ? {} : { baseVersion: base }), ...(force ? { force } : {}) };
    const { version } = await backend.write(this.name, files, changes, terms);
    return this.#setBase(version);
  }

  #base(): number | undefined {
    const scope = this.#backendOf().scope?.();
    return scope ? this.#versions.get(scope) : this.#version;
  }

  #setBase(version: number): number {
    const scope = this.#backendOf().scope?.();
    if (scope) this.#versions.set(scope, version);
    else this.#version = version;
    return version;
  }

  /**
   * A read of a path that is not there saw the volume at a version too (`details.version`): the base, when there is
   * none yet, so that writing the path later conflicts with a write of it made since, as after a read that found it.
   */
  #notThere(err: unknown): never {
    if (err instanceof NotFoundError && typeof err.details?.version === "number") this.#seen(err.details.version);
    throw err;
  }

  /** A version an operation saw: the base, when there is none yet. */
  #seen(version: number): void {
    if (this.#base() === undefined) this.#setBase(version);
  }

  #backendOf(): VolumeBackend {
    return this.#store.backend();
  }

  /** The backend, after making the volume once when `createIfMissing` says so. */
  #ready_(): Promise<VolumeBackend> {
    return this.#store.ready();
  }
}

/** The files of one `batchUpload`, committed together by `commit()`. */
export class VolumeBatch {
  readonly #files: (FileUpload | Promise<FileUpload[]>)[] = [];
  #committed = false;

  constructor(
    private readonly volume: string,
    private readonly send: (files: FileUpload[]) => Promise<number>,
  ) {}

  /** A file: a local path (in Node), or its bytes (text, bytes, a `Blob`, a stream). */
  putFile(local: FileData, remotePath: string, options: { mode?: number } = {}): this {
    const what = `volume "${this.volume}" batch putFile`;
    checkedPath(what, remotePath, "write", true);
    checkedOptions(what, options, { mode: "mode" });
    const mode = options.mode === undefined ? {} : { mode: options.mode };
    if (typeof local === "string") this.#files.push(localFile(local).then((file) => [{ path: remotePath, source: file.source, ...file.mode, ...mode }]));
    else this.#files.push({ path: remotePath, source: sourceOf(`${what}: the local file`, local), ...mode });
    return this;
  }

  /** Every file under a local directory (in Node), at the same places under `remotePath`. */
  putDirectory(localDir: string, remotePath: string): this {
    const what = `volume "${this.volume}" batch putDirectory`;
    if (typeof localDir !== "string") throw new InvalidOptionsError(`${what}: the local directory must be a path, a string (got ${describe(localDir)})`);
    checkedPath(what, remotePath, "write");
    this.#files.push(localDirectory(localDir, remotePath));
    return this;
  }

  /** Uploads the files (only blocks the gateway lacks) and commits them as one version; returns it. */
  async commit(): Promise<number> {
    if (this.#committed) throw new InvalidOptionsError("this batch was committed already; start another with vol.batchUpload()");
    this.#committed = true;
    const files = (await Promise.all(this.#files.map((f) => (f instanceof Promise ? f : [f])))).flat();
    if (files.length === 0) throw new InvalidOptionsError("the batch holds no files: add some with putFile or putDirectory");
    return this.send(files);
  }
}

/** A file's bytes to write as a `ByteSource`; anything else is refused here, naming what it may be, before a byte is sent. */
function sourceOf(what: string, data: unknown): ByteSource {
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (typeof Blob !== "undefined" && data instanceof Blob) return data.stream();
  if (data instanceof Uint8Array || data instanceof ReadableStream) return data;
  if (typeof data === "object" && data !== null && Symbol.asyncIterator in data) return data as AsyncIterable<Uint8Array>;
  throw new InvalidOptionsError(
    `${what}: the data must be text (a string), bytes (a Uint8Array or Buffer), a Blob, a ReadableStream or an async iterable of bytes ` +
      `(fs.createReadStream(...)); got ${describe(data)}${typeof data === "object" && data !== null ? " (for JSON, pass JSON.stringify(value))" : ""}`,
  );
}

/**
 * A path argument: a string in a volume's path form (sent as given: the gateway takes every spelling of it). A path
 * a file is written at may not hold a name reserved for the plane (`.tandem-…`).
 */
function checkedPath(what: string, path: unknown, use: "read" | "write" = "read", file = false): string {
  if (typeof path !== "string") throw new InvalidOptionsError(`${what}: the path must be a string, like "models/weights.bin" (got ${describe(path)})`);
  const checked = volumePath(path);
  if ("problem" in checked) throw new InvalidOptionsError(`${what}: path "${path}" ${checked.problem}`);
  // A file's path names one: the volume's root ("", "/") is its top directory.
  if (file && checked.path === "")
    throw new InvalidOptionsError(`${what}: a file needs a path, like "models/weights.bin"; "${path}" is the volume's root, a directory`);
  const reserved = use === "write" ? reservedVolumeNameProblem(checked.path) : undefined;
  if (reserved) throw new InvalidOptionsError(`${what}: path "${path}" ${reserved}`);
  return path;
}

/** An options argument: an object (or nothing) whose known fields have their types; `mode` a file mode such as `0o644`. */
function checkedOptions(what: string, options: unknown, fields: Record<string, "boolean" | "mode">): void {
  if (options === undefined) return;
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new InvalidOptionsError(`${what}: the options must be an object, like { ${Object.keys(fields)[0]}: … } (got ${describe(options)})`);
  }
  for (const [field, kind] of Object.entries(fields)) {
    const value = (options as Record<string, unknown>)[field];
    if (value === undefined) continue;
    if (kind === "boolean" && typeof value !== "boolean")
      throw new InvalidOptionsError(`${what}: option "${field}" must be true or false (got ${describe(value)})`);
    if (kind === "mode" && !(Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0o777)) {
      throw new InvalidOptionsError(
        `${what}: option "mode" must be a file's permission bits, 0 to 0o777, such as 0o644 or 0o755 (got ${Number.isInteger(value) && (value as number) >= 0 ? `0o${(value as number).toString(8)}` : describe(value)}): a volume keeps no setuid, setgid or sticky bit`,
      );
    }
  }
}

/** A value as an error names it: its type, and a short form of it. */
function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return `an object (${value.constructor?.name ?? "Object"})`;
  if (typeof value === "string") return `"${value.slice(0, 40)}"`;
  return `${typeof value} ${String(value)}`;
}

function backendFor(options: VolumeOptions): VolumeBackend {
  if (installed && options.gateway === undefined && options.token === undefined && options.env === undefined) return installed;
  return httpVolumes(options.gateway, options.token, options.env);
}

// ---------------------------------------------------------------------------
// Local files, for batchUpload in Node: node:fs through process.getBuiltinModule (Node 20.16+), so that this
// module, which the edge bundles too, imports nothing of Node's.

type NodeFs = {
  statSync(path: string): { mode: number; isDirectory(): boolean };
  lstatSync(path: string): { mode: number; isFile(): boolean };
  readdirSync(path: string, options: { recursive: true }): string[];
  createReadStream(path: string, options?: { highWaterMark?: number }): AsyncIterable<Uint8Array>;
};

function nodeFs(what: string): NodeFs {
  const proc = (globalThis as { process?: { getBuiltinModule?: (name: string) => unknown } }).process;
  const fs = proc?.getBuiltinModule?.("node:fs") as NodeFs | undefined;
  if (!fs) throw new InvalidOptionsError(`${what} reads local files, which needs Node 20.16 or later; elsewhere pass the bytes (putFile(bytes, path))`);
  return fs;
}

async function localFile(path: string): Promise<{ source: ByteSource; mode: { mode?: number } }> {
  const fs = nodeFs("putFile with a path");
  const stat = fs.statSync(path);
  if (stat.isDirectory()) throw new InvalidOptionsError(`putFile: "${path}" is a directory; use putDirectory`);
  return { source: readLazily(fs, path), mode: { mode: stat.mode & 0o777 } };
}

async function localDirectory(dir: string, remotePath: string): Promise<FileUpload[]> {
  const fs = nodeFs("putDirectory");
  if (!fs.statSync(dir).isDirectory()) throw new InvalidOptionsError(`putDirectory: "${dir}" is not a directory; use putFile`);
  const root = dir.replace(/\/+$/, "");
  const files: FileUpload[] = [];
  // Names relative to root, as readdir gives them: it normalises nested entries' parent paths (`./a/b` → `a/b`).
  for (const relative of fs.readdirSync(root, { recursive: true })) {
    const local = `${root}/${relative}`;
    const stat = fs.lstatSync(local);
    if (!stat.isFile()) continue;
    files.push({ path: `${remotePath.replace(/\/+$/, "")}/${relative.split("\\").join("/")}`, source: readLazily(fs, local), mode: stat.mode & 0o777 });
  }
  return files;
}

/** A local file's bytes, opened only when read: a directory of many files does not hold a descriptor for each. */
async function* readLazily(fs: NodeFs, path: string): AsyncGenerator<Uint8Array> {
  yield* fs.createReadStream(path, { highWaterMark: 1024 * 1024 });
}
