/**
 * `tandem serve`: bundle the app files, check them in Node, run the gateway in
 * workerd behind the local front door, print every endpoint, stream the
 * functions' logs, and reload on change without failing requests in flight.
 */
import { readFileSync, rmSync, statSync, watch, writeFileSync, type FSWatcher } from "node:fs";
import { dirname, join } from "node:path";
import { Inventory } from "../../gpu-plane/inventory.js";
import { Plane, planeGpus, planeRunningFrom } from "../../gpu-plane/plane.js";
import type { App } from "../app.js";
import { DELIVERY_DEFAULTS } from "../defaults.js";
import { raceDeadline, TIMED_OUT } from "../deadline.js";
import { InvalidOptionsError } from "../errors.js";
import { formatDuration } from "../schedule.js";
import { LOCAL_GATEWAY_FILE } from "../credentials.js";
import { DASHBOARD, paths, type DeployStrategy, type ScheduleInfo } from "../protocol.js";
import { FrontDoor, endpointBodyLimits, endpointsAskingToken, webMounts } from "./front-door.js";
import { BuildCache } from "./build-cache.js";
import { buildApps, checkPlaneFits, LOCAL_PLANE_REGION, localAdminToken, planeSecret, uploadPlaneBundles, type BuiltApps } from "./local-stack.js";
import { stateDir } from "./paths.js";
import { checkNamedSecrets, declaresNamedSecrets, heldSecrets, localSecretValues, localSecretsKey } from "./secret-values.js";
import type { CliConfig } from "./config.js";
import type { ImageFilesProblem } from "./images.js";
import { keepStopSignals } from "./signals.js";
import { startWorkerd, type RunningWorkerd } from "./workerd.js";
import { style, visibleControls, visibleLines } from "./style.js";

/** The call lease under `tandem serve` (a deployed gateway's is `GATEWAY_DEFAULTS.callLeaseSeconds`), unless TANDEM_CALL_LEASE_SECONDS says. */
const SERVE_CALL_LEASE_SECONDS = 5;
import { trace } from "../trace.js";

export interface ServeOptions {
  appFiles: string[];
  /** The `TANDEM_*` settings, read once by the CLI. */
  config: CliConfig;
  host: string;
  port: number;
  /** The local plane's container runtime (default docker). */
  runtime?: "docker" | "process";
  /** A declared, simulated GPU inventory for the local plane (`"A100:2,T4:1"`). */
  gpus?: string;
  /** Seconds a plane container may sit idle before it is stopped (default 60). */
  scaledownWindowSeconds?: number;
  /** Most prepared containers the local plane keeps per function (`--prepared`; default `PLANE_DEFAULTS.preparedPerFunction`). */
  preparedPerFunction?: number;
  /** How a reload's new version replaces the old one's plane containers (default rolling; see `DEPLOY_STRATEGIES`). */
  strategy?: DeployStrategy;
  /** The port of the local plane's API (`--plane-port`); default (or 0): any free port. */
  planePort?: number;
  /** A listener of the local plane's own for `GET /metrics` on this port of 127.0.0.1 (`--metrics-port`); none by default. */
  metricsPort?: number;
  /** Reload on file change (default true). */
  watch?: boolean;
  log?: (line: string) => void;
}

export interface Serving {
  url: URL;
  plane: Plane;
  /** Rejects when serving cannot go on: workerd kept dying as soon as it started (`restartDelayMs`). */
  failed: Promise<never>;
  /**
   * Stops as a server should (Ctrl-C): takes no new request, waits up to `DELIVERY_DEFAULTS.serveStopGraceMs` for the
   * requests in flight and the local plane's inputs to end, saying what it waits for, then closes (`close`). False when
   * a part of it did not stop within `DELIVERY_DEFAULTS.serveCloseMs` (said): the caller quits without it (exit 2).
   */
  stop(): Promise<boolean>;
  /** Ends a `stop`'s wait at once; false when none is under way (nothing to hurry). */
  stopNow(): boolean;
  /**
   * Stops now: requests in flight are answered 503 (a stream is cut), then the plane's containers and the gateway stop.
   * A call the plane was running is left unended to the ledger when it can take it over, and runs again when serve
   * next runs; any other fails, saying tandem serve stopped.
   */
  close(): Promise<void>;
}

/** A workerd that dies within this long of its start died at once: the next start waits longer (`restartDelayMs`). */
const QUICK_DEATH_MS = 30_000;
/** How many quick deaths of workerd in a row `tandem serve` starts it again after; the next one stops serve. */
const RESTARTS_IN_A_ROW = 4;

/**
 * How long `tandem serve` waits before it starts workerd again after its `deaths`-th quick death in a row: at once
 * the first time, then 1 s, 2 s, 4 s; undefined once it has died more often than that, and serve gives up.
 * @example restartDelayMs(1) // 0
 */
export function restartDelayMs(deaths: number): number | undefined {
  if (deaths > RESTARTS_IN_A_ROW) return undefined;
  return deaths <= 1 ? 0 : 1000 * 2 ** (deaths - 2);
}

export async function serve(options: ServeOptions): Promise<Serving> {
  const log = options.log ?? ((line: string) => console.log(line));
  const state = stateDir();
  const another = anotherServeHere(state);
  if (another) throw new Error(another);
  const buildDir = join(state, "build");

  const started = performance.now();
  const secret = planeSecret(state, options.config.planeSecret);
  const planeOptions = { gpus: options.gpus, simulateWhenNone: true };
  const inventory = new Inventory(await planeGpus(planeOptions, log));
  const buildOptions = {
    ...(options.strategy ? { strategy: options.strategy } : {}),
    // The gateway's own modules, kept in .tandem/cache/build apart from the apps': a reload bundles only the apps'.
    runtimeApart: new BuildCache(join(state, "cache", "build")),
  };
  let built = await buildApps(options.appFiles, join(buildDir, "current"), buildOptions);
  checkPlaneFits(built.apps, inventory);
  // The local admin token, unless the environment sets one for the gateway (TANDEM_ADMIN_TOKEN).
  const adminToken = options.config.gatewayVars.TANDEM_ADMIN_TOKEN || localAdminToken(state);
  const secretsKey = localSecretsKey(state, options.config.gatewayVars.TANDEM_SECRETS_KEY);
  // Local secrets' values go to workerd in memory, with each build's bindings: never into a bundle or a file.
  const bindingsFor = (apps: App[]) => ({
    // Every runner shares the ledger's isolate here, which sees them alive however late their renewals come: a short
    // lease loses nothing, and a spawned call under way when the app reloads (workerd restarts) goes on in seconds.
    TANDEM_CALL_LEASE_SECONDS: String(SERVE_CALL_LEASE_SECONDS),
    ...options.config.gatewayVars,
    TANDEM_PLANE_SECRET: secret,
    TANDEM_ADMIN_TOKEN: adminToken,
    TANDEM_SECRETS_KEY: secretsKey,
    TANDEM_LOCAL_SECRETS: JSON.stringify(localSecretValues(apps, options.appFiles)),
  });
  const bindings = bindingsFor(built.apps);
  const { door, url } = await FrontDoor.listen(options.host, options.port);
  door.maxBodyBytes = options.config.gatewayConfig.maxBodyBytes;
  door.endpointBodyLimits = endpointBodyLimits(built.apps);
  door.endpointsAskingToken = endpointsAskingToken(built.apps);
  door.webMounts = webMounts(built.apps);
  door.onRequest = (method, path, status, ms, cut, forContainer) => {
    const line = requestLine(method, path, status, ms, cut, forContainer);
    if (line !== undefined) log(line);
  };
  // A reload holds new requests while the old gateway finishes its requests in flight: say what it waits for.
  door.onHoldWaiting = (requests, until) => {
    const shown = firstFew(requests);
    const what = (one: string) => (requests.length === 1 ? `a ${one}` : `${requests.length} ${one}s`);
    log(
      style.dim(
        until === "cut"
          ? `↻ the reload waits for ${what("call")} in flight (${shown}) for at most ${door.resumableWaitMs / 1000} s, then cuts ${requests.length === 1 ? "it" : "them"}: the client sends ${requests.length === 1 ? "it" : "them"} again to the new version, which goes on with the call; new requests wait meanwhile`
          : `↻ the reload waits for ${what("request")} in flight to end (${shown}), for at most 5 minutes (one whose body stops coming is answered 408 after ${door.bodyIdleMs / 1000} s without a byte); new requests wait meanwhile`,
      ),
    );
  };
  // The plane gets ready (Docker, its base image) while workerd starts, and reports once the gateway answers.
  const gatewayStarting = startWorkerd({ worker: built.worker, persistDir: join(state, "state"), bindings, onOutput: echoGatewayLine }).then(
    async (backend) => {
      await uploadPlaneBundles(backend, built).catch(async (err: unknown) => {
        await backend.dispose();
        throw err;
      });
      door.swap(backend);
      return backend;
    },
  );
  const [gatewayStarted, planeStarted] = await Promise.allSettled([
    gatewayStarting,
    Plane.start({
      ...planeOptions,
      gatewayUrl: gatewayStarting.then(() => url.href.replace(/\/$/, "")),
      secret,
      host: options.host,
      port: options.planePort ?? 0,
      region: LOCAL_PLANE_REGION,
      runtime: options.runtime ?? "docker",
      stateDir: join(state, "serve-plane"),
      forceBuild: options.config.forceBuild,
      ...(options.config.metricsToken ? { metricsToken: options.config.metricsToken } : {}),
      ...(options.metricsPort === undefined ? {} : { metricsListen: { host: "127.0.0.1", port: options.metricsPort } }),
      ...(options.config.otlp ? { otlp: options.config.otlp } : {}),
      ...(options.scaledownWindowSeconds === undefined ? {} : { scaledownWindowSeconds: options.scaledownWindowSeconds }),
      ...(options.preparedPerFunction === undefined ? {} : { preparedPerFunction: options.preparedPerFunction }),
      // Its lines quote its containers' (what functions print): shown as `tandem logs` shows them.
      log: (line) => log(visibleLines(line)),
    }),
  ]);
  if (gatewayStarted.status === "rejected" || planeStarted.status === "rejected") {
    if (planeStarted.status === "fulfilled") await planeStarted.value.close();
    await door.close(); // and the gateway, if it started: the door has it
    if (gatewayStarted.status === "rejected") throw gatewayStarted.reason;
    const reason = (planeStarted as PromiseRejectedResult).reason as NodeJS.ErrnoException;
    if (reason.code === "EADDRINUSE" && options.planePort)
      throw new InvalidOptionsError(
        `port ${options.planePort} on ${options.host} is already in use, so the local plane cannot listen there; pick another with --plane-port, or leave it out for any free port`,
      );
    throw reason;
  }
  const plane = planeStarted.value;
  let live = gatewayStarted.value;
  let liveSince = performance.now();
  let failedWith: (err: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => (failedWith = reject));
  failed.catch(() => {}); // the CLI listens; a caller that does not loses nothing
  log(
    `${style.ok("✓")} gateway ready at ${style.bold(url.href.replace(/\/$/, ""))} ${style.dim(`(workerd, ${Math.round(performance.now() - started)} ms, state in ${join(".tandem", "state")})`)}`,
  );
  // The CLI and the SDK run in this folder find this gateway without --gateway, whatever its port (localGatewayUrl).
  const servedFile = join(state, "..", LOCAL_GATEWAY_FILE);
  writeFileSync(servedFile, JSON.stringify({ url: url.href.replace(/\/$/, ""), pid: process.pid }) + "\n");
  log(`${style.ok("✓")} ${plane.describe()}`);
  if (plane.metricsUrl) log(style.dim(`  metrics at ${plane.metricsUrl}`));
  if (plane.inventory.simulated) {
    const why = options.gpus ? `declared with --gpus "${options.gpus}"` : "no nvidia-smi here, so the local plane declares one of each known type";
    log(style.warn(`  GPUs are simulated (${why}); scheduling and CUDA_VISIBLE_DEVICES work as with real ones.`));
  }
  printEndpoints(built.apps, url, log, await scheduledNext(built.apps, live.url, adminToken));
  log(style.dim(`  dashboard ${url.href.replace(/\/$/, "")}${DASHBOARD.base}/ (npx tandem dashboard logs a browser in)`));
  // A named secret the app declares and the gateway lacks: said now. The gateway stays up, so that
  // `tandem secret create` can reach it; calls read secrets when they run, so nothing needs loading again.
  if (declaresNamedSecrets(built.apps)) {
    try {
      checkNamedSecrets(built.apps, await heldSecrets(url.href, adminToken));
    } catch (err) {
      // On a line of its own: after several missing secrets, one line each, it read as the last one's alone.
      log(`${style.err("✗")} ${(err as Error).message}`);
      log(style.dim("  the app is served meanwhile: its calls find a secret once it exists, with no reload"));
    }
  }

  let watchers: FSWatcher[] = [];
  let generation = 0;
  // The app's source files, and what its images copy in (a file, or anything in a folder): a save of any reloads.
  const rewatch = (from: BuiltApps) => {
    for (const w of watchers) w.close();
    const folders = from.imagePaths.filter((path) => statSync(path, { throwIfNoEntry: false })?.isDirectory());
    const files = new Set([...from.worker.inputs, ...from.imagePaths.filter((path) => !folders.includes(path))]);
    let timer: NodeJS.Timeout | undefined;
    const changed = () => {
      clearTimeout(timer);
      timer = setTimeout(() => void reload(), 100);
    };
    // A folder that is not there (a missing image file's own) cannot be watched: its file reloads once a save does.
    const watched = (make: () => FSWatcher) => {
      try {
        return [make()];
      } catch {
        return [];
      }
    };
    watchers = [
      ...[...new Set([...files].map((f) => dirname(f)))].flatMap((dir) =>
        watched(() =>
          watch(dir, (_event, name) => {
            if (name && files.has(join(dir, name.toString()))) changed();
          }),
        ),
      ),
      ...folders.flatMap((dir) => watched(() => watch(dir, { recursive: true }, changed))),
    ];
  };

  // One reload at a time, each of the newest source: the old workerd stops before the new one starts (`door.hold`),
  // since both would open the same Durable Objects under .tandem/state, and neither would see what the other wrote
  // (a call spawned just before a reload, read after it, waited out its whole timeout).
  let reloading = Promise.resolve();
  let closed = false;
  const reload = () => {
    const n = ++generation;
    reloading = reloading
      .then(() => (n === generation ? reloadNow() : undefined))
      .catch((err: unknown) => log(`${style.err("✗")} reload failed: ${(err as Error).message}`));
    return reloading;
  };
  // `check`: refused when a named secret it declares lacks a key (the previous version, started again, is not: it was
  // checked when it went live, and serving it lets `tandem secret create` reach the gateway).
  const startGateway = async (next: typeof built, check: boolean) => {
    const backend = await startWorkerd({ worker: next.worker, persistDir: join(state, "state"), bindings: bindingsFor(next.apps), onOutput: echoGatewayLine });
    keepStopSignals(); // the old workerd stopped first, so this one's miniflare added its exit-at-once handlers again
    try {
      await uploadPlaneBundles(backend, next);
      if (check && declaresNamedSecrets(next.apps)) checkNamedSecrets(next.apps, await heldSecrets(backend.url.href, adminToken));
    } catch (err) {
      await backend.dispose();
      throw err;
    }
    watchExit(backend);
    liveSince = performance.now();
    return backend;
  };

  // A workerd that dies on its own (killed, crashed, out of memory) is started again with the app it served, as a
  // reload starts one: requests wait at the front door meanwhile. One that keeps dying as soon as it starts is started
  // after longer and longer pauses, and then no more: serve stops (`failed`).
  let deaths = 0;
  const watchExit = (backend: RunningWorkerd) => {
    void backend.exited.then((exit) => {
      if (backend !== live || closed) return; // a reload's old one, or serve stopping: stopped on purpose
      deaths = performance.now() - liveSince < QUICK_DEATH_MS ? deaths + 1 : 1;
      const how = `${exit.pid === undefined ? "" : ` (pid ${exit.pid})`} exited unexpectedly (${exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`})`;
      reloading = reloading.then(() => restartGateway(backend, how)).catch((err: unknown) => log(`${style.err("✗")} ${(err as Error).message}`));
    });
  };
  const restartGateway = async (dead: RunningWorkerd, how: string) => {
    if (dead !== live || closed) return; // a reload queued before this replaced it
    for (;;) {
      const delay = restartDelayMs(deaths);
      if (delay === undefined) {
        // Said by the CLI, which stops serve (exit code 1).
        return failedWith(
          new Error(
            `the gateway's workerd${how}, its ${deaths}th death in a row within ${QUICK_DEATH_MS / 1000} s of its start; tandem serve gives up (its output above may say why)`,
          ),
        );
      }
      log(`${style.err("✗")} the gateway's workerd${how}; starting it again${delay ? ` in ${delay / 1000} s` : ""}, requests wait meanwhile`);
      const t0 = performance.now();
      await door.hold(true);
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (closed) return;
      try {
        live = await startGateway(built, false);
      } catch (err) {
        deaths++;
        how = ` did not start again: ${(err as Error).message}`;
        continue;
      }
      if (closed) return void (await live.dispose());
      door.swap(live);
      void tick(Date.now());
      return log(`${style.ok("↻")} the gateway started again in ${Math.round(performance.now() - t0)} ms`);
    }
  };
  watchExit(live);
  const reloadNow = async () => {
    const t0 = performance.now();
    let next: typeof built;
    try {
      next = await buildApps(options.appFiles, join(buildDir, `gen-${generation}`), buildOptions);
      checkPlaneFits(next.apps, inventory);
    } catch (err) {
      // An image's local file missing or too large: watched too, so that fixing it reloads (before: only a save did).
      const more = (err as ImageFilesProblem).watchPaths;
      if (more) rewatch({ ...built, imagePaths: [...new Set([...built.imagePaths, ...more])] });
      return log(`${style.err("✗")} reload failed, still serving the previous version:\n${(err as Error).message}`);
    }
    // Requests wait at the front door from here until a gateway is swapped in: the new one, or the previous again.
    await door.hold();
    try {
      live = await startGateway(next, true);
      if (closed) return void (await live.dispose()); // serve stopped meanwhile: the door is closed
    } catch (err) {
      log(`${style.err("✗")} reload failed, still serving the previous version:\n${(err as Error).message}`);
      try {
        live = await startGateway(built, false);
        door.swap(live);
      } catch (again) {
        log(`${style.err("✗")} the previous version did not start again either: ${(again as Error).message}; save a file to try again`);
        door.release();
      }
      return;
    }
    door.endpointBodyLimits = endpointBodyLimits(next.apps);
    door.endpointsAskingToken = endpointsAskingToken(next.apps);
    door.webMounts = webMounts(next.apps);
    door.swap(live);
    void tick(Date.now()); // a changed schedule counts from now
    built = next;
    rewatch(built);
    log(`${style.ok("↻")} reloaded in ${Math.round(performance.now() - t0)} ms`);
    printEndpoints(next.apps, url, log, await scheduledNext(next.apps, live.url, adminToken));
  };

  // miniflare fires no cron triggers: serve calls the Worker's scheduled handler at the start of every minute, as
  // the deployed cron trigger does, and once now (the Scheduler's alarm keeps finer schedules on time in between).
  let tickTimer: NodeJS.Timeout | undefined;
  const tick = async (at: number) => {
    try {
      await live.scheduled(new Date(at));
    } catch (err) {
      log(style.warn(`schedules: the tick of ${new Date(at).toISOString()} failed: ${(err as Error).message}`));
    }
  };
  const tickEveryMinute = () => {
    const next = Math.floor(Date.now() / 60_000) * 60_000 + 60_000;
    tickTimer = setTimeout(() => {
      void tick(next);
      tickEveryMinute();
    }, next - Date.now());
  };
  void tick(Date.now());
  tickEveryMinute();

  // An edge function's code that does not await (a loop that computes) holds the gateway isolate's one thread, where
  // its timeout cannot stop it: every request waits, with nothing said. Said once the gateway has answered nothing for
  // `serveHeldWarnMs`, and again when it answers.
  let heldTimer: NodeJS.Timeout | undefined;
  const watchHeld = async () => {
    const backend = live;
    const asked = performance.now();
    let said = false;
    const warn = setTimeout(() => {
      said = true;
      log(
        style.warn(
          `the gateway has answered nothing for ${DELIVERY_DEFAULTS.serveHeldWarnMs / 1000} s: an edge function's code that does not await (a loop that computes) holds its one thread, where the function's timeout cannot stop it, and every request waits until it returns. Run such work on the plane, or as WebAssembly, which stops at its timeout (docs/api.md, "Code that does not await")`,
        ),
      );
    }, DELIVERY_DEFAULTS.serveHeldWarnMs);
    warn.unref();
    await fetch(new URL(paths.health(), backend.url)).then(
      (res) => res.body?.cancel(),
      () => undefined,
    );
    clearTimeout(warn);
    if (closed) return;
    if (said && backend === live) log(`${style.ok("↻")} the gateway answers again, after ${((performance.now() - asked) / 1000).toFixed(1)} s`);
    heldTimer = setTimeout(() => void watchHeld(), 2_000);
    heldTimer.unref();
  };
  void watchHeld();

  if (options.watch !== false) rewatch(built);
  let hurry: (() => void) | undefined;
  const serving: Serving = {
    url,
    plane,
    failed,
    async stop() {
      clearTimeout(tickTimer); // no scheduled run starts now
      const drained = door.drain();
      const requests = door.waitingFor;
      const inputs = plane.probe().inFlight;
      if (requests.length || inputs) {
        const grace = DELIVERY_DEFAULTS.serveStopGraceMs;
        const shown = firstFew(requests);
        const what = [
          requests.length ? `${requests.length === 1 ? "a request" : `${requests.length} requests`} in flight (${shown})` : "",
          inputs ? `${inputs === 1 ? "an input" : `${inputs} inputs`} running on the local plane` : "",
        ].filter(Boolean);
        log(style.warn(`stopping: no new requests; waiting up to ${grace / 1000} s for ${what.join(" and ")} to end, Ctrl-C again to stop now`));
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.all([drained, inputs ? plane.drain(grace) : undefined]),
          new Promise<void>((resolve) => {
            hurry = resolve;
            timer = setTimeout(resolve, grace);
          }),
        ]);
        clearTimeout(timer);
        hurry = undefined;
      }
      log(style.dim("stopping the local plane's containers and the gateway… (Ctrl-C again to quit now)"));
      const stuck = await stepsInTime((step) => closeSteps(step), DELIVERY_DEFAULTS.serveCloseMs);
      if (stuck === undefined) return true;
      log(
        `${style.err("✗")} ${stuck} did not stop within ${DELIVERY_DEFAULTS.serveCloseMs / 1000} s; quitting without it ` +
          `(containers the local plane leaves are removed when tandem serve starts here again)`,
      );
      return false;
    },
    stopNow() {
      if (!hurry) return false;
      hurry();
      return true;
    },
    close: () => closeSteps(() => {}),
  };
  /** `close`, saying to `step` what it stops next. */
  const closeSteps = async (step: (what: string) => void): Promise<void> => {
    clearTimeout(tickTimer);
    clearTimeout(heldTimer);
    for (const w of watchers) w.close();
    closed = true;
    forgetServed(servedFile);
    // The requests in flight answered first (503), as the plane's containers take a moment to stop; the gateway
    // stops last, as the plane sends it its last log lines and its volumes' last commits. An input the plane stops is
    // answered as cut by serve's stop, not failed: the gateway leaves a call its ledger can take over (spawned, or sent
    // with an Idempotency-Key) to the ledger, which runs it again when serve runs again.
    step("answering the requests in flight");
    await door.cut();
    step("the local plane (its containers, its last log lines)");
    await plane?.close({ withGateway: true });
    trace("serve: plane closed");
    step("the gateway (workerd)");
    await door.close();
    await reloading; // one under way stops what it started
    trace("serve: gateway closed");
  };
  return serving;
}

/**
 * Runs `steps`, which names each step as it begins: undefined once they end, or the step under way when `ms` pass
 * first (left running). A stop that hangs on one part (a container engine that no longer answers) is said, not waited
 * on for ever.
 * @example
 * await stepsInTime(async (step) => { step("the plane"); await plane.close(); }, 30_000) // undefined, or "the plane"
 */
export async function stepsInTime(steps: (step: (what: string) => void) => Promise<void>, ms: number): Promise<string | undefined> {
  let current = "stopping";
  const outcome = await raceDeadline(
    steps((what) => {
      current = what;
      trace(`serve: stopping ${what}`);
    }),
    Date.now() + ms,
  );
  return outcome === TIMED_OUT ? current : undefined;
}

/**
 * A line of workerd's output (the edge functions' console lines, each with its `[app.function call]` prefix) on this
 * process's stream of the same name, its control characters visible as `tandem logs` shows them: a function's text
 * cannot recolour, erase or retitle the terminal `tandem serve` runs in.
 */
function echoGatewayLine(line: string, stream: "stdout" | "stderr"): void {
  if (isHarmlessWorkerdLine(line)) return;
  (stream === "stdout" ? process.stdout : process.stderr).write(visibleControls(line) + "\n");
}

/**
 * Why this folder cannot be served now, or undefined: another `tandem serve` runs in it (it holds the local plane's
 * folder, `.tandem/serve-plane`), and two would each open the same Durable Objects and containers. Its port comes from
 * `.tandem/gateway.json`, once it has written it.
 * @example anotherServeHere(".tandem") // "another `tandem serve` (process 14231, at http://127.0.0.1:8787) is running in this folder; …"
 */
export function anotherServeHere(state: string): string | undefined {
  const holder = planeRunningFrom(join(state, "serve-plane"));
  if (holder === undefined) return undefined;
  let at = "";
  try {
    const served = JSON.parse(readFileSync(join(state, "..", LOCAL_GATEWAY_FILE), "utf8")) as { url?: unknown; pid?: unknown };
    if (served.pid === holder && typeof served.url === "string") at = `, at ${served.url}`;
  } catch {
    // not written yet (it is still starting), or gone: said without its port
  }
  return `another \`tandem serve\` (process ${holder}${at}) is running in this folder; stop it (Ctrl-C in its terminal, or kill ${holder}), or serve from another folder`;
}

/**
 * workerd's own lines that tell of nothing wrong with the app or the gateway, though they read as a crash: an answer
 * it could not finish writing because its client went away (a `.map` or a stream left early, a follow stopped), and
 * a Durable Object's alarm handler cancelled because the object set its next alarm meanwhile (the Scheduler does so
 * as each schedule runs; seen after a restart, when an alarm that came due while workerd was down runs at once).
 * @example isHarmlessWorkerdLine("workerd/server/server.c++:5351: error: … = kj/async-io-unix.c++:186: disconnected: ::write(…): Broken pipe"); // true
 */
export function isHarmlessWorkerdLine(line: string): boolean {
  return (
    /^workerd\/\S+: error: .*: disconnected: .*(Broken pipe|Connection reset by peer)/.test(line) ||
    /^workerd\/io\/actor-sqlite\.c\+\+:\d+: warning: NOSENTRY SQLite alarm handler canceled with requestScheduledAlarm\./.test(line)
  );
}

/**
 * How serve prints a request once it has ended: its status as the client got it, or that it got none (cut before its
 * answer began: the client left, or serve stopped), and whether its answer was cut short. Undefined for the local
 * plane's own requests that went well (heartbeats, bundle fetches: not the user's traffic), and for those it carried
 * for a function's container that went well (its dict, queue and volume operations, which an edge function's are not
 * printed either: a queue consumer's would drown its lines).
 * @example requestLine("POST", "/v1/apps/a/functions/f/call", undefined, 3527.4, true) // "POST /v1/apps/a/functions/f/call no answer (cut) 3527.4 ms"
 */
export function requestLine(method: string, path: string, status: number | undefined, ms: number, cut: boolean, forContainer = false): string | undefined {
  const wentWell = status !== undefined && status < 400 && !cut;
  if (wentWell && (forContainer || path.startsWith("/v1/planes/"))) return undefined;
  const code =
    status === undefined
      ? style.err("no answer (cut)")
      : (status >= 500 ? style.err : status >= 400 ? style.warn : style.ok)(String(status)) + (cut ? style.err(" (cut)") : "");
  return style.dim(`${method} ${path} `) + code + style.dim(` ${ms.toFixed(1)} ms`);
}

/** Removes the file that says where this process serves, unless another serve has written it since. */
function forgetServed(file: string): void {
  try {
    if ((JSON.parse(readFileSync(file, "utf8")) as { pid?: unknown }).pid === process.pid) rmSync(file);
  } catch {
    // gone already, or not ours to remove
  }
}

/** The first three of `names`, and how many more: `a, b, c, and 2 more`. */
function firstFew(names: string[]): string {
  return names.slice(0, 3).join(", ") + (names.length > 3 ? `, and ${names.length - 3} more` : "");
}

/**
 * When each scheduled function runs next, by `<app>.<function>`, as the gateway's Scheduler keeps it (`tandem schedule
 * list`): a period counts from when the schedule was first seen, not from a reload. Empty when the gateway cannot say,
 * and without asking it when no app has a schedule.
 */
async function scheduledNext(apps: App[], gateway: URL, adminToken: string): Promise<Map<string, number>> {
  if (!apps.some((app) => app.callables.some((fn) => fn.spec.schedule))) return new Map();
  try {
    const res = await fetch(new URL(paths.schedules(), gateway), { headers: { authorization: `Bearer ${adminToken}` } });
    if (!res.ok) {
      await res.body?.cancel();
      return new Map();
    }
    const { schedules } = (await res.json()) as { schedules: ScheduleInfo[] };
    return new Map(schedules.filter((s) => s.nextRuns[0] !== undefined).map((s) => [`${s.app}.${s.function}`, s.nextRuns[0]!]));
  } catch {
    return new Map();
  }
}

/** `next` (`scheduledNext`): when each schedule runs next; one it lacks is counted from now. */
export function printEndpoints(apps: App[], url: URL, log: (line: string) => void, next: ReadonlyMap<string, number> = new Map(), now = Date.now()): void {
  const base = url.href.replace(/\/$/, "");
  for (const app of apps) {
    log("");
    log(`  ${style.bold(`app ${app.name}`)}`);
    for (const fn of app.callables) {
      const kind = fn.kind === "method" ? "method  " : fn.kind === "wasm" ? "wasm    " : "function";
      const route = fn.generator ? paths.stream(app.name, fn.name) : paths.call(app.name, fn.name);
      const notes = [fn.generator ? "generator" : "", fn.spec.tier === "plane" ? "plane" : ""].filter(Boolean).join(", ");
      log(`    ${kind}  ${fn.name.padEnd(20)} ${style.dim(`POST ${base}${route}`)}${notes ? style.dim(`  (${notes})`) : ""}`);
    }
    for (const fn of app.callables.filter((c) => c.spec.schedule)) {
      const schedule = fn.spec.schedule!;
      const at = next.get(`${app.name}.${fn.name}`) ?? schedule.nextRuns(1, { from: now })[0]!.getTime();
      const when = schedule.kind === "cron" ? new Date(at).toISOString() : at <= now ? "now" : `in ${formatDuration(Math.ceil((at - now) / 1000) * 1000)}`;
      log(`    schedule  ${fn.name.padEnd(20)} ${schedule.description}${style.dim(`, next ${when}`)}`);
      // Types cannot say it (a handler's parameters may be optional), so it is said here: each run gets undefined for them.
      if (fn.parameters > 0)
        log(
          style.warn(
            `      ⚠ a schedule calls ${fn.name} with no arguments, and its handler takes ${fn.parameters === 1 ? "a parameter" : `${fn.parameters} parameters`} with no default: each scheduled run gets undefined for ${fn.parameters === 1 ? "it" : "them"}; give ${fn.parameters === 1 ? "it a default" : "them defaults"}, which also says an optional one is meant so (docs/schedules.md)`,
          ),
        );
    }
    const guarded = (auth: string) => (auth === "token" ? style.dim("  (needs a token)") : "");
    for (const mount of app.webMounts) log(`    web       ${mount.label.padEnd(20)} ${base}${paths.web(app.name, mount.label)}/${guarded(mount.auth)}`);
    for (const e of app.endpoints) log(`    endpoint  ${e.label.padEnd(20)} ${e.method} ${base}${paths.web(app.name, e.label, e.path)}${guarded(e.auth)}`);
    for (const a of app.agents) log(`    websocket ${a.label.padEnd(20)} ${base.replace(/^http/, "ws")}${paths.web(app.name, a.label)}${guarded(a.auth)}`);
  }
  log("");
}
