import { describe, expect, it } from "vitest";
import { CALL_ID_PATTERN, decodeValue, encodeValue, newCallId } from "./protocol.js";

describe("the value codec", () => {
  it("leaves plain JSON as it is, with no meta", () => {
    const value = { a: [1, "two", null, true], b: { c: 1.5 } };
    expect(encodeValue(value)).toEqual({ json: value });
  });

  it("round-trips what JSON cannot carry", () => {
    const value = {
      bytes: new Uint8Array([0, 127, 128, 255]),
      when: new Date("2020-02-29T12:00:00Z"),
      map: new Map<unknown, unknown>([
        ["k", new Set([1, 2])],
        [3, "three"],
      ]),
      missing: undefined,
      list: [undefined, 1],
      big: 12345678901234567890n,
    };
    const { json, meta } = encodeValue(value);
    const back = decodeValue(JSON.parse(JSON.stringify(json)), JSON.parse(JSON.stringify(meta))) as typeof value;
    expect(back).toEqual(value);
    expect(back.bytes).toBeInstanceOf(Uint8Array);
    expect("missing" in back).toBe(true);
  });

  it("carries large byte arrays", () => {
    const bytes = new Uint8Array(200_000).map((_, i) => i % 256);
    const { json, meta } = encodeValue(bytes);
    expect(decodeValue(json, meta)).toEqual(bytes);
  });
});

describe("call ids", () => {
  it("are well formed, unique and ordered by time", () => {
    const a = newCallId(1_000);
    const b = newCallId(2_000);
    expect(a).toMatch(CALL_ID_PATTERN);
    expect(a < b).toBe(true);
    expect(new Set(Array.from({ length: 1000 }, () => newCallId())).size).toBe(1000);
  });
});
