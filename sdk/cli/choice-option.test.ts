import { InvalidArgumentError } from "commander";
import { describe, expect, it } from "vitest";
import { parseChoice } from "./choice-option.js";

describe("an option of a few words", () => {
  const scope = parseChoice(["call", "deploy", "admin"]);

  it("takes one of them", () => {
    expect(scope("deploy")).toBe("deploy");
  });

  it("refuses another, naming the choices and the nearest one, as commander's own value errors read", () => {
    expect(() => scope("superuser")).toThrow(new InvalidArgumentError("must be one of call, deploy, admin"));
    expect(() => scope("admn")).toThrow(new InvalidArgumentError('must be one of call, deploy, admin; did you mean "admin"?'));
  });
});
