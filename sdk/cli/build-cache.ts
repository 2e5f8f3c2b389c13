/**
 * Builds kept between runs, in the project's `.tandem/cache/build/`: a build's
 * output files, beside every file it read (by sha256) and how it was asked for
 * (its key). A build is found again when it was asked for the same way and
 * every file it read reads the same; anything else (a file edited, moved or
 * gone, another Tandem, another install of the packages) builds anew. A file
 * whose `stat` is what it was (inode, size, modification and change times) is
 * not read again: a write changes its change time, which no tool sets back.
 * `tandem run` keeps its builds here, so a run of an app that did not change
 * bundles nothing.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** A build found again: its output files' contents by the names its build gave them, and what it noted beside them. */
export interface CachedBuild<Meta> {
  files: Record<string, Buffer>;
  meta: Meta;
}

/** The manifest's layout: one written by another layout is of no use (builds anew, and is replaced). */
const MANIFEST_FORMAT = 2;

interface Manifest {
  format?: number;
  key: string;
  /** Each file the build read, its sha256, and what `stat` said of it just before it was read. */
  inputs: [string, string, string?][];
  /** Each output file's name, and the sha256 of its contents (its name in `files/`). */
  files: Record<string, string>;
  meta: unknown;
}

export class BuildCache {
  constructor(readonly dir: string) {}

  /** The build `name` last made, if it was made with `key` and every file it read is as it was then. */
  async get<Meta>(name: string, key: unknown): Promise<CachedBuild<Meta> | undefined> {
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await readFile(this.#manifest(name), "utf8")) as Manifest;
    } catch {
      return undefined;
    }
    if (manifest.format !== MANIFEST_FORMAT || manifest.key !== sha256(JSON.stringify(key))) return undefined;
    // Reading and hashing a Worker's 250 inputs takes 0.1 s of this thread, which `tandem run` waits for; a stat does not.
    const same = await Promise.all(
      manifest.inputs.map(
        async ([file, sum, stamp]) => (stamp !== undefined && stamp === (await statStamp(file))) || sha256(await readFile(file).catch(() => "")) === sum,
      ),
    );
    if (!same.every(Boolean)) return undefined;
    try {
      const files = await Promise.all(Object.entries(manifest.files).map(async ([file, sum]) => [file, await readFile(join(this.dir, "files", sum))] as const));
      return { files: Object.fromEntries(files), meta: manifest.meta as Meta };
    } catch {
      return undefined; // removed meanwhile (another run kept a newer build of it)
    }
  }

  /** Keeps the build `name` made with `key` from `inputs`: its output `files`, by name, and `meta`. */
  async put(name: string, key: unknown, inputs: string[], files: Record<string, string | Uint8Array>, meta: unknown): Promise<void> {
    await mkdir(join(this.dir, "files"), { recursive: true });
    const previous = await readFile(this.#manifest(name), "utf8")
      .then((text) => Object.values((JSON.parse(text) as Manifest).files))
      .catch(() => [] as string[]);
    const sums: Record<string, string> = {};
    for (const [file, contents] of Object.entries(files)) {
      const sum = sha256(contents);
      sums[file] = sum;
      const path = join(this.dir, "files", sum);
      if (!existsSync(path)) await writeAtomically(path, contents);
    }
    // Stamped before it is read: a file written meanwhile is read again next time, not taken as what was read now.
    const read = await Promise.all(
      inputs.map(async (file) => {
        const stamp = await statStamp(file);
        return [file, sha256(await readFile(file)), ...(stamp === undefined ? [] : [stamp])] as [string, string, string?];
      }),
    );
    const manifest: Manifest = { format: MANIFEST_FORMAT, key: sha256(JSON.stringify(key)), inputs: read, files: sums, meta };
    await writeAtomically(this.#manifest(name), JSON.stringify(manifest));
    // The files only the build it replaces had: a run reading that one meanwhile builds anew.
    const kept = new Set(Object.values(sums));
    await Promise.all(previous.filter((sum) => !kept.has(sum)).map((sum) => rm(join(this.dir, "files", sum), { force: true })));
  }

  #manifest(name: string): string {
    return join(this.dir, `${sha256(name).slice(0, 32)}.json`);
  }
}

/**
 * What says the packages a build may read are as they were: npm rewrites
 * `node_modules/.package-lock.json` on every install, in `roots` (the
 * project, and Tandem's own folder). Part of a build's key.
 */
export function packagesStamp(roots: string[]): string[] {
  return roots.map((root) => {
    const lock = join(root, "node_modules", ".package-lock.json");
    try {
      const { mtimeMs, size } = statSync(lock);
      return `${lock}@${mtimeMs}:${size}`;
    } catch {
      return `${lock}: none`;
    }
  });
}

/** What `stat` says of a file that changes when it is written: its inode, size, and modification and change times. */
async function statStamp(file: string): Promise<string | undefined> {
  const found = await stat(file, { bigint: true }).catch(() => undefined);
  return found && `${found.dev}:${found.ino}:${found.size}:${found.mtimeNs}:${found.ctimeNs}`;
}

function sha256(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Written beside, then renamed into place: a run reading it meanwhile sees the whole file or none. */
async function writeAtomically(path: string, contents: string | Uint8Array): Promise<void> {
  const temp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  await writeFile(temp, contents);
  await rename(temp, path);
}
