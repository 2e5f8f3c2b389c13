/**
 * Starting one container: the spend cap checked, its image built (or found),
 * its control channel opened, the driver asked to start it with the
 * function's environment and the resources reserved for it, then the wait for
 * its runner to say it is ready. A class whose `enter()` fails makes its pool
 * rest (1 s, then 2, 4, … up to a minute) before another container tries, so
 * a broken class fails its inputs at once instead of starting containers in
 * a loop.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { PLANE_DEFAULTS } from "../sdk/defaults.js";
import { ContainerFailedError, InvalidOptionsError, SpendCapError, fromWireError, type TandemError, type WireError } from "../sdk/errors.js";
import { CONTAINER_ENV, CONTAINER_LABELS } from "../sdk/protocol.js";
import { ControlChannel, type Ready } from "./control-channel.js";
import { exitFailure, keepLogLine, startTimeout } from "./container-failure.js";
import type { ContainerPool, Worker } from "./container-pool.js";
import { TIMED_OUT, raceDeadline } from "../sdk/deadline.js";
import type { ContainerDriver, StartedContainer } from "./drivers/driver.js";
import type { Inventory, Reservation } from "./inventory.js";
import { poolName, type PoolDescriptor } from "./pool-descriptor.js";
import type { ScaleDown } from "./scale-down.js";
import type { UsageLedger } from "./usage-ledger.js";
import type { VolumeMounts } from "./volume-mounts.js";
import type { PlaneLogLine } from "./log-shipper.js";
import { trace } from "../sdk/trace.js";

/** Most processes and threads inside a function's container. */
/** How long a pool whose class `enter()` failed waits before a new container tries: doubling, from the first to the most. */
const ENTER_BACKOFF_FIRST_MS = 1_000;
const ENTER_BACKOFF_MAX_MS = 60_000;

/** An app bundle on the plane's disk, with the node_modules its native packages come from. */
export interface BundleOnDisk {
  path: string;
  nodeModules: string | undefined;
}

/** What {@link ContainerStarter} needs. */
export interface ContainerStartOptions {
  driver: ContainerDriver;
  inventory: Inventory;
  planeId: string;
  /** The plane's region (`--region`), told to its containers as `TANDEM_REGION`. */
  region: string;
  /** Control sockets live under `<stateDir>/control/<container>`, unless the driver has a place for them. */
  stateDir: string;
  /** Each container log line, tagged. */
  log: (line: string) => void;
  /** Each container log line, and the plane's own lines about a container, as records for the app's log (log-shipper.ts). */
  onLogLine?: (line: PlaneLogLine) => void;
  /** Where spend caps are read. */
  usage: UsageLedger;
  /** The tag of a function's image, built on first use (by the hash of its spec). */
  imageFor(hash: string): Promise<string>;
  /** Where a started container joins its pool. */
  pool: ContainerPool;
  /** How a container that failed to start is stopped and forgotten. */
  scaleDown: ScaleDown;
  /** Each container's API socket and volume mounts (gpu-plane/volume-mounts.ts); none: neither (the dispatcher's unit tests). */
  mounts?: VolumeMounts;
}

/**
 * Starts containers, one at a time per call, each into its pool.
 * @example
 * const worker = await starter.start(req, poolKey(req), bundle, reservation, timeoutFromNow(req), req.callId);
 */
export class ContainerStarter {
  readonly #o: ContainerStartOptions;
  /** Pools whose class `enter()` failed: no new container before `until`; inputs fail with `error` meanwhile. */
  readonly #enterBackoff = new Map<string, { until: number; delayMs: number; error: TandemError }>();

  constructor(options: ContainerStartOptions) {
    this.#o = options;
  }

  /** The error a pool whose class `enter()` failed fails its inputs with while it rests; undefined when it may start a container. */
  resting(key: string): TandemError | undefined {
    const backoff = this.#enterBackoff.get(key);
    return backoff && Date.now() < backoff.until ? backoff.error : undefined;
  }

  /**
   * Starts a container with the resources in `reservation` (which it owns
   * from now: given back if the start fails), counted as starting for its pool
   * meanwhile, ready by `deadline` or failed with the typed error. `forCall`
   * holds it for that input from the start; `starting` is told once the
   * driver has asked its runtime to run it (see `ContainerSpec.starting`).
   */
  async start(
    pool: PoolDescriptor,
    key: string,
    bundle: BundleOnDisk,
    reservation: Reservation,
    deadline: number,
    forCall?: string,
    starting?: () => void,
  ): Promise<Worker> {
    try {
      this.#checkSpendCap(pool);
    } catch (err) {
      this.#o.inventory.release(reservation);
      throw err;
    }
    this.#o.pool.startBegan(key);
    try {
      return await this.#start(pool, key, bundle, reservation, deadline, forCall, starting);
    } finally {
      this.#o.pool.startEnded(key);
    }
  }

  async #start(
    req: PoolDescriptor,
    key: string,
    bundle: BundleOnDisk,
    reservation: Reservation,
    deadline: number,
    forCall: string | undefined,
    starting: (() => void) | undefined,
  ): Promise<Worker> {
    const id = `ctr-${randomBytes(4).toString("hex")}`;
    const started = performance.now();
    const startedAt = Date.now();
    let image: string | undefined;
    try {
      image = req.spec.image ? await this.#o.imageFor(req.spec.image) : undefined;
    } catch (err) {
      this.#o.inventory.release(reservation);
      throw err;
    }
    const channel = await ControlChannel.open(this.#o.driver.controlDirFor?.(this.#o.planeId, id) ?? join(this.#o.stateDir, "control", id));
    let attached: Awaited<ReturnType<VolumeMounts["attach"]>> = { binds: [], env: [] };
    try {
      if (this.#o.mounts) attached = await this.#o.mounts.attach(id, req.app, channel.dir, req.spec.volumes ?? []);
      else if (req.spec.volumes?.length) throw new InvalidOptionsError(`${req.app}.${req.function} mounts volumes, which this plane cannot`);
    } catch (err) {
      this.#o.inventory.release(reservation);
      await this.#o.mounts?.finish(id);
      await channel.close();
      throw err;
    }
    let container: StartedContainer;
    trace(`container ${id}: asked for`);
    try {
      container = await this.#o.driver.start({
        id,
        bundlePath: bundle.path,
        nodeModulesPath: bundle.nodeModules,
        controlDir: channel.dir,
        env: {
          ...req.spec.env,
          ...req.secrets,
          ...secretKeysEnv(req),
          ...(reservation.gpus.length ? { CUDA_VISIBLE_DEVICES: cudaVisibleDevices(reservation, this.#o.driver) } : {}),
          [CONTAINER_ENV.app]: req.app,
          [CONTAINER_ENV.function]: req.function,
          [CONTAINER_ENV.containerId]: id,
          [CONTAINER_ENV.region]: this.#o.region,
          // A class's container builds its instance (and runs enter()) before it says it is ready.
          ...(req.clsParams === undefined ? {} : { [CONTAINER_ENV.clsParams]: JSON.stringify(req.clsParams) }),
          ...(attached.env.length ? { [CONTAINER_ENV.volumes]: JSON.stringify(attached.env) } : {}),
        },
        cpu: reservation.cpu,
        memoryMiB: reservation.memoryMiB,
        pidsLimit: PLANE_DEFAULTS.pidsLimit,
        network: false,
        gpuDeviceIds: reservation.gpus.filter((g) => !g.simulated).map((g) => g.deviceId),
        labels: { [CONTAINER_LABELS.plane]: this.#o.planeId, [CONTAINER_LABELS.app]: req.app, [CONTAINER_LABELS.function]: req.function },
        ...(image ? { image } : {}),
        ...(attached.binds.length ? { mounts: attached.binds } : {}),
        ...(starting ? { starting } : {}),
      });
    } catch (err) {
      this.#o.inventory.release(reservation);
      await this.#o.mounts?.finish(id);
      await channel.close();
      throw new ContainerFailedError(`could not start a container for ${req.app}.${req.function}: ${(err as Error).message}`, { reason: "start" });
    }
    trace(`container ${id}: started`);
    const worker: Worker = {
      id,
      key,
      label: `${req.app}.${req.function}`,
      container,
      channel,
      reservation,
      scaling: req.spec.autoscaler,
      inFlight: new Set(forCall ? [forCall] : []),
      ready: false,
      exitHooks: true, // until the runner says otherwise
      stopping: false,
      callId: forCall,
      logTail: [],
      idleTimer: undefined,
      exit: undefined,
      protocolError: undefined,
      life: {
        containerId: id,
        app: req.app,
        function: req.function,
        gpu: reservation.gpus[0]?.type ?? null,
        gpuCount: reservation.gpus.length,
        cpu: reservation.cpu,
        memoryMiB: reservation.memoryMiB,
        startedAt: Date.now(),
      },
    };
    this.#o.pool.add(worker);
    container.onOutput((stream, line) => {
      keepLogLine(worker.logTail, line);
      this.#o.log(`[${worker.label} ${worker.callId ?? "-"} ${id}]${stream === "stderr" ? " (stderr)" : ""} ${line}`);
      this.#o.onLogLine?.({
        app: req.app,
        function: worker.callFunction ?? req.function,
        callId: worker.callId ?? null,
        containerId: id,
        source: stream,
        text: line,
      });
    });
    channel.onProtocolError((message) => {
      worker.protocolError = message;
      this.#o.log(`[plane] ${worker.label} ${id} broke the control protocol (${message}); killing it`);
      worker.stopping = true;
      void container.kill();
    });
    void container.exited.then((exit) => {
      worker.exit = exit;
      void this.#o.mounts?.finish(id); // the last commit of its writable mounts: their folders are the plane's
      channel.abort(new Error("container exited"));
      if (worker.inFlight.size === 0) {
        this.#o.scaleDown.forget(worker);
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
      await this.#o.scaleDown.retire(worker);
      throw this.#enterFailed(key, req, fromWireError(readyFrame.enterFailed as WireError));
    }
    this.#enterBackoff.delete(key);
    if (ready !== "ready") {
      const failure =
        ready === TIMED_OUT
          ? startTimeout(worker, req, Math.round((deadline - startedAt) / 100) / 10)
          : exitFailure(worker, await container.exited, "while starting");
      await this.#o.scaleDown.retire(worker);
      throw failure;
    }
    worker.ready = true;
    worker.exitHooks = readyFrame?.exitHooks ?? true;
    trace(`container ${id}: runner ready`);
    const gpus = reservation.gpus.length
      ? `, ${reservation.gpus.map((g) => `${g.type}#${g.index}`).join(" ")}${reservation.gpus[0]!.simulated ? " (simulated)" : ""}`
      : "";
    const coldStart = `cold start: ${worker.label} ${id} ready in ${Math.round(performance.now() - started)} ms${gpus}`;
    this.#o.log(`[plane] ${coldStart}`);
    this.#o.onLogLine?.({ app: req.app, function: req.function, callId: forCall ?? null, containerId: id, source: "system", text: coldStart });
    return worker;
  }

  /** Records a failed `enter()`: the pool waits 1 s, then 2, 4, … up to a minute, before a container tries again. */
  #enterFailed(key: string, pool: PoolDescriptor, error: TandemError): TandemError {
    const delayMs = Math.min(ENTER_BACKOFF_MAX_MS, (this.#enterBackoff.get(key)?.delayMs ?? ENTER_BACKOFF_FIRST_MS / 2) * 2);
    this.#enterBackoff.set(key, { until: Date.now() + delayMs, delayMs, error });
    this.#o.log(`[plane] ${pool.app}.${poolName(pool)}: enter() failed (${error.message}); no new container for ${delayMs / 1000} s`);
    return error;
  }

  /** Refuses a new container for an app past its spend cap. */
  #checkSpendCap(pool: PoolDescriptor): void {
    const cap = pool.spec.spendCapUsd;
    if (cap === null) return;
    const spent = this.#o.usage.spent(pool.app, this.#o.pool.lives());
    if (spent >= cap) {
      throw new SpendCapError(
        `app "${pool.app}" reached its spend cap of $${cap} ($${spent.toFixed(6)} spent on plane ${this.#o.planeId}); no new container starts for it`,
        {
          app: pool.app,
          spendCapUsd: cap,
          spentUsd: spent,
        },
      );
    }
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

/** The names of the variables in `req.secrets` that its secrets set (not its `env` option), for the runner to mask. */
function secretKeysEnv(req: PoolDescriptor): Record<string, string> {
  const keys = Object.entries(req.secrets ?? {})
    .filter(([key, value]) => req.spec.env[key] !== value)
    .map(([key]) => key);
  return keys.length ? { [CONTAINER_ENV.secretKeys]: keys.join(",") } : {};
}
