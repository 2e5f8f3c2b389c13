/**
 * A plane's logs and metrics to an OpenTelemetry collector over OTLP/HTTP (JSON), when `TANDEM_OTLP_ENDPOINT` is
 * set: its containers' lines and its own lines about calls (the log shipper hands each over as it takes it), sent
 * every `METRICS_DEFAULTS.otlpLogsFlushMs` to `<endpoint>/v1/logs`, and every series of its Prometheus registry
 * (plane-metrics.ts), every `otlpMetricsIntervalMs`, to `<endpoint>/v1/metrics`. Nothing waits for a send: `addLog`
 * pushes onto a bounded buffer (past it, records are dropped and counted); a failed send is counted
 * (`tandem_plane_otlp_export_failures_total`) and logged once until a send works again.
 */
import { METRICS_DEFAULTS } from "../sdk/defaults.js";
import { otlpAttributes, otlpLogsRequest, otlpMetricsRequest, unixNano, type MetricFamilyValues, type OtlpSender } from "../sdk/otlp-json.js";
import { OTLP_PATHS, PROTOCOL_VERSION, type LogLine } from "../sdk/protocol.js";
import type { OtlpSettings } from "../sdk/settings.js";
import type { PlaneMetrics } from "./plane-metrics.js";

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
      // prom-client's types say a numeric enum for `type`; what it gives is the exposition's word ("counter", …).
      .then((snapshot) =>
        this.#post("metrics", otlpMetricsRequest(this.#sender, snapshot as unknown as MetricFamilyValues[], this.#startNano, unixNano(Date.now()))),
      )
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
