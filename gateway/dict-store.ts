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
 * Versions: each write takes one more than the highest any write made before
 * it, which the rows keep themselves (read once when the object starts); the
 * `dict` row keeps it too whenever rows go, so a version is never given
 * twice. A plain put is then one statement, with no transaction around it.
 *
 * Entries leave as stored (their key's and value's JSON texts, `StoredEntry`):
 * `gateway/dicts.ts` parses them, so the answer crosses RPC as strings.
 *
 * Errors do not cross a Durable Object's RPC as their class: every method
 * answers `Outcome`, and `gateway/dicts.ts` throws the error it carries.
 */
import { DurableObject } from "cloudflare:workers";
import { DICT_LIMITS } from "../sdk/defaults.js";
import { NotFoundError, type WireError } from "../sdk/errors.js";
import type { DictAnswers, DictInfo } from "../sdk/protocol.js";
import type { Env } from "./env.js";
import { withinBudget } from "./answer-budget.js";
import { answer, NameCatalog, type Outcome } from "./store-catalog.js";

/** A dict operation as the object takes it: keys already in their canonical form, values encoded. */
export type DictCommand =
  | { op: "get" | "contains" | "pop" | "delete"; key: string }
  | { op: "put"; key: string; value: string; ttlSeconds?: number; ifAbsent?: boolean; ifVersion?: number }
  | { op: "update"; entries: { key: string; value: string }[]; ttlSeconds?: number }
  | { op: "len" | "clear" }
  | { op: "entries"; after?: string; limit: number; keysOnly: boolean };

/** The operations that only read, or (`put`) write one row in one statement: no transaction around them. */
const ONE_STATEMENT = new Set<DictCommand["op"]>(["get", "contains", "len", "entries", "put"]);

/** An entry as the object answers it: its key's canonical JSON and its value's encoded text, as stored. */
export interface StoredEntry {
  key: string;
  value?: string;
  version: number;
  expiresAt: number;
}

/** What `get` answers of an entry: its value's encoded text, version and expiry. */
export type StoredValue = Required<Omit<StoredEntry, "key">>;

/** `DictAnswers`, with entries as stored. */
export type StoredAnswers = Omit<DictAnswers, "get" | "pop" | "entries"> & {
  get: { found: boolean; entry?: StoredEntry };
  pop: { found: boolean; entry?: StoredEntry };
  entries: { entries: StoredEntry[]; next?: string };
};

/**
 * Writes an entry over the key's, in place: `INSERT OR REPLACE` deletes the old row and inserts a new one (two
 * changes to each index), which took a put about 20 µs more in bench/dict-queue.
 */
const UPSERT_ENTRY =
  "INSERT INTO entries (key, value, version, expires_at) VALUES (?, ?, ?, ?) " +
  "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version, expires_at = excluded.expires_at";

type EntryRow = { key: string; value: string; version: number; expires_at: number };
type DictRow = { name: string; version: number; created_at: number };

export class DictStore extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  readonly #catalog: NameCatalog;
  /** When the alarm is set for: undefined until read, null when none is. */
  #alarmAt: number | null | undefined;
  /** The `dict` row as last read or written here (this object is its only writer): undefined until read, null when there is none. */
  #dictRow: DictRow | null | undefined;
  /** The highest version a write made (see the top of this file): undefined until read. */
  #version: number | undefined;
  /** The expiry of the rows the running write made, for `#scheduleAlarm`. */
  #written: number | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS dict (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL, version INTEGER NOT NULL, created_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL, expires_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS entries_expiry ON entries(expires_at);
      CREATE TABLE IF NOT EXISTS dropped (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);`);
    this.#catalog = new NameCatalog(this.#sql, DICT_LIMITS.maxDicts);
  }

  /** Makes the dict, unless it exists: `created` says which. */
  async create(name: string): Promise<Outcome<{ created: boolean; info: DictInfo }>> {
    const existing = this.#dict();
    if (existing) return { ok: { created: false, info: this.#info(existing) } };
    // Versions go on from the highest a dropped dict of this name gave: an `ifVersion` read before the drop matches none.
    const dropped = this.#sql.exec<{ version: number }>("SELECT version FROM dropped").toArray()[0]?.version ?? 0;
    this.#sql.exec("INSERT INTO dict (id, name, version, created_at) VALUES (1, ?, ?, ?)", name, dropped, Date.now());
    this.#dictRow = undefined;
    this.#version = undefined;
    return { ok: { created: true, info: this.#info(this.#dict()!) } };
  }

  async info(name: string): Promise<Outcome<DictInfo>> {
    return answer(() => this.#info(this.#need(name)));
  }

  /** Forgets the dict and every entry. */
  async drop(name: string): Promise<Outcome<DictInfo>> {
    return answer(() => {
      const dict = this.#need(name);
      const info = this.#info(dict);
      this.#sql.exec("INSERT OR REPLACE INTO dropped (id, version) VALUES (1, ?)", this.#lastVersion(dict));
      this.#sql.exec("DELETE FROM entries; DELETE FROM dict;");
      this.#dictRow = null;
      this.#version = undefined;
      return info;
    });
  }

  /** One operation on the entries, in one transaction (one that is one statement needs none). */
  async run(name: string, command: DictCommand): Promise<Outcome<StoredAnswers[DictCommand["op"]]>> {
    let outcome: Outcome<StoredAnswers[DictCommand["op"]]>;
    try {
      outcome = ONE_STATEMENT.has(command.op)
        ? answer(() => this.#run(this.#need(name), command))
        : answer(() => this.ctx.storage.transactionSync(() => this.#run(this.#need(name), command)));
    } catch (err) {
      this.#rolledBack();
      throw err;
    }
    const written = this.#written;
    this.#written = undefined;
    if ("error" in outcome) this.#rolledBack();
    // Only a write whose expiry is before the alarm's (or with no alarm set) moves it.
    else if (written !== undefined && !(this.#alarmAt != null && this.#alarmAt <= written)) await this.#scheduleAlarm(written);
    return outcome;
  }

  /**
   * `run`'s get, answered flat: the key's value text, version and expiry, `null` when it has none, or the error. The
   * most frequent operation's answer crosses RPC as one small object (bench/dict-queue, get).
   */
  async get(name: string, key: string): Promise<StoredValue | null | { error: WireError }> {
    const outcome = answer(() => {
      this.#need(name);
      return this.#entry(key, Date.now());
    });
    if ("error" in outcome) return outcome;
    const row = outcome.ok;
    return row ? { value: row.value, version: row.version, expiresAt: row.expires_at } : null;
  }

  /** Deletes the expired rows (reads skip them already), then sets the alarm for the next expiry. */
  override async alarm(): Promise<void> {
    const dict = this.#dict();
    this.ctx.storage.transactionSync(() => {
      if (dict) this.#keepVersion(dict);
      this.#sql.exec("DELETE FROM entries WHERE expires_at <= ?", Date.now());
    });
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

  #run(dict: DictRow, command: DictCommand): StoredAnswers[DictCommand["op"]] {
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
        this.#keepVersion(dict);
        this.#sql.exec("DELETE FROM entries WHERE key = ?", command.key);
        return { found: true, entry: entryOf(row, true) };
      }
      case "delete": {
        const row = this.#entry(command.key, now);
        this.#keepVersion(dict);
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
        this.#keepVersion(dict);
        this.#sql.exec("DELETE FROM entries");
        return { removed };
      }
      case "entries": {
        const rows = this.#sql.exec<EntryRow>(
          "SELECT key, value, version, expires_at FROM entries WHERE key > ? AND expires_at > ? ORDER BY key LIMIT ?",
          command.after ?? "",
          now,
          command.limit + 1,
        );
        const chars = (row: EntryRow) => row.key.length + (command.keysOnly ? 0 : row.value.length);
        const { taken: page, more } = withinBudget(rows, chars, DICT_LIMITS.maxAnswerChars, command.limit);
        const entries = page.map((row) => entryOf(row, !command.keysOnly));
        return more ? { entries, next: page[page.length - 1]!.key } : { entries };
      }
    }
  }

  /** After a write that failed (and was rolled back): what this object keeps of the dict row and the versions is read again. */
  #rolledBack(): void {
    this.#dictRow = undefined;
    this.#version = undefined;
  }

  /** Writes entries with the dict's next version; returns it. */
  #write(dict: DictRow, entries: { key: string; value: string }[], ttlSeconds: number | undefined, now: number): number {
    const version = this.#lastVersion(dict) + 1;
    const expiresAt = now + Math.round((ttlSeconds ?? DICT_LIMITS.defaultTtlSeconds) * 1000);
    for (const { key, value } of entries) this.#sql.exec(UPSERT_ENTRY, key, value, version, expiresAt);
    this.#version = version;
    this.#written = expiresAt;
    return version;
  }

  /** The highest version a write made: the rows' highest, or the `dict` row's when rows that held it went. */
  #lastVersion(dict: DictRow): number {
    this.#version ??= Math.max(dict.version, this.#sql.exec<{ v: number | null }>("SELECT MAX(version) AS v FROM entries").one().v ?? 0);
    return this.#version;
  }

  /** Before rows go: the `dict` row keeps the highest version, which they may hold. */
  #keepVersion(dict: DictRow): void {
    const version = this.#lastVersion(dict);
    if (dict.version === version) return;
    this.#sql.exec("UPDATE dict SET version = ? WHERE id = 1", version);
    dict.version = version;
  }

  /** The key's row, unless it expired. */
  #entry(key: string, now: number): EntryRow | undefined {
    // The first row's columns as they are (`raw`): cheaper than a row object of each, measured in bench/dict-queue.
    const row = this.#sql.exec<Omit<EntryRow, "key">>("SELECT value, version, expires_at FROM entries WHERE key = ?", key).raw().next();
    if (row.done) return undefined;
    const [value, version, expiresAt] = row.value as [string, number, number];
    return expiresAt > now ? { key, value, version, expires_at: expiresAt } : undefined;
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

/**
 * The 404 of a dict that is not there. The object knows its name, not its environment: the gateway, which does,
 * says it again with `where` (`lookedIn`), so that the message names the environment and the command's `--env`.
 */
export function missingDict(name: string, where: { words: string; flag: string } = { words: "", flag: "" }): NotFoundError {
  return new NotFoundError(
    `no dict named "${name}"${where.words} (tandem dict create ${name}${where.flag} makes it; Dict.fromName("${name}", { createIfMissing: true }) and POST /v1/dicts too)`,
    { dict: name, missing: true },
  );
}

function entryOf(row: EntryRow, withValue: boolean): StoredEntry {
  return withValue
    ? { key: row.key, value: row.value, version: row.version, expiresAt: row.expires_at }
    : { key: row.key, version: row.version, expiresAt: row.expires_at };
}
