/**
 * Prepared containers: for a function whose containers keep starting cold, the
 * plane keeps a few more started, their runners ready (the bundle loaded, a
 * class's `enter()` run), then paused. A paused container holds its memory and
 * uses no CPU. The next cold start of that function takes one and resumes it,
 * which takes tens of milliseconds where a create and start takes over a
 * second. A taken container is a fresh one: it has run no input.
 *
 * How many, per pool: once it has started cold twice within the window
 * (`preparedWindowSeconds`), as many as the most of its cold starts that were
 * under way at once in that window, up to `--prepared` (default 2), counted
 * toward its `maxContainers`. None for a GPU function (a paused container
 * would hold its GPUs), one that mounts volumes (its container's view of them
 * would be as old as the container), a `snapshot: true` one (its cold starts
 * resume the snapshot), or a driver that cannot pause. Together they hold at
 * most a quarter of the plane's memory, and no CPU while paused; one is
 * stopped whenever an input needs its memory, and one unused for the window is
 * stopped. The time each is kept goes in the usage ledger, shown apart and not
 * billed (`UsageLedger.recordPrepared`).
 */
import { PLANE_DEFAULTS } from "../sdk/defaults.js";
import type { ContainerPool, Worker } from "./container-pool.js";
import type { BundleOnDisk, ContainerStarter } from "./container-start.js";
import type { ContainerDriver } from "./drivers/driver.js";
import type { Inventory, Reservation, ResourceRequest } from "./inventory.js";
import { canonicalJson, poolName, resourceRequests, type PoolDescriptor } from "./pool-descriptor.js";
import type { ScaleDown } from "./scale-down.js";
import { writeUsage, type UsageLedger } from "./usage-ledger.js";

/** How long a prepared container has to get ready. */
const PREPARE_DEADLINE_MS = 120_000;

/** What {@link PreparedContainers} needs. */
export interface PreparedContainersOptions {
  driver: ContainerDriver;
  pool: ContainerPool;
  starter: ContainerStarter;
  scaleDown: ScaleDown;
  inventory: Inventory;
  usage: UsageLedger;
  log: (line: string) => void;
  /** Most prepared containers per pool (`--prepared`); 0: none. */
  perFunction: number;
  /** How long a cold start counts as demand, and how long a prepared container waits unused before it is stopped. */
  windowMs: number;
  /** Whether a pool is of an older version than its function's live one (version-switch.ts): none is kept for it. */
  superseded?: (key: string) => boolean;
}

/** One prepared container, paused, as {@link PreparedContainers} keeps it. */
interface Prepared {
  worker: Worker;
  /** The secrets' values it started with: a cold start whose secrets differ (rotated) does not take it. */
  secrets: string;
  /** When it started: its kept time runs from here until it is taken or stopped. */
  since: number;
  /** Settles once the engine has paused it. */
  paused: Promise<boolean>;
  /** Stops it once it has waited the window unused. */
  expiry: NodeJS.Timeout;
  /** Kept paused; taken by a cold start; or stopped (or exited) unused. */
  state: "kept" | "taken" | "stopped";
}

/** A prepared container as the plane's `status` lists it. */
export interface PreparedSummary {
  /** The plane's id of the container (`ctr-…`). */
  id: string;
  /** The engine's id of the container. */
  runtimeId: string;
  app: string;
  /** Its function, or for a class's container its class. */
  function: string;
  /** Milliseconds since the epoch when it started. */
  since: number;
}

/**
 * The plane's prepared containers, by pool key.
 * @example
 * const worker = await prepared.take(req, key, req.callId); // resumed, in its pool, held for the input; or undefined
 * prepared.coldStarted(req, key, bundle, 1); // after any cold start (1 under way): prepares more if the pool's demand says so
 */
export class PreparedContainers {
  readonly #o: PreparedContainersOptions;
  readonly #kept = new Map<string, Prepared[]>();
  /** How many prepared containers are starting now, by pool, and the memory they reserved together. */
  readonly #starting = new Map<string, number>();
  #startingMiB = 0;
  /** Each pool's recent cold starts (within the window): when, and how many of its cold starts were under way then. */
  readonly #coldStarts = new Map<string, { app: string; starts: { at: number; under: number }[] }>();
  #closed = false;

  constructor(options: PreparedContainersOptions) {
    this.#o = options;
  }

  /**
   * A paused container of the pool `key` for `req`, resumed, back in its pool and held for `callId`; undefined when
   * there is none, or none with `req`'s secrets (those are stopped).
   */
  async take(req: PoolDescriptor, key: string, callId: string): Promise<Worker | undefined> {
    for (;;) {
      const entry = this.#kept.get(key)?.[0];
      if (!entry) return undefined;
      if (entry.secrets !== canonicalJson(req.secrets ?? {})) {
        void this.#stop(entry, "its function's secrets changed");
        continue;
      }
      const { worker } = entry;
      const paused = await entry.paused;
      if (!this.#drop(entry)) continue; // it exited meanwhile
      if (!paused) {
        this.#o.inventory.release(memoryOnly(worker));
        void this.#o.scaleDown.retire(worker);
        continue;
      }
      // In its pool and held before it runs again: from now on its resources, its exit and its life are the pool's.
      this.#o.inventory.reserve({ gpu: undefined, cpu: worker.reservation.cpu, memoryMiB: 0 }); // CPU is never refused
      worker.life = { ...worker.life, startedAt: Date.now() };
      this.#o.pool.add(worker);
      writeUsage(this.#o.log, worker.id, () => this.#o.usage.open(worker.life));
      this.#o.pool.hold(worker, callId, req.function);
      try {
        await worker.container.resume!();
      } catch (err) {
        this.#o.log(`[plane] could not resume prepared ${worker.label} ${worker.id}: ${(err as Error).message}`);
        worker.inFlight.delete(callId);
        await this.#o.scaleDown.retire(worker);
        continue;
      }
      return worker;
    }
  }

  /**
   * A cold start of the pool `key` happened (a prepared container taken counts), with `under` of its cold starts
   * under way at once, itself included: prepares what the pool's demand now asks for.
   */
  coldStarted(req: PoolDescriptor, key: string, bundle: BundleOnDisk, under: number): void {
    if (this.#o.perFunction === 0 || this.#closed) return;
    const now = Date.now();
    const starts = [...(this.#coldStarts.get(key)?.starts ?? []), { at: now, under }].filter((s) => now - s.at < this.#o.windowMs);
    this.#coldStarts.set(key, { app: req.app, starts });
    if (!this.#preparable(req)) return;
    for (let i = this.#count(key); i < this.#wanted(key); i++) if (!this.#prepare(req, key, bundle)) break;
  }

  /** Whether a prepared container of the pool `key` is kept. */
  has(key: string): boolean {
    return this.#kept.has(key);
  }

  /** Stops one prepared container whose memory would let `request` start; false when none would. */
  evictFor(request: ResourceRequest): boolean {
    if (request.gpu) return false; // a prepared container holds no GPU
    const victim = this.#all().sort((a, b) => a.since - b.since)[0];
    if (!victim) return false;
    void this.#stop(victim, "an input needed its memory");
    return true;
  }

  /**
   * Stops every prepared container of `app`, and forgets its pools' demand (`tandem app stop`, a rollover), at once;
   * resolves with how many once they have stopped (their `exit()` run).
   */
  async dropApp(app: string): Promise<number> {
    const mine = this.#all().filter((p) => p.worker.life.app === app);
    const stopped = mine.map((entry) => this.#stop(entry, `app ${app} was stopped or rolled over`));
    for (const [key, demand] of this.#coldStarts) if (demand.app === app) this.#coldStarts.delete(key);
    await Promise.all(stopped);
    return mine.length;
  }

  /** Stops the prepared containers of pools a newer version replaced (told as the plane sees a new version). */
  dropSuperseded(): void {
    for (const entry of this.#all()) if (this.#o.superseded?.(entry.worker.key)) void this.#stop(entry, "a new version went live");
  }

  /** The prepared containers kept now, for `status`. */
  summaries(): PreparedSummary[] {
    return this.#all().map(({ worker, since }) => {
      const [app = "", fn = ""] = worker.label.split("."); // a class's containers go by the class's name, as in `containers`
      return { id: worker.id, runtimeId: worker.container.runtimeId, app, function: fn, since };
    });
  }

  /** The lives of the prepared containers kept now (from when each started), for usage. */
  lives(): Worker["life"][] {
    return this.#all().map((p) => ({ ...p.worker.life, startedAt: p.since }));
  }

  /** Stops them all and prepares no more: the plane is shutting down. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#all().map((p) => this.#stop(p, "")));
  }

  /**
   * Whether containers of `req` may be prepared: not where the runtime cannot pause one, nor for a function with a
   * GPU (a paused container would hold it), with volumes (it would see them as they were) or with memory snapshots
   * (its cold starts resume the snapshot).
   */
  #preparable(req: PoolDescriptor): boolean {
    return this.#o.driver.pausable === true && !req.spec.gpu && !req.spec.volumes?.length && !req.spec.snapshot;
  }

  /**
   * How many containers the pool `key` should have prepared: none until it has started cold twice within the window,
   * then the most of its cold starts under way at once in the window, up to `perFunction`.
   */
  #wanted(key: string): number {
    const now = Date.now();
    const starts = (this.#coldStarts.get(key)?.starts ?? []).filter((s) => now - s.at < this.#o.windowMs);
    if (starts.length < 2) return 0;
    return Math.min(this.#o.perFunction, Math.max(...starts.map((s) => s.under)));
  }

  #count(key: string): number {
    return (this.#kept.get(key)?.length ?? 0) + (this.#starting.get(key) ?? 0);
  }

  /** Starts one prepared container of `req`'s pool, if its `maxContainers` and the plane's memory allow; false when not. */
  #prepare(req: PoolDescriptor, key: string, bundle: BundleOnDisk): boolean {
    // A prepared container is one of the function's containers: it counts toward its maxContainers, as it starts too.
    const containers = this.#o.pool.serving(key).length + this.#o.pool.starting(key) + (this.#kept.get(key)?.length ?? 0);
    if (containers >= req.spec.autoscaler.maxContainers) return false;
    const request = resourceRequests(req)[0]!;
    const held = this.lives().reduce((sum, l) => sum + l.memoryMiB, 0) + this.#startingMiB;
    if (held + request.memoryMiB > this.#o.inventory.memoryMiBTotal * PLANE_DEFAULTS.preparedMemoryShare) return false;
    const reservation = this.#o.inventory.reserve(request);
    if (!reservation) return false;
    this.#starting.set(key, (this.#starting.get(key) ?? 0) + 1);
    this.#startingMiB += reservation.memoryMiB;
    const secrets = canonicalJson(req.secrets ?? {});
    const since = Date.now();
    void this.#o.starter
      .start(req, key, bundle, reservation, since + PREPARE_DEADLINE_MS, { prepared: true })
      .then(
        (worker) => this.#keep(worker, key, secrets, since),
        (err: Error) => this.#closed || this.#o.log(`[plane] could not prepare a container for ${req.app}.${poolName(req)}: ${err.message}`),
      )
      .finally(() => {
        this.#starting.set(key, this.#starting.get(key)! - 1);
        this.#startingMiB -= reservation.memoryMiB;
      });
    return true;
  }

  /** A prepared container is ready: out of its pool, paused, and kept, unless an input took it as it got ready. */
  #keep(worker: Worker, key: string, secrets: string, since: number): void {
    if (worker.inFlight.size > 0) return; // a queued input took it: a container like any other now
    if (this.#closed) {
      void this.#o.scaleDown.retire(worker); // the plane is stopping: ready too late
      return;
    }
    if (this.#o.superseded?.(key)) {
      this.#o.scaleDown.release(worker, undefined); // its scale-down window stops it
      return;
    }
    this.#o.pool.delete(worker);
    writeUsage(this.#o.log, worker.id, () => this.#o.usage.keepPrepared({ ...worker.life, startedAt: since }));
    // Paused, it uses no CPU: its cores are given back (the gateway sends calls where most are free) until it is taken.
    this.#o.inventory.release({ gpus: [], cpu: worker.reservation.cpu, memoryMiB: 0 });
    const entry: Prepared = {
      worker,
      state: "kept",
      secrets,
      since,
      paused: worker.container.pause!().then(
        () => true,
        (err: Error) => (this.#o.log(`[plane] could not pause prepared ${worker.label} ${worker.id}: ${err.message}`), false),
      ),
      expiry: setTimeout(() => this.#expire(entry), this.#o.windowMs).unref(),
    };
    this.#kept.set(key, [...(this.#kept.get(key) ?? []), entry]);
    void worker.container.exited.then(() => {
      if (!this.#drop(entry)) return; // taken or stopped before
      this.#o.inventory.release(memoryOnly(worker));
      this.#o.log(`[plane] prepared ${worker.label} ${worker.id} exited while paused`);
    });
    void entry.paused.then((paused) => paused && this.#o.log(`[plane] ${worker.label} ${worker.id} prepared and paused for its next cold start`));
  }

  /** `entry` has waited the window unused: stopped, unless its pool's demand still asks for it. */
  #expire(entry: Prepared): void {
    const key = entry.worker.key;
    if (this.#count(key) > this.#wanted(key)) void this.#stop(entry, `unused for ${this.#o.windowMs / 1000} s`);
    else entry.expiry.refresh();
  }

  #all(): Prepared[] {
    return [...this.#kept.values()].flat();
  }

  /**
   * Drops `entry` from what is kept (taken or stopped from now on) and records the time it was kept; false when it
   * was not kept any more. Its memory stays reserved: the caller gives it back, or its pool takes it over.
   */
  #drop(entry: Prepared): boolean {
    if (entry.state !== "kept") return false;
    entry.state = "taken";
    clearTimeout(entry.expiry);
    const { worker } = entry;
    const kept = this.#kept.get(worker.key) ?? [];
    if (kept.includes(entry)) kept.splice(kept.indexOf(entry), 1);
    if (kept.length === 0) this.#kept.delete(worker.key);
    writeUsage(this.#o.log, worker.id, () => this.#o.usage.recordPrepared({ ...worker.life, startedAt: entry.since, endedAt: Date.now() }));
    return true;
  }

  /**
   * Stops a prepared container, its memory given back now. It is resumed first: gVisor cannot kill a paused container
   * (the engine reports a zombie and kills it only as it removes it, seconds later); and one whose class has `exit()`
   * hooks runs them (its `enter()` ran), as any container stopping does.
   */
  async #stop(entry: Prepared, why: string): Promise<void> {
    const { worker } = entry;
    if (!this.#drop(entry)) return;
    entry.state = "stopped";
    this.#o.inventory.release(memoryOnly(worker));
    if (why) this.#o.log(`[plane] stopping prepared ${worker.label} ${worker.id}: ${why}`);
    const resumed =
      (await entry.paused) &&
      (await worker.container.resume!().then(
        () => true,
        () => false,
      ));
    // Not in its pool: retiring it stops it, and forgets nothing (its memory is given back above).
    await this.#o.scaleDown.retire(worker, { graceful: resumed && worker.exitHooks });
  }
}

/** What a kept prepared container holds of the plane's inventory: its memory (it gave its CPU back as it was paused). */
function memoryOnly(worker: Worker): Reservation {
  return { gpus: [], cpu: 0, memoryMiB: worker.reservation.memoryMiB };
}
