/**
 * `MountFolder` on the real file system: what a container may leave in its mount (links to the host's files and
 * folders, a FIFO, a folder where a file goes) is never followed, by a listing, a read, a placed file or a removal,
 * even when a folder is swapped for a link while the plane works in it.
 */
import { execFileSync } from "node:child_process";
import { constants } from "node:fs";
import { chmod, copyFile, link, lstat, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MountFolder, type MakeFile } from "./mount-folder.js";

let dir: string;
let root: string;
let host: string;
let folder: MountFolder;
/** A file of the host's, outside the mount: `victim.txt`, 0600. */
let victim: string;
/** A folder of the host's, outside the mount, empty. */
let hostDir: string;
/** A file of the plane's to place from (as the cache's are). */
let source: string;

const copied =
  (mode = 0o666): MakeFile =>
  async (path) => {
    await copyFile(source, path, constants.COPYFILE_EXCL);
    return mode;
  };
const kind = async (path: string) => {
  const st = await lstat(path).catch(() => undefined);
  return st === undefined ? "missing" : st.isSymbolicLink() ? "link" : st.isDirectory() ? "folder" : st.isFile() ? "file" : "other";
};
const hostUntouched = async () => {
  expect(await readFile(victim, "utf8")).toBe("the host's own");
  expect((await stat(victim)).mode & 0o777).toBe(0o600);
  expect(await readdir(hostDir)).toEqual([]);
};

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tandem-mount-folder-"));
  root = join(dir, "mounts", "ctr-1", "0");
  host = join(dir, "host");
  await mkdir(root, { recursive: true });
  await mkdir(host);
  victim = join(host, "victim.txt");
  hostDir = join(host, "folder");
  await writeFile(victim, "the host's own");
  await chmod(victim, 0o600);
  await mkdir(hostDir);
  source = join(dir, "cached");
  await writeFile(source, "from the volume");
  await chmod(source, 0o444);
  folder = new MountFolder(root, join(dir, "mounts", "ctr-1", ".aside"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("listing", () => {
  it("lists regular files in real folders only: a link, a linked folder and a FIFO are skipped, and the linked folder is not entered", async () => {
    await mkdir(join(root, "a/b"), { recursive: true });
    await writeFile(join(root, "a/b/c.txt"), "c");
    await writeFile(join(root, "top.txt"), "top");
    await writeFile(join(hostDir, "host.txt"), "the host's");
    await symlink(victim, join(root, "ow.txt"));
    await symlink(hostDir, join(root, "a/sub"));
    execFileSync("mkfifo", [join(root, "pipe")]);
    const files = await folder.files();
    expect([...files.keys()].sort()).toEqual(["a/b/c.txt", "top.txt"]);
    expect(files.get("top.txt")).toMatchObject({ size: 3, ino: (await stat(join(root, "top.txt"))).ino });
  });
});

describe("reading", () => {
  it("opens a regular file, and refuses a link, a file through a linked folder and a FIFO (without waiting on it)", async () => {
    await writeFile(join(root, "mine.txt"), "mine");
    const file = await folder.openFile("mine.txt");
    expect(await file.readFile("utf8")).toBe("mine");
    await file.close();
    await symlink(victim, join(root, "ow.txt"));
    await symlink(host, join(root, "sub"));
    execFileSync("mkfifo", [join(root, "pipe")]);
    await expect(folder.openFile("ow.txt")).rejects.toMatchObject({ code: "ELOOP" });
    await expect(folder.openFile("sub/victim.txt")).rejects.toMatchObject({ code: "ENOENT" });
    await expect(folder.openFile("pipe")).rejects.toMatchObject({ code: "EINVAL" });
  });
});

describe("placing a file", () => {
  it("replaces a link to the host's file at its path, never writing or chmodding through it", async () => {
    await symlink(victim, join(root, "ow.txt"));
    const st = await folder.put("ow.txt", copied(), { replaceFolder: false });
    await hostUntouched();
    expect(await kind(join(root, "ow.txt"))).toBe("file");
    expect(await readFile(join(root, "ow.txt"), "utf8")).toBe("from the volume");
    expect(st).toMatchObject({ ino: (await stat(join(root, "ow.txt"))).ino, size: 15 });
    expect(st.mode & 0o777).toBe(0o666);
  });

  it("replaces a linked folder (or a FIFO) on its path with a folder of its own, making nothing in the host's folder", async () => {
    await symlink(hostDir, join(root, "sub"));
    execFileSync("mkfifo", [join(root, "pipe")]);
    await folder.put("sub/deeper/f.txt", copied(), { replaceFolder: false });
    await folder.put("pipe/g.txt", copied(), { replaceFolder: false });
    await hostUntouched();
    expect(await kind(join(root, "sub"))).toBe("folder");
    expect((await stat(join(root, "sub/deeper"))).mode & 0o777).toBe(0o777);
    expect(await readFile(join(root, "sub/deeper/f.txt"), "utf8")).toBe("from the volume");
    expect(await readFile(join(root, "pipe/g.txt"), "utf8")).toBe("from the volume");
  });

  it("writes into the folder it opened even when that folder is swapped for a link to the host's folder as it works", async () => {
    await mkdir(join(root, "sub"));
    const racing: MakeFile = async (path) => {
      await rename(join(root, "sub"), join(root, "moved"));
      await symlink(hostDir, join(root, "sub"));
      return copied()(path);
    };
    await folder.put("sub/f.txt", racing, { replaceFolder: false });
    await hostUntouched();
    expect(await readFile(join(root, "moved/f.txt"), "utf8")).toBe("from the volume");
    expect(await kind(join(root, "sub"))).toBe("link");
  });

  it("refuses to chmod a fresh name swapped for a hard link to another of the plane's files, leaving that file's mode", async () => {
    const other = join(dir, "other-cached");
    await writeFile(other, "the cache's");
    await chmod(other, 0o444);
    const swapped: MakeFile = async (path) => {
      await link(other, path); // as a container that linked a cache file of its mount at the plane's fresh name would
      return 0o666;
    };
    await expect(folder.put("x.txt", swapped, { replaceFolder: false })).rejects.toMatchObject({ code: "EPERM" });
    expect((await stat(other)).mode & 0o777).toBe(0o444);
    expect(await readdir(root)).toEqual([]);
  });

  it("keeps a regular file where a folder goes (an error), and a folder where the file goes unless told to move it aside", async () => {
    await writeFile(join(root, "plain"), "the container's");
    await expect(folder.put("plain/f.txt", copied(), { replaceFolder: false })).rejects.toMatchObject({ code: "ENOTDIR" });
    expect(await readFile(join(root, "plain"), "utf8")).toBe("the container's");
    await mkdir(join(root, "taken"));
    await writeFile(join(root, "taken/inside.txt"), "inside");
    await expect(folder.put("taken", copied(), { replaceFolder: false })).rejects.toMatchObject({ code: "EISDIR" });
    expect((await readdir(root)).sort()).toEqual(["plain", "taken"]); // no fresh name left behind
    await folder.put("taken", copied(), { replaceFolder: true });
    expect(await readFile(join(root, "taken"), "utf8")).toBe("from the volume");
    const aside = await readdir(folder.aside);
    expect(aside).toHaveLength(1);
    expect(await readFile(join(folder.aside, aside[0]!, "inside.txt"), "utf8")).toBe("inside");
  });
});

describe("removing a file", () => {
  it("removes a link itself, and nothing through a linked folder", async () => {
    await symlink(victim, join(root, "ow.txt"));
    await symlink(host, join(root, "sub"));
    await folder.remove("ow.txt");
    await folder.remove("sub/victim.txt");
    await hostUntouched();
    expect(await readdir(root)).toEqual(["sub"]);
  });
});

describe("the mount's folder removed when its container has ended", () => {
  it("goes with the links in it, and what they point at stays (Node's rm removes a link, never its target)", async () => {
    await mkdir(join(root, "a"));
    await symlink(hostDir, join(root, "a/sub"));
    await symlink(victim, join(root, "ow.txt"));
    await writeFile(join(hostDir, "kept.txt"), "kept");
    await rm(join(dir, "mounts", "ctr-1"), { recursive: true, force: true });
    expect(await readFile(victim, "utf8")).toBe("the host's own");
    expect(await readdir(hostDir)).toEqual(["kept.txt"]);
  });
});
