/**
 * `Dict` and `Queue` as seen from code running inside the gateway (edge
 * functions, web endpoints, agents): the same operations as `/v1/dicts` and
 * `/v1/queues`, straight to each one's Durable Object through the Worker's
 * bindings, with no network hop and no token (the code is the deployment's own).
 */
import { InternalError } from "../sdk/errors.js";
import type { DictAnswers, DictInfo, DictOp, DictRequest, QueueAnswers, QueueInfo, QueueOp, QueueRequest } from "../sdk/protocol.js";
import type { DictBackend, QueueBackend } from "../sdk/store-client.js";
import { createDict, deleteDict, dictInfo, dictOp, listDicts } from "./dicts.js";
import type { Env } from "./env.js";
import { createQueue, deleteQueue, listQueues, queueInfo, queueOp } from "./queues.js";
import { runStore, type RunContext } from "./run-context.js";

export class GatewayDicts implements DictBackend {
  async create(name: string, existOk: boolean): Promise<DictInfo> {
    return (await createDict(env(), name, existOk)).info;
  }

  info(name: string): Promise<DictInfo> {
    return dictInfo(env(), name);
  }

  delete(name: string): Promise<DictInfo> {
    return deleteDict(env(), name);
  }

  list(): Promise<DictInfo[]> {
    return listDicts(env());
  }

  op<O extends DictOp>(name: string, op: O, request: DictRequest<O>): Promise<DictAnswers[O]> {
    const rc = current();
    return dictOp(rc.env, name, op, request, rc);
  }
}

export class GatewayQueues implements QueueBackend {
  async create(name: string, existOk: boolean): Promise<QueueInfo> {
    return (await createQueue(env(), name, existOk)).info;
  }

  info(name: string): Promise<QueueInfo> {
    return queueInfo(env(), name);
  }

  delete(name: string): Promise<QueueInfo> {
    return deleteQueue(env(), name);
  }

  list(): Promise<QueueInfo[]> {
    return listQueues(env());
  }

  op<O extends QueueOp>(name: string, op: O, request: QueueRequest<O>): Promise<QueueAnswers[O]> {
    const rc = current();
    return queueOp(rc.env, name, op, request, rc);
  }
}

function current(): RunContext {
  const rc = runStore.getStore();
  if (!rc) throw new InternalError("a dict or queue was used outside a request; use them from inside handlers");
  return rc;
}

function env(): Env {
  return current().env;
}
