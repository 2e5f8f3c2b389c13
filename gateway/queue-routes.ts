/**
 * `/v1/queues`: queues over HTTP, for the SDK outside the gateway, the CLI
 * and other languages (docs/dict-queue.md). Putting, getting and reading
 * items needs a token of scope `call`; making and deleting queues needs
 * `deploy`. Queues belong to the whole gateway, as volumes do: a token
 * restricted to apps reaches none. Each operation on items is
 * `POST /v1/queues/:queue/:op`; a get waits in the queue's object up to its
 * `timeoutMs` (at most `QUEUE_LIMITS.maxWaitMs`), and a client that waits
 * longer asks again.
 */
import { Hono } from "hono";
import { NotFoundError } from "../sdk/errors.js";
import { QUEUE_OPS, QueueRequestSchemas, ROUTES, StoreCreateRequestSchema, type QueueOp } from "../sdk/protocol.js";
import { gatewayWideGuard } from "./auth.js";
import { decodeBodyValue, readJsonBody } from "./body.js";
import type { RouteEnv } from "./env.js";
import { checkedQueueName, createQueue, deleteQueue, listQueues, queueInfo, queueOp } from "./queues.js";

export function queueRoutes(): Hono<RouteEnv> {
  const api = new Hono<RouteEnv>();

  api.get(ROUTES.queues, gatewayWideGuard("call", "queues"), async (c) => c.json({ queues: await listQueues(c.env) }));

  api.post(ROUTES.queues, gatewayWideGuard("deploy", "queues"), async (c) => {
    const body = await readJsonBody(c.req.raw, StoreCreateRequestSchema, c.var.config.maxBodyBytes);
    const { created, info } = await createQueue(c.env, body.name, body.existOk ?? false);
    return c.json(info, created ? 201 : 200);
  });

  api.get(ROUTES.queue, gatewayWideGuard("call", "queues"), async (c) => c.json(await queueInfo(c.env, checkedQueueName(c.req.param("queue") ?? ""))));

  api.delete(ROUTES.queue, gatewayWideGuard("deploy", "queues"), async (c) => c.json(await deleteQueue(c.env, checkedQueueName(c.req.param("queue") ?? ""))));

  api.post(ROUTES.queueOp, gatewayWideGuard("call", "queues", { checksBeforeBody: true }), async (c) => {
    const name = checkedQueueName(c.req.param("queue") ?? "");
    const op = c.req.param("op") ?? "";
    if (!(QUEUE_OPS as readonly string[]).includes(op)) {
      throw new NotFoundError(`queues have no operation "${op}" (they have ${QUEUE_OPS.join(", ")})`, { op });
    }
    const request = await readJsonBody(c.req.raw, QueueRequestSchemas[op as QueueOp], c.var.config.maxBodyBytes);
    if ("values" in request) request.values.forEach((v, i) => decodeBodyValue(v.json, v.meta, `values[${i}]`));
    return c.json(await queueOp(c.env, name, op as QueueOp, request));
  });

  return api;
}
