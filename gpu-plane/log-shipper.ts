/**
 * A plane's log lines on their way to the gateway: every line its containers
 * print, and its own lines about calls (cold starts, timeouts, OOM kills),
 * sent as signed `POST /v1/planes/logs` batches, at most one every
 * `LOG_LIMITS.planeFlushMs`: a line that comes when none went for that long
 * goes at once (with those of the same moment), and the lines after it wait
 * for the next batch. So a follow (`tandem logs -f`) gets a lone line as soon
 * as an edge line of the same moment, and a busy plane still sends five
 * batches a second. Nothing waits for a send: `add` pushes onto a
 * bounded buffer. While the gateway cannot be reached the lines wait, up to
 * `LOG_LIMITS.planeMaxBufferedLines` lines and `planeMaxBufferedChars` of text;
 * past that new ones are dropped and
 * counted, and once the gateway takes lines again each app that lost some
 * gets a system line saying how many.
 */
import { LOG_LIMITS } from "../sdk/defaults.js";
import { GATEWAY_AUDIENCE, cutLogLine, paths, type LogLine, type PlaneLogBatch } from "../sdk/protocol.js";
import { signRequest } from "../sdk/signing.js";

/** A line as the plane's parts hand it over: the shipper adds the time, tier and region. */
/** A plane's line for the app's log; `time`, when it was read from its container (default: when it is added). */
export type PlaneLogLine = Pick<LogLine, "app" | "function" | "callId" | "containerId" | "source" | "text"> & { time?: number };

export interface LogShipperOptions {
  gatewayUrl: string | Promise<string>;
  secret: string;
  planeId: string;
  region: string;
  /** Where the shipper says that the gateway stopped taking lines (once), and took them again. */
  log: (line: string) => void;
  /** Handed each line as it is taken, whether or not the gateway can be reached (the OTLP exporter: otlp-exporter.ts). */
  tap?: (line: LogLine) => void;
  /** Defaults from `LOG_LIMITS`; tests make them small. */
  flushMs?: number;
  maxBufferedLines?: number;
}

/** System lines a full buffer still takes, past its limit (and as many KiB of their text). */
const SYSTEM_MARGIN = 1_000;

/**
 * @example
 * const shipper = new LogShipper({ gatewayUrl, secret, planeId, region: "local", log: console.log });
 * shipper.add({ app: "shop", function: "resize", callId, containerId, source: "stdout", text: "resized 3 images" });
 * await shipper.close(); // sends what is left
 */
export class LogShipper {
  readonly #o: LogShipperOptions & { flushMs: number; maxBufferedLines: number };
  #buffer: LogLine[] = [];
  /** Characters of text in the buffer. */
  #chars = 0;
  /** Lines dropped since the gateway last took a batch, by app and function (`${app}\n${function}`). */
  readonly #dropped = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  /** When the last batch went (0: none yet). */
  #sentAt = 0;
  #sending: Promise<void> | undefined;
  #failing = false;
  #closed = false;

  constructor(options: LogShipperOptions) {
    this.#o = {
      ...options,
      flushMs: options.flushMs ?? LOG_LIMITS.planeFlushMs,
      maxBufferedLines: options.maxBufferedLines ?? LOG_LIMITS.planeMaxBufferedLines,
    };
  }

  /** Lines held now, not yet taken by the gateway. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /** Keeps a line for the next batch (dropped and counted when the buffer is full). */
  add(line: PlaneLogLine): void {
    if (this.#closed) return;
    const text = cutLogLine(line.text);
    const record: LogLine = { ...line, time: line.time ?? Date.now(), tier: "plane", region: this.#o.region, text };
    this.#o.tap?.(record);
    // The plane's own lines (a cold start, a crash, lines dropped at the container) are kept past a full buffer, up to
    // a margin: they tell what happened to the lines that were not, and a flood of a function's own lines is when.
    const margin = line.source === "system" ? SYSTEM_MARGIN : 0;
    if (this.#buffer.length >= this.#o.maxBufferedLines + margin || this.#chars + text.length > LOG_LIMITS.planeMaxBufferedChars + margin * 1024) {
      const key = `${line.app}\n${line.function ?? ""}`;
      this.#dropped.set(key, (this.#dropped.get(key) ?? 0) + 1);
      return;
    }
    this.#chars += text.length;
    this.#buffer.push(record);
    this.#schedule(this.#sentAt + this.#o.flushMs - Date.now());
  }

  /** Sends what is left (once, briefly) and stops. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#sending;
    if (this.#buffer.length) await this.#send().catch(() => {});
  }

  #schedule(delayMs: number): void {
    if (this.#timer || this.#sending || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#sentAt = Date.now();
      this.#sending = this.#send()
        .then(
          () => {
            if (this.#failing) this.#o.log(`plane ${this.#o.planeId} is sending its log lines to the gateway again`);
            this.#failing = false;
          },
          (err: Error) => {
            if (!this.#failing) this.#o.log(`plane ${this.#o.planeId} could not send its log lines to the gateway (${err.message}); keeping them for now`);
            this.#failing = true;
          },
        )
        .finally(() => {
          this.#sending = undefined;
          // More came meanwhile, or a send failed: go on (after a pause, while failing).
          if (this.#buffer.length) this.#schedule(this.#failing ? 1_000 : this.#sentAt + this.#o.flushMs - Date.now());
        });
    }, delayMs);
    this.#timer.unref();
  }

  /** Sends the oldest lines that fit one batch; they leave the buffer only once the gateway took them. */
  async #send(): Promise<void> {
    const counted = [...this.#dropped];
    const lines = counted.length ? [...this.#droppedLines(counted), ...this.#buffer] : this.#buffer;
    const batch: LogLine[] = [];
    let bytes = 200;
    for (const line of lines) {
      bytes += JSON.stringify(line).length + 1;
      if (batch.length && (bytes > LOG_LIMITS.maxPlaneBatchBytes || batch.length >= 10_000)) break;
      batch.push(line);
    }
    const body = JSON.stringify({ planeId: this.#o.planeId, lines: batch } satisfies PlaneLogBatch);
    const route = paths.planeLogs();
    const res = await fetch((await this.#o.gatewayUrl) + route, {
      method: "POST",
      body,
      headers: {
        "content-type": "application/json",
        ...(await signRequest(this.#o.secret, { audience: GATEWAY_AUDIENCE, method: "POST", path: route, body })),
      },
      signal: AbortSignal.timeout(5_000),
    });
    await res.body?.cancel();
    if (!res.ok) throw new Error(`the gateway answered HTTP ${res.status}`);
    // Lines dropped while this batch was on its way are told in the next one.
    for (const [key, count] of counted) {
      const left = (this.#dropped.get(key) ?? 0) - count;
      if (left > 0) this.#dropped.set(key, left);
      else this.#dropped.delete(key);
    }
    for (const sent of this.#buffer.splice(0, batch.length - counted.length)) this.#chars -= sent.text.length;
  }

  /** One system line per app and function that lost lines, saying how many. */
  #droppedLines(counted: [string, number][]): LogLine[] {
    return counted.map(([key, count]) => ({
      time: Date.now(),
      app: key.slice(0, key.indexOf("\n")),
      function: key.slice(key.indexOf("\n") + 1) || null,
      callId: null,
      containerId: null,
      tier: "plane" as const,
      region: this.#o.region,
      source: "system" as const,
      text: `${count} lines dropped: plane ${this.#o.planeId} could not send them to the gateway in time`,
    }));
  }
}
