/**
 * Containers started ahead of inputs: the warm pools the gateway assigns this
 * plane (`minContainers`, kept even with no calls, refilled on each
 * heartbeat), buffer containers (`bufferContainers`, kept idle beside a
 * busy function so a burst finds them ready), and one container for an input
 * known to be coming (`tandem run` starts it while its gateway starts). They
 * start only as resources allow; none queues.
 */
import type { DeployStrategy } from "../sdk/protocol.js";
import type { ContainerPool } from "./container-pool.js";
import type { BundleOnDisk, ContainerStarter } from "./container-start.js";
import type { Inventory } from "./inventory.js";
import { describeRequests, poolKey, resourceRequests, type PoolDescriptor } from "./pool-descriptor.js";
import type { ScaleDown } from "./scale-down.js";

/** How long a container started ahead of inputs has to say it is ready. */
const AHEAD_START_DEADLINE_MS = 120_000;

/**
 * A pool the gateway asked this plane to keep warm; `bundle()` fetches its bundle when needed, and `fetchSecrets()`, for
 * a function that declares secrets, their values for each container it starts (warm-secrets.ts: signed both ways).
 */
export interface WarmPool extends PoolDescriptor {
  /** How this version replaces an older one of the function (version-switch.ts); left out: rolling. */
  strategy?: DeployStrategy;
  bundle(): Promise<BundleOnDisk>;
  fetchSecrets?(): Promise<Record<string, string>>;
}

/** What {@link WarmPools} needs. */
export interface WarmPoolsOptions {
  pool: ContainerPool;
  starter: ContainerStarter;
  scaleDown: ScaleDown;
  inventory: Inventory;
  log: (line: string) => void;
  /** Whether a pool is of an older version than its function's live one (version-switch.ts): it is not filled. */
  superseded?: (key: string) => boolean;
}

/**
 * Keeps warm pools at their minimum and tops up buffer containers.
 * @example
 * warm.keep(heartbeatAnswer.warm.map((ref) => ({ ...ref, bundle: () => bundles.get(ref.bundleHash) })));
 * warm.minimumFor(poolKey(req)); // its minContainers, or 0
 */
export class WarmPools {
  readonly #o: WarmPoolsOptions;
  /** Pools this plane keeps warm, as the gateway assigned them. */
  #warm: WarmPool[] = [];
  #filling = false;
  #closed = false;
  /** The pools short of their `minContainers` for want of room, and how many they had when that was said (said once). */
  #short = new Map<string, number>();
  /** Pools with a container starting for an input known to be coming: that input waits for it. */
  readonly #ahead = new Set<string>();

  constructor(options: WarmPoolsOptions) {
    this.#o = options;
  }

  /**
   * The pools this plane keeps warm (`minContainers`), as the gateway assigns
   * them; starts what is missing, as resources allow.
   */
  keep(pools: WarmPool[]): void {
    this.#warm = pools;
    void this.#fill();
  }

  /** Starts what the warm pools lack now (after a rollover), rather than at the next heartbeat. */
  refill(): void {
    void this.#fill();
  }

  /** Stops keeping `app`'s pools warm (until the gateway assigns them again). */
  dropApp(app: string): void {
    this.#warm = this.#warm.filter((p) => p.app !== app);
  }

  /** How many containers of the pool `key` are kept warm: its `minContainers` when it is assigned here, else 0. */
  minimumFor(key: string): number {
    return this.#warm.find((p) => poolKey(p) === key)?.spec.autoscaler.minContainers ?? 0;
  }

  /** No more warm containers: the plane is shutting down. */
  close(): void {
    this.#closed = true;
  }

  async #fill(): Promise<void> {
    if (this.#filling || this.#closed) return;
    this.#filling = true;
    try {
      for (const pool of this.#warm) {
        const key = poolKey(pool);
        if (this.#o.superseded?.(key)) continue;
        for (;;) {
          const have = this.#o.pool.live(key).length + this.#o.pool.starting(key);
          if (have >= pool.spec.autoscaler.minContainers) {
            this.#short.delete(key);
            break;
          }
          let secrets: Record<string, string> | undefined;
          try {
            secrets = await pool.fetchSecrets?.();
          } catch (err) {
            if (!this.#closed) this.#o.log(`[plane] could not start a warm container for ${pool.app}.${pool.function}: ${(err as Error).message}`);
            break; // the next heartbeat tries again
          }
          let reservation = this.#o.inventory.reserveFirst(resourceRequests(pool));
          // Room from an idle container beyond its own pool's minimum (a burst's, waiting out its scale-down window), as
          // a cold start takes it: before, a pool a burst had emptied stayed cold until that window passed.
          for (const request of reservation ? [] : resourceRequests(pool)) {
            if (await this.#o.scaleDown.evictFor(request, `${pool.app}.${pool.function}'s warm minimum`, { surplusOnly: true })) {
              reservation = this.#o.inventory.reserve(request);
              if (reservation) break;
            }
          }
          if (!reservation) {
            // No room now; the next heartbeat tries again. Said once for as long as it stays so short.
            if (this.#short.get(key) !== have) {
              this.#short.set(key, have);
              const min = pool.spec.autoscaler.minContainers;
              this.#o.log(
                `[plane] ${pool.app}.${pool.function} keeps ${have} of its minContainers ${min} warm: this plane has no room for another (${describeRequests(resourceRequests(pool))}); it starts one when room frees`,
              );
            }
            break;
          }
          try {
            const started = secrets === undefined ? pool : { ...pool, secrets };
            const worker = await this.#o.starter.start(started, key, await pool.bundle(), reservation, Date.now() + AHEAD_START_DEADLINE_MS);
            this.#o.scaleDown.release(worker, undefined);
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

  /**
   * Starts one container of `pool` for an input that is coming but has not
   * come yet (`tandem run`'s one call, while its gateway starts). Until it is
   * ready, or has failed, the pool's inputs wait for it rather than start another.
   * `asked` is told once its runtime has been asked to run it, or once it
   * cannot be (no room, a failure before).
   */
  startAhead(pool: PoolDescriptor, bundle: BundleOnDisk, asked: () => void = () => {}): void {
    const key = poolKey(pool);
    const reservation = this.#o.inventory.reserveFirst(resourceRequests(pool));
    if (!reservation) return asked();
    this.#ahead.add(key);
    void this.#o.starter
      .start(pool, key, bundle, reservation, Date.now() + AHEAD_START_DEADLINE_MS, { starting: asked })
      .then(
        (worker) => this.#o.scaleDown.release(worker, undefined),
        (err: Error) => this.#closed || this.#o.log(`[plane] could not start a container ahead for ${pool.app}.${pool.function}: ${err.message}`),
      )
      .finally(() => {
        asked(); // a driver that does not say, or a start that failed first
        this.#ahead.delete(key);
        this.#o.pool.wake();
      });
  }

  /** Whether a container of the pool `key` is starting for an input known to be coming (see `startAhead`). */
  startingAhead(key: string): boolean {
    return this.#ahead.has(key);
  }

  /** With `bufferContainers`, keeps that many idle containers ready while the function is busy. */
  topUpBuffer(req: PoolDescriptor, key: string, bundle: BundleOnDisk): void {
    const { bufferContainers, maxContainers } = req.spec.autoscaler;
    if (bufferContainers === 0) return;
    const mine = this.#o.pool.live(key);
    const idle = mine.filter((w) => w.inFlight.size === 0).length + this.#o.pool.starting(key);
    const room = maxContainers - mine.length - this.#o.pool.starting(key);
    for (let i = 0; i < Math.min(bufferContainers - idle, room); i++) {
      const reservation = this.#o.inventory.reserveFirst(resourceRequests(req));
      if (!reservation) return;
      void this.#o.starter.start(req, key, bundle, reservation, Date.now() + AHEAD_START_DEADLINE_MS).then(
        (worker) => this.#o.scaleDown.release(worker, undefined),
        (err: Error) => this.#o.log(`[plane] could not start a buffer container for ${req.app}.${req.function}: ${err.message}`),
      );
    }
  }
}
