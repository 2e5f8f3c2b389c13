/**
 * `Dict`: small shared state, kept by the gateway in one Durable Object per
 * dict, strongly consistent (docs/dict-queue.md). Keys are strings or JSON
 * values, compared as canonical JSON; values are anything the call codec
 * carries (`Date`, `Map`, `Set`, bytes, `BigInt`…), up to 1 MiB each. An
 * entry is dropped 7 days after its last write unless the write gave a
 * `ttlSeconds`. A handle is lazy: `Dict.fromName` sends nothing.
 */
import { LazyBackend } from "./lazy-backend.js";
import { DICT_LIMITS } from "./defaults.js";
import { InvalidOptionsError } from "./errors.js";
import { DICT_NAME_PATTERN, DictRequestSchemas, canonicalKey, decodeValue, type DictEntry, type DictInfo, type DictOp } from "./protocol.js";
import {
  checkedPageSize,
  checkedRequest,
  dictBackend,
  encodeStored,
  requestBatches,
  type DictBackend,
  type DictRequests,
  type StoreOptions,
} from "./store-client.js";

export interface DictOptions extends StoreOptions {
  /** Make the dict on first use when it does not exist (needs a token of scope `deploy` over HTTP). */
  createIfMissing?: boolean;
}

/** How `put` writes. */
export interface DictPutOptions {
  /** Seconds the entry lives from this write (default 7 days). */
  ttlSeconds?: number;
  /** Write only when the key holds no entry; of many racing writers one wins: a lock. */
  ifAbsent?: boolean;
  /** Write only when the key's entry has this version (`getEntry`): a compare-and-swap. */
  ifVersion?: number;
}

/** An entry with what a conditional write needs: its version, and when it expires. */
export interface DictEntryInfo<V = unknown> {
  value: V;
  version: number;
  /** Ms since the epoch. */
  expiresAt: number;
}

/**
 * A named dict. Its key and value types are yours to name (`Dict.fromName<string, Date>(...)`): they type `get`,
 * `put` and the rest, and are not checked when values are read back (default: `unknown`).
 * @example
 * const seen = Dict.fromName<string, Date>("seen", { createIfMissing: true });
 * if (await seen.put(url, new Date(), { ifAbsent: true })) await crawl(url); // only one caller wins
 * for await (const [url, when] of seen.items()) console.log(url, when);
 */
export class Dict<K = unknown, V = unknown> {
  readonly name: string;
  readonly #store: LazyBackend<DictBackend>;

  private constructor(name: string, options: DictOptions) {
    this.name = name;
    this.#store = new LazyBackend(() => dictBackend(options), name, options.createIfMissing ?? false);
  }

  /** A handle on the dict `name`; nothing is sent until its first operation. */
  static fromName<K = unknown, V = unknown>(name: string, options: DictOptions = {}): Dict<K, V> {
    if (typeof name !== "string" || !DICT_NAME_PATTERN.test(name)) {
      throw new InvalidOptionsError(`"${String(name)}" is not a dict name: letters, digits, '-' and '_', up to 64, starting with a letter or digit`);
    }
    return new Dict<K, V>(name, options);
  }

  /** Makes a dict; `existOk` answers an existing one instead of refusing it. Needs a token of scope `deploy` over HTTP. */
  static async create(name: string, options: StoreOptions & { existOk?: boolean } = {}): Promise<DictInfo> {
    return Dict.fromName(name, options)
      .#backendOf()
      .create(name, options.existOk ?? false);
  }

  /** Every dict of the gateway, with its size. */
  static async list(options: StoreOptions = {}): Promise<DictInfo[]> {
    return dictBackend(options).list();
  }

  /** Deletes a dict and its entries. Needs a token of scope `deploy` over HTTP. */
  static async delete(name: string, options: StoreOptions = {}): Promise<DictInfo> {
    return Dict.fromName(name, options).#backendOf().delete(name);
  }

  /** The dict's size and when it was made. */
  async info(): Promise<DictInfo> {
    return (await this.#ready_()).info(this.name);
  }

  /** The key's value, or `fallback` (default `undefined`) when it has none. */
  get<T = V>(key: K): Promise<T | undefined>;
  /** With a fallback: the key's value, else `fallback` (typed as either: `get("n", 0)` is a number, never undefined). */
  get<T = V, F = T>(key: K, fallback: F): Promise<NoInfer<T> | F>;
  async get<T = V>(key: K, fallback?: T): Promise<T | undefined> {
    const { found, entry } = await this.#op("get", { key: checkedKey(key) });
    return found ? (valueOf(entry!) as T) : fallback;
  }

  /** The key's value with its version (for `put`'s `ifVersion`) and expiry, or `undefined`. */
  async getEntry<T = V>(key: K): Promise<DictEntryInfo<T> | undefined> {
    const { found, entry } = await this.#op("get", { key: checkedKey(key) });
    return found ? { value: valueOf(entry!) as T, version: entry!.version, expiresAt: entry!.expiresAt } : undefined;
  }

  /**
   * Writes the key's value; answers whether it wrote (an `ifAbsent` or
   * `ifVersion` put may not). A value over 1 MiB as encoded is a `ValueTooLargeError`; a function or a symbol in it
   * an `InvalidArgumentError`, as in a call's argument.
   */
  async put(key: K, value: V, options: DictPutOptions = {}): Promise<boolean> {
    const request = { key: checkedKey(key), value: encodeStored("dict", this.name, value, `dict "${this.name}" put: the value`), ...options };
    // Without options, the request is a key and an encoded value, which the schema takes as they are.
    const checked = hasOptions(options) ? checkedRequest(DictRequestSchemas.put, request, `dict "${this.name}" put`) : request;
    return (await this.#op("put", checked)).written;
  }

  /** Whether the key has a value. */
  async contains(key: K): Promise<boolean> {
    return (await this.#op("contains", { key: checkedKey(key) })).found;
  }

  /** Removes the key's entry and answers its value, or `fallback` when it had none. */
  async pop<T = V>(key: K, fallback?: T): Promise<T | undefined> {
    const { found, entry } = await this.#op("pop", { key: checkedKey(key) });
    return found ? (valueOf(entry!) as T) : fallback;
  }

  /** Removes the key's entry; answers whether it had one. */
  async delete(key: K): Promise<boolean> {
    return (await this.#op("delete", { key: checkedKey(key) })).found;
  }

  /** Writes many entries at once (a `Map`, an object, or `[key, value]` pairs), in batches of at most 1,000 each one write. */
  async update(
    entries: Map<K, V> | (string extends K ? Record<string, V> : K extends string ? Partial<Record<K, V>> : never) | Iterable<readonly [K, V]>,
    options: { ttlSeconds?: number } = {},
  ): Promise<number> {
    const pairs: (readonly [unknown, unknown])[] =
      entries instanceof Map || Symbol.iterator in (entries as object) ? [...(entries as Iterable<readonly [unknown, unknown]>)] : Object.entries(entries);
    let written = 0;
    const encoded = pairs.map(([key, value]) => ({
      key: checkedKey(key),
      value: encodeStored("dict", this.name, value, `dict "${this.name}" update: the value of key ${JSON.stringify(key)}`),
    }));
    for (const batch of requestBatches(encoded, DICT_LIMITS.maxEntriesPerUpdate)) {
      const request = checkedRequest(DictRequestSchemas.update, { entries: batch, ...options }, `dict "${this.name}" update`);
      written += (await this.#op("update", request)).written;
    }
    return written;
  }

  /** How many entries it holds (expired ones not counted). */
  async len(): Promise<number> {
    return (await this.#op("len", {})).len;
  }

  /** Removes every entry; answers how many there were (expired ones not counted). */
  async clear(): Promise<number> {
    return (await this.#op("clear", {})).removed;
  }

  /** Its keys, in canonical-JSON order, a page at a time. */
  async *keys<T = K>(options: { pageSize?: number } = {}): AsyncGenerator<T> {
    for await (const entry of this.#entries(true, options.pageSize)) yield entry.key as T;
  }

  /** Its values, in the keys' order, a page at a time. */
  async *values<T = V>(options: { pageSize?: number } = {}): AsyncGenerator<T> {
    for await (const entry of this.#entries(false, options.pageSize)) yield valueOf(entry) as T;
  }

  /** Its `[key, value]` pairs, in the keys' order, a page at a time. */
  async *items<TK = K, TV = V>(options: { pageSize?: number } = {}): AsyncGenerator<[TK, TV]> {
    for await (const entry of this.#entries(false, options.pageSize)) yield [entry.key as TK, valueOf(entry) as TV];
  }

  async *#entries(keysOnly: boolean, pageSize: number = DICT_LIMITS.pageSize): AsyncGenerator<DictEntry> {
    checkedPageSize(pageSize, DICT_LIMITS.maxPageSize, `dict "${this.name}" pages`);
    let after: string | undefined;
    for (;;) {
      const request = checkedRequest(
        DictRequestSchemas.entries,
        { limit: pageSize, keysOnly, ...(after === undefined ? {} : { after }) },
        `dict "${this.name}" pages`,
      );
      const page = await this.#op("entries", request);
      yield* page.entries;
      if (page.next === undefined) return;
      after = page.next;
    }
  }

  #op<O extends DictOp>(op: O, request: DictRequests[O]) {
    return this.#store.use((backend) => backend.op(this.name, op, request));
  }

  #backendOf(): DictBackend {
    return this.#store.backend();
  }

  /** The backend, after making the dict once when `createIfMissing` says so. */
  #ready_(): Promise<DictBackend> {
    return this.#store.ready();
  }
}

/** A key as it travels: checked to be a string or JSON value here, so a bad one fails before anything is sent. */
function checkedKey(key: unknown): unknown {
  const checked = canonicalKey(key);
  if ("problem" in checked) throw new InvalidOptionsError(`a dict key ${checked.problem}`);
  return key;
}

function hasOptions(options: object): boolean {
  for (const _ in options) return true;
  return false;
}

function valueOf(entry: DictEntry): unknown {
  return decodeValue(entry.value!.json, entry.value!.meta);
}
