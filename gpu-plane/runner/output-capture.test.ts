import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { LOG_LIMITS } from "../../sdk/defaults.js";
import type { LogFrame } from "../../sdk/protocol.js";
import { OutputCapture } from "./output-capture.js";

// One capture for the file: it takes over process.stdout.write, and lets go (detach) after each test.
const CALL = "fc-0123456789abcdefghjkmnpqrs";
let current: string | null = CALL;
const capture = new OutputCapture(() => current);
let sent: string[] = [];
const lines = (texts: string[]) =>
  texts.flatMap((t) =>
    t
      .split("\n")
      .filter(Boolean)
      .flatMap((l) => (JSON.parse(l) as LogFrame).lines.map((x) => x.text)),
  );

beforeAll(() => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance", "Date"] }));
afterAll(() => vi.useRealTimers());
afterEach(() => {
  capture.detach();
  vi.advanceTimersByTime(1_000);
  current = CALL;
});
function attach(): void {
  sent = [];
  capture.attach((text) => sent.push(text));
}

describe("OutputCapture", () => {
  it("sends the first line after a quiet spell at once, as its own frame (a container killed just after it still told it)", () => {
    attach();
    process.stdout.write("about to allocate\n");
    expect(lines(sent)).toEqual(["about to allocate"]);
  });

  it("holds the lines of the spell after it for the next frame, the call's result", () => {
    attach();
    process.stdout.write("first\n");
    vi.advanceTimersByTime(2);
    process.stdout.write("second\nthird\n");
    expect(lines(sent)).toEqual(["first"]);
    expect(lines([capture.take(CALL)])).toEqual(["second", "third"]);
  });

  it("sends held lines when the spell ends without a frame to go with", () => {
    attach();
    process.stdout.write("first\n");
    process.stdout.write("second\n");
    vi.advanceTimersByTime(LOG_LIMITS.runnerFlushMs - 1);
    expect(lines(sent)).toEqual(["first"]);
    vi.advanceTimersByTime(1);
    expect(lines(sent)).toEqual(["first", "second"]);
  });

  it("goes on holding lines until the spell ends, then sends the next one at once again", () => {
    attach();
    process.stdout.write("a\n");
    vi.advanceTimersByTime(3);
    process.stdout.write("b\n");
    capture.take(CALL);
    vi.advanceTimersByTime(3);
    process.stdout.write("c\n"); // still within the spell
    expect(lines(sent)).toEqual(["a"]);
    vi.advanceTimersByTime(LOG_LIMITS.runnerFlushMs);
    expect(lines(sent)).toEqual(["a"]); // written late in the window that just ended: it waits for the next
    vi.advanceTimersByTime(LOG_LIMITS.runnerFlushMs);
    expect(lines(sent)).toEqual(["a", "c"]); // held a whole window: sent as it ended
    vi.advanceTimersByTime(LOG_LIMITS.runnerFlushMs);
    process.stdout.write("d\n");
    expect(lines(sent)).toEqual(["a", "c", "d"]);
  });

  it("keeps a spell going while lines keep coming, so a line a call, each taken with its result, needs no write of its own", () => {
    attach();
    const taken: string[] = [];
    for (let i = 0; i < 20; i++) {
      process.stdout.write(`call ${i}\n`);
      vi.advanceTimersByTime(3); // a call every 3 ms, each ending with its result
      taken.push(capture.take(CALL));
    }
    expect(lines(sent)).toEqual(["call 0"]);
    expect(lines(taken)).toEqual(Array.from({ length: 19 }, (_, i) => `call ${i + 1}`));
    vi.advanceTimersByTime(2 * LOG_LIMITS.runnerFlushMs); // quiet for a whole spell: it ends
    process.stdout.write("after a quiet spell\n");
    expect(lines(sent)).toEqual(["call 0", "after a quiet spell"]);
  });

  it("ends a call's unfinished line when its result takes the lines", () => {
    attach();
    process.stdout.write("done\n");
    process.stdout.write("no newline");
    expect(lines([capture.take(CALL)])).toEqual(["no newline"]);
  });

  it("takes whole lines as written, CRLF ended ones and one cut for its length too, beside a line of another stream under way", () => {
    attach();
    process.stdout.write("first\r\n");
    process.stdout.write("x".repeat(20_000) + "\n");
    process.stdout.write("begun, ");
    process.stderr.write("a whole warning\n");
    process.stdout.write("then ended\n");
    process.stdout.write("\n");
    const frames = [...sent, capture.take(CALL)].flatMap((t) =>
      t
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as LogFrame),
    );
    expect(frames.flatMap((f) => f.lines.map((l) => `${l.source} ${l.text}`))).toEqual([
      "stdout first",
      `stdout ${"x".repeat(LOG_LIMITS.maxLineChars - 25)}… (cut: 20000 characters)`,
      "stderr a whole warning",
      "stdout begun, then ended",
      "stdout ",
    ]);
  });

  it("cuts a line longer than 16 KiB written in pieces once, when it ends, naming the length written", () => {
    attach();
    process.stdout.write("z".repeat(20_000));
    process.stdout.write("z".repeat(5_000));
    process.stdout.write(" end\n");
    const cut = lines([...sent, capture.take(CALL)]);
    expect(cut).toEqual(["z".repeat(LOG_LIMITS.maxLineChars - 25) + "… (cut: 25004 characters)"]);
  });

  it("cuts an unfinished line longer than 16 KiB the same way when its result takes the lines", () => {
    attach();
    process.stdout.write("z".repeat(20_000));
    expect(lines([...sent, capture.take(CALL)])).toEqual(["z".repeat(LOG_LIMITS.maxLineChars - 25) + "… (cut: 20000 characters)"]);
  });
});
