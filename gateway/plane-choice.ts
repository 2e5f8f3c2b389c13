/**
 * Which plane a plane-tier input goes to: the planes the registry knows
 * (cached for a second per isolate), the best one for a function's GPU
 * fallback list among those in its allowed regions, nearest the caller first,
 * and the wait, until the input's deadline, while none fits; then
 * `no_capacity`, naming what was asked for, the regions, and what is connected.
 */
import { NoCapacityError, PlaneUnavailableError, fromWireError, type WireError } from "../sdk/errors.js";
import type { GpuRequest } from "../sdk/gpu.js";
import { PLANE_DEFAULTS } from "../sdk/defaults.js";
import {
  LOCAL_PLANE_ROUTES,
  LocalPlaneBundlesSchema,
  PlaneHeartbeatSchema,
  planeState,
  type PlaneBundleRef,
  type PlaneHeartbeat,
  type PlaneInfo,
} from "../sdk/protocol.js";
import type { Env } from "./env.js";
import { describeRegions, inAllowedRegion, regionRank } from "./plane-regions.js";
import type { RegistryView } from "./plane-registry.js";
import { registry, type RegisteredFunction } from "./registry.js";

const PLANE_LIST_TTL_MS = 1_000;
const WAIT_FOR_CAPACITY_MS = 500;

/**
 * What an input asks of a plane: the GPUs it wants (in fallback order; none for CPU), and when it stops waiting;
 * where it may run, and where it would rather.
 */
export interface PlaneWants extends PlanePlacement {
  wants: GpuRequest[];
  deadline: number;
}

/**
 * Where an input may run (`regions`, empty: anywhere) and the regions nearest its caller, nearest first
 * (plane-regions.ts); `warm`: the function whose idle warm containers, as heartbeats report them, draw it.
 */
export interface PlanePlacement {
  regions: readonly string[];
  near: readonly string[];
  warm?: { app: string; function: string };
}

/** The last view the registry gave, as plain data: a cached promise would be one request's, awaited by others (workerd warns). */
let planeList: ({ at: number } & RegistryView) | undefined;

/**
 * The planes the registry knows, cached for a second per isolate; `fresh`
 * asks the registry again. Requests that find the cache stale at the same
 * moment each ask, in their own request context.
 *
 * @example const healthy = (await knownPlanes(env, true)).filter((p) => p.healthy);
 */
export async function knownPlanes(env: Env, fresh = false): Promise<PlaneInfo[]> {
  return (await registryView(env, fresh)).planes;
}

/**
 * The planes and the apps' stop marks, from the same per-isolate cache as
 * {@link knownPlanes}. Heartbeats read it: asking the registry for every plane
 * on every heartbeat would make each one cost more as the fleet grows, and the
 * fleet's heartbeats together grow with the square of its size.
 *
 * @example const { planes, stopped } = await registryView(env);
 */
export async function registryView(env: Env, fresh = false): Promise<RegistryView> {
  if (!fresh && planeList && Date.now() - planeList.at <= PLANE_LIST_TTL_MS) return planeList;
  const view = await planeRegistry(env).view();
  planeList = { at: Date.now(), ...view };
  return view;
}

/**
 * Whether the gateway sends a plane inputs: it reported lately, can start
 * containers, is ready (not still removing its previous run's containers), and is neither draining nor
 * stopped (`planeState`).
 *
 * @example planeHealthy(heartbeat, Date.now(), Date.now()) // true for a plane that just reported, ready
 */
export function planeHealthy(heartbeat: PlaneHeartbeat, lastSeen: number, now: number): boolean {
  return planeState(heartbeat, lastSeen, now) === "healthy";
}

/** Planes this isolate could not reach, and when: passed over until they report again. */
const unreachable = new Map<string, number>();

/**
 * Notes that a plane could not be reached: this isolate sends it nothing more
 * until it reports again (a heartbeat after now). Until the registry finds it
 * stale (15 s), a plane that died is still listed healthy; without this, the
 * next attempt of a call it lost could go to it again, or to another dead one.
 *
 * @example noteUnreachable(plane.planeId);
 */
export function noteUnreachable(planeId: string): void {
  unreachable.set(planeId, Date.now());
}

/** The planes not known to be unreachable: those this isolate could reach, or that reported since it could not. */
function reachable(planes: PlaneInfo[]): PlaneInfo[] {
  return planes.filter((p) => {
    const since = unreachable.get(p.planeId);
    if (since === undefined) return true;
    if (p.lastSeen <= since) return false;
    unreachable.delete(p.planeId);
    return true;
  });
}

/**
 * The gateway's one plane registry (the `PlaneRegistry` Durable Object).
 *
 * @example await planeRegistry(env).heartbeat(heartbeat);
 */
export function planeRegistry(env: Env) {
  return env.PLANES.get(env.PLANES.idFromName("global"));
}

/**
 * The next plane to try, waiting (until the deadline) while none fits. Throws
 * `plane_unavailable` at once when the only planes left cannot start
 * containers, and `no_capacity` at the deadline. `skipped`: planes tried
 * already for this input; cleared after a wait, since they may have come back.
 *
 * @example const plane = await choosePlane(env, fn, { wants: [{ type: "A100", count: 1 }], deadline }, new Set());
 */
export async function choosePlane(
  env: Env,
  fn: RegisteredFunction,
  want: PlaneWants,
  skipped: Set<string>,
  onWait?: (why: string) => void,
): Promise<PlaneInfo> {
  let askedLocal = false;
  let waitSaid = false;
  let local: PlaneInfo | undefined;
  for (;;) {
    // `tandem run` starts its plane only when a call needs one, and it is the run's only plane: ask it first, once, and
    // use its report at once (its free counts as of now). The registry is not asked on the way: its first heartbeat,
    // the registry's first use in the run's gateway, is on its way beside the call.
    if (env.LOCAL_PLANE && !askedLocal) {
      askedLocal = true;
      const report = await startLocalPlane(env.LOCAL_PLANE, fn);
      if (report) {
        const now = Date.now();
        local = { ...report, lastSeen: now, healthy: planeHealthy(report, now, now) };
        const started = pickPlane(reachable([local]), want.wants, skipped, want);
        if (started) return started;
      }
      planeList = undefined;
    }
    const reported = await knownPlanes(env, skipped.size > 0);
    // The local plane's report stands in for its first heartbeat until the registry has that (a plane that cannot start
    // containers is said so at once, below).
    const planes = local && !reported.some((p) => p.planeId === local!.planeId) ? [...reported, local] : reported;
    const plane = pickPlane(reachable(planes), want.wants, skipped, want);
    if (plane) return plane;
    // Planes that report but cannot run containers (no Docker engine, say) will not get better by waiting: say why now.
    // One not ready yet (`notReady`: still removing what its previous run left) will, and is waited for like capacity.
    const allowed = planes.filter((p) => inAllowedRegion(p.region, want.regions));
    const broken = allowed.filter((p) => p.unavailable !== undefined && Date.now() - p.lastSeen < PLANE_DEFAULTS.staleMs);
    if (broken.length && !allowed.some((p) => p.healthy)) {
      const where = want.regions.length ? ` (${fn.app}.${fn.name} runs only in ${describeRegions(want.regions)})` : "";
      throw new PlaneUnavailableError(broken.map((p) => `plane ${p.planeId} cannot start containers: ${p.unavailable}`).join("; ") + where, {
        app: fn.app,
        function: fn.name,
        ...(want.regions.length ? { regions: [...want.regions] } : {}),
      });
    }
    if (Date.now() >= want.deadline) throw noCapacity(fn, want, planes);
    // Waiting because no plane it may run on is there at all (not because those there are busy, the usual queue): said
    // once, in the call's log, rather than nothing until its timeout.
    if (!waitSaid && onWait && !allowed.some((p) => p.healthy)) {
      waitSaid = true;
      onWait(`${placesSeen(want, planes)}; it waits for one up to its timeout (${fn.spec.timeoutSeconds} s)`);
    }
    await new Promise((r) => setTimeout(r, WAIT_FOR_CAPACITY_MS));
    skipped.clear(); // planes may have come back, or new ones registered
  }
}

/**
 * The best plane for `wants` (a fallback list; empty for CPU functions) in
 * the allowed regions, or none. Region by region, nearest first: one that
 * reported idle warm containers of `placement.warm`, less the inputs of it
 * this isolate has in flight there (`inputInFlight`), and has enough of a type at all (the most idle
 * ones: the input starts warm there, and the GPUs or CPU an idle container
 * holds are not counted free); else the one with the most
 * of the first type free (or the most CPU free). With none free in any region,
 * one that has enough of a type at all, nearest first (the input queues
 * there): a free plane further away starts sooner than a queue nearby. Among
 * planes alike (a fleet of the same machines, each with a warm container), one
 * at random: the first listed would otherwise take every call that finds them equal.
 *
 * @example pickPlane(planes, [{ type: "H100", count: 2 }, { type: "A100", count: 2 }], new Set(), { regions: [], near: ["eu"] })
 */
export function pickPlane(
  planes: PlaneInfo[],
  wants: GpuRequest[],
  skipped: ReadonlySet<string>,
  placement: PlanePlacement = { regions: [], near: [] },
): PlaneInfo | undefined {
  const usable = planes.filter((p) => p.healthy && !skipped.has(p.planeId) && inAllowedRegion(p.region, placement.regions));
  const rank = (p: PlaneInfo) => regionRank(p.region, placement.near);
  const ranks = [...new Set(usable.map(rank))].sort((a, b) => a - b);
  const warm = placement.warm;
  const idle = (p: PlaneInfo) => (warm ? idleLeft(p, warm) : 0);
  const hasEnough = (p: PlaneInfo) => wants.length === 0 || wants.some((w) => (p.gpus[w.type]?.total ?? 0) >= w.count);
  for (const r of ranks) {
    const near = usable.filter((p) => rank(p) === r);
    const warmest = mostOf(
      near.filter((p) => idle(p) > 0 && hasEnough(p)),
      idle,
    );
    if (warmest) return warmest;
    if (wants.length === 0) {
      const roomiest = mostOf(
        near.filter((p) => cpuFree(p) > 0),
        cpuFree,
      );
      if (roomiest) return roomiest;
      continue;
    }
    for (const want of wants) {
      const free = mostOf(
        near.filter((p) => gpuFree(p, want.type) >= want.count),
        (p) => gpuFree(p, want.type),
      );
      if (free) return free;
    }
  }
  if (wants.length === 0) {
    const nearest = Math.min(...usable.map(rank));
    return mostOf(
      usable.filter((p) => rank(p) === nearest),
      cpuFree,
    );
  }
  // None free now: queue on a plane that has enough of the first type it has at all, nearest first.
  for (const want of wants) {
    const fits = usable.filter((p) => (p.gpus[want.type]?.total ?? 0) >= want.count);
    const nearest = Math.min(...fits.map(rank));
    const queues = fits.filter((p) => rank(p) === nearest);
    if (queues.length) return queues[Math.floor(Math.random() * queues.length)];
  }
  return undefined;
}

/** The inputs of each function this isolate has in flight on each plane: each keeps a container of it busy. */
const inFlight = new Map<string, number>();

/** What an input's new container takes on a plane beyond what the plane's report counts: its CPU, and its GPUs. */
export interface Placing {
  cpu: number;
  gpu?: GpuRequest;
}

/** By plane, what each input in flight that this isolate sent there since its last report takes, and when: see `cpuFree`. */
const placed = new Map<string, Set<Placing & { at: number }>>();

/**
 * What this isolate has sent `plane` since its last report (within a burst the report is stale); what was sent
 * before the report is counted by it, and forgotten here (placements are kept in the order they were made).
 */
function sinceReport(plane: PlaneInfo): (Placing & { at: number })[] {
  const mine = placed.get(plane.planeId);
  if (!mine) return [];
  for (const p of mine) if (p.at < plane.lastSeen) mine.delete(p);
  return [...mine];
}

/**
 * The CPU `plane` last reported free, less what this isolate has sent there since that report: every input of a
 * burst would otherwise go to the plane that was roomiest before it.
 */
function cpuFree(plane: PlaneInfo): number {
  return plane.cpu.free - sinceReport(plane).reduce((sum, p) => sum + p.cpu, 0);
}

/**
 * The GPUs of `type` `plane` last reported free, less those this isolate has sent inputs for since: a burst of GPU
 * inputs went all to the plane with the most free before it, and queued there while another plane's GPUs sat free.
 */
function gpuFree(plane: PlaneInfo, type: GpuRequest["type"]): number {
  return (plane.gpus[type]?.free ?? 0) - sinceReport(plane).reduce((sum, p) => sum + (p.gpu?.type === type ? p.gpu.count : 0), 0);
}
const inFlightKey = (planeId: string, fn: { app: string; function: string }) => JSON.stringify([planeId, fn.app, fn.function]);

/**
 * What an input of `fn` sent to `plane` takes there beyond what its report counts: nothing when an idle container
 * of `fn` takes it (its CPU and GPUs are counted already), else its share of a container's `cpu` and of the first of
 * `wants` the plane has free (else the first it has at all: the input queues for it). `perContainer`: the inputs a
 * container of `fn` takes before another starts (`concurrency.targetInputs`), each input a share of one: 200 inputs of
 * a function whose containers take 100 each start two containers, not 200.
 */
export function resourcesToPlace(
  plane: PlaneInfo,
  fn: { app: string; function: string } | undefined,
  cpu: number,
  wants: readonly GpuRequest[] = [],
  perContainer = 1,
): Placing {
  if (fn && idleLeft(plane, fn) > 0) return { cpu: 0 };
  const want = wants.find((w) => gpuFree(plane, w.type) >= w.count) ?? wants.find((w) => (plane.gpus[w.type]?.total ?? 0) >= w.count);
  const share = cpu / perContainer;
  return want ? { cpu: share, gpu: { type: want.type, count: want.count / perContainer } } : { cpu: share };
}

/** The idle containers of `fn` that `plane` last reported, less the inputs of it this isolate has in flight there. */
function idleLeft(plane: PlaneInfo, fn: { app: string; function: string }): number {
  const idle = plane.warm?.find((w) => w.app === fn.app && w.function === fn.function)?.idle ?? 0;
  return idle - (inFlight.get(inFlightKey(plane.planeId, fn)) ?? 0);
}

/**
 * Counts an input of `fn` in flight on a plane until the returned function is called (its attempt answered or lost),
 * so the plane's idle containers draw only as many inputs as they can take at once, not every input until its
 * next heartbeat; and the CPU and GPUs a container started for it takes, until a heartbeat counts them (`cpuFree`,
 * `gpuFree`). An input that an idle container of `fn` there takes starts none: `{ cpu: 0 }` (`resourcesToPlace`).
 *
 * @example const done = inputInFlight(plane.planeId, fn, { cpu: 1 }); try { await runOnPlane(plane, run); } finally { done(); }
 */
export function inputInFlight(planeId: string, fn: { app: string; function: string }, placing: Placing = { cpu: 0 }): () => void {
  const key = inFlightKey(planeId, fn);
  inFlight.set(key, (inFlight.get(key) ?? 0) + 1);
  const placement = { ...placing, at: Date.now() };
  const onPlane = placed.get(planeId) ?? placed.set(planeId, new Set()).get(planeId)!;
  if (placing.cpu > 0 || placing.gpu) onPlane.add(placement);
  let done = false;
  return () => {
    if (done) return;
    done = true;
    onPlane.delete(placement);
    const left = (inFlight.get(key) ?? 1) - 1;
    if (left > 0) inFlight.set(key, left);
    else inFlight.delete(key);
  };
}

/** One of the planes with the most `free`, at random among equals. */
function mostOf(planes: PlaneInfo[], free: (plane: PlaneInfo) => number): PlaneInfo | undefined {
  let best: PlaneInfo[] = [];
  let most = -Infinity;
  for (const plane of planes) {
    const n = free(plane);
    if (n > most) [most, best] = [n, [plane]];
    else if (n === most) best.push(plane);
  }
  return best[Math.floor(Math.random() * best.length)];
}

/** Asks the `tandem run` that started this gateway for its plane; resolves with the plane's report once it takes calls. */
async function startLocalPlane(local: Fetcher, fn: RegisteredFunction): Promise<PlaneHeartbeat | undefined> {
  const res = await local.fetch(`http://local-plane${LOCAL_PLANE_ROUTES.start}`, { method: "POST" });
  if (res.ok) {
    // Without a report (an empty answer), the registry is asked again, as for any plane.
    const parsed = PlaneHeartbeatSchema.safeParse(((await res.json().catch(() => undefined)) as { plane?: unknown } | undefined)?.plane);
    return parsed.success ? parsed.data : undefined;
  }
  const body = (await res.json().catch(() => undefined)) as { error?: WireError } | undefined;
  if (body?.error) throw fromWireError(body.error);
  throw new PlaneUnavailableError(`the local plane did not start (HTTP ${res.status})`, { app: fn.app, function: fn.name });
}

/**
 * Asks the `tandem run` that started this gateway for its apps' plane bundles, which it bundles when first asked for
 * (an edge function's run starts its gateway without them), and adds them to the registry. Resolves with `fn`'s app's.
 */
export async function localPlaneBundle(local: Fetcher, fn: Pick<RegisteredFunction, "app" | "name">): Promise<PlaneBundleRef | undefined> {
  const res = await local.fetch(`http://local-plane${LOCAL_PLANE_ROUTES.bundles}`, { method: "POST" });
  const body = (await res.json().catch(() => undefined)) as { error?: WireError } | undefined;
  if (!res.ok) {
    if (body?.error) throw fromWireError(body.error);
    throw new PlaneUnavailableError(`the local plane's bundles were not made (HTTP ${res.status})`, { app: fn.app, function: fn.name });
  }
  const parsed = LocalPlaneBundlesSchema.safeParse(body);
  if (!parsed.success) throw new PlaneUnavailableError(`the local plane's bundles came in an unknown shape`, { app: fn.app, function: fn.name });
  registry().addPlaneBundles(parsed.data.bundles);
  return registry().planeBundle(fn.app);
}

/** The planes as an input that may run in `want.regions` sees them: none connected, none there, or those there. */
function placesSeen(want: PlaneWants, planes: PlaneInfo[]): string {
  const healthy = planes.filter((p) => p.healthy);
  const inRegions = healthy.filter((p) => inAllowedRegion(p.region, want.regions));
  if (!healthy.length) return "no healthy plane is connected";
  if (want.regions.length && !inRegions.length) return `no healthy plane is in ${describeRegions(want.regions)} (planes elsewhere: ${describePlanes(healthy)})`;
  return `planes: ${describePlanes(inRegions)}`;
}

const describePlanes = (list: PlaneInfo[]) => list.map((p) => `${p.planeId} (${p.region}; ${Object.keys(p.gpus).join(", ") || "no GPUs"})`).join("; ");

function noCapacity(fn: RegisteredFunction, want: PlaneWants, planes: PlaneInfo[]): NoCapacityError {
  const { wants, regions } = want;
  const what = wants.length ? wants.map((w) => (w.count > 1 ? `${w.type}:${w.count}` : w.type)).join(" or ") : "CPU";
  const seen = placesSeen(want, planes);
  // A plane there that drains (stopping: SIGTERM) still reports: say so, or the region would read as empty.
  const now = Date.now();
  const draining = planes.filter((p) => p.draining && now - p.lastSeen < PLANE_DEFAULTS.staleMs && inAllowedRegion(p.region, regions));
  const drains = draining.length ? `; draining, so sent no new input: ${describePlanes(draining)}` : "";
  // As is one that never became ready in time: the call waited for it, and the reason is what to look at.
  const notReady = planes.filter((p) => p.notReady !== undefined && now - p.lastSeen < PLANE_DEFAULTS.staleMs && inAllowedRegion(p.region, regions));
  const waited = notReady.length ? `; not taking calls yet: ${notReady.map((p) => `${p.planeId} (${p.notReady})`).join("; ")}` : "";
  // And one there the gateway still knows that stopped or went silent (killed, its machine lost): where the calls went.
  const gone = planes.filter((p) => inAllowedRegion(p.region, regions) && ["stopped", "stale"].includes(planeState(p, p.lastSeen, now)));
  const lost = gone.length
    ? `; gone: ${gone.map((p) => `${p.planeId} (${p.region}; ${p.stopped ? "stopped" : `not heard from for ${Math.round((now - p.lastSeen) / 1000)} s`})`).join("; ")}`
    : "";
  const where = regions.length ? ` in ${describeRegions(regions)}` : "";
  return new NoCapacityError(`no capacity for ${what}${where} within ${fn.spec.timeoutSeconds} s for ${fn.app}.${fn.name}; ${seen}${drains}${waited}${lost}`, {
    app: fn.app,
    function: fn.name,
    ...(regions.length ? { regions: [...regions] } : {}),
  });
}
