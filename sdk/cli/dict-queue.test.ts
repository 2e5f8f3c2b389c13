/** How `tandem dict items` and `tandem queue peek` show a long value on its line. */
import { describe, expect, it } from "vitest";
import { cutValue } from "./dict-queue.js";

describe("a value shown on its line", () => {
  it("is cut past 200 characters, saying how long it is and which command shows it whole", () => {
    expect(cutValue('"short"', "tandem dict get d k")).toBe('"short"');
    const long = JSON.stringify("x".repeat(1024 * 1024));
    expect(cutValue(long, "tandem dict get d big")).toBe(`"${"x".repeat(199)}… (1048578 characters; tandem dict get d big shows it whole)`);
  });

  it("is not cut between the two halves of a surrogate pair", () => {
    const text = "a".repeat(199) + "😀".repeat(10);
    expect(cutValue(text, "w")).toBe(`${"a".repeat(199)}… (219 characters; w shows it whole)`);
  });
});
