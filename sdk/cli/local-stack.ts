/**
 * What `tandem serve` (and the tests) build and start locally: the app files
 * bundled for the gateway and for the plane, the gateway in workerd with the
 * plane bundles in its blob store, and the plane secret they share.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { RunningWorkerd } from "./workerd.js";
import type { Inventory } from "../../gpu-plane/inventory.js";
import { packDirectories, prepareModule } from "../../wasm/prepare.js";
import type { App, WasmDefinition } from "../app.js";
import { WASM_DEFAULTS } from "../defaults.js";
import { InvalidOptionsError } from "../errors.js";
import type { GpuRequest } from "../gpu.js";
import { containerResources } from "../options.js";
import { BLOB_KEYS, TOKEN_PATTERN, newToken, type DeployStrategy, type PlaneBundleRef } from "../protocol.js";
import type { BuildCache } from "./build-cache.js";
import { bundlePlane, bundleWorker, loadAppInNode, type PlaneBundle, type WorkerBundle } from "./bundle.js";
import type { EdgeHandler } from "./edge-code.js";
import { resolveImage } from "./images.js";
import { stateDir } from "./paths.js";

export interface BuiltApps {
  apps: App[];
  worker: WorkerBundle;
  planes: PlaneBundle[];
  /** Image specs the plane functions use, by hash (uploaded beside the bundles). */
  images: Map<string, string>;
  /** The local files and folders those images copy in: a change to one is a change to the app (`tandem serve`). */
  imagePaths: string[];
  /**
   * With `planesWhenAsked`: the plane bundles (then not in `planes`, nor named by the Worker), bundled when this is
   * first called, and their refs as the Worker would name them.
   */
  planesWhenAsked?: () => Promise<{ planes: PlaneBundle[]; refs: Record<string, PlaneBundleRef> }>;
}

export interface BuildOptions {
  /** The Worker minified (names kept), for deploys. */
  minify?: boolean;
  /** `false` leaves the source map out of the Worker. */
  sourceMap?: boolean;
  /** Keep the builds there, and take them from there when nothing they read changed (`tandem run`). */
  cache?: BuildCache;
  /**
   * The runtime bundled apart from the apps and kept in this cache (`tandem run`, `tandem serve`): the gateway and the
   * SDK as modules of the Worker (`bundleWorker`'s `runtimeApart`), the runner and the SDK joined with each app's own
   * module into its plane bundle (`bundlePlane`'s). An edit to an app bundles only its own modules.
   */
  runtimeApart?: BuildCache;
  /**
   * The runner and the SDK bundled apart and kept in this cache, and joined with each app's module into its plane
   * bundle, the Worker whole (`tandem deploy`): a plane loads such a bundle's runtime from V8's code cache
   * (gpu-plane/runtime-code.ts). `runtimeApart` implies it.
   */
  planeRuntimeApart?: BuildCache;
  /** Minify the plane bundles (default); `tandem run`, whose one container does not gain the time it takes, does not. */
  minifyPlane?: boolean;
  /**
   * Told the apps once every file is loaded and checked, before anything is bundled: `tandem run` starts its plane
   * from here. What it throws (or the promise it returns rejects with) fails the build.
   */
  loaded?: (apps: App[]) => void | Promise<void>;
  /**
   * Asked once the apps are loaded (after `loaded`): true leaves the plane bundles out of the build, to be bundled
   * when first asked for (`BuiltApps.planesWhenAsked`), and the Worker names none (`tandem run` of an edge function:
   * its gateway asks for them through `LOCAL_PLANE` if a call needs a plane).
   */
  planesWhenAsked?: () => boolean;
  /** Told each app's plane bundle as soon as it is made, before the Worker may be: `tandem run` starts its container. */
  planeBuilt?: (app: App, plane: PlaneBundle) => void;
  /** How this build replaces the one before it on the planes (default rolling): written into each plane bundle's ref. */
  strategy?: DeployStrategy;
}

/**
 * Loads and checks the app files, then bundles them for workerd and, where they have plane functions, for the
 * plane: the plane bundles and the Worker side by side, the Worker's one module that names the plane bundles
 * waiting for them.
 */
export async function buildApps(appFiles: string[], buildDir: string, options: BuildOptions = {}): Promise<BuiltApps> {
  const planeRuntime = options.runtimeApart ?? options.planeRuntimeApart;
  const apps: App[] = [];
  const planeBundles: Record<string, PlaneBundleRef> = {};
  const images = new Map<string, string>();
  const imagePaths: string[] = [];
  const external = new Set<string>();
  const wasm: Record<string, string> = {};
  const wasmFiles: Record<string, string> = {};
  const planeBuilds: (() => Promise<PlaneBundle>)[] = [];
  const fileOf = new Map<string, string>(); // each app's file, by its name: two of one name would make a Worker that never starts
  for (const [i, file] of appFiles.entries()) {
    if (appFiles.findIndex((f) => resolve(f) === resolve(file)) < i) throw new InvalidOptionsError(`${file} is given twice: give each app file once`);
    const app = await loadAppInNode(file, join(buildDir, "node"), options.cache ? { cache: options.cache } : {});
    const other = fileOf.get(app.name);
    if (other !== undefined)
      throw new InvalidOptionsError(`${other} and ${file} both define the app "${app.name}": give one another name (new App("…")), or give only one of them`);
    fileOf.set(app.name, file);
    apps.push(app);
    const planeWasm: Record<string, string> = {};
    const planeWasmFiles: Record<string, string> = {};
    for (const w of app.wasmFunctions) {
      const files = await prepareWasmFiles(app.name, w, file, join(buildDir, "wasm")); // first: a size check is quicker than a compile
      const prepared = await prepareWasm(app.name, w, file, join(buildDir, "wasm"));
      if (w.spec.tier === "plane") {
        planeWasm[w.name] = join(buildDir, "wasm", prepared);
        if (files) planeWasmFiles[w.name] = join(buildDir, "wasm", files);
      } else {
        wasm[`${app.name}/${w.name}`] = prepared;
        if (files) wasmFiles[`${app.name}/${w.name}`] = files;
      }
    }
    for (const p of imagePackages(app)) external.add(p);
    if (app.callables.some((c) => c.spec.tier === "plane")) {
      const imageOf: Record<string, string> = {};
      const withImages = [...app.callables.filter((c) => c.kind !== "method"), ...app.classes.map((c) => ({ name: c.name!, spec: c.spec }))];
      for (const { name, spec } of withImages) {
        if (spec.tier !== "plane" || !spec.image) continue;
        const image = resolveImage(spec.image, `app "${app.name}": ${name}`);
        images.set(image.hash, image.json);
        imagePaths.push(...image.localPaths);
        imageOf[name] = image.hash;
      }
      planeBuilds.push(async () => {
        const plane = await bundlePlane(file, join(buildDir, "plane"), {
          external: imagePackages(app),
          wasm: planeWasm,
          wasmFiles: planeWasmFiles,
          edgeHandlers: edgeHandlers(app),
          minify: options.minifyPlane ?? true,
          ...(options.cache ? { cache: options.cache } : {}),
          ...(planeRuntime ? { runtimeApart: planeRuntime } : {}),
        });
        options.planeBuilt?.(app, plane);
        planeBundles[app.name] = {
          hash: plane.hash,
          builtAt: Date.now(),
          ...(options.strategy && options.strategy !== "rolling" ? { strategy: options.strategy } : {}),
          ...(plane.nodeModules ? { nodeModules: plane.nodeModules } : {}),
          ...(Object.keys(imageOf).length ? { images: imageOf } : {}),
        };
        return plane;
      });
    }
  }
  await options.loaded?.(apps);
  const later = planeBuilds.length > 0 && (options.planesWhenAsked?.() ?? false);
  let whenAsked: Promise<PlaneBundle[]> | undefined;
  const buildPlanes = () => (whenAsked ??= Promise.all(planeBuilds.map((build) => build())));
  const planesBuilt = later ? Promise.resolve([]) : buildPlanes();
  const refs = later ? {} : planesBuilt.then(() => planeBundles);
  if (refs instanceof Promise) refs.catch(() => {}); // a failure is thrown below, whether or not the Worker got as far as waiting for it
  const [planes, worker] = await Promise.allSettled([
    planesBuilt,
    bundleWorker(appFiles, buildDir, {
      ...(options.minify !== undefined ? { minify: options.minify } : {}),
      ...(options.sourceMap !== undefined ? { sourceMap: options.sourceMap } : {}),
      planeBundles: refs,
      ...(options.cache ? { cache: options.cache } : {}),
      ...(options.runtimeApart ? { runtimeApart: options.runtimeApart } : {}),
      external: [...external],
      wasm,
      wasmFiles,
    }),
  ]);
  // A plane bundle's failure first: the Worker, waiting for it, fails with it.
  if (planes.status === "rejected") throw planes.reason;
  if (worker.status === "rejected") throw worker.reason;
  return {
    apps,
    worker: worker.value,
    planes: planes.value,
    images,
    imagePaths: [...new Set(imagePaths)],
    ...(later ? { planesWhenAsked: async () => ({ planes: await buildPlanes(), refs: planeBundles }) } : {}),
  };
}

/**
 * A WebAssembly function's module, ready to ship: its `.wasm` file (or its
 * AssemblyScript source, compiled with asc) checked and instrumented
 * (wasm/prepare.ts) into the build's `wasm/` folder, so a bad module fails
 * before anything starts. Returns the file's name there.
 */
async function prepareWasm(app: string, w: WasmDefinition, appFile: string, outDir: string): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const given = (w.module ?? w.source)!;
  const from = resolve(dirname(appFile), given);
  const where = `app "${app}": wasm function "${w.name}"`;
  if (!existsSync(from)) throw new InvalidOptionsError(`${where}: ${given} does not exist (looked for ${from})`);
  if (w.source !== undefined && /\.wasm$/i.test(given)) {
    throw new InvalidOptionsError(
      `${where}: "source" takes AssemblyScript to compile (a .ts file), not ${given}; for a compiled module, use { module: ${JSON.stringify(given)} }`,
    );
  }
  if (w.module !== undefined && /\.ts$/i.test(given)) {
    throw new InvalidOptionsError(`${where}: "module" takes a compiled .wasm file, not ${given}; for AssemblyScript, use { source: ${JSON.stringify(given)} }`);
  }
  const file = `${app}-${w.name}.wasm`;
  try {
    // Compiles are kept in the project's .tandem folder: a reload that did not touch the module does not compile it again.
    await prepareModule(from, join(outDir, file), {
      source: w.source !== undefined,
      name: given,
      maxMemoryPages: w.limits.maxMemoryPages,
      cacheDir: join(stateDir(), "cache", "asc"),
    });
  } catch (err) {
    throw new InvalidOptionsError(`${where}: ${(err as Error).message}`);
  }
  return file;
}

/**
 * A WebAssembly function's bundled directories (`files`), read within their limits (sdk/defaults.ts) into one
 * blob in the build's `wasm/` folder, named by its content so functions that bundle the same directories ship it
 * once. Returns the file's name there; undefined when the function has no `files`.
 */
async function prepareWasmFiles(app: string, w: WasmDefinition, appFile: string, outDir: string): Promise<string | undefined> {
  if (Object.keys(w.files).length === 0) return undefined;
  let blob: Uint8Array;
  try {
    blob = await packDirectories(w.files, dirname(appFile), { maxBytes: WASM_DEFAULTS.maxFilesBytes, maxFiles: WASM_DEFAULTS.maxFiles });
  } catch (err) {
    throw new InvalidOptionsError(`app "${app}": wasm function "${w.name}": ${(err as Error).message}`);
  }
  await mkdir(outDir, { recursive: true });
  const file = `files-${createHash("sha256").update(blob).digest("hex").slice(0, 16)}.bin`;
  await writeFile(join(outDir, file), blob);
  return file;
}

/** The handlers of an app's edge functions, endpoints and web mounts: the plane bundle leaves them out. */
function edgeHandlers(app: App): EdgeHandler[] {
  return [
    ...app.functions.filter((f) => f.spec?.tier !== "plane" && f.handler).map((f) => ({ name: `${app.name}.${f.name}`, source: f.handler!.toString() })),
    ...app.endpoints.map((e) => ({ name: `endpoint "${e.label}" of app "${app.name}"`, source: e.handler.toString() })),
    ...app.webMounts.map((m) => ({ name: `web mount "${m.label}" of app "${app.name}"`, source: m.factory.toString() })),
  ];
}

/** The npm packages an app's images install: imports of them stay imports in its bundles. */
function imagePackages(app: App): string[] {
  const specs = app.callables.map((c) => c.spec);
  return specs.flatMap((spec) =>
    (spec.image?.steps ?? []).flatMap((step) => (step.kind === "npm" ? step.packages.map((p) => p.replace(/(.)@.*$/, "$1")) : [])),
  );
}

/** Puts the plane bundles and image specs where planes fetch them: the gateway's blob store. */
export async function uploadPlaneBundles(gateway: Pick<RunningWorkerd, "putBlob">, built: Pick<BuiltApps, "planes" | "images">): Promise<void> {
  for (const plane of built.planes) {
    await gateway.putBlob(BLOB_KEYS.planeBundle(plane.hash), plane.bytes);
    await gateway.putBlob(BLOB_KEYS.planeBundleMap(plane.hash), plane.map);
  }
  for (const [hash, json] of built.images) await gateway.putBlob(BLOB_KEYS.image(hash), json);
}

/** The local plane's region (`local`). */
export const LOCAL_PLANE_REGION = "local";

/**
 * Checks plane functions against what the local plane has: an error names the limit, and for GPUs the `--gpus`
 * that would simulate enough of them. A function pinned to other regions never runs on the local plane: `serve`
 * leaves it to the planes there (`tandem plane --region`), `run` (whose plane is the only one) refuses it.
 */
export function checkPlaneFits(
  apps: App[],
  inventory: Pick<Inventory, "fits" | "summary">,
  /** Only this function (`fn`, or `Class.method`): `tandem run` checks the one it runs. */
  only?: string,
): void {
  if (only !== undefined) checkRunsInLocalRegion(apps, only);
  for (const app of apps) {
    for (const { what, spec } of planeFunctionsOf(app, only)) {
      if (spec.regions.length > 0 && !spec.regions.includes(LOCAL_PLANE_REGION)) continue; // serve: a plane in its regions runs it
      // The local plane builds images on this machine's Node: a different major would only fail at the first call.
      const node = spec.image?.steps.find((step) => step.kind === "node");
      if (node?.kind === "node" && node.version !== null && node.version.split(".")[0] !== process.versions.node.split(".")[0]) {
        throw new InvalidOptionsError(
          `app "${app.name}": ${what} cannot run on the local plane: Image.node("${node.version}") asks for Node ${node.version}, and the local plane builds on Node ${process.versions.node}`,
        );
      }
      const resources = containerResources({ cpu: spec.cpu ?? null, memory: spec.memory ?? null });
      const options = spec.gpu ?? [undefined];
      const problems = options.map((gpu) => inventory.fits({ gpu, ...resources }));
      const first = problems.find((p) => p !== undefined);
      if (problems.every((p) => p !== undefined) && first) {
        const gpu = spec.gpu?.[0];
        const short = gpu !== undefined && inventory.fits({ gpu, cpu: 0, memoryMiB: 0 }) !== undefined;
        // `tandem run` needs only this function's GPUs; `serve` keeps the others' too.
        const hint = short ? `; simulate them with --gpus "${gpusFlag(only === undefined ? inventory : undefined, gpu)}"` : "";
        // `serve` serves a fleet too: a function pinned to the region of a plane that fits is left to that plane.
        const pin = only === undefined ? `, or give it the region of another plane that has them (region: "eu-west", for a tandem plane --region eu-west)` : "";
        throw new InvalidOptionsError(`app "${app.name}": ${what} cannot run on the local plane: ${first}${hint}${pin}`);
      }
    }
  }
}

/**
 * Refuses a plane function pinned to regions the local plane is not in, for `tandem run` (whose plane is the only
 * one): it needs nothing but the app, so the run checks it before a plane or a container starts.
 * @example checkRunsInLocalRegion(built.apps, "embed"); // throws when embed runs only in eu-west
 */
export function checkRunsInLocalRegion(apps: App[], only: string): void {
  for (const app of apps) {
    for (const { what, spec } of planeFunctionsOf(app, only)) {
      if (spec.regions.length === 0 || spec.regions.includes(LOCAL_PLANE_REGION)) continue;
      throw new InvalidOptionsError(
        `app "${app.name}": ${what} cannot run on the local plane: it runs only in ${spec.regions.length > 1 ? "regions" : "region"} ${spec.regions.join(", ")}, and this plane is in region ${LOCAL_PLANE_REGION}; ` +
          `call it through a gateway with a plane there (tandem plane --region ${spec.regions[0]})`,
      );
    }
  }
}

/** An app's plane functions and classes (or only `only`: `fn`, or the class of `Class.method`), each named as an error names it. */
function planeFunctionsOf(app: App, only: string | undefined) {
  return [
    ...app.callables.filter((c) => c.kind !== "method").map((c) => ({ name: c.name, what: `function "${c.name}"`, spec: c.spec })),
    ...app.classes.map((c) => ({ name: c.name, what: `class "${c.name}"`, spec: c.spec })),
  ].filter((f) => f.spec.tier === "plane" && (only === undefined || only === f.name || only.startsWith(`${f.name}.`)));
}

/** A `--gpus` inventory: what `inventory` has, with at least `need`. */
function gpusFlag(inventory: Pick<Inventory, "summary"> | undefined, need: GpuRequest): string {
  const counts = new Map(Object.entries(inventory?.summary().gpus ?? {}).map(([type, { total }]) => [type, total]));
  counts.set(need.type, Math.max(counts.get(need.type) ?? 0, need.count));
  return [...counts].map(([type, count]) => `${type}:${count}`).join(",");
}

/**
 * The local gateway's bootstrap admin token, kept in `.tandem/token` (made on
 * first use, readable by its owner only). `tandem serve` gives it to the gateway
 * as `TANDEM_ADMIN_TOKEN`; the SDK and CLI send it to a gateway on this machine
 * when nothing else names a token (sdk/credentials.ts).
 */
export function localAdminToken(stateDir: string): string {
  const file = join(stateDir, "token");
  if (existsSync(file)) {
    const saved = readFileSync(file, "utf8").trim();
    if (TOKEN_PATTERN.test(saved)) return saved;
  }
  const { token } = newToken();
  writeFileSync(file, token + "\n", { mode: 0o600 });
  return token;
}

/** The secret the local gateway and planes share: `given` (TANDEM_PLANE_SECRET), else one kept in `.tandem/plane-secret`. */
export function planeSecret(stateDir: string, given: string | undefined): string {
  if (given) return given;
  const file = join(stateDir, "plane-secret");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const secret = randomBytes(32).toString("hex");
  writeFileSync(file, secret + "\n", { mode: 0o600 });
  return secret;
}
