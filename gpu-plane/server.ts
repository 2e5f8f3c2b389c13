/**
 * The plane's HTTP API, called by the gateway: run one input (or several of
 * one function, a `.map`'s, in one request), report status.
 * Every request must carry the gateway's signature, made for this plane (its
 * id is the audience) since this plane started. The headers are checked
 * before a byte of the body is read, and the body is read no further than its
 * limit: unsigned, misdirected, tampered or replayed requests get 401, bodies
 * over the limit 413, malformed ones 400, and refusals are logged.
 * `POST /v1/plane/run` and `/v1/plane/run-many`, on every plane call's path,
 * are answered straight from Node's request and response; the rest go
 * through hono.
 * A run is idempotent per attempt: one this plane has seen (a restarted
 * gateway sending what it had in flight) is answered from the outcome cache
 * rather than run again.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { getRequestListener } from "@hono/node-server";
import { Hono, type Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { PLANE_DEFAULTS } from "../sdk/defaults.js";
import { InvalidRequestError, MethodNotAllowedError, TandemError, UnauthorizedError, errorBody, errorStatus } from "../sdk/errors.js";
import {
  PLANE_METRICS_ROUTE,
  HEADERS,
  PLANE_PROBES,
  PLANE_ROUTE_METHODS,
  PLANE_ROUTES,
  PlaneCancelRequestSchema,
  PlaneRunManyRequestSchema,
  PlaneRunRequestSchema,
  PlaneStopRequestSchema,
  UsageQuerySchema,
  type EncodedValue,
  type PlaneCancelAnswer,
  type PlaneProbeAnswer,
  type PlaneRunManyRequest,
  type PlaneRunRequest,
  type PlaneRunResponse,
  type PlaneUsageAnswer,
  type RolloverAnswer,
  type StopAnswer,
  type UsageQuery,
  type UsageRow,
} from "../sdk/protocol.js";
import { parseSignedBody, signedBodyText, signedBodyTooLarge } from "../sdk/signed-body.js";
import { NonceCache, checkSignatureHeaders, verifyRequest, type Receiver } from "../sdk/signing.js";
import { describeIssues } from "../sdk/zod-issues.js";
import { streamLines } from "../sdk/stream-lines.js";
import { OutcomeCache, type KnownAttempt } from "./outcome-cache.js";
import { answerScrape, type MetricsExposition } from "./metrics-server.js";

export interface PlaneServerOptions {
  secret: string;
  /** This plane's id: the audience every request to it must be signed for. */
  planeId: string;
  run(req: PlaneRunRequest): Promise<PlaneRunResponse>;
  /** The attempts this plane ran and their outcomes: a run it has seen is answered from here (default: in memory only). */
  outcomes?: OutcomeCache<PlaneRunResponse>;
  stream(req: PlaneRunRequest): AsyncGenerator<EncodedValue, void, undefined>;
  stopApp(app: string): Promise<number>;
  /** Rolls over an app's containers (each stops once its inputs end); returns how many. */
  rolloverApp(app: string): number;
  cancel(callIds: readonly string[], terminateContainer: boolean): string[];
  usage(query: UsageQuery): UsageRow[];
  /** The signed status; a plane still starting answers it once it has started. */
  status(): unknown;
  /** `GET /metrics` (metrics-server.ts): answered only with `metricsToken` as a bearer token. */
  metrics?: MetricsExposition;
  metricsToken?: string;
  /** The plane's state, for an unsigned probe of the status route. */
  probe(): PlaneProbeAnswer;
  log?: (line: string) => void;
}

/** The plane's request listener for Node's HTTP server. */
export function planeServer(options: PlaneServerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const app = new Hono();
  const nonces = new NonceCache();
  // Nonces are kept in memory only, so what was signed before this start (a request a previous run of this plane
  // may have run) is refused, rather than the nonces persisted on every call's path.
  const receiver: Receiver = { audience: options.planeId, startedAt: Date.now() };
  const outcomes = options.outcomes ?? new OutcomeCache<PlaneRunResponse>();
  const log = options.log ?? ((line: string) => console.warn(line));

  const refuse = (method: string, pathAndQuery: string, reason: string): never => {
    log(`[plane] refused ${method} ${pathAndQuery.split("?")[0]}: ${reason}`);
    throw new UnauthorizedError(`plane request refused: ${reason}`);
  };

  /**
   * A signed request's body, verified: the headers first (a request that fails them has none of its body read),
   * then the body, no further than `maxBytes`, then the signature over it and the nonce. `pathAndQuery` is what was
   * signed (the usage route has a query).
   */
  const verifiedBody = async (incoming: IncomingMessage, method: string, pathAndQuery: string, maxBytes: number): Promise<string> => {
    const headers = { get: (name: string) => headerOf(incoming, name) };
    const checked = checkSignatureHeaders(headers, receiver);
    if (!checked.ok) refuse(method, pathAndQuery, checked.reason);
    const body = await readIncoming(incoming, maxBytes);
    const request = { audience: receiver.audience, method, path: pathAndQuery, body };
    const verified = await verifyRequest(options.secret, request, headers, nonces, { startedAt: receiver.startedAt });
    if (!verified.ok) refuse(method, pathAndQuery, verified.reason);
    return signedBodyText(body);
  };

  const verified = (c: Context, maxBytes: number = PLANE_DEFAULTS.maxSignedRequestBytes): Promise<string> => {
    const search = c.req.url.includes("?") ? c.req.url.slice(c.req.url.indexOf("?")) : "";
    return verifiedBody(incomingOf(c), c.req.method, c.req.path + search, maxBytes);
  };

  const parseRun = (body: string): PlaneRunRequest => parseSignedBody(body, PlaneRunRequestSchema, "run");

  /**
   * One attempt's answer, as JSON: from the outcome cache when this plane has seen it (a gateway that restarted, or a
   * request sent again), else from running it. Throws what the run throws (no capacity, say), as an error the route
   * answers.
   */
  const answerRun = async (run: PlaneRunRequest): Promise<string> => {
    const known = outcomes.lookup(run.callId, run.attempt);
    if (known) {
      log(`[plane] ${run.app}.${run.function} ${run.callId} attempt ${run.attempt} was sent again: ${knownLine(known)}`);
      return JSON.stringify(await answerAgain(known, run));
    }
    const running = options.run(run);
    outcomes.running(run.callId, run.attempt, running);
    const answer = await running;
    const text = JSON.stringify(answer);
    outcomes.ended(run.callId, run.attempt, answer, text.length);
    return text;
  };

  /** An error as a route answers it: its status and body, logged when it is not one of Tandem's own. */
  const errorAnswer = (err: unknown): { status: number; body: ReturnType<typeof errorBody> } => {
    if (!(err instanceof TandemError)) log(`[plane] ${(err as Error).stack ?? err}`);
    return { status: errorStatus(err), body: errorBody(err) };
  };

  /** The hot route without hono: measured, hono's node adapter added about 0.18 ms to each call. */
  const run = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let status = 200;
    let text: string;
    try {
      text = await answerRun(parseRun(await verifiedBody(req, "POST", PLANE_ROUTES.run, PLANE_DEFAULTS.maxRunRequestBytes)));
    } catch (err) {
      const failed = errorAnswer(err);
      status = failed.status;
      text = JSON.stringify(failed.body);
    }
    closeAfterAnswerUnlessRead(req, res);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };

  /**
   * Several inputs in one request (a `.map`'s): each run as `run` runs it, and answered on its own NDJSON line as it
   * ends, the lines that end in one turn of the event loop written together. A request refused as a whole (its
   * signature, size or shape) is answered with its error status, as `run`'s is.
   */
  const runMany = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let request: PlaneRunManyRequest;
    try {
      const body = await verifiedBody(req, "POST", PLANE_ROUTES.runMany, PLANE_DEFAULTS.maxRunRequestBytes);
      request = parseSignedBody(body, PlaneRunManyRequestSchema, "run-many");
    } catch (err) {
      const failed = errorAnswer(err);
      const text = JSON.stringify(failed.body);
      closeAfterAnswerUnlessRead(req, res);
      res.writeHead(failed.status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    let corked = false;
    // Each line is a `PlaneRunManyLine`: the input's index, then its answer's fields.
    const answerLine = (i: number, answer: string) => {
      if (!corked) {
        corked = true;
        res.cork();
        process.nextTick(() => {
          corked = false;
          res.uncork();
        });
      }
      res.write(`{"i":${i},${answer.slice(1)}\n`);
    };
    const { base, runs } = request;
    await Promise.all(
      runs.map(async (item, i) => {
        try {
          answerLine(i, await answerRun({ ...base, ...item }));
        } catch (err) {
          answerLine(i, JSON.stringify(errorAnswer(err).body));
        }
      }),
    );
    res.end();
  };

  app.post(PLANE_ROUTES.stream, async (c) => {
    const req = parseRun(await verified(c, PLANE_DEFAULTS.maxRunRequestBytes));
    const chunks = options.stream(req);
    // Starting the generator here lets a failure to start (no capacity, say) answer as an error status, not a stream.
    const first = await chunks.next();
    const body = streamLines(chunks, req.callId, (value) => value, first);
    return c.body(body, 200, { "content-type": "application/x-ndjson" });
  });

  app.post(PLANE_ROUTES.stop, async (c) => {
    const { app } = parseSignedBody(await verified(c), PlaneStopRequestSchema, "stop");
    return c.json({ app, stopped: await options.stopApp(app) } satisfies StopAnswer);
  });

  app.post(PLANE_ROUTES.rollover, async (c) => {
    const { app } = parseSignedBody(await verified(c), PlaneStopRequestSchema, "rollover");
    return c.json({ app, rolledOver: options.rolloverApp(app) } satisfies RolloverAnswer);
  });

  app.post(PLANE_ROUTES.cancel, async (c) => {
    const { callIds, terminateContainer } = parseSignedBody(await verified(c), PlaneCancelRequestSchema, "cancel");
    return c.json({ cancelled: options.cancel(callIds, terminateContainer === true) } satisfies PlaneCancelAnswer);
  });

  app.get(PLANE_ROUTES.usage, async (c) => {
    await verified(c);
    const query = UsageQuerySchema.safeParse(c.req.query(), { reportInput: true });
    if (!query.success) throw new InvalidRequestError(`usage query: ${describeIssues(query.error, "field")}`);
    return c.json({ rows: options.usage(query.data) } satisfies PlaneUsageAnswer);
  });

  app.get(PLANE_ROUTES.status, async (c) => {
    // An orchestrator's health check: unsigned, and told only the plane's state.
    const probe = c.req.query("probe");
    if (probe !== undefined && c.req.header(HEADERS.signature) === undefined) {
      if (!(PLANE_PROBES as readonly string[]).includes(probe))
        throw new InvalidRequestError(`probe must be one of ${PLANE_PROBES.join(", ")}, not "${probe}"`);
      const answer = options.probe();
      return c.json(answer, probe === "live" || answer.state === "ready" ? 200 : 503);
    }
    await verified(c);
    return c.json((await options.status()) as object);
  });

  // A known route asked with the wrong method: say which methods it takes (a GET route answers HEAD too).
  for (const [name, methods] of Object.entries(PLANE_ROUTE_METHODS)) {
    const allow = methods.flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m])).join(", ");
    app.all(PLANE_ROUTES[name as keyof typeof PLANE_ROUTES], (c) => {
      c.header("allow", allow);
      throw new MethodNotAllowedError(`${c.req.path} takes ${allow}, not ${c.req.method}`);
    });
  }

  app.onError((err, c) => {
    if (!(err instanceof TandemError)) log(`[plane] ${err.stack ?? err}`);
    closeAfterAnswerUnlessRead(incomingOf(c), (c.env as { outgoing: ServerResponse }).outgoing);
    return c.json(errorBody(err), errorStatus(err) as ContentfulStatusCode);
  });

  const viaHono = getRequestListener(app.fetch);
  return (req, res) => {
    if (req.method === "POST" && req.url === PLANE_ROUTES.run) void run(req, res);
    else if (req.method === "POST" && req.url === PLANE_ROUTES.runMany) void runMany(req, res);
    else if (options.metrics && req.url?.split("?")[0] === PLANE_METRICS_ROUTE) {
      void answerScrape(req, res, options.metrics, { token: options.metricsToken, openWithoutToken: false });
    } else void viaHono(req, res);
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

/** The Node request under a hono context (@hono/node-server hands it over as `env.incoming`). */
function incomingOf(c: Context): IncomingMessage {
  return (c.env as { incoming: IncomingMessage }).incoming;
}

/**
 * The request body as text, read straight from Node's request (building a Web
 * Request and stream for it was a measurable part of every call's time on the
 * plane), and no further than `maxBytes`: a declared length over it is refused
 * before a byte is read, a chunked body as soon as it passes it; what comes
 * after is dropped, never kept (`closeAfterAnswerUnlessRead`).
 */
function readIncoming(incoming: IncomingMessage, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(incoming.headers["content-length"]);
  if (declared > maxBytes) return Promise.reject(signedBodyTooLarge(maxBytes, declared));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const settle = (err?: Error) => {
      incoming.off("data", onData).off("end", onEnd).off("error", settle).off("close", onClose);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, total));
    };
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total <= maxBytes) return void chunks.push(chunk);
      settle(signedBodyTooLarge(maxBytes, total));
    };
    const onEnd = () => settle();
    const onClose = () => settle(new InvalidRequestError("the request ended before its body did"));
    incoming.on("data", onData).once("end", onEnd).once("error", settle).once("close", onClose);
  });
}

/**
 * For an answer given before the whole body came (refused, or too large): the
 * rest of the body is dropped as it comes, never kept, and the connection is
 * closed once the answer is out. Not at once: closing a socket with the
 * client's bytes still unread sends a reset, and the client's side then drops
 * the answer it had not read yet. So the plane half-closes after the answer,
 * drops what still comes for `PLANE_DEFAULTS.lingerMs`, then closes.
 */
function closeAfterAnswerUnlessRead(incoming: IncomingMessage, outgoing: ServerResponse): void {
  if (incoming.complete) return;
  const socket = incoming.socket;
  outgoing.once("finish", () => {
    incoming.resume(); // no listener reads it: dropped
    socket.end();
    setTimeout(() => socket.destroy(), PLANE_DEFAULTS.lingerMs).unref();
  });
}

function headerOf(req: IncomingMessage, name: string): string | null {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? (value[0] ?? null) : (value ?? null);
}
