/**
 * `tandem run <app.ts>::<function> [args…]`: runs one function once on an
 * ephemeral gateway (in-memory state), prints the result (a generator's chunks
 * one a line as they come; `--json`: JSON lines), and exits non-zero with the
 * remote error when it throws. It starts only what the function needs: a plane
 * function's plane starts as soon as the app is loaded, beside bundling and
 * workerd; an edge function's app gets a plane only if the call asks for one
 * (an edge function calling a plane function), through the gateway's
 * `LOCAL_PLANE` binding. Its builds are kept in `.tandem/cache/build`
 * (build-cache.ts): an app run again unchanged bundles nothing.
 */
import { inspect } from "node:util";
import { existsSync } from "node:fs";
import { cp, mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { processAlive } from "../credentials.js";
import { InvalidOptionsError, InvalidRequestError } from "../errors.js";
import { checkCallArguments } from "../arguments.js";
import { didYouMean } from "../nearest-name.js";
import { HttpInvoker } from "../client.js";
import { encodeValue, newToken } from "../protocol.js";
import { planeSpecOf } from "../options.js";
import { randomBytes } from "node:crypto";
import type { Plane, PlaneOptions } from "../../gpu-plane/plane.js";
import { buildApps, checkPlaneFits, checkRunsInLocalRegion, LOCAL_PLANE_REGION, uploadPlaneBundles, type BuiltApps } from "./local-stack.js";
import type { PlaneBundle } from "./bundle.js";
import { BuildCache } from "./build-cache.js";
import { stateDir } from "./paths.js";
import { checkNamedSecrets, declaresNamedSecrets, heldSecrets, localSecretValues, localSecretsKey } from "./secret-values.js";
import { onReaderGone, onStopSignal } from "./signals.js";
import type { CliConfig } from "./config.js";
import { printFailure } from "./failure.js";
import { style, visibleControls, visibleLines } from "./style.js";
import { trace } from "../trace.js";
import type { RunningWorkerd } from "./workerd.js";

/** Splits `app.ts::fn`. A missing `::fn` is allowed when the app has exactly one function. */
export function parseTarget(target: string): { file: string; fn: string | undefined } {
  const at = target.lastIndexOf("::");
  if (at < 0) return { file: target, fn: undefined };
  return { file: target.slice(0, at), fn: target.slice(at + 2) || undefined };
}

/**
 * Each argument is parsed as JSON. A bare word that is not JSON (`Ada`) is
 * taken as a string; something that looks like JSON but is not is an error.
 * An integer with `n` after it (`12345678901234567890n`) is a BigInt, as in
 * JavaScript; an integer that a number cannot hold exactly is refused, not
 * rounded.
 * @example parseArg("12345678901234567890n", 1) // 12345678901234567890n
 */
export function parseArg(raw: string, position: number): unknown {
  if (/^\s*-?\d+n\s*$/.test(raw)) return BigInt(raw.trim().slice(0, -1));
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    if (/^\s*[[{"]/.test(raw)) throw new InvalidOptionsError(`argument ${position} is not valid JSON: ${(err as Error).message}`);
    return raw;
  }
  // 1e999 reads as Infinity: refused, as the API refuses it, rather than passed on as a number no one wrote.
  const huge = numberTokens(raw).find((t) => !Number.isFinite(Number(t)));
  if (huge !== undefined && !/^-?\d+$/.test(huge))
    throw new InvalidOptionsError(
      `argument ${position} has a number beyond the range of a 64-bit float (${huge} would arrive as ${Number(huge)}): quote it to pass a string`,
    );
  const inexact = inexactInteger(raw);
  if (inexact === undefined) return value;
  const changed = `${inexact} would arrive as ${Number(inexact)}`;
  throw new InvalidOptionsError(
    inexact === raw.trim()
      ? `argument ${position} is an integer that a number cannot hold exactly (${changed}): quote it to pass a string ('"${inexact}"'), or write ${inexact}n to pass a BigInt`
      : `argument ${position} has an integer that a number cannot hold exactly (${changed}): quote it to pass a string ("${inexact}")`,
  );
}

/** The numbers in JSON text as written (valid JSON: strings skipped). */
function numberTokens(json: string): string[] {
  return [...json.matchAll(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g)].map(([token]) => token).filter((token) => !token.startsWith('"'));
}

/** The first integer in JSON text (valid JSON: strings skipped) that a number would round, if one does. */
function inexactInteger(json: string): string | undefined {
  for (const token of numberTokens(json)) {
    if (/[.eE]/.test(token)) continue;
    const number = Number(token);
    if (!Number.isFinite(number) || BigInt(number) !== BigInt(token)) return token;
  }
  return undefined;
}

/**
 * How long a run waits, once its call is answered, for the work the call left behind in the gateway (the lines an
 * edge function printed, written after its answer in a batch; its record): at most this, usually about 50 ms.
 */
const RUN_SETTLE_MS = 1_000;

export interface RunOptions {
  /** Print the result, or each chunk, as one line of JSON. */
  json?: boolean;
  /** The ephemeral plane's simulated GPUs (`"H100:2"`); default real ones, else one of each type. */
  gpus?: string;
}

export async function runOnce(target: string, rawArgs: string[], config: CliConfig, options: RunOptions = {}): Promise<number> {
  const { file, fn: wanted } = parseTarget(target);
  const state = stateDir();
  const buildDir = join(state, "build", "run");
  // An ephemeral gateway (state in memory), and a plane when the function runs there or a call asks for one.
  const secret = randomBytes(32).toString("hex");
  const { token } = newToken(); // this run's own admin token: its gateway lives as long as the run
  // A folder of this run's own: runs side by side in one project each get their ephemeral plane.
  const planeDir = join(state, "run-planes", String(process.pid));
  // Beside the run, awaited as it stops: what runs killed before their end left (their containers, their folders).
  const leftRuns = removeLeftRuns(state, (line) => console.error(visibleLines(line)));
  const gatewayStarting = deferred<RunningWorkerd>();
  const builtApps = deferred<BuiltApps>();
  const planeBundle = deferred<PlaneBundle>();
  let fn = "";
  let workerd: Promise<typeof import("./workerd.js")> | undefined;
  let plane: RunPlane | undefined;
  let args: unknown[] = [];
  let localSecrets = "{}";
  let named = false;
  let planesWhenAsked = false;
  // The call's arguments as the gateway would refuse them: the run fails as that call would (exit 1), having started nothing.
  let refused: unknown;
  const runState = join(state, "run-state", String(process.pid));
  // Up to workerd's start: what fails here ends the plane too, if it has started (it waits for the gateway).
  const preparing = (async () => {
    // An app run again unchanged bundles nothing: its builds are kept in .tandem/cache/build.
    const cache = new BuildCache(join(state, "cache", "build"));
    const built = await buildApps([file], buildDir, {
      minifyPlane: false,
      cache,
      // The gateway's own modules are kept apart from the app's: an edit bundles only the app's module.
      runtimeApart: cache,
      // An edge function's run bundles the plane bundles only if a call needs a plane: its gateway asks for them.
      planesWhenAsked: () => planesWhenAsked,
      loaded: async (apps) => {
        trace("run: app loaded");
        const app = apps[0];
        const names = app!.callables.map((c) => c.name);
        fn = wanted ?? (names.length === 1 ? names[0]! : "");
        if (!fn) throw new InvalidOptionsError(`say which function to run: ${file}::<function> (functions: ${names.join(", ") || "none"})`);
        if (!names.includes(fn))
          throw new InvalidOptionsError(
            `app "${app!.name}" in ${file} has no function "${fn}" (functions: ${names.join(", ") || "none"})${didYouMean(fn, names)}`,
          );
        // What can fail without the bundles fails here, before a plane or its container starts.
        args = rawArgs.map((a, i) => parseArg(a, i + 1));
        const callable = app!.callables.find((c) => c.name === fn)!;
        // A function pinned to another region never runs on this run's plane: refused before that plane starts (it
        // would start the function's container ahead, and print its lines after the error).
        try {
          checkRunsInLocalRegion(apps, fn);
        } catch (err) {
          throw (refused = err);
        }
        // The gateway's own check (a class method's parameters, the `input` schema): a bad argument starts no plane nor container.
        if (callable.kind === "method" || callable.input)
          await checkCallArguments(`${app!.name}.${fn}`, { clsMethod: callable.kind === "method", input: callable.input }, args).catch((err: unknown) => {
            throw (refused = err);
          });
        // Named secrets are the local gateway's (tandem serve's state): this run's gateway starts on a copy of its
        // secret store (sealed values; the key is the project's), in a folder of the run's own, removed at its end.
        localSecrets = JSON.stringify(localSecretValues(apps, [file])); // read first: a value it lacks fails the run now
        named = declaresNamedSecrets(apps);
        planesWhenAsked = callable.spec.tier !== "plane";
        // Not when it needs the gateway to start: its image's spec, its secrets, its volumes' files (the gateway is
        // started once its Worker is bundled, which waits on the container started ahead).
        const ahead =
          callable.spec.tier === "plane" &&
          callable.kind === "function" &&
          !callable.spec.image &&
          callable.spec.secrets.length === 0 &&
          Object.keys(callable.spec.volumes ?? {}).length === 0;
        const asked = deferred<void>();
        plane = runPlane(gatewayStarting.promise, builtApps.promise, {
          secret,
          forceBuild: config.forceBuild,
          stateDir: planeDir,
          // The runtime's code cache, made by the first run's plane, is the next run's: kept with the project's builds.
          runtimesDir: join(state, "cache", "runtimes"),
          ...(options.gpus !== undefined ? { gpus: options.gpus } : {}),
          // The function's container starts as soon as its bundle is made, while the Worker bundles and workerd
          // starts, when nothing it needs comes from the gateway (an image spec, secrets).
          ...(ahead
            ? {
                startAhead: planeBundle.promise.then((bundle) => ({
                  pool: {
                    app: app!.name,
                    function: fn,
                    bundleHash: bundle.hash,
                    spec: planeSpecOf(callable.spec, { image: null, spendCapUsd: app!.spendCap ?? null }),
                  },
                  bundle: bundle.bytes,
                  ...(bundle.nodeModules ? { nodeModules: bundle.nodeModules } : {}),
                  asked: () => asked.resolve(),
                })),
              }
            : {}),
        });
        // A plane function's plane gets ready (Docker, the base image) while the app bundles; a failure is met where it is awaited below.
        const planeStarted = callable.spec.tier === "plane" ? plane.start().then(() => {}) : undefined;
        planeStarted?.catch(() => {});
        // miniflare takes a third of a second of this thread to load: it loads now, beside esbuild bundling the app,
        // not before the app is loaded, which would wait for it. For a plane function, once the plane's own modules
        // have loaded, and once the engine has been asked to run the container started ahead: until then every step of
        // the plane (Docker's ping, the base image's check, the container's creation) waits on this thread.
        const first = planeStarted
          ? Promise.all([import("../../gpu-plane/plane.js"), import("../../gpu-plane/drivers/docker.js")]).then(() =>
              ahead ? Promise.race([asked.promise, planeStarted.catch(() => {})]) : undefined,
            )
          : undefined;
        workerd = (first ? first.then(() => import("./workerd.js")) : import("./workerd.js")).then((m) => (trace("run: miniflare loaded"), m));
      },
      planeBuilt: (_, bundle) => (trace("run: plane bundle ready"), planeBundle.resolve(bundle)),
    });
    trace("run: built");
    builtApps.resolve(built);
    const { startWorkerd } = await workerd!;
    if (named) await copySecretStore(join(state, "state"), runState);
    return { built, startWorkerd };
  })();
  const prepared = await preparing.catch(async (err: unknown) => {
    for (const waiting of [planeBundle, builtApps, gatewayStarting]) waiting.reject(err);
    await plane?.close();
    await rm(planeDir, { recursive: true, force: true });
    await rm(runState, { recursive: true, force: true });
    await leftRuns;
    if (err !== refused) throw err;
  });
  if (!prepared) {
    printFailure(refused);
    return 1;
  }
  const { built, startWorkerd } = prepared;
  const app = built.apps[0]!;
  const onPlane = app.callables.find((c) => c.name === fn)!.spec.tier === "plane";
  // Logs go to stderr: stdout is the result alone.
  trace("run: workerd starting");
  // Node's fetch loads its HTTP client on first use (50-70 ms of this thread, measured): loaded now, while workerd
  // starts, not on the way of the call and the plane's first heartbeat. A data: URL reaches nothing.
  void fetch("data:,").then(
    () => trace("run: fetch loaded"),
    () => {},
  );
  startWorkerd({
    worker: built.worker,
    persistDir: named ? runState : false,
    bindings: {
      ...config.gatewayVars,
      TANDEM_PLANE_SECRET: secret,
      TANDEM_ADMIN_TOKEN: token,
      TANDEM_SECRETS_KEY: localSecretsKey(state, config.gatewayVars.TANDEM_SECRETS_KEY),
      TANDEM_LOCAL_SECRETS: localSecrets,
    },
    onOutput: (line) => process.stderr.write(visibleControls(line) + "\n"), // as `tandem logs` shows a function's text
    // In the run's own folder, removed with it: the run ends without waiting for miniflare to remove a folder of its own.
    tmpDir: join(runState, "tmp"),
    // Answered once the plane takes calls, with its report: the call does not wait for its first heartbeat.
    ...(built.planes.length || built.planesWhenAsked ? { startPlane: async () => (await plane!.ready()).report() } : {}),
    ...(built.planesWhenAsked ? { planeBundles: async () => (await built.planesWhenAsked!()).refs } : {}),
  }).then((g) => (trace("run: workerd ready"), gatewayStarting.resolve(g)), gatewayStarting.reject);
  // Once, whoever asks first: on Ctrl-C both the signal's handler and the call's end (its connection to the gateway
  // cut) stop the run, and miniflare's second dispose threw ERR_SERVER_NOT_RUNNING out of the process.
  let stopping: Promise<void> | undefined;
  /** `settle`: the call has been answered, and the lines it printed are written after its answer (batched): wait for them. */
  const stop = (settle = false) =>
    (stopping ??= (async () => {
      const gateway = await gatewayStarting.promise.catch(() => undefined);
      if (settle) await gateway?.settled(RUN_SETTLE_MS);
      await plane?.reported(); // its first heartbeat, sent beside the call, lands before the gateway stops
      await Promise.all([plane?.close().then(() => trace("run: plane closed")), gateway?.dispose().then(() => trace("run: workerd stopped"))]);
      await rm(planeDir, { recursive: true, force: true });
      await rm(runState, { recursive: true, force: true, maxRetries: 3 }); // miniflare removes its folder there too, meanwhile
      await leftRuns;
    })());
  let interrupted = false;
  onStopSignal(async () => {
    interrupted = true;
    await stop();
    process.exit(130);
  });
  // `| head -1`: the reader has what it wanted; the run stops as on Ctrl-C (its workerd and containers with it), with 0.
  let readerLeft = false;
  onReaderGone(async () => {
    readerLeft = true;
    await stop();
    process.exit(0);
  });
  const gateway = await gatewayStarting.promise.catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  /** Waits for the lines the call printed, which an edge function's gateway writes after its answer (batched). */
  const settled = () => gateway.settled(RUN_SETTLE_MS).catch(() => {});
  try {
    const url = gateway.url.href.replace(/\/$/, "");
    // The function's own secrets (its class's, for a method): another function's missing one is not this run's.
    if (named) checkNamedSecrets(built.apps, await heldSecrets(url, token), fn.split(".")[0]);
    if (onPlane) {
      // Once the plane takes calls, not once its first heartbeat lands: the gateway asks the plane for its report
      // through LOCAL_PLANE when the registry does not have it yet.
      const { inventory } = await plane!.ready();
      trace("run: plane ready");
      checkPlaneFits(built.apps, inventory, fn); // as serve does: a call that could never run here fails now, not at its timeout
    }
    const invoker = new HttpInvoker(url, { token });
    if (app.callables.find((c) => c.name === fn)?.generator) {
      for await (const chunk of invoker.stream(app.name, fn, args)) console.log(chunkLine(chunk, options.json ?? false));
      return 0;
    }
    trace("run: call sent");
    let result: unknown;
    try {
      result = await invoker.call(app.name, fn, args);
    } catch (err) {
      // A function that returned a generator without being a generator function (a wrapper of one): it streams, as
      // `.remoteGen()` streams it.
      if (!(err instanceof InvalidRequestError && err.details?.returnedGenerator === true)) throw err;
      for await (const chunk of invoker.stream(app.name, fn, args)) console.log(chunkLine(chunk, options.json ?? false));
      return 0;
    }
    trace("run: call answered");
    await settled(); // the lines it printed first, then what it answered
    if (options.json) {
      console.log(jsonText(result));
      return 0;
    }
    // Strings print as they are, plain JSON as JSON, anything richer (Map, Date, bytes) as Node shows it.
    // Bytes (a "bytes" WebAssembly function's output, say) go to stdout as they are, so they can be piped.
    if (result instanceof Uint8Array) process.stdout.write(result);
    else if (result !== undefined)
      console.log(
        typeof result === "string" ? result : encodeValue(result).meta === undefined ? JSON.stringify(result, null, 2) : inspect(result, { depth: 8 }),
      );
    return 0;
  } catch (err) {
    // Stopped with Ctrl-C: the call failed because its gateway is going away (a generator's stream ends "terminated"),
    // which is no error of the function's.
    if (interrupted) return 130;
    if (readerLeft) return 0; // the same: its stream ends as its gateway stops
    await settled(); // the lines it printed before it failed come before its error, as a plane function's do
    printFailure(err);
    // A function that failed reading a volume most likely looked for files put in serve's: this run's are its own.
    const mounted = Object.values(app.callables.find((c) => c.name === fn)?.spec.volumes ?? {}).map((v) => `"${v.mountSpec.volume}"`);
    if (mounted.length)
      console.error(
        style.dim(
          `note: this run's volumes (${[...new Set(mounted)].join(", ")}) are its own, empty ones, not tandem serve's: a file put in serve's with tandem volume put is not there. Call the function under tandem serve to read those`,
        ),
      );
    return 1;
  } finally {
    await stop(!interrupted);
    trace("run: stopped");
    // A scheduled function run by hand to try it: what it put in a queue or dict went with the run.
    if (!interrupted && !readerLeft && app.callables.find((c) => c.name === fn)?.spec.schedule)
      console.error(
        style.dim(
          `note: this run's dicts, queues and volumes were its own, and ended with it, not tandem serve's: tandem schedule trigger ${app.name}::${fn} runs it once where it is served, as its schedule does`,
        ),
      );
  }
}

/**
 * Removes what runs killed before their end (their process is gone) left: the containers of their planes, which
 * nothing else would remove (each run's plane has an id of its own, which the next run's does not share), then their
 * folders (`run-planes/<pid>`, `run-state/<pid>`). A plane folder whose containers cannot all be removed yet (no
 * engine now, one still exiting) is kept, for the next run to try again. Never fails.
 */
async function removeLeftRuns(state: string, log: (line: string) => void): Promise<void> {
  await Promise.all(
    ["run-planes", "run-state"].map(async (kind) => {
      const names = await readdir(join(state, kind)).catch(() => [] as string[]);
      await Promise.all(
        names.map(async (name) => {
          const pid = Number(name);
          if (!Number.isInteger(pid) || pid === process.pid || processAlive(pid)) return;
          const folder = join(state, kind, name);
          if (kind === "run-planes" && !(await removeLeftContainers(folder, pid, log))) return;
          await rm(folder, { recursive: true, force: true }).catch(() => {});
        }),
      );
    }),
  );
}

/**
 * Removes the containers of the plane that a run killed before its end (process `pid`) started from `folder`; false,
 * having said why, when some are still there. Their time is not recorded, as `tandem serve` and `tandem plane` record
 * their leftovers': a run's usage ledger is in that folder, which nothing reads (a run that ends removes it unread).
 */
async function removeLeftContainers(folder: string, pid: number, log: (line: string) => void): Promise<boolean> {
  // Loaded only when a killed run left a folder: the run's own plane loads them too, a plane function's beside this.
  const { storedPlaneId } = await import("../../gpu-plane/plane.js");
  const planeId = storedPlaneId(folder);
  if (!planeId) return true; // its plane never started: it has no containers
  const { DockerDriver } = await import("../../gpu-plane/drivers/docker.js");
  let removed = 0;
  try {
    await new DockerDriver().cleanup(planeId, () => removed++);
  } catch (err) {
    log(
      `⚠ could not remove the containers of plane ${planeId}, left by a run killed before its end (process ${pid}); the next run tries again: ${(err as Error).message}`,
    );
    return false;
  }
  if (removed > 0) log(`removed ${removed} container(s) of plane ${planeId}, left by a run killed before its end (process ${pid})`);
  return true;
}

/** Copies the local gateway's secret store (its SQLite files: sealed values) into `to`, a gateway state folder. */
async function copySecretStore(from: string, to: string): Promise<void> {
  const store = join("do", "tandem-gateway-SecretStore");
  await mkdir(join(to, "do"), { recursive: true });
  if (existsSync(join(from, store))) await cp(join(from, store), join(to, store), { recursive: true });
}

/**
 * A generator's chunk as one line: text as it is, plain JSON as JSON, anything richer (Map, Date) as Node shows
 * it; with `json`, every chunk as JSON (NDJSON: text quoted).
 */
export function chunkLine(chunk: unknown, json: boolean): string {
  if (json) return jsonText(chunk);
  if (typeof chunk === "string") return chunk;
  return encodeValue(chunk).meta === undefined ? JSON.stringify(chunk) : inspect(chunk, { depth: 8, breakLength: Infinity });
}

/**
 * A result as JSON, for `--json`: what JSON lacks as the call codec's JSON writes it (a BigInt's digits in a string, a
 * Map's entries, a Date's ISO text, bytes in base64; `undefined` is `null`). JSON.stringify threw on a BigInt and
 * printed a Map as `{}`.
 * @example jsonText(new Map([["a", 1n]])); // '[["a","1"]]'
 */
function jsonText(value: unknown): string {
  return JSON.stringify(encodeValue(value).json) ?? "null";
}

interface RunPlane {
  /** Starts the plane, unless it has started; resolves once it has reported to the gateway. */
  start(): Promise<Plane>;
  /** Starts the plane, unless it has started; resolves once it takes calls (image specs uploaded), before its first heartbeat lands. */
  ready(): Promise<Plane>;
  /** Once a plane that started has reported (or failed to); at once if none started. */
  reported(): Promise<void>;
  close(): Promise<void>;
}

/** A promise settled from outside; never an unhandled rejection (whoever awaits it still sees the failure). */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (err: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/**
 * This run's plane, started when first asked for: for a plane function, as
 * soon as the app is loaded. It gets ready (Docker, the base image) while the
 * app bundles and workerd starts, starts the function's container once its
 * bundle is made, and reports once workerd is up. The app's plane bundles
 * are handed to it as they are built, never uploaded to the gateway nor
 * fetched from it; image specs, which it asks the gateway for, are uploaded.
 */
function runPlane(
  gateway: Promise<RunningWorkerd>,
  built: Promise<BuiltApps>,
  options: Pick<PlaneOptions, "secret" | "forceBuild" | "stateDir" | "runtimesDir" | "startAhead" | "gpus">,
): RunPlane {
  let begun: { reported: Promise<Plane>; ready: Promise<Plane> } | undefined;
  let started: Plane | undefined;
  const begin = () => {
    const taking = deferred<Plane>(); // the plane, once it takes calls
    const reported = (async () => {
      const { Plane } = await import("../../gpu-plane/plane.js"); // loaded only when a plane starts
      const gatewayUrl = gateway.then((g) => g.url.href.replace(/\/$/, ""));
      gatewayUrl.catch(() => {}); // a gateway that does not start fails Plane.start, once it gets to waiting for it
      return Plane.start({
        gatewayUrl,
        secret: options.secret,
        host: "127.0.0.1",
        port: 0,
        region: LOCAL_PLANE_REGION,
        runtime: "docker",
        simulateWhenNone: true,
        ...(options.gpus !== undefined ? { gpus: options.gpus } : {}),
        keepWarm: false,
        preparedPerFunction: 0, // one call: no cold start follows it
        keepLogs: false, // printed here (`log` below); the run's gateway goes with the run
        forceBuild: options.forceBuild ?? false,
        stateDir: options.stateDir,
        ...(options.runtimesDir ? { runtimesDir: options.runtimesDir } : {}),
        ...(options.startAhead ? { startAhead: options.startAhead } : {}),
        // On this machine, already built: taken from here, not fetched from the gateway.
        // An edge function's run bundles them now, if its gateway has not asked for them yet (`planesWhenAsked`).
        bundles: built.then(async (b) =>
          (b.planesWhenAsked ? (await b.planesWhenAsked()).planes : b.planes).map((p) => ({ hash: p.hash, bytes: p.bytes, map: p.map })),
        ),
        log: (line) => console.error(visibleLines(line)),
        onReady: (plane) => taking.resolve((started = plane)),
      });
    })();
    reported.catch((err: unknown) => taking.reject(err));
    // The plane bundles are handed to the plane (`bundles`), which never asks the gateway for them: only the image
    // specs, which the plane does ask for, go into the gateway's blob store (miniflare's R2 set up for them alone).
    const uploading = Promise.all([gateway, built]).then(([g, b]) => (b.images.size ? uploadPlaneBundles(g, { planes: [], images: b.images }) : undefined));
    uploading.catch(() => {}); // met where it is awaited
    // A plane that fails fails at once, not once the gateway is up: workerd's start waits for a plane function's plane
    // (miniflare loads once its container is asked for, or it has failed), so waiting here for the upload, which waits
    // for workerd, left the run waiting on itself and exiting 0 without a word.
    const after = async (plane: Promise<Plane>) => {
      const value = await plane;
      await uploading;
      return value;
    };
    const both = { reported: after(reported), ready: after(taking.promise) };
    // Never an unhandled rejection: a run that fails before it waits for one of them still meets the failure where it does.
    for (const waiting of Object.values(both)) waiting.catch(() => {});
    return both;
  };
  return {
    start: () => (begun ??= begin()).reported,
    ready: () => (begun ??= begin()).ready,
    reported: async () => void (await begun?.reported.catch(() => {})),
    async close() {
      await begun?.reported.catch(() => {});
      // Nothing calls this run's containers again: those with no exit() hooks to run go at once (a class's run them).
      await started?.close({ quick: true });
    },
  };
}
