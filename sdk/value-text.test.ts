/** valueText: a value quoted in a message as it was given, where JSON.stringify would say something else. */
import { describe, expect, it } from "vitest";
import { echoedText, valueText } from "./value-text.js";

describe("valueText", () => {
  it("writes JSON values as JSON", () => {
    expect(valueText("5")).toBe('"5"');
    expect(valueText({ hours: -1, list: [1, "a", null, true] })).toBe('{"hours":-1,"list":[1,"a",null,true]}');
    expect(valueText(new Date(0))).toBe('"1970-01-01T00:00:00.000Z"');
  });

  it("writes what JSON would turn into null or drop as it is", () => {
    expect(valueText(NaN)).toBe("NaN");
    expect(valueText({ hours: NaN, minutes: Infinity, days: undefined })).toBe('{"hours":NaN,"minutes":Infinity,"days":undefined}');
    expect(valueText([-Infinity, 5n, -0])).toBe("[-Infinity,5n,-0]");
    expect(valueText(function named() {})).toBe("[function named]");
    expect(valueText(Symbol("s"))).toBe("Symbol(s)");
  });

  it("stops at a cycle and at depth instead of throwing", () => {
    const loop: Record<string, unknown> = { a: 1 };
    loop.self = loop;
    expect(valueText(loop)).toBe('{"a":1,"self":[circular]}');
    expect(valueText([[[[[1]]]]])).toBe("[[[[[…]]]]]");
  });
});

describe("echoedText", () => {
  it("quotes what a request sent, cut at 80 characters, its reordering marks escaped", () => {
    expect(echoedText("nope")).toBe('"nope"');
    expect(echoedText("b".repeat(5_000))).toBe(`"${"b".repeat(80)}…"`);
    expect(echoedText("in\u202evoice\u2066")).toBe('"in\\u202evoice\\u2066"');
    expect(echoedText("a\nb", 2)).toBe('"a\\n…"');
    expect(echoedText("sh\u200fop\u200e\u061c")).toBe('"sh\\u200fop\\u200e\\u061c"');
    expect(echoedText("ab\u{1F600}c", 3)).toBe('"ab…"'); // the emoji's first half alone is not shown
  });
});
