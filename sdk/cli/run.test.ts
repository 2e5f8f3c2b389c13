import { describe, expect, it } from "vitest";
import { InvalidOptionsError } from "../errors.js";
import { parseArg } from "./run.js";

describe("tandem run's arguments", () => {
  it("are JSON, a bare word a string", () => {
    expect(parseArg("12", 1)).toBe(12);
    expect(parseArg('{"a":[1,"x"]}', 1)).toEqual({ a: [1, "x"] });
    expect(parseArg("Ada", 1)).toBe("Ada");
    expect(parseArg("9007199254740992", 1)).toBe(2 ** 53); // held exactly
    expect(parseArg("1e21", 1)).toBe(1e21);
    expect(parseArg('"12345678901234567890"', 1)).toBe("12345678901234567890");
  });

  it("take an integer with n after it as a BigInt", () => {
    expect(parseArg("12345678901234567890n", 1)).toBe(12345678901234567890n);
    expect(parseArg("-5n", 2)).toBe(-5n);
  });

  it("refuse an integer a number cannot hold exactly, rather than round it", () => {
    expect(() => parseArg("12345678901234567890", 1)).toThrow(
      new InvalidOptionsError(
        "argument 1 is an integer that a number cannot hold exactly (12345678901234567890 would arrive as 12345678901234567000): quote it to pass a string ('\"12345678901234567890\"'), or write 12345678901234567890n to pass a BigInt",
      ),
    );
    expect(() => parseArg('{"id": 9007199254740993, "note": "9007199254740993"}', 2)).toThrow(
      new InvalidOptionsError(
        'argument 2 has an integer that a number cannot hold exactly (9007199254740993 would arrive as 9007199254740992): quote it to pass a string ("9007199254740993")',
      ),
    );
  });

  it("refuse a number beyond a 64-bit float, as the API does, rather than pass Infinity", () => {
    // Before: 1e999 went to the function as Infinity.
    expect(() => parseArg("1e999", 1)).toThrow("argument 1 has a number beyond the range of a 64-bit float (1e999 would arrive as Infinity)");
    expect(() => parseArg("[1, -1e400]", 2)).toThrow("argument 2 has a number beyond the range of a 64-bit float (-1e400 would arrive as -Infinity)");
    expect(parseArg('"1e999"', 1)).toBe("1e999");
    expect(parseArg("1e308", 1)).toBe(1e308);
  });
});
