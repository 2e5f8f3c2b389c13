import { describe, expect, it } from "vitest";
import type { LogLine } from "../protocol.js";
import { formatLogLine } from "./logs.js";

const line = (text: string): LogLine => ({
  time: Date.UTC(2026, 11, 4, 7, 4, 36, 120),
  app: "shop",
  function: "resize",
  callId: "fc-01",
  containerId: "c-9f2e",
  tier: "plane",
  region: "local",
  source: "system",
  text,
});

describe("formatLogLine", () => {
  it("prints a line with its time and origin", () => {
    expect(formatLogLine(line("cold start"))).toBe("2026-12-04T07:04:36.120Z shop.resize fc-01 c-9f2e (plane, system) cold start");
  });

  it("indents the rest of a line that holds several, so none is printed without its origin above it", () => {
    const printed = formatLogLine(line("ran out of memory (limit 128 MiB); its last lines:\nallocating\r\nstill allocating")).split("\n");
    expect(printed).toEqual([
      "2026-12-04T07:04:36.120Z shop.resize fc-01 c-9f2e (plane, system) ran out of memory (limit 128 MiB); its last lines:",
      "    allocating",
      "    still allocating",
    ]);
  });
});
