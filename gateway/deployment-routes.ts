/**
 * `/v1/apps/:app/deployments`: an app's deployments in the request's
 * environment (list, one version, record the next), and the files of their
 * artifacts, uploaded by SHA-256 before a record names them and kept in R2
 * for as long as the record is (always), so a rollback can deploy an old
 * version's very `worker.mjs` again. Every route needs a `deploy` token that
 * reaches the app. The deploying itself is wrangler's, run by the CLI: these
 * routes only remember (docs/deploy.md, "Versions and rollback").
 */
import { Hono, type Context } from "hono";
import { DEPLOY_LIMITS } from "../sdk/defaults.js";
import { ForbiddenError, InvalidRequestError, NotFoundError, fromWireError } from "../sdk/errors.js";
import { sha256Hex } from "../sdk/hex.js";
import {
  BLOB_KEYS,
  DeploymentRecordRequestSchema,
  NAME_PATTERN,
  ROUTES,
  SHA256_PATTERN,
  type DeploymentList,
  type DeploymentRecord,
  type DeploymentRecordRequest,
} from "../sdk/protocol.js";
import { describePrincipal, guard, mayReach, principalOf, type Principal } from "./auth.js";
import { passPreflight, readBodyBytes, readJsonBody } from "./body.js";
import type { Env, RouteEnv } from "./env.js";
import { environmentOf, inEnvironment } from "./environments.js";
import { registry } from "./registry.js";
import type { Outcome } from "./store-catalog.js";

/** The deployment store of `app` in the running request's environment. */
export function deploymentStore(env: Env, app: string) {
  return env.DEPLOYMENTS.get(env.DEPLOYMENTS.idFromName(inEnvironment(env, `deployments:${app}`)));
}

export function deploymentRoutes(): Hono<RouteEnv> {
  const routes = new Hono<RouteEnv>();

  routes.get(ROUTES.deployments, guard("deploy"), async (c) => {
    const app = appOf(c);
    const deployments = await deploymentStore(c.env, app).list();
    if (deployments.length === 0 && !registry().apps.some((a) => a.name === app)) throw unknownApp(c, app);
    return c.json({ deployments: deployments.map((d) => asSeenBy(principalOf(c), d)) } satisfies DeploymentList);
  });

  routes.post(ROUTES.deployments, guard("deploy"), async (c) => {
    const app = appOf(c);
    const request = await readJsonBody(c.req.raw, DeploymentRecordRequestSchema, c.var.config.maxBodyBytes);
    checkRecordsWholeWorker(principalOf(c), app, request);
    // A record promises its files to a later rollback: each must be here now.
    for (const file of request.files) {
      const held = await c.env.BLOBS.head(BLOB_KEYS.deploymentFile(file.sha256));
      if (!held)
        throw new InvalidRequestError(`file ${file.path} (${file.sha256}) is not uploaded: PUT it to ${ROUTES.deploymentFile} first`, {
          path: file.path,
          sha256: file.sha256,
        });
      if (held.size !== file.bytes)
        throw new InvalidRequestError(`file ${file.path} is ${held.size} bytes as uploaded, not the ${file.bytes} the record says`, { path: file.path });
    }
    const principal = principalOf(c);
    const record = unwrap(await deploymentStore(c.env, app).record(app, environmentOf(c.env), request, { id: principal.id, name: principal.name }));
    const what = record.rollbackOf === undefined ? `code ${record.codeHash.slice(0, 12)}` : `a rollback to version ${record.rollbackOf}`;
    console.log(`app "${app}" version ${record.version} (${what}) recorded by ${principal.id}`);
    return c.json(record, 201);
  });

  // Only a number names a version, so that `…/deployments/files` is the 405 it is.
  routes.get(ROUTES.deployment.replace(":version", ":version{[0-9]+}"), guard("deploy"), async (c) => {
    const app = appOf(c);
    const version = Number(c.req.param("version"));
    if (!Number.isSafeInteger(version)) throw new InvalidRequestError(`"${c.req.param("version")}" is not a version number (1, 2, …)`);
    return c.json(asSeenBy(principalOf(c), unwrap(await deploymentStore(c.env, app).get(app, environmentOf(c.env), version))));
  });
  routes.get(ROUTES.deployment, guard("deploy"), (c) => {
    throw new InvalidRequestError(`"${c.req.param("version")}" is not a version number (1, 2, …)`);
  });

  routes.put(ROUTES.deploymentFile, guard("deploy", { checksBeforeBody: true }), async (c) => {
    const hash = hashOf(c);
    passPreflight(c.req.raw);
    const bytes = await readBodyBytes(c.req.raw, DEPLOY_LIMITS.maxFileBytes, "a deployment's file holds");
    const actual = await sha256Hex(bytes);
    if (actual !== hash) throw new InvalidRequestError(`the body's SHA-256 is ${actual}, not the ${hash} the path names`, { sha256: hash });
    const key = BLOB_KEYS.deploymentFile(hash);
    const stored = !(await c.env.BLOBS.head(key));
    if (stored) await c.env.BLOBS.put(key, bytes);
    return c.json({ sha256: hash, bytes: bytes.byteLength, stored }, stored ? 201 : 200);
  });

  routes.get(ROUTES.deploymentFile, guard("deploy"), async (c) => {
    const app = appOf(c);
    const hash = hashOf(c);
    // Files are served to those who may deploy the apps they were deployed with, not to anyone who knows a hash: a
    // Worker's file holds every app it serves, so a token limited to some of them is refused it.
    const holders = await deploymentStore(c.env, app).fileApps(hash);
    if (holders.length === 0) throw new NotFoundError(`no deployment of app "${app}" has a file ${hash}`, { app, sha256: hash });
    const principal = principalOf(c);
    const beyond = holders.flat().filter((a) => !mayReach(principal, a));
    if (beyond.length)
      throw new ForbiddenError(
        `token ${describePrincipal(principal)} may not fetch file ${hash}: the Worker it is part of holds ${othersText(new Set(beyond).size)} this token does not reach besides "${app}" (use a deploy token that reaches every app)`,
        { token: principal.id, sha256: hash },
      );
    const object = await c.env.BLOBS.get(BLOB_KEYS.deploymentFile(hash));
    if (!object) throw new NotFoundError(`file ${hash} of app "${app}" is missing from the blob bucket`, { app, sha256: hash });
    const sized = new FixedLengthStream(object.size);
    void object.body.pipeTo(sized.writable).catch(() => {});
    return c.body(sized.readable, 200, { "content-type": "application/octet-stream" });
  });

  return routes;
}

/**
 * A deployment as `principal` sees it: a token limited to apps sees the other apps its Worker holds only as their count
 * (`othersServed`), as `GET /v1/apps` shows the apps a gateway serves.
 */
function asSeenBy(principal: Principal, record: DeploymentRecord): DeploymentRecord {
  if (record.apps === undefined) return record;
  const seen = record.apps.filter((a) => mayReach(principal, a));
  return seen.length === record.apps.length ? record : { ...record, apps: seen, othersServed: record.apps.length - seen.length };
}

/**
 * Throws 403 unless a token limited to apps reaches every app of the Worker a record is of: those the record names, and
 * those this gateway's Worker serves, which the recorded one replaced. The record of a Worker that holds another's app
 * would let the token fetch its files, and write that app's history (the CLI asks first: `tandem deploy`).
 */
function checkRecordsWholeWorker(principal: Principal, app: string, request: DeploymentRecordRequest): void {
  if (principal.apps === null) return;
  const named = new Set((request.apps ?? [app]).filter((a) => !mayReach(principal, a)));
  const served = registry().apps.filter((a) => !mayReach(principal, a.name)).length;
  if (named.size === 0 && served === 0) return;
  const why = named.size
    ? `the record names app${named.size === 1 ? "" : "s"} ${[...named].map((a) => `"${a}"`).join(", ")}`
    : `this gateway's Worker serves ${othersText(served)} it does not reach, which a deployment replaces`;
  throw new ForbiddenError(
    `token ${describePrincipal(principal)} may not record a deployment of app "${app}": ${why}; record it with a deploy token that reaches every app`,
    { token: principal.id, app },
  );
}

function othersText(count: number): string {
  return `${count} app${count === 1 ? "" : "s"}`;
}

/** The route's app, by name: a name no app can have is a 404 before any store is named after it. */
function appOf(c: Context<RouteEnv>): string {
  const app = c.req.param("app") ?? "";
  if (!NAME_PATTERN.test(app)) throw new NotFoundError(`"${app}" is not an app name (1-64 letters, digits, '-' or '_')`, { app });
  return app;
}

function hashOf(c: Context<RouteEnv>): string {
  const hash = c.req.param("hash") ?? "";
  if (!SHA256_PATTERN.test(hash)) throw new InvalidRequestError(`"${hash}" is not a SHA-256 (64 lowercase hex digits)`);
  return hash;
}

function unknownApp(c: Context<RouteEnv>, app: string): NotFoundError {
  return new NotFoundError(
    `no deployment of app "${app}" is recorded in environment "${environmentOf(c.env)}", and this gateway serves no app of that name (tandem deploy <app file> --gateway <this gateway> records one)`,
    { app },
  );
}

function unwrap<T>(outcome: Outcome<T>): T {
  if ("error" in outcome) throw fromWireError(outcome.error);
  return outcome.ok;
}
