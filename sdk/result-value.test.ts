import { describe, expect, it } from "vitest";
import { API_LIMITS } from "./defaults.js";
import { decodeValue } from "./protocol.js";
import { encodeResult } from "./result-value.js";

const nested = (levels: number) => {
  let value: unknown = 1;
  for (let i = 0; i < levels; i++) value = { v: value };
  return value;
};

describe("encodeResult", () => {
  it("encodes what the wire carries, as encodeValue does", () => {
    expect(encodeResult(42, "a.f")).toEqual({ json: 42 });
    const when = new Date(0);
    const encoded = encodeResult({ when, n: 1n }, "a.f");
    expect(decodeValue(encoded.json, encoded.meta)).toEqual({ when, n: 1n });
    expect(encodeResult(nested(API_LIMITS.maxJsonDepth - 1), "a.f").json).toEqual(nested(API_LIMITS.maxJsonDepth - 1));
  });

  it("refuses a function or a symbol, saying where, with no stack of Tandem's", () => {
    expect(() => encodeResult(Symbol("s"), "a.f")).toThrow(TypeError);
    expect(() => encodeResult(Symbol("s"), "a.f")).toThrow(
      'a.f returned a symbol, which a result cannot carry: results travel as data, as arguments do (docs/api.md, "Values")',
    );
    expect(() => encodeResult({ list: [1, { done: () => 1 }] }, "a.f")).toThrow("a.f returned a function (at .list[1].done)");
    expect(() => encodeResult(new Map([["k", Symbol.iterator]]), "a.f")).toThrow("a.f returned a symbol (at [0])");
    const thrown = (() => {
      try {
        encodeResult(() => 1, "a.f");
      } catch (err) {
        return err as Error;
      }
    })();
    expect(thrown?.stack).toBe(`TypeError: ${thrown?.message}`);
  });

  it("refuses a value nested deeper than the limit, however deep, and one too long", () => {
    for (const levels of [API_LIMITS.maxJsonDepth + 1, 5_000, 50_000])
      expect(() => encodeResult(nested(levels), "a.f")).toThrow(`a.f returned a value nested more than ${API_LIMITS.maxJsonDepth} levels deep`);
    expect(() => encodeResult("x".repeat(API_LIMITS.maxResultChars + 1), "a.f")).toThrow(RangeError);
    expect(() =>
      encodeResult(
        Array.from({ length: 3 }, () => "x".repeat(API_LIMITS.maxResultChars / 3)),
        "a.f",
      ),
    ).toThrow("a.f returned a value longer than 10 MiB as JSON");
    expect(
      encodeResult(
        Array.from({ length: 1000 }, () => 1),
        "a.f",
      ).json,
    ).toHaveLength(1000);
  });
});
