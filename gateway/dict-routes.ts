/**
 * `/v1/dicts`: dicts over HTTP, for the SDK outside the gateway, the CLI and
 * other languages (docs/dict-queue.md). Reading and writing entries needs a
 * token of scope `call`; making and deleting dicts needs `deploy`. Dicts
 * belong to the whole gateway, as volumes do: a token restricted to apps
 * reaches none. Each operation on entries is `POST /v1/dicts/:dict/:op`, its
 * body checked against that operation's shape.
 */
import { Hono } from "hono";
import { NotFoundError } from "../sdk/errors.js";
import { DICT_OPS, DictRequestSchemas, ROUTES, StoreCreateRequestSchema, type DictOp } from "../sdk/protocol.js";
import { gatewayWideGuard } from "./auth.js";
import { decodeBodyValue, readJsonBody } from "./body.js";
import { checkedDictName, createDict, deleteDict, dictInfo, dictOp, listDicts } from "./dicts.js";
import type { RouteEnv } from "./env.js";

export function dictRoutes(): Hono<RouteEnv> {
  const api = new Hono<RouteEnv>();

  api.get(ROUTES.dicts, gatewayWideGuard("call", "dicts"), async (c) => c.json({ dicts: await listDicts(c.env) }));

  api.post(ROUTES.dicts, gatewayWideGuard("deploy", "dicts"), async (c) => {
    const body = await readJsonBody(c.req.raw, StoreCreateRequestSchema, c.var.config.maxBodyBytes);
    const { created, info } = await createDict(c.env, body.name, body.existOk ?? false);
    return c.json(info, created ? 201 : 200);
  });

  api.get(ROUTES.dict, gatewayWideGuard("call", "dicts"), async (c) => c.json(await dictInfo(c.env, checkedDictName(c.req.param("dict") ?? ""))));

  api.delete(ROUTES.dict, gatewayWideGuard("deploy", "dicts"), async (c) => c.json(await deleteDict(c.env, checkedDictName(c.req.param("dict") ?? ""))));

  api.post(ROUTES.dictOp, gatewayWideGuard("call", "dicts", { checksBeforeBody: true }), async (c) => {
    const name = checkedDictName(c.req.param("dict") ?? "");
    const op = c.req.param("op") ?? "";
    if (!(DICT_OPS as readonly string[]).includes(op)) {
      throw new NotFoundError(`dicts have no operation "${op}" (they have ${DICT_OPS.join(", ")})`, { op });
    }
    const request = await readJsonBody(c.req.raw, DictRequestSchemas[op as DictOp], c.var.config.maxBodyBytes);
    // A value's `meta` is checked now, so a bad one is refused here rather than by the reader it would fail.
    if ("value" in request) decodeBodyValue(request.value.json, request.value.meta, "value");
    if ("entries" in request) request.entries.forEach((e, i) => decodeBodyValue(e.value.json, e.value.meta, `entries[${i}].value`));
    return c.json(await dictOp(c.env, name, op as DictOp, request));
  });

  return api;
}
