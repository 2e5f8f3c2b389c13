import { describe, expect, it } from "vitest";
import { seconds } from "./dashboard-pages.js";

describe("the dashboard's container time", () => {
  it("reads in seconds at every size, so a column of it has one unit", () => {
    expect(seconds(2.331)).toBe("2.3 s");
    expect(seconds(60.5)).toBe("60.5 s");
    expect(seconds(86_400)).toBe("86,400.0 s");
    expect(seconds(0)).toBe("0.0 s");
  });
});
