/**
 * Environments: one gateway serves the apps of its own environment
 * (`TANDEM_ENV`, by default `main`), and keeps the secrets, volumes, dicts,
 * queues, schedules and logs of each environment apart: every Durable Object
 * that holds them is named within the environment (`main` keeps the plain
 * names). A `/v1` request names the environment it addresses in `Tandem-Env`;
 * without it, and always for a container's request, it is the gateway's own.
 * The environment travels with the request's async context, so the stores'
 * stubs find it without it being passed through every route.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { MiddlewareHandler } from "hono";
import { InvalidRequestError, NotFoundError } from "../sdk/errors.js";
import { DEFAULT_ENV, ENV_NAME_PATTERN, HEADERS } from "../sdk/protocol.js";
import { requestPrincipal, requireEnvironment } from "./auth.js";
import { gatewayConfig } from "./config.js";
import type { Env, RouteEnv } from "./env.js";
import { echoedText } from "../sdk/value-text.js";

const requested = new AsyncLocalStorage<string>();

/**
 * Runs each `/v1` request in the environment it names (`Tandem-Env`), else the gateway's; 400 for a name that is
 * not one. A container's request (carried by its plane) is always in the gateway's environment, its app's.
 *
 * @example router.use("/v1/*", environments());
 */
export function environments(): MiddlewareHandler<RouteEnv> {
  return async (c, next) => {
    const given = c.req.header(HEADERS.env);
    if (given === undefined || c.req.header(HEADERS.containerApp) !== undefined) return next();
    if (!ENV_NAME_PATTERN.test(given)) {
      throw new InvalidRequestError(`header Tandem-Env: "${given}" is not an environment name (lowercase letters, digits and '-', up to 32, such as "dev")`);
    }
    return requested.run(given, () => next());
  };
}

/**
 * The environment the running work is in: the request's (`Tandem-Env`), else the gateway's (`TANDEM_ENV`).
 *
 * @example environmentOf(env); // "dev" under `tandem serve --env dev`
 */
export function environmentOf(env: Env): string {
  return requested.getStore() ?? gatewayConfig(env).environment;
}

/**
 * Where something that is not there (a dict, a queue, a secret) was looked for, for its 404: the running work's
 * environment in words, and the `--env` flag a CLI command needs to reach it (none for the gateway's own).
 *
 * @example `no dict named "x"${where.words} (tandem dict create x${where.flag} makes it)`; // ' in environment "dev"', " --env dev"
 */
export function lookedIn(env: Env): { words: string; flag: string } {
  const asked = environmentOf(env);
  return { words: ` in environment "${asked}"`, flag: asked === gatewayConfig(env).environment ? "" : ` --env ${asked}` };
}

/**
 * A Durable Object's name within the running work's environment: `name` itself in `main`, `name@env` elsewhere.
 *
 * @example env.DICTS.idFromName(inEnvironment(env, `dict:${name}`));
 */
export function inEnvironment(env: Env, name: string): string {
  const environment = environmentOf(env);
  return environment === DEFAULT_ENV ? name : `${name}@${environment}`;
}

/**
 * Refuses (404) a request for this gateway's apps that addresses another environment: the apps served here are
 * the gateway's environment's, and another environment's app of the same name is another app.
 *
 * @example api.use("/v1/apps/:app/*", appsOfThisEnvironment());
 */
export function appsOfThisEnvironment(): MiddlewareHandler<RouteEnv> {
  return async (c, next) => {
    const asked = environmentOf(c.env);
    const served = c.var.config.environment;
    if (asked !== served) {
      // Who asks comes first, as on every route: no token gets its 401 (not the names of this gateway's environment and
      // apps), a token that cannot reach the environment asked for its 403.
      requireEnvironment(await requestPrincipal(c), asked);
      const app = c.req.param("app");
      throw new NotFoundError(
        `${app === undefined ? "no app" : `no app named ${echoedText(app)}`} in environment "${asked}" here: this gateway serves environment "${served}" (deploy or serve the app with --env ${asked})`,
        { env: asked },
      );
    }
    return next();
  };
}

/** Whether the running work addresses this gateway's own environment (its apps, schedules and logs). */
export function inServedEnvironment(env: Env): boolean {
  return environmentOf(env) === gatewayConfig(env).environment;
}
