import { describe, expect, it } from "vitest";
import { LineSplitter } from "./stream-lines.js";

/** Every line `pieces` make, pushed one after another, then ended. */
function split(pieces: string[], options?: ConstructorParameters<typeof LineSplitter>[0]): string[] {
  const lines = new LineSplitter(options);
  return [...pieces.flatMap((piece) => lines.push(piece)), ...lines.end()];
}

describe("LineSplitter", () => {
  it("splits text that comes in pieces into its lines, a \\r before a newline dropped", () => {
    expect(split(["a", "b\nc", "d\r\n", "\n", "e"])).toEqual(["ab", "cd", "", "e"]);
    expect(split(["one\ntwo\n"])).toEqual(["one", "two"]);
    expect(split([""])).toEqual([]);
  });

  it("hands a line longer than maxLineChars on in pieces of that size, or whole once cut with overlong", () => {
    expect(split(["abcdefg", "h\nxy"], { maxLineChars: 3 })).toEqual(["abc", "def", "gh", "xy"]);
    const cut = (kept: string, length: number) => `${kept}…(${length})`;
    expect(split(["abcd", "efg", "h\nxy"], { maxLineChars: 3, overlong: cut })).toEqual(["abc…(8)", "xy"]);
    const lines = new LineSplitter({ maxLineChars: 3 });
    lines.push("ab");
    expect(lines.pendingLength).toBe(2);
  });

  // A plane generator's 8 MB chunk reached the gateway in thousands of pieces, each of which searched the whole line
  // so far again: 18 s, the gateway answering nothing meanwhile. Now each piece is searched once: 4 MB in 16,384
  // pieces here takes milliseconds, where before it took minutes (a timeout, not a timing, is what this checks).
  it("reads a long line that comes in many small pieces once, not once a piece", { timeout: 20_000 }, () => {
    const piece = "x".repeat(256);
    const lines = new LineSplitter();
    for (let i = 0; i < 16_384; i++) expect(lines.push(piece)).toEqual([]);
    const [line] = lines.push("\n");
    expect(line).toHaveLength(4 * 1024 * 1024);
  });
});
