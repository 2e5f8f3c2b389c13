/**
 * Who may call what. Every `/v1` route (but `/v1/health` and the planes'
 * signed routes) needs an API token: `Authorization: Bearer <id>.<secret>`.
 * A token has a scope (`call` < `deploy` < `admin`) and may be restricted to
 * apps; `guard(scope)` checks both for a route, naming what a token lacks.
 * The gateway's bootstrap token is the `TANDEM_ADMIN_TOKEN` secret (admin, every
 * app); the rest live hashed in the `TokenStore` Durable Object. A checked
 * token is trusted for `TOKEN_DEFAULTS.cacheMs` in each isolate, but for its
 * expiry (when it has one), which every request checks.
 *
 * Web endpoints and agents that ask for a token (`auth: "token"`) take the
 * same header, or, for browsers, a short-lived connect token in `?token=`,
 * minted by `POST /v1/apps/:app/connect-token` and signed with a key the
 * `TokenStore` keeps.
 */
import type { Context, MiddlewareHandler } from "hono";
import { TOKEN_DEFAULTS } from "../sdk/defaults.js";
import { sha256Hex } from "../sdk/hex.js";
import { ForbiddenError, UnauthorizedError, missingToken } from "../sdk/errors.js";
import { CONNECT_TOKEN_PATTERN, HEADERS, TOKEN_PATTERN, notAnApiToken, scopeAllows, type TokenInfo, type TokenScope } from "../sdk/protocol.js";
import { isPreflight, passPreflight } from "./body.js";
import { containerPrincipal, isContainerRequest } from "./container-requests.js";
import type { Env, RouteEnv } from "./env.js";
import { environmentOf } from "./environments.js";
import type { TokenLiveness } from "./token-store.js";

/** Who a request is: the token it carried. */
export type Principal = Pick<TokenInfo, "id" | "name" | "scope" | "apps" | "env" | "expiresAt"> & {
  /** A container's request its plane carried (gateway/container-requests.ts): the container's app. */
  containerApp?: string;
};

const encoder = new TextEncoder();

/** The token store's stub (one object for the whole gateway). */
export function tokenStore(env: Env) {
  return env.TOKENS.get(env.TOKENS.idFromName("tokens"));
}

/**
 * Tokens checked lately in this isolate, by the whole token: who they are (null: refused), until when. Keyed by the
 * token itself, not its SHA-256: the digest was 0.1-0.2 ms of every request's time in the isolate (a CPU profile of
 * `.remote()` calls); the token stays in this isolate's memory no longer than `TOKEN_DEFAULTS.cacheMs`.
 */
const checked = new Map<string, { principal: Principal | null; until: number }>();

/**
 * Tokens that minted connect tokens or opened sockets lately, by id: whether they are still live (and when one expired,
 * where that is why not), until when (as `checked`).
 */
const minters = new Map<string, TokenLiveness & { until: number }>();

/** Forgets what this isolate knows of a token (after a revoke here; other isolates forget within `cacheMs`). */
export function forgetToken(id: string): void {
  for (const [key, entry] of checked) if (entry.principal?.id === id) checked.delete(key);
  minters.delete(id);
}

/**
 * The principal of a request's `Authorization: Bearer` token. Throws 401 with
 * what to do when there is none, when the gateway does not know it, or when it has expired.
 */
export async function authenticate(env: Env, header: string | undefined): Promise<Principal> {
  if (!header) throw missingToken();
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  const token = match?.[1] ?? "";
  const parts = TOKEN_PATTERN.exec(token);
  if (!parts) throw new UnauthorizedError(`the Authorization header ${notAnApiToken(token)}`);
  const now = Date.now();
  const known = checked.get(token);
  if (known && known.until > now) {
    if (known.principal) return unexpired(known.principal, now);
    throw unknownToken(parts[1]!);
  }
  const principal = await lookUp(env, token, parts[1]!, parts[2]!);
  if (checked.size > 10_000) checked.clear(); // bounded: a flood of made-up tokens cannot grow it without end
  checked.set(token, { principal, until: now + TOKEN_DEFAULTS.cacheMs });
  if (!principal) throw unknownToken(parts[1]!);
  return unexpired(principal, now);
}

/**
 * `principal`, unless its token has expired by `now`: then 401 naming the token and when it expired (never its
 * secret). Checked on every request, the cached principal's too, so a token stops at its expiry in every isolate.
 * @example unexpired(principal, Date.now()); // principal, or throws "token tk-… ("ci") expired at …"
 */
export function unexpired(principal: Principal, now: number): Principal {
  if (principal.expiresAt === undefined || principal.expiresAt > now) return principal;
  throw new UnauthorizedError(
    `token ${describePrincipal(principal)} expired at ${new Date(principal.expiresAt).toISOString()}; an admin makes another (tandem token create --expires …)`,
    { token: principal.id, expiredAt: principal.expiresAt },
  );
}

async function lookUp(env: Env, token: string, id: string, secret: string): Promise<Principal | null> {
  if (env.TANDEM_ADMIN_TOKEN && (await sha256Hex(token)) === (await sha256Hex(env.TANDEM_ADMIN_TOKEN.trim()))) {
    return { id, name: "bootstrap (TANDEM_ADMIN_TOKEN)", scope: "admin", apps: null };
  }
  const info = await tokenStore(env).verify(id, await sha256Hex(secret));
  if (!info) return null;
  const { id: tokenId, name, scope, apps, env: limit, expiresAt } = info;
  return { id: tokenId, name, scope, apps, ...(limit === undefined ? {} : { env: limit }), ...(expiresAt === undefined ? {} : { expiresAt }) };
}

/** True when `id` is the bootstrap token's (`TANDEM_ADMIN_TOKEN`): a Worker secret, not a token the `TokenStore` keeps. */
export function isBootstrapToken(env: Env, id: string): boolean {
  return env.TANDEM_ADMIN_TOKEN?.trim().startsWith(`${id}.`) ?? false;
}

function unknownToken(id: string): UnauthorizedError {
  return new UnauthorizedError(`token ${id} is not known to this gateway, or was revoked (tandem token list shows the tokens)`, { token: id });
}

/** Throws 403 unless `principal` has at least scope `needs`. */
export function requireScope(principal: Principal, needs: TokenScope, what: string): void {
  if (!scopeAllows(principal.scope, needs)) {
    throw new ForbiddenError(`token ${describePrincipal(principal)} has scope "${principal.scope}"; ${what} needs "${needs}"`, {
      token: principal.id,
      scope: principal.scope,
      needs,
    });
  }
}

/** True when `principal` may reach `app`. */
export function mayReach(principal: Principal, app: string): boolean {
  return principal.apps === null || principal.apps.includes(app);
}

/** Throws 403 unless `principal` may reach `app`. */
export function requireApp(principal: Principal, app: string): void {
  if (!mayReach(principal, app)) {
    throw new ForbiddenError(
      `token ${describePrincipal(principal)} may reach only app${principal.apps!.length === 1 ? "" : "s"} ${principal.apps!.join(", ")}, not "${app}"`,
      {
        token: principal.id,
        app,
      },
    );
  }
}

/**
 * True when `principal` may reach `app` of this gateway, whose apps are in its environment `served`: a call of it
 * (found by id whatever environment a request addresses) or its usage is out of reach of a token limited to another.
 */
export function mayReachServed(principal: Principal, app: string, served: string): boolean {
  return mayReach(principal, app) && reachesEnvironment(principal, served);
}

/** True when `principal` may reach `environment` (undefined: every one, as a token limited to none): it is limited to none, or to that one. */
export function reachesEnvironment(principal: Pick<Principal, "env">, environment: string | undefined): boolean {
  return principal.env === undefined || principal.env === environment;
}

/**
 * Refuses (403) a token limited to another environment than `environment`, the one the request addresses; `served`:
 * the one the gateway serves, whatever a request addresses (its planes, its metrics), so addressing another is no way in;
 * `dashboard`: the same, for the dashboard, which shows the gateway's own environment only.
 */
export function requireEnvironment(principal: Principal, environment: string, served: false | "served" | "dashboard" = false): void {
  if (!reachesEnvironment(principal, environment)) {
    const next =
      served === "dashboard"
        ? `: the dashboard shows its gateway's own environment only; open that of the gateway serving "${principal.env}" (tandem dashboard --gateway <its URL>)`
        : served
          ? `: this is the gateway's own environment's, whichever a request addresses`
          : `: address that one (--env ${principal.env}, TANDEM_ENV=${principal.env}, or the Tandem-Env header)`;
    throw new ForbiddenError(`token ${describePrincipal(principal)} may reach only environment "${principal.env}", not "${environment}"${next}`, {
      token: principal.id,
      env: environment,
    });
  }
}

/**
 * Route middleware: authenticates the request, requires `scope`, that a token limited to an environment addresses
 * that one, and, when the route names an app (`:app`), that the token may reach it; then whatever else `check`
 * requires of the principal. The principal is on `c.var.principal` for routes that check more (a call's app).
 * A preflight (`HEADERS.preflight`) that fails gets the same 401 or 403 as the request would; one that passes gets
 * 204 here and goes no further, so no route runs for it. With `checksBeforeBody`, a route whose checks of its path
 * and query come before it reads its body, and change nothing, a preflight that passes goes on into the route:
 * those checks answer it (a 404 for an unknown function, a 400 for a bad `?path=`) as they would the request, and
 * the body's reader answers 204 in its place (`passPreflight` in gateway/body.ts).
 * @example
 * api.post(ROUTES.appStop, guard("deploy"), async (c) => …)
 * api.post(ROUTES.call, guard("call", { checksBeforeBody: true }), async (c) => …)
 */
export function guard(scope: TokenScope, options: GuardOptions = {}): MiddlewareHandler<RouteEnv> {
  return async (c, next) => {
    const principal = await requestPrincipal(c);
    // The route's name is made only for the 403: parsing the URL on every request was a visible part of an edge call's time.
    if (!scopeAllows(principal.scope, scope)) requireScope(principal, scope, `${c.req.method} ${new URL(c.req.url).pathname}`);
    if (options.servedEnvironment === "dashboard") requireEnvironment(principal, c.var.config.environment, "dashboard");
    requireEnvironment(principal, environmentOf(c.env));
    if (options.servedEnvironment === true) requireEnvironment(principal, c.var.config.environment, "served");
    const app = c.req.param("app");
    if (app !== undefined) requireApp(principal, app);
    options.check?.(principal);
    if (isPreflight(c.req.raw) && !options.checksBeforeBody) return c.body(null, 204);
    c.set("principal", principal);
    await next();
  };
}

/**
 * Who sends the request: its token's principal, or, for a container's request (carried and signed by its plane), its
 * app's. 401 when it has neither; `guard` then checks what the principal may do.
 * @example await requestPrincipal(c); // 401 before anything about the request is answered
 */
export async function requestPrincipal(c: Context<RouteEnv>): Promise<Principal> {
  return isContainerRequest(c) ? containerPrincipal(c) : authenticate(c.env, c.req.header(HEADERS.authorization));
}

export interface GuardOptions {
  /** What else the principal must be allowed: throws the 403 if not. */
  check?: (principal: Principal) => void;
  /** The route checks its path and query, changing nothing, before it reads its body: a preflight goes on into it (`guard`). */
  checksBeforeBody?: boolean;
  /**
   * What the route answers is the gateway's own environment's whatever `Tandem-Env` says (the planes, which run its
   * apps): a token limited to another environment is refused even when the request addresses that one. `"dashboard"`:
   * the dashboard's, refused first, saying which dashboard such a token opens.
   */
  servedEnvironment?: boolean | "dashboard";
}

/**
 * `guard(scope)` for what belongs to the whole gateway rather than an app
 * (volumes, dicts, queues): a token restricted to apps reaches none of it.
 * @example
 * api.get(ROUTES.dicts, gatewayWideGuard("call", "dicts"), …)
 */
export function gatewayWideGuard(scope: TokenScope, what: string, options: Omit<GuardOptions, "check"> = {}): MiddlewareHandler<RouteEnv> {
  return guard(scope, {
    ...options,
    check: (principal) => {
      // A container's request (carried and signed by its plane) is its app's own code, which reaches these as it does at the edge.
      if (principal.apps !== null && principal.containerApp === undefined) {
        throw new ForbiddenError(
          `token ${principal.id} ("${principal.name}") may reach only app${principal.apps.length === 1 ? "" : "s"} ${principal.apps.join(", ")}; ${what} belong to the whole gateway, so they need a token for every app`,
          { token: principal.id },
        );
      }
    },
  });
}

/** The principal a guarded route runs for. */
export function principalOf(c: Context<RouteEnv>): Principal {
  const principal = c.get("principal");
  if (!principal) throw new Error("principalOf: the route has no guard");
  return principal;
}

export function describePrincipal(principal: Principal): string {
  return `${principal.id} ("${principal.name}")`;
}

// ---------------------------------------------------------------------------
// Connect tokens

let connectKey: Promise<CryptoKey> | undefined;

function signingKey(env: Env): Promise<CryptoKey> {
  connectKey ??= tokenStore(env)
    .connectKey()
    .then((hex) => crypto.subtle.importKey("raw", encoder.encode(hex), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]))
    .catch((err: unknown) => {
      connectKey = undefined;
      throw err;
    });
  return connectKey;
}

interface ConnectClaims {
  /** The app, and the label when the token is for one endpoint or agent. */
  a: string;
  l?: string;
  /** Expiry, ms since the epoch. */
  e: number;
  /** The API token that minted it. */
  t: string;
}

/** A connect token for `app` (and `label`), valid for `ttlSeconds` but no longer than `principal`'s token, minted for `principal`. */
export async function mintConnectToken(
  env: Env,
  principal: Principal,
  app: string,
  label: string | undefined,
  ttlSeconds: number,
): Promise<{ token: string; expiresAt: number }> {
  const expiresAt = Math.min(Date.now() + ttlSeconds * 1000, principal.expiresAt ?? Infinity);
  const claims: ConnectClaims = { a: app, ...(label ? { l: label } : {}), e: expiresAt, t: principal.id };
  const payload = base64url(encoder.encode(JSON.stringify(claims)));
  const mac = await crypto.subtle.sign("HMAC", await signingKey(env), encoder.encode(payload));
  return { token: `ct-${payload}.${base64url(new Uint8Array(mac))}`, expiresAt };
}

/**
 * Checks a web endpoint's or agent's request that asks for a token: an API
 * token in `Authorization` (scope `call`, reaching `app`), or a connect token
 * for `app` (and this `label`) in `?token=`. Throws 401/403 saying which; returns the id of the API token that let
 * the request in (for a connect token, the one that minted it). A preflight
 * (`HEADERS.preflight`, sent by `tandem serve`'s front door before a large body) that passes
 * answers 204 here, and the endpoint's handler does not run.
 */
export async function authorizeWeb(env: Env, request: Request, app: string, label: string): Promise<string> {
  const header = request.headers.get(HEADERS.authorization) ?? undefined;
  const given = new URL(request.url).searchParams.get("token");
  if (header || !given) {
    if (!header) {
      throw new UnauthorizedError(
        `"${label}" of app "${app}" needs a token: send \`Authorization: Bearer <token>\`, or (from a browser) a connect token in ?token= from POST /v1/apps/${app}/connect-token`,
      );
    }
    const principal = await authenticate(env, header);
    requireScope(principal, "call", `"${label}" of app "${app}"`);
    requireEnvironment(principal, environmentOf(env));
    requireApp(principal, app);
    passPreflight(request);
    return principal.id;
  }
  if (TOKEN_PATTERN.test(given.trim())) {
    throw new UnauthorizedError(
      `?token= holds an API token (tk-…), which goes in \`Authorization: Bearer …\`, never in a URL; ?token= takes a connect token (ct-…) from POST /v1/apps/${app}/connect-token`,
    );
  }
  const claims = await readConnectToken(env, given);
  if (!claims) throw new UnauthorizedError(`?token= is not a connect token this gateway signed`);
  if (claims.e <= Date.now())
    throw new UnauthorizedError(`the connect token expired at ${new Date(claims.e).toISOString()}; mint another (POST /v1/apps/${app}/connect-token)`);
  if (claims.a !== app || (claims.l !== undefined && claims.l !== label)) {
    throw new ForbiddenError(`the connect token is for ${claims.l ? `"${claims.l}" of ` : ""}app "${claims.a}", not "${label}" of app "${app}"`);
  }
  if (!(await tokenIsLive(env, claims.t))) {
    throw new UnauthorizedError(
      `the connect token was minted by token ${claims.t}, which ${tokenEndedHow(claims.t)}; mint another (POST /v1/apps/${app}/connect-token)`,
      {
        token: claims.t,
      },
    );
  }
  passPreflight(request);
  return claims.t;
}

/**
 * Whether an API token is still live (not revoked), for what it let in earlier: the connect tokens it minted, the agent
 * sockets it opened. Revoking a token ends them within `TOKEN_DEFAULTS.cacheMs`, as it ends the token. The bootstrap
 * token lives while it is the secret.
 */
/**
 * What this isolate knows now of whether an API token is live, without asking: undefined when it has not checked it
 * within `TOKEN_DEFAULTS.cacheMs` (ask `tokenIsLive`).
 */
export function tokenLivenessKnown(env: Env, id: string): boolean | undefined {
  if (isBootstrapToken(env, id)) return true;
  const known = minters.get(id);
  return known && known.until > Date.now() ? known.live : undefined;
}

/**
 * Whether the token behind a stream that outlives its request (a log follow, the dashboard's live stream) is still
 * live, asked as it goes on: `tokenIsLive` checks again at most every `TOKEN_DEFAULTS.cacheMs`, so such a stream ends
 * within that of a revoke, as an agent socket does. A container's request (its plane's credential) has no token to revoke.
 * @example if (!(await principalIsLive(env, principal))) return end(revokedWhileOpen(principal));
 */
export async function principalIsLive(env: Env, principal: Principal): Promise<boolean> {
  if (principal.expiresAt !== undefined && principal.expiresAt <= Date.now()) return false;
  return principal.containerApp !== undefined || (await tokenIsLive(env, principal.id));
}

/** The error a stream ends with once the token that opened it is revoked, or has expired. */
export function revokedWhileOpen(principal: Principal): UnauthorizedError {
  if (principal.expiresAt !== undefined && principal.expiresAt <= Date.now()) {
    return new UnauthorizedError(
      `the token that opened this stream, ${principal.id}, expired at ${new Date(principal.expiresAt).toISOString()}; open it again with another`,
      { token: principal.id },
    );
  }
  return new UnauthorizedError(`the token that opened this stream, ${principal.id}, was revoked; open it again with another`, { token: principal.id });
}

export async function tokenIsLive(env: Env, id: string): Promise<boolean> {
  if (isBootstrapToken(env, id)) return true;
  const now = Date.now();
  const known = minters.get(id);
  if (known && known.until > now) return known.live;
  const liveness = await tokenStore(env).liveness(id);
  if (minters.size > 10_000) minters.clear(); // bounded, as `checked` is
  minters.set(id, { ...liveness, until: now + TOKEN_DEFAULTS.cacheMs });
  return liveness.live;
}

/**
 * How a token that `tokenIsLive` found not live ended, for the message of what it had opened: it expired (when), or it
 * was revoked (or is not known, as a revoked one is once gone).
 * @example `the token that opened this socket, ${id}, ${tokenEndedHow(id)}` // "…, expired at 2026-12-06T13:20:00.000Z"
 */
export function tokenEndedHow(id: string): string {
  const expiredAt = minters.get(id)?.expiredAt;
  return expiredAt === undefined ? "was revoked" : `expired at ${new Date(expiredAt).toISOString()}`;
}

async function readConnectToken(env: Env, token: string): Promise<ConnectClaims | undefined> {
  if (!CONNECT_TOKEN_PATTERN.test(token)) return undefined;
  const [payload, mac] = token.slice(3).split(".") as [string, string];
  let valid: boolean;
  try {
    valid = await crypto.subtle.verify("HMAC", await signingKey(env), fromBase64url(mac), encoder.encode(payload));
  } catch {
    return undefined;
  }
  if (!valid) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(fromBase64url(payload))) as ConnectClaims;
  } catch {
    return undefined;
  }
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
