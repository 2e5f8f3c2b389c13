/**
 * The base image every function container starts from, built on this host
 * with no registry: the host's own Node binary and exactly the shared
 * libraries it links, a `nobody` user, and the folders the plane mounts into.
 * The tag is a hash of those files, so the image is built once per Node
 * install and found again on every later start (through a second tag, of
 * what `stat` says of them, while they are unchanged; and a third, of what it
 * says of Node and the loader's cache alone, which finds the image whose
 * label lists the libraries without asking `ldd`). Node is execute-only for the
 * container's user, which keeps the runner out of reach of ptrace (see
 * {@link NODE_MODE}).
 */

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, realpath, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import type Docker from "dockerode";
import { InternalError } from "../sdk/errors.js";
import { IMAGE_LABELS, IMAGE_REPOSITORIES } from "../sdk/protocol.js";

/** The repository every base image is tagged in: `tandem-node:<hash>`. */
export const BASE_IMAGE_REPO = IMAGE_REPOSITORIES.base;

/** Where Node sits inside the image. */
export const NODE_IN_IMAGE = "/usr/local/bin/node";

/**
 * Bumped when the layout below changes (files, users, folders), so a new
 * layout gets a new tag even when Node and its libraries have not changed.
 */
const LAYOUT_VERSION = "5";

/**
 * Node's mode in the image: executable by anyone, readable by root only. The
 * kernel marks a process whose program its user cannot read as not dumpable,
 * and a process that is not dumpable cannot be ptraced, have its memory read
 * through /proc/<pid>/mem or process_vm_readv, or its /proc files opened, by
 * another process of the same user without CAP_SYS_PTRACE. So what a function
 * spawns cannot reach into the runner.
 */
const NODE_MODE = 0o711;

/** One file of the image: its content on the host, its absolute path in the image. */
interface RootfsFile {
  hostPath: string;
  imagePath: string;
}

/** Builds in flight, per engine address, so concurrent callers share one build even with their own clients. */
const building = new Map<string, Promise<string>>();

/**
 * Returns the tag of the base Node image, building and importing it first
 * when the engine does not have it yet.
 * @example
 * const image = await ensureBaseImage(new Docker(), { log: console.log });
 * // "tandem-node:3f0c9a1b2d4e5f60"
 */
export function ensureBaseImage(docker: Docker, options: { log?: (line: string) => void } = {}): Promise<string> {
  const engine = engineKey(docker);
  const inFlight = building.get(engine);
  if (inFlight) return inFlight;
  const ensured = ensure(docker, options.log ?? (() => {})).finally(() => building.delete(engine));
  building.set(engine, ensured);
  return ensured;
}

/** Where a client dials: docker-modem keeps it on the instance, though its typings do not show it. */
function engineKey(docker: Docker): string {
  const modem = docker.modem as unknown as { socketPath?: string; protocol?: string; host?: string; port?: string | number };
  return modem.socketPath ?? `${modem.protocol ?? "http"}://${modem.host}:${modem.port}`;
}

async function ensure(docker: Docker, log: (line: string) => void): Promise<string> {
  // `ldd` takes a quarter of a second: the image made for this Node and this loader cache says which libraries it has.
  const hostAlias = `host-${await hostKey()}`;
  const listed = await listedFiles(docker, `${BASE_IMAGE_REPO}:${hostAlias}`);
  if (listed) {
    const tag = await contentTagOf(docker, `${BASE_IMAGE_REPO}:files-${await statKey(listed.files)}`);
    if (tag === listed.tag) return tag;
  }
  const files = await nodeFiles();
  // Hashing Node's 100 MB takes most of a second of every plane start (`tandem run` waits for it). The same files
  // (path, size, modification time, inode) as at an earlier start name the image through a second tag instead.
  const alias = `files-${await statKey(files)}`;
  const known = await contentTagOf(docker, `${BASE_IMAGE_REPO}:${alias}`);
  if (known) return known;
  const tag = `${BASE_IMAGE_REPO}:${await contentHash(files)}`;
  if (!(await imageExists(docker, tag))) await build(docker, files, tag, log);
  await docker.getImage(tag).tag({ repo: BASE_IMAGE_REPO, tag: alias });
  await docker.getImage(tag).tag({ repo: BASE_IMAGE_REPO, tag: hostAlias });
  return tag;
}

/**
 * First 16 hex chars of a sha256 over what `stat` says of Node and of the loader's cache (which `ldconfig` rewrites
 * whenever libraries are installed or removed), and the library path: while they are unchanged, `ldd` lists the same
 * libraries.
 */
async function hostKey(): Promise<string> {
  const hash = createHash("sha256").update(`tandem-node layout ${LAYOUT_VERSION}\n${process.env.LD_LIBRARY_PATH ?? ""}\n`);
  for (const path of [await realpath(process.execPath), "/etc/ld.so.cache"]) {
    const found = await stat(path).catch(() => undefined);
    hash.update(`${path} ${found ? `${found.dev} ${found.ino} ${found.size} ${found.mtimeMs} ${found.ctimeMs}` : "none"}\n`);
  }
  return hash.digest("hex").slice(0, 16);
}

/** The files of the base image `alias` names, as its label lists them (undefined: none, or unlabelled), and its content tag. */
async function listedFiles(docker: Docker, alias: string): Promise<{ files: RootfsFile[]; tag: string } | undefined> {
  try {
    const image = await docker.getImage(alias).inspect();
    const labels = image.Config?.Labels ?? {};
    const libraries = labels[IMAGE_LABELS.baseLibraries];
    const tag = image.RepoTags?.find((t) => new RegExp(`^${BASE_IMAGE_REPO}:[0-9a-f]{16}$`).test(t));
    if (labels[IMAGE_LABELS.madeBy] !== "base" || !libraries || !tag) return undefined;
    const files: RootfsFile[] = [{ hostPath: await realpath(process.execPath), imagePath: NODE_IN_IMAGE }];
    for (const path of libraries.split(",")) files.push({ hostPath: await realpath(path), imagePath: path });
    return { files, tag };
  } catch {
    return undefined; // not there, or a library gone: `ldd` says what there is now
  }
}

async function build(docker: Docker, files: RootfsFile[], tag: string, log: (line: string) => void): Promise<void> {
  const started = performance.now();
  const rootfs = await mkdtemp(join(tmpdir(), "tandem-rootfs-"));
  try {
    await layOut(rootfs, files);
    await importRootfs(docker, rootfs, tag, files);
  } finally {
    await rm(rootfs, { recursive: true, force: true });
  }
  log(`built base image ${tag} from ${files[0].hostPath} and ${files.length - 1} libraries in ${Math.round(performance.now() - started)} ms`);
}

/**
 * glibc libraries Node itself does not link but native addons commonly do
 * (onnxruntime-node needs librt); taken from the host when it has them.
 */
const ADDON_LIBRARIES = ["/lib/x86_64-linux-gnu/librt.so.1", "/lib/aarch64-linux-gnu/librt.so.1"];

/** The Node binary first, then every library `ldd` lists for it (the dynamic loader included), then the addon libraries. */
async function nodeFiles(): Promise<RootfsFile[]> {
  const node = await realpath(process.execPath);
  const libraries = parseLdd(await run("ldd", [node]));
  for (const extra of ADDON_LIBRARIES) if (existsSync(extra)) libraries.push(extra);
  const files: RootfsFile[] = [{ hostPath: node, imagePath: NODE_IN_IMAGE }];
  for (const path of libraries) files.push({ hostPath: await realpath(path), imagePath: path });
  return files;
}

/**
 * The absolute paths in `ldd` output, as the loader will look them up:
 * `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and
 * `/lib64/ld-linux-x86-64.so.2 (0x…)`. The vDSO has no file and is skipped.
 */
function parseLdd(output: string): string[] {
  const paths = new Set<string>();
  for (const line of output.split("\n")) {
    const match = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (match) paths.add(match[1]);
    else if (/=>\s*not found/.test(line)) throw new InternalError(`Node needs a library the host does not have: ${line.trim()}`);
  }
  if (paths.size === 0) throw new InternalError(`ldd listed no libraries for ${process.execPath}; a statically linked Node is not supported yet`);
  return [...paths].sort();
}

/** First 16 hex chars of a sha256 over every file's paths and what `stat` says of it: a file replaced or rewritten changes it. */
async function statKey(files: RootfsFile[]): Promise<string> {
  const hash = createHash("sha256").update(`tandem-node layout ${LAYOUT_VERSION}\n`);
  for (const file of files) {
    const { dev, ino, size, mtimeMs, ctimeMs } = await stat(file.hostPath);
    hash.update(`${file.imagePath} ${file.hostPath} ${dev} ${ino} ${size} ${mtimeMs} ${ctimeMs}\n`);
  }
  return hash.digest("hex").slice(0, 16);
}

/** The content tag of the base image `alias` names, if the engine has one (a tag made by `ensure`, on an image labelled as the base). */
async function contentTagOf(docker: Docker, alias: string): Promise<string | undefined> {
  try {
    const image = await docker.getImage(alias).inspect();
    if (image.Config?.Labels?.[IMAGE_LABELS.madeBy] !== "base") return undefined;
    return image.RepoTags?.find((t) => new RegExp(`^${BASE_IMAGE_REPO}:[0-9a-f]{16}$`).test(t));
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return undefined;
    throw err;
  }
}

/** First 16 hex chars of a sha256 over every file's image path and content. */
async function contentHash(files: RootfsFile[]): Promise<string> {
  const hash = createHash("sha256").update(`tandem-node layout ${LAYOUT_VERSION}\n`);
  for (const file of files) {
    hash.update(`${file.imagePath}\n`);
    for await (const chunk of createReadStream(file.hostPath)) hash.update(chunk as Buffer);
  }
  return hash.digest("hex").slice(0, 16);
}

async function imageExists(docker: Docker, tag: string): Promise<boolean> {
  try {
    await docker.getImage(tag).inspect();
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false;
    throw err;
  }
}

/** Writes the image's whole filesystem under `rootfs`. */
async function layOut(rootfs: string, files: RootfsFile[]): Promise<void> {
  for (const file of files) {
    if (!isAbsolute(file.imagePath)) throw new InternalError(`not an absolute library path: ${file.imagePath}`);
    const target = join(rootfs, file.imagePath);
    await mkdir(dirname(target), { recursive: true });
    // copyFile reads through symlinks, so the image holds real files at the paths ldd printed.
    await copyFile(file.hostPath, target);
    // Libraries must stay readable: the dynamic loader maps them as the container's user.
    await chmod(target, file.imagePath === NODE_IN_IMAGE ? NODE_MODE : 0o755);
  }
  await mkdir(join(rootfs, "etc"), { recursive: true });
  await writeFile(join(rootfs, "etc/passwd"), "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n");
  await writeFile(join(rootfs, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
  for (const folder of ["tmp", "tandem/app", "tandem/control"]) await mkdir(join(rootfs, folder), { recursive: true });
  await chmod(join(rootfs, "tmp"), 0o1777);
}

/** Streams `rootfs` as a tar into the engine and tags the result. */
async function importRootfs(docker: Docker, rootfs: string, tag: string, files: RootfsFile[]): Promise<void> {
  const [repo, version] = tag.split(":");
  // Owned by root whoever builds it; sorted so the same files make the same layer.
  const tar = spawn("tar", ["--create", "--numeric-owner", "--owner=0", "--group=0", "--sort=name", "-C", rootfs, "."], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let tarErrors = "";
  tar.stderr.setEncoding("utf8").on("data", (text: string) => (tarErrors += text));
  const tarExit = new Promise<number | null>((resolve, reject) => {
    tar.on("error", reject);
    tar.on("close", resolve);
  });

  try {
    // Labelled, so that a plane can tell its own images apart even when one is named by id.
    const libraries = files.slice(1).map((f) => f.imagePath);
    // The libraries listed for the next start's lookup (`listedFiles`), unless a path would need quoting.
    const listing = libraries.every((path) => /^[\w./+-]+$/.test(path)) ? [`LABEL ${IMAGE_LABELS.baseLibraries}=${libraries.join(",")}`] : [];
    const progress = await docker.importImage(tar.stdout, { repo, tag: version, changes: [`LABEL ${IMAGE_LABELS.madeBy}=base`, ...listing] });
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(progress, (err) => (err ? reject(err) : resolve()));
    });
  } catch (err) {
    tar.kill();
    throw new InternalError(`could not import the base image ${tag}: ${(err as Error).message}`);
  }
  const code = await tarExit;
  if (code !== 0) {
    // The engine took whatever tar wrote before it failed; that image must not keep the tag.
    await docker
      .getImage(tag)
      .remove({ force: true })
      .catch(() => {});
    throw new InternalError(`tar failed (exit ${code}) packing the base image: ${tarErrors.trim()}`);
  }
}

/** Runs a command without a shell and returns its stdout. */
function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    child.on("error", (err) => reject(new InternalError(`could not run ${command}: ${err.message}`)));
    child.on("close", (code) => {
      if (code === 0) resolve(stdout);
      else reject(new InternalError(`${command} ${args.join(" ")} failed (exit ${code}): ${stderr.trim()}`));
    });
  });
}
