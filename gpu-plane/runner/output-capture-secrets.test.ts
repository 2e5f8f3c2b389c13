// A file of its own: a capture takes over process.stdout.write and process.stderr.write for the process.
import { describe, expect, it, vi } from "vitest";
import type { LogFrame } from "../../sdk/protocol.js";
import { OutputCapture } from "./output-capture.js";

const SECRET = "k-7f3a9c-secret-value";
const CALL = "fc-0123456789abcdefghjkmnpqrs";

describe("OutputCapture with the container's secret values", () => {
  it("masks them in every line kept, however it was written to the streams (console.* writes there too: test/secrets.test.ts), and in what passes through before it is connected", () => {
    const passed: string[] = [];
    const stdout = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => (passed.push(String(chunk)), true));
    const capture = new OutputCapture(() => CALL, [SECRET, ""]);
    try {
      process.stdout.write(`module scope ${SECRET}\n`); // before the runner is connected: to the container's own output
      const sent: string[] = [];
      capture.attach((text) => sent.push(text));
      process.stdout.write(`raw ${SECRET}\n`);
      process.stdout.write(`split ${SECRET.slice(0, 5)}`); // a line written in parts
      process.stdout.write(`${SECRET.slice(5)} end\n`);
      process.stderr.write(Buffer.from(`bytes ${SECRET}\n`));
      const texts = [...sent, capture.take(CALL)]
        .join("")
        .split("\n")
        .filter(Boolean)
        .flatMap((l) => (JSON.parse(l) as LogFrame).lines.map((x) => x.text));
      expect(texts).toEqual(["raw ***", "split *** end", "bytes ***"]);
      expect(passed).toEqual(["module scope ***\n"]);
      capture.detach();
    } finally {
      stdout.mockRestore();
    }
  });
});
