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
import { LOG_LIMITS, PLANE_DEFAULTS } from "../sdk/defaults.js";
import { ContainerFailedError, InvalidOptionsError, SpendCapError, fromWireError, toWireError, type TandemError, type WireError } from "../sdk/errors.js";
import { formatUsd } from "../sdk/pricing.js";
import { CONTAINER_ENV, CONTAINER_LABELS } from "../sdk/protocol.js";
import { secretMask } from "../sdk/secret.js";
import { ControlChannel, type Ready } from "./control-channel.js";
import { buildTimeout, exitFailure, exitLine, firstLine, keepLogLine, startTimeout } from "./container-failure.js";
import type { ContainerPool, Worker } from "./container-pool.js";
import { TIMED_OUT, raceDeadline } from "../sdk/deadline.js";
import type { ContainerDriver, ContainerSpec, ExitInfo, StartedContainer } from "./drivers/driver.js";
import { processMountsRefused } from "./drivers/process.js";
import type { Inventory, Reservation } from "./inventory.js";
import { poolName, type PoolDescriptor } from "./pool-descriptor.js";
import type { ScaleDown } from "./scale-down.js";
import { SnapshotStore } from "./snapshots.js";
import { pricingLabels, writeUsage, type ContainerLife, type UsageLedger } from "./usage-ledger.js";
import type { VolumeMounts } from "./volume-mounts.js";
import type { LogLineMaps } from "./bundle-cache.js";
import type { PlaneLogLine } from "./log-shipper.js";
import { trace } from "../sdk/trace.js";

/** Most processes and threads inside a function's container. */
/** How long a pool whose class `enter()` failed waits before a new container tries: doubling, from the first to the most. */
const ENTER_BACKOFF_FIRST_MS = 1_000;
const ENTER_BACKOFF_MAX_MS = 60_000;

/** What a {@link ContainerStarter.start} is for, besides its pool. */
export interface StartOptions {
  /** The input it is held for from the start. */
  forCall?: string | undefined;
  /** That input's attempt: a start that times out says it, as a run's timeout does. */
  attempt?: number | undefined;
  /** Told once the driver has asked its runtime to run it (see `ContainerSpec.starting`). */
  starting?: (() => void) | undefined;
  /** A prepared container (prepared-containers.ts): its ready line says so, since no input waits for it. */
  prepared?: boolean;
}

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
  /** Where `snapshot: true` functions' memory snapshots are kept (snapshots.ts); none: their containers start fresh. */
  snapshots?: SnapshotStore;
  /** A stack thrown in bundle `bundleHash`, mapped to the app's files (bundle-cache.ts); none: named by its error alone. */
  mapStack?: (bundleHash: string, stack: string) => Promise<string>;
  /** What maps the stack frames a container prints, in its log lines (bundle-cache.ts); none: its lines stay as printed. */
  lineMaps?: LogLineMaps;
}

/** A container's line waiting for its bundle's map: `#line`'s arguments after the container's. */
type HeldLine = [fn: string, callId: string | null, stream: "stdout" | "stderr", line: string, tail: string[], time: number];

/** A container resumed from a memory snapshot that did not get ready: the start falls back to a fresh one. */
class RestoreFailed extends Error {
  constructor(
    readonly snapshotKey: string,
    readonly failure: unknown,
  ) {
    super((failure as Error).message);
  }
}

/**
 * Starts containers, one at a time per call, each into its pool.
 * @example
 * const worker = await starter.start(req, poolKey(req), bundle, reservation, timeoutFromNow(req), { forCall: req.callId });
 */
export class ContainerStarter {
  readonly #o: ContainerStartOptions;
  /** Pools whose class `enter()` failed: no new container before `until`; inputs fail with `error` meanwhile. */
  readonly #enterBackoff = new Map<string, { at: number; until: number; delayMs: number; error: TandemError }>();
  /** Pools whose `snapshot: true` is not honoured here, each told once: why. */
  readonly #noSnapshot = new Map<string, string>();
  /** Snapshots being taken, by snapshot key: a second cold start meanwhile waits for the same one. */
  readonly #taking = new Map<string, Promise<string>>();
  /** Containers whose lines wait for their bundle's source map (`#line`), each line's arguments in order. */
  readonly #heldLines = new Map<string, HeldLine[]>();

  constructor(options: ContainerStartOptions) {
    this.#o = options;
  }

  /**
   * The error a pool whose class `enter()` failed fails its inputs with while it rests, saying so and for how long (a
   * user who has just fixed what `enter()` lacked sees why the call still fails); undefined when it may start a container.
   */
  resting(key: string): TandemError | undefined {
    const backoff = this.#enterBackoff.get(key);
    const now = Date.now();
    if (!backoff || now >= backoff.until) return undefined;
    const note = ` (the class's enter() failed so ${Math.round((now - backoff.at) / 1000)} s ago; the plane tries a new container in ${Math.ceil((backoff.until - now) / 1000)} s)`;
    const wire = toWireError(backoff.error);
    return fromWireError({
      ...wire,
      message: wire.message + note,
      ...(wire.remote ? { remote: { ...wire.remote, message: wire.remote.message + note } } : {}),
    });
  }

  /**
   * Starts a container with the resources in `reservation` (which it owns
   * from now: given back if the start fails), counted as starting for its pool
   * meanwhile, ready by `deadline` or failed with the typed error.
   */
  async start(
    pool: PoolDescriptor,
    key: string,
    bundle: BundleOnDisk,
    reservation: Reservation,
    deadline: number,
    options: StartOptions = {},
  ): Promise<Worker> {
    try {
      this.checkSpendCap(pool);
    } catch (err) {
      this.#o.inventory.release(reservation);
      throw err;
    }
    this.#o.pool.startBegan(key);
    try {
      return await this.#start(pool, key, bundle, reservation, deadline, options, true);
    } catch (err) {
      if (!(err instanceof RestoreFailed)) throw err;
      // The snapshot would not resume: dropped, never taken again for this pool here, and this start made fresh.
      await this.#o.snapshots?.remove(err.snapshotKey);
      const why = firstLine(err.message);
      this.#noSnapshot.set(key, `its memory snapshot could not be resumed (${why})`);
      this.#o.log(`[plane] ${pool.app}.${poolName(pool)}: could not resume its memory snapshot (${why}); starting it fresh`);
      const again = this.#o.inventory.reserve({ gpu: undefined, cpu: reservation.cpu, memoryMiB: reservation.memoryMiB });
      if (!again || Date.now() >= deadline) throw err.failure;
      return await this.#start(pool, key, bundle, again, deadline, options, false);
    } finally {
      this.#o.pool.startEnded(key);
    }
  }

  /**
   * The memory snapshot a container of `req` resumes from, taken now if there is none yet (by a container that
   * starts, enters and is saved, then removed); undefined when the pool starts fresh: not `snapshot: true`, or
   * snapshots are not possible here (said once per pool), or taking one failed (said, and not tried again).
   */
  async #snapshotFor(
    req: PoolDescriptor,
    key: string,
    image: string | undefined,
    bundle: BundleOnDisk,
    reservation: Reservation,
    deadline: number,
  ): Promise<{ key: string; dir: string } | undefined> {
    const store = this.#o.snapshots;
    if (!req.spec.snapshot || !store || this.#noSnapshot.has(key)) return undefined;
    const unable =
      (this.#o.driver.checkpoint ? this.#o.driver.snapshotsUnavailable?.() : `the ${this.#o.driver.name} runtime cannot save a container's memory`) ??
      (reservation.gpus.length > 0 ? "gVisor here cannot save a container's GPU memory" : undefined) ??
      (req.spec.volumes?.length ? "it mounts volumes, which each container has its own copy of" : undefined);
    if (unable) {
      this.#noSnapshot.set(key, unable);
      this.#o.log(`[plane] ${req.app}.${poolName(req)} asks for memory snapshots, but ${unable}; its containers start fresh`);
      return undefined;
    }
    const snapshotKey = SnapshotStore.keyOf(key, image, req.secrets);
    const found = store.find(snapshotKey);
    if (found) return { key: snapshotKey, dir: found };
    try {
      let taking = this.#taking.get(snapshotKey);
      if (!taking) {
        taking = this.#takeSnapshot(req, snapshotKey, image, bundle, reservation, deadline).finally(() => this.#taking.delete(snapshotKey));
        this.#taking.set(snapshotKey, taking);
      }
      return { key: snapshotKey, dir: await taking };
    } catch (err) {
      const why = firstLine((err as Error).message);
      this.#noSnapshot.set(key, why);
      this.#o.log(`[plane] ${req.app}.${poolName(req)}: could not take a memory snapshot (${why}); its containers start fresh`);
      return undefined;
    }
  }

  /**
   * Takes a pool's memory snapshot: a container started fresh, whose runner loads the bundle and runs `enter()`,
   * then lets go of the plane (gVisor cannot save a container that holds a host socket) and is saved and stopped.
   */
  async #takeSnapshot(
    req: PoolDescriptor,
    snapshotKey: string,
    image: string | undefined,
    bundle: BundleOnDisk,
    reservation: Reservation,
    deadline: number,
  ): Promise<string> {
    const id = `ctr-${randomBytes(4).toString("hex")}`;
    const began = performance.now();
    const startedAt = Date.now();
    const channel = await ControlChannel.open(this.#controlDir(id));
    let container: StartedContainer | undefined;
    try {
      const attached = this.#o.mounts ? await this.#o.mounts.attach(id, { app: req.app, function: req.function }, channel.dir, []) : { binds: [], env: [] };
      container = await this.#o.driver.start(this.#containerSpec(req, id, bundle, channel.dir, reservation, image, attached));
      writeUsage(this.#o.log, id, () => this.#o.usage.open(snapshotLife(req, id, reservation, startedAt)));
      const tail: string[] = [];
      const now = () => ({ label: `${req.app}.${poolName(req)}`, callId: undefined, fn: req.function, tail });
      this.#forwardOutput(container, req, id, now);
      this.#forwardLogFrames(channel, req, id, now);
      const ready = await raceDeadline(Promise.race([channel.ready, container.exited.then(() => undefined)]), deadline);
      if (ready === TIMED_OUT) throw new Error("its container was not ready in time");
      if (!ready) throw new Error(`its container exited while starting${tail.length ? `: ${tail.slice(-3).join(" | ")}` : ""}`);
      if (ready.enterFailed) throw new Error(`enter() failed: ${ready.enterFailed.message}`);
      if (!(await channel.letGo(PLANE_DEFAULTS.snapshotHandOffMs))) throw new Error("its runner did not let go of the plane's sockets");
      // No socket for the runner to dial while its memory is saved: its next connection is from a restored container.
      await this.#o.mounts?.finish(id);
      await channel.close();
      const saved = container;
      const dir = await this.#o.snapshots!.take(snapshotKey, req.app, (into) => this.#o.driver.checkpoint!(saved, into));
      this.#o.log(`[plane] memory snapshot of ${req.app}.${poolName(req)} taken in ${Math.round(performance.now() - began)} ms (${id})`);
      return dir;
    } finally {
      await container?.kill();
      await this.#o.mounts?.finish(id);
      await channel.close();
      // Its life is metered like any container's: it ran the function's code with the pool's resources.
      if (container) writeUsage(this.#o.log, id, () => this.#o.usage.record({ ...snapshotLife(req, id, reservation, startedAt), endedAt: Date.now() }));
    }
  }

  #controlDir(id: string): string {
    return this.#o.driver.controlDirFor?.(this.#o.planeId, id) ?? join(this.#o.stateDir, "control", id);
  }

  /** What the driver starts for a container of `req`. */
  #containerSpec(
    req: PoolDescriptor,
    id: string,
    bundle: BundleOnDisk,
    controlDir: string,
    reservation: Reservation,
    image: string | undefined,
    attached: Awaited<ReturnType<VolumeMounts["attach"]>>,
  ): ContainerSpec {
    return {
      id,
      bundlePath: bundle.path,
      nodeModulesPath: bundle.nodeModules,
      controlDir,
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
      labels: {
        [CONTAINER_LABELS.plane]: this.#o.planeId,
        [CONTAINER_LABELS.app]: req.app,
        [CONTAINER_LABELS.function]: poolName(req),
        ...pricingLabels(lifeResources(reservation)),
      },
      ...(image ? { image } : {}),
      ...(attached.binds.length ? { mounts: attached.binds } : {}),
    };
  }

  /**
   * A container's own lines, to the plane's log and the app's, tagged with what `now` says it runs. What reaches its
   * stdout and stderr past the runner's capture (a child process, native code, a write to fd 1 or 2) has its secret
   * values masked here, before the line is kept anywhere: each line whole, so a value written in two pieces is masked.
   */
  #forwardOutput(
    container: StartedContainer,
    req: PoolDescriptor,
    id: string,
    now: () => { label: string; callId: string | undefined; fn: string; tail: string[] },
  ): void {
    const mask = secretMask(secretKeys(req).map((key) => req.secrets![key]!));
    // What the container writes itself (a child process, a write to fd 1) is held to the runner's rate too: the plane's
    // terminal and the app's log take at most `runnerMaxLinesPerSecond` lines a second of it, and say what they left out.
    const most = LOG_LIMITS.runnerMaxLinesPerSecond;
    let windowStart = 0;
    let inWindow = 0;
    let dropped = 0;
    let telling: NodeJS.Timeout | undefined;
    const tell = () => {
      telling = undefined;
      const { label, callId, fn } = now();
      const text = `${dropped} lines dropped: more than ${most} lines a second`;
      dropped = 0;
      this.#o.log(`[plane] ${label} ${id}: ${text}`);
      this.#o.onLogLine?.({ app: req.app, function: fn, callId: callId ?? null, containerId: id, source: "system", text });
    };
    container.onOutput((stream, line) => {
      const at = Date.now();
      if (at - windowStart >= 1000) [windowStart, inWindow] = [at, 0];
      if (++inWindow > most) {
        dropped++;
        telling ??= setTimeout(tell, windowStart + 1000 - at).unref();
        return;
      }
      const { callId, fn, tail } = now();
      this.#line(req, id, fn, callId ?? null, stream, mask(line), tail, at);
    });
  }

  /**
   * The lines the runner sends as `log` frames (what the function wrote to process.stdout and process.stderr), each
   * tagged with the call that wrote it, to the same places as {@link #forwardOutput}'s.
   */
  #forwardLogFrames(
    channel: ControlChannel,
    req: PoolDescriptor,
    id: string,
    now: () => { label: string; callId: string | undefined; fn: string; tail: string[] },
  ): void {
    channel.onLog((frame, functions, readAt) => {
      const { label, callId, fn, tail } = now();
      for (const [i, line] of frame.lines.entries()) {
        // A line the runner wrote outside any call (a class's enter() or exit(), a timer of its own) is the container's,
        // under its class's or function's name: not the call it runs now, nor, once it is idle or stopping, its last one.
        if (line.callId === null) this.#line(req, id, poolName(req), null, line.source, line.text, tail, readAt);
        else this.#line(req, id, functions[i] ?? fn, line.callId, line.source, line.text, tail, readAt);
      }
      if (frame.dropped) {
        const text = `${frame.dropped} lines dropped: more than ${LOG_LIMITS.runnerMaxLinesPerSecond} lines a second`;
        this.#o.log(`[plane] ${label} ${id}: ${text}`);
        this.#o.onLogLine?.({ app: req.app, function: fn, callId: callId ?? null, containerId: id, source: "system", text });
      }
    });
  }

  /**
   * One line of a container's, to the plane's log, the container's last lines and the app's log, tagged with the
   * function that wrote it (for a class's container, the method whose call did).
   */
  #line(req: PoolDescriptor, id: string, fn: string, callId: string | null, stream: "stdout" | "stderr", line: string, tail: string[], time: number): void {
    // A stack the app printed names its files, as its errors' stacks do: a frame of Tandem's own is left out. While the
    // bundle's map is fetched for a frame, the container's lines wait, in order.
    const held = this.#heldLines.get(id);
    if (held) return void held.push([fn, callId, stream, line, tail, time]);
    const lineMaps = this.#o.lineMaps;
    const text = lineMaps ? lineMaps.mapLogLine(req.bundleHash, line) : line;
    if (text === undefined) {
      const waiting: HeldLine[] = [[fn, callId, stream, line, tail, time]];
      this.#heldLines.set(id, waiting);
      void lineMaps!.fetchLineMap(req.bundleHash).then(() => {
        this.#heldLines.delete(id);
        for (const l of waiting) this.#line(req, id, ...l);
      });
      return;
    }
    if (text === null) return;
    keepLogLine(tail, text);
    this.#o.log(`[${req.app}.${fn} ${callId ?? "-"} ${id}]${stream === "stderr" ? " (stderr)" : ""} ${text}`);
    this.#o.onLogLine?.({ app: req.app, function: fn, callId, containerId: id, source: stream, text, time });
  }

  async #start(
    req: PoolDescriptor,
    key: string,
    bundle: BundleOnDisk,
    reservation: Reservation,
    deadline: number,
    { forCall, attempt, starting, prepared = false }: StartOptions,
    mayResume: boolean,
  ): Promise<Worker> {
    const id = `ctr-${randomBytes(4).toString("hex")}`;
    this.#o.lineMaps?.startedContainer(req.bundleHash);
    const started = performance.now();
    const startedAt = Date.now();
    let image: string | undefined;
    try {
      if (req.spec.image) {
        // A build counts against the wait for a container, as a start does: an input is not held past its timeout for
        // it (before: until the gateway gave up on the plane, with a message that blamed the container once it came).
        const building = this.#o.imageFor(req.spec.image);
        const built = await raceDeadline(building, deadline);
        if (built === TIMED_OUT) {
          building.catch(() => {}); // its failure is said by the build, to whoever waits for it next
          throw buildTimeout(req, Math.round((deadline - startedAt) / 100) / 10);
        }
        image = built;
      }
    } catch (err) {
      this.#o.inventory.release(reservation);
      throw err;
    }
    let snapshot: { key: string; dir: string } | undefined;
    try {
      snapshot = mayResume ? await this.#snapshotFor(req, key, image, bundle, reservation, deadline) : undefined;
    } catch (err) {
      this.#o.inventory.release(reservation);
      throw err;
    }
    const channel = await ControlChannel.open(this.#controlDir(id));
    let attached: Awaited<ReturnType<VolumeMounts["attach"]>> = { binds: [], env: [] };
    try {
      // Refused before its volumes are fetched for nothing (before: mounted, downloaded, then refused by the driver).
      if (req.spec.volumes?.length && this.#o.driver.name === "process") throw processMountsRefused(req.spec.volumes.map((v) => v.path));
      if (this.#o.mounts) attached = await this.#o.mounts.attach(id, { app: req.app, function: req.function }, channel.dir, req.spec.volumes ?? []);
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
        ...this.#containerSpec(req, id, bundle, channel.dir, reservation, image, attached),
        ...(starting ? { starting } : {}),
        ...(snapshot ? { restoreFrom: snapshot.dir } : {}),
      });
    } catch (err) {
      this.#o.inventory.release(reservation);
      await this.#o.mounts?.finish(id);
      await channel.close();
      const failure = new ContainerFailedError(`could not start a container for ${req.app}.${req.function}: ${(err as Error).message}`, { reason: "start" });
      throw snapshot ? new RestoreFailed(snapshot.key, failure) : failure;
    }
    trace(`container ${id}: started`);
    const worker: Worker = {
      id,
      key,
      label: `${req.app}.${poolName(req)}`,
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
      life: { containerId: id, app: req.app, function: poolName(req), ...lifeResources(reservation), startedAt: Date.now() },
    };
    this.#o.pool.add(worker);
    writeUsage(this.#o.log, id, () => this.#o.usage.open(worker.life)); // a plane killed from now on leaves a row its next run closes
    const now = () => ({ label: worker.label, callId: worker.callId, fn: worker.callFunction ?? req.function, tail: worker.logTail });
    this.#forwardOutput(container, req, id, now);
    this.#forwardLogFrames(channel, req, id, now);
    channel.onProtocolError((message) => {
      worker.protocolError = message;
      this.#o.log(`[plane] ${worker.label} ${id} broke the control protocol (${message}); killing it`);
      worker.stopping = true;
      void container.kill();
    });
    channel.onUncaught((frame) => (worker.uncaught = frame));
    void container.exited.then((exit) => {
      worker.exit = exit;
      // One that exited on its own once ready (one that did not fails its start, which says so): the plane says why,
      // unless its calls' lines say it. An uncaught error's stack is only in this line, ready or not.
      if (!worker.stopping && (worker.uncaught || (worker.ready && worker.inFlight.size === 0))) void this.#exited(worker, req, exit, worker.inFlight.size);
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
          ? startTimeout(worker, req, Math.round((deadline - startedAt) / 100) / 10, attempt)
          : exitFailure(worker, await container.exited, "while starting");
      await this.#o.scaleDown.retire(worker);
      throw snapshot && ready !== TIMED_OUT ? new RestoreFailed(snapshot.key, failure) : failure;
    }
    worker.ready = true;
    worker.exitHooks = readyFrame?.exitHooks ?? true;
    trace(`container ${id}: runner ready`);
    const gpus = reservation.gpus.length
      ? `, ${reservation.gpus.map((g) => `${g.type}#${g.index}`).join(" ")}${reservation.gpus[0]!.simulated ? " (simulated)" : ""}`
      : "";
    const resumed = snapshot ? " (resumed from its memory snapshot)" : "";
    const cached = readyFrame?.runtimeCode === "cached" ? " (runtime from its code cache)" : "";
    const took = `${worker.label} ${id} ready in ${Math.round(performance.now() - started)} ms${gpus}${resumed}${cached}`;
    const coldStart = prepared ? `prepared: ${took}, to be paused until a cold start takes it` : `cold start: ${took}`;
    this.#o.log(`[plane] ${coldStart}`);
    this.#o.onLogLine?.({ app: req.app, function: req.function, callId: forCall ?? null, containerId: id, source: "system", text: coldStart });
    return worker;
  }

  /** Says, in the plane's output and the app's log, that a container exited on its own, why, and what follows. */
  async #exited(worker: Worker, req: PoolDescriptor, exit: ExitInfo, inFlight: number): Promise<void> {
    const callId = [...worker.inFlight][0] ?? null;
    const asExited = { ...worker }; // as it was: the calls it fails retire it meanwhile
    const stack = worker.uncaught?.error.stack;
    const mapped = stack && this.#o.mapStack ? await this.#o.mapStack(req.bundleHash, stack).catch(() => undefined) : undefined;
    const text = exitLine(asExited, exit, inFlight, mapped);
    this.#o.log(`[plane] ${text}`);
    this.#o.onLogLine?.({ app: req.app, function: worker.callFunction ?? req.function, callId, containerId: worker.id, source: "system", text });
  }

  /** Records a failed `enter()`: the pool waits 1 s, then 2, 4, … up to a minute, before a container tries again. */
  #enterFailed(key: string, pool: PoolDescriptor, error: TandemError): TandemError {
    const delayMs = Math.min(ENTER_BACKOFF_MAX_MS, (this.#enterBackoff.get(key)?.delayMs ?? ENTER_BACKOFF_FIRST_MS / 2) * 2);
    this.#enterBackoff.set(key, { at: Date.now(), until: Date.now() + delayMs, delayMs, error });
    this.#o.log(`[plane] ${pool.app}.${poolName(pool)}: enter() failed (${error.message}); no new container for ${delayMs / 1000} s`);
    return error;
  }

  /** Refuses a new container for an app past its spend cap: throws its `SpendCapError` (the cap counts this plane's spending). */
  checkSpendCap(pool: PoolDescriptor): void {
    const cap = pool.spec.spendCapUsd;
    if (cap === null) return;
    const spent = this.#o.usage.spent(pool.app, this.#o.pool.lives());
    if (spent >= cap) {
      throw new SpendCapError(
        `app "${pool.app}" reached its spend cap of $${cap} (${formatUsd(spent)} spent on plane ${this.#o.planeId}); no new container starts for it`,
        {
          app: pool.app,
          spendCapUsd: cap,
          spentUsd: spent,
        },
      );
    }
  }
}

/** What a container's time is priced by: its reservation's GPUs, cores and memory. */
function lifeResources(reservation: Reservation): Pick<ContainerLife, "gpu" | "gpuCount" | "cpu" | "memoryMiB"> {
  return { gpu: reservation.gpus[0]?.type ?? null, gpuCount: reservation.gpus.length, cpu: reservation.cpu, memoryMiB: reservation.memoryMiB };
}

/** A memory snapshot's container's life: metered like any container's, it ran the function's code with the pool's cores and memory. */
function snapshotLife(req: PoolDescriptor, id: string, reservation: Reservation, startedAt: number): ContainerLife {
  return { containerId: id, app: req.app, function: poolName(req), gpu: null, gpuCount: 0, cpu: reservation.cpu, memoryMiB: reservation.memoryMiB, startedAt };
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
 * The names of the variables in `req.secrets` that its secrets set (not its `env` option): their values are masked,
 * by the runner in what the app writes, and by the plane in the container's own output.
 */
function secretKeys(req: PoolDescriptor): string[] {
  return Object.entries(req.secrets ?? {})
    .filter(([key, value]) => req.spec.env[key] !== value)
    .map(([key]) => key);
}

/** {@link secretKeys}, told to the runner. */
function secretKeysEnv(req: PoolDescriptor): Record<string, string> {
  const keys = secretKeys(req);
  return keys.length ? { [CONTAINER_ENV.secretKeys]: keys.join(",") } : {};
}
