/**
 * The ledger client's logic on its own: which shard answers for a key, call
 * ids made to fall in it, and attempt marks written together while a write is
 * under way.
 */
import { describe, expect, it } from "vitest";
import { CALL_ID_PATTERN } from "../sdk/protocol.js";
import { LEDGER_SHARDS, groupedStarts, keyScope, newCallIdIn, shardOf, shardOfKey, type LedgerApi } from "./call-ledger-client.js";

describe("a keyed call's id", () => {
  it("falls in the shard of its key, so the key and the record are written together", () => {
    for (let i = 0; i < 50; i++) {
      const shard = shardOfKey(keyScope("app", "fn", `key-${i}`));
      const id = newCallIdIn(shard);
      expect(id).toMatch(CALL_ID_PATTERN);
      expect(shardOf(id)).toBe(shard);
    }
  });

  it("spreads keys over every shard", () => {
    const shards = new Set(Array.from({ length: 500 }, (_, i) => shardOfKey(keyScope("app", "fn", `k${i}`))));
    expect(shards.size).toBe(LEDGER_SHARDS);
  });
});

describe("grouped attempt marks", () => {
  it("sends the marks asked for during a write together in the next, and answers each", async () => {
    const writes: string[][] = [];
    let release!: () => void;
    const ledger = {
      startMany: async (marks: { id: string; attempt: number }[]) => {
        writes.push(marks.map((m) => `${m.id}#${m.attempt}`));
        if (writes.length === 1) await new Promise<void>((resolve) => (release = resolve));
        return marks.map((m) => m.id !== "cancelled");
      },
    } as unknown as LedgerApi;
    const start = groupedStarts(ledger);
    const first = start("a", 1);
    const rest = [start("b", 1), start("c", 2), start("cancelled", 1)];
    release();
    expect(await first).toBe(true);
    expect(await Promise.all(rest)).toEqual([true, true, false]);
    expect(writes).toEqual([["a#1"], ["b#1", "c#2", "cancelled#1"]]);
  });

  it("fails the marks of a write that failed, and goes on with the next", async () => {
    let calls = 0;
    const ledger = {
      startMany: async (marks: { id: string }[]) => {
        if (calls++ === 0) throw new Error("ledger down");
        return marks.map(() => true);
      },
    } as unknown as LedgerApi;
    const start = groupedStarts(ledger);
    await expect(start("a", 1)).rejects.toThrow("ledger down");
    expect(await start("b", 1)).toBe(true);
  });
});
