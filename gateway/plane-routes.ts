/**
 * The gateway's side of the plane protocol: heartbeats (registration
 * included), the plane list, and app bundles for planes. Plane requests are
 * signed; an unsigned, tampered or replayed one gets 401 and is logged.
 */
import { Hono, type Context } from "hono";
import { NotFoundError, UnauthorizedError } from "../sdk/errors.js";
import { BUNDLE_HASH_PATTERN, PlaneHeartbeatSchema, ROUTES } from "../sdk/protocol.js";
import { verifyRequest } from "../sdk/signing.js";
import { parseJsonBody } from "./body.js";
import { gatewayConfig } from "./config.js";
import type { Env } from "./env.js";
import { knownPlanes, planeRegistry } from "./forward-to-plane.js";

type Api = { Bindings: Env };

/** Where a plane bundle lives in blob storage. */
export const bundleKey = (hash: string) => `bundles/${hash}.mjs`;

export function planeRoutes(): Hono<Api> {
  const routes = new Hono<Api>();

  routes.post(ROUTES.planeHeartbeat, async (c) => {
    const body = await verified(c);
    const heartbeat = parseJsonBody(body, PlaneHeartbeatSchema);
    await planeRegistry(c.env).heartbeat(heartbeat);
    return c.json({ ok: true });
  });

  routes.get(ROUTES.planes, async (c) => c.json({ planes: await knownPlanes(c.env, true) }));

  routes.get(ROUTES.planeBundle, async (c) => {
    await verified(c);
    const hash = c.req.param("hash") ?? "";
    if (!BUNDLE_HASH_PATTERN.test(hash)) throw new NotFoundError(`"${hash}" is not a bundle hash`);
    const object = await c.env.BLOBS.get(bundleKey(hash));
    if (!object) throw new NotFoundError(`no plane bundle ${hash}`, { hash });
    return c.body(object.body, 200, { "content-type": "text/javascript" });
  });

  return routes;
}

/** Reads the body and checks the request's signature and nonce; throws 401 (and logs it) when they fail. */
async function verified(c: Context<Api>): Promise<string> {
  const secret = gatewayConfig(c.env).planeSecret;
  const path = new URL(c.req.url).pathname;
  if (!secret) throw refuse(c, "this gateway has no TANDEM_PLANE_SECRET, so it accepts no plane");
  const body = await c.req.text();
  const result = await verifyRequest(secret, c.req.method, path, body, c.req.raw.headers, planeRegistry(c.env));
  if (!result.ok) throw refuse(c, result.reason);
  return body;
}

function refuse(c: Context<Api>, reason: string): UnauthorizedError {
  console.warn(`refused plane request ${c.req.method} ${new URL(c.req.url).pathname}: ${reason}`);
  return new UnauthorizedError(`plane request refused: ${reason}`);
}
