/**
 * The containers a plane runs, by pool key (see pool-descriptor.ts): which of
 * a pool's are live, ready or starting, which runs a given call, the waits of
 * inputs queued for room, and the per-function counters `status` shows. It
 * decides nothing: the dispatcher, container-start.ts, warm-pools.ts and
 * scale-down.ts add, pick and drop containers through it.
 */
import type { PlaneFunctionSpec, UncaughtFrame } from "../sdk/protocol.js";
import type { ControlChannel } from "./control-channel.js";
import type { ExitInfo, StartedContainer } from "./drivers/driver.js";
import type { Reservation } from "./inventory.js";
import type { ContainerLife } from "./usage-ledger.js";

/** One container as the plane tracks it, from its start until it is forgotten. */
export interface Worker {
  id: string;
  /** Its pool's key (`poolKey`). */
  key: string;
  /** `app.function`, for log lines and stats. */
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
  /** Its runner has `exit()` hooks to run when it stops (a class's container whose class has one), as it said when ready. */
  exitHooks: boolean;
  /** The plane itself is stopping it (so a SIGKILL is ours, not the OOM killer's). */
  stopping: boolean;
  /** Why, where a call it runs is told (`retire`'s `why`): "as the plane shut down". */
  stoppingWhy?: string;
  /** When the plane decided to stop it, where its time stops counting before it leaves (its `exit()` hooks run). */
  billedUntil?: number;
  /**
   * Stopped because a call it ran was cancelled with `terminateContainer`: what its calls are told leaves out its last
   * log lines, which say nothing of why it stopped and may be other calls' (its tail holds lines of each call it ran).
   */
  stoppedForCancel?: boolean;
  /**
   * Rolled over (`tandem app rollover`): it takes no new input, and stops once the inputs it runs end; a new
   * container of its pool, started with what the function declares now (its secrets' current values), replaces it.
   */
  draining?: boolean;
  /** A new version of its function went live (version-switch.ts): the pool key of that version, or its bundle's hash as a heartbeat told it. */
  supersededBy?: string;
  /** Of an old version, and kept (idle) until the new version's warm containers are ready. */
  awaitingReplacement?: boolean;
  /** The latest input's call id, for log tags. */
  callId: string | undefined;
  /** The latest input's function (a class's containers serve each of its methods), for log lines; unset: the one it started for. */
  callFunction?: string;
  /** What this container's life costs: its app, function and resources, from when it started. */
  life: ContainerLife;
  /** Its last log lines, for the errors that end a call (container-failure.ts). */
  logTail: string[];
  /** Stops it after its scale-down window with no inputs (scale-down.ts). */
  idleTimer: NodeJS.Timeout | undefined;
  exit: ExitInfo | undefined;
  protocolError: string | undefined;
  /** What the app's code threw outside a call, as its runner reported it just before it exited. */
  uncaught?: UncaughtFrame;
}

/** One function's counters, as the plane's `status` shows them. */
export interface FunctionStats {
  app: string;
  function: string;
  running: number;
  idle: number;
  starting: number;
  queued: number;
  coldStarts: number;
}

/** A container as `status` lists it. */
export interface ContainerSummary {
  id: string;
  app: string;
  function: string;
  ready: boolean;
  busy: boolean;
  inputs: number;
  runtimeId: string;
}

/**
 * The plane's containers, grouped by pool key.
 * @example
 * const pool = new ContainerPool();
 * const warm = pool.serving(key).find((w) => w.inFlight.size < spec.autoscaler.targetInputs);
 * if (warm) pool.hold(warm, req.callId);
 */
export class ContainerPool {
  readonly #workers = new Set<Worker>();
  /** Containers starting now, by pool. */
  readonly #starting = new Map<string, number>();
  /** Inputs queued for room, each woken when a container is freed, dropped or started. */
  readonly #waiters = new Set<() => void>();
  readonly #stats = new Map<string, FunctionStats>();

  /** Adds a container that has just been started (not ready yet). */
  add(worker: Worker): void {
    this.#workers.add(worker);
  }

  /** Drops a container; false when it was not here (already dropped). */
  delete(worker: Worker): boolean {
    return this.#workers.delete(worker);
  }

  /** Whether `worker` is still in its pool (not yet forgotten). */
  has(worker: Worker): boolean {
    return this.#workers.has(worker);
  }

  /** Every container, in the order they started. */
  all(): Worker[] {
    return [...this.#workers];
  }

  /** A pool's containers that have not exited, ready or still starting, and not rolled over (draining). */
  live(key: string): Worker[] {
    return [...this.#workers].filter((w) => w.key === key && !w.exit && !w.draining && !w.stopping);
  }

  /**
   * A pool's containers that may take an input now (ready, running, speaking
   * the protocol), least loaded first: the first under a limit is the one to pick.
   */
  serving(key: string): Worker[] {
    return [...this.#workers]
      .filter((w) => w.key === key && w.ready && !w.exit && !w.protocolError && !w.draining && !w.stopping)
      .sort((a, b) => a.inFlight.size - b.inFlight.size);
  }

  /** Gives `worker` the input `callId` (of function `fn`): it is busy now, and its idle timer stops. */
  hold(worker: Worker, callId: string, fn?: string): Worker {
    clearTimeout(worker.idleTimer);
    worker.inFlight.add(callId);
    worker.callId = callId;
    if (fn !== undefined) worker.callFunction = fn;
    return worker;
  }

  /** The container running `callId`, if one here does. */
  runningCall(callId: string): Worker | undefined {
    return [...this.#workers].find((w) => w.inFlight.has(callId));
  }

  /** Every container of `app`. */
  ofApp(app: string): Worker[] {
    return [...this.#workers].filter((w) => w.label.startsWith(`${app}.`));
  }

  /** How many containers of a pool are starting now. */
  starting(key: string): number {
    return this.#starting.get(key) ?? 0;
  }

  /** Counts a start of a pool's container until `startEnded`. */
  startBegan(key: string): void {
    this.#starting.set(key, (this.#starting.get(key) ?? 0) + 1);
  }

  /** A start ended (ready or failed): inputs queued behind it may now share the new container, or start their own. */
  startEnded(key: string): void {
    this.#starting.set(key, (this.#starting.get(key) ?? 1) - 1);
    this.wake();
  }

  /** Waits until a container is freed, dropped or started, or a second passes, or the deadline comes. */
  waitForRelease(deadline: number): Promise<void> {
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

  /** Wakes every queued input to look again. */
  wake(): void {
    for (const wake of [...this.#waiters]) wake();
  }

  /** The lives of the containers running now, for usage and spend caps. */
  lives(): ContainerLife[] {
    return [...this.#workers].map((w) => w.life);
  }

  /** The counters of `app.function`, made on first use. */
  statsFor(app: string, fn: string): FunctionStats {
    const key = `${app}.${fn}`;
    let stats = this.#stats.get(key);
    if (!stats) {
      stats = { app, function: fn, running: 0, idle: 0, starting: 0, queued: 0, coldStarts: 0 };
      this.#stats.set(key, stats);
    }
    return stats;
  }

  /** Every function's counters, with its running and idle containers counted now. */
  stats(): FunctionStats[] {
    return [...this.#stats.values()].map((s) => {
      const mine = [...this.#workers].filter((w) => w.label === `${s.app}.${s.function}`);
      return { ...s, running: mine.filter((w) => w.inFlight.size > 0).length, idle: mine.filter((w) => w.inFlight.size === 0).length };
    });
  }

  /** The containers up now per function that has any: busy running an input, idle waiting (a heartbeat's `warm`). */
  warm(): { app: string; function: string; busy: number; idle: number }[] {
    const byFunction = new Map<string, { app: string; function: string; busy: number; idle: number }>();
    for (const w of this.#workers) {
      const key = JSON.stringify([w.life.app, w.life.function]);
      let counts = byFunction.get(key);
      if (!counts) byFunction.set(key, (counts = { app: w.life.app, function: w.life.function, busy: 0, idle: 0 }));
      if (w.inFlight.size > 0) counts.busy++;
      else counts.idle++;
    }
    return [...byFunction.values()];
  }

  /** Containers by id, for `docker ps`-style views and tests. */
  summaries(): ContainerSummary[] {
    return [...this.#workers].map((w) => {
      const [app = "", fn = ""] = w.label.split(".");
      return { id: w.id, app, function: fn, ready: w.ready, busy: w.inFlight.size > 0, inputs: w.inFlight.size, runtimeId: w.container.runtimeId };
    });
  }
}
