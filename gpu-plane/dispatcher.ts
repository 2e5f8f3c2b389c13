/**
 * The plane's dispatcher: puts each input on a warm container of its pool, or
 * starts one when resources allow (evicting idle containers of other
 * functions when they hold what is needed), or queues it until its deadline;
 * then runs it there, or streams it, and answers with its result or the typed
 * error that ended it. It coordinates the parts that each hold one job:
 * container-pool.ts (the containers by pool), container-start.ts (one start),
 * container-failure.ts (the errors), warm-pools.ts (containers ahead of
 * inputs) and scale-down.ts (stopping containers).
 */
import {
  CancelledError,
  ContainerFailedError,
  ERROR_STATUS,
  FunctionTimeoutError,
  NoCapacityError,
  TandemError,
  fromWireError,
  toWireError,
  withoutLogTail,
  type WireError,
} from "../sdk/errors.js";
import type { EncodedValue, LiveBundleRef, PlaneRunRequest, PlaneRunResponse, PlaneRunTimings } from "../sdk/protocol.js";
import type { ControlChannel } from "./control-channel.js";
import { exitFailure, firstLine, protocolFailure, runTimeout } from "./container-failure.js";
import { ContainerPool, type ContainerSummary, type FunctionStats, type Worker } from "./container-pool.js";
import { ContainerStarter, type BundleOnDisk } from "./container-start.js";
import type { SnapshotStore } from "./snapshots.js";
import type { VolumeMounts } from "./volume-mounts.js";
import { TIMED_OUT, raceDeadline } from "../sdk/deadline.js";
import type { ContainerDriver } from "./drivers/driver.js";
import type { Inventory, ResourceRequest } from "./inventory.js";
import { describeRequests, poolKey, poolName, resourceRequests, type PoolDescriptor } from "./pool-descriptor.js";
import { ScaleDown } from "./scale-down.js";
import type { ContainerLife, UsageLedger } from "./usage-ledger.js";
import type { LogLineMaps } from "./bundle-cache.js";
import type { PlaneLogLine } from "./log-shipper.js";
import type { CallMeter } from "./plane-metrics.js";
import { VersionSwitch } from "./version-switch.js";
import { WarmPools, type WarmPool } from "./warm-pools.js";
import { PreparedContainers, type PreparedSummary } from "./prepared-containers.js";
import { PLANE_DEFAULTS } from "../sdk/defaults.js";

/** What a {@link Dispatcher} runs on. */
export interface DispatcherOptions {
  driver: ContainerDriver;
  inventory: Inventory;
  planeId: string;
  /** The plane's region, told to its containers. */
  region: string;
  /** Control sockets live under `<stateDir>/control/<container>`. */
  stateDir: string;
  /** Containers' API sockets and volume mounts; none in the dispatcher's unit tests. */
  mounts?: VolumeMounts;
  /** Memory snapshots of `snapshot: true` functions (snapshots.ts); none: their containers start fresh. */
  snapshots?: SnapshotStore;
  /** A stack thrown in a bundle, mapped to the app's files, for the line about a container its app's code crashed. */
  mapStack?: (bundleHash: string, stack: string) => Promise<string>;
  /** What maps the stack frames a container prints, in its log lines (bundle-cache.ts); none: its lines stay as printed. */
  lineMaps?: LogLineMaps;
  /** Idle time before a container is stopped. */
  scaledownWindowMs: number;
  /**
   * How long an old version's containers may take to finish their inputs once a new version of their function is
   * live (version-switch.ts); default `PLANE_DEFAULTS.versionDrainTimeoutSeconds`.
   */
  versionDrainTimeoutMs?: number;
  /** How long a stopping container's runner has for its classes' `exit()` hooks (default 10 s). */
  exitGraceMs?: number;
  /** Each container log line, tagged. */
  log: (line: string) => void;
  /** Each container log line, and the plane's lines about a call (cold start, timeout, OOM kill, crash), as records for the app's log. */
  onLogLine?: (line: PlaneLogLine) => void;
  /** Where container lives are recorded (and spend caps read). */
  usage: UsageLedger;
  /** The tag of a function's image, built on first use (by the hash of its spec). */
  imageFor(hash: string): Promise<string>;
  /** Told as an input is handed to its container: from then on it has run here (the outcome cache notes it). */
  onInput?: (req: PlaneRunRequest) => void;
  /** Whether a call ran here and ended (the outcome cache knows): a cancel that names it does not call it one to come. */
  endedHere?: (callId: string) => boolean;
  /** Told as each input ends, with its timings (plane-metrics.ts): counters and histograms, nothing more. */
  meter?: CallMeter;
  /** Most prepared containers per function (prepared-containers.ts); default 0: none. The plane's default is `PLANE_DEFAULTS.preparedPerFunction`. */
  preparedPerFunction?: number;
  /** How long a cold start counts as demand for prepared containers; default `PLANE_DEFAULTS.preparedWindowSeconds`. */
  preparedWindowMs?: number;
}

/**
 * Runs the plane's inputs on its containers.
 * @example
 * const dispatcher = new Dispatcher({ driver, inventory, planeId, stateDir, scaledownWindowMs: 60_000, log: console.log, usage, imageFor });
 * const answer = await dispatcher.run(req, { path: bundlePath, nodeModules: undefined }); // { status: "succeeded", result, containerId, coldStart }
 * await dispatcher.close();
 */
export class Dispatcher {
  readonly #o: DispatcherOptions;
  readonly #pool = new ContainerPool();
  readonly #scaleDown: ScaleDown;
  readonly #starter: ContainerStarter;
  readonly #warm: WarmPools;
  readonly #prepared: PreparedContainers;
  readonly #versions: VersionSwitch;
  /** How many inputs' cold starts of each pool are under way now. */
  readonly #coldStarting = new Map<string, number>();
  /** Calls cancelled while they waited for a container, or while their container was starting. */
  readonly #cancelledBeforeStart = new Set<string>();
  /** Calls waiting for a container (`#acquire`): a cancel reaches them there too. */
  readonly #waiting = new Set<string>();
  /** Calls a cancel named before their run came, each until when it is remembered (`PLANE_DEFAULTS.cancelAheadMs`). */
  readonly #cancelledAhead = new Map<string, number>();
  #closed = false;
  /** Closed as its gateway stops too (`close`'s `withGateway`): an input it fails from then on was cut by that stop. */
  #closedWithGateway = false;

  constructor(options: DispatcherOptions) {
    this.#o = options;
    const { inventory, usage, log } = options;
    this.#scaleDown = new ScaleDown({
      pool: this.#pool,
      inventory,
      usage,
      log,
      ...(options.onLogLine ? { onLogLine: options.onLogLine } : {}),
      scaledownWindowMs: options.scaledownWindowMs,
      ...(options.exitGraceMs === undefined ? {} : { exitGraceMs: options.exitGraceMs }),
      keptWarm: (key) => this.#warm.minimumFor(key),
    });
    this.#starter = new ContainerStarter({ ...options, pool: this.#pool, scaleDown: this.#scaleDown });
    this.#versions = new VersionSwitch({
      pool: this.#pool,
      scaleDown: this.#scaleDown,
      log,
      ...(options.onLogLine ? { onLogLine: options.onLogLine } : {}),
      drainTimeoutMs: options.versionDrainTimeoutMs ?? PLANE_DEFAULTS.versionDrainTimeoutSeconds * 1000,
      keptWarm: (key) => this.#warm.minimumFor(key),
    });
    this.#warm = new WarmPools({
      pool: this.#pool,
      starter: this.#starter,
      scaleDown: this.#scaleDown,
      inventory,
      log,
      superseded: (key) => this.#versions.superseded(key),
    });
    this.#prepared = new PreparedContainers({
      driver: options.driver,
      pool: this.#pool,
      starter: this.#starter,
      scaleDown: this.#scaleDown,
      inventory,
      usage,
      log,
      perFunction: options.preparedPerFunction ?? 0,
      windowMs: options.preparedWindowMs ?? PLANE_DEFAULTS.preparedWindowSeconds * 1000,
      superseded: (key) => this.#versions.superseded(key),
    });
  }

  /** Runs one input to its end. Never throws: every outcome is a response. */
  async run(req: PlaneRunRequest, bundle: BundleOnDisk): Promise<PlaneRunResponse> {
    const arrived = performance.now();
    const stats = this.#pool.statsFor(req.app, poolName(req));
    let worker: Worker | undefined;
    let coldStart = false;
    const timings: PlaneRunTimings = { queueMs: 0 };
    let handedOver: number | undefined;
    try {
      const acquired = await this.#acquire(req, bundle, timeoutFromNow(req), stats);
      worker = acquired.worker;
      coldStart = acquired.cold;
      handedOver = performance.now();
      timings.queueMs = handedOver - arrived - acquired.startMs;
      if (coldStart) timings.coldStartMs = acquired.startMs;
      const output = await this.#runOn(worker, req, timeoutFromNow(req));
      timings.runMs = performance.now() - handedOver;
      this.#scaleDown.release(worker, req.callId);
      const base = {
        containerId: worker.id,
        coldStart,
        ...(worker.reservation.gpus[0] ? { gpu: worker.reservation.gpus[0].type } : {}),
        timings: rounded(timings),
      };
      if (output.status === "succeeded") {
        this.#o.meter?.callEnded(req.app, req.function, req.attempt, timings, undefined);
        return { status: "succeeded", result: output.result.json, ...(output.result.meta === undefined ? {} : { meta: output.result.meta }), ...base };
      }
      this.#o.meter?.callEnded(req.app, req.function, req.attempt, timings, knownCode((output.error as WireError).code));
      return { status: "failed", error: output.error as WireError, ...base };
    } catch (err) {
      this.#cancelledBeforeStart.delete(req.callId); // a cancel that came as it failed otherwise
      if (handedOver !== undefined) timings.runMs = performance.now() - handedOver;
      else timings.queueMs = performance.now() - arrived;
      const error = err instanceof TandemError ? err : new ContainerFailedError((err as Error).message);
      // The inputs it runs beside this one (its concurrency) are told why it stopped under them.
      if (worker) await this.#scaleDown.retire(worker, error instanceof FunctionTimeoutError ? { why: ranPastTimeout(req) } : {});
      this.#o.meter?.callEnded(req.app, req.function, req.attempt, timings, error.code);
      const containerId = worker?.id ?? (typeof error.details?.containerId === "string" ? error.details.containerId : null); // one that failed to start
      // A cancel, which the caller asked for, is not news in the plane's output: a map left early cancels hundreds.
      this.#failedHere(req, containerId, error.message, !(error instanceof CancelledError));
      return {
        status: error instanceof FunctionTimeoutError ? "timed_out" : "failed",
        error: toWireError(error),
        ...(worker ? { containerId: worker.id, coldStart } : {}),
        timings: rounded(timings),
        ...(this.#closedWithGateway ? { stoppedWithGateway: true as const } : {}),
      };
    }
  }

  /**
   * Runs a generator input and yields its chunks (encoded) as they come. The
   * runner makes the next chunk only when this is asked for it, so a slow
   * reader slows the generator; stopping early cancels it. Throws the typed
   * error when the input fails (after the chunks it sent).
   */
  async *stream(req: PlaneRunRequest, bundle: BundleOnDisk): AsyncGenerator<EncodedValue, void, undefined> {
    const arrived = performance.now();
    const acquired = await this.#acquire(req, bundle, timeoutFromNow(req), this.#pool.statsFor(req.app, poolName(req))).catch((err: unknown) => {
      this.#o.meter?.callEnded(req.app, req.function, req.attempt, { queueMs: performance.now() - arrived }, errorCodeOf(err));
      throw err;
    });
    const { worker } = acquired;
    const handedOver = performance.now();
    const timings: PlaneRunTimings = { queueMs: handedOver - arrived - acquired.startMs, ...(acquired.cold ? { coldStartMs: acquired.startMs } : {}) };
    let errorCode: string | undefined;
    const deadline = timeoutFromNow(req);
    const chunks: EncodedValue[] = [];
    let wake: (() => void) | undefined;
    const poke = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    let output: Awaited<ReturnType<ControlChannel["run"]>> | undefined;
    let broken: Error | undefined;
    const input = {
      t: "input" as const,
      callId: req.callId,
      function: req.function,
      attempt: req.attempt,
      stream: true,
      args: { json: req.args, ...(req.meta === undefined ? {} : { meta: req.meta }) },
    };
    const done = worker.channel.run(input, (chunk) => {
      chunks.push(chunk.value);
      poke();
    });
    done
      .then(
        (o) => (output = o),
        (e: Error) => (broken = e),
      )
      .finally(poke);
    void worker.container.exited.then(poke);
    let clean = false;
    try {
      for (;;) {
        if (chunks.length) {
          yield chunks.shift()!;
          worker.channel.next(req.callId); // asked for another: let the generator make it
          continue;
        }
        if (output) {
          // The runner answered: a generator that threw (or was cancelled) leaves its container sound, so it stays warm.
          clean = true;
          if (output.status === "failed") throw fromWireError(output.error as WireError);
          return;
        }
        if (worker.protocolError) throw protocolFailure(worker);
        if (worker.exit || broken) throw exitFailure(worker, await worker.container.exited, "while streaming");
        const woke = await raceDeadline(new Promise<"woke">((resolve) => (wake = () => resolve("woke"))), deadline);
        if (woke === TIMED_OUT) throw runTimeout(worker, req);
      }
    } catch (err) {
      errorCode = errorCodeOf(err);
      // Said as a call's failure here is (`run`): a timeout, a container that died; not the function's own error.
      if (!output) this.#failedHere(req, worker.id, err instanceof Error ? err.message : String(err), true);
      throw err;
    } finally {
      timings.runMs = performance.now() - handedOver;
      this.#o.meter?.callEnded(req.app, req.function, req.attempt, timings, errorCode);
      // Timed out: the container stops at once, as a call's does (below), and no code of the function runs after.
      if (errorCode !== "function_timeout" && !output && !broken && !worker.exit && !worker.protocolError) {
        // The reader stopped early: the runner returns the generator (its `finally` runs) and ends the input.
        worker.channel.cancel(req.callId);
        clean =
          (await raceDeadline(
            done.then(
              () => true,
              () => false,
            ),
            Date.now() + 5_000,
          )) === true;
      }
      if (clean) this.#scaleDown.release(worker, req.callId);
      else await this.#scaleDown.retire(worker, errorCode === "function_timeout" ? { why: ranPastTimeout(req) } : {});
    }
  }

  /**
   * Why an input failed here, as a system line of the app's log and, `inOutput`, in the plane's output (the terminal
   * of `tandem serve`), there without the container's last log lines, which were printed already.
   */
  #failedHere(req: PlaneRunRequest, containerId: string | null, message: string, inOutput: boolean): void {
    // Tagged as the container's own lines are, and as the gateway prints a call's system lines.
    const tag = `[${req.app}.${req.function} ${req.callId}${containerId ? ` ${containerId}` : ""}] (system)`;
    if (inOutput) this.#o.log(`${tag} ${firstLine(withoutLogTail(message))}`);
    this.#o.onLogLine?.({ app: req.app, function: req.function, callId: req.callId, containerId, source: "system", text: message });
  }

  /** Every function's counters, for the plane's `status`. */
  stats(): FunctionStats[] {
    return this.#pool.stats();
  }

  /** The containers up now per function (a heartbeat's `warm`). */
  warm(): ReturnType<ContainerPool["warm"]> {
    return this.#pool.warm();
  }

  /** Containers by id, for `docker ps`-style views and tests. */
  containers(): ContainerSummary[] {
    return this.#pool.summaries();
  }

  /** The lives of the containers running now, for usage and spend caps. */
  running(): ContainerLife[] {
    return this.#pool.lives();
  }

  /** The prepared containers kept now (paused until a cold start takes one), for `status`. */
  prepared(): PreparedSummary[] {
    return this.#prepared.summaries();
  }

  /** The prepared containers' lives, from when each started, for usage (shown apart, not billed). */
  preparedLives(): ContainerLife[] {
    return this.#prepared.lives();
  }

  /**
   * Stops calls' inputs: the runner aborts each one's signal and answers it as
   * cancelled; with `terminateContainer`, their containers are stopped at once.
   * Those still queued are dropped before those running are stopped, so a
   * container a stop frees never takes one of them. A call not seen here yet
   * (its run still on its way) is remembered a while, and never runs if it
   * comes. Returns the calls named that ran or waited here.
   *
   * @example dispatcher.cancel([callId], false); // [callId] when it ran here
   */
  cancel(callIds: readonly string[], terminateContainer: boolean): string[] {
    const queued = callIds.filter((id) => !this.#pool.runningCall(id) && this.#waiting.has(id));
    for (const callId of queued) {
      // Queued behind busy containers (a map's inputs past maxContainers): it leaves the queue as cancelled, and never runs.
      this.#o.log(`[plane] cancelling ${callId}, waiting for a container`);
      this.#cancelledBeforeStart.add(callId);
    }
    if (queued.length) this.#pool.wake();
    const running = callIds.filter((callId) => {
      const worker = this.#pool.runningCall(callId);
      if (!worker) return false;
      this.#o.log(`[plane] cancelling ${worker.label} ${callId}${terminateContainer ? `, stopping container ${worker.id}` : ""}`);
      if (terminateContainer) {
        worker.stoppedForCancel = true;
        void this.#scaleDown.retire(worker, { why: `as call ${callId} was cancelled (terminateContainer)` });
      } else if (worker.ready && worker.channel.running(callId)) worker.channel.cancel(callId);
      // Its input is not sent yet (its container is starting, or a prepared one resuming, which would read the cancel
      // before the input and drop it as one for no input): it is never sent.
      else this.#cancelledBeforeStart.add(callId);
      return true;
    });
    const here = new Set([...queued, ...running]);
    const ahead = callIds.filter((callId) => !here.has(callId));
    ahead.forEach((callId) => this.#cancelAhead(callId));
    // A map's cancel names its inputs that ended too; those are not called calls to come, though each is remembered.
    const toCome = this.#o.endedHere ? ahead.filter((callId) => !this.#o.endedHere!(callId)) : ahead;
    if (toCome.length)
      this.#o.log(`[plane] cancelling ${toCome.length === 1 ? toCome[0] : `${toCome.length} calls`} not running or waiting here: none will run if it comes`);
    return [...here];
  }

  #cancelAhead(callId: string): void {
    const now = Date.now();
    for (const [id, until] of this.#cancelledAhead) {
      if (until > now && this.#cancelledAhead.size < PLANE_DEFAULTS.cancelAheadMax) break;
      this.#cancelledAhead.delete(id); // the oldest first: they are kept in the order they came
    }
    this.#cancelledAhead.set(callId, now + PLANE_DEFAULTS.cancelAheadMs);
  }

  /** Stops every container of `app` now (`tandem app stop`), its prepared ones too; returns how many. */
  async stopApp(app: string): Promise<number> {
    this.#warm.dropApp(app);
    const prepared = this.#prepared.dropApp(app);
    const mine = this.#pool.ofApp(app);
    await Promise.all(mine.map((w) => this.#scaleDown.retire(w, { graceful: true, why: `as app ${app} was stopped` })));
    const stopped = mine.length + (await prepared);
    if (stopped) this.#o.log(`[plane] stopped ${stopped} container${stopped === 1 ? "" : "s"} of app ${app}`);
    const snapshots = (await this.#o.snapshots?.removeApp(app)) ?? 0;
    if (snapshots) this.#o.log(`[plane] removed ${snapshots} memory snapshot${snapshots === 1 ? "" : "s"} of app ${app}`);
    return stopped;
  }

  /**
   * Rolls over every container of `app` (`tandem app rollover`): none takes a new input; each stops once the inputs
   * it runs end (an idle one at once), never in the middle of one; its warm pools start new containers now, and
   * other inputs start new ones as they come. Returns how many containers were rolled over.
   */
  rolloverApp(app: string): number {
    const mine = this.#pool.ofApp(app).filter((w) => !w.stopping && !w.draining && !w.exit);
    for (const worker of mine) {
      worker.draining = true;
      if (worker.ready && worker.inFlight.size === 0) this.#scaleDown.release(worker, undefined);
    }
    if (mine.length) this.#o.log(`[plane] rolling over ${mine.length} container${mine.length === 1 ? "" : "s"} of app ${app}`);
    void this.#prepared.dropApp(app); // prepared with what the app declared before
    this.#warm.refill();
    this.#pool.wake();
    return mine.length;
  }

  /**
   * The pools this plane keeps warm (`minContainers`), as the gateway assigns
   * them; starts what is missing, as resources allow.
   */
  keepWarm(pools: WarmPool[]): void {
    // An assigned pool is its function's live version: the old version's containers drain while its new ones warm.
    const switched = pools.map((pool) => this.#versions.seen(poolKey(pool), pool.strategy));
    if (switched.includes(true)) this.#prepared.dropSuperseded();
    this.#warm.keep(pools);
  }

  /**
   * Each app's live version, as a heartbeat's answer says it: the containers of its other bundles retire here, by
   * the version's strategy, though no input of the new one comes to this plane (version-switch.ts `told`).
   */
  liveVersions(live: LiveBundleRef[]): void {
    const switched = live.map((version) => this.#versions.told(version));
    if (switched.includes(true)) this.#prepared.dropSuperseded();
  }

  /**
   * Starts a container of `pool` for an input known to be coming, before it
   * comes; the pool's inputs wait for it rather than start another. `asked`:
   * see `WarmPools.startAhead`.
   */
  startAhead(pool: PoolDescriptor, bundle: BundleOnDisk, asked?: () => void): void {
    this.#warm.startAhead(pool, bundle, asked);
  }

  /**
   * Stops every container (each given time for its `exit()` hooks) and fails what is queued. `quick` (the end of
   * `tandem run`): containers with no `exit()` hooks to run are killed and removed at once, without a grace period.
   * `withGateway` (`tandem serve` stopping): the inputs it ends are answered as cut by that stop (see `Plane.close`).
   */
  async close(options: { quick?: boolean; withGateway?: boolean } = {}): Promise<void> {
    this.#closed = true;
    this.#closedWithGateway = options.withGateway === true;
    this.#warm.close();
    this.#versions.close();
    this.#pool.wake();
    await this.#prepared.close();
    const why = options.withGateway ? "as tandem serve stopped" : "as the plane shut down";
    await Promise.all(this.#pool.all().map((w) => this.#scaleDown.retire(w, { graceful: true, quick: options.quick ?? false, why })));
  }

  /** A container for the input, held for it: a warm one, a new one, or, after waiting, one freed; `no_capacity` at the deadline. */
  async #acquire(
    req: PlaneRunRequest,
    bundle: BundleOnDisk,
    deadline: number,
    stats: FunctionStats,
  ): Promise<{ worker: Worker; cold: boolean; startMs: number }> {
    if (this.#cancelledAhead.delete(req.callId)) throw new CancelledError(`call ${req.callId} was cancelled before it came`, { callId: req.callId });
    const key = poolKey(req);
    if (this.#versions.seen(key, req.strategy)) this.#prepared.dropSuperseded();
    const scaling = req.spec.autoscaler;
    const requests = resourceRequests(req);
    const possible = requests.filter((r) => this.#o.inventory.fits(r) === undefined);
    if (possible.length === 0) {
      throw new NoCapacityError(`no capacity for ${describeRequests(requests)} on plane ${this.#o.planeId}: ${this.#o.inventory.fits(requests[0]!)}`);
    }
    stats.queued++;
    this.#waiting.add(req.callId);
    try {
      for (;;) {
        if (this.#closed) throw new NoCapacityError(`plane ${this.#o.planeId} is shutting down`);
        if (this.#cancelledBeforeStart.delete(req.callId)) throw new CancelledError(`call ${req.callId} was cancelled`, { callId: req.callId });
        const mine = this.#pool.serving(key);
        // A warm container below its target load; else a new container, while under maxContainers; else one below its maximum load.
        const underTarget = mine.find((w) => w.inFlight.size < scaling.targetInputs);
        if (underTarget) return { worker: this.#pool.hold(underTarget, req.callId, req.function), cold: false, startMs: 0 };
        const resting = this.#starter.resting(key);
        if (resting && mine.length === 0) throw resting; // not a hang: the same error, now
        // A container started ahead for this input (warm-pools.ts startAhead) is nearly ready: wait for it.
        if (this.#warm.startingAhead(key)) {
          await this.#pool.waitForRelease(deadline);
          continue;
        }
        if (mine.length + this.#pool.starting(key) < scaling.maxContainers) {
          if (this.#prepared.has(key)) {
            const taking = performance.now();
            const prepared = await this.#prepared.take(req, key, req.callId);
            if (prepared) return { worker: this.#coldStarted(req, key, bundle, stats, prepared, taking), cold: true, startMs: performance.now() - taking };
            continue; // none could be taken: look again, the pool may have changed meanwhile
          }
          // An app past its spend cap starts no container: refused before an idle one is stopped to make room for it.
          this.#starter.checkSpendCap(req);
          for (const request of possible) {
            // Room, if need be, from a prepared container first (it holds memory, no work), then from an idle one.
            const reservation =
              this.#o.inventory.reserve(request) ??
              (this.#prepared.evictFor(request) || (await this.#roomFrom(request, req, deadline)) ? this.#o.inventory.reserve(request) : undefined);
            if (!reservation) continue;
            stats.queued--;
            stats.starting++;
            const began = performance.now();
            this.#coldStarting.set(key, (this.#coldStarting.get(key) ?? 0) + 1);
            try {
              const worker = this.#pool.hold(
                await this.#starter.start(req, key, bundle, reservation, deadline, { forCall: req.callId, attempt: req.attempt }),
                req.callId,
                req.function,
              );
              return { worker: this.#coldStarted(req, key, bundle, stats, worker), cold: true, startMs: performance.now() - began };
            } finally {
              this.#coldStarting.set(key, this.#coldStarting.get(key)! - 1);
              stats.starting--;
              stats.queued++;
            }
          }
        }
        const underMax = mine.find((w) => w.inFlight.size < scaling.maxInputs);
        if (underMax) return { worker: this.#pool.hold(underMax, req.callId, req.function), cold: false, startMs: 0 };
        if (Date.now() >= deadline) {
          const why =
            mine.length >= scaling.maxContainers
              ? `all ${mine.length} of its containers are busy (maxContainers ${scaling.maxContainers}, ${scaling.maxInputs} input${scaling.maxInputs === 1 ? "" : "s"} each)`
              : "all of it is in use";
          throw new NoCapacityError(
            `no capacity for ${describeRequests(possible)} for ${req.app}.${req.function} on plane ${this.#o.planeId} within ${req.timeoutSeconds} s: ${why}`,
          );
        }
        await this.#pool.waitForRelease(deadline);
      }
    } finally {
      stats.queued--;
      this.#waiting.delete(req.callId);
    }
  }

  /**
   * Stops an idle container whose room `request` needs (false when none would do), waiting for it to leave (a class's
   * `exit()` runs first) no longer than the input's own wait for a container may last.
   */
  async #roomFrom(request: ResourceRequest, req: PlaneRunRequest, deadline: number): Promise<boolean> {
    const made = await raceDeadline(this.#scaleDown.evictFor(request, `${req.app}.${req.function}`), deadline);
    if (made !== TIMED_OUT) return made;
    // Before: it waited out the other's exit() (up to 10 s), then "timed out after -7 s while container … started".
    throw new NoCapacityError(
      `no capacity for ${describeRequests([request])} for ${req.app}.${req.function} on plane ${this.#o.planeId} within ${req.timeoutSeconds} s: the idle container stopped to make room for it was still running its class's exit()`,
    );
  }

  /**
   * An input started a container, or took a prepared one (`since` its take began): counted, said for a prepared one
   * (the starter says it for a new one), and what follows a cold start begun (buffer containers, prepared ones).
   */
  #coldStarted(req: PlaneRunRequest, key: string, bundle: BundleOnDisk, stats: FunctionStats, worker: Worker, since?: number): Worker {
    stats.coldStarts++;
    if (since !== undefined) {
      const text = `cold start: ${worker.label} ${worker.id} resumed in ${Math.round(performance.now() - since)} ms (a prepared container)`;
      this.#o.log(`[plane] ${text}`);
      this.#o.onLogLine?.({ app: req.app, function: req.function, callId: req.callId, containerId: worker.id, source: "system", text });
    }
    this.#warm.topUpBuffer(req, key, bundle);
    // Under way at once: this one, and the inputs' cold starts of its pool still starting (a take is over at once).
    this.#prepared.coldStarted(req, key, bundle, (this.#coldStarting.get(key) ?? 0) + (since === undefined ? 0 : 1));
    return worker;
  }

  /** Sends the input to its container and waits for its output, the container's end, or the deadline. */
  async #runOn(worker: Worker, req: PlaneRunRequest, deadline: number) {
    if (this.#cancelledBeforeStart.delete(req.callId)) {
      return {
        t: "output" as const,
        callId: req.callId,
        status: "failed" as const,
        error: { code: "call_cancelled", message: `call ${req.callId} was cancelled` },
      };
    }
    this.#o.onInput?.(req);
    const outcome = await raceDeadline(
      Promise.race([
        worker.channel
          .run({
            t: "input",
            callId: req.callId,
            function: req.function,
            attempt: req.attempt,
            args: { json: req.args, ...(req.meta === undefined ? {} : { meta: req.meta }) },
          })
          .then(
            (output) => ({ output }),
            () => ({ output: undefined }),
          ),
        worker.container.exited.then(() => ({ output: undefined })),
      ]),
      deadline,
    );
    if (outcome === TIMED_OUT) throw runTimeout(worker, req);
    if (outcome.output) return outcome.output;
    if (worker.protocolError) throw protocolFailure(worker);
    throw exitFailure(worker, await worker.container.exited, "during the call");
  }
}

/** Why a container stopped under the other inputs it ran: `as call fc-… ran past its timeout (60 s)`. */
function ranPastTimeout(req: PlaneRunRequest): string {
  return `as call ${req.callId} ran past its timeout (${req.timeoutSeconds} s)`;
}

/**
 * `timeout` seconds from now. An input gets it twice: once to wait for a
 * container (a free GPU, a slot under `maxContainers`: `no_capacity`; a cold
 * start: "did not start in time"), and once more, from when it reaches the
 * container, to run: waiting in the queue does not use up its run time.
 * @example
 * const deadline = timeoutFromNow(req); // Date.now() + req.timeoutSeconds * 1000
 */
function timeoutFromNow(req: Pick<PlaneRunRequest, "timeoutSeconds">): number {
  return Date.now() + req.timeoutSeconds * 1000;
}

/** A code a container reported, if it is one of Tandem's (a label of bounded values), else `internal`. */
function knownCode(code: string): string {
  return Object.hasOwn(ERROR_STATUS, code) ? code : "internal";
}

/** The error code a failed input is counted under: a Tandem error's own, else `internal`. */
function errorCodeOf(err: unknown): string {
  return err instanceof TandemError ? err.code : "internal";
}

/** Timings as an answer carries them: to the hundredth of a millisecond. */
function rounded(timings: PlaneRunTimings): PlaneRunTimings {
  const ms = (n: number) => Math.round(n * 100) / 100;
  return {
    queueMs: ms(timings.queueMs),
    ...(timings.coldStartMs === undefined ? {} : { coldStartMs: ms(timings.coldStartMs) }),
    ...(timings.runMs === undefined ? {} : { runMs: ms(timings.runMs) }),
  };
}
