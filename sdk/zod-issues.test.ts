import { describe, expect, it } from "vitest";
import { z } from "zod";
import { describeIssues } from "./zod-issues.js";

/** The sentence for `value` refused by `schema`. */
function refusal(schema: z.ZodType, value: unknown): string {
  const parsed = schema.safeParse(value, { reportInput: true });
  if (parsed.success) throw new Error("the value was taken");
  return describeIssues(parsed.error, "field", schema);
}

describe("describeIssues", () => {
  const body = z.strictObject({ args: z.array(z.unknown()).optional(), limits: z.strictObject({ maxInputs: z.number().optional() }).optional() });

  it("names the nearest known field of an unknown one, at the top and inside an object", () => {
    expect(refusal(body, { argz: [] })).toBe('unknown field "argz"; did you mean "args"?');
    expect(refusal(body, { limits: { maxInput: 1 } })).toBe('unknown field "limits.maxInput"; did you mean "limits.maxInputs"?');
  });

  it("looks through a schema made when first used (z.lazy), as the protocol's request bodies are", () => {
    const lazy = z.lazy(() => body);
    expect(refusal(lazy, { argz: [] })).toBe('unknown field "argz"; did you mean "args"?');
    expect(refusal(z.strictObject({ inner: z.lazy(() => body) }), { inner: { limits: { maxInput: 1 } } })).toBe(
      'unknown field "inner.limits.maxInput"; did you mean "inner.limits.maxInputs"?',
    );
  });

  it("tells the first few issues of a body wrong in many places, and counts the rest", () => {
    const lines = z.strictObject({ lines: z.array(z.strictObject({ callId: z.string().regex(/^fc-/) })) });
    const said = refusal(lines, { lines: Array.from({ length: 55 }, (_, i) => ({ callId: `x${i}` })) });
    expect(said.startsWith('field "lines.0.callId"')).toBe(true);
    expect(said).toContain('field "lines.4.callId"');
    expect(said).not.toContain('"lines.5.callId"');
    expect(said.endsWith("; and 50 more")).toBe(true);
    expect(refusal(lines, { lines: Array.from({ length: 6 }, (_, i) => ({ callId: `x${i}` })) }).endsWith("; and 1 more")).toBe(true);
  });

  it("echoes a number JSON cannot write as itself, not as null", () => {
    const wait = z.strictObject({ wait: z.number("must be a number of milliseconds") });
    expect(refusal(wait, { wait: NaN })).toBe('field "wait" must be a number of milliseconds (got NaN)');
    expect(refusal(wait, { wait: -Infinity })).toBe('field "wait" must be a number of milliseconds (got -Infinity)');
    // zod's own words for it were "expected number, received number".
    const window = z.strictObject({ scaledownWindow: z.number().int().min(0) });
    expect(describeIssues(window.safeParse({ scaledownWindow: Infinity }, { reportInput: true }).error!)).toBe(
      'option "scaledownWindow" Invalid input: expected a finite number (got Infinity)',
    );
  });

  it("cuts a long value it echoes between two characters, not inside one", () => {
    const search = z.strictObject({ search: z.string().max(10, "must be at most 10 characters") });
    // The echo's 80 characters end between the two halves of the 40th rocket (the quote is the first).
    expect(refusal(search, { search: "🚀".repeat(100) })).toBe(`field "search" must be at most 10 characters (got "${"🚀".repeat(39)}…)`);
  });
});
