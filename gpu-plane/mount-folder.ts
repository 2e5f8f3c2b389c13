/**
 * A writable mount's folder as the plane works in it (`volume-mounts.ts`):
 * listing, reading, placing and removing files in a folder that a container
 * writes at the same time, without ever following what the container made.
 *
 * The plane runs as root and the container may leave anything in its mount: a
 * link to `/etc/shadow` where a volume's file will be placed, a link to `/etc`
 * where a folder is, a FIFO where a file is read; and it may swap a folder for
 * a link between the plane's check and its use. So no path under the mount is
 * ever resolved from its root by name. Every folder is opened one name at a
 * time with `O_NOFOLLOW | O_DIRECTORY` relative to the folder above it, and
 * each operation names one entry of an opened folder through
 * `/proc/self/fd/<fd>/<name>`: the kernel goes straight to the opened folder
 * (wherever the container has moved it since, still inside the mount) and
 * looks up that single name there, as `openat(2)` and `renameat(2)` would,
 * which Node lacks. The last name is never followed either: a file is opened
 * with `O_NOFOLLOW` (and `O_NONBLOCK`, so a FIFO does not hang the plane) and
 * checked with `fstat`; a new file is made under a fresh name (a link, or a
 * copy that fails rather than write through an entry that is there) and
 * renamed over the entry, which replaces a link rather than following it. A
 * link or other special entry where a folder goes is removed (`unlink`, which
 * does not follow) and a folder made; a folder where a file goes (when the
 * caller says so) is moved out of the mount, to a folder of the plane's beside
 * it (`aside`), removed with it once the container has ended: never removed
 * name by name while a container could swap names under the removal.
 *
 * What a race can still do: make a placement fail (the fresh name swapped, a
 * folder that keeps changing), or put a file in a folder the container moved
 * elsewhere inside its mount. Never reach outside the mount: every name is
 * looked up in a folder opened inside it, and a container cannot move an entry
 * out of its bind mount (`EXDEV`), nor replace the mount's root (its mount
 * point).
 *
 * Linux only (`/proc`), as the plane's Docker driver is.
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { lstat, mkdir, open, readdir, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { RESERVED_VOLUME_NAME_PREFIX } from "../sdk/protocol.js";
import { InternalError } from "../sdk/errors.js";

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;

/** What the plane remembers of a file it placed or listed. */
export interface FileStat {
  ino: number;
  size: number;
  mtimeMs: number;
  mode: number;
}

/**
 * Makes a new file at `path` (an entry nothing holds): by `link`, or by `copyFile` with `COPYFILE_EXCL`, never a call
 * that opens an entry that is there. Returns the mode to give it, or `undefined` to leave the mode it has (the
 * cache's own inode, hard-linked).
 */
export type MakeFile = (path: string) => Promise<number | undefined>;

/**
 * A container's mount folder, worked on without following anything in it.
 * @example
 * const folder = new MountFolder("/state/volumes/mounts/ctr-1/0", "/state/volumes/mounts/ctr-1/.aside");
 * const placed = await folder.put(
 *   "models/a.bin",
 *   async (path) => {
 *     await copyFile(cached, path, constants.COPYFILE_EXCL);
 *     return 0o666;
 *   },
 *   { replaceFolder: false },
 * );
 * for (const [rel, st] of await folder.files()) console.log(rel, st.size);
 */
export class MountFolder {
  /**
   * `root`: the mount's folder, made by the plane and bound into the container (its mount point there, which the
   * container can neither remove nor replace); `aside`: a folder of the plane's on the same file system, outside the
   * mount, where a folder that stands where a file goes is moved.
   */
  constructor(
    readonly root: string,
    readonly aside: string,
  ) {}

  /** Every regular file under the root, by its path there (`a/b.txt`); links and other special entries are skipped, and a linked folder is not entered. */
  async files(): Promise<Map<string, FileStat>> {
    const found = new Map<string, FileStat>();
    const walk = async (dir: FileHandle, prefix: string): Promise<void> => {
      for (const entry of await readdir(fdPath(dir), { withFileTypes: true })) {
        const rel = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
        if (entry.isDirectory()) {
          const sub = await openFolder(dir, entry.name);
          if (!sub) continue; // no longer a folder: swapped since it was listed
          try {
            await walk(sub, rel);
          } finally {
            await sub.close();
          }
        } else if (entry.isFile()) {
          const st = await lstat(entryPath(dir, entry.name)).catch(() => undefined);
          if (st?.isFile()) found.set(rel, { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, mode: st.mode });
        }
      }
    };
    const root = await this.#openRoot();
    try {
      await walk(root, "");
    } finally {
      await root.close();
    }
    return found;
  }

  /** The regular file at `rel`, opened for reading; throws (`ENOENT`, `ELOOP`, `ENOTDIR`, …) when it is not one, or is reached through anything but folders. */
  async openFile(rel: string): Promise<FileHandle> {
    const { parts, name } = split(rel);
    const dir = await this.#folder(parts, false);
    if (!dir) throw errno("ENOENT", `no folder of the mount holds "${rel}"`);
    let file: FileHandle;
    try {
      file = await open(entryPath(dir, name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    } finally {
      await dir.close();
    }
    const regular = await file.stat().then(
      (st) => st.isFile(),
      () => false,
    );
    if (!regular) {
      await file.close();
      throw errno("EINVAL", `"${rel}" in the mount is not a regular file`);
    }
    return file;
  }

  /**
   * Puts a new file at `rel`: the folders above it are made where missing (a link or special entry in the way is
   * removed; a regular file in the way is an `ENOTDIR` error), `make` makes the file under a fresh name beside it, and
   * it is renamed over what `rel` holds (a file, a link), which a reader sees change in one step. A folder at `rel` is
   * moved aside when `replaceFolder`, else an error (`EISDIR`). Returns the placed file's stat.
   */
  async put(rel: string, make: MakeFile, options: { replaceFolder: boolean }): Promise<FileStat> {
    const { parts, name } = split(rel);
    const dir = (await this.#folder(parts, true))!;
    const temp = `${RESERVED_VOLUME_NAME_PREFIX}${randomBytes(6).toString("hex")}`;
    try {
      const mode = await make(entryPath(dir, temp));
      const placed = await this.#settle(dir, temp, mode);
      if (options.replaceFolder && (await lstat(entryPath(dir, name)).catch(() => undefined))?.isDirectory()) {
        await mkdir(this.aside, { recursive: true });
        await rename(entryPath(dir, name), join(this.aside, randomBytes(6).toString("hex")));
      }
      await rename(entryPath(dir, temp), entryPath(dir, name));
      return placed;
    } catch (err) {
      await unlink(entryPath(dir, temp)).catch(() => {});
      throw err;
    } finally {
      await dir.close();
    }
  }

  /** Removes the file (or link, or special entry) at `rel`; nothing when it is not there, is a folder, or is reached through anything but folders. */
  async remove(rel: string): Promise<void> {
    const { parts, name } = split(rel);
    const dir = await this.#folder(parts, false);
    if (!dir) return;
    try {
      await unlink(entryPath(dir, name)).catch(() => {});
    } finally {
      await dir.close();
    }
  }

  /**
   * The file `make` made: opened without following, checked to be a regular file only the plane's, then given its
   * mode. A container that swapped the fresh name for its own entry meanwhile gets an error, never a chmod of another
   * inode (a hard link to the plane's cache has a second link; a file of the container's is not root's).
   */
  async #settle(dir: FileHandle, temp: string, mode: number | undefined): Promise<FileStat> {
    const file = await open(entryPath(dir, temp), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    try {
      let st = await file.stat();
      if (!st.isFile()) throw errno("EINVAL", `"${temp}" in the mount was replaced as the plane made it`);
      if (mode !== undefined && (st.mode & 0o7777) !== mode) {
        if (st.nlink !== 1 || st.uid !== process.getuid?.()) throw errno("EPERM", `"${temp}" in the mount was replaced as the plane made it`);
        await file.chmod(mode);
        st = await file.stat();
      }
      return { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, mode: st.mode };
    } finally {
      await file.close();
    }
  }

  /** The folder at `parts` under the root, opened, each name as a folder and never through a link; made where missing when `make`; else `undefined` when it is not there or not a folder. */
  async #folder(parts: string[], make: boolean): Promise<FileHandle | undefined> {
    let dir = await this.#openRoot();
    for (const part of parts) {
      let next: FileHandle | undefined;
      try {
        next = make ? await makeFolder(dir, part) : await openFolder(dir, part);
      } finally {
        await dir.close();
      }
      if (!next) return undefined;
      dir = next;
    }
    return dir;
  }

  async #openRoot(): Promise<FileHandle> {
    const root = await open(this.root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    try {
      await procWorks(root);
    } catch (err) {
      await root.close();
      throw err;
    }
    return root;
  }
}

/** The folder `name` in `dir`, opened; `undefined` when it is missing or is not a folder (a link to one included). */
async function openFolder(dir: FileHandle, name: string): Promise<FileHandle | undefined> {
  return open(entryPath(dir, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT" || err.code === "ENOTDIR" || err.code === "ELOOP") return undefined;
    throw err;
  });
}

/** The folder `name` in `dir`, opened, made (writable by the container's user) where missing, and in place of a link or special entry there. */
async function makeFolder(dir: FileHandle, name: string): Promise<FileHandle> {
  const at = entryPath(dir, name);
  for (let attempt = 0; ; attempt++) {
    const opened = await openFolder(dir, name);
    if (opened) return opened;
    // The container races the plane here at most: a few tries, then its error.
    if (attempt === 3) throw errno("EAGAIN", `"${name}" in the mount kept changing as the plane made it a folder`);
    const there = await lstat(at).catch(() => undefined);
    if (there?.isFile()) throw errno("ENOTDIR", `"${name}" in the mount is a file where the volume has a folder`);
    if (there) await unlink(at).catch(() => {}); // a link, a FIFO, a socket: removed, never followed
    const made = await mkdir(at, 0o777).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === "EEXIST") return false;
        throw err;
      },
    );
    if (!made) continue;
    const folder = await openFolder(dir, name);
    if (!folder) continue;
    await folder.chmod(0o777);
    return folder;
  }
}

/** `/proc/self/fd/<fd>`: the opened folder itself, reached without a walk from the root. */
function fdPath(dir: FileHandle): string {
  return `/proc/self/fd/${dir.fd}`;
}

/** One entry of an opened folder, looked up there by its name alone. */
function entryPath(dir: FileHandle, name: string): string {
  return `${fdPath(dir)}/${name}`;
}

function split(rel: string): { parts: string[]; name: string } {
  const parts = rel.split("/");
  const name = parts.pop()!;
  if (name === "" || [...parts, name].some((p) => p === "" || p === "." || p === "..")) throw new InternalError(`"${rel}" is not a path inside a mount`);
  return { parts, name };
}

let procChecked: Promise<void> | undefined;

/** Once: an opened folder can be reached through `/proc/self/fd`, which every operation here relies on. */
function procWorks(dir: FileHandle): Promise<void> {
  procChecked ??= stat(fdPath(dir)).then(
    (st) => {
      if (!st.isDirectory()) throw new InternalError(`${fdPath(dir)} is not the folder opened`);
    },
    (err: Error) => {
      procChecked = undefined;
      throw new InternalError(`the plane reaches a container's mount folder through /proc/self/fd, which failed: ${err.message}`);
    },
  );
  return procChecked;
}

function errno(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}
