/**
 * Queues at the edge: what the `/v1/queues` routes and the SDK's `Queue`
 * inside the gateway both do. Names checked, items measured as the call
 * codec encoded them, partitions filled in; each queue's `QueueStore` does
 * the rest, a blocking get waiting there.
 */
import { QUEUE_LIMITS } from "../sdk/defaults.js";
import { AlreadyExistsError, fromWireError, InvalidRequestError, type WireError } from "../sdk/errors.js";
import { valueTooLarge } from "../sdk/store-client.js";
import { QUEUE_NAME_PATTERN, type QueueAnswers, type QueueInfo, type QueueOp, type QueueRequest } from "../sdk/protocol.js";
import { encodedText } from "./dicts.js";
import type { Env } from "./env.js";
import { inEnvironment, lookedIn } from "./environments.js";
import { DEFAULT_PARTITION, missingQueue, type QueueCommand } from "./queue-store.js";
import { STORE_CATALOG, type Outcome, stubIn } from "./store-catalog.js";

/** A queue's name, checked: a 400 naming the rule otherwise. */
export function checkedQueueName(name: string): string {
  if (!QUEUE_NAME_PATTERN.test(name)) {
    throw new InvalidRequestError(`"${name}" is not a queue name: letters, digits, '-' and '_', up to 64, starting with a letter or digit`, { queue: name });
  }
  return name;
}

function store(env: Env, name: string, work?: object) {
  const objectName = inEnvironment(env, `queue:${checkedQueueName(name)}`);
  return stubIn(work, objectName, () => env.QUEUES.get(env.QUEUES.idFromName(objectName)));
}

function catalog(env: Env) {
  return env.QUEUES.get(env.QUEUES.idFromName(inEnvironment(env, STORE_CATALOG)));
}

function unwrap<T>(env: Env, outcome: Outcome<T>): T {
  if ("error" in outcome) throw revived(env, outcome.error);
  return outcome.ok;
}

/** An object's error, a queue it does not hold said again with the environment it was looked for in. */
function revived(env: Env, error: WireError): Error {
  const missing = error.code === "not_found" ? error.details?.queue : undefined;
  return typeof missing === "string" ? missingQueue(missing, lookedIn(env)) : fromWireError(error);
}

export async function createQueue(env: Env, name: string, existOk: boolean): Promise<{ created: boolean; info: QueueInfo }> {
  const made = unwrap(env, await store(env, name).create(name));
  if (!made.created && !existOk)
    throw new AlreadyExistsError(`queue "${name}" already exists (to use it as it is: --exist-ok, or existOk: true)`, { queue: name });
  if (!(await catalog(env).catalogAdd(name, made.info.createdAt))) {
    if (made.created) await store(env, name).drop(name);
    throw new InvalidRequestError(`this gateway holds ${QUEUE_LIMITS.maxQueues} queues, the most it keeps; delete one first`, {
      maxQueues: QUEUE_LIMITS.maxQueues,
    });
  }
  return made;
}

export async function queueInfo(env: Env, name: string): Promise<QueueInfo> {
  return unwrap(env, await store(env, name).info(name));
}

export async function deleteQueue(env: Env, name: string): Promise<QueueInfo> {
  const info = unwrap(env, await store(env, name).drop(name));
  await catalog(env).catalogRemove(name);
  return info;
}

export async function listQueues(env: Env): Promise<QueueInfo[]> {
  const names = await catalog(env).catalogList();
  const infos: QueueInfo[] = [];
  for (let i = 0; i < names.length; i += 32) {
    const outcomes = await Promise.all(names.slice(i, i + 32).map((name) => store(env, name).info(name)));
    for (const outcome of outcomes) if ("ok" in outcome) infos.push(outcome.ok);
  }
  return infos;
}

/** One operation on a queue's items, its request already in its wire shape (`QueueRequestSchemas[op]`). */
export async function queueOp<O extends QueueOp>(env: Env, name: string, op: O, request: QueueRequest<O>, work?: object): Promise<QueueAnswers[O]> {
  const command = commandOf(name, op, request as QueueRequest<QueueOp>);
  return unwrap(env, await store(env, name, work).run(name, command)) as QueueAnswers[O];
}

function commandOf(name: string, op: QueueOp, request: QueueRequest<QueueOp>): QueueCommand {
  const r = request as Partial<
    QueueRequest<"put"> &
      QueueRequest<"get"> &
      QueueRequest<"ack"> &
      QueueRequest<"extend"> &
      QueueRequest<"len"> &
      QueueRequest<"peek"> &
      QueueRequest<"clear">
  >;
  const partition = r.partition ?? DEFAULT_PARTITION;
  switch (op) {
    case "put":
      return { op, partition, values: r.values!.map((v) => checkedItem(name, encodedText(v))) };
    case "get":
      return { op, partition, n: r.n ?? 1, timeoutMs: r.timeoutMs ?? 0, ...(r.leaseSeconds === undefined ? {} : { leaseSeconds: r.leaseSeconds }) };
    case "ack":
      return { op, leases: r.leases! };
    case "extend":
      return { op, leases: r.leases!, leaseSeconds: r.leaseSeconds! };
    case "len":
      return { op, partition, total: r.total ?? false };
    case "peek":
      return { op, partition, after: r.after ?? 0, limit: r.limit ?? QUEUE_LIMITS.pageSize };
    case "clear":
      return { op, partition, all: r.all ?? false };
  }
}

function checkedItem(name: string, text: string): string {
  const bytes = new TextEncoder().encode(text).byteLength;
  if (bytes > QUEUE_LIMITS.maxItemBytes) throw valueTooLarge("queue", name, bytes);
  return text;
}
