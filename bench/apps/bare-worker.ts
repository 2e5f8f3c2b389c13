// The baseline of bench/edge-call: a bare hono Worker doing the same work.
import { Hono } from "hono";
import { work } from "./work.js";

export default new Hono().get("/work/:n", (c) => c.json(work(Number(c.req.param("n")))));
