/**
 * Sends a plane-tier call to a plane that fits: one that has the GPU type (in
 * the function's fallback order) and, preferably, capacity free now; healthy
 * (a recent heartbeat). The request is signed. A plane that cannot be reached
 * or dies mid-call is skipped and the next one that fits is tried; with none
 * that fits, the call waits until its timeout and then fails with
 * `no_capacity`.
 */
import { ndjsonLines } from "../sdk/stream-lines.js";
import { FunctionTimeoutError, InvalidRequestError, NoCapacityError, PlaneUnavailableError, fromWireError, type WireError } from "../sdk/errors.js";
import type { GpuRequest } from "../sdk/gpu.js";
import { PLANE_ROUTES, PLANE_STALE_MS, encodeValue, type PlaneBundleRef, type PlaneFunctionSpec, type PlaneInfo, type PlaneRunRequest, type PlaneRunResponse, type StreamLine, type UsageRow } from "../sdk/protocol.js";
import { signRequest } from "../sdk/signing.js";
import { gatewayConfig } from "./config.js";
import type { Env } from "./env.js";
import { EncodedResult } from "./encoded-result.js";
import type { RegisteredFunction } from "./registry.js";

/**
 * Extra time the gateway gives a plane past the longest an attempt can take
 * there (waiting for a container, up to the timeout, then running, up to the
 * timeout), so the plane's own error arrives first.
 */
const TIMEOUT_MARGIN_MS = 10_000;
const PLANE_LIST_TTL_MS = 1_000;
const WAIT_FOR_CAPACITY_MS = 500;

let planeList: { at: number; planes: Promise<PlaneInfo[]> } | undefined;

/** The planes the registry knows, cached for a second per isolate. */
export function knownPlanes(env: Env, fresh = false): Promise<PlaneInfo[]> {
  if (fresh || !planeList || Date.now() - planeList.at > PLANE_LIST_TTL_MS) {
    planeList = { at: Date.now(), planes: planeRegistry(env).list() };
  }
  return planeList.planes;
}

export function planeRegistry(env: Env) {
  return env.PLANES.get(env.PLANES.idFromName("global"));
}

/** The app bundles planes run, by app name; set when the Worker loads. */
const planeBundles = new Map<string, PlaneBundleRef>();
export function setPlaneBundles(bundles: Record<string, PlaneBundleRef>): void {
  for (const [app, ref] of Object.entries(bundles)) planeBundles.set(app, ref);
}

export function planeBundle(app: string): PlaneBundleRef | undefined {
  return planeBundles.get(app);
}

/**
 * Stops every plane container of `app` on every healthy plane, and keeps its
 * pools cold until the app is served or deployed again. Returns how many
 * containers stopped.
 */
export async function stopAppOnPlanes(env: Env, app: string): Promise<number> {
  const { planeSecret } = gatewayConfig(env);
  const bundle = planeBundles.get(app);
  if (!planeSecret || !bundle) return 0;
  await planeRegistry(env).stopApp(app, bundle.hash);
  const body = JSON.stringify({ app });
  let stopped = 0;
  for (const plane of (await knownPlanes(env, true)).filter((p) => p.healthy)) {
    try {
      const res = await fetch(new URL(PLANE_ROUTES.stop, plane.url), {
        method: "POST",
        body,
        headers: { "content-type": "application/json", ...(await signRequest(planeSecret, "POST", PLANE_ROUTES.stop, body)) },
      });
      stopped += ((await res.json()) as { stopped?: number }).stopped ?? 0;
    } catch (err) {
      console.warn(`plane ${plane.planeId} could not be told to stop ${app}: ${(err as Error).message}`);
    }
  }
  return stopped;
}

/** What sending one input to a plane needs: the secret, the signed body, what GPUs it wants, its deadline. */
interface PlaneSend {
  secret: string;
  body: string;
  wants: GpuRequest[];
  deadline: number;
}

function planeSend(env: Env, fn: RegisteredFunction, args: unknown[], callId: string, attempt: number): PlaneSend {
  const { planeSecret } = gatewayConfig(env);
  if (!planeSecret) throw new PlaneUnavailableError(`${fn.app}.${fn.name} runs on the GPU plane, and this gateway has no TANDEM_PLANE_SECRET, so no plane can connect`);
  const bundle = planeBundles.get(fn.app);
  if (!bundle) throw new PlaneUnavailableError(`app "${fn.app}" was not bundled for the plane; serve or deploy it with the tandem CLI`);
  const encoded = encodeValue(args);
  const request: PlaneRunRequest = {
    callId,
    app: fn.app,
    function: fn.name,
    bundleHash: bundle.hash,
    ...(bundle.nodeModules ? { nodeModules: bundle.nodeModules } : {}),
    ...clsParamsOf(fn, args),
    attempt,
    timeoutSeconds: fn.spec.timeoutSeconds,
    args: encoded.json as unknown[],
    ...(encoded.meta === undefined ? {} : { meta: encoded.meta }),
    spec: planeSpec(fn),
  };
  return { secret: planeSecret, body: JSON.stringify(request), wants: fn.spec.gpu ?? [], deadline: Date.now() + fn.spec.timeoutSeconds * 1000 };
}

/**
 * The next plane to try, waiting (until the deadline) while none fits. Throws
 * `plane_unavailable` at once when the only planes left cannot start
 * containers, and `no_capacity` at the deadline.
 */
async function choosePlane(env: Env, fn: RegisteredFunction, send: PlaneSend, skipped: Set<string>): Promise<PlaneInfo> {
  for (;;) {
    const planes = await knownPlanes(env, skipped.size > 0);
    const plane = pickPlane(planes, send.wants, skipped);
    if (plane) return plane;
    // Planes that report but cannot run containers (no Docker engine, say) will not get better by waiting: say why now.
    const broken = planes.filter((p) => p.unavailable !== undefined && Date.now() - p.lastSeen < PLANE_STALE_MS);
    if (broken.length && !planes.some((p) => p.healthy)) {
      throw new PlaneUnavailableError(broken.map((p) => `plane ${p.planeId} cannot start containers: ${p.unavailable}`).join("; "), { app: fn.app, function: fn.name });
    }
    if (Date.now() >= send.deadline) throw noCapacity(fn, send.wants, planes);
    await new Promise((r) => setTimeout(r, WAIT_FOR_CAPACITY_MS));
    skipped.clear(); // planes may have come back, or new ones registered
  }
}

/** A plane's answer worth trying elsewhere (it is full, or cannot run this app) while time is left. */
function tryElsewhere(error: WireError | undefined, send: PlaneSend): boolean {
  return (error?.code === "no_capacity" || error?.code === "plane_unavailable") && Date.now() < send.deadline;
}

export async function forwardToPlane(
  env: Env,
  fn: RegisteredFunction,
  args: unknown[],
  callId: string,
  attempt: number,
  onPlane?: (planeId: string) => Promise<void>,
): Promise<unknown> {
  const send = planeSend(env, fn, args, callId, attempt);
  const skipped = new Set<string>();
  for (;;) {
    const plane = await choosePlane(env, fn, send, skipped);
    await onPlane?.(plane.planeId);
    let response: Response;
    try {
      response = await fetch(new URL(PLANE_ROUTES.run, plane.url), {
        method: "POST",
        body: send.body,
        headers: { "content-type": "application/json", ...(await signRequest(send.secret, "POST", PLANE_ROUTES.run, send.body)) },
        signal: AbortSignal.timeout(2 * fn.spec.timeoutSeconds * 1000 + TIMEOUT_MARGIN_MS),
      });
    } catch (err) {
      if ((err as Error).name === "TimeoutError") {
        throw new FunctionTimeoutError(`${fn.app}.${fn.name} timed out after ${fn.spec.timeoutSeconds} s on plane ${plane.planeId} (attempt ${attempt})`, { callId, plane: plane.planeId });
      }
      console.warn(`plane ${plane.planeId} (${plane.url}) could not be reached for ${callId}: ${(err as Error).message}; trying another`);
      skipped.add(plane.planeId);
      continue;
    }
    const answer = (await response.json().catch(() => null)) as PlaneRunResponse | null;
    if (!answer) {
      console.warn(`plane ${plane.planeId} answered HTTP ${response.status} without a result for ${callId}; trying another`);
      skipped.add(plane.planeId);
      continue;
    }
    if (tryElsewhere(answer.error, send)) {
      skipped.add(plane.planeId); // another plane, or this one again after a pause
      continue;
    }
    if (answer.status === "succeeded") return new EncodedResult(answer.meta === undefined ? { json: answer.result } : { json: answer.result, meta: answer.meta });
    if (answer.error) throw fromWireError({ ...answer.error, details: { ...answer.error.details, callId, plane: plane.planeId } });
    throw new PlaneUnavailableError(`plane ${plane.planeId} answered HTTP ${response.status} without a result`);
  }
}

/** The best plane for `wants` (a fallback list; empty for CPU functions), or none. */
export function pickPlane(planes: PlaneInfo[], wants: GpuRequest[], skipped: ReadonlySet<string>): PlaneInfo | undefined {
  const usable = planes.filter((p) => p.healthy && !skipped.has(p.planeId));
  if (wants.length === 0) {
    return usable.sort((a, b) => b.cpu.free - a.cpu.free)[0];
  }
  for (const want of wants) {
    const free = usable.filter((p) => (p.gpus[want.type]?.free ?? 0) >= want.count).sort((a, b) => b.gpus[want.type]!.free - a.gpus[want.type]!.free);
    if (free[0]) return free[0];
  }
  // None free now: queue on a plane that has enough of the first type it has at all.
  for (const want of wants) {
    const fits = usable.filter((p) => (p.gpus[want.type]?.total ?? 0) >= want.count);
    if (fits[0]) return fits[0];
  }
  return undefined;
}

function noCapacity(fn: RegisteredFunction, wants: GpuRequest[], planes: PlaneInfo[]): NoCapacityError {
  const what = wants.length ? wants.map((w) => (w.count > 1 ? `${w.type}:${w.count}` : w.type)).join(" or ") : "CPU";
  const healthy = planes.filter((p) => p.healthy);
  const seen = healthy.length ? `planes: ${healthy.map((p) => `${p.planeId} (${Object.keys(p.gpus).join(", ") || "no GPUs"})`).join("; ")}` : "no healthy plane is connected";
  return new NoCapacityError(`no capacity for ${what} within ${fn.spec.timeoutSeconds} s for ${fn.app}.${fn.name}; ${seen}`, { app: fn.app, function: fn.name });
}

/**
 * Streams a plane generator function: the same choice of plane as a call
 * (skipping planes that cannot be reached, are full or cannot run it, until
 * the deadline), then its chunks in wire form as the plane sends them. Once
 * chunks flow, a lost plane ends the stream with an error; it is not moved.
 */
export async function* forwardStreamToPlane(env: Env, fn: RegisteredFunction, args: unknown[], callId: string): AsyncGenerator<EncodedResult, void, undefined> {
  const send = planeSend(env, fn, args, callId, 1);
  const skipped = new Set<string>();
  for (;;) {
    const plane = await choosePlane(env, fn, send, skipped);
    let response: Response;
    try {
      response = await fetch(new URL(PLANE_ROUTES.stream, plane.url), {
        method: "POST",
        body: send.body,
        headers: { "content-type": "application/json", ...(await signRequest(send.secret, "POST", PLANE_ROUTES.stream, send.body)) },
      });
    } catch (err) {
      console.warn(`plane ${plane.planeId} (${plane.url}) could not be reached for ${callId}: ${(err as Error).message}; trying another`);
      skipped.add(plane.planeId);
      continue;
    }
    if (!response.ok || !response.body) {
      const error = ((await response.json().catch(() => null)) as { error?: WireError } | null)?.error ?? { code: "internal" as const, message: `plane ${plane.planeId} answered HTTP ${response.status}` };
      if (tryElsewhere(error, send)) {
        skipped.add(plane.planeId);
        continue;
      }
      throw fromWireError({ ...error, details: { ...error.details, callId, plane: plane.planeId } });
    }
    for await (const line of ndjsonLines(response.body)) {
      const l = line as StreamLine;
      if ("chunk" in l) yield new EncodedResult(l.meta === undefined ? { json: l.chunk } : { json: l.chunk, meta: l.meta });
      else if ("error" in l) throw fromWireError({ ...l.error, details: { ...l.error.details, callId, plane: plane.planeId } });
      else return;
    }
    throw new PlaneUnavailableError(`plane ${plane.planeId} ended the stream of ${callId} without its last line`, { callId, plane: plane.planeId });
  }
}

/** A function's spec as a plane reads it. */
export function planeSpec(fn: RegisteredFunction): PlaneFunctionSpec {
  const images = planeBundles.get(fn.app)?.images;
  const image = images?.[fn.name] ?? (fn.clsMethod ? images?.[fn.name.split(".")[0]!] : undefined) ?? null;
  return { gpu: fn.spec.gpu ?? null, cpu: fn.spec.cpu ?? null, memory: fn.spec.memory ?? null, env: fn.spec.env, spendCapUsd: fn.spendCap ?? null, image, autoscaler: fn.spec.autoscaler };
}

/** Container time and cost from every healthy plane, each row with its plane. */
export async function usageFromPlanes(env: Env, query: { app?: string; since?: number }): Promise<(UsageRow & { plane: string })[]> {
  const { planeSecret } = gatewayConfig(env);
  if (!planeSecret) return [];
  const q = new URLSearchParams();
  if (query.app) q.set("app", query.app);
  if (query.since !== undefined) q.set("since", String(query.since));
  const route = `${PLANE_ROUTES.usage}${q.size ? `?${q}` : ""}`;
  const rows: (UsageRow & { plane: string })[] = [];
  for (const plane of (await knownPlanes(env, true)).filter((p) => p.healthy)) {
    try {
      const res = await fetch(new URL(route, plane.url), { headers: await signRequest(planeSecret, "GET", route) });
      for (const row of ((await res.json()) as { rows?: UsageRow[] }).rows ?? []) rows.push({ ...row, plane: plane.planeId });
    } catch (err) {
      console.warn(`plane ${plane.planeId} did not report its usage: ${(err as Error).message}`);
    }
  }
  return rows;
}

/**
 * A class method's parameters (its first argument), which pick its instance
 * (and its pool on the plane): an object of strings, numbers, booleans or
 * nulls, as the SDK checks them. Throws `invalid_request` naming what is wrong.
 */
export function clsParamsOf(fn: RegisteredFunction, args: unknown[]): { clsParams?: Record<string, unknown> } {
  if (!fn.clsMethod) return {};
  const params = args[0];
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw new InvalidRequestError(`${fn.app}.${fn.name} is a class method: its first argument must be the class's parameters object ({} for none)`);
  }
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && !["string", "number", "boolean"].includes(typeof value)) {
      const got = Array.isArray(value) ? "an array" : typeof value === "object" ? "an object" : typeof value;
      throw new InvalidRequestError(`${fn.app}.${fn.name}: class parameter "${key}" must be a string, number, boolean or null (got ${got})`, { parameter: key });
    }
  }
  return { clsParams: params as Record<string, unknown> };
}

/** Tells the plane a call runs on to stop it: its input, or with `terminateContainer` its whole container. */
export async function cancelOnPlane(env: Env, planeId: string, callId: string, terminateContainer: boolean): Promise<void> {
  const { planeSecret } = gatewayConfig(env);
  const plane = (await knownPlanes(env, true)).find((p) => p.planeId === planeId);
  if (!planeSecret || !plane) return;
  const body = JSON.stringify({ callId, terminateContainer });
  await fetch(new URL(PLANE_ROUTES.cancel, plane.url), {
    method: "POST",
    body,
    headers: { "content-type": "application/json", ...(await signRequest(planeSecret, "POST", PLANE_ROUTES.cancel, body)) },
  }).catch((err: Error) => console.warn(`plane ${planeId} could not be told to cancel ${callId}: ${err.message}`));
}
