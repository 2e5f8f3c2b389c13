/**
 * Edge log lines to an OpenTelemetry collector, when `TANDEM_OTLP_ENDPOINT` is set: the lines a function prints at the
 * edge (and the gateway's own lines about its calls), gathered in this isolate for `LOG_LIMITS.edgeBatchMs` beside
 * their write to the log store, and posted after the response (`waitUntil`) as one OTLP/HTTP JSON request to
 * `<endpoint>/v1/logs` (`sdk/otlp-json.ts`). A plane's lines are not sent from here: the plane sends its own.
 * A request that fails loses its lines (the log store still has them) and is reported once, until one works again.
 */
import { LOG_LIMITS, METRICS_DEFAULTS } from "../sdk/defaults.js";
import { otlpAttributes, otlpLogsRequest, type OtlpSender } from "../sdk/otlp-json.js";
import { OTLP_PATHS, PROTOCOL_VERSION, type LogLine } from "../sdk/protocol.js";
import type { OtlpSettings } from "../sdk/settings.js";
import { isolateBatch } from "./isolate-batch.js";

/** Whether the last request from this isolate failed: a failure is reported once, until one works again. */
let failing = false;

const batchForOtlp = isolateBatch(
  LOG_LIMITS.edgeBatchMs,
  (to: { otlp: OtlpSettings; config: GatewayResource; report: (m: string) => void }, lines: LogLine[]) => postLines(to.otlp, to.config, lines, to.report),
);

/**
 * Sends edge lines to the OTLP endpoint: batched in this isolate, posted after the response.
 * @example sendEdgeLinesToOtlp(rc, otlp, [line], console.error);
 */
export function sendEdgeLinesToOtlp(
  rc: { config: GatewayResource; waitUntil(promise: Promise<unknown>): void },
  otlp: OtlpSettings,
  lines: LogLine[],
  report: (message: string) => void,
): void {
  rc.waitUntil(batchForOtlp({ otlp, config: rc.config, report }, lines));
}

/** What a gateway's OTLP resource says of it: its region and the environment it serves. */
export interface GatewayResource {
  region: string;
  environment: string;
}

/** The gateway's OTLP resource, its logs' and its metrics'. */
export function gatewayOtlpResource(config: GatewayResource) {
  return otlpAttributes({ "service.name": "tandem-gateway", "tandem.region": config.region, "deployment.environment.name": config.environment });
}

async function postLines(otlp: OtlpSettings, config: GatewayResource, lines: LogLine[], report: (message: string) => void): Promise<void> {
  const sender: OtlpSender = {
    resource: gatewayOtlpResource(config),
    scope: { name: "tandem", version: PROTOCOL_VERSION },
  };
  try {
    const res = await fetch(otlp.endpoint + OTLP_PATHS.logs, {
      method: "POST",
      body: JSON.stringify(otlpLogsRequest(sender, lines)),
      headers: { ...otlp.headers, "content-type": "application/json" },
      signal: AbortSignal.timeout(METRICS_DEFAULTS.otlpTimeoutMs),
    });
    await res.body?.cancel();
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    if (failing) report(`logs: sending edge lines to the OTLP endpoint ${otlp.endpoint} again`);
    failing = false;
  } catch (err) {
    if (!failing)
      report(`logs: could not send ${lines.length} edge lines to the OTLP endpoint ${otlp.endpoint} (${(err as Error).message}); the log store keeps them`);
    failing = true;
  }
}
