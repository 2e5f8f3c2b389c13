/**
 * The plane's HTTP API, called by the gateway: run one input, report status.
 * Every request must carry the gateway's signature; unsigned, tampered or
 * replayed ones get 401 and are logged.
 */
import type { IncomingMessage } from "node:http";
import { Hono, type Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { TandemError, UnauthorizedError, toWireError } from "../sdk/errors.js";
import { PLANE_ROUTES, PlaneRunRequestSchema, type PlaneRunRequest, type PlaneRunResponse } from "../sdk/protocol.js";
import { NonceCache, verifyRequest } from "../sdk/signing.js";
import { describeIssues } from "../sdk/options.js";

export interface PlaneServerOptions {
  secret: string;
  run(req: PlaneRunRequest): Promise<PlaneRunResponse>;
  status(): unknown;
  log?: (line: string) => void;
}

export function planeServer(options: PlaneServerOptions): Hono {
  const app = new Hono();
  const nonces = new NonceCache();
  const log = options.log ?? ((line: string) => console.warn(line));

  const verified = async (c: Context): Promise<string> => {
    const body = await readBody(c);
    // c.req.header, not c.req.raw: the node server then never builds a full Request for the call.
    const result = await verifyRequest(options.secret, c.req.method, c.req.path, body, { get: (name) => c.req.header(name) ?? null }, nonces);
    if (!result.ok) {
      log(`[plane] refused ${c.req.method} ${c.req.path}: ${result.reason}`);
      throw new UnauthorizedError(`plane request refused: ${result.reason}`);
    }
    return body;
  };

  app.post(PLANE_ROUTES.run, async (c) => {
    const body = await verified(c);
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      return c.json({ error: { code: "invalid_request", message: "request body is not valid JSON" } }, 400);
    }
    const parsed = PlaneRunRequestSchema.safeParse(json);
    if (!parsed.success) return c.json({ error: { code: "invalid_request", message: `run request has the wrong shape: ${describeIssues(parsed.error)}` } }, 400);
    return c.json(await options.run(parsed.data));
  });

  app.get(PLANE_ROUTES.status, async (c) => {
    await verified(c);
    return c.json(options.status() as object);
  });

  app.onError((err, c) => {
    const status = (err instanceof TandemError ? err.status : 500) as ContentfulStatusCode;
    if (!(err instanceof TandemError)) log(`[plane] ${err.stack ?? err}`);
    return c.json({ error: toWireError(err) }, status);
  });
  return app;
}

/**
 * The request body as text. On @hono/node-server it is read straight from
 * Node's request, so no Web Request and stream are built for it: that was a
 * measurable part of every call's time on the plane.
 */
async function readBody(c: Context): Promise<string> {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (!incoming) return c.req.text();
  const chunks: Buffer[] = [];
  for await (const chunk of incoming) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
