/**
 * `/v1/tokens`: list, create and revoke API tokens (admin scope). A new
 * token's secret is made here, answered once, and only its hash is stored
 * (gateway/token-store.ts); it works for good, or until its expiry
 * (`expiresIn` or `expiresAt`). An admin token limited to an environment makes,
 * lists and revokes only tokens limited to that environment: else it could
 * make itself a token for every environment.
 */
import { Hono } from "hono";
import { TOKEN_DEFAULTS } from "../sdk/defaults.js";
import { sha256Hex } from "../sdk/hex.js";
import { ForbiddenError, InvalidRequestError, NotFoundError } from "../sdk/errors.js";
import { ROUTES, TOKEN_ID_PATTERN, TokenCreateRequestSchema, newToken, tokenExpiry, type TokenCreateAnswer } from "../sdk/protocol.js";
import { forgetToken, guard, isBootstrapToken, principalOf, reachesEnvironment, tokenStore } from "./auth.js";
import { readJsonBody } from "./body.js";
import type { RouteEnv } from "./env.js";
import { registry } from "./registry.js";

export function tokenRoutes(): Hono<RouteEnv> {
  const routes = new Hono<RouteEnv>();

  routes.get(ROUTES.tokens, guard("admin"), async (c) => {
    const principal = principalOf(c);
    return c.json({ tokens: (await tokenStore(c.env).list()).filter((t) => reachesEnvironment(principal, t.env)) });
  });

  routes.post(ROUTES.tokens, guard("admin"), async (c) => {
    const request = await readJsonBody(c.req.raw, TokenCreateRequestSchema, c.var.config.maxBodyBytes);
    if (request.scope === "admin" && request.apps) {
      throw new InvalidRequestError('an admin token reaches every app: leave out "apps", or give the token scope "call" or "deploy"');
    }
    if (request.expiresIn !== undefined && request.expiresAt !== undefined) {
      throw new InvalidRequestError('a token expires once: send "expiresIn" (a duration such as "30d") or "expiresAt" (ms since the epoch), not both');
    }
    const principal = principalOf(c);
    if (!reachesEnvironment(principal, request.env)) {
      throw new ForbiddenError(
        `token ${principal.id} ("${principal.name}") may reach only environment "${principal.env}": a token it makes is limited to it too (send "env": "${principal.env}", or --env ${principal.env})`,
        { token: principal.id, env: principal.env },
      );
    }
    // An app the gateway does not serve is most likely a typo: say so now, not when the token is refused later. A
    // deploy token may name one, since deploying it for the first time is what such a token is for.
    const unknown = request.scope === "deploy" ? [] : (request.apps ?? []).filter((app) => !registry().apps.some((a) => a.name === app));
    if (unknown.length) {
      throw new InvalidRequestError(
        `no app named ${unknown.map((a) => `"${a}"`).join(", ")} is deployed here (apps: ${
          registry()
            .apps.map((a) => a.name)
            .join(", ") || "none"
        }); a token to deploy it for the first time has scope "deploy"`,
      );
    }
    const { id, secret, token } = newToken();
    const info = await tokenStore(c.env).create(id, await sha256Hex(secret), request, principalOf(c).id, tokenExpiry(request, Date.now()));
    if (!info) throw new InvalidRequestError(`this gateway holds ${TOKEN_DEFAULTS.maxTokens} tokens, the most it keeps; revoke some first`);
    const until = info.expiresAt === undefined ? "" : `, expires ${new Date(info.expiresAt).toISOString()}`;
    console.log(`token ${id} ("${info.name}") created by ${principalOf(c).id}: scope ${info.scope}, apps ${info.apps?.join(", ") ?? "all"}${until}`);
    return c.json({ ...info, token } satisfies TokenCreateAnswer, 201);
  });

  routes.delete(ROUTES.token, guard("admin"), async (c) => {
    const id = c.req.param("id") ?? "";
    if (!TOKEN_ID_PATTERN.test(id)) throw new NotFoundError(`"${id}" is not a token id (they look like tk- and 16 characters)`);
    const bootstrap = isBootstrapToken(c.env, id);
    const principal = principalOf(c);
    if (principal.env !== undefined) {
      // The bootstrap token is limited to no environment: refused as any other such token, not told apart from them.
      const target = bootstrap ? { env: undefined } : (await tokenStore(c.env).list()).find((t) => t.id === id);
      if (target && !reachesEnvironment(principal, target.env)) {
        throw new ForbiddenError(
          `token ${principal.id} ("${principal.name}") may reach only environment "${principal.env}", and token ${id} is not limited to it`,
          {
            token: principal.id,
            env: principal.env,
          },
        );
      }
    }
    if (bootstrap) {
      throw new InvalidRequestError(
        `token ${id} is the gateway's bootstrap admin token (TANDEM_ADMIN_TOKEN), which is not revoked here: replace it with \`tandem token bootstrap --put\` (under \`tandem serve\`: delete .tandem/token and start it again)`,
        { token: id },
      );
    }
    const revoked = await tokenStore(c.env).revoke(id);
    if (!revoked) throw new NotFoundError(`no token ${id} (tandem token list shows the tokens)`, { token: id });
    forgetToken(id);
    console.log(`token ${id} ("${revoked.name}") revoked by ${principalOf(c).id}`);
    return c.json(revoked);
  });

  return routes;
}
