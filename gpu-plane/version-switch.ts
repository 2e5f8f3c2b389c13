/**
 * A new version of a function going live on the plane. Pools are keyed by
 * bundle and spec (pool-descriptor.ts), so a deploy or a `tandem serve`
 * reload gives a function a new pool; without this, the old pool's containers
 * would sit idle until their scale-down window, and a busy one would hold its
 * resources as long. The plane takes the latest pool it is sent for a function
 * (by an input or a warm pool assignment) as its live version; and each
 * heartbeat's answer tells it every app's live bundle (`LiveBundleRef`), so a
 * plane that runs no input of a new version retires the old one too, within a
 * heartbeat. A bundle told with an earlier `since` than the one known is an
 * older gateway version's (two answer during a rollout): it never switches
 * back, nor does an input of it. With the
 * `rolling` strategy the old version's containers take no new input, finish
 * the inputs they run, then stop; idle ones stop once the new version's warm
 * containers (`minContainers`) are ready; all of them stop at the version
 * drain timeout, whatever they still run. With `recreate` they are killed at
 * once, as the new version goes live here, and the inputs they run fail with
 * `container_failed`, saying why.
 */
import type { DeployStrategy, LiveBundleRef } from "../sdk/protocol.js";
import type { ContainerPool, Worker } from "./container-pool.js";
import type { PlaneLogLine } from "./log-shipper.js";
import type { ScaleDown } from "./scale-down.js";

/** How often a switch looks whether the new version's warm containers are ready. */
const WARM_POLL_MS = 100;
/** How many bundles an app was told before its live one are remembered as older (inputs of them switch nothing). */
const OLDER_KEPT = 32;

/** What the gateway last told of an app: its live bundle, since when, and bundles live before it. */
interface Told {
  bundleHash: string;
  since: number;
  older: Set<string>;
}

/** What a {@link VersionSwitch} works on. */
export interface VersionSwitchOptions {
  pool: ContainerPool;
  scaleDown: ScaleDown;
  log: (line: string) => void;
  /** The same lines, as `system` lines of the function's app log (log-shipper.ts); none: the plane's output alone. */
  onLogLine?: (line: PlaneLogLine) => void;
  /** How long an old version's containers may take to finish their inputs before they are stopped anyway. */
  drainTimeoutMs: number;
  /** How many containers of the pool `key` this plane keeps warm (its `minContainers` when assigned here, else 0). */
  keptWarm(key: string): number;
}

/**
 * Tracks each function's live version on the plane and retires the containers of the versions before it.
 * @example
 * const versions = new VersionSwitch({ pool, scaleDown, log, drainTimeoutMs: 300_000, keptWarm: (key) => warm.minimumFor(key) });
 * versions.seen(poolKey(req), req.strategy); // a new bundle: the old pool's containers drain, then stop
 * versions.told({ app: "shop", bundleHash, since }); // a heartbeat's: the app's other bundles' containers drain, then stop
 */
export class VersionSwitch {
  readonly #o: VersionSwitchOptions;
  /** The live pool key of each function (its app, pool name and class parameters). */
  readonly #live = new Map<string, string>();
  /** Each app's live bundle as the gateway's heartbeat answers said it, by app. */
  readonly #told = new Map<string, Told>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #closed = false;

  constructor(options: VersionSwitchOptions) {
    this.#o = options;
  }

  /**
   * The pool `key` was sent an input or assigned warm: it is its function's live version from now on. True when that
   * made it live (a new version, or the function's first): what was kept for an older one may go.
   */
  seen(key: string, strategy: DeployStrategy = "rolling"): boolean {
    const fn = functionOf(key);
    if (this.#live.get(fn) === key) return false;
    // An input of a bundle the gateway has told a newer one over (an older gateway's, during a rollout): it runs on
    // its own pool, and switches nothing back.
    if (this.#toldOlder(key)) return false;
    this.#live.set(fn, key);
    const old = this.#o.pool.all().filter((w) => w.key !== key && functionOf(w.key) === fn && current(w));
    if (old.length > 0) this.#retire(old, key, strategy, this.#warmTarget(key, old));
    return true;
  }

  /**
   * A heartbeat's answer says `live.bundleHash` is its app's live version, made at `live.since`: every container of
   * the app's other bundles retires as with {@link seen}, whether or not an input of the new one comes here. Told no
   * later than the version known, it changes nothing. True when it made a new bundle live (what was prepared for an
   * older one may go).
   */
  told(live: LiveBundleRef): boolean {
    const known = this.#told.get(live.app);
    if (known && live.since <= known.since) {
      if (live.since < known.since && live.bundleHash !== known.bundleHash) remember(known.older, live.bundleHash);
      return false;
    }
    const older = known?.older ?? new Set<string>();
    if (known && known.bundleHash !== live.bundleHash) remember(older, known.bundleHash);
    older.delete(live.bundleHash);
    this.#told.set(live.app, { bundleHash: live.bundleHash, since: live.since, older });
    if (known?.bundleHash === live.bundleHash) return false;
    // Each function's live pool is now the told bundle's, whichever of its pools an input or warm pool names first.
    for (const [fn, key] of this.#live) if (appOf(key) === live.app && bundleOf(key) !== live.bundleHash) this.#live.delete(fn);
    const old = this.#o.pool.all().filter((w) => appOf(w.key) === live.app && bundleOf(w.key) !== live.bundleHash && current(w));
    const byFunction = new Map<string, Worker[]>();
    for (const w of old) byFunction.set(functionOf(w.key), [...(byFunction.get(functionOf(w.key)) ?? []), w]);
    for (const workers of byFunction.values()) this.#retire(workers, live.bundleHash, live.strategy ?? "rolling", 0);
    return true;
  }

  /**
   * Retires the containers of one function's old version (`old`) for `by` (the new pool key, or bundle as told):
   * killed at once with `recreate`; else they take no new input and stop once their inputs end, idle ones once
   * `wanted` containers of the pool `by` are ready (none wanted: at once).
   */
  #retire(old: Worker[], by: string, strategy: DeployStrategy, wanted: number): void {
    const label = old[0]!.label;
    const count = `${old.length} container${old.length === 1 ? "" : "s"}`;
    if (strategy === "recreate") {
      this.#say(old[0]!, `a new version of ${label} is live (strategy recreate): stopping ${count} of the old one now`);
      // Killed, not drained: the inputs they run fail with `container_failed`, saying why (container-failure.ts).
      const why = `as a new version of ${label} went live (strategy recreate)`;
      for (const worker of old) {
        worker.supersededBy = by;
        void this.#o.scaleDown.retire(worker, { why });
      }
      return;
    }
    this.#say(
      old[0]!,
      `a new version of ${label} is live: ${count} of the old one ${old.length === 1 ? "takes no new input and stops once its inputs end" : "take no new input and stop once their inputs end"}` +
        (wanted > 0 ? ` (idle ones once ${wanted} of the new one ${wanted === 1 ? "is" : "are"} ready)` : ""),
    );
    for (const worker of old) {
      worker.draining = true;
      worker.supersededBy = by;
      clearTimeout(worker.idleTimer);
      if (wanted > 0) worker.awaitingReplacement = true;
      else if (worker.ready && worker.inFlight.size === 0) this.#o.scaleDown.release(worker, undefined);
    }
    const deadline = Date.now() + this.#o.drainTimeoutMs;
    if (wanted > 0) this.#whenWarm(by, wanted, deadline, old);
    this.#later(() => {
      const why = `as a new version of ${label} went live and the version drain timeout (${this.#o.drainTimeoutMs / 1000} s) passed`;
      for (const worker of old.filter((w) => this.#o.pool.has(w))) {
        this.#say(
          worker,
          `${worker.label} ${worker.id} of an old version still runs ${worker.inFlight.size} input(s) after the version drain timeout (${this.#o.drainTimeoutMs / 1000} s); stopping it`,
          worker.id,
        );
        void this.#o.scaleDown.retire(worker, { why });
      }
    }, this.#o.drainTimeoutMs);
    this.#o.pool.wake();
  }

  /** Whether the gateway has told a newer bundle of `key`'s app than `key`'s. */
  #toldOlder(key: string): boolean {
    const { app, bundleHash } = JSON.parse(key) as { app: string; bundleHash: string };
    return this.#told.get(app)?.older.has(bundleHash) ?? false;
  }

  /** Whether `key` is an older version of a function than the live one (a warm pool not to fill). */
  superseded(key: string): boolean {
    const live = this.#live.get(functionOf(key));
    return (live !== undefined && live !== key) || this.#toldOlder(key);
  }

  /** No more switches: the plane is shutting down, and stops every container itself. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  /**
   * How many ready containers of the new version the old idle ones wait for: the new pool's warm minimum where this
   * plane keeps it, or where it kept the old one warm (the gateway's next heartbeat assigns it the new pool).
   */
  #warmTarget(key: string, old: Worker[]): number {
    const assigned = this.#o.keptWarm(key);
    if (assigned > 0) return assigned;
    return old.some((w) => this.#o.keptWarm(w.key) > 0) ? minContainersOf(key) : 0;
  }

  /** Once `wanted` containers of `key` are ready (or at the deadline), the old version's idle containers stop. */
  #whenWarm(key: string, wanted: number, deadline: number, old: Worker[]): void {
    const look = () => {
      if (this.#closed) return;
      if (this.#o.pool.serving(key).length < wanted && Date.now() < deadline) return this.#later(look, WARM_POLL_MS);
      for (const worker of old) {
        worker.awaitingReplacement = false;
        if (this.#o.pool.has(worker) && worker.ready && worker.inFlight.size === 0) this.#o.scaleDown.release(worker, undefined);
      }
    };
    look();
  }

  /** A line of the switch, in the plane's output and as a `system` line of the app's log, tagged with the function (of `worker`) and `containerId`. */
  #say(worker: Worker, text: string, containerId: string | null = null): void {
    this.#o.log(`[plane] ${text}`);
    this.#o.onLogLine?.({ app: worker.life.app, function: worker.life.function, callId: null, containerId, source: "system", text });
  }

  #later(fn: () => void, ms: number): void {
    if (this.#closed) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    timer.unref();
    this.#timers.add(timer);
  }
}

/** The function a pool key belongs to, whatever its version: its app, pool name and class parameters. */
function functionOf(key: string): string {
  const { app, pool, clsParams } = JSON.parse(key) as { app: string; pool: string; clsParams: unknown };
  return JSON.stringify([app, pool, clsParams]);
}

/** The bundle a pool key runs. */
function bundleOf(key: string): string {
  return (JSON.parse(key) as { bundleHash: string }).bundleHash;
}

/** The app a pool key belongs to. */
function appOf(key: string): string {
  return (JSON.parse(key) as { app: string }).app;
}

/** A container not yet stopping, nor already retired for a newer version. */
function current(w: Worker): boolean {
  return !w.exit && !w.stopping && !w.supersededBy;
}

/** Adds `bundleHash` to an app's older bundles, forgetting the first ones past {@link OLDER_KEPT}. */
function remember(older: Set<string>, bundleHash: string): void {
  older.add(bundleHash);
  for (const first of older) {
    if (older.size <= OLDER_KEPT) break;
    older.delete(first);
  }
}

/** The `minContainers` a pool key's spec declares. */
function minContainersOf(key: string): number {
  return (JSON.parse(key) as { spec: { autoscaler: { minContainers: number } } }).spec.autoscaler.minContainers;
}
