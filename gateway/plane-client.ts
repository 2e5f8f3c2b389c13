/**
 * The gateway as a client of its planes. Every request to a plane goes
 * through `signedFetch`, signed with the plane secret for that plane (bound to
 * its id, method, route and body; see `sdk/signing.ts`), so no other plane
 * accepts it; the operations on the whole fleet (stop an app, collect usage)
 * and on the plane that runs a call (cancel it) are built on it.
 */
import {
  PLANE_ROUTES,
  paths,
  planeState,
  type PlaneCancelRequest,
  type PlaneInfo,
  type PlaneNotCounted,
  type PlaneStopRequest,
  type PlaneUsageAnswer,
  type RolloverAnswer,
  type StopAnswer,
  type UsageAnswer,
  type UsageQuery,
} from "../sdk/protocol.js";
import { signRequest } from "../sdk/signing.js";
import { knownPlanes, planeRegistry } from "./plane-choice.js";
import { registry } from "./registry.js";
import type { RunContext } from "./run-context.js";

/** One request to a plane: its route (a `PLANE_ROUTES` path, with any query), a JSON body for a POST, how long to wait for the answer. */
export interface PlaneRequest {
  method: "GET" | "POST";
  route: string;
  body?: string;
  /** Gives up (a `TimeoutError`) after this long; counted from when the request is sent. */
  timeoutMs?: number;
  /**
   * Called once the request is handed to `fetch`: work meant to overlap the plane's (a ledger write nothing waits
   * for) starts after the request, not before it on the isolate's thread.
   */
  onSent?: () => void;
}

/** What the fleet-wide operations need of where they run: the bindings, and the plane secret in the configuration. */
export type PlaneAccess = Pick<RunContext, "env" | "config">;

/**
 * Signs `request` with the plane secret for `plane` (its id is the audience:
 * another plane refuses it) and sends it to the plane's URL.
 *
 * @example const res = await signedFetch(secret, plane, { method: "POST", route: PLANE_ROUTES.run, body: JSON.stringify(run) });
 */
export async function signedFetch(secret: string, plane: Pick<PlaneInfo, "planeId" | "url">, request: PlaneRequest): Promise<Response> {
  const signature = await signRequest(secret, { audience: plane.planeId, method: request.method, path: request.route, body: request.body });
  const response = fetch(originOf(plane.url) + request.route, {
    method: request.method,
    ...(request.body === undefined ? { headers: signature } : { body: request.body, headers: { "content-type": "application/json", ...signature } }),
    ...(request.timeoutMs === undefined ? {} : { signal: AbortSignal.timeout(request.timeoutMs) }),
  });
  request.onSent?.();
  return response;
}

const origins = new Map<string, string>();

/**
 * A plane URL's origin, which a route (an absolute path) follows: parsed once per URL, not once per request (a `URL`
 * made per request took 0.05 ms of each plane call in a CPU profile of the gateway's isolate).
 */
function originOf(url: string): string {
  let origin = origins.get(url);
  if (origin === undefined) origins.set(url, (origin = new URL(url).origin));
  return origin;
}

/**
 * Stops every plane container of `app` on every healthy plane, and keeps its
 * pools cold until the app is served or deployed again. Returns how many
 * containers stopped.
 *
 * @example const stopped = await stopAppOnPlanes(rc, "shop");
 */
export async function stopAppOnPlanes(rc: PlaneAccess, app: string): Promise<number> {
  const { planeSecret } = rc.config;
  const bundle = registry().planeBundle(app);
  if (!planeSecret || !bundle) return 0;
  await planeRegistry(rc.env).stopApp(app, bundle.hash);
  const body = JSON.stringify({ app } satisfies PlaneStopRequest);
  let stopped = 0;
  for (const plane of (await knownPlanes(rc.env, true)).filter((p) => p.healthy)) {
    try {
      const res = await signedFetch(planeSecret, plane, { method: "POST", route: PLANE_ROUTES.stop, body });
      stopped += ((await res.json()) as Partial<StopAnswer>).stopped ?? 0;
    } catch (err) {
      console.warn(`plane ${plane.planeId} could not be told to stop ${app}: ${(err as Error).message}`);
    }
  }
  return stopped;
}

/**
 * Rolls over every plane container of `app` on every healthy plane (`tandem app rollover`): each takes no new input
 * and stops once the inputs it runs end; new containers, started with the secrets' current values, replace them.
 * Unlike a stop, the app's warm pools stay warm. Returns how many containers roll over.
 *
 * @example const rolledOver = await rolloverAppOnPlanes(rc, "shop");
 */
export async function rolloverAppOnPlanes(rc: PlaneAccess, app: string): Promise<number> {
  const { planeSecret } = rc.config;
  if (!planeSecret || !registry().planeBundle(app)) return 0;
  const body = JSON.stringify({ app } satisfies PlaneStopRequest);
  let rolledOver = 0;
  for (const plane of (await knownPlanes(rc.env, true)).filter((p) => p.healthy)) {
    try {
      const res = await signedFetch(planeSecret, plane, { method: "POST", route: PLANE_ROUTES.rollover, body });
      rolledOver += ((await res.json()) as Partial<RolloverAnswer>).rolledOver ?? 0;
    } catch (err) {
      console.warn(`plane ${plane.planeId} could not be told to roll over ${app}: ${(err as Error).message}`);
    }
  }
  return rolledOver;
}

/**
 * Container time and cost from every plane that still reports (draining ones too), each row with its plane; and the
 * planes the gateway knows that were not counted (stopped, stale, or not answering), with why.
 *
 * @example const { rows, notCounted } = await usageFromPlanes(rc, { app: "shop", since: Date.now() - 86_400_000 });
 */
export async function usageFromPlanes(rc: PlaneAccess, query: UsageQuery): Promise<Pick<UsageAnswer, "rows" | "notCounted">> {
  const { planeSecret } = rc.config;
  if (!planeSecret) return { rows: [], notCounted: [] };
  const route = paths.planeUsage(query);
  const rows: UsageAnswer["rows"] = [];
  const notCounted: PlaneNotCounted[] = [];
  const now = Date.now();
  // Every plane that still reports, a draining one's included: its ledger holds what ran there.
  for (const plane of await knownPlanes(rc.env, true)) {
    const state = planeState(plane, plane.lastSeen, now);
    if (state === "stopped" || state === "stale") {
      const why = state === "stopped" ? "stopped" : `stale: not heard from since ${new Date(plane.lastSeen).toISOString().slice(0, 19)}Z`;
      notCounted.push({ planeId: plane.planeId, region: plane.region, why });
      continue;
    }
    try {
      const res = await signedFetch(planeSecret, plane, { method: "GET", route });
      for (const row of ((await res.json()) as Partial<PlaneUsageAnswer>).rows ?? [])
        rows.push({
          ...row,
          seconds: roundedSeconds(row.seconds),
          costUsd: roundedUsd(row.costUsd),
          ...(row.preparedSeconds === undefined ? {} : { preparedSeconds: roundedSeconds(row.preparedSeconds) }),
          plane: plane.planeId,
        });
    } catch (err) {
      console.warn(`plane ${plane.planeId} did not report its usage: ${(err as Error).message}`);
      notCounted.push({ planeId: plane.planeId, region: plane.region, why: `did not answer: ${(err as Error).message}` });
    }
  }
  return { rows, notCounted };
}

/** Seconds to the millisecond, as a sum of floats leaves them (`33.983000000000004` is `33.983`). */
export function roundedSeconds(seconds: number): number {
  return Math.round(seconds * 1e3) / 1e3;
}

/** Dollars to a billionth, as a sum of floats leaves them: far below a cent, and no `0.01088169643000001`. */
export function roundedUsd(usd: number): number {
  return Math.round(usd * 1e9) / 1e9;
}

/**
 * Tells a plane to stop calls that run or wait there: their inputs, or with
 * `terminateContainer` their whole containers. One request names them all, so
 * the plane drops those queued before it stops those running. A plane that
 * cannot be reached is logged, not thrown: the calls are cancelled in the
 * ledger either way.
 *
 * @example await cancelOnPlane(rc, cancelled.plane, [callId], false);
 */
export async function cancelOnPlane(rc: PlaneAccess, planeId: string, callIds: string[], terminateContainer: boolean): Promise<void> {
  const { planeSecret } = rc.config;
  const plane = (await knownPlanes(rc.env, true)).find((p) => p.planeId === planeId);
  if (!planeSecret || !plane || callIds.length === 0) return;
  const body = JSON.stringify({ callIds, terminateContainer } satisfies PlaneCancelRequest);
  const named = callIds.length === 1 ? callIds[0] : `${callIds.length} calls`;
  await signedFetch(planeSecret, plane, { method: "POST", route: PLANE_ROUTES.cancel, body }).catch((err: Error) =>
    console.warn(`plane ${planeId} could not be told to cancel ${named}: ${err.message}`),
  );
}
