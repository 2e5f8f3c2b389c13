/**
 * The directories a WebAssembly function bundles (`app.wasm(name, { files })`):
 * the one blob they ship in (inside the Worker as a data module, inside the
 * plane bundle as bytes), and the read-only directory a module sees at each
 * guest path. A call gets its own directory tree over the same bytes: a file's
 * bytes are never copied, and never written, so no call changes what the next
 * one reads.
 *
 * Read-only as POSIX says a read-only mount is (wasi/ keeps the rules): an open
 * for writing or truncating, a create, unlink, rename, link, symlink, mkdir,
 * rmdir or a change of times under it fails with EROFS; a write or resize
 * through a file descriptor opened for reading fails with EBADF.
 *
 * The blob is a small format of its own rather than a tar: it is read in
 * workerd at every isolate's start, with no streams, and its index is one
 * JSON.parse.
 */
import { Directory, File, PreopenDirectory } from "./wasi/index.js";

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
export function readOnlyPreopen(guestPath: string, dir: BundledDirectory): PreopenDirectory {
  const preopen = new PreopenDirectory(guestPath, [], { readonly: true });
  const root = preopen.dir;
  const folder = (path: string): Directory => {
    let at = root;
    for (const part of path.split("/")) {
      const found = at.contents.get(part);
      const next = found instanceof Directory ? found : new Directory([], { readonly: true });
      if (next !== found) at.contents.set(part, next);
      at = next;
    }
    return at;
  };
  for (const path of dir.dirs) folder(path);
  for (const [path, bytes] of Object.entries(dir.files)) {
    const slash = path.lastIndexOf("/");
    const parent = slash < 0 ? root : folder(path.slice(0, slash));
    // A read-only file reads the bundled bytes themselves, and nothing writes them.
    parent.contents.set(path.slice(slash + 1), new File(bytes, { readonly: true }));
  }
  return preopen;
}
