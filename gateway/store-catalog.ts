/**
 * What the `DictStore` and `QueueStore` Durable Objects share: an answer that
 * carries a Tandem error across RPC (`Outcome`, as `VolumeStore` answers),
 * and the catalog of names one object of each class keeps.
 */
import { TandemError, toWireError } from "../sdk/errors.js";
import type { Outcome } from "./volume-store.js";

export type { Outcome };

/** Stubs by object name, for each piece of work that made them (see `stubIn`). */
const stubsOfWork = new WeakMap<object, Map<string, unknown>>();

/**
 * The stub `make` gives for `objectName`, made once for the piece of work `work` (a request's or a call's
 * `RunContext`): a stub belongs to the request it was made in, so it is kept no longer than `work` is, and
 * without `work` (the HTTP routes, one operation a request) one is made each time. A dict or queue used many
 * times in one handler then pays for its stub once.
 */
export function stubIn<T>(work: object | undefined, objectName: string, make: () => T): T {
  if (!work) return make();
  let stubs = stubsOfWork.get(work);
  if (!stubs) stubsOfWork.set(work, (stubs = new Map()));
  let stub = stubs.get(objectName) as T | undefined;
  if (stub === undefined) stubs.set(objectName, (stub = make()));
  return stub;
}

/** The name of the catalog object of a class (names match `NAME_PATTERN`, so none can be it). */
export const STORE_CATALOG = "~catalog";

/** Runs `work`, answering a Tandem error it throws as the `Outcome`'s error; any other error is the object's own fault. */
export function answer<T>(work: () => T): Outcome<T> {
  try {
    return { ok: work() };
  } catch (err) {
    if (err instanceof TandemError) return { error: toWireError(err) };
    throw err;
  }
}

/** The names a gateway holds of one kind, in a `catalog` table of the object's SQLite, up to `max`. */
export class NameCatalog {
  constructor(
    private readonly sql: SqlStorage,
    private readonly max: number,
  ) {
    sql.exec("CREATE TABLE IF NOT EXISTS catalog (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL)");
  }

  /** Adds a name; false when the catalog holds `max` already. */
  add(name: string, createdAt: number): boolean {
    if (this.sql.exec("SELECT 1 FROM catalog WHERE name = ?", name).toArray().length > 0) return true;
    if (this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM catalog").one().n >= this.max) return false;
    this.sql.exec("INSERT INTO catalog (name, created_at) VALUES (?, ?)", name, createdAt);
    return true;
  }

  remove(name: string): void {
    this.sql.exec("DELETE FROM catalog WHERE name = ?", name);
  }

  list(): string[] {
    return this.sql
      .exec<{ name: string }>("SELECT name FROM catalog ORDER BY name")
      .toArray()
      .map((r) => r.name);
  }
}
