import { describe, expect, it } from "vitest";
import { visibleControls, visibleLines } from "./style.js";

describe("visibleControls", () => {
  it("writes each control character but tab as an escape", () => {
    expect(visibleControls("\x1b[31mred\x1b[0m\rover\tend\u202e")).toBe("\\x1b[31mred\\x1b[0m\\rover\tend\\u202e");
  });
});

describe("visibleLines", () => {
  it("keeps line breaks, a CRLF as one, and writes every other control character of each line as an escape", () => {
    expect(visibleLines("[shop.resize fc-01] \x1b[2Jone\r\n[shop.resize fc-01] two\rover\n")).toBe(
      "[shop.resize fc-01] \\x1b[2Jone\n[shop.resize fc-01] two\\rover\n",
    );
  });
});
