import { describe, expect, it } from "vitest";
import { withinBudget } from "./answer-budget.js";

describe("withinBudget", () => {
  const size = (s: string) => s.length;
  it("takes rows in order while they fit, and says when it left some out", () => {
    expect(withinBudget(["aa", "bb", "cc"], size, 5, 10)).toEqual({ taken: ["aa", "bb"], more: true });
    expect(withinBudget(["aa", "bb"], size, 4, 10)).toEqual({ taken: ["aa", "bb"], more: false });
  });
  it("stops at the most it may take", () => {
    expect(withinBudget(["a", "b", "c"], size, 100, 2)).toEqual({ taken: ["a", "b"], more: true });
    expect(withinBudget(["a", "b"], size, 100, 2)).toEqual({ taken: ["a", "b"], more: false });
  });
  it("always takes the first row, however large", () => {
    expect(withinBudget(["abcdef", "g"], size, 3, 10)).toEqual({ taken: ["abcdef"], more: true });
    expect(withinBudget([], size, 3, 10)).toEqual({ taken: [], more: false });
  });
  it("reads no further than it needs to", () => {
    let read = 0;
    function* rows() {
      for (;;) {
        read++;
        yield "x";
      }
    }
    expect(withinBudget(rows(), size, 100, 3).taken).toHaveLength(3);
    expect(read).toBe(4);
  });
});
