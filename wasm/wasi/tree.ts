/**
 * The in-memory file tree: files, directories and symlinks (inodes with a link count and
 * times), and path resolution as POSIX does it inside a WASI sandbox: every symlink on the way
 * is followed, the last one only when asked or when the path ends in a slash, `..` never climbs
 * above the directory the path starts from (ENOTCAPABLE), nor does an absolute path or symlink.
 */
import { ERRNO, FILETYPE, type Errno, type Filetype } from "./constants.js";

/** Nanoseconds since the epoch, from the runtime's clock. */
export const now = (): bigint => BigInt(Date.now()) * 1_000_000n;

let nextIno = 1n;

export abstract class Inode {
  readonly ino = nextIno++;
  /** Part of a read-only file system: what would change it fails with EROFS (a file's bytes, a directory's entries, times). */
  readonly readonly: boolean;
  /** How many directory entries name this inode. */
  nlink = 0n;
  atim = now();
  mtim = this.atim;
  ctim = this.atim;
  abstract readonly filetype: Filetype;
  abstract get size(): bigint;
  constructor(options?: { readonly?: boolean }) {
    this.readonly = !!options?.readonly;
  }
  /** The status change time moves on any change; the modification time too when `modified`. */
  touch(modified: boolean): void {
    this.ctim = now();
    if (modified) this.mtim = this.ctim;
  }
}

/**
 * A regular file. `readonly` refuses opens for writing and truncating (EROFS); a descriptor on it
 * never has write rights, so its bytes are never written.
 */
export class File extends Inode {
  readonly filetype = FILETYPE.REGULAR_FILE;
  private bytes: Uint8Array;
  private length: number;

  constructor(data: ArrayBuffer | ArrayLike<number>, options?: { readonly?: boolean }) {
    super(options);
    // A copy, so the caller's buffer stays as it was whatever the module writes; a read-only
    // file is never written, so it reads the caller's bytes themselves.
    if (this.readonly && data instanceof Uint8Array) this.bytes = data;
    else this.bytes = data instanceof ArrayBuffer ? new Uint8Array(data.slice(0)) : Uint8Array.from(data);
    this.length = this.bytes.length;
  }

  get size(): bigint {
    return BigInt(this.length);
  }
  /** The file's bytes (a view: copy to keep). */
  get data(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }

  read(offset: bigint, max: number): Uint8Array {
    const start = Math.min(Number(offset), this.length);
    return this.bytes.subarray(start, Math.min(start + max, this.length));
  }

  write(offset: bigint, data: Uint8Array): void {
    const at = Number(offset);
    this.reserve(at + data.length);
    this.bytes.set(data, at);
    this.length = Math.max(this.length, at + data.length);
    this.touch(true);
  }

  resize(size: bigint): void {
    const n = Number(size);
    this.reserve(n);
    // Bytes past the old end read as zeros, even those a shrink left behind.
    if (n > this.length) this.bytes.fill(0, this.length, n);
    this.length = n;
    this.touch(true);
  }

  private reserve(n: number): void {
    if (n <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(n, this.bytes.length * 2));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }
}

/** A directory's entries: a Map that keeps its inodes' link counts as entries come and go. */
export class Entries extends Map<string, Inode> {
  override set(name: string, inode: Inode): this {
    const old = this.get(name);
    if (old) old.nlink--;
    inode.nlink++;
    return super.set(name, inode);
  }
  override delete(name: string): boolean {
    const old = this.get(name);
    if (old) old.nlink--;
    return super.delete(name);
  }
}

/** A directory. `readonly` refuses any change to its entries (create, mkdir, unlink, rmdir, rename, link, symlink) with EROFS. */
export class Directory extends Inode {
  readonly filetype = FILETYPE.DIRECTORY;
  readonly contents: Map<string, Inode> = new Entries();

  constructor(contents: Map<string, Inode> | [string, Inode][] = [], options?: { readonly?: boolean }) {
    super(options);
    for (const [name, inode] of contents) this.contents.set(name, inode);
  }

  get size(): bigint {
    return 0n;
  }

  /** Adds or replaces the entry `name`. */
  link(name: string, inode: Inode): void {
    this.contents.set(name, inode);
    inode.touch(false);
    this.touch(true);
  }

  unlink(name: string): void {
    const old = this.contents.get(name);
    if (!old) return;
    this.contents.delete(name);
    old.touch(false);
    this.touch(true);
  }

  /** Whether `inode` is this directory or lies anywhere below it. */
  holds(inode: Inode): boolean {
    if (inode === this) return true;
    for (const child of this.contents.values()) if (child instanceof Directory && child.holds(inode)) return true;
    return false;
  }
}

export class Symlink extends Inode {
  readonly filetype = FILETYPE.SYMBOLIC_LINK;
  constructor(readonly target: string) {
    super();
  }
  get size(): bigint {
    return BigInt(new TextEncoder().encode(this.target).length);
  }
}

/**
 * Where a path leads: the directories walked from the start (`stack`, the last holds the entry),
 * the entry's `name` (undefined when the path names that directory itself: `.`, `..`, `d/.`), the
 * `inode` there (undefined when there is none yet), and whether the path ended in a slash.
 */
export interface Location {
  stack: Directory[];
  name: string | undefined;
  inode: Inode | undefined;
  slash: boolean;
}

/**
 * How the last component is treated: `follow` (a symlink there is followed), `nofollow` (followed
 * only when the path ends in a slash, as POSIX does), `entry` (never followed: the entry itself is
 * what is unlinked, renamed or linked; a trailing slash on anything but a directory is ENOTDIR).
 */
export type LastComponent = "follow" | "nofollow" | "entry";

/** Symlinks followed in one resolution before it fails with ELOOP (Linux's MAXSYMLINKS). */
const MAX_SYMLINKS = 40;

/** Resolves `path` from the directory `start`; an errno when it cannot. */
export function resolve(start: Directory, path: string, last: LastComponent): Location | Errno {
  return walk([start], path, last, { links: 0 });
}

function walk(from: Directory[], path: string, last: LastComponent, budget: { links: number }): Location | Errno {
  if (path === "") return ERRNO.NOENT;
  if (path.startsWith("/")) return ERRNO.NOTCAPABLE;
  if (path.includes("\0")) return ERRNO.INVAL;
  const slash = path.endsWith("/");
  const parts = path.split("/").filter((p) => p !== "");
  let stack = from.slice();
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const final = i === parts.length - 1;
    if (part === ".") {
      if (final) return { stack, name: undefined, inode: stack.at(-1), slash };
      continue;
    }
    if (part === "..") {
      if (stack.length === 1) return ERRNO.NOTCAPABLE;
      stack.pop();
      if (final) return { stack, name: undefined, inode: stack.at(-1), slash };
      continue;
    }
    const dir = stack.at(-1)!;
    const inode = dir.contents.get(part);
    if (final) {
      if (inode instanceof Symlink && (last === "follow" || (last === "nofollow" && slash))) {
        if (++budget.links > MAX_SYMLINKS) return ERRNO.LOOP;
        return walk(stack, inode.target + (slash ? "/" : ""), "follow", budget);
      }
      if (slash && inode && !(inode instanceof Directory)) return ERRNO.NOTDIR;
      return { stack, name: part, inode, slash };
    }
    if (inode === undefined) return ERRNO.NOENT;
    if (inode instanceof Symlink) {
      if (++budget.links > MAX_SYMLINKS) return ERRNO.LOOP;
      const target = walk(stack, inode.target + "/", "follow", budget);
      if (typeof target === "number") return target;
      if (target.inode === undefined) return ERRNO.NOENT;
      stack = target.name === undefined ? target.stack : [...target.stack, target.inode as Directory];
      continue;
    }
    if (!(inode instanceof Directory)) return ERRNO.NOTDIR;
    stack.push(inode);
  }
  // Only slashes, or nothing but "." and "..": the start itself.
  return { stack, name: undefined, inode: stack.at(-1), slash };
}
