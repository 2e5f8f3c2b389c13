/**
 * The plane's HTTP API, called by the gateway: run one input, report status.
 * Every request must carry the gateway's signature; unsigned, tampered or
 * replayed ones get 401 and are logged. `POST /v1/plane/run`, on every plane
 * call's path, is answered straight from Node's request and response; the
 * rest go through hono. A run is idempotent per attempt: one this plane has
 * seen (a restarted gateway sending what it had in flight) is answered from
 * the outcome cache rather than run again.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { getRequestListener } from "@hono/node-server";
import { Hono, type Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import { InvalidRequestError, TandemError, UnauthorizedError, errorBody, errorStatus } from "../sdk/errors.js";
import {
  PLANE_ROUTES,
  PlaneCancelRequestSchema,
  PlaneRunRequestSchema,
  PlaneStopRequestSchema,
  UsageQuerySchema,
  type EncodedValue,
  type PlaneCancelAnswer,
  type PlaneRunRequest,
  type PlaneRunResponse,
  type PlaneUsageAnswer,
  type StopAnswer,
  type UsageQuery,
  type UsageRow,
} from "../sdk/protocol.js";
import { NonceCache, verifyRequest } from "../sdk/signing.js";
import { describeIssues } from "../sdk/zod-issues.js";
import { streamLines } from "../sdk/stream-lines.js";
import { OutcomeCache, type KnownAttempt } from "./outcome-cache.js";

export interface PlaneServerOptions {
  secret: string;
  run(req: PlaneRunRequest): Promise<PlaneRunResponse>;
  /** The attempts this plane ran and their outcomes: a run it has seen is answered from here (default: in memory only). */
  outcomes?: OutcomeCache<PlaneRunResponse>;
  stream(req: PlaneRunRequest): AsyncGenerator<EncodedValue, void, undefined>;
  stopApp(app: string): Promise<number>;
  cancel(callId: string, terminateContainer: boolean): boolean;
  usage(query: UsageQuery): UsageRow[];
  status(): unknown;
  log?: (line: string) => void;
}

/** The plane's request listener for Node's HTTP server. */
export function planeServer(options: PlaneServerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const app = new Hono();
  const nonces = new NonceCache();
  const outcomes = options.outcomes ?? new OutcomeCache<PlaneRunResponse>();
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

  const parseRun = (body: string): PlaneRunRequest => parseSigned(body, PlaneRunRequestSchema, "run");
  const runRequest = async (c: Context): Promise<PlaneRunRequest> => parseRun(await verified(c));

  /** The hot route without hono: measured, hono's node adapter added about 0.18 ms to each call. */
  const run = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let status = 200;
    let text: string;
    try {
      const body = await verify("POST", PLANE_ROUTES.run, await readIncoming(req), (name) => headerOf(req, name));
      const run = parseRun(body);
      const known = outcomes.lookup(run.callId, run.attempt);
      if (known) {
        log(`[plane] ${run.app}.${run.function} ${run.callId} attempt ${run.attempt} was sent again: ${knownLine(known)}`);
        text = JSON.stringify(await answerAgain(known, run));
      } else {
        const running = options.run(run);
        outcomes.running(run.callId, run.attempt, running);
        const answer = await running;
        text = JSON.stringify(answer);
        outcomes.ended(run.callId, run.attempt, answer, text.length);
      }
    } catch (err) {
      status = errorStatus(err);
      if (!(err instanceof TandemError)) log(`[plane] ${(err as Error).stack ?? err}`);
      text = JSON.stringify(errorBody(err));
    }
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
    const { app } = parseSigned(await verified(c), PlaneStopRequestSchema, "stop");
    return c.json({ app, stopped: await options.stopApp(app) } satisfies StopAnswer);
  });

  app.post(PLANE_ROUTES.cancel, async (c) => {
    const { callId, terminateContainer } = parseSigned(await verified(c), PlaneCancelRequestSchema, "cancel");
    return c.json({ callId, cancelled: options.cancel(callId, terminateContainer === true) } satisfies PlaneCancelAnswer);
  });

  app.get(PLANE_ROUTES.usage, async (c) => {
    await verified(c);
    const query = UsageQuerySchema.safeParse(c.req.query(), { reportInput: true });
    if (!query.success) throw new InvalidRequestError(`usage query: ${describeIssues(query.error, "field")}`);
    return c.json({ rows: options.usage(query.data) } satisfies PlaneUsageAnswer);
  });

  app.get(PLANE_ROUTES.status, async (c) => {
    await verified(c);
    return c.json(options.status() as object);
  });

  app.onError((err, c) => {
    if (!(err instanceof TandemError)) log(`[plane] ${err.stack ?? err}`);
    return c.json(errorBody(err), errorStatus(err) as ContentfulStatusCode);
  });

  const viaHono = getRequestListener(app.fetch);
  return (req, res) => {
    if (req.method === "POST" && req.url === PLANE_ROUTES.run) void run(req, res);
    else void viaHono(req, res);
  };
}

/** The answer to an attempt this plane has seen: its outcome when it ends or has ended, or that it was lost. */
async function answerAgain(known: KnownAttempt<PlaneRunResponse>, run: PlaneRunRequest): Promise<PlaneRunResponse> {
  if (known.state === "running") return { ...(await known.outcome), again: "attached" };
  if (known.state === "ended") return { ...known.outcome, again: "replayed" };
  return {
    status: "failed",
    error: {
      code: "internal",
      message: `attempt ${run.attempt} of ${run.callId} was lost: ${known.why}`,
      details: { callId: run.callId, attempt: run.attempt },
    },
    again: "lost",
  };
}

function knownLine(known: KnownAttempt<PlaneRunResponse>): string {
  if (known.state === "running") return "still running, answering when it ends";
  if (known.state === "ended") return "it ended, answering with its outcome";
  return `lost (${known.why}), so the gateway starts another`;
}

/** A signed request's body, checked: JSON (400 if not), then its shape (400 naming the field). */
function parseSigned<S extends z.ZodType>(body: string, schema: S, what: string): z.infer<S> {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new InvalidRequestError(`${what} request body is not valid JSON`);
  }
  const parsed = schema.safeParse(json, { reportInput: true });
  if (!parsed.success) throw new InvalidRequestError(`${what} request has the wrong shape: ${describeIssues(parsed.error, "field")}`);
  return parsed.data;
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
