/**
 * An OTLP/HTTP collector on loopback for tests, and checks of what it receives against OpenTelemetry's protobuf schema
 * (`@opentelemetry/otlp-transformer`'s generated root): a plane's export (test/metrics.test.ts) and the gateway's
 * (test/edge-metrics.test.ts) are checked alike.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import { expect } from "vitest";

/** The messages of OpenTelemetry's protobuf schema, as protobufjs generated them. */
interface ProtoMessage {
  fromObject(object: unknown): unknown;
  toObject(message: unknown, options: Record<string, unknown>): unknown;
  verify(message: unknown): string | null;
}
const otel = (
  createRequire(import.meta.url)("@opentelemetry/otlp-transformer/build/src/generated/root.js") as {
    opentelemetry: { proto: { collector: { logs: { v1: Record<string, ProtoMessage> }; metrics: { v1: Record<string, ProtoMessage> } } } };
  }
).opentelemetry.proto.collector;
export const LogsRequest = otel.logs.v1.ExportLogsServiceRequest!;
export const MetricsRequest = otel.metrics.v1.ExportMetricsServiceRequest!;

/** A request the collector received. */
export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: any;
}

/** A small OTLP/HTTP collector on loopback: keeps what it is sent, or answers 503 while `failing`. */
export interface TestCollector {
  url: string;
  received: Received[];
  failing: boolean;
  /** Requests answered 503 while `failing`. */
  refused: number;
  close(): void;
}

/** Starts a `TestCollector` on a free port of 127.0.0.1. */
export async function startCollector(): Promise<TestCollector> {
  let server: Server | undefined = undefined;
  const collector: TestCollector = { url: "", received: [], failing: false, refused: 0, close: () => server?.close() };
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req
      .on("data", (c: Buffer) => chunks.push(c))
      .on("end", () => {
        if (collector.failing) {
          collector.refused++;
          res.writeHead(503).end("collector down");
          return;
        }
        collector.received.push({ path: req.url ?? "", headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString("utf8")) });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  collector.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return collector;
}

/** An OTLP JSON body checked against the protobuf schema: every field known (nothing lost on a round trip), and valid. */
export function checkAgainstSchema(type: ProtoMessage, body: unknown): void {
  const message = type.fromObject(body);
  expect(type.verify(message)).toBeNull();
  const back = type.toObject(message, { longs: String, enums: Number, bytes: String, defaults: false, oneofs: false });
  expect(back).toEqual(withoutEmptyArrays(body));
}

/** protobufjs leaves empty repeated fields out of `toObject`; so does this, for the comparison. */
function withoutEmptyArrays(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutEmptyArrays);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => !(Array.isArray(v) && v.length === 0))
        .map(([k, v]) => [k, withoutEmptyArrays(v)]),
    );
  }
  return value;
}

/** OTLP attributes as a plain record of their values. */
export const attrs = (list: { key: string; value: Record<string, unknown> }[]) => Object.fromEntries(list.map((a) => [a.key, Object.values(a.value)[0]]));
