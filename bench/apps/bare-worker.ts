// The baseline of bench/edge-call: a bare hono Worker doing the same work.
import { Hono } from "hono";
import { work } from "./work.js";

// POST: the argument in a JSON body, as `.remote()` sends it (bench/edge-call's (h)).
export default new Hono()
  .get("/work/:n", (c) => c.json(work(Number(c.req.param("n")))))
  .post("/work", async (c) => c.json(work(((await c.req.json()) as { args: [number] }).args[0])));
