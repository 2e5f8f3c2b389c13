/**
 * Who may read a plane's Prometheus metrics (`GET /metrics`, plane-metrics.ts). The plane's other routes are signed
 * by the gateway, which a Prometheus server cannot do, so the scrape has two ways in:
 * - on the plane's API port, with the metrics token (`TANDEM_METRICS_TOKEN`) as a bearer token; without a token set
 *   there, the route answers 401 saying how to turn it on;
 * - on a listener of its own (`tandem plane --metrics-port`, on 127.0.0.1 unless `--metrics-host` says), which
 *   answers nothing but `/metrics`: to whoever reaches it when no token is set, else with the token only.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { MethodNotAllowedError, NotFoundError, UnauthorizedError, errorBody, errorStatus } from "../sdk/errors.js";
import { PLANE_METRICS_ROUTE } from "../sdk/protocol.js";

/** What answers a scrape: the exposition text and its content type (a `PlaneMetrics`). */
export interface MetricsExposition {
  text(): Promise<string>;
  readonly contentType: string;
}

/** How a scrape is let in: the token it must carry, if one is set, and whether the route is open without one. */
export interface ScrapeAccess {
  token: string | undefined;
  /** True on the metrics listener (loopback by default); false on the API port, where a token is needed. */
  openWithoutToken: boolean;
}

/**
 * Answers one request for `/metrics`.
 * @example
 * if (req.url === PLANE_METRICS_ROUTE) return void answerScrape(req, res, metrics, { token, openWithoutToken: false });
 */
export async function answerScrape(req: IncomingMessage, res: ServerResponse, metrics: MetricsExposition, access: ScrapeAccess): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return answerError(res, new MethodNotAllowedError(`${PLANE_METRICS_ROUTE} answers GET and HEAD only, not ${req.method}`), 405);
  }
  try {
    checkScrape(req.headers.authorization, access);
    const text = await metrics.text();
    res.writeHead(200, { "content-type": metrics.contentType, "content-length": Buffer.byteLength(text) });
    res.end(req.method === "HEAD" ? undefined : text);
  } catch (err) {
    answerError(res, err, errorStatus(err));
  }
}

function answerError(res: ServerResponse, err: unknown, status: number): void {
  res.writeHead(status, {
    "content-type": "application/json",
    ...(status === 401 ? { "www-authenticate": 'Bearer realm="tandem-plane-metrics"' } : {}),
    ...(status === 405 ? { allow: "GET, HEAD" } : {}),
  });
  res.end(JSON.stringify(errorBody(err)));
}

/**
 * The metrics listener's request handler: `/metrics` and nothing else.
 * @example createServer(metricsListener(metrics, { token: undefined, openWithoutToken: true })).listen(9464, "127.0.0.1");
 */
export function metricsListener(metrics: MetricsExposition, access: ScrapeAccess): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if ((req.url ?? "").split("?")[0] === PLANE_METRICS_ROUTE) return void answerScrape(req, res, metrics, access);
    answerError(res, new NotFoundError(`this listener serves ${PLANE_METRICS_ROUTE} only`), 404);
  };
}

function checkScrape(authorization: string | undefined, access: ScrapeAccess): void {
  if (access.token === undefined) {
    if (access.openWithoutToken) return;
    throw new UnauthorizedError(
      `metrics on the plane's API port need a token: start the plane with TANDEM_METRICS_TOKEN set and scrape with it as a bearer token, ` +
        `or scrape the metrics listener (tandem plane --metrics-port), on 127.0.0.1 by default`,
    );
  }
  const given = /^Bearer\s+(.+)$/i.exec(authorization ?? "")?.[1]?.trim();
  if (!given) throw new UnauthorizedError("metrics need the plane's metrics token (TANDEM_METRICS_TOKEN) as a bearer token: Authorization: Bearer <token>");
  if (!sameSecret(given, access.token)) throw new UnauthorizedError("the bearer token is not this plane's metrics token (TANDEM_METRICS_TOKEN)");
}

/** Compares two secrets in time independent of where they differ (hashed first, so their lengths may differ too). */
function sameSecret(a: string, b: string): boolean {
  const hash = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(hash(a), hash(b));
}
