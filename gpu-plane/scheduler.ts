/**
 * Puts each input on a warm container of its function, or starts one when
 * resources allow (evicting idle containers of other functions when they hold
 * what is needed), or queues it until its deadline. A container serves one
 * input at a time and is stopped after a scale-down window with no inputs.
 * Every way a container can fail ends the call with a typed error that says
 * which, with the last lines of its log.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import {
  ContainerFailedError,
  FunctionTimeoutError,
  NoCapacityError,
  ProtocolError,
  SpendCapError,
  TandemError,
  fromWireError,
  toWireError,
  type WireError,
} from "../sdk/errors.js";
import { formatGpu, type GpuRequest } from "../sdk/gpu.js";
import { containerResources } from "../sdk/options.js";
import type { EncodedValue, PlaneFunctionSpec, PlaneRunRequest, PlaneRunResponse } from "../sdk/protocol.js";
import { ControlChannel, type Ready } from "./control-channel.js";
import type { ContainerDriver, ExitInfo, StartedContainer } from "./drivers/driver.js";
import type { Inventory, Reservation, ResourceRequest } from "./inventory.js";
import type { ContainerLife, UsageLedger } from "./usage-ledger.js";

/** Defaults for functions that do not say. */
export const DEFAULT_CPU = 1;
export const DEFAULT_MEMORY_MIB = 512;
const PIDS_LIMIT = 256;
const LOG_TAIL_LINES = 20;
/** How long a pool whose class `enter()` failed waits before a new container tries: doubling, from the first to the most. */
const ENTER_BACKOFF_FIRST_MS = 1_000;
const ENTER_BACKOFF_MAX_MS = 60_000;
/** How long a stopping container's runner has for its classes' `exit()` hooks. */
const EXIT_GRACE_MS = 10_000;

/** What a pool of containers runs: one function of one bundle, with its spec. */
export interface PoolDescriptor {
  app: string;
  function: string;
  bundleHash: string;
  spec: PlaneFunctionSpec;
  /** A class method's parameters: each set has its own pool. */
  clsParams?: Record<string, unknown>;
}

/** A pool the gateway asked this plane to keep warm; `bundle()` fetches its bundle when needed. */
export interface WarmPool extends PoolDescriptor {
  bundle(): Promise<BundleOnDisk>;
}

/** An app bundle on the plane's disk, with the node_modules its native packages come from. */
export interface BundleOnDisk {
  path: string;
  nodeModules: string | undefined;
}

export interface SchedulerOptions {
  driver: ContainerDriver;
  inventory: Inventory;
  planeId: string;
  /** Control sockets live under `<stateDir>/control/<container>`. */
  stateDir: string;
  /** Idle time before a container is stopped. */
  scaledownWindowMs: number;
  /** Each container log line, tagged. */
  log: (line: string) => void;
  /** Where container lives are recorded (and spend caps read). */
  usage: UsageLedger;
  /** The tag of a function's image, built on first use (by the hash of its spec). */
  imageFor(hash: string): Promise<string>;
}

interface Worker {
  id: string;
  key: string;
  label: string;
  container: StartedContainer;
  channel: ControlChannel;
  reservation: Reservation;
  /** The function's scaling settings (concurrency, scale-down, warm minimum). */
  scaling: PlaneFunctionSpec["autoscaler"];
  /** Call ids of the inputs it is running now (up to `scaling.maxInputs`). */
  inFlight: Set<string>;
  /** The runner has said it is ready: only then may inputs be given to it. */
  ready: boolean;
  /** The plane itself is stopping it (so a SIGKILL is ours, not the OOM killer's). */
  stopping: boolean;
  /** The latest input's call id, for log tags. */
  callId: string | undefined;
  /** What this container's life costs: its app, function and resources, from when it started. */
  life: ContainerLife;
  logTail: string[];
  idleTimer: NodeJS.Timeout | undefined;
  exit: ExitInfo | undefined;
  protocolError: string | undefined;
}

export interface FunctionStats {
  app: string;
  function: string;
  running: number;
  idle: number;
  starting: number;
  queued: number;
  coldStarts: number;
}

export class Scheduler {
  readonly #o: SchedulerOptions;
  readonly #workers = new Set<Worker>();
  readonly #waiters = new Set<() => void>();
  readonly #stats = new Map<string, FunctionStats>();
  /** Pools whose class `enter()` failed: no new container before `until`; inputs fail with `error` meanwhile. */
  readonly #enterBackoff = new Map<string, { until: number; delayMs: number; error: TandemError }>();
  /** Calls cancelled while their container was starting. */
  readonly #cancelledBeforeStart = new Set<string>();
  /** Containers starting now, by pool. */
  readonly #starting = new Map<string, number>();
  /** Pools this plane keeps warm, as the gateway assigned them. */
  #warm: WarmPool[] = [];
  #filling = false;
  #closed = false;

  constructor(options: SchedulerOptions) {
    this.#o = options;
  }

  /** Runs one input to its end. Never throws: every outcome is a response. */
  async run(req: PlaneRunRequest, bundle: BundleOnDisk): Promise<PlaneRunResponse> {
    const stats = this.#statsFor(req);
    let worker: Worker | undefined;
    let coldStart = false;
    try {
      const acquired = await this.#acquire(req, bundle, timeoutFromNow(req), stats);
      worker = acquired.worker;
      coldStart = acquired.cold;
      const output = await this.#runOn(worker, req, timeoutFromNow(req));
      this.#release(worker, req.callId);
      const base = { containerId: worker.id, coldStart, ...(worker.reservation.gpus[0] ? { gpu: worker.reservation.gpus[0].type } : {}) };
      if (output.status === "succeeded") {
        return { status: "succeeded", result: output.result.json, ...(output.result.meta === undefined ? {} : { meta: output.result.meta }), ...base };
      }
      return { status: "failed", error: output.error as WireError, ...base };
    } catch (err) {
      if (worker) await this.#retire(worker);
      const error = err instanceof TandemError ? err : new ContainerFailedError((err as Error).message);
      return { status: error instanceof FunctionTimeoutError ? "timed_out" : "failed", error: toWireError(error), ...(worker ? { containerId: worker.id, coldStart } : {}) };
    }
  }

  /**
   * Runs a generator input and yields its chunks (encoded) as they come. The
   * runner makes the next chunk only when this is asked for it, so a slow
   * reader slows the generator; stopping early cancels it. Throws the typed
   * error when the input fails (after the chunks it sent).
   */
  async *stream(req: PlaneRunRequest, bundle: BundleOnDisk): AsyncGenerator<EncodedValue, void, undefined> {
    const { worker } = await this.#acquire(req, bundle, timeoutFromNow(req), this.#statsFor(req));
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
    const input = { t: "input" as const, callId: req.callId, function: req.function, attempt: req.attempt, stream: true, args: { json: req.args, ...(req.meta === undefined ? {} : { meta: req.meta }) } };
    const done = worker.channel.run(input, (chunk) => {
      chunks.push(chunk.value);
      poke();
    });
    done.then((o) => (output = o), (e: Error) => (broken = e)).finally(poke);
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
          if (output.status === "failed") throw fromWireError(output.error as WireError);
          clean = true;
          return;
        }
        if (worker.protocolError) {
          throw new ProtocolError(`${worker.label} container ${worker.id} wrote something that is not a control frame (${worker.protocolError}); it was killed`, { logTail: worker.logTail.slice() });
        }
        if (worker.exit || broken) throw this.#failure(worker, await worker.container.exited, "while streaming");
        const woke = await raceDeadline(new Promise<"woke">((resolve) => (wake = () => resolve("woke"))), deadline);
        if (woke === "timeout") throw this.#timeout(worker, req);
      }
    } finally {
      if (!output && !broken && !worker.exit && !worker.protocolError) {
        // The reader stopped early: the runner returns the generator (its `finally` runs) and ends the input.
        worker.channel.cancel(req.callId);
        clean = (await raceDeadline(done.then(() => true, () => false), Date.now() + 5_000)) === true;
      }
      if (clean) this.#release(worker, req.callId);
      else await this.#retire(worker);
    }
  }

  stats(): FunctionStats[] {
    return [...this.#stats.values()].map((s) => {
      const mine = [...this.#workers].filter((w) => w.label === `${s.app}.${s.function}`);
      return { ...s, running: mine.filter((w) => w.inFlight.size > 0).length, idle: mine.filter((w) => w.inFlight.size === 0).length };
    });
  }

  /** Containers by id, for `docker ps`-style views and tests. */
  containers(): { id: string; app: string; function: string; ready: boolean; busy: boolean; inputs: number; runtimeId: string }[] {
    return [...this.#workers].map((w) => {
      const [app = "", fn = ""] = w.label.split(".");
      return { id: w.id, app, function: fn, ready: w.ready, busy: w.inFlight.size > 0, inputs: w.inFlight.size, runtimeId: w.container.runtimeId };
    });
  }

  /**
   * Stops a call's input: the runner aborts its signal and answers it as
   * cancelled; with `terminateContainer`, its container is stopped at once.
   * False when no container here runs it.
   */
  cancel(callId: string, terminateContainer: boolean): boolean {
    const worker = [...this.#workers].find((w) => w.inFlight.has(callId));
    if (!worker) return false;
    this.#o.log(`[plane] cancelling ${worker.label} ${callId}${terminateContainer ? `, stopping container ${worker.id}` : ""}`);
    if (terminateContainer) void this.#retire(worker);
    else if (worker.ready) worker.channel.cancel(callId);
    else this.#cancelledBeforeStart.add(callId); // its container is still starting: the input is never sent
    return true;
  }

  /** Stops every container of `app` now (`tandem app stop`); returns how many. */
  async stopApp(app: string): Promise<number> {
    this.#warm = this.#warm.filter((p) => p.app !== app);
    const mine = [...this.#workers].filter((w) => w.label.startsWith(`${app}.`));
    await Promise.all(mine.map((w) => this.#retire(w, { graceful: true })));
    if (mine.length) this.#o.log(`[plane] stopped ${mine.length} container${mine.length === 1 ? "" : "s"} of app ${app}`);
    return mine.length;
  }

  /**
   * The pools this plane keeps warm (`minContainers`), as the gateway assigns
   * them; starts what is missing, as resources allow.
   */
  keepWarm(pools: WarmPool[]): void {
    this.#warm = pools;
    void this.#fillWarm();
  }

  async #fillWarm(): Promise<void> {
    if (this.#filling || this.#closed) return;
    this.#filling = true;
    try {
      for (const pool of this.#warm) {
        const key = keyOf(pool);
        for (;;) {
          const have = [...this.#workers].filter((w) => w.key === key && !w.exit).length + (this.#starting.get(key) ?? 0);
          if (have >= pool.spec.autoscaler.minContainers) break;
          const reservation = resourceRequests(pool).map((r) => this.#o.inventory.reserve(r)).find((r) => r !== undefined);
          if (!reservation) break; // no room now; the next heartbeat tries again
          try {
            const worker = await this.#startTracked(pool, key, await pool.bundle(), reservation, Date.now() + 120_000);
            this.#release(worker, undefined);
            this.#o.log(`[plane] keeping ${worker.label} ${worker.id} warm (minContainers ${pool.spec.autoscaler.minContainers})`);
          } catch (err) {
            // A plane shutting down kills what is still starting: that is no failure to report.
            if (!this.#closed) this.#o.log(`[plane] could not start a warm container for ${pool.app}.${pool.function}: ${(err as Error).message}`);
            break;
          }
        }
      }
    } finally {
      this.#filling = false;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const wake of this.#waiters) wake();
    await Promise.all([...this.#workers].map((w) => this.#retire(w, { graceful: true })));
  }

  async #acquire(req: PlaneRunRequest, bundle: BundleOnDisk, deadline: number, stats: FunctionStats): Promise<{ worker: Worker; cold: boolean }> {
    const key = keyOf(req);
    const scaling = req.spec.autoscaler;
    const requests = resourceRequests(req);
    const possible = requests.filter((r) => this.#o.inventory.fits(r) === undefined);
    if (possible.length === 0) {
      throw new NoCapacityError(`no capacity for ${describe(requests)} on plane ${this.#o.planeId}: ${this.#o.inventory.fits(requests[0]!)}`);
    }
    const take = (worker: Worker) => {
      clearTimeout(worker.idleTimer);
      worker.inFlight.add(req.callId);
      worker.callId = req.callId;
      return worker;
    };
    stats.queued++;
    try {
      for (;;) {
        if (this.#closed) throw new NoCapacityError(`plane ${this.#o.planeId} is shutting down`);
        const mine = [...this.#workers].filter((w) => w.key === key && w.ready && !w.exit && !w.protocolError).sort((a, b) => a.inFlight.size - b.inFlight.size);
        // A warm container below its target load; else a new container, while under maxContainers; else one below its maximum load.
        const underTarget = mine.find((w) => w.inFlight.size < scaling.targetInputs);
        if (underTarget) return { worker: take(underTarget), cold: false };
        const backoff = this.#enterBackoff.get(key);
        if (backoff && Date.now() < backoff.until && mine.length === 0) throw backoff.error; // not a hang: the same error, now
        if (mine.length + (this.#starting.get(key) ?? 0) < scaling.maxContainers) {
          for (const request of possible) {
            const reservation = this.#o.inventory.reserve(request) ?? (this.#evictFor(request) ? this.#o.inventory.reserve(request) : undefined);
            if (!reservation) continue;
            stats.queued--;
            stats.starting++;
            try {
              const worker = take(await this.#startTracked(req, key, bundle, reservation, deadline, req.callId));
              stats.coldStarts++;
              this.#topUpBuffer(req, key, bundle);
              return { worker, cold: true };
            } finally {
              stats.starting--;
              stats.queued++;
            }
          }
        }
        const underMax = mine.find((w) => w.inFlight.size < scaling.maxInputs);
        if (underMax) return { worker: take(underMax), cold: false };
        if (Date.now() >= deadline) {
          const why =
            mine.length >= scaling.maxContainers
              ? `all ${mine.length} of its containers are busy (maxContainers ${scaling.maxContainers}, ${scaling.maxInputs} input${scaling.maxInputs === 1 ? "" : "s"} each)`
              : "all of it is in use";
          throw new NoCapacityError(`no capacity for ${describe(possible)} for ${req.app}.${req.function} on plane ${this.#o.planeId} within ${req.timeoutSeconds} s: ${why}`);
        }
        await this.#waitForRelease(deadline);
      }
    } finally {
      stats.queued--;
    }
  }

  /** Records a failed `enter()`: the pool waits 1 s, then 2, 4, … up to a minute, before a container tries again. */
  #enterFailed(key: string, pool: PoolDescriptor, error: TandemError): TandemError {
    const delayMs = Math.min(ENTER_BACKOFF_MAX_MS, (this.#enterBackoff.get(key)?.delayMs ?? ENTER_BACKOFF_FIRST_MS / 2) * 2);
    this.#enterBackoff.set(key, { until: Date.now() + delayMs, delayMs, error });
    this.#o.log(`[plane] ${pool.app}.${poolName(pool)}: enter() failed (${error.message}); no new container for ${delayMs / 1000} s`);
    return error;
  }

  /** With `bufferContainers`, keeps that many idle containers ready while the function is busy. */
  #topUpBuffer(req: PlaneRunRequest, key: string, bundle: BundleOnDisk): void {
    const { bufferContainers, maxContainers } = req.spec.autoscaler;
    if (bufferContainers === 0) return;
    const mine = [...this.#workers].filter((w) => w.key === key && !w.exit);
    const idle = mine.filter((w) => w.inFlight.size === 0).length + (this.#starting.get(key) ?? 0);
    const room = maxContainers - mine.length - (this.#starting.get(key) ?? 0);
    for (let i = 0; i < Math.min(bufferContainers - idle, room); i++) {
      const reservation = resourceRequests(req).map((r) => this.#o.inventory.reserve(r)).find((r) => r !== undefined);
      if (!reservation) return;
      void this.#startTracked(req, key, bundle, reservation, Date.now() + 120_000).then(
        (worker) => this.#release(worker, undefined),
        (err: Error) => this.#o.log(`[plane] could not start a buffer container for ${req.app}.${req.function}: ${err.message}`),
      );
    }
  }

  /** Starts a container, counted as starting for its pool meanwhile; `forCall` holds it for that input from the start. */
  async #startTracked(pool: PoolDescriptor, key: string, bundle: BundleOnDisk, reservation: Reservation, deadline: number, forCall?: string): Promise<Worker> {
    try {
      this.#checkSpendCap(pool);
    } catch (err) {
      this.#o.inventory.release(reservation);
      throw err;
    }
    this.#starting.set(key, (this.#starting.get(key) ?? 0) + 1);
    try {
      return await this.#start(pool, key, bundle, reservation, deadline, forCall);
    } finally {
      this.#starting.set(key, (this.#starting.get(key) ?? 1) - 1);
      this.#wake(); // inputs queued behind this start may now share the new container, or start their own
    }
  }

  /** Stops one idle container whose resources would let `request` start. */
  #evictFor(request: ResourceRequest): boolean {
    const victim = [...this.#workers].find(
      (w) => w.inFlight.size === 0 && (request.gpu ? w.reservation.gpus.some((g) => g.type === request.gpu!.type) : w.reservation.memoryMiB > 0),
    );
    if (!victim) return false;
    this.#o.log(`[plane] stopping idle ${victim.label} ${victim.id} to make room`);
    victim.stopping = true;
    this.#forget(victim);
    void victim.container.kill().finally(() => victim.channel.close());
    return true;
  }

  async #start(req: PoolDescriptor, key: string, bundle: BundleOnDisk, reservation: Reservation, deadline: number, forCall: string | undefined): Promise<Worker> {
    const id = `ctr-${randomBytes(4).toString("hex")}`;
    const started = performance.now();
    let image: string | undefined;
    try {
      image = req.spec.image ? await this.#o.imageFor(req.spec.image) : undefined;
    } catch (err) {
      this.#o.inventory.release(reservation);
      throw err;
    }
    const channel = await ControlChannel.open(join(this.#o.stateDir, "control", id));
    let container: StartedContainer;
    try {
      container = await this.#o.driver.start({
        id,
        bundlePath: bundle.path,
        nodeModulesPath: bundle.nodeModules,
        controlDir: channel.dir,
        env: {
          ...req.spec.env,
          ...(reservation.gpus.length ? { CUDA_VISIBLE_DEVICES: cudaVisibleDevices(reservation, this.#o.driver) } : {}),
          TANDEM_APP: req.app,
          TANDEM_FUNCTION: req.function,
          TANDEM_CONTAINER_ID: id,
          // A class's container builds its instance (and runs enter()) before it says it is ready.
          ...(req.clsParams === undefined ? {} : { TANDEM_CLS_PARAMS: JSON.stringify(req.clsParams) }),
        },
        cpu: reservation.cpu,
        memoryMiB: reservation.memoryMiB,
        pidsLimit: PIDS_LIMIT,
        network: false,
        gpuDeviceIds: reservation.gpus.filter((g) => !g.simulated).map((g) => g.deviceId),
        labels: { "tandem.plane": this.#o.planeId, "tandem.app": req.app, "tandem.function": req.function },
        ...(image ? { image } : {}),
      });
    } catch (err) {
      this.#o.inventory.release(reservation);
      await channel.close();
      throw new ContainerFailedError(`could not start a container for ${req.app}.${req.function}: ${(err as Error).message}`, { reason: "start" });
    }
    const worker: Worker = {
      id, key, label: `${req.app}.${req.function}`, container, channel, reservation, scaling: req.spec.autoscaler,
      inFlight: new Set(forCall ? [forCall] : []), ready: false, stopping: false, callId: forCall, logTail: [], idleTimer: undefined, exit: undefined, protocolError: undefined,
      life: {
        containerId: id, app: req.app, function: req.function, gpu: reservation.gpus[0]?.type ?? null, gpuCount: reservation.gpus.length,
        cpu: reservation.cpu, memoryMiB: reservation.memoryMiB, startedAt: Date.now(),
      },
    };
    this.#workers.add(worker);
    container.onOutput((stream, line) => {
      worker.logTail.push(line);
      if (worker.logTail.length > LOG_TAIL_LINES) worker.logTail.shift();
      this.#o.log(`[${worker.label} ${worker.callId ?? "-"} ${id}]${stream === "stderr" ? " (stderr)" : ""} ${line}`);
    });
    channel.onProtocolError((message) => {
      worker.protocolError = message;
      this.#o.log(`[plane] ${worker.label} ${id} broke the control protocol (${message}); killing it`);
      worker.stopping = true;
      void container.kill();
    });
    void container.exited.then((exit) => {
      worker.exit = exit;
      channel.abort(new Error("container exited"));
      if (worker.inFlight.size === 0) {
        this.#forget(worker);
        void channel.close();
      }
    });
    let readyFrame: Ready | undefined;
    const ready = await raceDeadline(
      Promise.race([channel.ready.then((frame) => ((readyFrame = frame), "ready" as const)), container.exited.then(() => "exited" as const)]),
      deadline,
    );
    if (readyFrame?.enterFailed) {
      // The class could not load: fail with its error, and let the pool rest before another container tries.
      await this.#retire(worker);
      throw this.#enterFailed(key, req, fromWireError(readyFrame.enterFailed as WireError));
    }
    this.#enterBackoff.delete(key);
    if (ready !== "ready") {
      const failure =
        ready === "timeout"
          ? new FunctionTimeoutError(`${req.app}.${req.function}: container ${id} did not start in time`, { containerId: id, logTail: worker.logTail.slice() })
          : this.#failure(worker, await container.exited, "while starting");
      await this.#retire(worker);
      throw failure;
    }
    worker.ready = true;
    const gpus = reservation.gpus.length ? `, ${reservation.gpus.map((g) => `${g.type}#${g.index}`).join(" ")}${reservation.gpus[0]!.simulated ? " (simulated)" : ""}` : "";
    this.#o.log(`[plane] cold start: ${worker.label} ${id} ready in ${Math.round(performance.now() - started)} ms${gpus}`);
    return worker;
  }

  async #runOn(worker: Worker, req: PlaneRunRequest, deadline: number) {
    if (this.#cancelledBeforeStart.delete(req.callId)) {
      return { t: "output" as const, callId: req.callId, status: "failed" as const, error: { code: "call_cancelled", message: `call ${req.callId} was cancelled` } };
    }
    const outcome = await raceDeadline(
      Promise.race([
        worker.channel.run({ t: "input", callId: req.callId, function: req.function, attempt: req.attempt, args: { json: req.args, ...(req.meta === undefined ? {} : { meta: req.meta }) } }).then(
          (output) => ({ output }),
          () => ({ output: undefined }),
        ),
        worker.container.exited.then(() => ({ output: undefined })),
      ]),
      deadline,
    );
    if (outcome === "timeout") throw this.#timeout(worker, req);
    if (outcome.output) return outcome.output;
    if (worker.protocolError) {
      throw new ProtocolError(`${worker.label} container ${worker.id} wrote something that is not a control frame (${worker.protocolError}); it was killed`, { logTail: worker.logTail.slice() });
    }
    throw this.#failure(worker, await worker.container.exited, "during the call");
  }

  #timeout(worker: Worker, req: PlaneRunRequest): FunctionTimeoutError {
    return new FunctionTimeoutError(`${req.app}.${req.function} timed out after ${req.timeoutSeconds} s in container ${worker.id} (attempt ${req.attempt}); the container was stopped`, {
      timeoutSeconds: req.timeoutSeconds,
      containerId: worker.id,
      logTail: worker.logTail.slice(),
    });
  }

  #failure(worker: Worker, exit: ExitInfo, when: string): ContainerFailedError {
    const tail = worker.logTail.slice();
    // Docker does not always set OOMKilled (its OOM event can lose the race with the exit): a SIGKILL the plane
    // did not send, to a container under a memory limit, is the kernel's OOM killer.
    const oom = exit.oomKilled || (exit.code === 137 && !worker.stopping);
    const reason = oom ? "oom" : exit.code === 137 || exit.code === null ? "killed" : "crashed";
    const what =
      reason === "oom"
        ? `ran out of memory (limit ${worker.reservation.memoryMiB} MiB)`
        : reason === "killed"
          ? "was killed"
          : `crashed with exit code ${exit.code}`;
    const lastLines = tail.length ? `; last log lines:\n${tail.slice(-5).join("\n")}` : "";
    return new ContainerFailedError(`${worker.label} container ${worker.id} ${what} ${when}${lastLines}`, { reason, exitCode: exit.code, containerId: worker.id, logTail: tail });
  }

  /** An input ended (or, for `undefined`, a container was started ahead of inputs). */
  #release(worker: Worker, callId: string | undefined): void {
    // callId stays in the log tag until the next input: output can arrive just after the result, and belongs to it.
    if (callId !== undefined) worker.inFlight.delete(callId);
    if (worker.exit || worker.protocolError) {
      void this.#retire(worker);
      return;
    }
    if (worker.inFlight.size === 0) this.#scheduleScaleDown(worker);
    this.#wake();
  }

  /** Stops an idle container after its window, unless its pool would drop below `minContainers`. */
  #scheduleScaleDown(worker: Worker): void {
    clearTimeout(worker.idleTimer);
    const windowMs = (worker.scaling.scaledownWindowSeconds ?? this.#o.scaledownWindowMs / 1000) * 1000;
    worker.idleTimer = setTimeout(() => {
      const pool = [...this.#workers].filter((w) => w.key === worker.key && !w.exit).length;
      const warm = this.#warm.find((p) => keyOf(p) === worker.key)?.spec.autoscaler.minContainers ?? 0;
      if (pool <= warm) return this.#scheduleScaleDown(worker); // kept warm
      this.#o.log(`[plane] ${worker.label} ${worker.id} idle for ${windowMs / 1000} s; stopping it`);
      void this.#retire(worker, { graceful: true });
    }, windowMs);
    worker.idleTimer.unref();
  }

  /** Stops a container; `graceful` (scale-down, stop, shutdown) gives its runner time for `exit()` hooks first. */
  async #retire(worker: Worker, options: { graceful?: boolean } = {}): Promise<void> {
    const known = this.#workers.has(worker);
    this.#forget(worker);
    if (!known && worker.exit) return;
    worker.stopping = true;
    if (options.graceful && worker.ready && !worker.exit && !worker.protocolError) {
      // A grace period: the runner runs its classes' exit() hooks and leaves on its own.
      worker.channel.shutdown();
      await raceDeadline(worker.container.exited, Date.now() + EXIT_GRACE_MS);
    }
    await worker.container.kill().catch(() => {});
    await worker.channel.close().catch(() => {});
  }

  /** Drops a worker from the pool, gives its resources back and records its life, once. */
  #forget(worker: Worker): void {
    if (!this.#workers.delete(worker)) return;
    clearTimeout(worker.idleTimer);
    this.#o.inventory.release(worker.reservation);
    try {
      this.#o.usage.record({ ...worker.life, endedAt: Date.now() });
    } catch (err) {
      this.#o.log(`[plane] could not record the usage of ${worker.id}: ${(err as Error).message}`);
    }
    this.#wake();
  }

  /** The lives of the containers running now, for usage and spend caps. */
  running(): ContainerLife[] {
    return [...this.#workers].map((w) => w.life);
  }

  /** Refuses a new container for an app past its spend cap. */
  #checkSpendCap(pool: PoolDescriptor): void {
    const cap = pool.spec.spendCapUsd;
    if (cap === null) return;
    const spent = this.#o.usage.spent(pool.app, this.running());
    if (spent >= cap) {
      throw new SpendCapError(`app "${pool.app}" reached its spend cap of $${cap} ($${spent.toFixed(6)} spent on plane ${this.#o.planeId}); no new container starts for it`, {
        app: pool.app,
        spendCapUsd: cap,
        spentUsd: spent,
      });
    }
  }

  #waitForRelease(deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, Math.min(1_000, deadline - Date.now())));
      this.#waiters.add(done);
    });
  }

  #wake(): void {
    for (const wake of [...this.#waiters]) wake();
  }

  #statsFor(req: PlaneRunRequest): FunctionStats {
    const key = `${req.app}.${req.function}`;
    let stats = this.#stats.get(key);
    if (!stats) {
      stats = { app: req.app, function: req.function, running: 0, idle: 0, starting: 0, queued: 0, coldStarts: 0 };
      this.#stats.set(key, stats);
    }
    return stats;
  }
}

/**
 * What the function sees in CUDA_VISIBLE_DEVICES. Real GPUs handed to a Docker
 * container by device request are the only ones it sees, numbered from 0; a
 * process (unisolated) sees the host's numbering; simulated GPUs show the
 * host index they were assigned, so the assignment can be checked.
 */
function cudaVisibleDevices(reservation: Reservation, driver: ContainerDriver): string {
  const real = reservation.gpus.some((g) => !g.simulated);
  return reservation.gpus.map((g, i) => (real && driver.sandboxed ? i : g.index)).join(",");
}

/**
 * `timeout` seconds from now. An input gets it twice: once to wait for a
 * container (a free GPU, a slot under `maxContainers`: `no_capacity`; a cold
 * start: "did not start in time"), and once more, from when it reaches the
 * container, to run: waiting in the queue does not use up its run time.
 */
function timeoutFromNow(req: PlaneRunRequest): number {
  return Date.now() + req.timeoutSeconds * 1000;
}

/** What identifies a pool of interchangeable containers: the function, its bundle and its resources. */
function keyOf(req: PoolDescriptor): string {
  return `${req.app}/${poolName(req)}/${req.bundleHash}/${req.spec.image}/${(req.spec.gpu ?? []).join("|")}/${req.spec.cpu}/${req.spec.memory}/${JSON.stringify(req.spec.env)}/${JSON.stringify(req.clsParams ?? null)}`;
}

/** A function's pool, or for a class method its class's: one container serves every method of an instance. */
function poolName(req: PoolDescriptor): string {
  return req.clsParams === undefined ? req.function : req.function.split(".")[0]!;
}

/** What a container needs from the inventory: one request per GPU option (a fallback list), or CPU and memory. */
function resourceRequests(pool: PoolDescriptor): ResourceRequest[] {
  const options: (GpuRequest | undefined)[] = pool.spec.gpu ?? [undefined];
  return options.map((gpu) => ({ gpu, ...containerResources(pool.spec) }));
}

function describe(requests: ResourceRequest[]): string {
  return requests.map((r) => (r.gpu ? formatGpu(r.gpu) : `${r.cpu} CPU, ${r.memoryMiB} MiB`)).join(" or ");
}

async function raceDeadline<T>(promise: Promise<T>, deadline: number): Promise<T | "timeout"> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
