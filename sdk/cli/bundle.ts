/**
 * Bundling app files with esbuild, twice: into the gateway Worker (with the
 * gateway runtime, for workerd), and into a Node module that the CLI imports
 * to check the app and list what it defines before anything starts.
 */
import { build, type BuildFailure, type BuildOptions, type BuildResult, type Plugin } from "esbuild";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, dirname, join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { loadAppModule, type App } from "../app.js";
import { InvalidOptionsError } from "../errors.js";
import { GATEWAY_ENTRY, PACKAGE_ROOT, SDK_DIST, SDK_ENTRY } from "./paths.js";

export interface WorkerBundle {
  /** The bundled Worker module (`.mjs`). */
  path: string;
  /** Every source file that went into it, for watching. */
  inputs: string[];
  bytes: number;
}

/** Lets an app outside this package import `tandem` and this package's dependencies (hono). */
const nodePaths = [join(PACKAGE_ROOT, "node_modules")];

/** The source map travels beside the bundle as a text module, so remote stacks name the user's files. */
const SOURCE_MAP_MODULE = "tandem:source-map";
const sourceMapBesideBundle: Plugin = {
  name: "source-map-beside-bundle",
  setup(b) {
    b.onResolve({ filter: /^tandem:source-map$/ }, () => ({ path: "./worker.mjs.map", external: true }));
  },
};

/**
 * Bundles the gateway and `appFiles` into one Worker module in `outDir`.
 * `minify` for deploys; `sourceMap: false` leaves the map out of the Worker.
 */
export async function bundleWorker(appFiles: string[], outDir: string, options: { minify?: boolean; sourceMap?: boolean } = {}): Promise<WorkerBundle> {
  await mkdir(outDir, { recursive: true });
  const files = appFiles.map(checkAppFile);
  const withMap = options.sourceMap ?? true;
  const entry = [
    ...files.map((f, i) => `import * as app${i} from ${JSON.stringify(f)};`),
    `import { createGateway, CallLedger, installSourceMap } from ${JSON.stringify(GATEWAY_ENTRY)};`,
    withMap ? `import sourceMap from ${JSON.stringify(SOURCE_MAP_MODULE)};\ninstallSourceMap(sourceMap);` : "",
    `export default createGateway([${files.map((f, i) => `{ file: ${JSON.stringify(relative(process.cwd(), f) || basename(f))}, exports: app${i} }`).join(", ")}]);`,
    `export { CallLedger };`,
  ].join("\n");
  const path = join(outDir, "worker.mjs");
  const result = await bundle({
    stdin: { contents: entry, resolveDir: PACKAGE_ROOT, loader: "ts", sourcefile: "tandem-worker-entry.ts" },
    outfile: path,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    mainFields: ["workerd", "worker", "browser", "module", "main"],
    conditions: ["workerd", "worker", "browser"],
    external: ["cloudflare:*", "node:*"],
    alias: { tandem: SDK_ENTRY },
    plugins: [sourceMapBesideBundle],
    nodePaths,
    metafile: true,
    sourcemap: withMap ? "external" : false,
    sourcesContent: false,
    minify: options.minify ?? false,
    keepNames: true,
    logLevel: "silent",
    legalComments: "none",
  });
  if (withMap) await relativizeSources(`${path}.map`);
  const inputs = Object.keys(result.metafile.inputs)
    .filter((i) => !i.includes("node_modules") && !i.startsWith("<"))
    .map((i) => resolve(i));
  return { path, inputs, bytes: result.metafile.outputs[relative(process.cwd(), path)]?.bytes ?? 0 };
}

/** `import "tandem"` in the Node bundle means this package's built SDK, so the app and the CLI share one. */
const tandemFromDist: Plugin = {
  name: "tandem-from-dist",
  setup(b) {
    b.onResolve({ filter: /^tandem$/ }, () => ({ path: SDK_DIST, external: true }));
  },
};

/**
 * Bundles and imports one app file in Node, then returns its checked `App`.
 * Throws the app's own `InvalidOptionsError` for bad options.
 */
export async function loadAppInNode(appFile: string, outDir: string): Promise<App> {
  await mkdir(outDir, { recursive: true });
  const file = checkAppFile(appFile);
  const out = join(outDir, `${basename(file).replace(/\.[^.]+$/, "")}.node.mjs`);
  await bundle({
    entryPoints: [file],
    outfile: out,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    external: ["cloudflare:*"],
    plugins: [tandemFromDist],
    nodePaths,
    logLevel: "silent",
  });
  const exports = (await import(`${pathToFileURL(out).href}?t=${Date.now()}`)) as Record<string, unknown>;
  return loadAppModule(relative(process.cwd(), file) || basename(file), exports);
}

/** Source paths relative to the working directory, as a user reads them in a stack. */
async function relativizeSources(mapPath: string): Promise<void> {
  const map = JSON.parse(await readFile(mapPath, "utf8")) as { sources: string[] };
  map.sources = map.sources.map((s) => relative(process.cwd(), resolve(dirname(mapPath), s)));
  await writeFile(mapPath, JSON.stringify(map));
}

function checkAppFile(appFile: string): string {
  const file = resolve(appFile);
  if (!existsSync(file)) throw new InvalidOptionsError(`app file ${appFile} does not exist (looked for ${file})`);
  return file;
}

/** esbuild, with its failures turned into one readable message: `file:line:col: text`. */
async function bundle<O extends BuildOptions & { metafile: true }>(options: O): Promise<BuildResult<O>>;
async function bundle(options: BuildOptions): Promise<BuildResult>;
async function bundle(options: BuildOptions): Promise<BuildResult> {
  try {
    return await build({ absWorkingDir: process.cwd(), ...options });
  } catch (err) {
    const errors = (err as BuildFailure).errors;
    if (!errors?.length) throw err;
    const lines = errors.map((e) => (e.location ? `${e.location.file}:${e.location.line}:${e.location.column}: ${e.text}` : e.text));
    throw new InvalidOptionsError(`could not bundle the app:\n  ${lines.join("\n  ")}`);
  }
}
