/** A log line as the log store keeps it, for unit tests: an edge stdout line of shop.f unless `fields` say otherwise. */
import type { LogLine } from "../../sdk/protocol.js";

export function logLine(text: string, fields: Partial<LogLine> = {}): LogLine {
  return { time: 1, app: "shop", function: "f", callId: null, containerId: null, tier: "edge", region: "local", source: "stdout", text, ...fields };
}
