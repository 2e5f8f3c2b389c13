/**
 * Memory snapshots on the plane's disk (docs/plane.md, "Memory snapshots"): a
 * container of a `snapshot: true` function saved once its runner has loaded
 * the bundle and run `enter()`, for later cold starts to resume. One folder
 * per snapshot under `<stateDir>/snapshots`, named by the snapshot's key: the
 * pool's key (app, function, bundle, class parameters, the whole spec), the
 * image the container ran and the values of its secrets, hashed. Counted and
 * capped in number and bytes (the least recently used go first), and removed
 * with their app's containers (`tandem app stop`).
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** What a {@link SnapshotStore} keeps. */
export interface SnapshotStoreOptions {
  /** The folder of the snapshots (made if missing). */
  dir: string;
  /** Most snapshots kept (`--snapshot-max`). */
  maxCount: number;
  /** Most bytes of snapshots kept (`--snapshot-max-bytes`). */
  maxBytes: number;
  log: (line: string) => void;
}

/** One snapshot as the store tracks it (also its `meta.json`). */
interface SnapshotEntry {
  app: string;
  bytes: number;
  /** Last taken or used, for the least-recently-used order. */
  usedAt: number;
}

const META = "meta.json";

/**
 * The plane's memory snapshots, by key.
 * @example
 * const key = SnapshotStore.keyOf(poolKey(req), image, req.secrets);
 * const dir = store.find(key) ?? (await store.take(key, req.app, (dir) => driver.checkpoint!(container, dir)));
 */
export class SnapshotStore {
  readonly #o: SnapshotStoreOptions;
  readonly #entries = new Map<string, SnapshotEntry>();

  constructor(options: SnapshotStoreOptions) {
    this.#o = options;
    mkdirSync(options.dir, { recursive: true });
    // What a previous run of this plane kept; a folder half written (no meta.json) is removed.
    for (const name of readdirSync(options.dir)) {
      const folder = join(options.dir, name);
      try {
        const entry = JSON.parse(readFileSync(join(folder, META), "utf8")) as SnapshotEntry;
        if (/^[0-9a-f]{64}$/.test(name) && typeof entry.app === "string" && typeof entry.bytes === "number") this.#entries.set(name, entry);
        else rmSync(folder, { recursive: true, force: true });
      } catch {
        rmSync(folder, { recursive: true, force: true });
      }
    }
  }

  /**
   * A snapshot's key: its pool's key, the image its container ran (a changed image makes another snapshot even
   * under the same spec), and its secrets' values (a snapshot's memory holds them).
   */
  static keyOf(poolKey: string, image: string | undefined, secrets: Record<string, string> | undefined): string {
    const sortedSecrets = Object.entries(secrets ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return createHash("sha256")
      .update(JSON.stringify([poolKey, image ?? null, sortedSecrets]))
      .digest("hex");
  }

  /** The folder of the snapshot under `key`, if there is one (marked used now). */
  find(key: string): string | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    entry.usedAt = Date.now();
    return join(this.#o.dir, key);
  }

  /**
   * Takes a snapshot: `save` writes it into a new folder, which becomes the one under `key` once it is complete;
   * then the oldest go until the caps hold. Returns its folder.
   */
  async take(key: string, app: string, save: (dir: string) => Promise<void>): Promise<string> {
    const partial = join(this.#o.dir, `${key}.${randomBytes(4).toString("hex")}.partial`);
    try {
      await save(partial);
      const entry: SnapshotEntry = { app, bytes: await folderBytes(partial), usedAt: Date.now() };
      await writeFile(join(partial, META), JSON.stringify(entry));
      const final = join(this.#o.dir, key);
      await rm(final, { recursive: true, force: true });
      await rename(partial, final);
      this.#entries.set(key, entry);
    } catch (err) {
      await rm(partial, { recursive: true, force: true });
      throw err;
    }
    await this.#trim(key);
    return join(this.#o.dir, key);
  }

  /** Drops the snapshot under `key` (one that could not be restored). */
  async remove(key: string): Promise<void> {
    this.#entries.delete(key);
    await rm(join(this.#o.dir, key), { recursive: true, force: true });
  }

  /** Drops every snapshot of `app` (`tandem app stop`); returns how many. */
  async removeApp(app: string): Promise<number> {
    const keys = [...this.#entries].filter(([, e]) => e.app === app).map(([key]) => key);
    await Promise.all(keys.map((key) => this.remove(key)));
    return keys.length;
  }

  /** How many snapshots are kept, and their bytes. */
  summary(): { count: number; bytes: number } {
    let bytes = 0;
    for (const e of this.#entries.values()) bytes += e.bytes;
    return { count: this.#entries.size, bytes };
  }

  /** Removes the least recently used snapshots (never `keep`, the one just taken) until the caps hold. */
  async #trim(keep: string): Promise<void> {
    const byAge = [...this.#entries].filter(([key]) => key !== keep).sort(([, a], [, b]) => a.usedAt - b.usedAt);
    for (const [key, entry] of byAge) {
      const { count, bytes } = this.summary();
      if (count <= this.#o.maxCount && bytes <= this.#o.maxBytes) break;
      await this.remove(key);
      this.#o.log(
        `[plane] removed the memory snapshot ${key.slice(0, 12)} of app ${entry.app} (${count} kept, ${bytes} bytes; caps ${this.#o.maxCount}, ${this.#o.maxBytes})`,
      );
    }
  }
}

/** The bytes of the files in a folder, at every depth. */
async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}
