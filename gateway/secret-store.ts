/**
 * The named secrets of a gateway: one SQLite-backed Durable Object holding
 * each secret's name, its keys (in the clear: `tandem secret list` shows
 * them) and its values sealed with AES-GCM under `TANDEM_SECRETS_KEY`
 * (gateway/secret-cipher.ts). Plaintext lives only in memory, for as long as
 * a call needs it; the store's rows on disk hold ciphertext.
 */
import { DurableObject } from "cloudflare:workers";
import { SECRET_LIMITS } from "../sdk/defaults.js";
import type { SecretInfo } from "../sdk/protocol.js";
import { gatewayConfig } from "./config.js";
import type { Env } from "./env.js";
import { importSecretsKey, openSecret, sealSecret } from "./secret-cipher.js";

type Row = { name: string; keys: string; iv: ArrayBuffer; ciphertext: ArrayBuffer; created_at: number; updated_at: number };

/** What a write came to. (Errors do not cross a Durable Object's RPC as their class: the routes turn outcomes into errors.) */
/** `replaced`: a secret of that name was there (and `force` replaced it). */
export type PutOutcome = { info: SecretInfo; replaced: boolean } | { refused: "exists" | "full" | "no_key" };

/** The values of the secrets asked for, and the names the store does not hold. */
export type ValuesOutcome = { values: Record<string, Record<string, string>>; missing: string[] } | { refused: "no_key" };

export class SecretStore extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  readonly #key: Promise<CryptoKey> | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS secrets (
        name TEXT PRIMARY KEY, keys TEXT NOT NULL, iv BLOB NOT NULL, ciphertext BLOB NOT NULL,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);`);
    const hex = gatewayConfig(env).secretsKey; // this object's entry
    this.#key = hex === undefined ? undefined : importSecretsKey(hex);
  }

  /** Stores `values` as the secret `name`, replacing one that exists only with `force`. */
  async put(name: string, values: Record<string, string>, force: boolean): Promise<PutOutcome> {
    if (!this.#key) return { refused: "no_key" };
    const found = this.#row(name);
    if (found && !force) return { refused: "exists" };
    if (!found && this.#sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM secrets").one().n >= SECRET_LIMITS.maxSecrets) return { refused: "full" };
    const sealed = await sealSecret(await this.#key, name, values);
    const now = Date.now();
    const keys = JSON.stringify(Object.keys(values).sort());
    this.#sql.exec(
      `INSERT INTO secrets (name, keys, iv, ciphertext, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET keys = excluded.keys, iv = excluded.iv, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at`,
      name,
      keys,
      sealed.iv.buffer,
      sealed.ciphertext.buffer,
      now,
      now,
    );
    return { info: info(this.#row(name)!), replaced: found !== undefined };
  }

  /** Every secret's name, keys and times, by name: never a value. */
  async list(): Promise<SecretInfo[]> {
    return this.#sql
      .exec<Row>("SELECT * FROM secrets ORDER BY name")
      .toArray()
      .map((row) => info(row));
  }

  /** Deletes the secret `name`; null when there is none. */
  async remove(name: string): Promise<SecretInfo | null> {
    const row = this.#row(name);
    if (!row) return null;
    this.#sql.exec("DELETE FROM secrets WHERE name = ?", name);
    return info(row);
  }

  /** The values of the secrets `names`, decrypted, for the gateway's own use (a call's environment); never answered over the API. */
  async values(names: string[]): Promise<ValuesOutcome> {
    if (!this.#key) return { refused: "no_key" };
    const key = await this.#key;
    const values: Record<string, Record<string, string>> = {};
    const missing: string[] = [];
    for (const name of new Set(names)) {
      const row = this.#row(name);
      if (!row) missing.push(name);
      else values[name] = await openSecret(key, name, { iv: new Uint8Array(row.iv), ciphertext: new Uint8Array(row.ciphertext) });
    }
    return { values, missing };
  }

  #row(name: string): Row | undefined {
    return this.#sql.exec<Row>("SELECT * FROM secrets WHERE name = ?", name).toArray()[0];
  }
}

function info(row: Row): SecretInfo {
  return { name: row.name, keys: JSON.parse(row.keys) as string[], createdAt: row.created_at, updatedAt: row.updated_at };
}
