/**
 * `GET /v1/metrics`: the gateway's metrics in Prometheus's text format (gateway/edge-metrics.ts), summed over the
 * ledger's shards, with the scheduler's, the agents' and the queues', when scraped. A Prometheus server sends one fixed bearer token, so the route takes either an
 * admin token (for every app, as anything of the whole gateway needs) or, when the gateway has one, its
 * `TANDEM_METRICS_TOKEN`, as a plane's `/metrics` takes it; anything else is a 401 or 403.
 */
import { Hono, type MiddlewareHandler } from "hono";
import { UnauthorizedError } from "../sdk/errors.js";
import { sha256Hex } from "../sdk/hex.js";
import { HEADERS, ROUTES, TOKEN_PATTERN } from "../sdk/protocol.js";
import { gatewayWideGuard } from "./auth.js";
import type { MetricFamilyValues } from "../sdk/otlp-json.js";
import { hubFor } from "./agents.js";
import {
  PROMETHEUS_CONTENT_TYPE,
  agentMetricFamilies,
  edgeMetricFamilies,
  edgeMetricRows,
  prometheusText,
  queueMetricFamilies,
  scheduleMetricFamilies,
  zeroRows,
} from "./edge-metrics.js";
import type { Env, RouteEnv } from "./env.js";
import { registry } from "./registry.js";
import { listQueues } from "./queues.js";
import { schedulerFor } from "./scheduler.js";

export function metricsRoutes(): Hono<RouteEnv> {
  const routes = new Hono<RouteEnv>();

  routes.get(ROUTES.metrics, scrapeGuard(), async (c) => {
    const { families } = await gatewayMetrics(c.env);
    return c.body(prometheusText(families), 200, { "content-type": PROMETHEUS_CONTENT_TYPE });
  });

  return routes;
}

/**
 * The gateway's series, as a scrape and the OTLP export read them: the ledger shards' counts, at 0 for what the
 * functions served here have not counted yet (`zeroRows`), and the scheduler's state (gateway/edge-metrics.ts); and
 * when the first count began (ms; undefined before any call was counted).
 */
export async function gatewayMetrics(env: Env): Promise<{ families: MetricFamilyValues[]; since: number | undefined }> {
  const [rows, schedules, hubs, queues] = await Promise.all([
    edgeMetricRows(env),
    schedulerFor(env).metrics(Date.now()),
    agentHubMetrics(env),
    listQueues(env), // each queue asked, 32 at a time
  ]);
  const served = registry()
    .all()
    .map((fn) => ({ app: fn.app, name: fn.name, tier: fn.spec.tier, scheduled: fn.spec.schedule !== undefined }));
  const { families, since } = edgeMetricFamilies([...rows, ...zeroRows(served)]);
  const more = [...(hubs.length ? agentMetricFamilies(hubs) : []), ...(queues.length ? queueMetricFamilies(queues) : [])];
  return { families: [...families, ...scheduleMetricFamilies(schedules), ...more], since };
}

/** Every served agent's hubs' counts, one read of each shard. */
function agentHubMetrics(env: Env) {
  return Promise.all(
    registry().apps.flatMap((app) =>
      app.agents.flatMap((agent) =>
        Array.from({ length: agent.shards }, async (_, shard) => ({
          app: app.name,
          agent: agent.label,
          metrics: await hubFor(env, app.name, agent.label, shard, agent.shards).metrics(),
        })),
      ),
    ),
  );
}

/** Lets in the metrics token (when the gateway has one), else what `gatewayWideGuard("admin")` lets in. */
function scrapeGuard(): MiddlewareHandler<RouteEnv> {
  const admin = gatewayWideGuard("admin", "the gateway's metrics", { servedEnvironment: true });
  return async (c, next) => {
    const header = c.req.header(HEADERS.authorization);
    const given = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "")?.[1];
    const metricsToken = c.var.config.metricsToken;
    if (header === undefined && metricsToken !== undefined)
      throw new UnauthorizedError(
        "this gateway's metrics take its metrics token (TANDEM_METRICS_TOKEN) or an admin API token: send `Authorization: Bearer <token>` (a Prometheus job's authorization.credentials_file)",
      );
    if (given !== undefined && metricsToken !== undefined && !TOKEN_PATTERN.test(given)) {
      // Compared as digests: in time that does not depend on where they differ.
      if ((await sha256Hex(given)) === (await sha256Hex(metricsToken))) return next();
      throw new UnauthorizedError("the bearer token is neither an API token nor this gateway's metrics token (TANDEM_METRICS_TOKEN)");
    }
    return admin(c, next);
  };
}
