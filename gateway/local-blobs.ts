/**
 * `PUT /_local/blobs/<key>` (`LOCAL_BLOBS_ROUTE`): how `tandem serve` and `tandem run` put the plane bundles, source
 * maps and image specs they built into the local gateway's R2 bucket, where planes fetch them. Only a gateway started
 * with `LOCAL_BLOBS_KEY` (a random key the CLI makes at each start) has the route, and only that key opens it; a
 * deployed gateway answers 404 (`tandem deploy` uploads with wrangler).
 *
 * The CLI once wrote them through miniflare's binding proxy, whose calls block Node's thread until workerd answers.
 * workerd writes its console to a pipe that same thread reads: under load (a restart resuming a thousand calls, each
 * saying so) the pipe filled while Node waited, workerd blocked on its write before it answered, and both stopped for
 * good. A plain request leaves Node's thread free to read.
 */
import { Hono, type Context } from "hono";
import { DEPLOY_LIMITS } from "../sdk/defaults.js";
import { InvalidRequestError, NotFoundError, UnauthorizedError } from "../sdk/errors.js";
import { sha256Hex } from "../sdk/hex.js";
import { LOCAL_BLOBS_ROUTE } from "../sdk/protocol.js";
import { readBodyBytes } from "./body.js";
import type { RouteEnv } from "./env.js";

/** The keys the CLI writes: `BLOB_KEYS.planeBundle`, `.planeBundleMap` and `.image`, by SHA-256. */
const LOCAL_BLOB_KEY = /^(bundles\/[0-9a-f]{64}\.mjs(\.map)?|images\/[0-9a-f]{64}\.json)$/;

/**
 * Refuses a request to a route of the CLI that started this gateway (`route`) without the key it bound as
 * `LOCAL_BLOBS_KEY`: 401; 404 on a gateway no CLI started (a deployed one), which has no such route.
 * @example requireLocalKey(c, LOCAL_BACKGROUND_ROUTE);
 */
export function requireLocalKey(c: Context<RouteEnv>, route: string): void {
  const expected = c.env.LOCAL_BLOBS_KEY;
  if (!expected) throw new NotFoundError(`${route} is only on a gateway that tandem serve or tandem run started`);
  if (c.req.header("authorization") !== `Bearer ${expected}`) throw new UnauthorizedError(`${route} takes only the key its CLI bound`);
}

/** @example router.route("/", localBlobRoutes()); */
export function localBlobRoutes(): Hono<RouteEnv> {
  const routes = new Hono<RouteEnv>();
  routes.put(`${LOCAL_BLOBS_ROUTE}/*`, async (c) => {
    requireLocalKey(c, LOCAL_BLOBS_ROUTE);
    const key = new URL(c.req.url).pathname.slice(LOCAL_BLOBS_ROUTE.length + 1);
    if (!LOCAL_BLOB_KEY.test(key)) throw new InvalidRequestError(`${JSON.stringify(key)} is not a plane bundle, source map or image spec key`);
    // The files a deployment uploads, and as large: refused past that before more is read.
    const bytes = await readBodyBytes(c.req.raw, DEPLOY_LIMITS.maxFileBytes, "a plane bundle, source map or image spec holds");
    const sha256 = await sha256Hex(bytes);
    // Already there, the same bytes (an edit that left the plane code as it was): not written again. A reload's new
    // workerd shares this store with the one still serving, whose planes may be reading that very object.
    if ((await c.env.BLOBS.head(key))?.checksums.toJSON().sha256 === sha256) return c.body(null, 204);
    await c.env.BLOBS.put(key, bytes, { sha256 });
    return c.body(null, 204);
  });
  return routes;
}
