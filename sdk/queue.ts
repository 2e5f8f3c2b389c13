/**
 * `Queue`: work handed between functions and tiers, kept by the gateway in
 * one Durable Object per queue, durable, first in, first out in each
 * partition (docs/dict-queue.md). Items are anything the call codec carries,
 * up to 1 MiB each. A get blocks until an item comes (a put from anywhere
 * wakes it at once) or its timeout runs out, then answers `null`. A get with
 * a `lease` hands out an item that comes back to the queue unless it is
 * `ack()`ed in time, so a worker that dies loses nothing.
 */
import { LazyBackend } from "./lazy-backend.js";
import { QUEUE_LIMITS } from "./defaults.js";
import { InvalidOptionsError, TandemError, fromWireError, toWireError } from "./errors.js";
import { QUEUE_NAME_PATTERN, QueueRequestSchemas, decodeValue, type QueueInfo, type QueueItem, type QueueOp } from "./protocol.js";
import {
  checkedPageSize,
  checkedRequest,
  encodeStored,
  queueBackend,
  requestBatches,
  type QueueBackend,
  type QueueRequests,
  type StoreOptions,
} from "./store-client.js";

export interface QueueOptions extends StoreOptions {
  /** Make the queue on first use when it does not exist (needs a token of scope `deploy` over HTTP). */
  createIfMissing?: boolean;
}

/** How a get waits and takes. */
export interface QueueGetOptions {
  /** How long to wait for an item, in ms (default: until one comes; 0: answer at once). */
  timeoutMs?: number;
  /** The partition to take from (default: the default partition). */
  partition?: string;
  /** Seconds the item is leased for: it comes back to the queue unless acked by then. */
  lease?: number;
}

/**
 * An item taken on a lease: `ack()` it once it is done, before `leaseUntil`,
 * or it goes back to the queue (in its place) for another get.
 */
export interface LeasedItem<T = unknown> {
  value: T;
  /** The lease's id, for `queue.ack`. */
  lease: string;
  /** When the lease runs out, ms since the epoch (`extend` moves it). */
  leaseUntil: number;
  /** Removes the item for good; false when the lease had run out (the item may be someone else's now). */
  ack(): Promise<boolean>;
  /**
   * Keeps the item `seconds` more from now, for work that takes longer than its lease; false when the lease had
   * run out already (the item went back to the queue, and may be someone else's now).
   * @example const beat = setInterval(() => void job.extend(60), 30_000); // while a long job runs
   */
  extend(seconds: number): Promise<boolean>;
}

/**
 * A named queue. Its item type is yours to name (`Queue.fromName<Job>(...)`): it types `put`, `get` and the rest, and
 * is not checked when items are read back (default: `unknown`).
 * @example
 * const jobs = Queue.fromName<{ url: string }>("jobs", { createIfMissing: true });
 * await jobs.put({ url });                                  // from an edge function
 * const job = await jobs.get({ lease: 60, timeoutMs: 30_000 }); // in a worker
 * if (job) { await work(job.value); await job.ack(); }
 */
export class Queue<T = unknown> {
  readonly name: string;
  readonly #store: LazyBackend<QueueBackend>;

  private constructor(name: string, options: QueueOptions) {
    this.name = name;
    this.#store = new LazyBackend(() => queueBackend(options), name, options.createIfMissing ?? false);
  }

  /** A handle on the queue `name`; nothing is sent until its first operation. */
  static fromName<T = unknown>(name: string, options: QueueOptions = {}): Queue<T> {
    if (typeof name !== "string" || !QUEUE_NAME_PATTERN.test(name)) {
      throw new InvalidOptionsError(`"${String(name)}" is not a queue name: letters, digits, '-' and '_', up to 64, starting with a letter or digit`);
    }
    return new Queue<T>(name, options);
  }

  /** Makes a queue; `existOk` answers an existing one instead of refusing it. Needs a token of scope `deploy` over HTTP. */
  static async create(name: string, options: StoreOptions & { existOk?: boolean } = {}): Promise<QueueInfo> {
    return Queue.fromName(name, options)
      .#backendOf()
      .create(name, options.existOk ?? false);
  }

  /** Every queue of the gateway, with its length. */
  static async list(options: StoreOptions = {}): Promise<QueueInfo[]> {
    return queueBackend(options).list();
  }

  /** Deletes a queue and its items. Needs a token of scope `deploy` over HTTP. */
  static async delete(name: string, options: StoreOptions = {}): Promise<QueueInfo> {
    return Queue.fromName(name, options).#backendOf().delete(name);
  }

  /** Its items waiting and leased, and its partitions. */
  async info(): Promise<QueueInfo> {
    return (await this.#ready_()).info(this.name);
  }

  /**
   * Adds an item at the end of a partition. A full partition is a `QueueFullError`; an item over 1 MiB encoded a
   * `ValueTooLargeError`; a function or a symbol in it an `InvalidArgumentError`, as in a call's argument.
   */
  async put(value: T, options: { partition?: string } = {}): Promise<void> {
    await this.putMany([value], options);
  }

  /**
   * Adds items in order, in batches of at most 1,000 (each batch all or none). A batch refused (a full queue, say)
   * fails the call, and its error says how many of the items went in before it (`details.put`): those stay.
   */
  async putMany(values: readonly T[], options: { partition?: string } = {}): Promise<void> {
    let put = 0;
    for (const batch of requestBatches(
      values.map((v, i) => encodeStored("queue", this.name, v, `queue "${this.name}" put: ${values.length === 1 ? "the item" : `item ${i + 1}`}`)),
      QUEUE_LIMITS.maxItemsPerRequest,
    )) {
      const request = { values: batch, ...options };
      try {
        await this.#op("put", checkedRequest(QueueRequestSchemas.put, request, `queue "${this.name}" put`));
      } catch (err) {
        // One batch: its error says it all. Of several, the caller is told what came of all it asked for.
        if (!(err instanceof TandemError) || (put === 0 && batch.length === values.length)) throw err;
        const batches = `each batch of ${QUEUE_LIMITS.maxItemsPerRequest} is all or none`;
        const said =
          put === 0
            ? `; none of these ${values.length} items went in (${batches})`
            : `; the first ${put} of these ${values.length} items went in and stay (${batches}), the rest did not`;
        throw fromWireError({ ...toWireError(err), message: err.message + said, details: { ...err.details, put } });
      }
      put += batch.length;
    }
  }

  /**
   * The oldest item of the partition, waiting for one up to `timeoutMs`; `null` when none came (an item that is `null`
   * reads the same: `getMany`'s `[]`, or a lease's `LeasedItem`, tells them apart). With `lease`, a `LeasedItem`.
   */
  get<U = T>(options: QueueGetOptions & { lease: number }): Promise<LeasedItem<U> | null>;
  get<U = T>(options?: QueueGetOptions & { lease?: undefined }): Promise<U | null>;
  /** Options whose `lease` may or may not be there (a variable of `QueueGetOptions`): either, as it turns out. */
  get<U = T>(options: QueueGetOptions): Promise<U | LeasedItem<U> | null>;
  async get<U = T>(options: QueueGetOptions = {}): Promise<U | LeasedItem<U> | null> {
    const [item] = await this.#take(1, options);
    if (!item) return null;
    return options.lease === undefined ? (decodeValue(item.value.json, item.value.meta) as U) : this.#leased<U>(item);
  }

  /**
   * Up to `n` of the oldest items, waiting for at least one up to `timeoutMs`; `[]` when none came. More than a
   * request takes (`QUEUE_LIMITS.maxItemsPerRequest`) are asked for in several, one after another.
   */
  getMany<U = T>(n: number, options: QueueGetOptions & { lease: number }): Promise<LeasedItem<U>[]>;
  getMany<U = T>(n: number, options?: QueueGetOptions & { lease?: undefined }): Promise<U[]>;
  getMany<U = T>(n: number, options: QueueGetOptions): Promise<(U | LeasedItem<U>)[]>;
  async getMany<U = T>(n: number, options: QueueGetOptions = {}): Promise<(U | LeasedItem<U>)[]> {
    const items = await this.#take(n, options);
    return items.map((item) => (options.lease === undefined ? (decodeValue(item.value.json, item.value.meta) as U) : this.#leased<U>(item)));
  }

  /** Removes leased items for good; answers how many leases were still held. */
  async ack(...leases: (string | LeasedItem)[]): Promise<number> {
    if (leases.length === 0) return 0;
    const ids = leases.map((l) => (typeof l === "string" ? l : l.lease));
    return (await this.#op("ack", checkedRequest(QueueRequestSchemas.ack, { leases: ids }, `queue "${this.name}" ack`))).acked;
  }

  /**
   * Leases still held run `seconds` more from now (at most `QUEUE_LIMITS.maxLeaseSeconds`); answers how many were
   * still held. An expired lease is not revived: its item went back to the queue.
   */
  async extend(seconds: number, ...leases: (string | LeasedItem)[]): Promise<number> {
    if (leases.length === 0) return 0;
    const ids = leases.map((l) => (typeof l === "string" ? l : l.lease));
    const request = checkedRequest(QueueRequestSchemas.extend, { leases: ids, leaseSeconds: seconds }, `queue "${this.name}" extend`);
    const { extended, leaseUntil } = await this.#op("extend", request);
    for (const l of leases) if (typeof l !== "string") l.leaseUntil = leaseUntil;
    return extended;
  }

  /** Items waiting in a partition (default the default one), or in all of them (`total`). Leased items are not counted. */
  async len(options: { partition?: string; total?: boolean } = {}): Promise<number> {
    return (await this.#op("len", checkedRequest(QueueRequestSchemas.len, options, `queue "${this.name}" len`))).len;
  }

  /**
   * Removes the items of a partition (default the default one), or of all of them (`all`), leased ones too (their
   * `ack` and `extend` then answer 0); answers how many.
   */
  async clear(options: { partition?: string; all?: boolean } = {}): Promise<number> {
    return (await this.#op("clear", checkedRequest(QueueRequestSchemas.clear, options, `queue "${this.name}" clear`))).removed;
  }

  /** The items waiting in a partition, oldest first, without taking them; a page at a time. */
  async *iterate<U = T>(options: { partition?: string; pageSize?: number } = {}): AsyncGenerator<U> {
    checkedPageSize(options.pageSize, QUEUE_LIMITS.maxPageSize, `queue "${this.name}" iterate`);
    let after: number | undefined;
    for (;;) {
      const request = {
        limit: options.pageSize ?? QUEUE_LIMITS.pageSize,
        ...(options.partition === undefined ? {} : { partition: options.partition }),
        ...(after === undefined ? {} : { after }),
      };
      const page = await this.#op("peek", checkedRequest(QueueRequestSchemas.peek, request, `queue "${this.name}" iterate`));
      for (const item of page.items) yield decodeValue(item.value.json, item.value.meta) as U;
      if (page.next === undefined) return;
      after = page.next;
    }
  }

  /** Asks until items come or the timeout runs out, each request waiting at most `QUEUE_LIMITS.maxWaitMs` in the queue's object. */
  async #take(n: number, options: QueueGetOptions): Promise<QueueItem[]> {
    const { timeoutMs, lease, ...rest } = options;
    if (timeoutMs !== undefined && !(timeoutMs >= 0))
      throw new InvalidOptionsError(`queue "${this.name}" get: option "timeoutMs" must be 0 or more (got ${timeoutMs})`);
    if (lease !== undefined && !(lease >= QUEUE_LIMITS.minLeaseSeconds && lease <= QUEUE_LIMITS.maxLeaseSeconds)) {
      throw new InvalidOptionsError(
        `queue "${this.name}" get: option "lease" must be seconds from ${QUEUE_LIMITS.minLeaseSeconds} to ${QUEUE_LIMITS.maxLeaseSeconds} (got ${lease})`,
      );
    }
    if (n > QUEUE_LIMITS.maxItemsPerRequest && !Number.isSafeInteger(n))
      throw new InvalidOptionsError(`queue "${this.name}" get: n must be a whole number of items (got ${n})`);
    // More than a request takes (`putMany`'s batches, the other way): the first request waits, the rest are asked for at once.
    const first = Math.min(n, QUEUE_LIMITS.maxItemsPerRequest);
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    for (;;) {
      const wait = Math.max(0, Math.min(deadline - Date.now(), QUEUE_LIMITS.maxWaitMs));
      const request = { n: first, timeoutMs: Math.round(wait), ...rest, ...(lease === undefined ? {} : { leaseSeconds: lease }) };
      const { items, more } = await this.#op("get", checkedRequest(QueueRequestSchemas.get, request, `queue "${this.name}" get`));
      if (more || (n > first && items.length === first)) return this.#rest(items, n, { ...request, timeoutMs: 0 });
      if (items.length > 0 || Date.now() >= deadline) return items;
    }
  }

  /**
   * The rest of a get whose answer left items waiting, too large to carry in one (`more`), or that asked for more
   * than one request takes: asked for at once, a request's most at a time, until `n` are taken or none is left. A
   * request that fails ends it with what was taken, which is the caller's already.
   */
  async #rest(taken: QueueItem[], n: number, request: QueueRequests["get"]): Promise<QueueItem[]> {
    for (let more = true; more && taken.length < n;) {
      try {
        const asked = Math.min(n - taken.length, QUEUE_LIMITS.maxItemsPerRequest);
        const answer = await this.#op("get", { ...request, n: asked });
        taken.push(...answer.items);
        more = answer.items.length > 0 && (answer.more === true || answer.items.length === asked);
      } catch {
        break;
      }
    }
    return taken;
  }

  #leased<T>(item: QueueItem): LeasedItem<T> {
    const leased: LeasedItem<T> = {
      value: decodeValue(item.value.json, item.value.meta) as T,
      lease: item.lease!,
      leaseUntil: item.leaseUntil!,
      ack: async () => (await this.ack(item.lease!)) === 1,
      extend: async (seconds) => (await this.extend(seconds, leased)) === 1,
    };
    return leased;
  }

  #op<O extends QueueOp>(op: O, request: QueueRequests[O]) {
    return this.#store.use((backend) => backend.op(this.name, op, request));
  }

  #backendOf(): QueueBackend {
    return this.#store.backend();
  }

  /** The backend, after making the queue once when `createIfMissing` says so. */
  #ready_(): Promise<QueueBackend> {
    return this.#store.ready();
  }
}
