// The Tandem side of bench/dict-queue: dict gets and puts timed inside an edge endpoint (no HTTP in the
// timing, only the Durable Object's RPC), and a producer that puts items on a queue from the edge.
import { App, Dict, Queue } from "tandem";

const app = new App("dqbench");

/** `rounds` rounds of `per` sequential gets or puts; answers each round's mean ms per operation. */
export const dictOps = app.endpoint({ method: "GET", path: "/:op/:rounds/:per", label: "dict" }, async (c) => {
  const d = Dict.fromName("bench", { createIfMissing: true });
  const op = c.req.param("op");
  const rounds = Number(c.req.param("rounds"));
  const per = Number(c.req.param("per"));
  await d.put("k0", { i: 0, text: "x".repeat(100) });
  const means: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < per; i++) {
      if (op === "put") await d.put(`k${i % 100}`, { i, text: "x".repeat(100) });
      else await d.get("k0");
    }
    means.push((performance.now() - t0) / per);
  }
  return c.json(means);
});

/** Puts `n` numbered items on a queue from the edge, `batch` to a request. */
export const produce = app.function(async (queue: string, n: number, batch: number) => {
  const q = Queue.fromName(queue, { createIfMissing: true });
  for (let i = 0; i < n; i += batch) await q.putMany(Array.from({ length: Math.min(batch, n - i) }, (_, k) => i + k));
  return n;
});

export default app;
