import { describe, expect, it } from "vitest";
import { ContainerFailedError, InvalidOptionsError, RemoteError } from "../errors.js";
import { formatCommanderError, formatFailure } from "./failure.js";

describe("a command's failure", () => {
  it("reads error: and the message, whatever threw it", () => {
    expect(formatFailure(new InvalidOptionsError('app "a" has no function "nope"'))).toBe('error: app "a" has no function "nope"');
    expect(formatFailure(new Error("disk full"))).toBe("error: disk full");
    expect(formatFailure("plain text")).toBe("error: plain text");
  });

  it("gives a function's own error as it was thrown, with its remote stack under it", () => {
    const err = new RemoteError({ name: "RangeError", message: "out of range", stack: "RangeError: out of range\n    at f (app.ts:3:9)" });
    expect(formatFailure(err)).toBe("error: RangeError: out of range\n    at f (app.ts:3:9)");
  });

  it("writes the control characters of a function's text as escapes, as tandem logs does: its error, its stack, a container's last lines", () => {
    const err = new RemoteError({ name: "Error", message: "\x1b[31mred\x1b[0m\rhidden\nnext", stack: "Error: …\n    at \x1b]0;title\x07f (app.ts:3:9)" });
    expect(formatFailure(err)).toBe("error: Error: \\x1b[31mred\\x1b[0m\\rhidden\nnext\n    at \\x1b]0;title\\x07f (app.ts:3:9)");
    const died = new ContainerFailedError("ctr-1 was OOM-killed; its last lines:\n\x1b[2Jloading");
    expect(formatFailure(died)).toBe("error: ctr-1 was OOM-killed; its last lines:\n\\x1b[2Jloading");
  });

  it("puts commander's own errors in the same shape, its suggestion included", () => {
    expect(formatCommanderError("error: unknown option '--gpu'\n(Did you mean --gpus?)\n")).toBe("error: unknown option '--gpu'; did you mean --gpus?\n");
    expect(formatCommanderError("error: missing required argument 'target'\n")).toBe("error: missing required argument 'target'\n");
  });
});
