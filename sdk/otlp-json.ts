/**
 * Tandem's log lines in the OTLP/HTTP JSON encoding (OpenTelemetry's `ExportLogsServiceRequest`, as
 * opentelemetry-proto's JSON mapping writes it: 64-bit integers as decimal strings, enums as numbers, lowerCamelCase
 * field names), and the attribute values both signals use. The plane's exporter sends these
 * (gpu-plane/otlp-exporter.ts); no Node or workerd API is used, so either tier may.
 */
import type { LogLine } from "./protocol.js";

/** An OTLP `AnyValue` as Tandem writes it: a string, a double or a boolean. */
export type OtlpAnyValue = { stringValue: string } | { doubleValue: number } | { boolValue: boolean };

/** An OTLP `KeyValue`. */
export interface OtlpKeyValue {
  key: string;
  value: OtlpAnyValue;
}

/** What sends the records: its `Resource` attributes (`service.name`, …) and its instrumentation scope. */
export interface OtlpSender {
  resource: OtlpKeyValue[];
  scope: { name: string; version: string };
}

/** OpenTelemetry's severity numbers for the sources of a line: a process's stdout is INFO, its stderr WARN. */
const SEVERITY = {
  stdout: { severityNumber: 9, severityText: "INFO" },
  stderr: { severityNumber: 13, severityText: "WARN" },
  system: { severityNumber: 9, severityText: "INFO" },
} as const;

/**
 * Attributes from a record of strings, numbers and booleans; null and undefined values are left out.
 * @example otlpAttributes({ "tandem.app": "shop", "tandem.call_id": null }); // [{ key: "tandem.app", value: { stringValue: "shop" } }]
 */
export function otlpAttributes(values: Record<string, string | number | boolean | null | undefined>): OtlpKeyValue[] {
  const out: OtlpKeyValue[] = [];
  for (const key in values) {
    const v = values[key];
    if (v === null || v === undefined) continue;
    out.push({ key, value: typeof v === "string" ? { stringValue: v } : typeof v === "number" ? { doubleValue: v } : { boolValue: v } });
  }
  return out;
}

/** Milliseconds since the epoch as OTLP's `fixed64` nanoseconds, a decimal string. */
export function unixNano(ms: number): string {
  return (BigInt(Math.round(ms * 1000)) * 1000n).toString();
}

/**
 * One `ExportLogsServiceRequest` of log lines, each a `LogRecord` whose attributes carry the line's app, function,
 * call, container, tier, region and source (docs/observability.md, "OTLP").
 * @example
 * const body = JSON.stringify(otlpLogsRequest(sender, lines)); // POST <endpoint>/v1/logs, content-type application/json
 */
export function otlpLogsRequest(sender: OtlpSender, lines: readonly LogLine[], observedMs = Date.now()) {
  const observed = unixNano(observedMs);
  return {
    resourceLogs: [
      {
        resource: { attributes: sender.resource },
        scopeLogs: [
          {
            scope: sender.scope,
            logRecords: lines.map((line) => ({
              timeUnixNano: unixNano(line.time),
              observedTimeUnixNano: observed,
              ...SEVERITY[line.source],
              body: { stringValue: line.text },
              attributes: otlpAttributes({
                "tandem.app": line.app,
                "tandem.function": line.function,
                "tandem.call_id": line.callId,
                "tandem.container_id": line.containerId,
                "tandem.tier": line.tier,
                "tandem.region": line.region,
                "tandem.source": line.source,
              }),
            })),
          },
        ],
      },
    ],
  };
}
