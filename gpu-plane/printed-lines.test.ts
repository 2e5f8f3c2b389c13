import { describe, expect, it } from "vitest";
import { PrintedLines } from "./printed-lines.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("PrintedLines", () => {
  it("writes the lines of a burst together, in order, once the first has waited its time", async () => {
    const writes: string[] = [];
    const printed = new PrintedLines((text) => writes.push(text), 30);
    printed.line("one");
    printed.line("two");
    expect(writes).toEqual([]);
    await sleep(60);
    expect(writes).toEqual(["one\ntwo\n"]);
    printed.line("three");
    await sleep(60);
    expect(writes).toEqual(["one\ntwo\n", "three\n"]);
  });

  it("writes at once past its size, and what waits when flushed", () => {
    const writes: string[] = [];
    const printed = new PrintedLines((text) => writes.push(text), 10_000, 10);
    printed.line("0123456789");
    expect(writes).toEqual(["0123456789\n"]);
    printed.line("a");
    printed.flush();
    printed.flush();
    expect(writes).toEqual(["0123456789\n", "a\n"]);
  });
});
