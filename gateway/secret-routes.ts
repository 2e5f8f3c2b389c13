/**
 * `/v1/secrets`: list, create (or replace, with `force`) and delete named
 * secrets. A secret belongs to the gateway, not to one app, so each route
 * needs a `deploy` token that reaches every app (an admin token does). Values
 * go in and never come out: the list has names, keys and times; the values
 * are read only by the gateway itself, for a call (gateway/secret-env.ts).
 */
import { Hono } from "hono";
import { SECRET_LIMITS } from "../sdk/defaults.js";
import { AlreadyExistsError, ForbiddenError, InvalidRequestError, NotConfiguredError, NotFoundError } from "../sdk/errors.js";
import { NAME_PATTERN, ROUTES, SecretCreateRequestSchema } from "../sdk/protocol.js";
import { guard, principalOf, type Principal } from "./auth.js";
import { readJsonBody } from "./body.js";
import type { RouteEnv } from "./env.js";
import { environmentOf, lookedIn } from "./environments.js";
import { registry } from "./registry.js";
import { forgetSecret, secretStore } from "./secret-env.js";

/** How to give a gateway its key, in the error a gateway without one answers. */
const NO_KEY =
  "this gateway has no TANDEM_SECRETS_KEY, so it keeps no secrets: `openssl rand -hex 32 | npx wrangler secret put TANDEM_SECRETS_KEY` (tandem serve makes one in .tandem/secrets-key)";

/** Secrets are the gateway's, for every app: a deploy token restricted to some apps may not read their names or write them. */
const secretGuard = guard("deploy", {
  check: (principal: Principal) => {
    if (principal.apps !== null) {
      throw new ForbiddenError(
        `token ${principal.id} ("${principal.name}") reaches only app${principal.apps.length === 1 ? "" : "s"} ${principal.apps.join(", ")}; secrets are the gateway's, for every app: use a deploy or admin token that reaches every app`,
        {
          token: principal.id,
        },
      );
    }
  },
});

/**
 * What the apps served declare of secret `name` with `requiredKeys` that `keys` lack, by app: a secret replaced
 * without a key a function needs is taken, and its runs then fail, so its writer is told at once.
 * @example lackingKeys("stripe", ["OTHER"]); // [{ app: "shop", holders: ['function "charge"'], keys: ["STRIPE_KEY"] }]
 */
function lackingKeys(name: string, keys: string[]): { app: string; holders: string[]; keys: string[] }[] {
  return registry().apps.flatMap((app) => {
    const holders: string[] = [];
    const lacking = new Set<string>();
    for (const { what, secrets } of app.secretDeclarers()) {
      const lacks = secrets.flatMap((s) => (s.source.kind === "name" && s.source.name === name ? s.source.requiredKeys.filter((k) => !keys.includes(k)) : []));
      if (lacks.length === 0) continue;
      holders.push(what);
      for (const key of lacks) lacking.add(key);
    }
    return holders.length ? [{ app: app.name, holders, keys: [...lacking] }] : [];
  });
}

/**
 * The apps served whose plane functions (or classes) declare secret `name`: a container keeps the values it started
 * with, so after a replacement their warm containers hold the old ones until they scale down or are rolled over.
 */
function planeAppsUsing(name: string): string[] {
  const apps = new Set<string>();
  for (const fn of registry().all()) {
    if (fn.spec.tier === "plane" && fn.spec.secrets.some((s) => s.source.kind === "name" && s.source.name === name)) apps.add(fn.app);
  }
  return [...apps].sort();
}

export function secretRoutes(): Hono<RouteEnv> {
  const routes = new Hono<RouteEnv>();

  routes.get(ROUTES.secrets, secretGuard, async (c) => c.json({ secrets: await secretStore(c.env).list() }));

  routes.post(ROUTES.secrets, secretGuard, async (c) => {
    const request = await readJsonBody(c.req.raw, SecretCreateRequestSchema, c.var.config.maxBodyBytes);
    const outcome = await secretStore(c.env).put(request.name, request.values, request.force ?? false);
    if ("refused" in outcome) {
      if (outcome.refused === "no_key") throw new NotConfiguredError(NO_KEY);
      if (outcome.refused === "full")
        throw new InvalidRequestError(`this gateway holds ${SECRET_LIMITS.maxSecrets} secrets, the most it keeps; delete some first`);
      throw new AlreadyExistsError(`a secret named "${request.name}" exists; replace it with --force (tandem secret create ${request.name} … --force)`, {
        secret: request.name,
      });
    }
    forgetSecret(c.env, request.name);
    // The log names the secret and its keys, never a value.
    console.log(`secret "${request.name}" (${outcome.info.keys.join(", ")}) ${request.force ? "written" : "created"} by ${principalOf(c).id}`);
    // The apps served here are the gateway's own environment's: a secret of another has none of them to check.
    const served = environmentOf(c.env) === c.var.config.environment;
    const lacking = served ? lackingKeys(request.name, outcome.info.keys) : [];
    const keptOld = served && outcome.replaced ? planeAppsUsing(request.name) : [];
    return c.json({ ...outcome.info, ...(lacking.length ? { lacking } : {}), ...(keptOld.length ? { warmContainersKeepOld: keptOld } : {}) }, 201);
  });

  routes.delete(ROUTES.secret, secretGuard, async (c) => {
    const name = c.req.param("name") ?? "";
    if (!NAME_PATTERN.test(name)) throw new NotFoundError(`"${name}" is not a secret name (1-64 letters, digits, '-' or '_')`);
    const removed = await secretStore(c.env).remove(name);
    if (!removed) {
      const where = lookedIn(c.env);
      throw new NotFoundError(`no secret named "${name}"${where.words} (tandem secret list${where.flag} shows them)`, { secret: name });
    }
    forgetSecret(c.env, name);
    console.log(`secret "${name}" deleted by ${principalOf(c).id}`);
    const keptOld = environmentOf(c.env) === c.var.config.environment ? planeAppsUsing(name) : [];
    return c.json({ ...removed, ...(keptOld.length ? { warmContainersKeepOld: keptOld } : {}) });
  });

  return routes;
}
