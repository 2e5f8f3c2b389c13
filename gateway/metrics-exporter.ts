/**
 * The gateway's metrics to an OpenTelemetry collector, when `TANDEM_OTLP_ENDPOINT` is set: every
 * `TANDEM_OTLP_METRICS_INTERVAL_SECONDS` (15 s by default), the ledger shards' counts summed and the scheduler's state (gateway/edge-metrics.ts)
 * as one OTLP/HTTP JSON `ExportMetricsServiceRequest` to `<endpoint>/v1/metrics` (`sdk/otlp-json.ts`, as a plane
 * sends its own).
 *
 * Why a Durable Object's alarm: a Worker has no timer that outlives a request, and a cron trigger fires once a minute
 * at best and only where one is deployed. One object (one export, not one per isolate, so a collector sees one
 * stream per series) sets its alarm again each time it fires, for as long as an endpoint is configured; without one
 * it fires once more at most and stops. Nothing starts it on a call's path: a ledger shard tells it to run (`arm`)
 * once per shard object's life, after the first batch of counted calls it records while an endpoint is set.
 * A failed request is reported once in the gateway's log, until one works again; the next interval sends the counts
 * afresh (they are cumulative, so nothing is lost but a point).
 */
import { DurableObject } from "cloudflare:workers";
import { METRICS_DEFAULTS } from "../sdk/defaults.js";
import { otlpMetricsRequest, unixNano } from "../sdk/otlp-json.js";
import { OTLP_PATHS, PROTOCOL_VERSION } from "../sdk/protocol.js";
import { gatewayConfig, type GatewayConfig } from "./config.js";
import type { Env } from "./env.js";
import { gatewayOtlpResource } from "./log-otlp.js";
import { gatewayMetrics } from "./metrics-routes.js";

export class MetricsExporter extends DurableObject<Env> {
  readonly #config: GatewayConfig;
  /** Whether the last request failed: a failure is reported once, until one works again. */
  #failing = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#config = gatewayConfig(env); // this object's entry: parsed here
  }

  /** Starts the export, when an endpoint is configured and it is not running: the first one goes at once. */
  async arm(): Promise<void> {
    if (!this.#config.otlp) return;
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now());
  }

  /** Sends the counts, and sets the next alarm while an endpoint is configured. */
  override async alarm(): Promise<void> {
    const otlp = this.#config.otlp;
    if (!otlp) return; // the endpoint was unset (a deploy without it): the export stops here
    // Set first: a send that fails or hangs does not stop the ones after it.
    await this.ctx.storage.setAlarm(Date.now() + this.#config.otlpMetricsIntervalMs);
    try {
      const { families, since } = await gatewayMetrics(this.env);
      if (since === undefined) return; // no call counted yet
      const now = Date.now();
      const sender = {
        resource: gatewayOtlpResource(this.#config),
        scope: { name: "tandem", version: PROTOCOL_VERSION },
      };
      const res = await fetch(otlp.endpoint + OTLP_PATHS.metrics, {
        method: "POST",
        body: JSON.stringify(otlpMetricsRequest(sender, families, unixNano(since), unixNano(now))),
        headers: { ...otlp.headers, "content-type": "application/json" },
        signal: AbortSignal.timeout(METRICS_DEFAULTS.otlpTimeoutMs),
      });
      await res.body?.cancel();
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      if (this.#failing) console.log(`metrics: sending the gateway's metrics to the OTLP endpoint ${otlp.endpoint} again`);
      this.#failing = false;
    } catch (err) {
      if (!this.#failing)
        console.error(
          `metrics: could not send the gateway's metrics to the OTLP endpoint ${otlp.endpoint} (${(err as Error).message}); the next goes in ${this.#config.otlpMetricsIntervalMs / 1000} s`,
        );
      this.#failing = true;
    }
  }
}

/** The exporter's stub: one object for the whole gateway. */
export function metricsExporter(env: Env) {
  return env.METRICS_EXPORTER.get(env.METRICS_EXPORTER.idFromName("metrics-exporter"));
}
