/** Inventory: what a plane reserves for its containers, and what its heartbeats say is free. */
import { describe, expect, it } from "vitest";
import { Inventory } from "./inventory.js";

describe("Inventory", () => {
  it("reports no CPU free, never less, when its containers ask for more cores than it has", () => {
    // Before, two 2-core containers on a 2-core plane reported { total: 2, free: -2 } in every heartbeat.
    const inventory = new Inventory([], 2, 4096);
    const taken = [1, 1, 1.5].map((cpu) => inventory.reserve({ gpu: undefined, cpu, memoryMiB: 128 })!);
    expect(inventory.summary().cpu).toEqual({ total: 2, free: 0 });
    expect(inventory.cpuReserved).toBe(3.5); // what its metrics say is reserved: the containers share the two cores
    inventory.release(taken[2]!);
    inventory.release(taken[1]!);
    expect(inventory.summary().cpu).toEqual({ total: 2, free: 1 });
  });
});
