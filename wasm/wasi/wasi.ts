/**
 * WASI preview1 for Tandem's host: the file-system calls (`fd_*`, `path_*`) are Tandem's own, over
 * the in-memory tree of tree.ts, and behave as POSIX and Node's node:wasi do (append mode, rights,
 * flags, times, symlinks, hard links, renames); every other call (arguments, environment, clocks,
 * random, poll_oneoff, proc_exit) is @bjorn3/browser_wasi_shim's.
 */
import { WASI as ShimWASI } from "@bjorn3/browser_wasi_shim";
import { ADVICE_MAX, ERRNO, FDFLAGS, FILETYPE, FSTFLAGS, LOOKUP_SYMLINK_FOLLOW, OFLAGS, RIGHTS, WHENCE, WRITE_RIGHTS, type Errno } from "./constants.js";
import { ConsoleStdout, type Fd, OpenDirectory, OpenFile, PreopenDirectory } from "./fds.js";
import { Directory, File, type Inode, type LastComponent, type Location, Symlink, now, resolve } from "./tree.js";

/** What `start` needs of an instance. */
export interface WasiInstance {
  exports: { memory: WebAssembly.Memory; _start: () => unknown };
}

/**
 * One module's WASI: `args` (argv), `env` (`KEY=value` strings), and its descriptors (`fds[0..2]`
 * are stdin, stdout, stderr; preopened directories follow). Give `wasiImport` as the module's
 * `wasi_snapshot_preview1` imports, then call `start`.
 *
 * @example
 * const wasi = new WASI(["tool"], [], [new OpenFile(new File(stdin)), new ConsoleStdout(onOut), new ConsoleStdout(onErr), new PreopenDirectory("/", new Map())]);
 * const instance = new WebAssembly.Instance(module, { wasi_snapshot_preview1: wasi.wasiImport });
 * const exitCode = wasi.start(instance as WasiInstance);
 */
export class WASI {
  readonly wasiImport: Record<string, (...args: any[]) => unknown>;
  private readonly shim: ShimWASI;

  constructor(
    args: string[],
    env: string[],
    readonly fds: (Fd | undefined)[],
    options: { debug?: boolean } = {},
  ) {
    // The shim logs every call unless told not to.
    this.shim = new ShimWASI(args, env, [], { debug: options.debug ?? false });
    this.wasiImport = { ...this.shim.wasiImport, ...fileSystem(fds, () => this.shim.inst.exports.memory) };
  }

  /** Runs `_start`; the exit code (0 when it returns, the code given to proc_exit otherwise). */
  start(instance: WasiInstance): number {
    return this.shim.start(instance);
  }
}

/** Bit `bits` of `rights` all set. */
const has = (rights: bigint, bits: bigint) => (rights & bits) === bits;
/** The rights that change a file's bytes. */
const CHANGE_RIGHTS = RIGHTS.FD_WRITE | RIGHTS.FD_ALLOCATE | RIGHTS.FD_FILESTAT_SET_SIZE;
/** The directory a location's entry is in. */
const parentOf = (at: Location): Directory => at.stack.at(-1)!;
const utf8 = new TextDecoder();
const encoder = new TextEncoder();

function fileSystem(fds: (Fd | undefined)[], memory: () => WebAssembly.Memory) {
  const view = () => new DataView(memory().buffer);
  const bytes = () => new Uint8Array(memory().buffer);
  const str = (ptr: number, len: number) => utf8.decode(bytes().subarray(ptr, ptr + len));

  /** The descriptor `fd`, if it is open and has `rights`; an errno otherwise. */
  const fdWith = (fd: number, rights = 0n): Fd | Errno => {
    const entry = fds[fd];
    if (!entry) return ERRNO.BADF;
    if (!has(entry.rightsBase, rights)) {
      // No descriptor on a read-only file is open for writing: a write through one is EBADF, as POSIX says.
      return entry.inode.readonly && (rights & CHANGE_RIGHTS) !== 0n ? ERRNO.BADF : ERRNO.NOTCAPABLE;
    }
    return entry;
  };
  const dirFd = (fd: number): OpenDirectory | Errno => {
    const entry = fds[fd];
    if (!entry) return ERRNO.BADF;
    return entry instanceof OpenDirectory ? entry : ERRNO.NOTDIR;
  };
  const lookup = (fd: number, path: string, last: LastComponent): Location | Errno => {
    const dir = dirFd(fd);
    return typeof dir === "number" ? dir : resolve(dir.dir, path, last);
  };
  const lastOf = (lookupflags: number): LastComponent => ((lookupflags & LOOKUP_SYMLINK_FOLLOW) !== 0 ? "follow" : "nofollow");
  const insert = (entry: Fd): number => {
    const free = fds.findIndex((e) => e === undefined);
    if (free >= 0) {
      fds[free] = entry;
      return free;
    }
    return fds.push(entry) - 1;
  };
  const iovecs = (ptr: number, count: number): { buf: number; len: number }[] => {
    const v = view();
    return Array.from({ length: count }, (_, i) => ({ buf: v.getUint32(ptr + 8 * i, true), len: v.getUint32(ptr + 8 * i + 4, true) }));
  };
  const gather = (ptr: number, count: number): Uint8Array => {
    const parts = iovecs(ptr, count);
    const out = new Uint8Array(parts.reduce((n, p) => n + p.len, 0));
    const mem = bytes();
    let at = 0;
    for (const p of parts) {
      out.set(mem.subarray(p.buf, p.buf + p.len), at);
      at += p.len;
    }
    return out;
  };
  const scatter = (ptr: number, count: number, read: (max: number) => Uint8Array): number => {
    let total = 0;
    for (const p of iovecs(ptr, count)) {
      const chunk = read(p.len);
      bytes().set(chunk, p.buf);
      total += chunk.length;
      if (chunk.length < p.len) break;
    }
    return total;
  };
  const writeFilestat = (ptr: number, inode: Inode) => {
    const v = view();
    v.setBigUint64(ptr, 0n, true);
    v.setBigUint64(ptr + 8, inode.ino, true);
    v.setUint8(ptr + 16, inode.filetype);
    v.setBigUint64(ptr + 24, linkCount(inode), true);
    v.setBigUint64(ptr + 32, inode.size, true);
    v.setBigUint64(ptr + 40, inode.atim, true);
    v.setBigUint64(ptr + 48, inode.mtim, true);
    v.setBigUint64(ptr + 56, inode.ctim, true);
  };

  return {
    fd_advise(fd: number, _offset: bigint, _len: bigint, advice: number): number {
      const entry = fdWith(fd, RIGHTS.FD_ADVISE);
      if (typeof entry === "number") return entry;
      return advice > ADVICE_MAX ? ERRNO.INVAL : ERRNO.SUCCESS;
    },
    fd_allocate(fd: number, offset: bigint, len: bigint): number {
      const entry = fdWith(fd, RIGHTS.FD_ALLOCATE);
      if (typeof entry === "number") return entry;
      if (!(entry instanceof OpenFile)) return ERRNO.BADF;
      if (offset + len > entry.file.size) entry.file.resize(offset + len);
      return ERRNO.SUCCESS;
    },
    fd_close(fd: number): number {
      if (!fds[fd]) return ERRNO.BADF;
      fds[fd] = undefined;
      return ERRNO.SUCCESS;
    },
    fd_datasync(fd: number): number {
      const entry = fdWith(fd, RIGHTS.FD_DATASYNC);
      return typeof entry === "number" ? entry : ERRNO.SUCCESS;
    },
    fd_sync(fd: number): number {
      const entry = fdWith(fd, RIGHTS.FD_SYNC);
      return typeof entry === "number" ? entry : ERRNO.SUCCESS;
    },
    fd_fdstat_get(fd: number, ptr: number): number {
      const entry = fdWith(fd);
      if (typeof entry === "number") return entry;
      const v = view();
      v.setUint8(ptr, entry.inode.filetype);
      v.setUint16(ptr + 2, entry.flags, true);
      v.setBigUint64(ptr + 8, entry.rightsBase, true);
      v.setBigUint64(ptr + 16, entry.rightsInheriting, true);
      return ERRNO.SUCCESS;
    },
    fd_fdstat_set_flags(fd: number, flags: number): number {
      const entry = fdWith(fd, RIGHTS.FD_FDSTAT_SET_FLAGS);
      if (typeof entry === "number") return entry;
      if ((flags & ~FDFLAGS.ALL) !== 0) return ERRNO.INVAL;
      entry.flags = flags;
      return ERRNO.SUCCESS;
    },
    fd_fdstat_set_rights(fd: number, base: bigint, inheriting: bigint): number {
      const entry = fdWith(fd);
      if (typeof entry === "number") return entry;
      // Rights can only be dropped.
      if (!has(entry.rightsBase, base) || !has(entry.rightsInheriting, inheriting)) return ERRNO.NOTCAPABLE;
      entry.rightsBase = base;
      entry.rightsInheriting = inheriting;
      return ERRNO.SUCCESS;
    },
    fd_filestat_get(fd: number, ptr: number): number {
      const entry = fdWith(fd, RIGHTS.FD_FILESTAT_GET);
      if (typeof entry === "number") return entry;
      writeFilestat(ptr, entry.inode);
      return ERRNO.SUCCESS;
    },
    fd_filestat_set_size(fd: number, size: bigint): number {
      const entry = fdWith(fd, RIGHTS.FD_FILESTAT_SET_SIZE);
      if (typeof entry === "number") return entry;
      if (!(entry instanceof OpenFile)) return ERRNO.BADF;
      entry.file.resize(size);
      return ERRNO.SUCCESS;
    },
    fd_filestat_set_times(fd: number, atim: bigint, mtim: bigint, flags: number): number {
      const entry = fdWith(fd, RIGHTS.FD_FILESTAT_SET_TIMES);
      if (typeof entry === "number") return entry;
      return setTimes(entry.inode, atim, mtim, flags);
    },
    fd_pread(fd: number, iovs: number, count: number, offset: bigint, nreadPtr: number): number {
      const entry = fdWith(fd, RIGHTS.FD_READ);
      if (typeof entry === "number") return entry;
      if (!(entry instanceof OpenFile)) return entry instanceof ConsoleStdout ? ERRNO.SPIPE : ERRNO.BADF;
      let at = offset;
      const n = scatter(iovs, count, (max) => {
        const chunk = entry.file.read(at, max);
        at += BigInt(chunk.length);
        return chunk;
      });
      view().setUint32(nreadPtr, n, true);
      return ERRNO.SUCCESS;
    },
    fd_read(fd: number, iovs: number, count: number, nreadPtr: number): number {
      const entry = fdWith(fd, RIGHTS.FD_READ);
      if (typeof entry === "number") return entry;
      if (!(entry instanceof OpenFile)) return ERRNO.BADF;
      const n = scatter(iovs, count, (max) => {
        const chunk = entry.file.read(entry.position, max);
        entry.position += BigInt(chunk.length);
        return chunk;
      });
      view().setUint32(nreadPtr, n, true);
      return ERRNO.SUCCESS;
    },
    fd_pwrite(fd: number, iovs: number, count: number, offset: bigint, nwrittenPtr: number): number {
      const entry = fdWith(fd, RIGHTS.FD_WRITE);
      if (typeof entry === "number") return entry;
      if (!(entry instanceof OpenFile)) return entry instanceof ConsoleStdout ? ERRNO.SPIPE : ERRNO.BADF;
      const data = gather(iovs, count);
      // As on Linux: an append-mode descriptor writes at the end, whatever the offset.
      entry.file.write((entry.flags & FDFLAGS.APPEND) !== 0 ? entry.file.size : offset, data);
      view().setUint32(nwrittenPtr, data.length, true);
      return ERRNO.SUCCESS;
    },
    fd_write(fd: number, iovs: number, count: number, nwrittenPtr: number): number {
      const entry = fdWith(fd, RIGHTS.FD_WRITE);
      if (typeof entry === "number") return entry;
      const data = gather(iovs, count);
      if (entry instanceof ConsoleStdout) entry.write(data);
      else if (entry instanceof OpenFile) {
        if ((entry.flags & FDFLAGS.APPEND) !== 0) entry.position = entry.file.size;
        entry.file.write(entry.position, data);
        entry.position += BigInt(data.length);
      } else return ERRNO.BADF;
      view().setUint32(nwrittenPtr, data.length, true);
      return ERRNO.SUCCESS;
    },
    fd_prestat_get(fd: number, ptr: number): number {
      const entry = fds[fd];
      if (!(entry instanceof PreopenDirectory)) return ERRNO.BADF;
      const v = view();
      v.setUint32(ptr, 0, true);
      v.setUint32(ptr + 4, encoder.encode(entry.name).length, true);
      return ERRNO.SUCCESS;
    },
    fd_prestat_dir_name(fd: number, ptr: number, len: number): number {
      const entry = fds[fd];
      if (!(entry instanceof PreopenDirectory)) return ERRNO.BADF;
      const name = encoder.encode(entry.name);
      bytes().set(name.subarray(0, len), ptr);
      return name.length > len ? ERRNO.NAMETOOLONG : ERRNO.SUCCESS;
    },
    fd_readdir(fd: number, buf: number, bufLen: number, cookie: bigint, bufusedPtr: number): number {
      const entry = fdWith(fd, RIGHTS.FD_READDIR);
      if (typeof entry === "number") return entry;
      if (!(entry instanceof OpenDirectory)) return ERRNO.NOTDIR;
      const entries: [string, Inode][] = [[".", entry.dir], ["..", entry.parent], ...entry.dir.contents];
      const out = new Uint8Array(bufLen);
      let used = 0;
      for (let i = Number(cookie); i < entries.length && used < bufLen; i++) {
        const [name, inode] = entries[i]!;
        const nameBytes = encoder.encode(name);
        const record = new Uint8Array(24 + nameBytes.length);
        const r = new DataView(record.buffer);
        r.setBigUint64(0, BigInt(i + 1), true);
        r.setBigUint64(8, inode.ino, true);
        r.setUint32(16, nameBytes.length, true);
        r.setUint8(20, inode.filetype);
        record.set(nameBytes, 24);
        // A record that does not fit is cut off, and the buffer reported full: the caller reads again with a bigger one.
        const n = Math.min(record.length, bufLen - used);
        out.set(record.subarray(0, n), used);
        used += n;
      }
      bytes().set(out.subarray(0, used), buf);
      view().setUint32(bufusedPtr, used, true);
      return ERRNO.SUCCESS;
    },
    fd_renumber(fd: number, to: number): number {
      const entry = fds[fd];
      if (!entry || !fds[to]) return ERRNO.BADF;
      fds[to] = entry;
      if (fd !== to) fds[fd] = undefined;
      return ERRNO.SUCCESS;
    },
    fd_seek(fd: number, offset: bigint, whence: number, newOffsetPtr: number): number {
      const entry = fds[fd];
      if (entry instanceof ConsoleStdout) return ERRNO.SPIPE;
      const file = fdWith(fd, RIGHTS.FD_SEEK);
      if (typeof file === "number") return file;
      if (!(file instanceof OpenFile)) return ERRNO.BADF;
      const base = whence === WHENCE.SET ? 0n : whence === WHENCE.CUR ? file.position : whence === WHENCE.END ? file.file.size : undefined;
      if (base === undefined || base + offset < 0n) return ERRNO.INVAL;
      file.position = base + offset;
      view().setBigUint64(newOffsetPtr, file.position, true);
      return ERRNO.SUCCESS;
    },
    fd_tell(fd: number, ptr: number): number {
      const entry = fdWith(fd, RIGHTS.FD_TELL);
      if (typeof entry === "number") return entry;
      if (!(entry instanceof OpenFile)) return ERRNO.BADF;
      view().setBigUint64(ptr, entry.position, true);
      return ERRNO.SUCCESS;
    },

    path_create_directory(fd: number, pathPtr: number, pathLen: number): number {
      const at = lookup(fd, str(pathPtr, pathLen), "entry");
      if (typeof at === "number") return at;
      if (at.name === undefined || at.inode) return ERRNO.EXIST;
      if (parentOf(at).readonly) return ERRNO.ROFS;
      parentOf(at).link(at.name, new Directory());
      return ERRNO.SUCCESS;
    },
    path_filestat_get(fd: number, flags: number, pathPtr: number, pathLen: number, ptr: number): number {
      const at = lookup(fd, str(pathPtr, pathLen), lastOf(flags));
      if (typeof at === "number") return at;
      if (!at.inode) return ERRNO.NOENT;
      writeFilestat(ptr, at.inode);
      return ERRNO.SUCCESS;
    },
    path_filestat_set_times(fd: number, flags: number, pathPtr: number, pathLen: number, atim: bigint, mtim: bigint, fstFlags: number): number {
      const at = lookup(fd, str(pathPtr, pathLen), lastOf(flags));
      if (typeof at === "number") return at;
      if (!at.inode) return ERRNO.NOENT;
      return setTimes(at.inode, atim, mtim, fstFlags);
    },
    path_link(oldFd: number, oldFlags: number, oldPtr: number, oldLen: number, newFd: number, newPtr: number, newLen: number): number {
      const from = lookup(oldFd, str(oldPtr, oldLen), (oldFlags & LOOKUP_SYMLINK_FOLLOW) !== 0 ? "follow" : "entry");
      if (typeof from === "number") return from;
      if (!from.inode) return ERRNO.NOENT;
      if (from.inode instanceof Directory) return ERRNO.PERM;
      const to = lookup(newFd, str(newPtr, newLen), "entry");
      if (typeof to === "number") return to;
      if (to.name === undefined || to.inode) return ERRNO.EXIST;
      if (to.slash) return ERRNO.NOENT;
      // Into a read-only directory, or out of one (its file's link count would change).
      if (parentOf(to).readonly || parentOf(from).readonly) return ERRNO.ROFS;
      parentOf(to).link(to.name, from.inode);
      return ERRNO.SUCCESS;
    },
    path_open(
      fd: number,
      dirflags: number,
      pathPtr: number,
      pathLen: number,
      oflags: number,
      rightsBase: bigint,
      rightsInheriting: bigint,
      fdflags: number,
      openedPtr: number,
    ): number {
      const dir = dirFd(fd);
      if (typeof dir === "number") return dir;
      const at = resolve(dir.dir, str(pathPtr, pathLen), lastOf(dirflags));
      if (typeof at === "number") return at;
      let inode = at.inode;
      if (!inode) {
        if ((oflags & OFLAGS.CREAT) === 0) return ERRNO.NOENT;
        if ((oflags & OFLAGS.DIRECTORY) !== 0) return ERRNO.INVAL;
        if (at.slash) return ERRNO.ISDIR;
        if (parentOf(at).readonly) return ERRNO.ROFS;
        inode = new File(new Uint8Array());
        parentOf(at).link(at.name!, inode);
      } else {
        if ((oflags & OFLAGS.CREAT) !== 0 && (oflags & OFLAGS.EXCL) !== 0) return ERRNO.EXIST;
        // O_NOFOLLOW on a symlink: ELOOP, or ENOTDIR when a directory was asked for (as Linux answers).
        if (inode instanceof Symlink) return (oflags & OFLAGS.DIRECTORY) !== 0 ? ERRNO.NOTDIR : ERRNO.LOOP;
        if ((oflags & OFLAGS.DIRECTORY) !== 0 && !(inode instanceof Directory)) return ERRNO.NOTDIR;
      }
      const writing = (rightsBase & WRITE_RIGHTS) !== 0n;
      const inheriting = rightsInheriting & dir.rightsInheriting;
      let opened: Fd;
      if (inode instanceof Directory) {
        if (writing || (oflags & OFLAGS.TRUNC) !== 0) return ERRNO.ISDIR;
        const parent = at.name === undefined ? (at.stack.at(-2) ?? inode) : at.stack.at(-1)!;
        opened = new OpenDirectory(inode, parent, rightsBase, inheriting);
      } else if (inode instanceof File) {
        if (inode.readonly && (writing || (oflags & OFLAGS.TRUNC) !== 0)) return ERRNO.ROFS;
        if ((oflags & OFLAGS.TRUNC) !== 0) inode.resize(0n);
        opened = new OpenFile(inode, { flags: fdflags & FDFLAGS.ALL, rights: rightsBase });
      } else return ERRNO.NOTSUP;
      view().setUint32(openedPtr, insert(opened), true);
      return ERRNO.SUCCESS;
    },
    path_readlink(fd: number, pathPtr: number, pathLen: number, buf: number, bufLen: number, nreadPtr: number): number {
      const at = lookup(fd, str(pathPtr, pathLen), "entry");
      if (typeof at === "number") return at;
      if (!at.inode) return ERRNO.NOENT;
      if (!(at.inode instanceof Symlink)) return ERRNO.INVAL;
      // As POSIX readlink: a buffer too small gets the start of the target.
      const target = encoder.encode(at.inode.target).subarray(0, bufLen);
      bytes().set(target, buf);
      view().setUint32(nreadPtr, target.length, true);
      return ERRNO.SUCCESS;
    },
    path_remove_directory(fd: number, pathPtr: number, pathLen: number): number {
      const at = lookup(fd, str(pathPtr, pathLen), "entry");
      if (typeof at === "number") return at;
      if (at.name === undefined) return ERRNO.INVAL;
      if (parentOf(at).readonly) return ERRNO.ROFS;
      if (!at.inode) return ERRNO.NOENT;
      if (!(at.inode instanceof Directory)) return ERRNO.NOTDIR;
      if (at.inode.contents.size > 0) return ERRNO.NOTEMPTY;
      parentOf(at).unlink(at.name);
      return ERRNO.SUCCESS;
    },
    path_rename(fd: number, oldPtr: number, oldLen: number, newFd: number, newPtr: number, newLen: number): number {
      const from = lookup(fd, str(oldPtr, oldLen), "entry");
      if (typeof from === "number") return from;
      if (from.name === undefined) return ERRNO.INVAL;
      if (parentOf(from).readonly) return ERRNO.ROFS;
      if (!from.inode) return ERRNO.NOENT;
      const to = lookup(newFd, str(newPtr, newLen), "entry");
      if (typeof to === "number") return to;
      if (to.name === undefined) return ERRNO.INVAL;
      if (parentOf(to).readonly) return ERRNO.ROFS;
      const moving = from.inode;
      const isDir = moving instanceof Directory;
      if (to.slash && !isDir) return ERRNO.NOTDIR;
      if (isDir && moving.holds(to.stack.at(-1)!)) return ERRNO.INVAL;
      if (to.inode === moving) return ERRNO.SUCCESS;
      if (to.inode) {
        if (isDir && !(to.inode instanceof Directory)) return ERRNO.NOTDIR;
        if (!isDir && to.inode instanceof Directory) return ERRNO.ISDIR;
        if (to.inode instanceof Directory && to.inode.contents.size > 0) return ERRNO.NOTEMPTY;
      }
      parentOf(to).link(to.name, moving);
      parentOf(from).unlink(from.name);
      return ERRNO.SUCCESS;
    },
    path_symlink(targetPtr: number, targetLen: number, fd: number, pathPtr: number, pathLen: number): number {
      const at = lookup(fd, str(pathPtr, pathLen), "entry");
      if (typeof at === "number") return at;
      if (at.name === undefined || at.inode) return ERRNO.EXIST;
      if (at.slash) return ERRNO.NOENT;
      if (parentOf(at).readonly) return ERRNO.ROFS;
      parentOf(at).link(at.name, new Symlink(str(targetPtr, targetLen)));
      return ERRNO.SUCCESS;
    },
    path_unlink_file(fd: number, pathPtr: number, pathLen: number): number {
      const at = lookup(fd, str(pathPtr, pathLen), "entry");
      if (typeof at === "number") return at;
      if (at.name === undefined) return ERRNO.ISDIR;
      if (parentOf(at).readonly) return ERRNO.ROFS;
      if (!at.inode) return ERRNO.NOENT;
      if (at.inode instanceof Directory) return ERRNO.ISDIR;
      parentOf(at).unlink(at.name);
      return ERRNO.SUCCESS;
    },
  };
}

/** Sets an inode's access and modification times as `flags` say; EINVAL for a time both given and asked to be now. */
function setTimes(inode: Inode, atim: bigint, mtim: bigint, flags: number): Errno {
  if ((flags & ~FSTFLAGS.ALL) !== 0) return ERRNO.INVAL;
  if ((flags & FSTFLAGS.ATIM) !== 0 && (flags & FSTFLAGS.ATIM_NOW) !== 0) return ERRNO.INVAL;
  if ((flags & FSTFLAGS.MTIM) !== 0 && (flags & FSTFLAGS.MTIM_NOW) !== 0) return ERRNO.INVAL;
  if (inode.readonly) return ERRNO.ROFS;
  const t = now();
  if ((flags & FSTFLAGS.ATIM) !== 0) inode.atim = atim;
  if ((flags & FSTFLAGS.ATIM_NOW) !== 0) inode.atim = t;
  if ((flags & FSTFLAGS.MTIM) !== 0) inode.mtim = mtim;
  if ((flags & FSTFLAGS.MTIM_NOW) !== 0) inode.mtim = t;
  inode.ctim = t;
  return ERRNO.SUCCESS;
}

/** A directory counts itself, its entry in its parent and each subdirectory's `..`; anything else, its entries. */
function linkCount(inode: Inode): bigint {
  if (!(inode instanceof Directory)) return inode.nlink;
  let subdirectories = 0n;
  for (const child of inode.contents.values()) if (child.filetype === FILETYPE.DIRECTORY) subdirectories++;
  return 2n + subdirectories;
}
