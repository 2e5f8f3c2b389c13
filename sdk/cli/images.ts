/**
 * Reads the local files an `Image` names (addLocalFile, addLocalDir) into its
 * build spec, which travels to the plane by content hash: the plane needs
 * nothing from this machine's disk to build it.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, posix, relative, resolve } from "node:path";
import { DEPLOY_LIMITS } from "../defaults.js";
import { InvalidOptionsError } from "../errors.js";
import type { Image } from "../image.js";
import type { ImageBuildSpec, ResolvedImageStep } from "../protocol.js";

const MiB = 1024 * 1024;

/**
 * The most bytes of local files one image may carry: its spec travels as one file of JSON (the gateway's blob store,
 * a deployment's artifact: `DEPLOY_LIMITS.maxFileBytes`), its files in base64 (4 characters for 3 bytes), with 1 MiB
 * for the rest of the spec.
 */
export const MAX_LOCAL_BYTES = Math.floor(((DEPLOY_LIMITS.maxFileBytes - MiB) * 3) / 4 / MiB) * MiB;

export interface ResolvedImage {
  spec: ImageBuildSpec;
  json: string;
  hash: string;
  /** The local files (`addLocalFile`) and folders (`addLocalDir`) it read: `tandem serve` watches them. */
  localPaths: string[];
}

/**
 * What an image's failure to resolve (a local file missing, or too large) asks `tandem serve` to watch: every file and
 * folder the image copies in, so that putting the file there, or making it smaller, reloads the app (it watched only
 * the last version that loaded, which did not copy that file).
 */
export interface ImageFilesProblem {
  watchPaths?: string[];
}

export function resolveImage(image: Image, where: string): ResolvedImage {
  try {
    return resolveImageFiles(image, where);
  } catch (err) {
    const watchPaths = image.steps.flatMap((step) => (step.kind === "file" || step.kind === "dir" ? [resolve(step.src)] : []));
    throw Object.assign(err as Error, { watchPaths } satisfies ImageFilesProblem);
  }
}

function resolveImageFiles(image: Image, where: string): ResolvedImage {
  let bytes = 0;
  const read = (file: string) => {
    const content = readFileSync(file);
    bytes += content.length;
    if (bytes > MAX_LOCAL_BYTES) throw tooMuch(where, `over ${MAX_LOCAL_BYTES / MiB} MiB`);
    return { content: content.toString("base64"), mode: readableMode(statSync(file).mode) };
  };
  const localPaths: string[] = [];
  const steps: ResolvedImageStep[] = image.steps.map((step): ResolvedImageStep => {
    if (step.kind === "file") {
      const src = resolve(step.src);
      localPaths.push(src);
      if (!exists(src, "file")) throw new InvalidOptionsError(`${where}: Image.addLocalFile("${step.src}") — no such file (${src})`);
      return { kind: "files", dst: posix.dirname(step.dst), files: [{ path: posix.basename(step.dst), ...read(src) }] };
    }
    if (step.kind === "dir") {
      const src = resolve(step.src);
      localPaths.push(src);
      if (!exists(src, "dir")) throw new InvalidOptionsError(`${where}: Image.addLocalDir("${step.src}") — no such folder (${src})`);
      const files = walk(src, step.ignore).map((file) => ({ path: relative(src, file).split("\\\\").join("/"), ...read(file) }));
      return { kind: "files", dst: step.dst, files };
    }
    return step;
  });
  if (steps[0]?.kind !== "node" && steps[0]?.kind !== "registry") steps.unshift({ kind: "node", version: null });
  const spec: ImageBuildSpec = { steps, force: image.rebuild };
  const json = JSON.stringify(spec);
  if (json.length > DEPLOY_LIMITS.maxFileBytes)
    throw tooMuch(where, `${(json.length / MiB).toFixed(1)} MiB as a spec, over ${DEPLOY_LIMITS.maxFileBytes / MiB} MiB`);
  return { spec, json, hash: createHash("sha256").update(json).digest("hex"), localPaths };
}

/**
 * A copied file's mode in the image: its own, readable by all, and executable by all where its owner may run it. A
 * function runs as `nobody`, so a file kept private here (0600) would be one it cannot read there.
 * @example readableMode(0o100600); // 0o644
 */
function readableMode(mode: number): number {
  return (mode & 0o777) | 0o444 | (mode & 0o100 ? 0o111 : 0);
}

/** An image whose local files are more than its spec can carry, and what to do instead. */
function tooMuch(where: string, what: string): InvalidOptionsError {
  return new InvalidOptionsError(
    `${where}: the image's local files are ${what}, more than an image carries; put large files such as model weights in a Volume and mount it (docs/volumes.md)`,
  );
}

function exists(path: string, kind: "file" | "dir"): boolean {
  try {
    const s = statSync(path);
    return kind === "file" ? s.isFile() : s.isDirectory();
  } catch {
    return false;
  }
}

function walk(dir: string, ignore: string[]): string[] {
  const skip = (name: string) => ignore.some((p) => (p.startsWith("*.") ? name.endsWith(p.slice(1)) : name === p));
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (skip(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(path, ignore));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}
