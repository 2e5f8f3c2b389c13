import { describe, expect, it } from "vitest";
import { InvalidOptionsError } from "./errors.js";
import { FunctionCall } from "./function-call.js";

// No gateway listens there: an option refused is refused before any request.
const call = FunctionCall.fromId("fc-01m8kahk46m9azssadeq4z196a", { gateway: "http://127.0.0.1:9" });

describe("a call's logs", () => {
  it("refuse an option they do not take, naming the nearest, rather than drop it and read every line", async () => {
    const misspelt = { limt: 5 } as unknown as Parameters<typeof call.logs>[0];
    await expect(call.logs(misspelt)).rejects.toThrow(
      new InvalidOptionsError('logs(): unknown option "limt" (it takes container, source, since, search, limit); did you mean "limit"?'),
    );
    expect(() => call.followLogs({ function: "f" } as unknown as Parameters<typeof call.logs>[0])).toThrow(
      'followLogs(): unknown option "function" (it takes container, source, since, search, limit)',
    );
  });
});

describe("a call's cancel", () => {
  it("refuses a terminateContainer that is not true or false, as the HTTP route does, rather than take any value as true", async () => {
    await expect(call.cancel({ terminateContainer: "x" as unknown as boolean })).rejects.toThrow(
      new InvalidOptionsError('cancel(): option "terminateContainer" must be true or false (got "x")'),
    );
  });
});
