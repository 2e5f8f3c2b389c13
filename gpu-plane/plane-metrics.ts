/**
 * A plane's metrics, as Prometheus series in a registry of its own (prom-client): per function, its calls, errors
 * and retries and the latency of each part of a call (queue wait, cold start, run) as histograms, counted on the
 * call's path; its containers, GPU seconds and cost, and the plane's GPUs, containers, CPU and memory, read when
 * scraped. `GET /metrics` answers `text()`; the OTLP exporter (otlp-exporter.ts) sends `snapshot()`.
 * The series are listed in docs/observability.md, "Metrics".
 */
import os from "node:os";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { METRICS_DEFAULTS } from "../sdk/defaults.js";
import type { PreparedSummary } from "./prepared-containers.js";
import type { PlaneRunTimings, UsageRow } from "../sdk/protocol.js";
import type { ContainerSummary, FunctionStats } from "./container-pool.js";
import type { Inventory } from "./inventory.js";

/** What the dispatcher tells about each input as it ends: the one call the call path makes. */
export interface CallMeter {
  /** `errorCode` is the `TandemError` code of a failed input (`function_error`, `function_timeout`, …), else undefined. */
  callEnded(app: string, fn: string, attempt: number, timings: PlaneRunTimings, errorCode: string | undefined): void;
}

/** What a plane's metrics read when scraped. */
export interface PlaneMetricsSource {
  planeId: string;
  region: string;
  runtime: string;
  sandboxed: boolean;
  inventory: Inventory;
  functions(): FunctionStats[];
  containers(): ContainerSummary[];
  /** The prepared containers kept now, paused (prepared-containers.ts). */
  prepared(): PreparedSummary[];
  /** Container time and cost since the ledger began, running containers counted up to now (usage-ledger.ts). */
  usage(): UsageRow[];
  /**
   * Whether the plane takes inputs (`ready`), is told to stop (`draining`), or cannot (`unavailable`: no engine, still
   * removing its previous run's containers, or not made yet); and its gateway: whether its last heartbeat was taken,
   * and when one last was (ms since the epoch). What an operator alerts on, which only a log line said.
   */
  status(): { state: "ready" | "draining" | "unavailable"; gatewayReachable: boolean; lastHeartbeatAt: number | undefined };
}

/** The bound series of one function, made on its first call so later calls only add and observe. */
interface FunctionSeries {
  calls: ReturnType<Counter<FunctionLabel>["labels"]>;
  retries: ReturnType<Counter<FunctionLabel>["labels"]>;
  queue: ReturnType<Histogram<FunctionLabel>["labels"]>;
  coldStart: ReturnType<Histogram<FunctionLabel>["labels"]>;
  run: ReturnType<Histogram<FunctionLabel>["labels"]>;
}

type FunctionLabel = "app" | "function";

/**
 * Adds each label set's total of `rows` to `counter`, to 12 significant digits: a sum of a ledger's floats is written
 * as its value (`0.00011969083`), not with the float noise of its additions (`0.00011969082999999999`).
 */
function incSums<L extends string>(counter: Counter<L>, rows: readonly (readonly [Record<L, string>, number])[]): void {
  const sums = new Map<string, [Record<L, string>, number]>();
  for (const [labels, value] of rows) {
    const key = JSON.stringify(labels);
    const sum = sums.get(key);
    if (sum) sum[1] += value;
    else sums.set(key, [labels, value]);
  }
  for (const [labels, value] of sums.values()) counter.inc(labels, Number(value.toPrecision(12)));
}

/** Every series with its values, as prom-client gives them (`Registry.getMetricsAsJSON`). */
export type MetricsSnapshot = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>;

/**
 * @example
 * const metrics = new PlaneMetrics({ planeId, region: "local", runtime: "docker", sandboxed: true, inventory, functions, containers, usage });
 * metrics.callEnded("shop", "resize", 1, { queueMs: 0.2, runMs: 41 }, undefined);
 * const text = await metrics.text(); // # HELP tandem_function_calls_total …
 */
export class PlaneMetrics implements CallMeter {
  readonly registry = new Registry();
  readonly #source: PlaneMetricsSource;
  readonly #byFunction = new Map<string, FunctionSeries>();
  readonly #calls: Counter<FunctionLabel>;
  readonly #errors: Counter<FunctionLabel | "code">;
  readonly #retries: Counter<FunctionLabel>;
  readonly #queue: Histogram<FunctionLabel>;
  readonly #coldStart: Histogram<FunctionLabel>;
  readonly #run: Histogram<FunctionLabel>;
  /** OTLP export failures by signal (otlp-exporter.ts counts them here, so a scrape shows them too). */
  readonly otlpFailures: Counter<"signal">;
  /** Log records dropped because the OTLP buffer was full. */
  readonly otlpDropped: Counter;

  constructor(source: PlaneMetricsSource) {
    this.#source = source;
    const registers = [this.registry];
    const labelNames = ["app", "function"] as const;
    this.#calls = new Counter({
      name: "tandem_function_calls_total",
      help: "Inputs that ended on this plane (each attempt once), by function.",
      labelNames,
      registers,
    });
    this.#errors = new Counter({
      name: "tandem_function_errors_total",
      help: "Inputs that ended failed or timed out, by function and error code (not the caller's invalid_request).",
      labelNames: [...labelNames, "code"],
      registers,
    });
    this.#retries = new Counter({
      name: "tandem_function_retries_total",
      help: "Inputs that were a retry (attempt 2 or later), by function.",
      labelNames,
      registers,
    });
    this.#queue = new Histogram({
      name: "tandem_function_queue_wait_seconds",
      help: "Time an input waited for a container, cold start excluded.",
      labelNames,
      buckets: [...METRICS_DEFAULTS.queueWaitBuckets],
      registers,
    });
    this.#coldStart = new Histogram({
      name: "tandem_function_cold_start_seconds",
      help: "Time to start a container for an input (a cold start).",
      labelNames,
      buckets: [...METRICS_DEFAULTS.coldStartBuckets],
      registers,
    });
    this.#run = new Histogram({
      name: "tandem_function_run_seconds",
      help: "Time an input ran in its container, until its output.",
      labelNames,
      buckets: [...METRICS_DEFAULTS.runBuckets],
      registers,
    });
    this.otlpFailures = new Counter({
      name: "tandem_plane_otlp_export_failures_total",
      help: "OTLP export requests that failed, by signal (logs, metrics).",
      labelNames: ["signal"],
      registers,
    });
    this.otlpDropped = new Counter({
      name: "tandem_plane_otlp_dropped_log_records_total",
      help: "Log records dropped because the OTLP export buffer was full.",
      registers,
    });
    this.#scrapedSeries(registers);
    // The plane process's CPU, memory, event loop and garbage collection, as prom-client measures them.
    collectDefaultMetrics({ register: this.registry, prefix: "tandem_plane_" });
  }

  callEnded(app: string, fn: string, attempt: number, timings: PlaneRunTimings, errorCode: string | undefined): void {
    const key = `${app}\u0000${fn}`;
    let series = this.#byFunction.get(key);
    if (!series) {
      const labels = { app, function: fn };
      series = {
        calls: this.#calls.labels(labels),
        retries: this.#retries.labels(labels),
        queue: this.#queue.labels(labels),
        coldStart: this.#coldStart.labels(labels),
        run: this.#run.labels(labels),
      };
      // From 0, so a function with no retry yet shows 0, and a rate over its first one is right.
      series.retries.inc(0);
      this.#byFunction.set(key, series);
    }
    series.calls.inc();
    if (attempt > 1) series.retries.inc();
    series.queue.observe(timings.queueMs / 1000);
    if (timings.coldStartMs !== undefined) series.coldStart.observe(timings.coldStartMs / 1000);
    if (timings.runMs !== undefined) series.run.observe(timings.runMs / 1000);
    // A caller's mistake found only as the input ran (a stream of a function that is not a generator) is its call,
    // not its error: the dashboard counts it so too.
    if (errorCode !== undefined && errorCode !== "invalid_request") this.#errors.inc({ app, function: fn, code: errorCode });
  }

  /** The Prometheus text exposition of every series. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The exposition's content type (`text/plain; version=0.0.4; charset=utf-8`). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every series as values, for the OTLP exporter. */
  snapshot(): Promise<MetricsSnapshot> {
    return this.registry.getMetricsAsJSON();
  }

  /** The series read from the plane's state when scraped: nothing on the call path. */
  #scrapedSeries(registers: Registry[]): void {
    const source = this.#source;
    const labelNames = ["app", "function"] as const;
    new Gauge({
      name: "tandem_plane_info",
      help: "This plane: its id, region, container runtime, whether it is sandboxed and its GPUs simulated (always 1).",
      labelNames: ["plane", "region", "runtime", "sandboxed", "simulated"],
      registers,
      collect() {
        this.reset();
        const { planeId, region, runtime, sandboxed, inventory } = source;
        this.set({ plane: planeId, region, runtime, sandboxed: String(sandboxed), simulated: String(inventory.simulated) }, 1);
      },
    });
    new Gauge({
      name: "tandem_plane_state",
      help: "1 for the state this plane is in: ready (takes inputs), draining (told to stop: takes none), unavailable (cannot start containers, or not ready yet).",
      labelNames: ["state"],
      registers,
      collect() {
        const { state } = source.status();
        for (const each of ["ready", "draining", "unavailable"]) this.set({ state: each }, each === state ? 1 : 0);
      },
    });
    new Gauge({
      name: "tandem_plane_gateway_reachable",
      help: "1 when the gateway took this plane's last heartbeat, 0 when it could not be reached or refused it (the plane is sent nothing then).",
      registers,
      collect() {
        this.set(source.status().gatewayReachable ? 1 : 0);
      },
    });
    new Gauge({
      name: "tandem_plane_last_heartbeat_timestamp_seconds",
      help: "When the gateway last took a heartbeat of this plane, in seconds since the epoch (0: never).",
      registers,
      collect() {
        this.set((source.status().lastHeartbeatAt ?? 0) / 1000);
      },
    });
    new Gauge({
      name: "tandem_function_running_containers",
      help: "Containers of a function running an input now.",
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const f of source.functions()) this.set({ app: f.app, function: f.function }, f.running);
      },
    });
    new Gauge({
      name: "tandem_function_warm_containers",
      help: "Containers of a function started and idle, ready for an input.",
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const f of source.functions()) this.set({ app: f.app, function: f.function }, f.idle);
      },
    });
    new Gauge({
      name: "tandem_function_starting_containers",
      help: "Containers of a function starting for an input now (cold starts in progress).",
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const f of source.functions()) this.set({ app: f.app, function: f.function }, f.starting);
      },
    });
    new Gauge({
      name: "tandem_function_prepared_containers",
      help: "Prepared containers of a function kept now: started, ready and paused for its next cold starts.",
      labelNames,
      registers,
      collect() {
        this.reset();
        // 0 for a function with none, as the other container gauges say, so a query sees a series, not a gap.
        for (const f of source.functions()) this.set({ app: f.app, function: f.function }, 0);
        for (const p of source.prepared()) this.inc({ app: p.app, function: p.function });
      },
    });
    new Gauge({
      name: "tandem_function_queued_inputs",
      help: "Inputs of a function waiting for a container now.",
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const f of source.functions()) this.set({ app: f.app, function: f.function }, f.queued);
      },
    });
    new Counter({
      name: "tandem_function_gpu_seconds_total",
      help: "GPU seconds of a function's containers (a container's life times its GPUs), by GPU type; running containers up to now.",
      labelNames: [...labelNames, "gpu"],
      registers,
      collect() {
        this.reset();
        const rows = source.usage().flatMap((row) => {
          if (row.gpu === null) return [];
          const [type = row.gpu, count = "1"] = row.gpu.split(":");
          return [[{ app: row.app, function: row.function, gpu: type }, row.seconds * Number(count)] as const];
        });
        incSums(this, rows);
      },
    });
    new Counter({
      name: "tandem_function_cost_usd_total",
      help: "What a function's containers cost, in US dollars, as `tandem usage` prices them (sdk/pricing.ts); running containers up to now.",
      labelNames,
      registers,
      collect() {
        this.reset();
        incSums(
          this,
          source.usage().map((row) => [{ app: row.app, function: row.function }, row.costUsd] as const),
        );
      },
    });
    new Gauge({
      name: "tandem_plane_gpus",
      help: 'GPUs of this plane by type and state (free, used); simulated="true" when the inventory is declared, not real.',
      labelNames: ["type", "state", "simulated"],
      registers,
      collect() {
        this.reset();
        const simulated = String(source.inventory.simulated);
        for (const [type, { total, free }] of Object.entries(source.inventory.summary().gpus)) {
          this.set({ type, state: "free", simulated }, free);
          this.set({ type, state: "used", simulated }, total - free);
        }
      },
    });
    new Gauge({
      name: "tandem_plane_containers",
      help: "Containers on this plane, by state (busy, idle, starting).",
      labelNames: ["state"],
      registers,
      collect() {
        this.reset();
        const counts = { busy: 0, idle: 0, starting: 0 };
        for (const c of source.containers()) counts[!c.ready ? "starting" : c.busy ? "busy" : "idle"]++;
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    new Gauge({
      name: "tandem_plane_cpu_cores",
      help: "CPU cores this plane gives containers: total, and reserved by the containers running now (more than total when they share the cores).",
      labelNames: ["state"],
      registers,
      collect() {
        this.set({ state: "total" }, source.inventory.cpuTotal);
        this.set({ state: "reserved" }, source.inventory.cpuReserved);
      },
    });
    new Gauge({
      name: "tandem_plane_memory_bytes",
      help: "Memory this plane gives containers: total, and reserved by the containers running now.",
      labelNames: ["state"],
      registers,
      collect() {
        const { memoryMiB } = source.inventory.summary();
        this.set({ state: "total" }, memoryMiB.total * 1024 * 1024);
        this.set({ state: "reserved" }, (memoryMiB.total - memoryMiB.free) * 1024 * 1024);
      },
    });
    new Counter({
      name: "tandem_host_cpu_seconds_total",
      help: "CPU time of the plane's host, all cores together, by mode (user, nice, sys, idle, irq).",
      labelNames: ["mode"],
      registers,
      collect() {
        this.reset();
        const sums: Record<string, number> = {};
        for (const cpu of os.cpus()) for (const [mode, ms] of Object.entries(cpu.times)) sums[mode] = (sums[mode] ?? 0) + ms / 1000;
        for (const [mode, seconds] of Object.entries(sums)) this.inc({ mode }, seconds);
      },
    });
    new Gauge({
      name: "tandem_host_cpu_cores",
      help: "CPU cores of the plane's host.",
      registers,
      collect() {
        this.set(os.cpus().length);
      },
    });
    new Gauge({
      name: "tandem_host_load1",
      help: "The host's load average over one minute.",
      registers,
      collect() {
        this.set(os.loadavg()[0] ?? 0);
      },
    });
    new Gauge({
      name: "tandem_host_memory_bytes",
      help: "Memory of the plane's host: total, and free now.",
      labelNames: ["state"],
      registers,
      collect() {
        this.set({ state: "total" }, os.totalmem());
        this.set({ state: "free" }, os.freemem());
      },
    });
  }
}
