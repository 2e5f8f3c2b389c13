/**
 * Tandem's log lines in the OTLP/HTTP JSON encoding (OpenTelemetry's `ExportLogsServiceRequest`, as
 * opentelemetry-proto's JSON mapping writes it: 64-bit integers as decimal strings, enums as numbers, lowerCamelCase
 * field names), its metrics (`ExportMetricsServiceRequest`, from series shaped as prom-client's `getMetricsAsJSON`
 * gives them), and the attribute values both signals use. The plane's exporter sends these
 * (gpu-plane/otlp-exporter.ts), and so does the gateway (gateway/log-otlp.ts, gateway/metrics-exporter.ts); no Node
 * or workerd API is used, so either tier may.
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
const ERROR = { severityNumber: 17, severityText: "ERROR" } as const;

/**
 * A system line saying a call failed (the gateway's `failed after N attempts: …`), timed out, or lost its container
 * (out of memory, crashed, killed), or that a plane lost what a container wrote; and one saying an attempt failed and
 * is retried (`attempt 1 failed (…); attempt 2 in 1000 ms`).
 */
const FAILED_LINE =
  /^failed after \d+ attempts?: |\btimed out after \d|\bran out of memory\b|\bcrashed with exit code\b|\bwas killed\b|\bwithout its last commit\b/;
const RETRY_LINE = /^attempt \d+ failed /;

/** A line's severity: its source's, but a system line that says a call failed is ERROR, and one that it is retried WARN. */
function severityOf(line: Pick<LogLine, "source" | "text">) {
  if (line.source !== "system") return SEVERITY[line.source];
  if (FAILED_LINE.test(line.text)) return ERROR;
  return RETRY_LINE.test(line.text) ? SEVERITY.stderr : SEVERITY.system;
}

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
              ...severityOf(line),
              body: { stringValue: line.text },
              attributes: otlpAttributes({
                "tandem.app": line.app,
                "tandem.function": line.function,
                "tandem.call_id": line.callId,
                "tandem.container_id": line.containerId,
                "tandem.agent_session": line.session,
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

/** OTLP units for the suffixes Prometheus names carry (UCUM; `{USD}` an annotation, as UCUM has no currency). */
function unitOf(name: string): string {
  const base = name.replace(/_total$/, "");
  if (base.endsWith("_seconds")) return "s";
  if (base.endsWith("_bytes")) return "By";
  if (base.endsWith("_usd")) return "{USD}";
  return "1";
}

/**
 * One metric family with its values, as prom-client's `Registry.getMetricsAsJSON` gives it (a plane's registry), and as
 * the gateway builds its edge series (gateway/edge-metrics.ts): a histogram's values are its `_bucket` (with `le`),
 * `_sum` and `_count` samples, each naming itself in `metricName`.
 */
export interface MetricFamilyValues {
  name: string;
  help: string;
  /** The exposition's word: `counter`, `gauge`, `histogram` or `summary`. */
  type: string;
  values: readonly { value: number; labels: Readonly<Record<string, string | number | undefined>>; metricName?: string }[];
}

/**
 * Series as one `ExportMetricsServiceRequest`: counters as cumulative monotonic sums, gauges as gauges,
 * histograms as cumulative explicit-bucket histograms (Prometheus's cumulative `le` buckets turned into the counts
 * of each bucket). Summaries (prom-client's default metrics have none) are left out.
 */
export function otlpMetricsRequest(sender: OtlpSender, snapshot: readonly MetricFamilyValues[], startTimeUnixNano: string, timeUnixNano: string) {
  const metrics: unknown[] = [];
  const attributesOf = (labels: Readonly<Record<string, string | number | undefined>>): OtlpKeyValue[] =>
    otlpAttributes(Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, v === undefined ? undefined : String(v)])));
  for (const metric of snapshot) {
    const head = { name: metric.name, description: metric.help, unit: unitOf(metric.name) };
    const type = metric.type;
    const points = () => metric.values.map((v) => ({ attributes: attributesOf(v.labels), startTimeUnixNano, timeUnixNano, asDouble: v.value }));
    if (type === "counter") {
      metrics.push({ ...head, sum: { dataPoints: points(), aggregationTemporality: 2, isMonotonic: true } });
    } else if (type === "gauge") {
      metrics.push({ ...head, gauge: { dataPoints: points().map(({ startTimeUnixNano: _, ...p }) => p) } });
    } else if (type === "histogram") {
      metrics.push({ ...head, histogram: { dataPoints: histogramPoints(metric, startTimeUnixNano, timeUnixNano, attributesOf), aggregationTemporality: 2 } });
    }
  }
  return { resourceMetrics: [{ resource: { attributes: sender.resource }, scopeMetrics: [{ scope: sender.scope, metrics }] }] };
}

/** One data point per label set of a prom-client histogram (its `_bucket`, `_sum` and `_count` values). */
function histogramPoints(
  metric: MetricFamilyValues,
  startTimeUnixNano: string,
  timeUnixNano: string,
  attributesOf: (labels: Readonly<Record<string, string | number | undefined>>) => OtlpKeyValue[],
) {
  const sets = new Map<string, { labels: Record<string, string | number | undefined>; buckets: [number, number][]; sum: number; count: number }>();
  for (const v of metric.values) {
    const { le, ...labels } = v.labels;
    const key = JSON.stringify(labels);
    let set = sets.get(key);
    if (!set) sets.set(key, (set = { labels, buckets: [], sum: 0, count: 0 }));
    if (v.metricName?.endsWith("_bucket")) set.buckets.push([le === "+Inf" ? Infinity : Number(le), v.value]);
    else if (v.metricName?.endsWith("_sum")) set.sum = v.value;
    else if (v.metricName?.endsWith("_count")) set.count = v.value;
  }
  return [...sets.values()].map((set) => {
    const sorted = set.buckets.sort((a, b) => a[0] - b[0]);
    const bounds = sorted.filter(([le]) => le !== Infinity).map(([le]) => le);
    let below = 0;
    const bucketCounts = sorted.map(([, cumulative]) => {
      const n = cumulative - below;
      below = cumulative;
      return String(n);
    });
    if (sorted.at(-1)?.[0] !== Infinity) bucketCounts.push(String(set.count - below));
    return {
      attributes: attributesOf(set.labels),
      startTimeUnixNano,
      timeUnixNano,
      count: String(set.count),
      sum: set.sum,
      bucketCounts,
      explicitBounds: bounds,
    };
  });
}
