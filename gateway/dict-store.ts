/**
 * The `DictStore` Durable Object (SQLite): one object per dict holds its
 * entries, each under its key's canonical JSON, with the value as the call
 * codec encoded it (stored as text, never decoded here), the version of the
 * write that made it and when it expires. One object serves its dict one
 * request at a time, so a conditional put (`ifAbsent`, `ifVersion`) is a
 * compare-and-swap: of fifty racing `ifAbsent` writers, one writes.
 *
 * An expired entry is gone for every read at once; the object's alarm,
 * set for the soonest expiry, deletes the rows. One more object of the class,
 * the catalog, lists the dicts by name.
 *
 * Errors do not cross a Durable Object's RPC as their class: every method
 * answers `Outcome`, and `gateway/dicts.ts` throws the error it carries.
 */
import { DurableObject } from "cloudflare:workers";
import { DICT_LIMITS } from "../sdk/defaults.js";
import { NotFoundError } from "../sdk/errors.js";
import type { DictAnswers, DictEntry, DictInfo, EncodedValue } from "../sdk/protocol.js";
import type { Env } from "./env.js";
import { answer, NameCatalog, type Outcome } from "./store-catalog.js";

/** A dict operation as the object takes it: keys already in their canonical form, values encoded. */
export type DictCommand =
  | { op: "get" | "contains" | "pop" | "delete"; key: string }
  | { op: "put"; key: string; value: string; ttlSeconds?: number; ifAbsent?: boolean; ifVersion?: number }
  | { op: "update"; entries: { key: string; value: string }[]; ttlSeconds?: number }
  | { op: "len" | "clear" }
  | { op: "entries"; after?: string; limit: number; keysOnly: boolean };

/** The operations that only read, each one statement: no transaction around them. */
const READS = new Set<DictCommand["op"]>(["get", "contains", "len", "entries"]);

type EntryRow = { key: string; value: string; version: number; expires_at: number };
type DictRow = { name: string; version: number; created_at: number };

export class DictStore extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  readonly #catalog: NameCatalog;
  /** When the alarm is set for: undefined until read, null when none is. */
  #alarmAt: number | null | undefined;
  /** The `dict` row as last read or written here (this object is its only writer): undefined until read, null when there is none. */
  #dictRow: DictRow | null | undefined;
  /** The expiry of the rows the running write made, for `#scheduleAlarm`. */
  #written: number | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS dict (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL, version INTEGER NOT NULL, created_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL, expires_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS entries_expiry ON entries(expires_at);`);
    this.#catalog = new NameCatalog(this.#sql, DICT_LIMITS.maxDicts);
  }

  /** Makes the dict, unless it exists: `created` says which. */
  async create(name: string): Promise<Outcome<{ created: boolean; info: DictInfo }>> {
    const existing = this.#dict();
    if (existing) return { ok: { created: false, info: this.#info(existing) } };
    this.#sql.exec("INSERT INTO dict (id, name, version, created_at) VALUES (1, ?, 0, ?)", name, Date.now());
    this.#dictRow = undefined;
    return { ok: { created: true, info: this.#info(this.#dict()!) } };
  }

  async info(name: string): Promise<Outcome<DictInfo>> {
    return answer(() => this.#info(this.#need(name)));
  }

  /** Forgets the dict and every entry. */
  async drop(name: string): Promise<Outcome<DictInfo>> {
    return answer(() => {
      const info = this.#info(this.#need(name));
      this.#sql.exec("DELETE FROM entries; DELETE FROM dict;");
      this.#dictRow = null;
      return info;
    });
  }

  /** One operation on the entries, in one transaction (a read, one statement, needs none). */
  async run(name: string, command: DictCommand): Promise<Outcome<DictAnswers[DictCommand["op"]]>> {
    if (READS.has(command.op)) return answer(() => this.#run(this.#need(name), command));
    let outcome: Outcome<DictAnswers[DictCommand["op"]]>;
    try {
      outcome = answer(() => this.ctx.storage.transactionSync(() => this.#run(this.#need(name), command)));
    } catch (err) {
      this.#dictRow = undefined; // rolled back: its version is read again
      throw err;
    }
    const written = "ok" in outcome ? this.#written : undefined;
    this.#written = undefined;
    if ("error" in outcome) this.#dictRow = undefined;
    if (written !== undefined) await this.#scheduleAlarm(written);
    return outcome;
  }

  /** Deletes the expired rows (reads skip them already), then sets the alarm for the next expiry. */
  override async alarm(): Promise<void> {
    this.#sql.exec("DELETE FROM entries WHERE expires_at <= ?", Date.now());
    this.#alarmAt = null;
    await this.#scheduleAlarm(undefined);
  }

  // The catalog: one object of the class, named `STORE_CATALOG`, lists the dicts.
  async catalogAdd(name: string, createdAt: number): Promise<boolean> {
    return this.#catalog.add(name, createdAt);
  }

  async catalogRemove(name: string): Promise<void> {
    this.#catalog.remove(name);
  }

  async catalogList(): Promise<string[]> {
    return this.#catalog.list();
  }

  // -------------------------------------------------------------------------

  #run(dict: DictRow, command: DictCommand): DictAnswers[DictCommand["op"]] {
    const now = Date.now();
    switch (command.op) {
      case "get":
      case "contains": {
        const row = this.#entry(command.key, now);
        if (command.op === "contains") return { found: row !== undefined };
        return row ? { found: true, entry: entryOf(row, true) } : { found: false };
      }
      case "pop": {
        const row = this.#entry(command.key, now);
        if (!row) return { found: false };
        this.#sql.exec("DELETE FROM entries WHERE key = ?", command.key);
        return { found: true, entry: entryOf(row, true) };
      }
      case "delete": {
        const row = this.#entry(command.key, now);
        this.#sql.exec("DELETE FROM entries WHERE key = ?", command.key);
        return { found: row !== undefined };
      }
      case "put": {
        if (command.ifAbsent || command.ifVersion !== undefined) {
          const row = this.#entry(command.key, now);
          if (command.ifAbsent && row) return { written: false, version: row.version };
          if (command.ifVersion !== undefined && row?.version !== command.ifVersion) {
            return row ? { written: false, version: row.version } : { written: false };
          }
        }
        const version = this.#write(dict, [command], command.ttlSeconds, now);
        return { written: true, version };
      }
      case "update": {
        if (command.entries.length > 0) this.#write(dict, command.entries, command.ttlSeconds, now);
        return { written: command.entries.length };
      }
      case "len":
        return { len: this.#len(now) };
      case "clear": {
        const removed = this.#len(now); // expired rows go too, uncounted: they were gone for every read already
        this.#sql.exec("DELETE FROM entries");
        return { removed };
      }
      case "entries": {
        const rows = this.#sql
          .exec<EntryRow>(
            "SELECT key, value, version, expires_at FROM entries WHERE key > ? AND expires_at > ? ORDER BY key LIMIT ?",
            command.after ?? "",
            now,
            command.limit + 1,
          )
          .toArray();
        const page = rows.slice(0, command.limit);
        const entries = page.map((row) => entryOf(row, !command.keysOnly));
        return rows.length > command.limit ? { entries, next: page[page.length - 1]!.key } : { entries };
      }
    }
  }

  /** Writes entries with the dict's next version; returns it. */
  #write(dict: DictRow, entries: { key: string; value: string }[], ttlSeconds: number | undefined, now: number): number {
    const version = dict.version + 1;
    const expiresAt = now + Math.round((ttlSeconds ?? DICT_LIMITS.defaultTtlSeconds) * 1000);
    for (const { key, value } of entries) {
      this.#sql.exec("INSERT OR REPLACE INTO entries (key, value, version, expires_at) VALUES (?, ?, ?, ?)", key, value, version, expiresAt);
    }
    this.#sql.exec("UPDATE dict SET version = ? WHERE id = 1", version);
    dict.version = version;
    this.#written = expiresAt;
    return version;
  }

  #entry(key: string, now: number): EntryRow | undefined {
    return this.#sql.exec<EntryRow>("SELECT key, value, version, expires_at FROM entries WHERE key = ? AND expires_at > ?", key, now).toArray()[0];
  }

  #len(now: number): number {
    return this.#sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM entries WHERE expires_at > ?", now).one().n;
  }

  #dict(): DictRow | undefined {
    if (this.#dictRow === undefined) this.#dictRow = this.#sql.exec<DictRow>("SELECT name, version, created_at FROM dict WHERE id = 1").toArray()[0] ?? null;
    return this.#dictRow ?? undefined;
  }

  #need(name: string): DictRow {
    const dict = this.#dict();
    if (!dict) throw missingDict(name);
    return dict;
  }

  #info(dict: DictRow): DictInfo {
    return { name: dict.name, len: this.#len(Date.now()), createdAt: dict.created_at };
  }

  /**
   * Sets the alarm for the soonest expiry, unless it is set for sooner. `written`: the expiry of the rows a write
   * just made, when that is all that changed (so an alarm set for no later than it stands as it is).
   */
  async #scheduleAlarm(written: number | undefined): Promise<void> {
    if (this.#alarmAt === undefined) this.#alarmAt = await this.ctx.storage.getAlarm();
    if (written !== undefined && this.#alarmAt !== null && this.#alarmAt <= written) return;
    const next = this.#sql.exec<{ t: number | null }>("SELECT MIN(expires_at) AS t FROM entries").one().t;
    if (next === null) return;
    if (this.#alarmAt === null || next < this.#alarmAt) {
      await this.ctx.storage.setAlarm(next);
      this.#alarmAt = next;
    }
  }
}

export function missingDict(name: string): NotFoundError {
  return new NotFoundError(`no dict named "${name}" (Dict.fromName("${name}", { createIfMissing: true }) makes it; POST /v1/dicts too)`, { dict: name });
}

function entryOf(row: EntryRow, withValue: boolean): DictEntry {
  return {
    key: JSON.parse(row.key) as unknown,
    ...(withValue ? { value: JSON.parse(row.value) as EncodedValue } : {}),
    version: row.version,
    expiresAt: row.expires_at,
  };
}
