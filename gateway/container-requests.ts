/**
 * A container's own `/v1` requests, carried by its plane (docs/security.md).
 * Plane containers have no network: the SDK inside one sends ordinary `/v1`
 * requests over a unix socket to its plane, and the plane sends each on to the
 * gateway signed with the plane secret, naming the container's app in
 * `tandem-container-app` (covered by the signature; the plane sets it, the
 * container cannot). The gateway takes such a request only on the route
 * families of `CONTAINER_ROUTE_FAMILIES` (sdk/protocol.ts), and runs it for that app: what the app's own code may do at
 * the edge, no more.
 */
import type { Context } from "hono";
import { VOLUME_LIMITS } from "../sdk/defaults.js";
import { ForbiddenError, UnauthorizedError } from "../sdk/errors.js";
import { GATEWAY_AUDIENCE, HEADERS, NAME_PATTERN, containerMayReach, containerRouteFamilies } from "../sdk/protocol.js";
import { readSignedBodyBytes } from "../sdk/signed-body.js";
import { checkSignatureHeaders, verifyRequest } from "../sdk/signing.js";
import type { Principal } from "./auth.js";
import type { RouteEnv } from "./env.js";
import { planeRegistry } from "./plane-choice.js";

/** True when a request says it carries a container's request (it still has to pass `containerPrincipal`). */
export function isContainerRequest(c: Context<RouteEnv>): boolean {
  return c.req.header(HEADERS.containerApp) !== undefined;
}

/**
 * The principal of a container's request carried by a plane: its signature
 * checked (headers first, then the body, read no further than the largest a
 * container sends), its route in the allow-list. 401 for a bad signature, 403
 * for a route containers may not reach.
 */
export async function containerPrincipal(c: Context<RouteEnv>): Promise<Principal> {
  const app = c.req.header(HEADERS.containerApp) ?? "";
  const url = new URL(c.req.url);
  if (!NAME_PATTERN.test(app)) throw refuse(c, `"${app}" is not an app name`);
  if (!containerMayReach(url.pathname, app)) {
    throw new ForbiddenError(`a container reaches only ${containerRouteFamilies(app).join(", ")} through its plane, not ${url.pathname}`, { app });
  }
  const secret = c.var.config.planeSecret;
  if (!secret) throw refuse(c, "this gateway has no TANDEM_PLANE_SECRET, so it accepts no plane");
  const headers = c.req.raw.headers;
  const checked = checkSignatureHeaders(headers, { audience: GATEWAY_AUDIENCE });
  if (!checked.ok) throw refuse(c, checked.reason);
  // From a copy, so the route reads the request as sent; never past the limit, chunked or not (413).
  const body = await readSignedBodyBytes(c.req.raw.clone(), Math.max(c.var.config.maxBodyBytes, VOLUME_LIMITS.blockBytes));
  const request = { audience: GATEWAY_AUDIENCE, method: c.req.method, path: url.pathname + url.search, body, containerApp: app };
  const result = await verifyRequest(secret, request, headers, planeRegistry(c.env));
  if (!result.ok) throw refuse(c, result.reason);
  return { id: `container:${app}`, name: `a container of app ${app}`, scope: "deploy", apps: [app], containerApp: app };
}

function refuse(c: Context<RouteEnv>, reason: string): UnauthorizedError {
  console.warn(`refused container request ${c.req.method} ${new URL(c.req.url).pathname}: ${reason}`);
  return new UnauthorizedError(`container request refused: ${reason}`);
}
