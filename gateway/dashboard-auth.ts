/**
 * Who may see the dashboard. A browser cannot send `Authorization: Bearer`,
 * so it logs in once and then carries a session cookie (HttpOnly,
 * SameSite=Strict, path `/_tandem`): either with a login code that
 * `tandem dashboard` mints with the user's token (`POST /v1/dashboard/login-code`;
 * single-use, `DASHBOARD_DEFAULTS.loginCodeTtlSeconds`, so the URL it prints
 * is spent once opened), or by pasting a token into the login form. A session
 * is the token's principal as it was at login (scope, apps, environment), kept in the
 * `TokenStore` by the SHA-256 of its secret, and ends when the token is revoked or expires.
 * A request with a bearer token (curl, tests) is let in as on `/v1`. The
 * dashboard shows the gateway's own environment: a token limited to another
 * gets no login code, no session and no page (403).
 */
import type { Context, MiddlewareHandler } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { DASHBOARD_DEFAULTS } from "../sdk/defaults.js";
import { ForbiddenError, UnauthorizedError } from "../sdk/errors.js";
import { DASHBOARD, HEADERS, LOGIN_CODE_PATTERN, TOKEN_PATTERN, type DashboardLoginAnswer } from "../sdk/protocol.js";
import { sha256Hex } from "../sdk/hex.js";
import { authenticate, requireEnvironment, tokenStore, type Principal } from "./auth.js";
import { gatewayConfig } from "./config.js";
import type { Env, RouteEnv } from "./env.js";

const SESSION_PATTERN = /^ds-[0-9a-f]{64}$/;

/**
 * A login URL for `principal` on this gateway (`origin`), spent once opened.
 * @example const { url } = await mintLoginCode(c.env, principalOf(c), new URL(c.req.url).origin);
 */
export async function mintLoginCode(env: Env, principal: Principal, origin: string): Promise<DashboardLoginAnswer> {
  requireEnvironment(principal, gatewayConfig(env).environment, "dashboard");
  const code = `lc-${randomHex(16)}`;
  const expiresAt = Math.min(Date.now() + DASHBOARD_DEFAULTS.loginCodeTtlSeconds * 1000, principal.expiresAt ?? Infinity);
  await tokenStore(env).grantDashboard("code", await sha256Hex(code), grantOf(principal), expiresAt);
  return { url: `${origin}${DASHBOARD.login}?code=${code}`, expiresAt };
}

/**
 * Throws 403 for a form another site's page posted (`Sec-Fetch-Site: cross-site` or `same-site`, as every current
 * browser sends it, or, from a browser too old to send that, an `Origin` other than the gateway's): a page elsewhere
 * could otherwise log the browser out, or into a session of a token of its own choosing. A request with neither
 * header (curl, a test's fetch) is no browser's and goes on.
 * @example routes.post("/logout", async (c) => { refuseOtherSites(c); … });
 */
export function refuseOtherSites(c: Context<RouteEnv>): void {
  if (fromOtherSite(c)) throw new ForbiddenError("this form was sent from another site's page; log in or out from the dashboard's own pages");
}

/**
 * Whether a browser says this request comes from another site's page: a link or form there (`Sec-Fetch-Site`), or a
 * post whose `Origin` is not the gateway's.
 */
export function fromOtherSite(c: Context<RouteEnv>): boolean {
  const site = c.req.header("sec-fetch-site");
  if (site === "cross-site" || site === "same-site") return true;
  // "null" is what the dashboard's own forms send (its pages send no referrer), as any page that hides its origin does.
  const origin = c.req.header("origin");
  return origin !== undefined && origin !== "null" && origin !== new URL(c.req.url).origin;
}

/** Logs the browser in with a login code: its session cookie set. Throws 401 for a code unknown, spent or expired. */
export async function logInWithCode(c: Context<RouteEnv>, code: string): Promise<void> {
  const principal = LOGIN_CODE_PATTERN.test(code) ? await tokenStore(c.env).dashboardGrant("code", await sha256Hex(code)) : null;
  if (!principal) throw new UnauthorizedError("this login link was used already or has expired; run `tandem dashboard` again for a new one");
  await startSession(c, principal);
}

/**
 * Logs the browser in with a pasted API token: its session cookie set. Throws 401 as `authenticate` does, and for
 * text that is not a token, a message about what was pasted (there is no Authorization header to name).
 */
export async function logInWithToken(c: Context<RouteEnv>, token: string): Promise<void> {
  const pasted = token.trim();
  if (!TOKEN_PATTERN.test(pasted))
    throw new UnauthorizedError(
      `${pasted ? "that is not a Tandem API token" : "paste an API token"}: they look like tk-<16 characters>.ts-<32 characters> (\`tandem token create\` makes one; \`tandem serve\` keeps its own in .tandem/token)`,
    );
  await startSession(c, await authenticate(c.env, `Bearer ${pasted}`));
}

/** Ends the browser's session and clears its cookie. */
export async function logOut(c: Context<RouteEnv>): Promise<void> {
  const session = getCookie(c, DASHBOARD.cookie);
  if (session && SESSION_PATTERN.test(session)) await tokenStore(c.env).endDashboardSession(await sha256Hex(session));
  deleteCookie(c, DASHBOARD.cookie, { path: DASHBOARD.base });
}

/**
 * Page middleware: the principal of the request's session cookie (or bearer token) on `c.var.principal`;
 * without either, `unauthenticated` answers (the login page, 401).
 * @example dashboard.use("*", dashboardGuard((c) => c.html(loginPage(), 401)));
 */
export function dashboardGuard(unauthenticated: (c: Context<RouteEnv>) => Response | Promise<Response>): MiddlewareHandler<RouteEnv> {
  return async (c, next) => {
    const header = c.req.header(HEADERS.authorization);
    let principal: Principal | null = null;
    if (header) principal = await authenticate(c.env, header);
    else {
      const session = getCookie(c, DASHBOARD.cookie);
      if (session && SESSION_PATTERN.test(session)) principal = await tokenStore(c.env).dashboardGrant("session", await sha256Hex(session));
    }
    if (!principal) return unauthenticated(c);
    requireEnvironment(principal, gatewayConfig(c.env).environment, "dashboard");
    c.set("principal", principal);
    await next();
  };
}

async function startSession(c: Context<RouteEnv>, principal: Principal): Promise<void> {
  requireEnvironment(principal, gatewayConfig(c.env).environment, "dashboard");
  const session = `ds-${randomHex(32)}`;
  // A session lasts no longer than its token.
  const expiresAt = Math.min(Date.now() + DASHBOARD_DEFAULTS.sessionTtlSeconds * 1000, principal.expiresAt ?? Infinity);
  const ttl = Math.ceil((expiresAt - Date.now()) / 1000);
  await tokenStore(c.env).grantDashboard("session", await sha256Hex(session), grantOf(principal), expiresAt);
  setCookie(c, DASHBOARD.cookie, session, {
    path: DASHBOARD.base,
    httpOnly: true,
    sameSite: "Strict",
    secure: new URL(c.req.url).protocol === "https:",
    maxAge: ttl,
  });
}

function grantOf(principal: Principal) {
  return {
    id: principal.id,
    name: principal.name,
    scope: principal.scope,
    apps: principal.apps,
    ...(principal.env === undefined ? {} : { env: principal.env }),
    // A session made from a login code lasts no longer than the token either.
    ...(principal.expiresAt === undefined ? {} : { expiresAt: principal.expiresAt }),
  };
}

function randomHex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
}
