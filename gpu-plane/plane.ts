/**
 * One plane node: its inventory, its container driver, the dispatcher, the
 * HTTP API the gateway calls, and the heartbeat that registers it with the
 * gateway. `tandem plane` starts one; `tandem serve` starts one beside the
 * local gateway.
 */
import { createServer, type RequestListener, type Server } from "node:http";
import { isIPv6, type AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TIMED_OUT, raceDeadline } from "../sdk/deadline.js";
import { ImageBuildError, InvalidOptionsError, NoCapacityError, PlaneUnavailableError, RemoteError, hostNotHere } from "../sdk/errors.js";
import { GPU_TYPES, parseGpuInventory, type GpuType } from "../sdk/gpu.js";
import { DELIVERY_DEFAULTS, FUNCTION_DEFAULTS, PLANE_DEFAULTS } from "../sdk/defaults.js";
import { LeftoverRemoval, leftoverRemover } from "./leftovers.js";
import {
  GATEWAY_AUDIENCE,
  PLANE_ID_PATTERN,
  PLANE_METRICS_ROUTE,
  PROTOCOL_VERSION,
  paths,
  type EncodedValue,
  type HeartbeatAnswer,
  type PlaneHeartbeat,
  type PlaneProbeAnswer,
  type PlaneRunRequest,
  type PlaneRunResponse,
  type WarmPoolRef,
} from "../sdk/protocol.js";
import { NonceCache, signRequest, useHmacEngine } from "../sdk/signing.js";
import { trace } from "../sdk/trace.js";
import { ContainerGateway } from "./container-api.js";
import type { PreparedSummary } from "./prepared-containers.js";
import { SnapshotStore } from "./snapshots.js";
import { VolumeMounts } from "./volume-mounts.js";
import { BundleCache, type HandedBundle } from "./bundle-cache.js";
import type { ContainerDriver } from "./drivers/driver.js";
import { ProcessDriver } from "./drivers/process.js";
import { Inventory, detectGpus, simulatedGpus } from "./inventory.js";
import { nodeHmacEngine } from "./node-hmac.js";
import type { ContainerSummary, FunctionStats } from "./container-pool.js";
import type { PoolDescriptor } from "./pool-descriptor.js";
import { Dispatcher } from "./dispatcher.js";
import { OutcomeCache } from "./outcome-cache.js";
import { LogShipper, type PlaneLogLine } from "./log-shipper.js";
import { metricsListener } from "./metrics-server.js";
import { OtlpExporter } from "./otlp-exporter.js";
import type { CallMeter, PlaneMetrics } from "./plane-metrics.js";
import type { OtlpSettings } from "../sdk/settings.js";
import { UsageLedger } from "./usage-ledger.js";
import { planeServer } from "./server.js";
import { fetchImageSecrets, fetchWarmSecrets } from "./warm-secrets.js";
import { networkReason } from "./gateway-get.js";
import { keepConnectionsShort } from "./keep-alive.js";

/**
 * How a heartbeat went: the gateway took it; refused it (a 4xx answer: a secret that is not the gateway's, a clock
 * too far off, a gateway with no secret), which trying again will not change; or could not be reached (no answer
 * in time, or a 5xx), which it may.
 */
export type HeartbeatOutcome = { kind: "accepted" } | { kind: "refused"; reason: string } | { kind: "unreachable"; reason: string };

/** The drivers a plane runs (never the unit tests' fake), named as heartbeats carry them. */
type PlaneDriver = ContainerDriver & { readonly name: PlaneHeartbeat["runtime"] };

export interface PlaneOptions {
  /**
   * The gateway this plane reports to. A promise lets the plane get ready
   * (inventory, Docker engine, base image) while its gateway is still starting
   * (`tandem run`, `tandem serve`); it first reports once the URL is known.
   */
  gatewayUrl: string | Promise<string>;
  /** Shared with the gateway; signs every request both ways. */
  secret: string;
  host: string;
  /** 0 picks a free port. */
  port: number;
  region: string;
  /** A declared inventory (`"A100:2,T4:1"`), simulated. */
  gpus?: string;
  /**
   * Whether its containers' lines and its own lines about calls go to the gateway's log stores (default true).
   * `tandem run`'s plane sends none: its gateway, and what that gateway keeps, go when the run ends, and the
   * lines are printed to the run's terminal as they come.
   */
  keepLogs?: boolean;
  /** With no real GPUs and no `gpus`, declare one of each known type (what `tandem serve` does). */
  simulateWhenNone?: boolean;
  runtime: "docker" | "process";
  /** The Docker runtime of function containers, `runsc` (gVisor) or `runc`; left out: runsc where the engine lists it, else runc. */
  dockerRuntime?: string;
  /** Rebuild every image step, cache or not (`TANDEM_FORCE_BUILD=1`). */
  forceBuild?: boolean;
  stateDir: string;
  /**
   * Where joined bundles' runtimes and their V8 code caches are kept (gpu-plane/runtime-code.ts); default `bundles/runtimes`
   * in `stateDir`. `tandem run` gives its project's cache, which outlives each run's plane.
   */
  runtimesDir?: string;
  /** Seconds idle before a container is stopped; default 60 (`FUNCTION_DEFAULTS.scaledownWindowSeconds`). */
  scaledownWindowSeconds?: number;
  /** Most memory snapshots kept on the plane's disk (`--snapshot-max`); default `PLANE_DEFAULTS.snapshotMax`. */
  snapshotMax?: number;
  /** Most bytes of memory snapshots kept (`--snapshot-max-bytes`); default `PLANE_DEFAULTS.snapshotMaxBytes`. */
  snapshotMaxBytes?: number;
  /**
   * Seconds an old version's containers may take to finish their inputs once a new version of their function is live
   * (`--version-drain-timeout`); default `PLANE_DEFAULTS.versionDrainTimeoutSeconds`.
   */
  versionDrainTimeoutSeconds?: number;
  /**
   * Most prepared containers kept per function (`--prepared`): started and paused ahead of its cold starts, as its
   * recent cold starts ask (gpu-plane/prepared-containers.ts); default `PLANE_DEFAULTS.preparedPerFunction`; 0: none.
   */
  preparedPerFunction?: number;
  /** Keep the warm pools (`minContainers`) the gateway assigns; default true. `tandem run`'s one-call plane does not. */
  keepWarm?: boolean;
  /**
   * A container to start as soon as the plane is ready, for an input known to
   * be coming (`tandem run`'s one call, while its gateway starts): its pool,
   * and its bundle, handed over rather than fetched from the gateway. A
   * promise lets the plane get ready while the bundle is still bundling; one
   * that fails (or gives nothing) starts nothing ahead.
   */
  startAhead?: StartAhead | Promise<StartAhead | undefined>;
  /**
   * Bundles handed over by the process that built them, on this machine (`tandem run`'s plane): taken, with their
   * source maps, from here rather than fetched from the gateway, which need not hold them. A promise lets the plane
   * get ready while they are still bundling; its bundles are waited for only when first needed.
   */
  bundles?: HandedBundle[] | Promise<HandedBundle[]>;
  log?: (line: string) => void;
  /**
   * The token a scrape of `GET /metrics` on the plane's API port must carry as a bearer token (`TANDEM_METRICS_TOKEN`),
   * and on the metrics listener too when there is one; without it, only the metrics listener answers.
   */
  metricsToken?: string;
  /** A listener of its own for `GET /metrics` (`--metrics-port`, `--metrics-host`; 127.0.0.1 by default). Port 0 picks one. */
  metricsListen?: { host: string; port: number };
  /**
   * Where to send the plane's logs and metrics over OTLP/HTTP (`TANDEM_OTLP_ENDPOINT`, `TANDEM_OTLP_HEADERS`); the
   * intervals default to `METRICS_DEFAULTS` (tests make them small).
   */
  otlp?: OtlpSettings & { logsFlushMs?: number; metricsIntervalMs?: number };
  /**
   * Told how each heartbeat went, the first one before `start` returns. Without it, the plane logs when the gateway
   * stops taking its heartbeats and when it takes them again.
   */
  onHeartbeat?: (outcome: HeartbeatOutcome) => void;
  /**
   * Told once the plane takes calls, just before its first heartbeat: `tandem run` hands the gateway the plane's
   * report ({@link Plane.report}) through its `LOCAL_PLANE` binding, so its first call does not wait for that heartbeat.
   */
  onReady?: (plane: Plane) => void;
}

/** A container a plane starts ahead of its input: see `PlaneOptions.startAhead`. */
export interface StartAhead {
  pool: PoolDescriptor;
  bundle: Uint8Array;
  nodeModules?: string;
  /**
   * Told once the container runtime has been asked to run it, or once it will not be (the plane cannot start
   * containers, or failed first), so that work which would hold this thread waits until then: `tandem run` loads
   * miniflare (a third of a second of synchronous work) while the engine starts the container, not before.
   */
  asked?: () => void;
}

export class Plane {
  readonly planeId: string;
  readonly url: string;
  readonly inventory: Inventory;
  readonly driver: PlaneDriver;
  /** Why containers cannot start here (no engine, say), if they cannot. */
  readonly #cannotStart: string | undefined;
  /** The containers a previous run left behind, removed (tried again while that fails) before calls are taken. */
  readonly #leftovers: LeftoverRemoval;
  /** When this process made the plane: of two processes with one id, the gateway takes the later one's heartbeats. */
  readonly startedAt = Date.now();
  /** The plane's Prometheus series (plane-metrics.ts). */
  readonly metrics: PlaneMetrics;
  /** The metrics listener's scrape URL (`…/metrics`), when `metricsListen` asked for one. */
  readonly metricsUrl: string | undefined;
  readonly #options: PlaneOptions & { gatewayUrl: string };
  readonly #dispatcher: Dispatcher;
  readonly #mounts: VolumeMounts;
  readonly #bundles: BundleCache;
  readonly #usage: UsageLedger;
  readonly #outcomes: OutcomeCache<PlaneRunResponse>;
  readonly #logs: LogShipper;
  readonly #server: Server;
  readonly #metricsServer: Server | undefined;
  readonly #otlp: OtlpExporter | undefined;
  /** Bundles already on disk (and their node_modules checked), by hash. */
  readonly #prepared = new Map<string, string>();
  #heartbeat: NodeJS.Timeout | undefined;
  /** Closing: heartbeats that fail now say nothing. */
  #closing = false;
  #gatewayDown = false;
  /** Whether the gateway took the last heartbeat, and when it last took one (ms since the epoch): the plane's metrics. */
  #reachable = false;
  #lastAccepted: number | undefined;
  /** Told to stop (`drain`): the inputs it has run to their end, and no new one is taken. */
  #draining = false;
  /** Inputs (runs and streams) taken and not yet answered. */
  #inFlight = 0;
  /** Wakes `drain` when the last input in flight ends. */
  #onIdle: (() => void) | undefined;
  /** Nonces of the gateway's signed answers (warm containers' and images' secrets): each is taken once. */
  readonly #answerNonces: NonceCache;

  private constructor(init: {
    planeId: string;
    url: string;
    inventory: Inventory;
    driver: PlaneDriver;
    cannotStart: string | undefined;
    leftovers: LeftoverRemoval;
    options: PlaneOptions & { gatewayUrl: string };
    dispatcher: Dispatcher;
    mounts: VolumeMounts;
    bundles: BundleCache;
    usage: UsageLedger;
    outcomes: OutcomeCache<PlaneRunResponse>;
    logs: LogShipper;
    server: Server;
    answerNonces: NonceCache;
    metrics: PlaneMetrics;
    metricsServer: Server | undefined;
    metricsUrl: string | undefined;
    otlp: OtlpExporter | undefined;
  }) {
    this.planeId = init.planeId;
    this.url = init.url;
    this.inventory = init.inventory;
    this.driver = init.driver;
    this.#cannotStart = init.cannotStart;
    this.#leftovers = init.leftovers;
    this.#options = init.options;
    this.#dispatcher = init.dispatcher;
    this.#mounts = init.mounts;
    this.#bundles = init.bundles;
    this.#usage = init.usage;
    this.#outcomes = init.outcomes;
    this.#logs = init.logs;
    this.#server = init.server;
    this.#answerNonces = init.answerNonces;
    this.metrics = init.metrics;
    this.metricsUrl = init.metricsUrl;
    this.#metricsServer = init.metricsServer;
    this.#otlp = init.otlp;
  }

  static async start(options: PlaneOptions): Promise<Plane> {
    trace("plane: starting");
    useHmacEngine(nodeHmacEngine);
    keepConnectionsShort();
    const log = options.log ?? ((line: string) => console.log(line));
    const planeId = stablePlaneId(options.stateDir);
    // Looked for (nvidia-smi) while the engine is checked.
    const gpusFound = planeGpus(options, log);
    gpusFound.catch(() => {}); // met where it is awaited, below
    // dockerode loads only when the Docker runtime is used.
    const driver: PlaneDriver =
      options.runtime === "process"
        ? new ProcessDriver()
        : new (await import("./drivers/docker.js")).DockerDriver({
            ...(options.dockerRuntime ? { runtime: options.dockerRuntime } : {}),
            forceBuild: options.forceBuild ?? false,
            log,
          });
    trace("plane: driver loaded");
    let cannotStart: string | undefined;
    let plane: Plane | undefined;
    // Opened before the leftovers go: the rows its previous run left open are closed as their containers are removed.
    const usage = new UsageLedger(join(options.stateDir, "usage.sqlite"), { seenEveryMs: PLANE_DEFAULTS.usageSeenMs });
    const leftovers = new LeftoverRemoval({
      remove: leftoverRemover(driver, planeId, usage, log),
      planeId,
      log,
      removed: () => void plane?.beatNow(), // the gateway hears at once that it takes calls
      firstDelayMs: PLANE_DEFAULTS.leftoversRetryMs,
      maxDelayMs: PLANE_DEFAULTS.leftoversRetryMaxMs,
    });
    // Side by side: the base image checked, and containers a previous run of this plane left behind removed.
    const [prepared] = await Promise.allSettled([driver.prepare(), leftovers.start()]);
    if (prepared.status === "rejected") {
      // An option of this plane's the engine cannot meet (a runtime it lacks): said at once, not waited out.
      if (prepared.reason instanceof InvalidOptionsError) {
        leftovers.stop();
        usage.close();
        throw prepared.reason;
      }
      cannotStart = (prepared.reason as Error).message;
    }
    const unavailable = cannotStart ?? leftovers.pending;
    trace("plane: engine checked, base image found, leftovers removed");
    const inventory = new Inventory(await gpusFound);
    const bundles = new BundleCache(join(options.stateDir, "bundles"), options.gatewayUrl, options.secret, options.bundles, options.runtimesDir);
    const images = new Map<string, Promise<string>>();
    const answerNonces = new NonceCache();
    // Kept in the state folder, which a restart of this plane (same id) finds again.
    const outcomes = new OutcomeCache<PlaneRunResponse>({ dir: options.stateDir, log });
    // The metrics (prom-client, a sixth of a second of this thread to load) load once a container started ahead has
    // been asked for (below): nothing reaches the plane before it listens, and the meter counts only what it answers.
    let metrics: PlaneMetrics | undefined;
    let otlp: OtlpExporter | undefined;
    const meter: CallMeter = { callEnded: (...call) => metrics?.callEnded(...call) };
    // Lines go to the gateway's log stores once its URL is known; until then they wait in the shipper's buffer.
    const logs = new LogShipper({
      gatewayUrl: options.gatewayUrl,
      secret: options.secret,
      planeId,
      region: options.region,
      log,
      ...(options.otlp ? { tap: (line) => otlp?.addLog(line) } : {}),
    });
    // Containers' /v1 requests and volume mounts, sent to the gateway signed as the container's app (container-api.ts).
    // A failed commit of a container's mount is a line of its app's log too.
    const mounts = new VolumeMounts(
      join(options.stateDir, "volumes"),
      new ContainerGateway(options.gatewayUrl, options.secret),
      log,
      options.keepLogs === false ? undefined : (line) => logs.add(line),
    );
    void mounts.keepLeftovers().catch((err: Error) => log(`[plane] could not look over the volume mounts its previous run left: ${err.message}`));
    // Memory snapshots of `snapshot: true` functions, kept in the state folder across restarts of this plane.
    const snapshots = new SnapshotStore({
      dir: join(options.stateDir, "snapshots"),
      maxCount: options.snapshotMax ?? PLANE_DEFAULTS.snapshotMax,
      maxBytes: options.snapshotMaxBytes ?? PLANE_DEFAULTS.snapshotMaxBytes,
      log,
    });
    const dispatcher = new Dispatcher({
      mounts,
      snapshots,
      region: options.region,
      imageFor: (hash) => {
        let tag = images.get(hash);
        if (!tag) {
          // An image whose steps declare secrets (Image.secrets) gets their values for its build, over the signed channel.
          const secrets = async () =>
            fetchImageSecrets({ gatewayUrl: await options.gatewayUrl, secret: options.secret, nonces: answerNonces }, { planeId, imageHash: hash }).catch(
              (err: Error) => {
                throw new ImageBuildError(`could not read the secrets the image's steps declare: ${err.message}`);
              },
            );
          tag = bundles.image(hash).then((spec) => driver.buildImage(spec, hash, secrets));
          tag.catch(() => images.delete(hash)); // a failed build is tried again on the next cold start
          images.set(hash, tag);
        }
        return tag;
      },
      driver,
      inventory,
      planeId,
      usage,
      stateDir: options.stateDir,
      scaledownWindowMs: (options.scaledownWindowSeconds ?? FUNCTION_DEFAULTS.scaledownWindowSeconds) * 1000,
      ...(options.versionDrainTimeoutSeconds === undefined ? {} : { versionDrainTimeoutMs: options.versionDrainTimeoutSeconds * 1000 }),
      log,
      ...(options.keepLogs === false ? {} : { onLogLine: (line: PlaneLogLine) => logs.add(line) }),
      onInput: (req) => outcomes.ran(req.callId, req.attempt),
      endedHere: (callId) => outcomes.endedHere(callId),
      mapStack: (hash, stack) => bundles.mapStack(hash, stack),
      lineMaps: bundles,
      meter,
      preparedPerFunction: options.preparedPerFunction ?? PLANE_DEFAULTS.preparedPerFunction,
    });
    // The function's container is asked for before the rest of the plane is made: until the engine has been asked,
    // every step of it waits on this thread.
    const ahead = await Promise.resolve(options.startAhead).catch(() => undefined);
    if (ahead && !unavailable) {
      const { pool, bundle, nodeModules, asked } = ahead;
      try {
        await bundles.put(pool.bundleHash, bundle);
        dispatcher.startAhead(pool, { path: await bundles.get(pool.bundleHash, nodeModules), nodeModules }, asked);
      } catch (err) {
        asked?.();
        await dispatcher.close({ quick: true });
        usage.close();
        outcomes.close();
        throw err;
      }
      trace("plane: container started ahead");
    } else ahead?.asked?.();
    // Read when scraped: the dispatcher's counters, the inventory, the usage ledger's seconds and dollars.
    metrics = new (await import("./plane-metrics.js")).PlaneMetrics({
      planeId,
      region: options.region,
      runtime: driver.name,
      sandboxed: driver.sandboxed,
      inventory,
      functions: () => dispatcher.stats(),
      containers: () => dispatcher.containers(),
      prepared: () => dispatcher.prepared(),
      usage: () => usage.summary({ running: dispatcher.running(), prepared: dispatcher.preparedLives() }),
      status: () => ({
        state: plane?.probe().state ?? "unavailable",
        gatewayReachable: plane?.gatewayReachable ?? false,
        lastHeartbeatAt: plane?.lastHeartbeatAt,
      }),
    });
    otlp = options.otlp ? new OtlpExporter({ ...options.otlp, planeId, region: options.region, metrics, log }) : undefined;
    // The listener opens before the plane is made (its URL needs the port it gets), which then waits for its gateway's
    // URL. A gateway that knew this plane before it restarted (`tandem serve` killed and started again on the same
    // --plane-port) does not wait for its heartbeat: it resumes the calls it had here at once, and they come meanwhile.
    const made = startGate(planeId);
    const listener = planeServer({
      secret: options.secret,
      planeId,
      run: async (req) => (await made.plane(req.timeoutSeconds * 1000)).run(req),
      outcomes,
      stream: async function* (req) {
        yield* (await made.plane(req.timeoutSeconds * 1000)).stream(req);
      },
      stopApp: (name) => dispatcher.stopApp(name),
      rolloverApp: (name) => dispatcher.rolloverApp(name),
      cancel: (callIds, terminate) => dispatcher.cancel(callIds, terminate),
      usage: (query) => usage.summary({ ...query, running: dispatcher.running(), prepared: dispatcher.preparedLives() }),
      status: async () => (await made.plane()).status(),
      metrics,
      ...(options.metricsToken ? { metricsToken: options.metricsToken } : {}),
      probe: () => plane?.probe() ?? { planeId, state: "unavailable", inFlight: 0 },
      log,
    });
    const { server, port } = await new Promise<{ server: Server; port: number }>((resolve, reject) => {
      const s = createServer(listener);
      // The gateway (workerd) closes an idle connection after 5 s, and so would Node by default: at the same moment, a
      // request it sends on one as it closes fails. Kept longer here, the client always closes first.
      s.keepAliveTimeout = DELIVERY_DEFAULTS.planeKeepAliveMs;
      // A request that does not arrive in time (a client that stopped sending) is answered 408; the answer, a call's
      // result however late, has no such limit.
      s.headersTimeout = DELIVERY_DEFAULTS.planeHeadersMs;
      s.requestTimeout = DELIVERY_DEFAULTS.planeRequestMs;
      s.once("error", (err: Error) => reject(hostNotHere(err, options.host))).listen(options.port, options.host, () =>
        resolve({ server: s, port: (s.address() as AddressInfo).port }),
      );
    });
    const access = { token: options.metricsToken, openWithoutToken: true };
    const metricsServer = options.metricsListen
      ? await listen(metricsListener(metrics, access), options.metricsListen).catch((err: Error) => {
          made.failed(err);
          server.close();
          throw new InvalidOptionsError(
            `the metrics listener could not listen on ${options.metricsListen!.host}:${options.metricsListen!.port}: ${err.message}`,
          );
        })
      : undefined;
    trace("plane: listening");
    // Ready but for its gateway: it reports once the URL is known. Inputs that come sooner wait (`made`, above).
    let gatewayUrl: string;
    try {
      gatewayUrl = await options.gatewayUrl;
      trace("plane: gateway known");
    } catch (err) {
      // Its gateway did not start: neither does this plane.
      made.failed(err as Error);
      leftovers.stop();
      await dispatcher.close();
      await logs.close();
      await otlp?.close();
      metricsServer?.server.close();
      await driver.cleanup(planeId).catch(() => {});
      usage.close();
      outcomes.close();
      server.close();
      rmSync(join(options.stateDir, "plane.pid"), { force: true });
      throw err;
    }
    plane = new Plane({
      planeId,
      url: httpUrl(options.host, port),
      inventory,
      driver,
      cannotStart,
      leftovers,
      options: { ...options, gatewayUrl },
      dispatcher,
      mounts,
      bundles,
      usage,
      outcomes,
      logs,
      server,
      answerNonces,
      metrics,
      metricsServer: metricsServer?.server,
      metricsUrl: metricsServer ? `${httpUrl(options.metricsListen!.host, metricsServer.port)}${PLANE_METRICS_ROUTE}` : undefined,
      otlp,
    });
    made.ready(plane);
    if (driver.sandboxed === false) log("⚠ plane runtime `process`: functions run as plain processes, NOT sandboxed. For development only.");
    if (cannotStart) log(`⚠ plane ${planeId} cannot start containers: ${cannotStart}`);
    options.onReady?.(plane);
    await plane.#beat();
    trace("plane: first heartbeat answered");
    plane.#heartbeat = setInterval(() => void plane!.#beat(), PLANE_DEFAULTS.heartbeatMs);
    plane.#heartbeat.unref();
    return plane;
  }

  /** Reports to the gateway now, not at the next heartbeat. */
  beatNow(): Promise<void> {
    return this.#beat();
  }

  /** Why this plane cannot start containers (no engine, say), if it cannot: calls fail rather than wait for it. */
  get unavailable(): string | undefined {
    return this.#cannotStart;
  }

  /** Why this plane takes no calls yet, for a while only (its previous run's containers are not all removed): calls wait. */
  get notReady(): string | undefined {
    return this.#leftovers.pending;
  }

  /** Runs one input (a request from the gateway). */
  async run(req: PlaneRunRequest): Promise<PlaneRunResponse> {
    trace(`plane: call ${req.callId} arrived`);
    this.#take();
    try {
      const bundlePath = await this.#prepare(req);
      const answer = await this.#dispatcher.run(req, { path: bundlePath, nodeModules: req.nodeModules });
      const remote = answer.error?.remote;
      if (remote?.stack) remote.stack = await this.#bundles.mapStack(req.bundleHash, remote.stack);
      trace(`plane: call ${req.callId} answered`);
      return answer;
    } finally {
      this.#done();
    }
  }

  /**
   * Stops taking inputs and waits, up to `timeoutMs`, for the ones it has to
   * end; the gateway hears it at once (a heartbeat saying `draining`) and
   * sends new inputs elsewhere, and one that arrives meanwhile is answered
   * `no_capacity`, which the gateway also sends elsewhere. Returns how many
   * inputs were still running at the timeout (0: all ended). `close` after it.
   *
   * @example process.once("SIGTERM", async () => { await plane.drain(300_000); await plane.close(); });
   */
  async drain(timeoutMs: number): Promise<number> {
    this.#draining = true;
    const log = this.#options.log ?? console.log;
    log(`plane ${this.planeId} is draining: ${this.#inFlight} input(s) in flight, waiting up to ${Math.round(timeoutMs / 1000)} s for them`);
    await this.#beat();
    if (this.#inFlight > 0) {
      const idle = new Promise<void>((resolve) => (this.#onIdle = resolve));
      await raceDeadline(idle, Date.now() + timeoutMs);
    }
    return this.#inFlight;
  }

  /** Whether the gateway took this plane's last heartbeat. */
  get gatewayReachable(): boolean {
    return this.#reachable;
  }

  /** When the gateway last took a heartbeat of this plane (ms since the epoch); undefined until it has. */
  get lastHeartbeatAt(): number | undefined {
    return this.#lastAccepted;
  }

  /** What an orchestrator's probe of the status route is told. */
  probe(): PlaneProbeAnswer {
    const state = this.#draining ? "draining" : this.unavailable || this.notReady ? "unavailable" : "ready";
    return { planeId: this.planeId, state, inFlight: this.#inFlight };
  }

  /** Counts an input in, or refuses it while draining (the gateway tries another plane). */
  #take(): void {
    if (this.#draining) throw new NoCapacityError(`plane ${this.planeId} is draining: it takes no new input`);
    this.#inFlight++;
  }

  #done(): void {
    if (--this.#inFlight === 0) this.#onIdle?.();
  }

  /** Checks this plane can run the request and has its bundle on disk; returns the bundle's path. */
  async #prepare(req: PlaneRunRequest): Promise<string> {
    if (this.#cannotStart) throw new PlaneUnavailableError(`plane ${this.planeId} cannot start containers: ${this.#cannotStart}`);
    if (this.#leftovers.pending) throw new NoCapacityError(`plane ${this.planeId} takes no calls yet: ${this.#leftovers.pending}`);
    const known = this.#prepared.get(`${req.bundleHash}:${req.nodeModules ?? ""}`);
    if (known) return known; // every warm call comes here: no file system checks once a bundle is in place
    if (req.nodeModules && !existsSync(req.nodeModules)) {
      throw new PlaneUnavailableError(
        `app "${req.app}" uses native packages mounted from ${req.nodeModules} on the machine that built it, which plane ${this.planeId} does not have`,
      );
    }
    const path = await this.#bundles.get(req.bundleHash, req.nodeModules);
    this.#prepared.set(`${req.bundleHash}:${req.nodeModules ?? ""}`, path);
    return path;
  }

  /** Runs a generator input (a request from the gateway), yielding its chunks. */
  async *stream(req: PlaneRunRequest): AsyncGenerator<EncodedValue, void, undefined> {
    this.#take();
    try {
      const bundlePath = await this.#prepare(req);
      yield* this.#dispatcher.stream(req, { path: bundlePath, nodeModules: req.nodeModules });
    } catch (err) {
      if (!(err instanceof RemoteError) || !err.remoteStack) throw err;
      const stack = await this.#bundles.mapStack(req.bundleHash, err.remoteStack);
      throw new RemoteError({ name: err.remoteName, message: err.message, stack }, err.details);
    } finally {
      this.#done();
    }
  }

  status(): {
    planeId: string;
    region: string;
    runtime: string;
    /** The Docker engine's runtime function containers run under: `runsc` (gVisor) or `runc`. */
    dockerRuntime?: string;
    sandboxed: boolean;
    simulated: boolean;
    unavailable?: string;
    notReady?: string;
    inventory: ReturnType<Inventory["summary"]>;
    functions: FunctionStats[];
    containers: ContainerSummary[];
    /** Prepared containers, paused until a cold start takes one (not in `containers`: they run nothing). */
    prepared: PreparedSummary[];
  } {
    return {
      planeId: this.planeId,
      region: this.#options.region,
      runtime: this.driver.name,
      ...(this.driver.runtime ? { dockerRuntime: this.driver.runtime } : {}),
      sandboxed: this.driver.sandboxed,
      simulated: this.inventory.simulated,
      ...(this.unavailable ? { unavailable: this.unavailable } : {}),
      ...(this.notReady ? { notReady: this.notReady } : {}),
      inventory: this.inventory.summary(),
      functions: this.#dispatcher.stats(),
      containers: this.#dispatcher.containers(),
      prepared: this.#dispatcher.prepared(),
    };
  }

  /** A line describing this plane, for start-up messages. */
  describe(): string {
    const gpus = this.inventory.summary().gpus;
    const list =
      Object.entries(gpus)
        .map(([t, c]) => `${t}x${c.total}`)
        .join(", ") || "no GPUs";
    const engine = this.driver.runtime ? ` (${this.driver.gvisor ? `gVisor, ${this.driver.runtime}` : this.driver.runtime})` : "";
    return `plane ${this.planeId} at ${this.url} (region ${this.#options.region}, runtime ${this.driver.name}${engine}${this.driver.sandboxed ? "" : ", UNSANDBOXED"}; ${list}${this.inventory.simulated ? ", simulated" : ""})`;
  }

  /** Waits for the last commits of the volumes of containers that stopped (gpu-plane/volume-mounts.ts). */
  async volumeCommitsDone(): Promise<void> {
    await this.#mounts.idle();
  }

  /**
   * Stops the plane: its containers (each given time for its classes' `exit()` hooks), then tells the gateway it has
   * stopped (a last heartbeat), then its listener.
   * `quick` (the end of `tandem run`, whose containers nothing will call again): the containers with no `exit()`
   * hooks to run are killed and removed at once; `tandem serve` and `tandem plane` stop every one gracefully.
   * `withGateway` (`tandem serve` stopping, its gateway right after): an input still running is answered as cut by
   * that stop (`PlaneRunResponse.stoppedWithGateway`), its container said to be stopped "as tandem serve stopped", so
   * the gateway leaves a call its ledger can take over to the ledger, which runs it again when serve runs again,
   * rather than ending it as failed.
   * @example await plane.close({ quick: true });
   */
  async close(options: { quick?: boolean; withGateway?: boolean } = {}): Promise<void> {
    this.#closing = true;
    clearInterval(this.#heartbeat);
    this.#leftovers.stop();
    rmSync(join(this.#options.stateDir, "plane.pid"), { force: true });
    await this.#dispatcher.close(options);
    trace("plane: containers stopped");
    // Its last heartbeat: the gateway lists it stopped, with no container, where it would list it as it last reported
    // (its containers busy) until it went stale. Not for `tandem run` (`quick`), whose gateway stops with it.
    if (!options.quick) await this.#beat(this.#stoppedReport(), PLANE_DEFAULTS.heartbeatMs);
    await this.#mounts.idle(); // the last commits of the containers' volumes
    await this.#logs.close(); // the lines of the containers just stopped, sent once more
    await this.#otlp?.close(); // and to the OTLP endpoint, with the metrics once more
    this.#metricsServer?.close();
    this.#metricsServer?.closeAllConnections();
    trace("plane: log lines sent");
    await this.driver.cleanup(this.planeId).catch(() => {});
    trace("plane: leftovers removed");
    this.#usage.close();
    this.#outcomes.close();
    // Its inputs have ended: a connection still open (a request answered as it closed, kept alive; one made and not yet
    // used) would hold the close for as long as its client keeps it, for ever where none comes (Node stops timing them out).
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  /** The secrets of one warm container of `pool`, asked of the gateway and checked (warm-secrets.ts). */
  #warmSecrets(pool: WarmPoolRef): Promise<Record<string, string>> {
    const source = { gatewayUrl: this.#options.gatewayUrl, secret: this.#options.secret, nonces: this.#answerNonces };
    return fetchWarmSecrets(source, { planeId: this.planeId, app: pool.app, function: pool.function, bundleHash: pool.bundleHash });
  }

  /** What a heartbeat says of this plane now: who it is, where, what it has free. */
  report(): PlaneHeartbeat {
    const summary = this.inventory.summary();
    return {
      planeId: this.planeId,
      url: this.url,
      region: this.#options.region,
      runtime: this.driver.name,
      simulated: this.inventory.simulated,
      ...summary,
      ...(this.unavailable ? { unavailable: this.unavailable } : {}),
      ...(this.notReady ? { notReady: this.notReady } : {}),
      ...(this.#draining ? { draining: true } : {}),
      startedAt: this.startedAt,
      ...this.#warm(),
      protocol: PROTOCOL_VERSION,
    };
  }

  /** A heartbeat saying that this plane has stopped: its containers gone, nothing taken. */
  #stoppedReport(): PlaneHeartbeat {
    const { draining: _draining, unavailable: _unavailable, warm: _warm, ...report } = this.report();
    return { ...report, stopped: true };
  }

  /** The containers up now, per function that has any (a heartbeat's `warm`). */
  #warm(): Pick<PlaneHeartbeat, "warm"> {
    const warm = this.#dispatcher.warm();
    return warm.length ? { warm } : {};
  }

  /** Sends `report` (what this plane is now, by default), waiting at most `timeoutMs` for the gateway's answer. */
  async #beat(report = this.report(), timeoutMs: number = PLANE_DEFAULTS.staleMs): Promise<void> {
    const body = JSON.stringify(report);
    const route = paths.planeHeartbeat();
    let outcome: HeartbeatOutcome;
    try {
      const res = await fetch(this.#options.gatewayUrl + route, {
        method: "POST",
        body,
        headers: {
          "content-type": "application/json",
          ...(await signRequest(this.#options.secret, { audience: GATEWAY_AUDIENCE, method: "POST", path: route, body })),
        },
        // A heartbeat older than this is of no use to the gateway: a gateway that keeps it longer counts as unreachable.
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (!res.ok) {
        const reason = await answerReason(res);
        outcome = res.status < 500 ? { kind: "refused", reason } : { kind: "unreachable", reason };
      } else {
        const answer = (await res.json()) as HeartbeatAnswer;
        if (!this.unavailable && !this.notReady && this.#options.keepWarm !== false && !this.#closing) {
          this.#dispatcher.keepWarm(
            (answer.warm ?? []).map(({ withSecrets, ...pool }) => ({
              ...pool,
              bundle: async () => ({ path: await this.#bundles.get(pool.bundleHash, pool.nodeModules), nodeModules: pool.nodeModules }),
              ...(withSecrets ? { fetchSecrets: () => this.#warmSecrets(pool) } : {}),
            })),
          );
        }
        // After the warm pools (an assigned pool of the new version switches with its warm minimum): the rest of each
        // app's old versions here, though no input of the new one comes to this plane.
        if (!this.#closing && answer.live) this.#dispatcher.liveVersions(answer.live);
        outcome = { kind: "accepted" };
      }
    } catch (err) {
      outcome = { kind: "unreachable", reason: networkReason(err) };
    }
    this.#reachable = outcome.kind === "accepted";
    if (this.#reachable) this.#lastAccepted = Date.now();
    // A heartbeat the gateway dropped as the plane closes (`tandem run` stops both at once) is nothing to tell.
    if (this.#closing) return;
    if (this.#options.onHeartbeat) return this.#options.onHeartbeat(outcome);
    const log = this.#options.log ?? console.log;
    if (outcome.kind === "accepted" && this.#gatewayDown) log(`plane ${this.planeId} reached the gateway again`);
    if (outcome.kind !== "accepted" && !this.#gatewayDown)
      log(`plane ${this.planeId} could not report to the gateway at ${this.#options.gatewayUrl}: ${outcome.reason}`);
    this.#gatewayDown = outcome.kind !== "accepted";
  }
}

/**
 * The plane as its listener's routes reach it while `Plane.start` makes it: an input that arrives first waits for it,
 * up to its own timeout and `PLANE_DEFAULTS.startWaitMs`, and is then answered `no_capacity`, which the gateway tries
 * again, as it does a plane's that is full; so is one whose plane never starts (its gateway did not).
 * @example const made = startGate(planeId); … run: async (req) => (await made.plane(req.timeoutSeconds * 1000)).run(req)
 */
function startGate(planeId: string) {
  let current: Plane | undefined;
  let ready: (plane: Plane) => void = () => {};
  let failed: (err: Error) => void = () => {};
  const making = new Promise<Plane>((resolve, reject) => {
    ready = resolve;
    failed = reject;
  });
  making.catch(() => {}); // met by the inputs that wait for it
  return {
    ready(plane: Plane): void {
      current = plane;
      ready(plane);
    },
    failed(err: Error): void {
      failed(new NoCapacityError(`plane ${planeId} did not start (${err.message}); it takes no calls`));
    },
    async plane(maxWaitMs: number = PLANE_DEFAULTS.startWaitMs): Promise<Plane> {
      if (current) return current; // every input once the plane has started: no timer
      const waitMs = Math.min(maxWaitMs, PLANE_DEFAULTS.startWaitMs);
      const plane = await raceDeadline(making, Date.now() + waitMs);
      if (plane !== TIMED_OUT) return plane;
      throw new NoCapacityError(`plane ${planeId} is still starting (waiting for its gateway), and took no input in ${Math.round(waitMs / 1000)} s`);
    },
  };
}

/** What a gateway's error answer says (`plane request refused: bad signature`), else its status. */
async function answerReason(res: Response): Promise<string> {
  const text = await res.text().catch(() => "");
  try {
    const message = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message;
    if (typeof message === "string") return message;
  } catch {
    // not an error body: say what came
  }
  return `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`;
}

/**
 * A plane keeps its id in its state folder, so that a restart finds (and
 * removes) the containers it left behind. One plane per state folder: a
 * second one started on it is refused while the first runs.
 */
function stablePlaneId(stateDir: string): string {
  mkdirSync(stateDir, { recursive: true });
  const holder = planeRunningFrom(stateDir);
  if (holder !== undefined) {
    throw new InvalidOptionsError(`another plane (process ${holder}) is running from ${stateDir}; start this one from another folder`);
  }
  writeFileSync(join(stateDir, PLANE_LOCK), String(process.pid));
  const kept = storedPlaneId(stateDir);
  if (kept) return kept;
  const id = `pl-${randomBytes(6).toString("hex")}`;
  writeFileSync(join(stateDir, PLANE_ID_FILE), id + "\n");
  return id;
}

/** The file in a plane's state folder that keeps its id from one run to the next. */
const PLANE_ID_FILE = "plane-id";

/**
 * The id of the plane run from `stateDir`, as its first run kept it there; undefined when none has run from it.
 * @example storedPlaneId(".tandem/run-planes/14231") // "pl-3f9a1c2b7d4e": that run's containers are labelled with it
 */
export function storedPlaneId(stateDir: string): string | undefined {
  const file = join(stateDir, PLANE_ID_FILE);
  const id = existsSync(file) ? readFileSync(file, "utf8").trim() : "";
  return PLANE_ID_PATTERN.test(id) ? id : undefined;
}

/** The file in a plane's state folder that holds the id of the process running it. */
const PLANE_LOCK = "plane.pid";

/**
 * The process running a plane from `stateDir` (this one's own aside), while it runs; undefined when none does.
 * @example planeRunningFrom(".tandem/serve-plane") // 14231: a `tandem serve` runs in this folder
 */
export function planeRunningFrom(stateDir: string): number | undefined {
  const lock = join(stateDir, PLANE_LOCK);
  const holder = existsSync(lock) ? Number(readFileSync(lock, "utf8")) : NaN;
  return Number.isInteger(holder) && holder !== process.pid && isAlive(holder) ? holder : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The plane's GPUs: declared (simulated), else real, else (for `serve`) one simulated GPU of each known type. */
export async function planeGpus(options: Pick<PlaneOptions, "gpus" | "simulateWhenNone">, log: (line: string) => void) {
  if (options.gpus !== undefined) return simulatedGpus(parseGpuInventory(options.gpus));
  const real = await detectGpus(log);
  if (real.length || !options.simulateWhenNone) return real;
  return simulatedGpus(Object.fromEntries(Object.keys(GPU_TYPES).map((t) => [t, 1])) as Record<GpuType, number>);
}

/** A Node HTTP server for `listener` on `host:port`, once it listens; with the port it got (port 0 picks one). */
function listen(listener: RequestListener, at: { host: string; port: number }): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer(listener);
    server.once("error", reject).listen(at.port, at.host, () => resolve({ server, port: (server.address() as AddressInfo).port }));
  });
}

/** The URL of a listener on `host`: an IPv6 address goes in brackets (`http://[::1]:8790`), as a URL needs. */
function httpUrl(host: string, port: number): string {
  return `http://${isIPv6(host) ? `[${host}]` : host}:${port}`;
}
