/**
 * The `VolumeStore` Durable Object (SQLite): one object per volume holds its
 * manifest (each file's path, blocks, size, mode and the version that last
 * wrote it) and its version; a commit is a compare-and-swap of that version,
 * made in one transaction. One more object of the class, the catalog, lists
 * the volumes by name. Blocks themselves live in R2 (`BLOB_KEYS.volumeBlock`);
 * this object only names them.
 *
 * A commit from base version `b` that changes a file another commit changed
 * after `b` is refused as `volume_conflict`, naming the file, unless forced;
 * commits that touch different files all succeed. Removed files leave a
 * tombstone with the version that removed them, so removing a file counts as
 * changing it.
 *
 * Errors do not cross a Durable Object's RPC as their class: every method
 * answers `Outcome`, and `gateway/volumes.ts` throws the error it carries.
 */
import { DurableObject } from "cloudflare:workers";
import { VOLUME_LIMITS } from "../sdk/defaults.js";
import { InvalidRequestError, NotFoundError, TandemError, VolumeConflictError, toWireError, type WireError } from "../sdk/errors.js";
import {
  reservedVolumeNameProblem,
  type VolumeChange,
  type VolumeEntry,
  type VolumeInfo,
  type VolumeListing,
  type VolumeManifest,
  type VolumeManifestFile,
} from "../sdk/protocol.js";
import type { Env } from "./env.js";

/** A method's answer: its value, or the error to throw at the caller. */
export type Outcome<T> = { ok: T } | { error: WireError };

/** A file as the manifest holds it: what a reader needs to fetch its bytes (the shape planes get, `VolumeManifestFile`). */
export type ManifestFile = VolumeManifestFile;

/** A change whose paths are already in their one form (`volumePath`). */
export type CheckedChange = VolumeChange;

type FileRow = { path: string; blocks: string; size: number; mode: number; version: number; mtime: number };
type VolumeRow = { name: string; version: number; created_at: number };

const DIRECTORY_MODE = 0o755;

export class VolumeStore extends DurableObject<Env> {
  readonly #sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS volume (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL, version INTEGER NOT NULL, created_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, blocks TEXT NOT NULL, size INTEGER NOT NULL, mode INTEGER NOT NULL, version INTEGER NOT NULL, mtime INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS removed (path TEXT PRIMARY KEY, version INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS catalog (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL);`);
  }

  // -------------------------------------------------------------------------
  // One volume

  /** Makes the volume, unless it exists: `created` says which. */
  async create(name: string): Promise<Outcome<{ created: boolean; info: VolumeInfo }>> {
    const existing = this.#volume();
    if (existing) return { ok: { created: false, info: this.#info(existing) } };
    this.#sql.exec("INSERT INTO volume (id, name, version, created_at) VALUES (1, ?, 0, ?)", name, Date.now());
    return { ok: { created: true, info: this.#info(this.#volume()!) } };
  }

  async info(name: string): Promise<Outcome<VolumeInfo>> {
    return this.#answer(() => this.#info(this.#need(name)));
  }

  /** Forgets the volume and its manifest (its blocks stay in R2, shared with other files). */
  async drop(name: string): Promise<Outcome<VolumeInfo>> {
    return this.#answer(() => {
      const info = this.#info(this.#need(name));
      this.#sql.exec("DELETE FROM files; DELETE FROM removed; DELETE FROM volume;");
      return info;
    });
  }

  /**
   * The entries in directory `dir` (`""`: the root), or every file and directory under it (`recursive`, as Modal's
   * `listdir(recursive=True)` and `find` list them: each directory just before the first file under it). A file's
   * own path lists that file.
   */
  async list(name: string, dir: string, recursive: boolean): Promise<Outcome<VolumeListing>> {
    return this.#answer(() => {
      const volume = this.#need(name);
      const file = this.#file(dir);
      if (file && dir !== "") return { volume: name, version: volume.version, path: dir, entries: [entryOf(file)] };
      const rows = this.#under(dir);
      // The version it was not there at: a handle's base, so that a write of it later conflicts with one made since.
      if (rows.length === 0 && dir !== "")
        throw new NotFoundError(`volume "${name}" has no file or directory "${dir}"`, { volume: name, path: dir, version: volume.version });
      const prefix = dir === "" ? "" : `${dir}/`;
      // Directories are not stored: each is the prefix of its files' paths, dated by the newest of them.
      const entries = new Map<string, VolumeEntry>();
      for (const row of rows) {
        const names = row.path.slice(prefix.length).split("/");
        for (let depth = 1; depth < (recursive ? names.length : Math.min(names.length, 2)); depth++) {
          const path = prefix + names.slice(0, depth).join("/");
          const seen = entries.get(path);
          if (!seen) entries.set(path, { path, type: "directory", size: 0, mode: DIRECTORY_MODE, mtime: row.mtime });
          else seen.mtime = Math.max(seen.mtime, row.mtime);
        }
        if (recursive || names.length === 1) entries.set(row.path, entryOf(row));
      }
      return { volume: name, version: volume.version, path: dir, entries: [...entries.values()] };
    });
  }

  /** Every file with its blocks, and the version they are at: what a plane mounts. */
  async manifest(name: string): Promise<Outcome<VolumeManifest>> {
    return this.#answer(() => {
      const volume = this.#need(name);
      const files = this.#under("").map((row) => ({ ...row, blocks: JSON.parse(row.blocks) as string[] }));
      return { volume: name, version: volume.version, files };
    });
  }

  /** A file's manifest entry, and the version it was read at. */
  async stat(name: string, path: string): Promise<Outcome<{ version: number; file: ManifestFile }>> {
    return this.#answer(() => {
      const volume = this.#need(name);
      const file = this.#file(path);
      if (!file) {
        const isDirectory = this.#under(path, 1).length > 0;
        throw isDirectory
          ? new InvalidRequestError(`"${path}" in volume "${name}" is a directory, not a file (list it instead)`, { volume: name, path })
          : new NotFoundError(`volume "${name}" has no file "${path}"`, { volume: name, path, version: volume.version });
      }
      return { version: volume.version, file: { ...file, blocks: JSON.parse(file.blocks) as string[] } };
    });
  }

  /**
   * Applies `changes` as one new version, or none of them: a compare-and-swap
   * against `baseVersion` (none: the current one) for each path it changes.
   */
  async commit(name: string, changes: CheckedChange[], terms: { baseVersion?: number; force?: boolean }): Promise<Outcome<{ version: number }>> {
    return this.#answer(() =>
      this.ctx.storage.transactionSync(() => {
        const volume = this.#need(name);
        const base = terms.baseVersion ?? volume.version;
        if (base > volume.version) {
          // Versions only grow while a volume lives: a base past them was read from a volume of this name deleted since.
          throw new InvalidRequestError(
            `base version ${base} is newer than volume "${name}"'s version ${volume.version}: the volume was deleted and made again since that version ` +
              `was read; vol.reload() (or a new handle; over HTTP, no baseVersion) starts from its current version`,
            { volume: name, baseVersion: base, version: volume.version },
          );
        }
        const next = volume.version + 1;
        const now = Date.now();
        const claim = (path: string) => {
          if (terms.force) return;
          const changedAt = this.#changedAt(path);
          if (changedAt !== undefined && changedAt > base && changedAt !== next) {
            throw new VolumeConflictError(
              `volume "${name}": "${path}" was changed by version ${changedAt}, after this write's base version ${base}; reads show the latest version, ` +
                `but writes keep their base until vol.reload() (over HTTP: a later baseVersion): reload and write again, or write with { force: true }`,
              { volume: name, path, version: changedAt, baseVersion: base },
            );
          }
        };
        const put = (path: string, blocks: string, size: number, mode: number) => {
          if (path === "") throw new InvalidRequestError(`a file needs a path: the volume's root is a directory`, { volume: name });
          // The routes refuse such a path as given; a copy can still make one (a file a volume held before they did).
          const reserved = reservedVolumeNameProblem(path);
          if (reserved) throw new InvalidRequestError(`cannot write "${path}" in volume "${name}": the path ${reserved}`, { volume: name, path });
          claim(path);
          this.#fitsTree(name, path);
          this.#sql.exec(
            "INSERT OR REPLACE INTO files (path, blocks, size, mode, version, mtime) VALUES (?, ?, ?, ?, ?, ?)",
            path,
            blocks,
            size,
            mode,
            next,
            now,
          );
          this.#sql.exec("DELETE FROM removed WHERE path = ?", path);
        };
        for (const change of changes) {
          if (change.op === "put") put(change.path, JSON.stringify(change.blocks), change.size, change.mode ?? VOLUME_LIMITS.defaultMode);
          else if (change.op === "remove") {
            for (const path of this.#removalTargets(name, change.path, change.recursive ?? false)) {
              claim(path);
              this.#sql.exec("DELETE FROM files WHERE path = ?", path);
              this.#sql.exec("INSERT OR REPLACE INTO removed (path, version) VALUES (?, ?)", path, next);
            }
          } else {
            for (const [from, to] of this.#copyPairs(name, change.sources, change.destination)) put(to, from.blocks, from.size, from.mode);
          }
        }
        const files = this.#sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM files").one().n;
        if (files > VOLUME_LIMITS.maxFiles) {
          throw new InvalidRequestError(`volume "${name}" would hold ${files} files; a volume holds at most ${VOLUME_LIMITS.maxFiles}`, {
            volume: name,
            maxFiles: VOLUME_LIMITS.maxFiles,
          });
        }
        this.#sql.exec("UPDATE volume SET version = ? WHERE id = 1", next);
        return { version: next };
      }),
    );
  }

  // -------------------------------------------------------------------------
  // The catalog: one object of the class, named `VOLUME_CATALOG`, lists the volumes

  /** Adds a volume's name; false when the gateway holds the most volumes it keeps. */
  async catalogAdd(name: string, createdAt: number): Promise<boolean> {
    if (this.#sql.exec("SELECT 1 FROM catalog WHERE name = ?", name).toArray().length > 0) return true;
    const count = this.#sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM catalog").one().n;
    if (count >= VOLUME_LIMITS.maxVolumes) return false;
    this.#sql.exec("INSERT INTO catalog (name, created_at) VALUES (?, ?)", name, createdAt);
    return true;
  }

  async catalogRemove(name: string): Promise<void> {
    this.#sql.exec("DELETE FROM catalog WHERE name = ?", name);
  }

  async catalogList(): Promise<string[]> {
    return this.#sql
      .exec<{ name: string }>("SELECT name FROM catalog ORDER BY name")
      .toArray()
      .map((r) => r.name);
  }

  // -------------------------------------------------------------------------

  #answer<T>(work: () => T): Outcome<T> {
    try {
      return { ok: work() };
    } catch (err) {
      if (err instanceof TandemError) return { error: toWireError(err) };
      throw err;
    }
  }

  #volume(): VolumeRow | undefined {
    return this.#sql.exec<VolumeRow>("SELECT name, version, created_at FROM volume WHERE id = 1").toArray()[0];
  }

  #need(name: string): VolumeRow {
    const volume = this.#volume();
    if (!volume) throw missingVolume(name);
    return volume;
  }

  #info(volume: VolumeRow): VolumeInfo {
    const { n, bytes } = this.#sql.exec<{ n: number; bytes: number | null }>("SELECT COUNT(*) AS n, SUM(size) AS bytes FROM files").one();
    return { name: volume.name, version: volume.version, files: n, bytes: bytes ?? 0, createdAt: volume.created_at };
  }

  #file(path: string): FileRow | undefined {
    return this.#sql.exec<FileRow>("SELECT * FROM files WHERE path = ?", path).toArray()[0];
  }

  /** The files under directory `dir` (`""`: all), in path order; `limit` stops early. */
  #under(dir: string, limit = -1): FileRow[] {
    if (dir === "") return this.#sql.exec<FileRow>("SELECT * FROM files ORDER BY path LIMIT ?", limit).toArray();
    // Paths under `dir/` sort between `dir/` and `dir0` ('0' follows '/').
    return this.#sql.exec<FileRow>("SELECT * FROM files WHERE path >= ? AND path < ? ORDER BY path LIMIT ?", `${dir}/`, `${dir}0`, limit).toArray();
  }

  /** The version that last put or removed `path`, if any did. */
  #changedAt(path: string): number | undefined {
    return (
      this.#sql.exec<{ version: number }>("SELECT version FROM files WHERE path = ?", path).toArray()[0]?.version ??
      this.#sql.exec<{ version: number }>("SELECT version FROM removed WHERE path = ?", path).toArray()[0]?.version
    );
  }

  /** A file at `path` may not sit below another file, nor where a directory is. */
  #fitsTree(name: string, path: string): void {
    const names = path.split("/");
    for (let i = 1; i < names.length; i++) {
      const parent = names.slice(0, i).join("/");
      if (this.#file(parent)) {
        throw new InvalidRequestError(`cannot write "${path}" in volume "${name}": "${parent}" is a file, not a directory`, { volume: name, path });
      }
    }
    if (this.#under(path, 1).length > 0) {
      throw new InvalidRequestError(`cannot write "${path}" in volume "${name}": it is a directory`, { volume: name, path });
    }
  }

  #removalTargets(name: string, path: string, recursive: boolean): string[] {
    if (path !== "" && this.#file(path)) return [path];
    const under = this.#under(path).map((r) => r.path);
    if (under.length === 0) {
      if (path === "") return [];
      throw new NotFoundError(`volume "${name}" has no file or directory "${path}"`, { volume: name, path });
    }
    if (!recursive) {
      throw new InvalidRequestError(`"${path || "/"}" in volume "${name}" is a directory: remove it with recursive (tandem volume rm -r)`, {
        volume: name,
        path,
      });
    }
    return under;
  }

  /**
   * What `cp` copies where, as the Unix command does: into `destination` as a
   * directory when it is one, ends in `/` (made if need be) or ends the listing
   * of several sources, else to it.
   */
  #copyPairs(name: string, sources: string[], to: string): [FileRow, string][] {
    const destination = to.endsWith("/") ? to.slice(0, -1) : to;
    const into = to !== destination || sources.length > 1 || destination === "" || this.#under(destination, 1).length > 0;
    const join = (dir: string, rest: string) => (dir === "" ? rest : `${dir}/${rest}`);
    const pairs: [FileRow, string][] = [];
    for (const source of sources) {
      if (source === "") throw new InvalidRequestError(`cannot copy the root of volume "${name}": name the files or directories to copy`, { volume: name });
      const base = source.slice(source.lastIndexOf("/") + 1);
      const target = into ? join(destination, base) : destination;
      if (target === source || target.startsWith(`${source}/`)) {
        throw new InvalidRequestError(`cannot copy "${source}" onto itself or into itself (to "${target}") in volume "${name}"`, {
          volume: name,
          path: source,
        });
      }
      const file = this.#file(source);
      if (file) {
        pairs.push([file, target]);
        continue;
      }
      const under = this.#under(source);
      if (under.length === 0) throw new NotFoundError(`volume "${name}" has no file or directory "${source}"`, { volume: name, path: source });
      for (const row of under) pairs.push([row, target + row.path.slice(source.length)]);
    }
    return pairs;
  }
}

/** The name of the catalog object (volume names match `NAME_PATTERN`, so none can be it). */
export const VOLUME_CATALOG = "~catalog";

/**
 * The 404 of a volume that is not there. The object knows its name, not its environment: the gateway, which does,
 * says it again with `where` (`lookedIn`), so that the message names the environment and the command's `--env`.
 */
export function missingVolume(name: string, where: { words: string; flag: string } = { words: "", flag: "" }): NotFoundError {
  return new NotFoundError(
    `no volume named "${name}"${where.words} (tandem volume create ${name}${where.flag} makes it; Volume.fromName("${name}", { createIfMissing: true }) too)`,
    { volume: name, missing: true },
  );
}

function entryOf(row: FileRow): VolumeEntry {
  return { path: row.path, type: "file", size: row.size, mode: row.mode, mtime: row.mtime, version: row.version };
}
