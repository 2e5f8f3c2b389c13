/**
 * The planes this gateway knows: one Durable Object that every isolate asks,
 * holding each plane's last heartbeat (region, inventory, free capacity, URL)
 * and the nonces of signed plane requests, so a replay is refused whichever
 * isolate it reaches, and after this object or the gateway restarts.
 */
import { DurableObject } from "cloudflare:workers";
import { PLANE_DEFAULTS } from "../sdk/defaults.js";
import { planeDropped, type PlaneHeartbeat, type PlaneInfo } from "../sdk/protocol.js";
import { SIGNATURE_WINDOW_MS } from "../sdk/signing.js";
import type { Env } from "./env.js";
import { planeHealthy } from "./plane-choice.js";

export class PlaneRegistry extends DurableObject<Env> {
  readonly #planes = new Map<string, { heartbeat: PlaneHeartbeat; lastSeen: number }>();
  readonly #sql: SqlStorage;
  /** The planes refused for another holding their id, as logged: each once. */
  readonly #refusedLogged = new Set<string>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, seen_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS nonces_seen ON nonces(seen_at);`);
    void ctx.blockConcurrencyWhile(async () => {
      const stored = await ctx.storage.list<{ heartbeat: PlaneHeartbeat; lastSeen: number }>({ prefix: "plane:" });
      for (const [, plane] of stored) this.#planes.set(plane.heartbeat.planeId, plane);
    });
  }

  /**
   * True the first time a nonce is seen (within twice the signature window).
   * Kept in storage, not memory: this object starts on demand, woken by the
   * very request it checks, so refusing what was signed before it started (as
   * a plane does) would refuse that request; forgetting would let a captured
   * one be replayed after a restart.
   */
  async remember(nonce: string): Promise<boolean> {
    const now = Date.now();
    this.#sql.exec("DELETE FROM nonces WHERE seen_at < ?", now - 2 * SIGNATURE_WINDOW_MS);
    return this.#sql.exec("INSERT OR IGNORE INTO nonces (nonce, seen_at) VALUES (?, ?)", nonce, now).rowsWritten > 0;
  }

  /**
   * Takes a plane's report; answers why it was refused instead, when another process holds the plane's id: one
   * started later, which reported within the plane timeout (a state folder copied to a second machine, say). The
   * later one is the plane, as after a restart; without this the two would take turns as the plane's entry, and
   * calls for one would reach the other.
   */
  async heartbeat(heartbeat: PlaneHeartbeat): Promise<{ refused?: string }> {
    const known = this.#planes.get(heartbeat.planeId);
    const now = Date.now();
    // A plane that said it stopped holds its id no more: whichever process reports it next is the plane.
    const held = known?.heartbeat.stopped ? undefined : known?.heartbeat.startedAt;
    if (held !== undefined && heartbeat.startedAt !== undefined && heartbeat.startedAt !== held && now - known!.lastSeen < PLANE_DEFAULTS.staleMs) {
      const other = `${known!.heartbeat.url} (region ${known!.heartbeat.region})`;
      if (heartbeat.startedAt < held) {
        const refused =
          `plane id ${heartbeat.planeId} is held by another plane, started later, at ${other}: two planes report one id, as when a plane's ` +
          `state folder (.tandem/plane, which keeps its id) is copied. Give each plane a folder of its own (remove plane-id from a copy)`;
        // Logged once per refused process, not at each of its heartbeats (every 3 s while it runs).
        const who = `${heartbeat.planeId} ${heartbeat.url} ${heartbeat.startedAt}`;
        if (!this.#refusedLogged.has(who)) {
          this.#refusedLogged.add(who);
          console.log(`refused the heartbeat of plane ${heartbeat.planeId} from ${heartbeat.url}: it is held by a plane started later at ${other}`);
        }
        return { refused };
      }
      if (heartbeat.url !== known!.heartbeat.url) {
        // Most often a restart of the same plane (tandem serve's, on a new port): said as that, not as an error. A
        // process still running at the old address is refused, and said so, at its next heartbeat.
        const was = known!.heartbeat;
        console.log(`plane ${heartbeat.planeId} started again at ${heartbeat.url}, region ${heartbeat.region}; it was at ${was.url}, region ${was.region}`);
      }
    }
    const entry = { heartbeat, lastSeen: now };
    this.#planes.set(heartbeat.planeId, entry);
    await this.ctx.storage.put(`plane:${heartbeat.planeId}`, entry);
    if (heartbeat.stopped) {
      if (!known?.heartbeat.stopped) console.log(`plane ${heartbeat.planeId} stopped: it runs nothing and is sent nothing`);
      return {};
    }
    if (!known || known.heartbeat.stopped)
      console.log(`plane ${heartbeat.planeId} registered: ${heartbeat.url}, region ${heartbeat.region}, ${describeGpus(heartbeat)}`);
    if (heartbeat.draining && !known?.heartbeat.draining) console.log(`plane ${heartbeat.planeId} is draining: it is sent no new input`);
    return {};
  }

  /** Marks `app` (as bundled now) stopped: its pools are not kept warm until it is served or deployed again. */
  async stopApp(app: string, bundleHash: string): Promise<void> {
    await this.ctx.storage.put(`stopped:${app}`, { hash: bundleHash, at: Date.now() } satisfies StopMark);
  }

  async stoppedBundles(): Promise<Record<string, StopMark>> {
    const stopped = await this.ctx.storage.list<StopMark | string>({ prefix: "stopped:" });
    // A mark from before marks had a time (a bare hash) holds until the bundle changes.
    return Object.fromEntries([...stopped].map(([k, v]) => [k.slice("stopped:".length), typeof v === "string" ? { hash: v, at: Number.MAX_SAFE_INTEGER } : v]));
  }

  /** The planes and the stop marks in one request: what a heartbeat's answer (its warm pools) is made from. */
  async view(): Promise<RegistryView> {
    return { planes: await this.list(), stopped: await this.stoppedBundles() };
  }

  async list(): Promise<PlaneInfo[]> {
    const now = Date.now();
    const planes: PlaneInfo[] = [];
    for (const [id, { heartbeat, lastSeen }] of this.#planes) {
      // A stopped plane is listed as such for a while, a silent one as stale for longer (`planeDropped`), then forgotten.
      if (planeDropped(heartbeat, lastSeen, now)) {
        this.#planes.delete(id);
        await this.ctx.storage.delete(`plane:${id}`);
        continue;
      }
      planes.push({ ...heartbeat, lastSeen, healthy: planeHealthy(heartbeat, lastSeen, now) });
    }
    return planes;
  }
}

/** The registry as a heartbeat's answer reads it: the planes, and the apps stopped (by name). */
export interface RegistryView {
  planes: PlaneInfo[];
  stopped: Record<string, StopMark>;
}

function describeGpus(h: PlaneHeartbeat): string {
  const gpus = Object.entries(h.gpus).map(([type, c]) => `${type}x${c.total}`);
  return gpus.length ? `GPUs ${gpus.join(", ")}${h.simulated ? " (simulated)" : ""}` : "no GPUs";
}

/** `tandem app stop`: the app's bundle then, and when. */
export interface StopMark {
  hash: string;
  at: number;
}
