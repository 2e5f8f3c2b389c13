/**
 * How a `Dict` or `Queue` handle reaches its storage (`StoreBackend`): over
 * the gateway's `/v1/dicts` and `/v1/queues` API with a token, as `Volume`
 * does outside the gateway (inside a plane container the same requests go
 * through its plane, sdk/transport.ts), or through the backend the gateway
 * installs for code running inside it. Also the check every operation's request gets
 * before it is sent, the same for both.
 */
import type { z } from "zod";
import { HttpInvoker, resolveGatewayUrl } from "./client.js";
import { DICT_LIMITS, GATEWAY_DEFAULTS, QUEUE_LIMITS } from "./defaults.js";
import { unsendableIn } from "./arguments.js";
import { InvalidArgumentError, InvalidOptionsError, ValueTooLargeError } from "./errors.js";
import {
  encodeValue,
  paths,
  type DictAnswers,
  type DictInfo,
  type DictOp,
  type DictRequest,
  type EncodedValue,
  type QueueAnswers,
  type QueueInfo,
  type QueueOp,
  type QueueRequest,
} from "./protocol.js";
import { describeIssues } from "./zod-issues.js";

/** A dict's or queue's operations, whichever way they travel. */
export interface StoreBackend<Info, Op extends string, Requests extends { [O in Op]: unknown }, Answers extends { [O in Op]: unknown }> {
  create(name: string, existOk: boolean): Promise<Info>;
  info(name: string): Promise<Info>;
  delete(name: string): Promise<Info>;
  list(): Promise<Info[]>;
  op<O extends Op>(name: string, op: O, request: Requests[O]): Promise<Answers[O]>;
}

export type DictRequests = { [O in DictOp]: DictRequest<O> };
export type QueueRequests = { [O in QueueOp]: QueueRequest<O> };
export type DictBackend = StoreBackend<DictInfo, DictOp, DictRequests, DictAnswers>;
export type QueueBackend = StoreBackend<QueueInfo, QueueOp, QueueRequests, QueueAnswers>;

/** Where a handle outside the gateway sends its requests. */
export interface StoreOptions {
  /** The gateway to reach (outside the gateway; default `TANDEM_GATEWAY`, then the local one). */
  gateway?: string;
  /** The API token to send (default: as `lookup` finds one). */
  token?: string;
  /** The environment to address (`dev`); default `TANDEM_ENV`, then the gateway's own. See docs/deploy.md, "Environments". */
  env?: string;
}

const installed: { dicts?: DictBackend; queues?: QueueBackend } = {};

/** Used by the gateway runtime: handles in this isolate without a `gateway` or `token` of their own use these. */
export function installStoreBackends(backends: { dicts?: DictBackend; queues?: QueueBackend }): void {
  installed.dicts = backends.dicts;
  installed.queues = backends.queues;
}

export function dictBackend(options: StoreOptions): DictBackend {
  if (installed.dicts && options.gateway === undefined && options.token === undefined && options.env === undefined) return installed.dicts;
  return httpStore("dicts", options) as DictBackend;
}

export function queueBackend(options: StoreOptions): QueueBackend {
  if (installed.queues && options.gateway === undefined && options.token === undefined && options.env === undefined) return installed.queues;
  return httpStore("queues", options) as QueueBackend;
}

/** An operation's request, checked against its wire shape before it is sent: `InvalidOptionsError` naming the option. */
export function checkedRequest<S extends z.ZodType>(schema: S, request: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(request);
  if (parsed.success) return parsed.data;
  throw new InvalidOptionsError(`${what}: ${describeIssues(parsed.error, "option", schema)}`);
}

/**
 * Items of a `putMany` or an `update`, as encoded, in requests of at most `size` items and of at most the
 * gateway's default body limit, less room for the envelope (an item larger than that goes alone, and is
 * refused for its own size): many items each under the value limit would otherwise add up past the body limit.
 */
export function requestBatches<T>(items: T[], size: number): T[][] {
  const maxBytes = GATEWAY_DEFAULTS.maxBodyBytes - 64 * 1024;
  const batches: T[][] = [];
  let batch: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const text = JSON.stringify(item);
    // A UTF-16 unit is at most 3 bytes of UTF-8: small items are counted at that, with no encoding.
    const itemBytes = (text.length <= 1024 ? text.length * 3 : utf8.encode(text).length) + 1;
    if (batch.length === size || (batch.length > 0 && bytes + itemBytes > maxBytes)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(item);
    bytes += itemBytes;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

const utf8 = new TextEncoder();

/** The refusal of a dict value or queue item over its limit (`DICT_LIMITS.maxValueBytes`, `QUEUE_LIMITS.maxItemBytes`), in bytes as stored. */
export function valueTooLarge(store: "dict" | "queue", name: string, bytes: number): ValueTooLargeError {
  const maxBytes = store === "dict" ? DICT_LIMITS.maxValueBytes : QUEUE_LIMITS.maxItemBytes;
  const what = store === "dict" ? ["a value", "entry"] : ["an item", "item"];
  return new ValueTooLargeError(
    `${what[0]} of ${bytes} bytes (as the call codec encodes it) is larger than ${maxBytes}, the most ${store} "${name}" holds in one ${what[1]}`,
    { [store]: name, bytes, maxBytes },
  );
}

/**
 * Refuses, before it is sent, an encoded value whose text alone is longer than the limit (its bytes are more still):
 * sent, one over the gateway's body limit would be refused for the request's size, not the value's.
 */
export function refuseOversized(store: "dict" | "queue", name: string, value: EncodedValue): EncodedValue {
  const text = JSON.stringify(value);
  if (text.length > (store === "dict" ? DICT_LIMITS.maxValueBytes : QUEUE_LIMITS.maxItemBytes)) throw valueTooLarge(store, name, utf8.encode(text).length);
  return value;
}

/**
 * A dict value or queue item encoded as it travels, refused before it is sent where the wire cannot carry it, as a
 * call's argument is (`checkSendable`): a function or a symbol in it (`invalid_argument`; JSON would store nothing
 * in its place, and a queue item with no `json` at all), or a value over the store's limit (`refuseOversized`).
 * `what` names the value in the message: `dict "seen" put: the value`, `queue "jobs" put: item 2`.
 * @example
 * encodeStored("dict", "seen", { cb: () => 1 }, 'dict "seen" put: the value');
 * // InvalidArgumentError: dict "seen" put: the value (at .cb) is a function, which a dict cannot carry: …
 */
export function encodeStored(store: "dict" | "queue", name: string, value: unknown, what: string): EncodedValue {
  const encoded = encodeValue(value, (v) => {
    const where = unsendableIn(v);
    if (where)
      throw new InvalidArgumentError(
        `${what}${where.path ? ` (at ${where.path})` : ""} is a ${where.kind}, which a ${store} cannot carry: ${store === "dict" ? "values" : "items"} travel as data, as arguments do (docs/api.md, "Values")`,
        { [store]: name },
      );
  });
  return refuseOversized(store, name, encoded);
}

/** A page size an iterator was given: a whole number from 1 to `max`. */
export function checkedPageSize(pageSize: number | undefined, max: number, what: string): void {
  if (pageSize !== undefined && !(Number.isInteger(pageSize) && pageSize >= 1 && pageSize <= max)) {
    throw new InvalidOptionsError(`${what}: option "pageSize" must be a whole number from 1 to ${max} (got ${pageSize})`);
  }
}

const clients = new Map<string, HttpStore>();

function httpStore(kind: "dicts" | "queues", options: StoreOptions): HttpStore {
  const url = resolveGatewayUrl(options.gateway);
  const key = `${kind} ${url} ${options.token ?? ""} ${options.env ?? ""}`;
  let client = clients.get(key);
  if (!client) {
    const { token, env } = options;
    client = new HttpStore(kind, new HttpInvoker(url, { ...(token === undefined ? {} : { token }), ...(env === undefined ? {} : { env }) }));
    clients.set(key, client);
  }
  return client;
}

/** Dicts or queues over HTTP: one request per operation (a long get is several, each waiting its most). */
class HttpStore {
  constructor(
    readonly kind: "dicts" | "queues",
    readonly http: HttpInvoker,
  ) {}

  #one(name: string): string {
    return this.kind === "dicts" ? paths.dict(name) : paths.queue(name);
  }

  async create(name: string, existOk: boolean): Promise<unknown> {
    return this.http.request("POST", this.kind === "dicts" ? paths.dicts() : paths.queues(), { name, existOk });
  }

  async info(name: string): Promise<unknown> {
    return this.http.request("GET", this.#one(name));
  }

  async delete(name: string): Promise<unknown> {
    return this.http.request("DELETE", this.#one(name));
  }

  async list(): Promise<unknown[]> {
    const answer = (await this.http.request("GET", this.kind === "dicts" ? paths.dicts() : paths.queues())) as Record<string, unknown[]>;
    return answer[this.kind]!;
  }

  async op(name: string, op: string, request: unknown): Promise<unknown> {
    return this.http.request("POST", this.kind === "dicts" ? paths.dictOp(name, op as DictOp) : paths.queueOp(name, op as QueueOp), request);
  }
}
