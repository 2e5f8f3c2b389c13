import { describe, expect, it } from "vitest";
import { ProgressBar, counted, progressBar } from "./progress.js";

function recorder(): { writes: string[]; stream: NodeJS.WriteStream } {
  const writes: string[] = [];
  return { writes, stream: { write: (text: string) => writes.push(text) > 0 } as unknown as NodeJS.WriteStream };
}

describe("progress bar", () => {
  it("draws the share done, and clears its line at the end", async () => {
    const { writes, stream } = recorder();
    const bar = new ProgressBar("put w.bin", 8 * 1024 * 1024, stream);
    const chunks = [new Uint8Array(4 * 1024 * 1024), new Uint8Array(4 * 1024 * 1024)];
    let seen = 0;
    for await (const chunk of counted(
      (async function* () {
        yield* chunks;
      })(),
      bar,
    ))
      seen += chunk.byteLength;
    bar.end();
    expect(seen).toBe(8 * 1024 * 1024);
    expect(writes[0]).toMatch(/^\rput w\.bin \[#{15}-{15}\] {2}50% {2}4\.0\/8\.0 MiB/);
    expect(writes.at(-2)).toMatch(/\[#{30}\] 100% {2}8\.0\/8\.0 MiB/);
    expect(writes.at(-1)).toBe("\r\x1b[2K");
  });

  it("is drawn only on a terminal, for transfers over a few MiB", () => {
    const was = process.stderr.isTTY;
    try {
      process.stderr.isTTY = false;
      expect(progressBar("get", 1e9)).toBeUndefined();
      process.stderr.isTTY = true;
      expect(progressBar("get", 1e9)).toBeInstanceOf(ProgressBar);
      expect(progressBar("get", 1000)).toBeUndefined();
    } finally {
      process.stderr.isTTY = was;
    }
  });
});
