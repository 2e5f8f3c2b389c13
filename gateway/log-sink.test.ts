import { describe, expect, it } from "vitest";
import type { LogLine } from "../sdk/protocol.js";
import { jsonPieces } from "./log-sink.js";
import { logLine } from "../test/helpers/log-line.js";

const line = (text: string): LogLine => logLine(text);

describe("jsonPieces", () => {
  it("cuts lines into JSON arrays of at most the given length, in order, a longer line alone", () => {
    const lines = ["a", "b".repeat(60), "c", "d".repeat(300), "e"].map(line);
    const pieces = jsonPieces(lines, 400);
    for (const piece of pieces) if (piece.count > 1) expect(piece.json.length).toBeLessThanOrEqual(400);
    expect(pieces.map((p) => p.count)).toEqual([2, 1, 1, 1]);
    expect(pieces.flatMap((p) => (JSON.parse(p.json) as LogLine[]).map((l) => l.text))).toEqual(lines.map((l) => l.text));
  });

  it("keeps a batch that fits as one array", () => {
    const lines = ["a", "b", "c"].map(line);
    expect(jsonPieces(lines, 10_000)).toEqual([{ json: JSON.stringify(lines), count: 3 }]);
  });
});
