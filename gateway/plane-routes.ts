/**
 * The gateway's side of the plane protocol: heartbeats (registration
 * included), the plane list, app bundles for planes, the secrets of the
 * warm containers a plane starts and of the images it builds (the answers
 * signed for the plane that asked), and planes' log lines. Plane requests are
 * signed for the gateway; their headers are checked before a byte of the body
 * is read, and the body is read no further than its limit. An unsigned,
 * misdirected, tampered or replayed one gets 401 and is logged; a body over
 * the limit 413, a malformed one 400.
 */
import { Hono, type Context } from "hono";
import { LOG_LIMITS, PLANE_DEFAULTS } from "../sdk/defaults.js";
import { AlreadyExistsError, NotFoundError, UnauthorizedError, unsignedPlaneRequest } from "../sdk/errors.js";
import {
  BLOB_KEYS,
  BUNDLE_HASH_PATTERN,
  GATEWAY_AUDIENCE,
  HEADERS,
  PLANE_IMAGE_SECRETS_ANSWER,
  PLANE_SECRETS_ANSWER,
  PlaneHeartbeatSchema,
  PlaneImageSecretsRequestSchema,
  PlaneSecretsRequestSchema,
  PlaneLogBatchSchema,
  cutLogLine,
  ROUTES,
  type HeartbeatAnswer,
  type ImageBuildSpec,
  type LiveBundleRef,
  type PlaneImageSecretsAnswer,
  type PlaneSecretsAnswer,
  type PlaneInfo,
  type WarmPoolRef,
} from "../sdk/protocol.js";
import { parseSignedBody, readSignedBodyBytes, signedBodyText } from "../sdk/signed-body.js";
import { UNSIGNED, checkSignatureHeaders, signRequest, verifyRequest } from "../sdk/signing.js";
import type { FunctionSpec } from "../sdk/options.js";
import { guard } from "./auth.js";
import type { Env, RouteEnv } from "./env.js";
import { knownPlanes, planeHealthy, planeRegistry, registryView } from "./plane-choice.js";
import { defaultNearRegions, inAllowedRegion, regionRank } from "./plane-regions.js";
import { registry } from "./registry.js";
import { namedValues } from "./secret-env.js";
import { writeLines } from "./log-sink.js";
import type { StopMark } from "./plane-registry.js";

type Api = RouteEnv;

export function planeRoutes(): Hono<Api> {
  const routes = new Hono<Api>();

  routes.post(ROUTES.planeHeartbeat, async (c) => {
    const heartbeat = parseSignedBody(await verified(c), PlaneHeartbeatSchema, "heartbeat");
    const taken = await planeRegistry(c.env).heartbeat(heartbeat);
    if (taken.refused) throw new AlreadyExistsError(taken.refused, { planeId: heartbeat.planeId });
    // A plane's last heartbeat, as it closes: nothing to keep warm there, nor any version to switch to.
    if (heartbeat.stopped) return c.json({ ok: true, warm: [] } satisfies HeartbeatAnswer);
    // The other planes as this isolate saw them within the last second (a cost per heartbeat that does not grow with
    // the fleet), this one as it reports now: so a plane that just joined, or now drains, is placed as it is.
    const now = Date.now();
    const view = await registryView(c.env);
    const self: PlaneInfo = { ...heartbeat, lastSeen: now, healthy: planeHealthy(heartbeat, now, now) };
    const fleet = [...view.planes.filter((p) => p.planeId !== heartbeat.planeId), self];
    const warm = warmPoolsFor(heartbeat.planeId, fleet, view.stopped, defaultNearRegions(c.var.config));
    // A pool whose secrets cannot be read now (one missing) is not kept warm meanwhile; its calls fail naming the
    // secret. The values never travel here: the plane asks for them, over a route signed both ways, for each warm
    // container it starts (POST /v1/planes/secrets).
    const rc = { env: c.env, config: c.var.config };
    const readable = await Promise.all(
      warm.map(async (ref) => {
        const fn = registry().function(ref.app, ref.function);
        if (fn.spec.secrets.length === 0) return ref;
        return registry()
          .processEnvOf(rc, fn)
          .then(
            () => ({ ...ref, withSecrets: true as const }),
            () => undefined,
          );
      }),
    );
    const live = liveBundles(c.env);
    const answer: HeartbeatAnswer = { ok: true, warm: readable.filter((ref) => ref !== undefined), ...(live.length ? { live } : {}) };
    return c.json(answer);
  });

  // The secrets of one warm container a plane starts: only for a pool the gateway assigned to that plane, answered
  // signed for that plane alone (its id is the audience), which checks the signature before it uses a value.
  routes.post(ROUTES.planeSecrets, async (c) => {
    const ask = parseSignedBody(await verified(c), PlaneSecretsRequestSchema, "secrets");
    const { planes, stopped } = await registryView(c.env, true);
    const pool = warmPoolsFor(ask.planeId, planes, stopped, defaultNearRegions(c.var.config)).find(
      (ref) => ref.app === ask.app && ref.function === ask.function && ref.bundleHash === ask.bundleHash,
    );
    if (!pool) throw new NotFoundError(`plane ${ask.planeId} keeps no warm pool of ${ask.app}.${ask.function} with bundle ${ask.bundleHash}`);
    const { env } = await registry().processEnvOf({ env: c.env, config: c.var.config }, registry().function(ask.app, ask.function));
    const body = JSON.stringify({ secrets: env } satisfies PlaneSecretsAnswer);
    const signature = await signRequest(c.var.config.planeSecret!, { audience: ask.planeId, ...PLANE_SECRETS_ANSWER, body });
    console.log(`plane ${ask.planeId} fetched the secrets of a warm container of ${ask.app}.${ask.function}`);
    return c.body(body, 200, { "content-type": "application/json", ...signature });
  });

  // The named secrets an image's build steps declare (Image.secrets), for a plane building it: only for an image of an
  // app this gateway serves, answered signed for that plane alone, as above. The plane keeps them in memory for the
  // build; they go into no layer.
  routes.post(ROUTES.planeImageSecrets, async (c) => {
    const ask = parseSignedBody(await verified(c), PlaneImageSecretsRequestSchema, "image secrets");
    const served = registry().apps.some((app) => Object.values(registry().planeBundle(app.name)?.images ?? {}).includes(ask.imageHash));
    const object = served ? await c.env.BLOBS.get(BLOB_KEYS.image(ask.imageHash)) : null;
    if (!object) throw new NotFoundError(`no app served here builds image ${ask.imageHash}`);
    const spec = (await object.json()) as ImageBuildSpec;
    const declared = spec.steps.flatMap((step) => (step.kind === "secrets" ? step.secrets : []));
    const where = `image ${ask.imageHash.slice(0, 12)}`;
    const named = await namedValues(c.env, [...new Set(declared.map((s) => s.name))], where);
    for (const { name, requiredKeys } of declared) {
      const lacking = requiredKeys.find((key) => !Object.hasOwn(named[name]!, key));
      if (lacking)
        throw new NotFoundError(`${where} requires key ${lacking} of secret "${name}", which has ${Object.keys(named[name]!).join(", ") || "no key"}`);
    }
    const body = JSON.stringify({ named } satisfies PlaneImageSecretsAnswer);
    const signature = await signRequest(c.var.config.planeSecret!, { audience: ask.planeId, ...PLANE_IMAGE_SECRETS_ANSWER, body });
    console.log(`plane ${ask.planeId} fetched the secrets of ${where} (${Object.keys(named).join(", ")}) to build it`);
    return c.body(body, 200, { "content-type": "application/json", ...signature });
  });

  // A plane's log lines: stored per app after the answer, so a plane never waits on a write.
  routes.post(ROUTES.planeLogs, async (c) => {
    const batch = parseSignedBody(await verified(c, LOG_LIMITS.maxPlaneBatchBytes), PlaneLogBatchSchema, "log batch");
    // Already a batch: written as it is, one write per app, without the edge's wait for more.
    c.executionCtx.waitUntil(
      writeLines(
        c.env,
        batch.lines.map((line) => ({ ...line, text: cutLogLine(line.text) })),
      ),
    );
    return c.body(null, 204);
  });

  // The plane list names the planes' URLs and what runs on them: for a plane (signed), or an admin token that reaches
  // the gateway's own environment, whose apps the planes run (`guard`, as every other route's token), never for callers.
  const adminOfServedEnvironment = guard("admin", { servedEnvironment: true });
  routes.get(
    ROUTES.planes,
    (c, next) => (c.req.header(HEADERS.signature) === undefined ? adminOfServedEnvironment(c, next) : next()),
    async (c) => {
      if (c.req.header(HEADERS.signature) !== undefined) await verified(c);
      return c.json({ planes: await knownPlanes(c.env, true) });
    },
  );

  routes.get(ROUTES.planeBundle, async (c) => {
    await verified(c);
    const hash = c.req.param("hash") ?? "";
    if (!BUNDLE_HASH_PATTERN.test(hash)) throw new NotFoundError(`"${hash}" is not a bundle hash`);
    const object = await c.env.BLOBS.get(BLOB_KEYS.planeBundle(hash));
    if (!object) throw new NotFoundError(`no plane bundle ${hash}`, { hash });
    return c.body(object.body, 200, { "content-type": "text/javascript" });
  });

  routes.get(ROUTES.planeBundleMap, async (c) => {
    await verified(c);
    const hash = c.req.param("hash") ?? "";
    if (!BUNDLE_HASH_PATTERN.test(hash)) throw new NotFoundError(`"${hash}" is not a bundle hash`);
    // The same bundle may come again with another map (an edit that moved only edge code: bundle.ts leaves that out of
    // plane bundles), so planes ask again with the map they have, and are told when it is still the one.
    const object = await c.env.BLOBS.get(BLOB_KEYS.planeBundleMap(hash), { onlyIf: c.req.raw.headers });
    if (!object) throw new NotFoundError(`no source map for plane bundle ${hash}`, { hash });
    if (!("body" in object)) return c.body(null, 304, { etag: object.httpEtag });
    return c.body(object.body, 200, { "content-type": "application/json", etag: object.httpEtag });
  });

  routes.get(ROUTES.planeImage, async (c) => {
    await verified(c);
    const hash = c.req.param("hash") ?? "";
    if (!BUNDLE_HASH_PATTERN.test(hash)) throw new NotFoundError(`"${hash}" is not an image hash`);
    const object = await c.env.BLOBS.get(BLOB_KEYS.image(hash));
    if (!object) throw new NotFoundError(`no image spec ${hash}`, { hash });
    return c.body(object.body, 200, { "content-type": "application/json" });
  });

  return routes;
}

/**
 * Each app's live plane bundle as this Worker version serves it, with when the version was made: told to every plane
 * at each heartbeat, so that a new version retires the old one's containers on planes its calls never reach (a
 * `--strategy recreate` call in flight there included). A list as long as the apps, the same for every plane. None
 * without the version metadata binding: with no time to order them by, a plane could be told an older version last.
 */
export function liveBundles(env: Env): LiveBundleRef[] {
  const since = Date.parse(env.CF_VERSION_METADATA?.timestamp ?? "");
  if (!Number.isFinite(since)) return [];
  return registry().apps.flatMap((app) => {
    const bundle = registry().planeBundle(app.name);
    return bundle ? [{ app: app.name, bundleHash: bundle.hash, ...(bundle.strategy ? { strategy: bundle.strategy } : {}), since }] : [];
  });
}

/**
 * The warm pools (functions with `minContainers`) a plane keeps: each pool
 * goes to one healthy plane that could hold it, in the function's allowed
 * regions, the nearest region first (`near`: `TANDEM_REGION_PREFERENCE`'s `*`),
 * then the first by id, so that the minimum is kept once, not once per plane.
 */
export function warmPoolsFor(planeId: string, planes: PlaneInfo[], stopped: Record<string, StopMark>, near: readonly string[] = []): WarmPoolRef[] {
  const healthy = planes.filter((p) => p.healthy).sort((a, b) => regionRank(a.region, near) - regionRank(b.region, near) || a.planeId.localeCompare(b.planeId));
  const homeOf = (spec: FunctionSpec) => {
    const wants = spec.gpu ?? [];
    return healthy.find((p) => inAllowedRegion(p.region, spec.regions) && (wants.length === 0 || wants.some((w) => (p.gpus[w.type]?.total ?? 0) >= w.count)));
  };
  const pools: WarmPoolRef[] = [];
  for (const app of registry().apps) {
    const bundle = registry().planeBundle(app.name);
    // Stopped: until the app is served or deployed again (a build after the stop), even with the same code.
    const mark = stopped[app.name];
    if (!bundle || (mark && mark.hash === bundle.hash && mark.at >= (bundle.builtAt ?? 0))) continue;
    for (const fn of app.callables.filter((c) => c.kind !== "method")) {
      if (fn.spec.tier !== "plane" || fn.spec.autoscaler.minContainers === 0) continue;
      if (homeOf(fn.spec)?.planeId !== planeId) continue;
      const registered = registry().function(app.name, fn.name);
      pools.push({
        app: app.name,
        function: fn.name,
        bundleHash: bundle.hash,
        ...(bundle.nodeModules ? { nodeModules: bundle.nodeModules } : {}),
        ...(bundle.strategy ? { strategy: bundle.strategy } : {}),
        spec: registered.planeSpec,
      });
    }
    // A class keeps warm the instances of its default parameters ({}), serving all its methods.
    for (const cls of app.classes) {
      if (cls.spec.tier !== "plane" || cls.spec.autoscaler.minContainers === 0) continue;
      if (homeOf(cls.spec)?.planeId !== planeId) continue;
      const registered = registry().function(app.name, `${cls.name}.${cls.methods[0]}`);
      pools.push({
        app: app.name,
        function: registered.name,
        bundleHash: bundle.hash,
        ...(bundle.nodeModules ? { nodeModules: bundle.nodeModules } : {}),
        ...(bundle.strategy ? { strategy: bundle.strategy } : {}),
        spec: registered.planeSpec,
        clsParams: {},
      });
    }
  }
  return pools;
}

/**
 * Checks the request's signature headers, then reads the body (no further than
 * `maxBytes`, by default `PLANE_DEFAULTS.maxSignedRequestBytes`) and checks the signature over it and
 * the nonce; throws 401 (and logs it) when they fail, 413 past the limit.
 */
async function verified(c: Context<Api>, maxBytes: number = PLANE_DEFAULTS.maxSignedRequestBytes): Promise<string> {
  const secret = c.var.config.planeSecret;
  const path = new URL(c.req.url).pathname;
  if (!secret) throw refuse(c, "this gateway has no TANDEM_PLANE_SECRET, so it accepts no plane");
  const headers = c.req.raw.headers;
  const checked = checkSignatureHeaders(headers, { audience: GATEWAY_AUDIENCE });
  if (!checked.ok) throw refuse(c, checked.reason);
  const body = await readSignedBodyBytes(c.req.raw, maxBytes);
  const result = await verifyRequest(secret, { audience: GATEWAY_AUDIENCE, method: c.req.method, path, body }, headers, planeRegistry(c.env));
  if (!result.ok) throw refuse(c, result.reason);
  return signedBodyText(body);
}

function refuse(c: Context<Api>, reason: string): UnauthorizedError {
  console.warn(`refused plane request ${c.req.method} ${new URL(c.req.url).pathname}: ${reason}`);
  return reason === UNSIGNED ? unsignedPlaneRequest() : new UnauthorizedError(`plane request refused: ${reason}`);
}
