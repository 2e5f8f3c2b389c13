import { describe, expect, it } from "vitest";
import { parseGpuInventory } from "./gpu.js";

describe("parseGpuInventory (--gpus)", () => {
  it("reads types and counts, in any case, adding up a type named twice", () => {
    expect(parseGpuInventory("A100:2,t4")).toEqual({ A100: 2, T4: 1 });
    expect(parseGpuInventory(" H100:1 , H100:2 ")).toEqual({ H100: 3 });
  });

  it("refuses an inventory that names no GPU, rather than reading it as none", () => {
    expect(() => parseGpuInventory(",,")).toThrow('--gpus ",," names no GPU: give types and counts, e.g. "A100:2,T4:1"');
    expect(() => parseGpuInventory(" ")).toThrow("names no GPU");
  });

  it("refuses a part with a second count, rather than reading the first", () => {
    expect(() => parseGpuInventory("A100:2:3")).toThrow('--gpus "A100:2:3": give a type and a count, such as "A100:2"');
  });

  it("names the known types for an unknown one, and the limits for a bad count", () => {
    expect(() => parseGpuInventory("V100:1")).toThrow('unknown GPU "V100"; known types: T4, L4, A10G, L40S, A100, A100-80GB, H100');
    expect(() => parseGpuInventory("A100:0")).toThrow('--gpus "A100:0": the count must be 1 to 64');
  });
});
