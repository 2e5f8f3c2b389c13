/** The OTLP log records' severities: a line's source's, with the system lines that say a call failed as ERROR. */
import { describe, expect, it } from "vitest";
import type { LogLine } from "./protocol.js";
import { otlpLogsRequest } from "./otlp-json.js";

const sender = { resource: [], scope: { name: "tandem", version: "test" } };
const line = (source: LogLine["source"], text: string): LogLine => ({
  time: 1,
  app: "shop",
  function: "resize",
  callId: "fc-01m8kahk46m9azssadeq4z196a",
  containerId: null,
  tier: "plane",
  region: "local",
  source,
  text,
});
const severities = (lines: LogLine[]) =>
  otlpLogsRequest(sender, lines).resourceLogs[0]!.scopeLogs[0]!.logRecords.map((r) => `${r.severityNumber} ${r.severityText}`);

describe("OTLP log severities", () => {
  it("says a failed call's system lines are ERROR and a retry's WARN (before: every system line was INFO)", () => {
    expect(
      severities([
        line("stdout", "hello"),
        line("stderr", "a warning"),
        line("system", "cold start: shop.resize ctr-1 ready in 812 ms"),
        line("system", "failed after 3 attempts: Error: boom"),
        line("system", "shop.resize timed out after 10 s in container ctr-1 (attempt 1): the container was stopped"),
        line("system", "shop.resize container ctr-1 ran out of memory (limit 256 MiB) during the call"),
        line("system", "shop.resize container ctr-1 crashed with exit code 3 during the call"),
        line("system", "attempt 1 failed (Error: boom); attempt 2 in 1000 ms"),
      ]),
    ).toEqual(["9 INFO", "13 WARN", "9 INFO", "17 ERROR", "17 ERROR", "17 ERROR", "17 ERROR", "13 WARN"]);
  });

  it("carries an agent's line's session fingerprint as tandem.agent_session, and none on a function's line", () => {
    const agent: LogLine = { ...line("stderr", "onMessage threw"), function: "chat", callId: null, tier: "edge", session: "0123456789ab" };
    const records = otlpLogsRequest(sender, [agent, line("stdout", "hello")]).resourceLogs[0]!.scopeLogs[0]!.logRecords;
    expect(records[0]!.attributes).toContainEqual({ key: "tandem.agent_session", value: { stringValue: "0123456789ab" } });
    expect(records[1]!.attributes.map((a) => a.key)).not.toContain("tandem.agent_session");
  });
});
