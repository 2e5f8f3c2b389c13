// bench/plane-warm (g): a bare hono Worker in the gateway's place on the bare chain: it POSTs each request's body on
// to the bare chain's front (the plane's place, its port in the FRONT binding) with workerd's `fetch`, as the gateway
// sends a call to its plane, and answers with what comes back. None of Tandem's work: what workerd itself costs there.
import { Hono } from "hono";

export default new Hono<{ Bindings: { FRONT: string } }>().post("/", async (c) => {
  const answer = await fetch(c.env.FRONT, { method: "POST", body: await c.req.text(), headers: { "content-type": "application/json" } });
  return new Response(answer.body, { headers: { "content-type": "application/json" } });
});
