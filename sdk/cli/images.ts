/**
 * Reads the local files an `Image` names (addLocalFile, addLocalDir) into its
 * build spec, which travels to the plane by content hash: the plane needs
 * nothing from this machine's disk to build it.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, posix, relative, resolve } from "node:path";
import { InvalidOptionsError } from "../errors.js";
import type { Image } from "../image.js";
import type { ImageBuildSpec, ResolvedImageStep } from "../protocol.js";

/** The most bytes of local files one image may carry. */
const MAX_LOCAL_BYTES = 256 * 1024 * 1024;

export interface ResolvedImage {
  spec: ImageBuildSpec;
  json: string;
  hash: string;
}

export function resolveImage(image: Image, where: string): ResolvedImage {
  let bytes = 0;
  const read = (file: string) => {
    const content = readFileSync(file);
    bytes += content.length;
    if (bytes > MAX_LOCAL_BYTES) throw new InvalidOptionsError(`${where}: the image's local files are over ${MAX_LOCAL_BYTES / 1024 / 1024} MiB`);
    return { content: content.toString("base64"), mode: statSync(file).mode & 0o777 };
  };
  const steps: ResolvedImageStep[] = image.steps.map((step): ResolvedImageStep => {
    if (step.kind === "file") {
      const src = resolve(step.src);
      if (!exists(src, "file")) throw new InvalidOptionsError(`${where}: Image.addLocalFile("${step.src}") — no such file (${src})`);
      return { kind: "files", dst: posix.dirname(step.dst), files: [{ path: posix.basename(step.dst), ...read(src) }] };
    }
    if (step.kind === "dir") {
      const src = resolve(step.src);
      if (!exists(src, "dir")) throw new InvalidOptionsError(`${where}: Image.addLocalDir("${step.src}") — no such folder (${src})`);
      const files = walk(src, step.ignore).map((file) => ({ path: relative(src, file).split("\\\\").join("/"), ...read(file) }));
      return { kind: "files", dst: step.dst, files };
    }
    return step;
  });
  if (steps[0]?.kind !== "node" && steps[0]?.kind !== "registry") steps.unshift({ kind: "node", version: null });
  const spec: ImageBuildSpec = { steps, force: image.rebuild };
  const json = JSON.stringify(spec);
  return { spec, json, hash: createHash("sha256").update(json).digest("hex") };
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
