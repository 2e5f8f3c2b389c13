/**
 * The ledger client's logic on its own: which shard answers for a key, call
 * ids made to fall in it, attempt marks written together while a write is
 * under way, and ended calls written together (one the ledger refuses losing
 * no other).
 */
import { describe, expect, it, vi } from "vitest";
import { FunctionCall } from "../sdk/function-call.js";
import { CALL_ID_FORM, CALL_ID_PATTERN, LogQuerySchema, newCallId } from "../sdk/protocol.js";
import { InvalidRequestError } from "../sdk/errors.js";
import {
  LEDGER_SHARDS,
  checkedCallId,
  grouped,
  keyScope,
  newCallIdIn,
  recordEnded,
  shardOf,
  shardOfKey,
  unknownCall,
  type FinishedCall,
} from "./call-ledger-client.js";
import type { Env } from "./env.js";

describe("a keyed call's id", () => {
  it("falls in the shard of its key, so the key and the record are written together", () => {
    for (let i = 0; i < 50; i++) {
      const shard = shardOfKey(keyScope("app", "fn", `key-${i}`));
      const id = newCallIdIn(shard);
      expect(id).toMatch(CALL_ID_PATTERN);
      expect(shardOf(id)).toBe(shard);
    }
  });

  it("can fall in every shard, whatever the id's random characters", () => {
    for (let shard = 0; shard < LEDGER_SHARDS; shard++) {
      for (let i = 0; i < 200; i++) expect(shardOf(newCallIdIn(shard))).toBe(shard);
    }
  });

  it("spreads keys over every shard", () => {
    const shards = new Set(Array.from({ length: 500 }, (_, i) => shardOfKey(keyScope("app", "fn", `k${i}`))));
    expect(shards.size).toBe(LEDGER_SHARDS);
  });
});

describe("grouped writes", () => {
  it("send the items asked for during a write together in the next, and answer each", async () => {
    const writes: string[][] = [];
    let release!: () => void;
    const start = grouped(async (marks: { id: string; attempt: number }[]) => {
      writes.push(marks.map((m) => `${m.id}#${m.attempt}`));
      if (writes.length === 1) await new Promise<void>((resolve) => (release = resolve));
      return marks.map((m) => m.id !== "cancelled");
    });
    const first = start({ id: "a", attempt: 1 });
    const rest = [start({ id: "b", attempt: 1 }), start({ id: "c", attempt: 2 }), start({ id: "cancelled", attempt: 1 })];
    release();
    expect(await first).toBe(true);
    expect(await Promise.all(rest)).toEqual([true, true, false]);
    expect(writes).toEqual([["a#1"], ["b#1", "c#2", "cancelled#1"]]);
  });

  it("fail the items of a write that failed, and go on with the next", async () => {
    let calls = 0;
    const start = grouped(async (marks: { id: string }[]) => {
      if (calls++ === 0) throw new Error("ledger down");
      return marks.map(() => true);
    });
    await expect(start({ id: "a" })).rejects.toThrow("ledger down");
    expect(await start({ id: "b" })).toBe(true);
  });
});

describe("unknownCall and checkedCallId", () => {
  it("say how long a call is kept, in the unit the setting divides into, and that a call without a key is recorded once it has run a moment", () => {
    const id = newCallIdIn(0);
    expect(unknownCall(id, 7 * 86_400).message).toBe(
      `no call ${id}: a call is kept 7 days after it ends, and one made without an Idempotency-Key is recorded once it has run for 500 ms, or as it ends`,
    );
    expect(unknownCall(id, 7_200).message).toContain("kept 2 hours after");
    expect(unknownCall(id, 60).message).toContain("kept 1 minute after");
    expect(unknownCall(id, 90).message).toContain("kept 90 seconds after");
    expect(unknownCall(id, 90).status).toBe(404);
  });

  it("refuses what is not a call id with a 400 that shows what one looks like", () => {
    expect(checkedCallId("fc-0123456789abcdefghjkmnpqrs")).toBe("fc-0123456789abcdefghjkmnpqrs");
    expect(() => checkedCallId("nope")).toThrow(`"nope" is not a call id (${CALL_ID_FORM})`);
    expect(() => checkedCallId(undefined)).toThrow(InvalidRequestError);
  });

  it("says what a call id looks like in the same words at the gateway, in the SDK and in a log query", () => {
    const said = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return (err as Error).message;
      }
      return "";
    };
    expect(said(() => new FunctionCall("nope"))).toBe(said(() => checkedCallId("nope")));
    const query = LogQuerySchema.safeParse({ call: "nope" });
    expect(query.success ? "" : query.error.issues[0]!.message).toContain(`(${CALL_ID_FORM})`);
  });
});

describe("ended calls written together", () => {
  it("lose none to one the ledger refuses: each is written alone, and the refused one as failed, saying why", async () => {
    const written: FinishedCall[] = [];
    // A ledger that refuses any write holding a result it cannot take (as a Durable Object refuses a message over 32 MiB).
    const ledger = {
      record: async (rows: FinishedCall[]) => {
        if (rows.some((r) => r.result?.json === "too big")) throw new Error("Serialized RPC arguments or return values are limited to 32MiB");
        written.push(...rows);
        return [];
      },
    };
    const env = { LEDGER: { idFromName: (name: string) => name, get: () => ledger } } as unknown as Env;
    const row = (json: string): FinishedCall => {
      const now = Date.now();
      return {
        id: newCallId(),
        app: "a",
        function: "f",
        kind: "spawn",
        status: "succeeded",
        attempts: 1,
        createdAt: now,
        startedAt: now,
        finishedAt: now,
        result: { json },
      };
    };
    const [ok1, bad, ok2] = [row("fine"), row("too big"), row("also fine")];
    const said: string[] = [];
    const errors = vi.spyOn(console, "error").mockImplementation((line: unknown) => void said.push(String(line)));
    try {
      await recordEnded(env, [ok1!, bad!, ok2!]);
    } finally {
      errors.mockRestore();
    }
    expect(written.filter((r) => r.status === "succeeded").map((r) => r.id)).toEqual(expect.arrayContaining([ok1!.id, ok2!.id]));
    const failed = written.find((r) => r.id === bad!.id)!;
    expect(failed.status).toBe("failed");
    expect(failed.result).toBeUndefined();
    expect(failed.error).toEqual({
      code: "internal",
      message: `call ${bad!.id} ended, but the ledger could not keep its result: Serialized RPC arguments or return values are limited to 32MiB`,
      details: { callId: bad!.id },
    });
    expect(said).toEqual(
      expect.arrayContaining([
        expect.stringContaining("could not record 3 calls in one write"),
        expect.stringContaining(`could not record ${bad!.id} with its result`),
      ]),
    );
  });
});
