/**
 * The plane's HTTP API, called by the gateway: run one input, report status.
 * Every request must carry the gateway's signature; unsigned, tampered or
 * replayed ones get 401 and are logged. `POST /v1/plane/run`, on every plane
 * call's path, is answered straight from Node's request and response; the
 * rest go through hono.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { getRequestListener } from "@hono/node-server";
import { Hono, type Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { InvalidRequestError, TandemError, UnauthorizedError, toWireError } from "../sdk/errors.js";
import { NAME_PATTERN, PLANE_ROUTES, PlaneRunRequestSchema, type EncodedValue, type PlaneRunRequest, type PlaneRunResponse, type UsageRow } from "../sdk/protocol.js";
import { NonceCache, verifyRequest } from "../sdk/signing.js";
import { describeIssues } from "../sdk/options.js";
import { streamLines } from "../sdk/stream-lines.js";

export interface PlaneServerOptions {
  secret: string;
  run(req: PlaneRunRequest): Promise<PlaneRunResponse>;
  stream(req: PlaneRunRequest): AsyncGenerator<EncodedValue, void, undefined>;
  stopApp(app: string): Promise<number>;
  cancel(callId: string, terminateContainer: boolean): boolean;
  usage(query: { app?: string; since?: number }): UsageRow[];
  status(): unknown;
  log?: (line: string) => void;
}

/** The plane's request listener for Node's HTTP server. */
export function planeServer(options: PlaneServerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const app = new Hono();
  const nonces = new NonceCache();
  const log = options.log ?? ((line: string) => console.warn(line));

  /** Checks a request's signature and nonce; `pathAndQuery` is what was signed (the usage route has a query). */
  const verify = async (method: string, pathAndQuery: string, body: string, header: (name: string) => string | null): Promise<string> => {
    const result = await verifyRequest(options.secret, method, pathAndQuery, body, { get: header }, nonces);
    if (!result.ok) {
      log(`[plane] refused ${method} ${pathAndQuery.split("?")[0]}: ${result.reason}`);
      throw new UnauthorizedError(`plane request refused: ${result.reason}`);
    }
    return body;
  };

  const verified = async (c: Context): Promise<string> => {
    const search = c.req.url.includes("?") ? c.req.url.slice(c.req.url.indexOf("?")) : "";
    // c.req.header, not c.req.raw: the node server then never builds a full Request for the call.
    return verify(c.req.method, c.req.path + search, await readBody(c), (name) => c.req.header(name) ?? null);
  };

  const parseRun = (body: string): PlaneRunRequest => {
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      throw new InvalidRequestError("request body is not valid JSON");
    }
    const parsed = PlaneRunRequestSchema.safeParse(json);
    if (!parsed.success) throw new InvalidRequestError(`run request has the wrong shape: ${describeIssues(parsed.error)}`);
    return parsed.data;
  };
  const runRequest = async (c: Context): Promise<PlaneRunRequest> => parseRun(await verified(c));

  /** The hot route without hono: measured, hono's node adapter added about 0.18 ms to each call. */
  const run = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let status = 200;
    let answer: unknown;
    try {
      const body = await verify("POST", PLANE_ROUTES.run, await readIncoming(req), (name) => headerOf(req, name));
      answer = await options.run(parseRun(body));
    } catch (err) {
      status = err instanceof TandemError ? err.status : 500;
      if (!(err instanceof TandemError)) log(`[plane] ${(err as Error).stack ?? err}`);
      answer = { error: toWireError(err) };
    }
    const text = JSON.stringify(answer);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };

  app.post(PLANE_ROUTES.stream, async (c) => {
    const req = await runRequest(c);
    const chunks = options.stream(req);
    // Starting the generator here lets a failure to start (no capacity, say) answer as an error status, not a stream.
    const first = await chunks.next();
    const body = streamLines(chunks, req.callId, (value) => value, first);
    return c.body(body, 200, { "content-type": "application/x-ndjson" });
  });

  app.post(PLANE_ROUTES.stop, async (c) => {
    const body = await verified(c);
    const app = (JSON.parse(body) as { app?: unknown }).app;
    if (typeof app !== "string" || !NAME_PATTERN.test(app)) throw new InvalidRequestError('stop needs { "app": name }');
    return c.json({ app, stopped: await options.stopApp(app) });
  });

  app.post(PLANE_ROUTES.cancel, async (c) => {
    const body = JSON.parse(await verified(c)) as { callId?: unknown; terminateContainer?: unknown };
    if (typeof body.callId !== "string") throw new InvalidRequestError('cancel needs { "callId" }');
    return c.json({ callId: body.callId, cancelled: options.cancel(body.callId, body.terminateContainer === true) });
  });

  app.get(PLANE_ROUTES.usage, async (c) => {
    await verified(c);
    const since = c.req.query("since");
    const app = c.req.query("app");
    return c.json({ rows: options.usage({ ...(app ? { app } : {}), ...(since ? { since: Number(since) } : {}) }) });
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

  const viaHono = getRequestListener(app.fetch);
  return (req, res) => {
    if (req.method === "POST" && req.url === PLANE_ROUTES.run) void run(req, res);
    else void viaHono(req, res);
  };
}

/**
 * The request body as text. On @hono/node-server it is read straight from
 * Node's request, so no Web Request and stream are built for it: that was a
 * measurable part of every call's time on the plane.
 */
async function readBody(c: Context): Promise<string> {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  return incoming ? readIncoming(incoming) : c.req.text();
}

async function readIncoming(incoming: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of incoming) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function headerOf(req: IncomingMessage, name: string): string | null {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? (value[0] ?? null) : (value ?? null);
}
