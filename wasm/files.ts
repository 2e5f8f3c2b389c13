/**
 * The directories a WebAssembly function bundles (`app.wasm(name, { files })`):
 * the one blob they ship in (inside the Worker as a data module, inside the
 * plane bundle as bytes), and the read-only directory a module sees at each
 * guest path. A call gets its own directory tree over the same bytes: a file's
 * bytes are never copied, and never written, so no call changes what the next
 * one reads.
 *
 * Read-only as POSIX says a read-only mount is: an open for writing or
 * truncating, a create, unlink, rename, link, symlink, mkdir, rmdir or a change
 * of times under it fails with EROFS; a write or resize through a file
 * descriptor opened for reading fails with EBADF.
 *
 * The blob is a small format of its own rather than a tar: it is read in
 * workerd at every isolate's start, with no streams, and its index is one
 * JSON.parse.
 */
import { Directory, File, OpenDirectory, OpenFile, wasi, type Fd, type Inode } from "@bjorn3/browser_wasi_shim";

/** One bundled directory: its subdirectories (empty ones too) and its files' bytes, by path inside it (`sub/a.txt`). */
export interface BundledDirectory {
  dirs: string[];
  files: Record<string, Uint8Array>;
}

/** A function's bundled directories, by guest path (`/data`). */
export type BundledFiles = Record<string, BundledDirectory>;

/** What the blob's index says of one directory: its subdirectories, and each file as [path, offset, length] in the data. */
interface PackedIndex {
  format: 1;
  dirs: Record<string, { dirs: string[]; files: [string, number, number][] }>;
}

/** One blob for `files`: a 4-byte little-endian index length, the index as JSON, then every file's bytes. */
export function packFiles(files: BundledFiles): Uint8Array<ArrayBuffer> {
  const index: PackedIndex = { format: 1, dirs: {} };
  let offset = 0;
  const chunks: Uint8Array[] = [];
  for (const [guest, dir] of Object.entries(files)) {
    const entries: [string, number, number][] = [];
    for (const [path, bytes] of Object.entries(dir.files)) {
      entries.push([path, offset, bytes.length]);
      chunks.push(bytes);
      offset += bytes.length;
    }
    index.dirs[guest] = { dirs: dir.dirs, files: entries };
  }
  const head = new TextEncoder().encode(JSON.stringify(index));
  const out = new Uint8Array(4 + head.length + offset);
  new DataView(out.buffer).setUint32(0, head.length, true);
  out.set(head, 4);
  let at = 4 + head.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** The directories in a blob `packFiles` made; each file a view of the blob's bytes, not a copy. */
export function unpackFiles(blob: ArrayBuffer | Uint8Array): BundledFiles {
  const bytes = blob instanceof Uint8Array ? blob : new Uint8Array(blob);
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
  const index = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + length))) as PackedIndex;
  if (index.format !== 1) throw new Error(`bundled files in format ${String(index.format)}, which this host cannot read; bundle the app again`);
  const data = 4 + length;
  const out: BundledFiles = {};
  for (const [guest, dir] of Object.entries(index.dirs)) {
    out[guest] = {
      dirs: dir.dirs,
      files: Object.fromEntries(dir.files.map(([path, offset, size]) => [path, bytes.subarray(data + offset, data + offset + size)])),
    };
  }
  return out;
}

/** `dir`, preopened read-only at `guestPath`: a fresh tree for one call, over the bundled bytes. */
export function readOnlyPreopen(guestPath: string, dir: BundledDirectory): Fd {
  type Tree = Map<string, Tree | Uint8Array>;
  const root: Tree = new Map();
  const folder = (parts: string[]): Tree => {
    let at = root;
    for (const part of parts) {
      let next = at.get(part);
      if (!(next instanceof Map)) at.set(part, (next = new Map()));
      at = next;
    }
    return at;
  };
  for (const path of dir.dirs) folder(path.split("/"));
  for (const [path, bytes] of Object.entries(dir.files)) {
    const parts = path.split("/");
    folder(parts.slice(0, -1)).set(parts[parts.length - 1]!, bytes);
  }
  // Children first: a Directory learns its children's parent (`..`) when it is made.
  const inodes = (tree: Tree): Map<string, Inode> =>
    new Map([...tree].map(([name, node]) => [name, node instanceof Map ? new ReadOnlyDirectory(inodes(node)) : new ReadOnlyFile(node)]));
  return new ReadOnlyPreopen(guestPath, new ReadOnlyDirectory(inodes(root)));
}

/** A file whose bytes no one writes: an open that could change it fails with EROFS. */
class ReadOnlyFile extends File {
  constructor(bytes: Uint8Array) {
    super(new ArrayBuffer(0), { readonly: true });
    this.data = bytes; // the bundled bytes themselves: File's constructor would copy them
  }

  override path_open(oflags: number, fs_rights_base: bigint) {
    if ((fs_rights_base & BigInt(wasi.RIGHTS_FD_WRITE)) !== 0n || (oflags & wasi.OFLAGS_TRUNC) !== 0) {
      return { ret: wasi.ERRNO_ROFS, fd_obj: null as unknown as OpenFile };
    }
    return { ret: wasi.ERRNO_SUCCESS, fd_obj: new ReadOnlyOpenFile(this) };
  }
}

/** A file opened for reading: writing or resizing through it fails with EBADF, as for any descriptor not open for writing. */
class ReadOnlyOpenFile extends OpenFile {
  override fd_write() {
    return { ret: wasi.ERRNO_BADF, nwritten: 0 };
  }
  override fd_pwrite() {
    return { ret: wasi.ERRNO_BADF, nwritten: 0 };
  }
  override fd_filestat_set_size() {
    return wasi.ERRNO_BADF;
  }
  override fd_allocate() {
    return wasi.ERRNO_BADF;
  }
  override fd_filestat_set_times() {
    return wasi.ERRNO_ROFS;
  }
}

class ReadOnlyDirectory extends Directory {
  override path_open() {
    return { ret: wasi.ERRNO_SUCCESS, fd_obj: new ReadOnlyOpenDirectory(this) };
  }
}

/** A descriptor of a read-only directory: whatever would create, remove, rename or change an entry fails with EROFS. */
class ReadOnlyOpenDirectory extends OpenDirectory {
  override path_open(dirflags: number, path: string, oflags: number, fs_rights_base: bigint, fs_rights_inheriting: bigint, fd_flags: number) {
    const opened = super.path_open(dirflags, path, oflags & ~wasi.OFLAGS_CREAT, fs_rights_base, fs_rights_inheriting, fd_flags);
    // Creating what is not there, in a directory that is: EROFS (with CREAT masked, the shim says ENOENT).
    if (opened.ret === wasi.ERRNO_NOENT && (oflags & wasi.OFLAGS_CREAT) !== 0) {
      const parent = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "." : ".";
      if (this.path_lookup(parent, 0).inode_obj instanceof Directory) return { ret: wasi.ERRNO_ROFS, fd_obj: null };
    }
    return opened;
  }
  override path_create_directory() {
    return wasi.ERRNO_ROFS;
  }
  override path_link() {
    return wasi.ERRNO_ROFS;
  }
  override path_unlink() {
    return { ret: wasi.ERRNO_ROFS, inode_obj: null };
  }
  override path_unlink_file() {
    return wasi.ERRNO_ROFS;
  }
  override path_remove_directory() {
    return wasi.ERRNO_ROFS;
  }
  override path_rename() {
    return wasi.ERRNO_ROFS;
  }
  override path_filestat_set_times() {
    return wasi.ERRNO_ROFS;
  }
  override fd_filestat_set_times() {
    return wasi.ERRNO_ROFS;
  }
  /** Not in every version of the shim's `Fd`; refused here whichever version runs. */
  path_symlink() {
    return wasi.ERRNO_ROFS;
  }
}

/** The read-only directory a module finds at its guest path (`fd_prestat_get` names it). */
class ReadOnlyPreopen extends ReadOnlyOpenDirectory {
  constructor(
    readonly prestatName: string,
    dir: ReadOnlyDirectory,
  ) {
    super(dir);
  }
  override fd_prestat_get() {
    return { ret: wasi.ERRNO_SUCCESS, prestat: wasi.Prestat.dir(this.prestatName) };
  }
}
