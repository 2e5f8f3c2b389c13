import { describe, expect, it } from "vitest";
import { InvalidOptionsError, RemoteError } from "../errors.js";
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

  it("puts commander's own errors in the same shape, its suggestion included", () => {
    expect(formatCommanderError("error: unknown option '--gpu'\n(Did you mean --gpus?)\n")).toBe("error: unknown option '--gpu'; did you mean --gpus?\n");
    expect(formatCommanderError("error: missing required argument 'target'\n")).toBe("error: missing required argument 'target'\n");
  });
});
