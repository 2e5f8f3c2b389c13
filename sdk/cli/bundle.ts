/**
 * Bundling app files with esbuild, three ways: into the gateway Worker (with
 * the gateway runtime, for workerd: `bundleWorker`), into the plane bundle
 * (with the container runner, one self-contained module per app that has
 * plane functions: `bundlePlane`), and into a Node module that the CLI imports
 * to check the app and list what it defines before anything starts
 * (`loadAppInNode`).
 */
import type { BuildFailure, BuildOptions, BuildResult, Metafile, Plugin } from "esbuild";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { loadAppModule, type App } from "../app.js";
import { InvalidOptionsError, TandemError } from "../errors.js";
import { PLANE_RUNTIME_MARKER, type PlaneBundleRef } from "../protocol.js";
import { RUNTIME_SOURCE_PREFIX, mapStackWith, traceMap } from "../stack-map.js";
import { trace } from "../trace.js";
import { packagesStamp, type BuildCache } from "./build-cache.js";
import { withoutEdgeHandlers, type EdgeHandler } from "./edge-code.js";
import { GATEWAY_ENTRY, PACKAGE_ROOT, SDK_DIST, SDK_ENTRY } from "./paths.js";

export interface WorkerBundle {
  /** The bundled Worker module (`.mjs`). */
  path: string;
  /**
   * The files beside it that it imports (its source map as text, WebAssembly
   * modules compiled), named so workerd is handed the whole module list: left to
   * find them, miniflare parses the whole bundle in Node first (measured: 1.4 s of
   * a 3 s start).
   */
  modules: WorkerModule[];
  /** Every source file that went into it, for watching. */
  inputs: string[];
  bytes: number;
}

/** A file the Worker module imports, and how workerd loads it. */
export interface WorkerModule {
  type: "ESModule" | "Text" | "CompiledWasm" | "Data";
  path: string;
}

/** Lets an app outside this package import `tandem` and this package's dependencies (hono). */
const nodePaths = [join(PACKAGE_ROOT, "node_modules")];

// esbuild loads when something is to be bundled: a `tandem run` whose builds are all kept (build-cache.ts) bundles
// nothing, and its start should not wait for esbuild's 0.1-0.3 s of loading. Its version, part of every build's key,
// comes from its package.json.
const esbuildVersion = (createRequire(import.meta.url)("esbuild/package.json") as { version: string }).version;

/** The source map travels beside the bundle as a text module, so remote stacks name the user's files. */
const SOURCE_MAP_MODULE = "tandem:source-map";
const sourceMapBesideBundle: Plugin = {
  name: "source-map-beside-bundle",
  setup(b) {
    b.onResolve({ filter: /^tandem:source-map$/ }, () => ({ path: "./worker.mjs.map", external: true }));
    // WebAssembly modules travel beside the bundle too, as compiled modules (workerd compiles no bytes at run time).
    // A function's bundled directories (`files`) travel beside it too, each a data module (an ArrayBuffer).
    b.onResolve({ filter: /^\.\/wasm\/.*\.(wasm|bin)$/ }, (args) => ({ path: args.path, external: true }));
  },
};

/** The plane bundles the Worker names: a module of their references, loaded when they are known. */
const PLANE_BUNDLES_MODULE = "tandem:plane-bundles";
function planeBundlesModule(refs: Record<string, PlaneBundleRef> | Promise<Record<string, PlaneBundleRef>>): Plugin {
  return {
    name: "plane-bundles",
    setup(b) {
      b.onResolve({ filter: /^tandem:plane-bundles$/ }, (args) => ({ path: args.path, namespace: "tandem-plane-bundles" }));
      b.onLoad({ filter: /.*/, namespace: "tandem-plane-bundles" }, async () => ({ loader: "js", contents: `export default ${JSON.stringify(await refs)};` }));
    },
  };
}

/**
 * Node modules that workerd (this version, with nodejs_compat) does not have.
 * An app file is loaded at the edge too, so a plane function's `import
 * { spawn } from "node:child_process"` must not stop the Worker from
 * starting: at the edge such a module is a stand-in that throws a clear error
 * when used. Measured by importing each `node:*` module in workerd 1.20260426.
 */
const MISSING_IN_WORKERD = [
  "child_process",
  "cluster",
  "console",
  "dgram",
  "domain",
  "fs",
  "inspector",
  "os",
  "perf_hooks",
  "punycode",
  "readline",
  "repl",
  "trace_events",
  "tty",
  "v8",
  "vm",
  "wasi",
  "worker_threads",
  "sqlite",
  "test",
];
const edgeStandIns: Plugin = {
  name: "edge-stand-ins",
  setup(b) {
    const filter = new RegExp(`^(node:)?(${MISSING_IN_WORKERD.join("|")})(/[a-z_]+)?$`); // fs/promises too
    b.onResolve({ filter }, (args) => ({ path: args.path.startsWith("node:") ? args.path : `node:${args.path}`, namespace: "edge-stand-in" }));
    b.onLoad({ filter: /.*/, namespace: "edge-stand-in" }, (args) => ({
      loader: "js",
      contents: `const message = ${JSON.stringify(args.path)} + " is not available at the edge (workerd); use it in a plane-tier function";
module.exports = new Proxy(function () {}, { get(_, key) { if (key === "__esModule") return false; return function () { throw new Error(message); }; } });`,
    }));
  },
};

/** How the runtime's builds are made, in their build cache keys: a change here makes them anew. */
const RUNTIME_BUILD = { zodLocales: "en", runtimeLinesMarked: true } as const;

/**
 * zod's messages in English alone, in the runtime's own builds (the gateway's modules for workerd, the container's
 * runner): zod names each of its 48 locales in a namespace (`z.locales`) that no code of Tandem's reads, and they were
 * 200 KB of the 1.1 MB that workerd and every container parse as they start. An app's own zod keeps them all.
 */
const zodInEnglish: Plugin = {
  name: "zod-in-english",
  setup(b) {
    const zod = `${sep}node_modules${sep}zod${sep}`;
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      args.importer.includes(zod) ? { path: resolve(dirname(args.importer), args.path), namespace: "zod-in-english" } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "zod-in-english" }, (args) => ({
      loader: "js",
      contents: `export { default as en } from ${JSON.stringify(join(dirname(args.path), "en.js"))};`,
      resolveDir: dirname(args.path),
    }));
  },
};

/** Packages an image installs exist only on the plane: at the edge they are stand-ins that throw when used. */
function imagePackagesAtTheEdge(packages: string[]): Plugin {
  return {
    name: "image-packages-at-the-edge",
    setup(b) {
      if (packages.length === 0) return;
      const filter = new RegExp(`^(${packages.map((p) => p.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join("|")})(/.*)?$`);
      b.onResolve({ filter }, (args) => ({ path: args.path, namespace: "edge-stand-in" }));
    },
  };
}

/**
 * What `minify` minifies: whitespace and syntax, not names. A function's own
 * error names what its author wrote (`text.split is not a function`, not
 * `t.split …`), the same in the Worker and in a plane bundle. Measured against
 * minifying names too: test/fixtures/plane-app.ts's plane bundle 499 → 662 KB
 * (124 → 141 KB gzipped) with the same CPU time from a container's start to
 * its runner's ready (about 240 ms either way); the deployed Worker of it and
 * examples/hello 598 → 807 KB (159 → 183 KB gzipped).
 */
const MINIFY_KEEPING_NAMES = { minifyWhitespace: true, minifySyntax: true, minifyIdentifiers: false } as const;

/** How the Worker's modules are bundled for workerd: ES modules, its package conditions, its own imports left to it. */
const FOR_WORKERD = {
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  mainFields: ["workerd", "worker", "browser", "module", "main"],
  conditions: ["workerd", "worker", "browser"],
  external: ["cloudflare:*", "node:*"],
} as const satisfies BuildOptions;

/**
 * Bundles the gateway and `appFiles` into one Worker module in `outDir`.
 * `minify` for deploys (names kept: `MINIFY_KEEPING_NAMES`); `sourceMap: false` leaves the map out of the Worker.
 */
export async function bundleWorker(
  appFiles: string[],
  outDir: string,
  options: {
    minify?: boolean;
    sourceMap?: boolean;
    /**
     * The plane bundles it names, by app. A promise lets the Worker bundle while they are still bundling:
     * only the module that names them waits for them (`tandem run`, `tandem serve`).
     */
    planeBundles?: Record<string, PlaneBundleRef> | Promise<Record<string, PlaneBundleRef>>;
    external?: string[];
    /** WebAssembly modules to ship in the Worker: `app/name` → a `.wasm` file in `outDir/wasm/`. */
    wasm?: Record<string, string>;
    /** Their bundled directories: `app/name` → a `.bin` file (wasm/files.ts) in `outDir/wasm/`. */
    wasmFiles?: Record<string, string>;
    /** Kept there, and found there again when nothing it reads changed (see build-cache.ts). */
    cache?: BuildCache;
    /**
     * The gateway and the SDK bundled apart from the app, as modules of their own that the Worker module imports, and
     * kept in this cache (`tandem run`, `tandem serve`): they change only with Tandem, so an edit to the app bundles
     * only the app's own module (the gateway is 1.3 MB of the Worker: 0.4-0.7 s of bundling on this repository's
     * 2-core machine). Deploys ship one module.
     */
    runtimeApart?: BuildCache;
  } = {},
): Promise<WorkerBundle> {
  await mkdir(outDir, { recursive: true });
  const files = appFiles.map(checkAppFile);
  const withMap = options.sourceMap ?? true;
  const path = join(outDir, "worker.mjs");
  const apart = options.runtimeApart !== undefined;
  // Bundled (or found in the cache) beside the app's module.
  const runtime = options.runtimeApart ? bundleRuntime(outDir, options.runtimeApart) : undefined;
  runtime?.catch(() => {}); // met where it is awaited
  const withRuntime = async (bundle: WorkerBundle): Promise<WorkerBundle> => {
    if (!runtime) return bundle;
    const { modules: runtimeModules, inputs, bytes } = await runtime;
    return { ...bundle, modules: [...bundle.modules, ...runtimeModules], inputs: [...bundle.inputs, ...inputs], bytes: bundle.bytes + bytes };
  };
  const modules: WorkerModule[] = [
    ...(withMap ? [{ type: "Text" as const, path: `${path}.map` }] : []),
    ...Object.values(options.wasm ?? {}).map((file) => ({ type: "CompiledWasm" as const, path: join(outDir, "wasm", file) })),
    ...[...new Set(Object.values(options.wasmFiles ?? {}))].map((file) => ({ type: "Data" as const, path: join(outDir, "wasm", file) })),
  ];
  const cacheKey = {
    ...buildKey("worker", outDir),
    files,
    minify: options.minify ?? false,
    withMap,
    external: options.external ?? [],
    wasm: options.wasm ?? {},
    wasmFiles: options.wasmFiles ?? {},
    apart,
  };
  // The plane bundles it names, but for when they were built: a run's gateway keeps no stop marks to compare that with.
  const planeRefs = async () => JSON.stringify(Object.entries(await (options.planeBundles ?? {})).map(([app, { builtAt: _, ...ref }]) => [app, ref]));
  // One that names no plane bundles (an edge function's run, which bundles them only if a call needs them) is kept
  // apart from one that does: runs of an edge function and of a plane function of one app each find theirs.
  const none = !(options.planeBundles instanceof Promise) && Object.keys(options.planeBundles ?? {}).length === 0;
  const cacheName = `worker:${path}:${files.join(",")}${none ? ":without-plane-bundles" : ""}`;
  const hit = await options.cache?.get<{ refs: string; inputs: string[]; bytes: number }>(cacheName, cacheKey);
  if (hit && hit.meta.refs === (await planeRefs())) {
    await writeFile(path, hit.files.worker!);
    if (withMap) await writeFile(`${path}.map`, hit.files.map!);
    trace("build: Worker found in the build cache");
    return withRuntime({ path, modules, inputs: hit.meta.inputs, bytes: hit.meta.bytes });
  }
  const blobs = [...new Set(Object.values(options.wasmFiles ?? {}))]; // functions that bundle the same directories share one
  const entry = [
    ...files.map((f, i) => `import * as app${i} from ${JSON.stringify(f)};`),
    `import { createGateway, AgentHub, CallLedger, PlaneRegistry, Scheduler, SecretStore, TokenStore, VolumeStore, DictStore, QueueStore, LogStore, DeploymentStore, MetricsExporter, installSourceMap } from ${JSON.stringify(apart ? RUNTIME_GATEWAY : GATEWAY_ENTRY)};`,
    // Apart from the runtime, the map is of this module alone: frames in the runtime's are Tandem's own.
    withMap
      ? `import sourceMap from ${JSON.stringify(SOURCE_MAP_MODULE)};\ninstallSourceMap(sourceMap${apart ? `, ${JSON.stringify(basename(path))}` : ""});`
      : "",
    ...Object.values(options.wasm ?? {}).map((file, i) => `import wasm${i} from ${JSON.stringify(`./wasm/${file}`)};`),
    ...blobs.map((file, i) => `import files${i} from ${JSON.stringify(`./wasm/${file}`)};`),
    `import planeBundles from ${JSON.stringify(PLANE_BUNDLES_MODULE)};`,
    `export default createGateway([${files.map((f, i) => `{ file: ${JSON.stringify(relative(process.cwd(), f) || basename(f))}, exports: app${i} }`).join(", ")}], { planeBundles, wasm: { ${Object.keys(
      options.wasm ?? {},
    )
      .map((key, i) => `${JSON.stringify(key)}: wasm${i}`)
      .join(", ")} }, wasmFiles: { ${Object.entries(options.wasmFiles ?? {})
      .map(([key, file]) => `${JSON.stringify(key)}: files${blobs.indexOf(file)}`)
      .join(", ")} } });`,
    `export { AgentHub, CallLedger, PlaneRegistry, Scheduler, SecretStore, TokenStore, VolumeStore, DictStore, QueueStore, LogStore, DeploymentStore, MetricsExporter };`,
  ].join("\n");
  const result = await bundle({
    stdin: { contents: entry, resolveDir: PACKAGE_ROOT, loader: "ts", sourcefile: "tandem-worker-entry.ts" },
    outfile: path,
    ...FOR_WORKERD,
    // Apart from the runtime, `tandem` is the runtime's SDK module, the one the gateway uses: one SDK in the Worker.
    ...(apart ? {} : { alias: { tandem: SDK_ENTRY } }),
    plugins: [
      ...(apart ? [runtimeModules] : []),
      sourceMapBesideBundle,
      planeBundlesModule(options.planeBundles ?? {}),
      edgeStandIns,
      imagePackagesAtTheEdge(options.external ?? []),
      nativePackages("edge-stand-in"),
    ],
    nodePaths,
    metafile: true,
    sourcemap: withMap ? "external" : false,
    sourcesContent: false,
    ...(options.minify ? MINIFY_KEEPING_NAMES : {}),
    keepNames: true,
    logLevel: "silent",
    legalComments: "none",
  });
  if (withMap) await relativizeSources(`${path}.map`);
  const inputs = inputFiles(result.metafile).filter((i) => !i.includes(`${sep}node_modules${sep}`));
  const bytes = result.metafile.outputs[relative(process.cwd(), path)]?.bytes ?? 0;
  await options.cache?.put(
    cacheName,
    cacheKey,
    inputFiles(result.metafile),
    { worker: await readFile(path), ...(withMap ? { map: await readFile(`${path}.map`) } : {}) },
    { refs: await planeRefs(), inputs, bytes },
  );
  trace("build: Worker bundled");
  return withRuntime({ path, modules, inputs, bytes });
}

/** The runtime's modules, as the Worker module apart from them imports them (`runtimeApart`). */
const RUNTIME_DIR = "runtime";
const RUNTIME_SDK = `./${RUNTIME_DIR}/sdk.mjs`;
const RUNTIME_GATEWAY = `./${RUNTIME_DIR}/gateway.mjs`;
const runtimeModules: Plugin = {
  name: "runtime-modules",
  setup(b) {
    b.onResolve({ filter: /^tandem$/ }, () => ({ path: RUNTIME_SDK, external: true }));
    b.onResolve({ filter: /^\.\/runtime\// }, (args) => ({ path: args.path, external: true }));
  },
};

/**
 * The gateway and the SDK, bundled for workerd into `outDir/runtime/` as modules of their own (`sdk.mjs`,
 * `gateway.mjs`, and the chunks they share, so that the app and the gateway use one SDK), for a Worker module that
 * imports them (`runtimeApart`). Kept in `cache` as one build, whichever folder it is written to (each `tandem serve`
 * reload builds in a folder of its own): they change only with Tandem (and its packages). No source map: stacks leave
 * their frames out. Minified, names kept (1.1 MB against 1.7): miniflare copies the whole of workerd's configuration
 * each time it grows it, so every byte of these modules is copied once for each later piece of it (the extra CA
 * certificates of NODE_EXTRA_CA_CERTS, one by one); workerd was ready 60 ms sooner at the median (5 pairs).
 */
async function bundleRuntime(outDir: string, cache: BuildCache): Promise<Pick<WorkerBundle, "modules" | "inputs" | "bytes">> {
  const dir = join(outDir, RUNTIME_DIR);
  await mkdir(dir, { recursive: true });
  const key = { ...buildKey("runtime", undefined), sdk: SDK_ENTRY, gateway: GATEWAY_ENTRY, minified: true, ...RUNTIME_BUILD };
  const at = (files: Record<string, Uint8Array>, inputs: string[]) => ({
    modules: Object.keys(files).map((name) => ({ type: "ESModule" as const, path: join(dir, name) })),
    inputs,
    bytes: Object.values(files).reduce((sum, f) => sum + f.byteLength, 0),
  });
  const hit = await cache.get<{ inputs: string[] }>("runtime", key);
  if (hit) {
    await Promise.all(Object.entries(hit.files).map(([name, contents]) => writeFile(join(dir, name), contents)));
    trace("build: runtime found in the build cache");
    return at(hit.files, hit.meta.inputs);
  }
  const result = await bundle({
    entryPoints: { sdk: SDK_ENTRY, gateway: GATEWAY_ENTRY },
    outdir: dir,
    outExtension: { ".js": ".mjs" },
    write: false,
    splitting: true,
    ...FOR_WORKERD,
    plugins: [zodInEnglish, edgeStandIns, nativePackages("edge-stand-in")],
    nodePaths,
    metafile: true,
    keepNames: true,
    ...MINIFY_KEEPING_NAMES,
    logLevel: "silent",
    legalComments: "none",
  });
  const files = Object.fromEntries(result.outputFiles.map((f) => [relative(dir, f.path), f.contents]));
  await Promise.all(Object.entries(files).map(([name, contents]) => writeFile(join(dir, name), contents)));
  const inputs = inputFiles(result.metafile).filter((i) => !i.includes(`${sep}node_modules${sep}`));
  await cache.put("runtime", key, inputFiles(result.metafile), files, { inputs });
  trace("build: runtime bundled");
  return at(files, inputs);
}

export interface PlaneBundle {
  path: string;
  /** sha256 of the bundle: how the gateway and planes name it. */
  hash: string;
  bytes: Uint8Array;
  /** Its source map (JSON), kept beside it: planes map failed calls' stacks with it. */
  map: string;
  /** Packages with native code, left out of the bundle and loaded from `nodeModules`. */
  externals: string[];
  /** The node_modules folder the native packages come from, mounted read-only into containers. */
  nodeModules: string | undefined;
}

/** Marks the resolutions our plugins make to look at a package, so that no plugin handles them again. */
const PROBING = Symbol("tandem.probing");

/**
 * Packages with native addons (a `.node` file or a `binding.gyp`) cannot be
 * bundled. For Node (the plane, the CLI's check of the app) they stay imports,
 * resolved from the app's node_modules, which the plane mounts read-only into
 * containers. At the edge they become a stand-in that throws when used, since
 * an app file is loaded there too but only plane functions may use them.
 */
function nativePackages(mode: "external" | "edge-stand-in", found?: { externals: Set<string>; nodeModules: Set<string> }): Plugin {
  return {
    name: `native-packages-${mode}`,
    setup(b) {
      b.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.pluginData === PROBING || args.path.includes(":")) return undefined;
        const resolved = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: PROBING });
        if (resolved.errors.length || !resolved.path || resolved.external) return undefined;
        const name = packageName(args.path);
        const root = packageRoot(resolved.path, name);
        if (!root) return undefined;
        if (!hasNativeCodeOnce(root)) return undefined;
        if (mode === "edge-stand-in") return { path: args.path, namespace: "edge-stand-in" };
        found?.externals.add(name);
        found?.nodeModules.add(dirname(name.startsWith("@") ? dirname(root) : root));
        return { path: args.path, external: true };
      });
    },
  };
}

function packageName(specifier: string): string {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
}

function packageRoot(resolvedFile: string, name: string): string | undefined {
  const marker = `${sep}node_modules${sep}${name.split("/").join(sep)}`;
  const at = resolvedFile.lastIndexOf(marker);
  return at < 0 ? undefined : resolvedFile.slice(0, at + marker.length);
}

/**
 * Whether a package has native code, looked for once per process and package version: every build (a run's Worker
 * and plane bundle, each reload of `tandem serve`) asks of the same packages, and the look walks each one's folders
 * (hono's: 0.1 s of this thread, measured).
 */
const nativeRoots = new Map<string, boolean>();
function hasNativeCodeOnce(root: string): boolean {
  let version: string;
  try {
    const { mtimeMs, size } = statSync(join(root, "package.json"));
    version = `${root}@${mtimeMs}:${size}`;
  } catch {
    return hasNativeCode(root);
  }
  let found = nativeRoots.get(version);
  if (found === undefined) nativeRoots.set(version, (found = hasNativeCode(root)));
  return found;
}

function hasNativeCode(root: string): boolean {
  if (existsSync(join(root, "binding.gyp"))) return true;
  const walk = (dir: string, depth: number): boolean => {
    if (depth > 6) return false;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isFile() && entry.name.endsWith(".node")) return true;
      if (entry.isDirectory() && entry.name !== "node_modules" && walk(join(dir, entry.name), depth + 1)) return true;
    }
    return false;
  };
  return walk(root, 0);
}

const RUNNER_ENTRY = join(PACKAGE_ROOT, "gpu-plane/runner/main.ts");
/** What a plane bundle's source map calls its entry, the few lines that start the runner: Tandem's own, as the runner is. */
const PLANE_ENTRY_SOURCE = "tandem-plane-entry.ts";

/**
 * Bundles one app file with the container runner into one self-contained
 * Node module: what a plane runs in a container for the app's plane-tier
 * functions. `edgeHandlers` (the app's edge functions, loaded in Node) are
 * left out of it (see edge-code.ts), so that its hash changes only with code
 * a container can run.
 */
export async function bundlePlane(
  appFile: string,
  outDir: string,
  options: {
    external?: string[];
    /** Plane-tier WebAssembly functions' prepared modules, by function name: they travel inside the bundle. */
    wasm?: Record<string, string>;
    /** Their bundled directories (wasm/files.ts), by function name: inside the bundle too. */
    wasmFiles?: Record<string, string>;
    edgeHandlers?: readonly EdgeHandler[];
    /**
     * Minify it (default): smaller, for planes that keep it. `tandem run`'s one container does not gain the time
     * minifying takes (measured: 0.3 s of a run on this repository's 2-core machine).
     */
    minify?: boolean;
    /** Kept there, and found there again when nothing it reads changed (see build-cache.ts). */
    cache?: BuildCache;
    /**
     * The runner and the SDK bundled apart from the app and kept in this cache (`tandem run`, `tandem serve`), then
     * joined with the app's own module into the one file a container runs: an edit to the app bundles only its module
     * and the join (the runtime is most of the bundle's 180 inputs: 0.35 s of bundling on this repository's 2-core
     * machine, on the path to a run's container).
     */
    runtimeApart?: BuildCache;
  } = {},
): Promise<PlaneBundle> {
  await mkdir(outDir, { recursive: true });
  const file = checkAppFile(appFile);
  const path = join(outDir, `plane-${basename(file).replace(/\.[^.]+$/, "")}.mjs`);
  const cacheKey = {
    ...buildKey("plane", outDir),
    file,
    external: options.external ?? [],
    wasm: options.wasm ?? {},
    wasmFiles: options.wasmFiles ?? {},
    edgeHandlers: options.edgeHandlers ?? [],
    minify: options.minify ?? true,
    apart: options.runtimeApart !== undefined,
    ...RUNTIME_BUILD, // a bundle joined with the plane runtime is as new as it
  };
  const hit = await options.cache?.get<{ externals: string[]; nodeModules: string | null }>(`plane:${path}:${file}`, cacheKey);
  if (hit) {
    trace("build: plane bundle found in the build cache");
    // Its bytes copied out of the Buffer read: miniflare takes only a view of a whole ArrayBuffer into the blob store.
    return planeBundleAt(path, new Uint8Array(hit.files.bundle!), hit.files.map!.toString("utf8"), hit.meta.externals, hit.meta.nodeModules ?? undefined);
  }
  const minify = options.minify ?? true;
  const printed = options.runtimeApart
    ? await printPlaneApart(file, path, options.runtimeApart, { ...options, minify })
    : await printPlaneWhole(file, path, options).then((whole) => (minify ? minified(whole) : whole));
  const { externals, nodeModules } = printed;
  const map = relativizedMap(printed.map, outDir);
  const bytes = new TextEncoder().encode(printed.code);
  await options.cache?.put(`plane:${path}:${file}`, cacheKey, printed.inputs, { bundle: bytes, map }, { externals, nodeModules: nodeModules ?? null });
  trace("build: plane bundle bundled");
  return planeBundleAt(path, bytes, map, externals, nodeModules);
}

/** What `bundlePlane` asks of a build of a plane bundle. */
type PlaneBuildOptions = Pick<Parameters<typeof bundlePlane>[2] & {}, "external" | "wasm" | "wasmFiles" | "edgeHandlers">;

/** A plane bundle as printed (not minified, the edge handlers left out), its map, and what it was made from. */
interface PrintedPlane {
  code: string;
  map: string;
  /** Every file it read. */
  inputs: string[];
  externals: string[];
  nodeModules: string | undefined;
}

/** Packages with native code found by a build (`nativePackages`), as a plane bundle names them. */
function nativeFound(found: { externals: Set<string>; nodeModules: Set<string> }): Pick<PrintedPlane, "externals" | "nodeModules"> {
  return { externals: [...found.externals], nodeModules: [...found.nodeModules][0] };
}

/** The plane entry: the app's exports and its WebAssembly modules handed to the runner, imported from `runner`. */
function planeEntry(app: string, runner: string, options: PlaneBuildOptions): string {
  const wasm = Object.entries(options.wasm ?? {});
  const wasmFiles = Object.entries(options.wasmFiles ?? {});
  return [
    `import * as app from ${JSON.stringify(app)};`,
    `import { runFunctions } from ${JSON.stringify(runner)};`,
    ...wasm.map(([, path], i) => `import wasm${i} from ${JSON.stringify(path)};`),
    ...wasmFiles.map(([, path], i) => `import files${i} from ${JSON.stringify(path)};`),
    `await runFunctions(app, { ${wasm.map(([name], i) => `${JSON.stringify(name)}: wasm${i}`).join(", ")} }, { ${wasmFiles.map(([name], i) => `${JSON.stringify(name)}: files${i}`).join(", ")} });`,
  ].join("\n");
}

/**
 * `printed` minified, once the edge handlers are out: smaller parses faster (every cold container loads it), and an
 * edge function's lines no longer show in the bytes. Its map goes in, and comes out composed.
 */
async function minified<P extends { code: string; map: string }>(printed: P): Promise<P> {
  const { transform } = await import("esbuild");
  const { code, map } = await transform(`${printed.code}\n//# sourceMappingURL=data:application/json;base64,${Buffer.from(printed.map).toString("base64")}\n`, {
    loader: "js",
    format: "esm",
    target: "node20",
    ...MINIFY_KEEPING_NAMES,
    keepNames: true,
    sourcemap: "external",
    sourcesContent: false,
    logLevel: "silent",
  });
  return { ...printed, code, map };
}

/** How a plane bundle's modules are bundled for Node in a container. */
const FOR_THE_PLANE = { bundle: true, format: "esm", platform: "node", target: "node20" } as const satisfies BuildOptions;

/** Bundled CommonJS dependencies may require Node built-ins: the plane bundle's first line gives them `require`. */
const REQUIRE_BANNER = { js: 'import { createRequire as __tandemRequire } from "node:module"; const require = __tandemRequire(import.meta.url);' };

/** The app and the runner, bundled in one build. */
async function printPlaneWhole(file: string, path: string, options: PlaneBuildOptions): Promise<PrintedPlane> {
  const found = { externals: new Set<string>(), nodeModules: new Set<string>() };
  const result = await bundle({
    stdin: { contents: planeEntry(file, RUNNER_ENTRY, options), resolveDir: PACKAGE_ROOT, loader: "ts", sourcefile: PLANE_ENTRY_SOURCE },
    ...FOR_THE_PLANE,
    write: false,
    outfile: path,
    alias: { tandem: SDK_ENTRY },
    // Packages an image installs (Image.npmInstall) are there at run time, not here.
    external: options.external ?? [],
    nodePaths,
    banner: REQUIRE_BANNER,
    // Printed as loadAppInNode prints the app, so that edge handlers' source text is found here (minified after, names kept).
    minify: false,
    keepNames: true,
    plugins: [nativePackages("external", found)],
    loader: { ".wasm": "binary", ".bin": "binary" },
    // Beside the bundle, not in it: the plane maps a failed call's stack with it (Node in the container never reads it).
    sourcemap: "external",
    sourcesContent: false,
    metafile: true,
    logLevel: "silent",
  });
  const printed = result.outputFiles.find((f) => !f.path.endsWith(".map"))!.text;
  const map = result.outputFiles.find((f) => f.path.endsWith(".map"))!.text;
  // Keeps every line and column: the map stays true.
  return { code: withoutEdgeHandlers(printed, options.edgeHandlers ?? []), map, inputs: inputFiles(result.metafile), ...nativeFound(found) };
}

/**
 * The app bundled alone, then joined as text after the runner and the SDK (`bundlePlaneRuntime`, kept in `cache`):
 * one file, as a whole build makes it, whose bundling reads only the app's own files. The runtime is a script that
 * sets one name (`PLANE_RUNTIME_GLOBAL`), and the app's `tandem` is a module that reads the SDK from it, so that the
 * app and the runner share one SDK. The two source maps are joined into one.
 */
async function printPlaneApart(file: string, path: string, cache: BuildCache, options: PlaneBuildOptions & { minify: boolean }): Promise<PrintedPlane> {
  const runtime = bundlePlaneRuntime(cache);
  runtime.catch(() => {}); // met where it is awaited
  const found = { externals: new Set<string>(), nodeModules: new Set<string>() };
  const app = await bundle({
    stdin: { contents: planeEntry(file, RUNNER_FROM_RUNTIME, options), resolveDir: PACKAGE_ROOT, loader: "ts", sourcefile: PLANE_ENTRY_SOURCE },
    ...FOR_THE_PLANE,
    write: false,
    outfile: path,
    external: options.external ?? [],
    nodePaths,
    // Printed as loadAppInNode prints the app (`tandem` outside it), so that edge handlers' source text is found here.
    minify: false,
    keepNames: true,
    plugins: [sdkFromPlaneRuntime(runtime), nativePackages("external", found)],
    loader: { ".wasm": "binary", ".bin": "binary" },
    sourcemap: "external",
    sourcesContent: false,
    metafile: true,
    logLevel: "silent",
  });
  // Minified apart from the runtime, which was minified once, when it was bundled.
  const stubbed = {
    code: withoutEdgeHandlers(app.outputFiles.find((f) => !f.path.endsWith(".map"))!.text, options.edgeHandlers ?? []),
    map: app.outputFiles.find((f) => f.path.endsWith(".map"))!.text,
  };
  const { code: printed, map: printedMap } = options.minify ? await minified(stubbed) : stubbed;
  const appMap = JSON.parse(printedMap) as PlaneRuntime["map"];
  const { script, map: runtimeMap, mapEnd, inputs, ...runtimeNative } = await runtime;
  // The runtime's lines counted on the first: a plane keeps them apart, to load them from V8's code cache.
  const head = `${REQUIRE_BANNER.js} ${PLANE_RUNTIME_MARKER}${script.split("\n").length}\n${script}`;
  const native = nativeFound(found);
  return {
    code: `${head}\n${printed}`,
    // The banner's line, the runtime's, then the app's from the line it starts on.
    map: JSON.stringify(
      await joinMaps(runtimeMap, mapEnd, 1, { ...appMap, sources: appMap.sources.map((s) => resolve(dirname(path), s)) }, head.split("\n").length),
    ),
    inputs: [...new Set([...inputs, ...inputFiles(app.metafile)])],
    externals: [...new Set([...runtimeNative.externals, ...native.externals])],
    nodeModules: native.nodeModules ?? runtimeNative.nodeModules,
  };
}

/** A source map's last state, as its mappings leave it: the source, line, column and name the next segment counts from. */
type MapEnd = [source: number, line: number, column: number, name: number];

/**
 * `first`'s mappings from line `firstAt`, then `second`'s from line `secondAt` of the same file, as one map. Only
 * `second` (an app's own module, small) is decoded: `first` (the runtime's, 0.7 MB, 0.15-0.3 s to decode on this
 * repository's 2-core machine) goes in as it is, and `second`'s mappings are encoded to count on from where `first`'s
 * end (`firstEnd`, found once by `mapEnd`).
 */
async function joinMaps(first: PlaneRuntime["map"], firstEnd: MapEnd, firstAt: number, second: PlaneRuntime["map"], secondAt: number) {
  const { TraceMap, decodedMappings, encodedMappings } = await import("@jridgewell/trace-mapping");
  const [source, line, column, name] = firstEnd;
  const shifted = decodedMappings(new TraceMap(second)).map((segments) =>
    segments.map((s) =>
      s.length === 1
        ? s
        : s.length === 4
          ? ([s[0], s[1] + first.sources.length, s[2], s[3]] as const)
          : ([s[0], s[1] + first.sources.length, s[2], s[3], s[4] + first.names.length] as const),
    ),
  );
  // Encoded after a first line whose one segment is where `first` ends, then that line cut off: what is left counts from there.
  const encoded = encodedMappings(
    new TraceMap({
      version: 3,
      sources: [...first.sources, ...second.sources],
      names: [...first.names, ...second.names],
      mappings: [[[0, source, line, column, name]], ...shifted],
    }),
  );
  const firstLines = first.mappings.split(";").length;
  return {
    version: 3,
    sources: [...first.sources, ...second.sources],
    names: [...first.names, ...second.names],
    mappings:
      ";".repeat(firstAt) +
      first.mappings +
      ";".repeat(secondAt - firstAt - firstLines + 1) +
      (encoded.includes(";") ? encoded.slice(encoded.indexOf(";") + 1) : ""),
  };
}

/** Where a map's mappings leave its state (`MapEnd`). */
async function mapEnd(map: PlaneRuntime["map"]): Promise<MapEnd> {
  const { TraceMap, decodedMappings } = await import("@jridgewell/trace-mapping");
  const end: MapEnd = [0, 0, 0, 0];
  for (const segments of decodedMappings(new TraceMap(map))) {
    for (const s of segments) {
      if (s.length === 1) continue;
      [end[0], end[1], end[2]] = [s[1], s[2], s[3]];
      if (s.length === 5) end[3] = s[4];
    }
  }
  return end;
}

/** The name the plane runtime's script sets: the SDK's exports, and the runner's `runFunctions`. */
const PLANE_RUNTIME_GLOBAL = "__tandemPlaneRuntime";
/** What the plane entry imports `runFunctions` from when the runtime is apart. */
const RUNNER_FROM_RUNTIME = "tandem:plane-runner";

/** An app's `tandem`, and the plane entry's runner, read from the plane runtime's script (`printPlaneApart`). */
function sdkFromPlaneRuntime(runtime: Promise<{ sdkExports: string[] }>): Plugin {
  return {
    name: "sdk-from-plane-runtime",
    setup(b) {
      b.onResolve({ filter: /^(tandem|tandem:plane-runner)$/ }, (args) => ({ path: args.path, namespace: "tandem-plane-runtime" }));
      b.onLoad({ filter: /.*/, namespace: "tandem-plane-runtime" }, async (args) => {
        const names = args.path === RUNNER_FROM_RUNTIME ? ["runFunctions"] : (await runtime).sdkExports;
        return { loader: "js", contents: names.map((name) => `export const ${name} = ${PLANE_RUNTIME_GLOBAL}.${name};`).join("\n") };
      });
    },
  };
}

/** The plane runtime's script, its map, the SDK's export names, and what it was made from. */
interface PlaneRuntime extends Pick<PrintedPlane, "inputs" | "externals" | "nodeModules"> {
  script: string;
  map: { version: 3; sources: string[]; names: string[]; mappings: string };
  mapEnd: MapEnd;
  sdkExports: string[];
}

/**
 * The container runner and the SDK, bundled for Node as one script that sets `PLANE_RUNTIME_GLOBAL` and nothing
 * else, its map's sources absolute. Kept in `cache`: it changes only with Tandem (and its packages).
 */
async function bundlePlaneRuntime(cache: BuildCache): Promise<PlaneRuntime> {
  const key = { ...buildKey("plane-runtime", undefined), sdk: SDK_ENTRY, runner: RUNNER_ENTRY, ...RUNTIME_BUILD };
  type Meta = Omit<PlaneRuntime, "script" | "map" | "nodeModules"> & { nodeModules: string | null };
  const hit = await cache.get<Meta>("plane-runtime", key);
  if (hit) {
    trace("build: plane runtime found in the build cache");
    const { nodeModules, ...meta } = hit.meta;
    return {
      ...meta,
      nodeModules: nodeModules ?? undefined,
      script: hit.files.script!.toString("utf8"),
      map: JSON.parse(hit.files.map!.toString("utf8")) as PlaneRuntime["map"],
    };
  }
  const found = { externals: new Set<string>(), nodeModules: new Set<string>() };
  const entry = `export * from ${JSON.stringify(SDK_ENTRY)};\nexport { runFunctions } from ${JSON.stringify(RUNNER_ENTRY)};`;
  const common = {
    stdin: { contents: entry, resolveDir: PACKAGE_ROOT, loader: "ts", sourcefile: "tandem-plane-runtime.ts" },
    ...FOR_THE_PLANE,
    write: false,
    outfile: join(cache.dir, "plane-runtime.js"),
    nodePaths,
    keepNames: true,
    metafile: true,
    logLevel: "silent",
  } as const satisfies BuildOptions;
  const [script, names] = await Promise.all([
    // Minified (names kept) once for every run and reload that joins it: smaller to hash, copy and parse in each container.
    bundle({
      ...common,
      format: "iife",
      globalName: PLANE_RUNTIME_GLOBAL,
      ...MINIFY_KEEPING_NAMES,
      plugins: [zodInEnglish, nativePackages("external", found)],
      sourcemap: "external",
      sourcesContent: false,
    }),
    // The SDK's export names, which the script's global holds: an ES module build lists them.
    bundle({ ...common, stdin: { ...common.stdin, contents: `export * from ${JSON.stringify(SDK_ENTRY)};` }, plugins: [nativePackages("external")] }),
  ]);
  const text = script.outputFiles.find((f) => !f.path.endsWith(".map"))!.text;
  const rawMap = JSON.parse(script.outputFiles.find((f) => f.path.endsWith(".map"))!.text) as PlaneRuntime["map"];
  const map = { ...rawMap, sources: rawMap.sources.map((s) => resolve(cache.dir, s)) };
  const native = nativeFound(found);
  const meta: Meta = {
    inputs: inputFiles(script.metafile),
    externals: native.externals,
    nodeModules: native.nodeModules ?? null,
    sdkExports: Object.values(names.metafile.outputs).flatMap((o) => o.exports.filter((name) => name !== "default")),
    mapEnd: await mapEnd(map),
  };
  await cache.put("plane-runtime", key, meta.inputs, { script: text, map: JSON.stringify(map) }, meta);
  trace("build: plane runtime bundled");
  return { ...meta, nodeModules: native.nodeModules, script: text, map };
}

/** A plane bundle written to `path`, its map beside it. */
async function planeBundleAt(path: string, bytes: Uint8Array, map: string, externals: string[], nodeModules: string | undefined): Promise<PlaneBundle> {
  await writeFile(path, bytes);
  await writeFile(`${path}.map`, map);
  return { path, hash: createHash("sha256").update(bytes).digest("hex"), bytes, map, externals, nodeModules };
}

/** What every build's key holds: what was built, where, by which Tandem and esbuild, for which working folder and installed packages. */
function buildKey(kind: string, outDir: string | undefined): Record<string, unknown> {
  return { kind, outDir, cwd: process.cwd(), tandem: PACKAGE_ROOT, esbuild: esbuildVersion, packages: packagesStamp([process.cwd(), PACKAGE_ROOT]) };
}

/** The files a build read (not its entry on stdin, nor what plugins made up), as absolute paths. */
function inputFiles(metafile: Metafile): string[] {
  return Object.keys(metafile.inputs)
    .filter((i) => !i.startsWith("<") && !/^[a-z-]+:/.test(i))
    .map((i) => resolve(i))
    .filter((i) => existsSync(i)); // the entry reads as the name given it (`tandem-worker-entry.ts`), a file nowhere
}

/**
 * When the CLI loads an app file to check it, a package it cannot find here
 * (one an image installs on the plane) stays an import: the check never runs
 * the function that imports it.
 */
const unresolvedExternal: Plugin = {
  name: "unresolved-external",
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, async (args) => {
      if (args.pluginData === PROBING || args.path.includes(":")) return undefined;
      const resolved = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: PROBING });
      return resolved.errors.length ? { path: args.path, external: true } : undefined;
    });
  },
};

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
export async function loadAppInNode(appFile: string, outDir: string, options: { cache?: BuildCache } = {}): Promise<App> {
  await mkdir(outDir, { recursive: true });
  const file = checkAppFile(appFile);
  const out = join(outDir, `${basename(file).replace(/\.[^.]+$/, "")}.node.mjs`);
  const cacheKey = { ...buildKey("node", outDir), file };
  const hit = await options.cache?.get<null>(`node:${out}:${file}`, cacheKey);
  if (hit) await writeFile(out, hit.files.module!);
  else await bundleAppForNode(file, out, cacheKey, options.cache);
  trace(hit ? "build: app's Node module found in the build cache" : "build: app bundled for Node");
  const shown = relative(process.cwd(), file) || basename(file);
  let exports: Record<string, unknown>;
  try {
    exports = (await import(`${pathToFileURL(out).href}?t=${Date.now()}`)) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TandemError) throw err; // the SDK's own check, which names the app and function already
    throw new AppLoadError(shown, err, await mapLoadStack(file, out, err));
  }
  trace("build: app imported");
  return loadAppModule(shown, exports);
}

/** The esbuild options of an app's Node module, the same with a source map or without, so that its lines match. */
function nodeBuildOptions(file: string, out: string) {
  return {
    entryPoints: [file],
    outfile: out,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    external: ["cloudflare:*"],
    plugins: [tandemFromDist, nativePackages("external"), unresolvedExternal],
    nodePaths,
    keepNames: true, // as bundlePlane prints the app: it finds edge handlers by their source text
    metafile: true,
    logLevel: "silent",
  } as const satisfies BuildOptions;
}

async function bundleAppForNode(file: string, out: string, cacheKey: unknown, cache: BuildCache | undefined): Promise<void> {
  const result = await bundle(nodeBuildOptions(file, out));
  await cache?.put(`node:${out}:${file}`, cacheKey, inputFiles(result.metafile), { module: await readFile(out) }, null);
}

/** An app file that threw while Node loaded it: its error, and where in the user's own files. */
export class AppLoadError extends Error {
  constructor(file: string, cause: unknown, frames: string[]) {
    const what = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(`${file} threw while it loaded: ${what}${missingPackageHint(cause)}${frames.length ? `\n${frames.join("\n")}` : ""}`, { cause });
    this.name = "AppLoadError";
  }
}

/**
 * What to do about a package the app imports at its top level that this project does not have: often one only an
 * image installs (`Image.npmInstall`), which is in the function's container alone.
 */
function missingPackageHint(cause: unknown): string {
  const name = (cause as { code?: unknown })?.code === "ERR_MODULE_NOT_FOUND" ? /Cannot find package '([^']+)'/.exec((cause as Error).message)?.[1] : undefined;
  if (!name) return "";
  return ` (npm install ${name} in this project; or, if an image installs it with Image.npmInstall, it is in the function's container only: import it inside the function that uses it, with await import(…))`;
}

/**
 * `err`'s frames in the user's files, mapped through the module's source map. The module is built again, with a
 * map, only now: a map on every start would slow the start of each `tandem run` that loads without a fault.
 */
async function mapLoadStack(file: string, out: string, err: unknown): Promise<string[]> {
  if (!(err instanceof Error) || !err.stack) return [];
  try {
    const result = await bundle({ ...nodeBuildOptions(file, out), write: false, sourcemap: "external", sourcesContent: false });
    const map = result.outputFiles.find((f) => f.path.endsWith(".map"));
    if (!map) return [];
    // The module was imported with a query (`?t=`), which its frames keep: without it they name the module's file.
    const query = new RegExp(`(${basename(out).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")})\\?t=\\d+`, "g");
    const stack = err.stack.replace(query, "$1");
    const mapped = mapStackWith(traceMap(relativizedMap(map.text, dirname(out))), stack, basename(out));
    return mapped === stack ? [] : mapped.split("\n").slice(1);
  } catch {
    return []; // the error as thrown, without its place, rather than an error about mapping it
  }
}

/** Source paths relative to the working directory, as a user reads them in a stack. */
async function relativizeSources(mapPath: string): Promise<void> {
  await writeFile(mapPath, relativizedMap(await readFile(mapPath, "utf8"), dirname(mapPath)));
}

/**
 * A source map whose sources read as a user knows them: their files relative
 * to the working folder, and Tandem's own (its runtime folders and packages)
 * marked `tandem:`, so that remote stacks leave those frames out
 * (sdk/stack-map.ts). `from` is the folder the map's sources are relative to.
 */
function relativizedMap(text: string, from: string): string {
  const map = JSON.parse(text) as { sources: string[] };
  map.sources = map.sources.map((s) => {
    const file = resolve(from, s);
    const inPackage = relative(PACKAGE_ROOT, file);
    if (/^(gateway|gpu-plane|sdk|wasm|node_modules)\//.test(inPackage) || inPackage === PLANE_ENTRY_SOURCE) return `${RUNTIME_SOURCE_PREFIX}${inPackage}`;
    return relative(process.cwd(), file);
  });
  return JSON.stringify(map);
}

function checkAppFile(appFile: string): string {
  const file = resolve(appFile);
  if (!existsSync(file)) throw new InvalidOptionsError(`app file ${appFile} does not exist (looked for ${file})`);
  // A folder (a project's, say): esbuild said only that it "could not resolve" it.
  if (statSync(file).isDirectory()) {
    const inside = ["app.ts", "app.js", "app.mts", "app.mjs"].find((name) => existsSync(join(file, name)));
    throw new InvalidOptionsError(
      `${appFile} is a folder, not an app file${inside ? `: did you mean ${join(appFile, inside)}?` : ": name the .ts or .js file that makes the app"}`,
    );
  }
  return file;
}

/** esbuild, with its failures turned into one readable message: `file:line:col: text`. */
async function bundle<O extends BuildOptions & { metafile: true }>(options: O): Promise<BuildResult<O>>;
async function bundle(options: BuildOptions): Promise<BuildResult>;
async function bundle(options: BuildOptions): Promise<BuildResult> {
  const { build } = await import("esbuild");
  try {
    return await build({ absWorkingDir: process.cwd(), ...options });
  } catch (err) {
    const errors = (err as BuildFailure).errors;
    if (!errors?.length) throw err;
    const lines = errors.map((e) => (e.location ? `${e.location.file}:${e.location.line}:${e.location.column}: ${e.text}` : e.text));
    throw new InvalidOptionsError(`could not bundle the app:\n  ${lines.join("\n  ")}`);
  }
}
