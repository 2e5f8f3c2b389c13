import { describe, expect, it } from "vitest";
import { z } from "zod";
import { userRecord } from "./zod-record.js";

describe("userRecord", () => {
  const env = userRecord(z.string(), "must be an object");
  it("takes a key named constructor, which a zod record refuses as no record at all", () => {
    expect(z.record(z.string(), z.string()).safeParse({ constructor: "1" }).success).toBe(false);
    expect(env.parse(JSON.parse('{"constructor":"1","toString":"2"}'))).toEqual({ constructor: "1", toString: "2" });
  });
  it("checks the values as the record does, and refuses what is no plain object", () => {
    expect(env.safeParse({ constructor: 1 }).success).toBe(false);
    expect(env.safeParse([]).success).toBe(false);
    expect(env.safeParse(new Map()).success).toBe(false);
    expect(env.safeParse("x").error?.issues[0]?.message).toBe("must be an object");
  });
});
