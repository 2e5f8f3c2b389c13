// The baseline of bench/dict-queue: a bare Durable Object with SQLite doing a dict's get and put (one row by
// key, the value as JSON text), no Tandem; the same timing loop as the Tandem endpoint, over RPC.
import { DurableObject } from "cloudflare:workers";

interface Env {
  KV: DurableObjectNamespace<BareKv>;
}

export class BareKv extends DurableObject<Env> {
  readonly #sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#sql.exec("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
  }

  async get(key: string): Promise<unknown> {
    const row = this.#sql.exec<{ value: string }>("SELECT value FROM entries WHERE key = ?", key).toArray()[0];
    return row ? (JSON.parse(row.value) as unknown) : undefined;
  }

  async put(key: string, value: unknown): Promise<boolean> {
    this.#sql.exec("INSERT OR REPLACE INTO entries (key, value) VALUES (?, ?)", key, JSON.stringify(value));
    return true;
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const [, , op, rounds, per] = new URL(request.url).pathname.split("/");
    const kv = env.KV.get(env.KV.idFromName("bench"));
    await kv.put("k0", { i: 0, text: "x".repeat(100) });
    const means: number[] = [];
    for (let r = 0; r < Number(rounds); r++) {
      const t0 = performance.now();
      for (let i = 0; i < Number(per); i++) {
        if (op === "put") await kv.put(`k${i % 100}`, { i, text: "x".repeat(100) });
        else await kv.get("k0");
      }
      means.push((performance.now() - t0) / Number(per));
    }
    return Response.json(means);
  },
};
