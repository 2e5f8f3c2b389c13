/**
 * The containers a previous run of this plane left behind (it was killed: SIGKILL, a crash), removed as it starts,
 * and tried again with backoff while that fails: a container killed moments ago may still be exiting (the engine
 * answers `PID … is zombie and can not be killed`), and can be removed once it has. Until then the plane takes no
 * calls (it would share the machine with containers it no longer counts), and says why. Their time is billed: each
 * one's row in the usage ledger is closed as it is removed.
 */
import { CONTAINER_LABELS } from "../sdk/protocol.js";
import type { ContainerDriver } from "./drivers/driver.js";
import { writeUsage, type UsageLedger } from "./usage-ledger.js";

export interface LeftoverRemovalOptions {
  /** Removes the leftovers (the driver's `cleanup` of this plane's id). */
  remove: () => Promise<void>;
  planeId: string;
  log: (line: string) => void;
  /** Told once a removal succeeded after failing: the plane takes calls from now on. */
  removed: () => void;
  /** The wait before the second try; doubled each time, up to `maxDelayMs`. */
  firstDelayMs: number;
  maxDelayMs: number;
}

/**
 * @example
 * const leftovers = new LeftoverRemoval({ remove: () => driver.cleanup(planeId), planeId, log, removed, firstDelayMs: 1000, maxDelayMs: 30_000 });
 * await leftovers.start();
 * if (leftovers.pending) log(`not taking calls yet: ${leftovers.pending}`);
 */
export class LeftoverRemoval {
  readonly #o: LeftoverRemovalOptions;
  #pending: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: LeftoverRemovalOptions) {
    this.#o = options;
  }

  /** Why the plane takes no calls yet (its leftovers are still there), or undefined once they are removed. */
  get pending(): string | undefined {
    return this.#pending;
  }

  /** Tries once; when that fails, goes on trying in the background (`pending` says why meanwhile). */
  async start(): Promise<void> {
    if (await this.#try()) return;
    this.#o.log(`⚠ plane ${this.#o.planeId} is not taking calls yet: ${this.#pending}`);
    this.#schedule(this.#o.firstDelayMs);
  }

  /** Stops trying (the plane closes, and removes them itself). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #try(): Promise<boolean> {
    try {
      await this.#o.remove();
      this.#pending = undefined;
      return true;
    } catch (err) {
      // Not "cannot start containers": the engine works, a container of the last run is still on its way out.
      this.#pending = `the containers its previous run left behind are not all removed yet (a container killed moments ago may still be exiting; trying again): ${(err as Error).message}`;
      return false;
    }
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(async () => {
      if (this.#stopped) return;
      if (await this.#try()) {
        if (this.#stopped) return;
        this.#o.log(`✓ plane ${this.#o.planeId} removed the containers its previous run left behind; it takes calls now`);
        return this.#o.removed();
      }
      if (!this.#stopped) this.#schedule(Math.min(delayMs * 2, this.#o.maxDelayMs));
    }, delayMs);
    this.#timer.unref();
  }
}

/**
 * Removes the containers a previous run of this plane left behind, and closes their rows in its usage ledger at the
 * time each stopped (they ran, and may have run on after the plane died: their time is billed); then the rows left
 * open of containers the engine no longer has, at their last sight. Returns one pass of that, for `LeftoverRemoval`
 * to try again while it fails: a pass that fails has removed, and metered, some of them, so what it says once the
 * last pass succeeds counts every pass.
 * @example
 * const leftovers = new LeftoverRemoval({ remove: leftoverRemover(driver, planeId, usage, log), … });
 */
export function leftoverRemover(driver: ContainerDriver, planeId: string, usage: UsageLedger, log: (line: string) => void): () => Promise<void> {
  let removed = 0;
  let metered = 0;
  // A ledger that cannot write is said, and does not keep the plane from taking calls.
  const meter = (id: string, write: () => number | boolean) => (metered += Number(writeUsage(log, id, write) ?? 0));
  return async () => {
    await driver.cleanup(planeId, (container) => {
      removed++;
      meter(container.labels[CONTAINER_LABELS.container] ?? "a container left behind", () => usage.closeLeftover(container));
    });
    meter("the containers its previous run left", () => usage.closeLost());
    if (removed > 0) log(`[plane] removed ${removed} container(s) its previous run left behind`);
    if (metered > 0) log(`[plane] recorded the usage of ${metered} container(s) its previous run left running`);
  };
}
