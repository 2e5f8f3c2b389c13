/**
 * How containers leave the plane: stopped after their scale-down window with
 * no inputs (never below a pool's warm minimum), stopped to make room for
 * another function, retired when they fail or the plane stops them, and
 * forgotten once, which gives their resources back and records their life in
 * the usage ledger.
 */
import { raceDeadline, TIMED_OUT } from "../sdk/deadline.js";
import type { ContainerPool, Worker } from "./container-pool.js";
import type { Inventory, ResourceRequest } from "./inventory.js";
import type { PlaneLogLine } from "./log-shipper.js";
import { writeUsage, type UsageLedger } from "./usage-ledger.js";

/** How long a stopping container's runner has for its classes' `exit()` hooks. */
const EXIT_GRACE_MS = 10_000;

/** What {@link ScaleDown} works on. */
export interface ScaleDownOptions {
  pool: ContainerPool;
  inventory: Inventory;
  /** Where container lives are recorded. */
  usage: UsageLedger;
  log: (line: string) => void;
  /** The plane's lines about a container, for its app's log (log-shipper.ts). */
  onLogLine?: (line: PlaneLogLine) => void;
  /** How long a stopping container's runner has for its classes' `exit()` hooks (default `EXIT_GRACE_MS`). */
  exitGraceMs?: number;
  /** Idle time before a container is stopped, for functions whose spec does not say. */
  scaledownWindowMs: number;
  /** How many containers of a pool the plane keeps warm (its `minContainers`, 0 for a pool not assigned here). */
  keptWarm(key: string): number;
}

/**
 * Stops and forgets the plane's containers.
 * @example
 * const scaleDown = new ScaleDown({ pool, inventory, usage, log, scaledownWindowMs: 60_000, keptWarm: () => 0 });
 * scaleDown.release(worker, req.callId); // its idle timer starts when it has no input left
 */
export class ScaleDown {
  readonly #o: ScaleDownOptions;

  constructor(options: ScaleDownOptions) {
    this.#o = options;
  }

  /**
   * An input ended (or, for `undefined`, a container was started ahead of
   * inputs): a dead container is retired, an idle one starts its scale-down
   * window, and queued inputs look again.
   */
  release(worker: Worker, callId: string | undefined): void {
    // callId stays in the log tag until the next input: output can arrive just after the result, and belongs to it.
    if (callId !== undefined) worker.inFlight.delete(callId);
    if (worker.exit || worker.protocolError) {
      void this.retire(worker);
      return;
    }
    if (worker.draining && worker.inFlight.size === 0) {
      if (worker.awaitingReplacement) return; // version-switch.ts stops it once the new version's warm containers are ready
      const why = worker.supersededBy ? "a new version went live" : "a rollover";
      this.#stopping(worker, `finished its inputs after ${why}; stopping it`);
      void this.retire(worker, { graceful: true });
      this.#o.pool.wake();
      return;
    }
    if (worker.inFlight.size === 0) this.#scheduleScaleDown(worker);
    this.#o.pool.wake();
  }

  /** Stops an idle container after its window, unless its pool would drop below `minContainers`. */
  #scheduleScaleDown(worker: Worker): void {
    clearTimeout(worker.idleTimer);
    const windowMs = (worker.scaling.scaledownWindowSeconds ?? this.#o.scaledownWindowMs / 1000) * 1000;
    worker.idleTimer = setTimeout(() => {
      const pool = this.#o.pool.live(worker.key).length;
      if (pool <= this.#o.keptWarm(worker.key)) return this.#scheduleScaleDown(worker); // kept warm
      this.#stopping(worker, `idle for ${windowMs / 1000} s; stopping it`);
      void this.retire(worker, { graceful: true });
    }, windowMs);
    worker.idleTimer.unref();
  }

  /**
   * Says why the plane stops `worker`, in its output and, as a `system` line tagged with the container and its function
   * (a class's container: the class), in its app's log: a container's time counts until it stops.
   */
  #stopping(worker: Worker, why: string): void {
    this.#o.log(`[plane] ${worker.label} ${worker.id} ${why}`);
    this.#o.onLogLine?.({ app: worker.life.app, function: worker.life.function, callId: null, containerId: worker.id, source: "system", text: why });
  }

  /**
   * Stops a container; `graceful` (scale-down, stop, shutdown) gives its runner time for `exit()` hooks first.
   * `quick` (the end of `tandem run`): a container with no `exit()` hooks to run is killed and removed at once.
   * `why`, where the calls it runs are told it was stopped: "as the plane shut down".
   */
  async retire(worker: Worker, options: { graceful?: boolean; quick?: boolean; why?: string } = {}): Promise<void> {
    const known = this.#o.pool.has(worker);
    this.forget(worker);
    if (!known && worker.exit) return;
    worker.stopping = true;
    if (options.why) worker.stoppingWhy ??= options.why;
    const quick = options.quick === true && !worker.exitHooks;
    if (options.graceful && !quick && worker.ready && !worker.exit && !worker.protocolError) await this.#exitHooks(worker);
    await worker.container.kill({ quick }).catch(() => {});
    await worker.channel.close().catch(() => {});
  }

  /**
   * A grace period: the runner runs its classes' `exit()` hooks and leaves on its own, within its grace (10 s); one
   * still there then is said to be cut off (the caller kills it).
   */
  async #exitHooks(worker: Worker): Promise<void> {
    const grace = this.#o.exitGraceMs ?? EXIT_GRACE_MS;
    worker.channel.shutdown();
    if ((await raceDeadline(worker.container.exited, Date.now() + grace)) !== TIMED_OUT) return;
    const text = `exit() had not ended after ${grace / 1000} s; the container is killed`;
    this.#o.log(`[plane] ${worker.label} ${worker.id} ${text}`);
    this.#o.onLogLine?.({ app: worker.life.app, function: worker.life.function, callId: null, containerId: worker.id, source: "system", text });
  }

  /** Drops a container from its pool, gives its resources back and records its life, once. */
  forget(worker: Worker): void {
    if (!this.#o.pool.delete(worker)) return;
    clearTimeout(worker.idleTimer);
    this.#o.inventory.release(worker.reservation);
    writeUsage(this.#o.log, worker.id, () => this.#o.usage.record({ ...worker.life, endedAt: worker.billedUntil ?? Date.now() }));
    this.#o.pool.wake();
  }

  /**
   * Stops one idle container (of any function) whose resources would let `request` (of function `forWhom`) start,
   * one that keeps a warm minimum last; false when there is none. A class's container runs its `exit()` hooks first,
   * as at a scale-down: its room is given back once it has left (its process holds its GPU and memory until then),
   * and its time counts until the plane decided to stop it. `surplusOnly`: none that keeps a warm minimum (for a warm
   * pool's own refill, which must not take another pool's).
   */
  async evictFor(request: ResourceRequest, forWhom: string, options: { surplusOnly?: boolean } = {}): Promise<boolean> {
    const idle = this.#o.pool
      .all()
      .filter(
        (w) =>
          w.inFlight.size === 0 && !w.stopping && (request.gpu ? w.reservation.gpus.some((g) => g.type === request.gpu!.type) : w.reservation.memoryMiB > 0),
      );
    // One beyond its pool's warm minimum goes first: a container that keeps `minContainers` is stopped only when no
    // other would do: its pool takes room back only from one beyond its own pool's minimum (warm-pools.ts).
    const victim = idle.find((w) => this.#o.pool.live(w.key).length > this.#o.keptWarm(w.key)) ?? (options.surplusOnly ? undefined : idle[0]);
    if (!victim) return false;
    this.#o.log(`[plane] stopping idle ${victim.label} ${victim.id} to make room`);
    this.#o.onLogLine?.({
      app: victim.life.app,
      function: victim.life.function, // the container's (a class's, not the method it ran last), as at a scale-down
      callId: null,
      containerId: victim.id,
      source: "system",
      text: `evicted: stopped while idle to make room for ${forWhom}`,
    });
    victim.stopping = true;
    if (victim.exitHooks && victim.ready && !victim.exit && !victim.protocolError) {
      // Before: killed at once, its exit() never run.
      clearTimeout(victim.idleTimer);
      victim.billedUntil = Date.now();
      await this.#exitHooks(victim);
    }
    this.forget(victim);
    void victim.container.kill().finally(() => victim.channel.close());
    return true;
  }
}
