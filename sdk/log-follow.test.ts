/** A log follow opened again after its gateway restarted: from where, and each line once. */
import { describe, expect, it } from "vitest";
import { LOG_LIMITS } from "./defaults.js";
import { FollowedOnce } from "./log-follow.js";
import type { LogLine } from "./protocol.js";
import { logLine } from "../test/helpers/log-line.js";

const line = (time: number, text: string): LogLine => logLine(text, { time });

describe("FollowedOnce", () => {
  it("yields a line once, however often a follow opened again sends it", () => {
    const once = new FollowedOnce();
    expect([line(10_000, "a"), line(10_001, "b"), line(10_000, "a"), line(10_001, "b"), line(10_001, "c")].map((l) => once.first(l))).toEqual([
      true,
      true,
      false,
      false,
      true,
    ]);
  });

  it("opens again from a little before the newest line, with every line the route answers, its other filters kept", () => {
    const once = new FollowedOnce();
    once.open();
    once.first(line(50_000, "a"));
    once.first(line(40_000, "late, from another tier's clock"));
    const again = new URL(once.resumed("/v1/apps/shop/logs?function=f&follow=1&limit=5&since=2h"), "http://x");
    expect(again.pathname).toBe("/v1/apps/shop/logs");
    expect(Object.fromEntries(again.searchParams)).toEqual({
      function: "f",
      follow: "1",
      limit: String(LOG_LIMITS.maxLimit),
      since: String(50_000 - LOG_LIMITS.followOverlapMs),
    });
  });

  it("opens again from when it first opened when no line came yet", () => {
    const once = new FollowedOnce();
    const before = Date.now();
    once.open();
    const since = Number(new URL(once.resumed("/v1/calls/fc-x/logs?follow=1"), "http://x").searchParams.get("since"));
    expect(since).toBeGreaterThanOrEqual(before - LOG_LIMITS.followOverlapMs);
    expect(since).toBeLessThanOrEqual(Date.now() - LOG_LIMITS.followOverlapMs);
  });
});
