/**
 * A plane bundle's runtime, loaded from V8's code cache. A bundle that `tandem run` and `tandem serve` build joins
 * the runner and the SDK (the runtime: 650 KB, the same for every app of one Tandem) with the app's own module, and
 * says so on its first line (`PLANE_RUNTIME_MARKER`). Each cold container parsed all of it: 40 ms on this machine's
 * cores under runc, 85 ms under gVisor, of a start of about 0.4 s of Node. Here such a bundle is kept on disk as two
 * files: `runtime.js` (the runtime's lines, shared by every bundle that carries the same ones) and `bundle.mjs`, the
 * app's module with the runtime's lines left blank and a first line that compiles `runtime.js` with the code cache
 * beside it (`runtime.cache`), when there is one and V8 takes it (27 ms under gVisor). Every line and column stays
 * where the joined bundle had it, so the bundle's source map still maps a stack.
 *
 * The code cache is made once per runtime, by a child Node with no flags of its own (as a container's `node
 * bundle.mjs` runs), in the background and at low priority: the container that is starting does not wait for it.
 * A Node of another version, or other flags, rejects it and compiles the runtime as before.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { setPriority } from "node:os";
import { join } from "node:path";
import { PLANE_RUNTIME_CODE_KEY, PLANE_RUNTIME_MARKER } from "../sdk/protocol.js";

/** What the first line of a split bundle puts the runtime in, and how it ends: its lines keep their numbers. */
const SOURCE_HEAD = '(function (require) {"use strict";\n';
const SOURCE_TAIL = "\nreturn __tandemPlaneRuntime;\n})";

/** A joined plane bundle as two files' texts (`splitPlaneBundle`). */
export interface SplitBundle {
  /** The app's module, the runtime's lines blank, with a first line that loads the runtime. */
  bundle: string;
  /** The runtime's lines, as the joined bundle had them. */
  runtime: string;
}

/** A joined plane bundle, split (see the file's comment); undefined for one that is not joined (a deployed app's). */
export function splitPlaneBundle(text: string): SplitBundle | undefined {
  const firstEnd = text.indexOf("\n");
  const first = firstEnd < 0 ? text : text.slice(0, firstEnd);
  const at = first.indexOf(PLANE_RUNTIME_MARKER);
  if (at < 0) return undefined;
  const lines = Number(first.slice(at + PLANE_RUNTIME_MARKER.length));
  if (!Number.isInteger(lines) || lines < 1) return undefined;
  let end = firstEnd;
  for (let i = 0; i < lines && end >= 0; i++) end = text.indexOf("\n", end + 1);
  if (end < 0) return undefined;
  const runtime = text.slice(firstEnd + 1, end);
  return { bundle: `${LOADER}${"\n".repeat(lines)}${text.slice(end)}`, runtime };
}

/**
 * The split bundle's first line: `require` for the runtime's Node built-ins (as the joined bundle's banner gave it),
 * then the runtime, compiled from `runtime.js` beside the bundle with `runtime.cache` when V8 takes it.
 */
const LOADER = [
  'import { createRequire as __tandemRequire } from "node:module";',
  'import { readFileSync as __tandemRead } from "node:fs";',
  'import { Script as __tandemScript } from "node:vm";',
  "const require = __tandemRequire(import.meta.url);",
  "const __tandemPlaneRuntime = (() => {",
  `const source = ${JSON.stringify(SOURCE_HEAD)} + __tandemRead(new URL("./runtime.js", import.meta.url), "utf8") + ${JSON.stringify(SOURCE_TAIL)};`,
  'let cachedData; try { cachedData = __tandemRead(new URL("./runtime.cache", import.meta.url)); } catch {}',
  "const script = new __tandemScript(source, { filename: import.meta.url, ...(cachedData?.length ? { cachedData } : {}) });",
  `globalThis[Symbol.for(${JSON.stringify(PLANE_RUNTIME_CODE_KEY)})] = cachedData?.length && !script.cachedDataRejected ? "cached" : "compiled";`,
  "return script.runInThisContext()(require);",
  "})();",
].join(" ");

/**
 * Keeps split bundles' runtimes in `dir` (one folder per runtime, by its SHA-256) with their code caches, and links
 * each bundle's folder to them.
 */
export class RuntimeCode {
  readonly #dir: string;
  /** Runtimes whose code cache this process is making or has made. */
  readonly #making = new Set<string>();

  constructor(dir: string) {
    this.#dir = dir;
  }

  /**
   * Writes `split` into `bundleDir` as `bundle.mjs`, with `runtime.js` and `runtime.cache` there linked to this
   * runtime's own; starts making the code cache when there is none. Returns the bundle's path.
   */
  async write(bundleDir: string, split: SplitBundle): Promise<string> {
    const sha = createHash("sha256").update(split.runtime).digest("hex");
    const dir = join(this.#dir, sha);
    const runtime = join(dir, "runtime.js");
    const cache = join(dir, "runtime.cache");
    if (!existsSync(runtime)) {
      await mkdir(dir, { recursive: true, mode: 0o755 });
      await writeAtomically(runtime, split.runtime);
    }
    for (const [name, target] of [
      ["runtime.js", runtime],
      ["runtime.cache", cache], // a link to nothing until the cache is made: the bundle compiles the runtime meanwhile
    ] as const) {
      const link = join(bundleDir, name);
      await rm(link, { force: true });
      await symlink(target, link);
    }
    const path = join(bundleDir, "bundle.mjs");
    await writeAtomically(path, split.bundle);
    if (!existsSync(cache) && !this.#making.has(sha)) {
      this.#making.add(sha);
      makeCodeCache(runtime, cache);
    }
    return path;
  }
}

/** Readable by a container's user, as every bundle file is. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const partial = `${path}.${process.pid}.partial`;
  await writeFile(partial, text, { mode: 0o644 });
  await rename(partial, path);
}

/**
 * Makes `cache` from `runtime` in a child Node that outlives nothing of the plane's: detached, unreferenced, at the
 * lowest priority, its output dropped. It writes a partial file and renames it, so a container reads a whole cache or
 * none. A failure leaves none, and containers compile the runtime as before.
 */
export function makeCodeCache(runtime: string, cache: string): void {
  const script = [
    'const { readFileSync, writeFileSync, renameSync } = require("node:fs");',
    'const { Script } = require("node:vm");',
    `const [runtime, cache] = ${JSON.stringify([runtime, cache])};`,
    `const source = ${JSON.stringify(SOURCE_HEAD)} + readFileSync(runtime, "utf8") + ${JSON.stringify(SOURCE_TAIL)};`,
    "const partial = cache + '.' + process.pid + '.partial';",
    "writeFileSync(partial, new Script(source).createCachedData(), { mode: 0o644 });",
    "renameSync(partial, cache);",
  ].join("\n");
  try {
    const child = spawn(process.execPath, ["-e", script], { detached: true, stdio: "ignore", env: { PATH: process.env.PATH ?? "" } });
    child.on("error", () => {});
    if (child.pid !== undefined) {
      try {
        setPriority(child.pid, 19);
      } catch {
        // a priority it could not lower: it runs as it is
      }
    }
    child.unref();
  } catch {
    // no child could start: containers compile the runtime
  }
}
