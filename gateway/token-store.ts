/**
 * The API tokens of a gateway: one SQLite-backed Durable Object holding each
 * token's id, name, scope, apps, environment, expiry and the SHA-256 of its
 * secret, never the secret itself, which is shown once when the token is made. It also keeps the
 * key that signs connect tokens (gateway/auth.ts), made on first use.
 */
import { DurableObject } from "cloudflare:workers";
import { TOKEN_DEFAULTS } from "../sdk/defaults.js";
import { toHex } from "../sdk/hex.js";
import type { TokenCreateRequest, TokenInfo, TokenScope } from "../sdk/protocol.js";
import type { Env } from "./env.js";

type Row = {
  id: string;
  name: string;
  scope: string;
  apps: string | null;
  env: string | null;
  secret_sha256: string;
  created_at: number;
  created_by: string;
  last_used_at: number | null;
  revoked_at: number | null;
  expires_at: number | null;
};

/** A dashboard grant: a login code (single-use) or a browser's session. */
export type DashboardGrantKind = "code" | "session";

/** Who a dashboard grant is for: the token it came from, as `authenticate` found it. */
export type DashboardPrincipal = Pick<TokenInfo, "id" | "name" | "scope" | "apps" | "env" | "expiresAt">;

/** How often a token's `lastUsedAt` is written: to the minute, so a busy token does not write on every request. */
const LAST_USED_RESOLUTION_MS = 60_000;

/** What `TokenStore.liveness` says of a token: live, or not, with when it expired where that is why. */
export interface TokenLiveness {
  live: boolean;
  expiredAt?: number;
}

export class TokenStore extends DurableObject<Env> {
  readonly #sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS tokens (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL, apps TEXT, secret_sha256 TEXT NOT NULL,
        created_at INTEGER NOT NULL, created_by TEXT NOT NULL, last_used_at INTEGER, revoked_at INTEGER);
      CREATE TABLE IF NOT EXISTS keys (name TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS dashboard_grants (
        secret_sha256 TEXT PRIMARY KEY, kind TEXT NOT NULL, token_id TEXT NOT NULL, principal TEXT NOT NULL, expires_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS dashboard_grants_token ON dashboard_grants(token_id);`);
    // Tokens limited to an environment came later: a store from before has no column for it.
    const columns = this.#sql.exec<{ name: string }>("PRAGMA table_info(tokens)").toArray();
    if (!columns.some((c) => c.name === "env")) this.#sql.exec("ALTER TABLE tokens ADD COLUMN env TEXT");
    // So did expiries: a token from before never expires, as one made without one.
    if (!columns.some((c) => c.name === "expires_at")) this.#sql.exec("ALTER TABLE tokens ADD COLUMN expires_at INTEGER");
  }

  /**
   * Keeps a dashboard grant for `principal` until `expiresAt`: a login code (taken once) or a browser's session,
   * by the SHA-256 of its secret. Both go when the token they came from is revoked.
   */
  async grantDashboard(kind: DashboardGrantKind, secretSha256: string, principal: DashboardPrincipal, expiresAt: number): Promise<void> {
    this.#sql.exec("DELETE FROM dashboard_grants WHERE expires_at <= ?", Date.now());
    this.#sql.exec(
      "INSERT INTO dashboard_grants (secret_sha256, kind, token_id, principal, expires_at) VALUES (?, ?, ?, ?, ?)",
      secretSha256,
      kind,
      principal.id,
      JSON.stringify(principal),
      expiresAt,
    );
  }

  /** The principal of a live grant of `kind`; a login code is deleted as it is read, so it works once. Null: none. */
  async dashboardGrant(kind: DashboardGrantKind, secretSha256: string): Promise<DashboardPrincipal | null> {
    const sql =
      kind === "code"
        ? "DELETE FROM dashboard_grants WHERE secret_sha256 = ? AND kind = ? AND expires_at > ? RETURNING principal"
        : "SELECT principal FROM dashboard_grants WHERE secret_sha256 = ? AND kind = ? AND expires_at > ?";
    const row = this.#sql.exec<{ principal: string }>(sql, secretSha256, kind, Date.now()).toArray()[0];
    return row ? (JSON.parse(row.principal) as DashboardPrincipal) : null;
  }

  /** Ends a browser's session (log out). */
  async endDashboardSession(secretSha256: string): Promise<void> {
    this.#sql.exec("DELETE FROM dashboard_grants WHERE secret_sha256 = ? AND kind = 'session'", secretSha256);
  }

  /**
   * Stores a new token, its secret hashed (the caller made the secret and shows it once), working until `expiresAt`
   * (ms since the epoch; undefined: for good). Null when the gateway holds the most tokens it keeps. (Errors do not
   * cross a Durable Object's RPC as their class: the routes turn outcomes into errors.)
   */
  async create(
    id: string,
    secretSha256: string,
    request: Omit<TokenCreateRequest, "expiresIn" | "expiresAt">,
    createdBy: string,
    expiresAt?: number,
  ): Promise<TokenInfo | null> {
    const count = this.#sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM tokens").one().n;
    if (count >= TOKEN_DEFAULTS.maxTokens) return null;
    const scope: TokenScope = request.scope ?? "call";
    const apps = request.apps ? [...new Set(request.apps)].sort() : null;
    const name = request.name ?? `token ${id.slice(3, 9)}`;
    this.#sql.exec(
      "INSERT INTO tokens (id, name, scope, apps, env, secret_sha256, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      id,
      name,
      scope,
      apps ? JSON.stringify(apps) : null,
      request.env ?? null,
      secretSha256,
      Date.now(),
      createdBy,
      expiresAt ?? null,
    );
    return this.#info(this.#row(id)!);
  }

  /**
   * The token whose secret hashes to `secretSha256`, unless revoked; notes the use. An expired one is answered too
   * (its `expiresAt` past, its use not noted), so that its refusal can name it and say when it expired.
   */
  async verify(id: string, secretSha256: string): Promise<TokenInfo | null> {
    const row = this.#row(id);
    if (!row || row.revoked_at !== null || !sameHex(row.secret_sha256, secretSha256)) return null;
    const now = Date.now();
    if (row.expires_at !== null && row.expires_at <= now) return this.#info(row);
    if (row.last_used_at === null || now - row.last_used_at >= LAST_USED_RESOLUTION_MS) {
      this.#sql.exec("UPDATE tokens SET last_used_at = ? WHERE id = ?", now, id);
      row.last_used_at = now;
    }
    return this.#info(row);
  }

  /**
   * Whether token `id` exists, is not revoked and has not expired: what it opened still stays open (gateway/auth.ts).
   * One that has expired (and is not revoked) says when, so what it opened can say why it closes.
   */
  async liveness(id: string): Promise<TokenLiveness> {
    const row = this.#row(id);
    if (row === undefined || row.revoked_at !== null) return { live: false };
    if (row.expires_at !== null && row.expires_at <= Date.now()) return { live: false, expiredAt: row.expires_at };
    return { live: true };
  }

  /** Every token not revoked, newest first, the expired ones included (until they are revoked). */
  async list(): Promise<TokenInfo[]> {
    return this.#sql
      .exec<Row>("SELECT * FROM tokens WHERE revoked_at IS NULL ORDER BY created_at DESC")
      .toArray()
      .map((row) => this.#info(row));
  }

  /** Revokes a token; it stops working within `TOKEN_DEFAULTS.cacheMs` in every isolate. Null: no such token. */
  async revoke(id: string): Promise<TokenInfo | null> {
    const row = this.#row(id);
    if (!row || row.revoked_at !== null) return null;
    this.#sql.exec("UPDATE tokens SET revoked_at = ? WHERE id = ?", Date.now(), id);
    this.#sql.exec("DELETE FROM dashboard_grants WHERE token_id = ?", id); // its dashboard sessions end with it
    return this.#info(row);
  }

  /** The key connect tokens are signed with, made once (random, 32 bytes, hex). */
  async connectKey(): Promise<string> {
    const found = this.#sql.exec<{ value: string }>("SELECT value FROM keys WHERE name = 'connect'").toArray()[0];
    if (found) return found.value;
    const key = toHex(crypto.getRandomValues(new Uint8Array(32)));
    this.#sql.exec("INSERT INTO keys (name, value) VALUES ('connect', ?)", key);
    return key;
  }

  #row(id: string): Row | undefined {
    return this.#sql.exec<Row>("SELECT * FROM tokens WHERE id = ?", id).toArray()[0];
  }

  #info(row: Row): TokenInfo {
    return {
      id: row.id,
      name: row.name,
      scope: row.scope as TokenScope,
      apps: row.apps === null ? null : (JSON.parse(row.apps) as string[]),
      ...(row.env === null ? {} : { env: row.env }),
      createdAt: row.created_at,
      createdBy: row.created_by,
      lastUsedAt: row.last_used_at,
      ...(row.expires_at === null ? {} : { expiresAt: row.expires_at }),
    };
  }
}

/** Compares two hex strings in time that does not depend on where they differ. */
function sameHex(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
