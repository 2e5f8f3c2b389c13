import { describe, expect, it } from "vitest";
import { nearestName } from "./nearest-name.js";

describe("nearestName", () => {
  it("finds a misspelt name, a swapped pair, another case, a missing plural", () => {
    const options = ["gpu", "cpu", "memory", "timeout", "retries", "maxContainers", "minContainers"];
    expect(nearestName("gpus", options)).toBe("gpu");
    expect(nearestName("memroy", options)).toBe("memory");
    expect(nearestName("TimeOut", options)).toBe("timeout");
    expect(nearestName("retry", options)).toBe("retries");
    expect(nearestName("maxcontainer", options)).toBe("maxContainers");
  });

  it("names nothing when no known name is near", () => {
    expect(nearestName("foo", ["gpu", "cpu"])).toBeUndefined();
    expect(nearestName("schedule", ["gpu", "env"])).toBeUndefined();
    expect(nearestName("x", [])).toBeUndefined();
  });
});
