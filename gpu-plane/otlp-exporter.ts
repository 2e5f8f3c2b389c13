/**
 * A plane's logs and metrics to an OpenTelemetry collector over OTLP/HTTP (JSON), when `TANDEM_OTLP_ENDPOINT` is
 * set: its containers' lines and its own lines about calls (the log shipper hands each over as it takes it), sent
 * every `METRICS_DEFAULTS.otlpLogsFlushMs` to `<endpoint>/v1/logs`, and every series of its Prometheus registry
 * (plane-metrics.ts), every `otlpMetricsIntervalMs`, to `<endpoint>/v1/metrics`. Nothing waits for a send: `addLog`
 * pushes onto a bounded buffer (past it, records are dropped and counted); a failed send is counted
 * (`tandem_plane_otlp_export_failures_total`) and logged once until a send works again.
 */
import { METRICS_DEFAULTS } from "../sdk/defaults.js";
import { otlpAttributes, otlpLogsRequest, unixNano, type OtlpKeyValue, type OtlpSender } from "../sdk/otlp-json.js";
import { OTLP_PATHS, PROTOCOL_VERSION, type LogLine } from "../sdk/protocol.js";
import type { OtlpSettings } from "../sdk/settings.js";
import type { MetricsSnapshot, PlaneMetrics } from "./plane-metrics.js";

export interface OtlpExporterOptions extends OtlpSettings {
  planeId: string;
  region: string;
  metrics: PlaneMetrics;
  /** Where the exporter says that the collector stopped taking records (once), and took them again. */
  log: (line: string) => void;
  /** Defaults from `METRICS_DEFAULTS`; tests make them small. */
  logsFlushMs?: number;
  metricsIntervalMs?: number;
  maxBufferedRecords?: number;
}

type Signal = keyof typeof OTLP_PATHS;

/**
 * @example
 * const otlp = new OtlpExporter({ endpoint: "http://127.0.0.1:4318", headers: {}, planeId, region: "local", metrics, log: console.log });
 * otlp.addLog(line); // a LogLine, as the log shipper keeps it
 * await otlp.close(); // sends what is left, and the metrics once more
 */
export class OtlpExporter {
  readonly #o: OtlpExporterOptions & { logsFlushMs: number; metricsIntervalMs: number; maxBufferedRecords: number };
  readonly #sender: OtlpSender;
  /** When the cumulative series began: this exporter's start. */
  readonly #startNano = unixNano(Date.now());
  #buffer: LogLine[] = [];
  #logTimer: NodeJS.Timeout | undefined;
  readonly #metricsTimer: NodeJS.Timeout;
  #sendingLogs: Promise<void> | undefined;
  #sendingMetrics: Promise<void> | undefined;
  readonly #failing = new Set<Signal>();
  #closed = false;

  constructor(options: OtlpExporterOptions) {
    this.#o = {
      ...options,
      logsFlushMs: options.logsFlushMs ?? METRICS_DEFAULTS.otlpLogsFlushMs,
      metricsIntervalMs: options.metricsIntervalMs ?? METRICS_DEFAULTS.otlpMetricsIntervalMs,
      maxBufferedRecords: options.maxBufferedRecords ?? METRICS_DEFAULTS.otlpMaxBufferedRecords,
    };
    this.#sender = {
      resource: otlpAttributes({
        "service.name": "tandem-plane",
        "service.instance.id": options.planeId,
        "tandem.plane_id": options.planeId,
        "tandem.region": options.region,
      }),
      scope: { name: "tandem", version: PROTOCOL_VERSION },
    };
    this.#metricsTimer = setInterval(() => void this.#sendMetrics(), this.#o.metricsIntervalMs);
    this.#metricsTimer.unref();
    // Each signal's failures are a series from the start, at 0: rate() and an alert on it need a sample before the first.
    for (const signal of ["logs", "metrics"]) options.metrics.otlpFailures.inc({ signal }, 0);
  }

  /** Log records held now, not yet taken by the collector. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /** Keeps a line for the next batch (dropped and counted when the buffer is full). */
  addLog(line: LogLine): void {
    if (this.#closed) return;
    if (this.#buffer.length >= this.#o.maxBufferedRecords) return void this.#o.metrics.otlpDropped.inc();
    this.#buffer.push(line);
    this.#scheduleLogs(this.#o.logsFlushMs);
  }

  /** Sends what is left of the logs and the metrics once more (once, briefly), and stops. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#logTimer);
    clearInterval(this.#metricsTimer);
    await Promise.all([this.#sendingLogs, this.#sendingMetrics]);
    await Promise.all([this.#buffer.length ? this.#sendLogs() : undefined, this.#sendMetrics()]);
  }

  #scheduleLogs(delayMs: number): void {
    if (this.#logTimer || this.#sendingLogs || this.#closed) return;
    this.#logTimer = setTimeout(() => {
      this.#logTimer = undefined;
      this.#sendingLogs = this.#sendLogs().finally(() => {
        this.#sendingLogs = undefined;
        // More came meanwhile, or the send failed: go on (after a pause, while failing).
        if (this.#buffer.length) this.#scheduleLogs(this.#failing.has("logs") ? 1_000 : this.#o.logsFlushMs);
      });
    }, delayMs);
    this.#logTimer.unref();
  }

  /** Sends the oldest records that fit one request; they leave the buffer once the collector took them. */
  async #sendLogs(): Promise<void> {
    const batch = this.#buffer.slice(0, METRICS_DEFAULTS.otlpMaxBatchRecords);
    if (await this.#post("logs", otlpLogsRequest(this.#sender, batch))) this.#buffer.splice(0, batch.length);
  }

  #sendMetrics(): Promise<void> {
    this.#sendingMetrics ??= this.#o.metrics
      .snapshot()
      .then((snapshot) => this.#post("metrics", otlpMetricsRequest(this.#sender, snapshot, this.#startNano, unixNano(Date.now()))))
      .then(
        () => undefined,
        (err: Error) => this.#failed("metrics", err.message),
      )
      .finally(() => (this.#sendingMetrics = undefined));
    return this.#sendingMetrics;
  }

  /** Posts one request; true when the collector took it. Never throws: a failure is counted and logged once. */
  async #post(signal: Signal, body: unknown): Promise<boolean> {
    try {
      const res = await fetch(this.#o.endpoint + OTLP_PATHS[signal], {
        method: "POST",
        body: JSON.stringify(body),
        headers: { ...this.#o.headers, "content-type": "application/json" },
        signal: AbortSignal.timeout(METRICS_DEFAULTS.otlpTimeoutMs),
      });
      const text = await res.text().catch(() => "");
      if (!res.ok) throw new Error(`HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`);
      if (this.#failing.delete(signal)) this.#o.log(`plane ${this.#o.planeId} is sending its ${signal} to ${this.#o.endpoint} again`);
      return true;
    } catch (err) {
      this.#failed(signal, (err as Error).message);
      return false;
    }
  }

  #failed(signal: Signal, why: string): void {
    this.#o.metrics.otlpFailures.inc({ signal });
    if (this.#failing.has(signal)) return;
    this.#failing.add(signal);
    const keeping = signal === "logs" ? `keeping up to ${this.#o.maxBufferedRecords} records meanwhile` : "sending the next ones as usual";
    this.#o.log(`plane ${this.#o.planeId} could not send its ${signal} to the OTLP endpoint ${this.#o.endpoint} (${why}); ${keeping}`);
  }
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
 * A registry's series as one `ExportMetricsServiceRequest`: counters as cumulative monotonic sums, gauges as gauges,
 * histograms as cumulative explicit-bucket histograms (Prometheus's cumulative `le` buckets turned into the counts
 * of each bucket). Summaries (prom-client's default metrics have none) are left out.
 */
export function otlpMetricsRequest(sender: OtlpSender, snapshot: MetricsSnapshot, startTimeUnixNano: string, timeUnixNano: string) {
  const metrics: unknown[] = [];
  const attributesOf = (labels: Record<string, string | number | undefined>): OtlpKeyValue[] =>
    otlpAttributes(Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, v === undefined ? undefined : String(v)])));
  for (const metric of snapshot) {
    const head = { name: metric.name, description: metric.help, unit: unitOf(metric.name) };
    // prom-client's types say an enum; what it gives is the exposition's word ("counter", "gauge", …).
    const type = metric.type as unknown as string;
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
  metric: MetricsSnapshot[number],
  startTimeUnixNano: string,
  timeUnixNano: string,
  attributesOf: (labels: Record<string, string | number | undefined>) => OtlpKeyValue[],
) {
  const sets = new Map<string, { labels: Record<string, string | number | undefined>; buckets: [number, number][]; sum: number; count: number }>();
  for (const v of metric.values as { value: number; labels: Record<string, string | number | undefined>; metricName?: string }[]) {
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
