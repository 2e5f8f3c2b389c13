/**
 * The plane's memory of the attempts it ran: what a second request for the
 * same attempt is told, the bounds and the TTL, and the journal a restarted
 * plane reads back.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { OutcomeCache } from "./outcome-cache.js";

const ID = "fc-01m8kafecnvxjnczsmyw33kvmb";
const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "tandem-outcomes-"));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("an attempt sent again", () => {
  it("waits for the run in progress rather than starting another", async () => {
    const cache = new OutcomeCache<string>();
    let finish!: (value: string) => void;
    const running = new Promise<string>((resolve) => (finish = resolve));
    cache.running(ID, 1, running);
    cache.ran(ID, 1);
    const known = cache.lookup(ID, 1);
    expect(known?.state).toBe("running");
    finish("done");
    expect(await (known as { outcome: Promise<string> }).outcome).toBe("done");
  });

  it("gets the kept outcome once the attempt has ended", () => {
    const cache = new OutcomeCache<string>();
    cache.running(ID, 1, Promise.resolve("done"));
    cache.ran(ID, 1);
    cache.ended(ID, 1, "done", 4);
    expect(cache.lookup(ID, 1)).toEqual({ state: "ended", outcome: "done" });
    expect(cache.lookup(ID, 2)).toBeUndefined(); // another attempt of the same call is another run
  });

  it("is unknown when it never reached a container (no capacity, say), so it may run when sent again", () => {
    const cache = new OutcomeCache<string>();
    cache.running(ID, 1, Promise.resolve("no capacity"));
    cache.ended(ID, 1, "no capacity", 11);
    expect(cache.lookup(ID, 1)).toBeUndefined();
  });

  it("is unknown when the run failed before it began (the plane threw)", async () => {
    const cache = new OutcomeCache<string>();
    const failed = Promise.reject(new Error("no bundle"));
    cache.running(ID, 1, failed);
    await failed.catch(() => {});
    expect(cache.lookup(ID, 1)).toBeUndefined();
  });

  it("is lost once its outcome is dropped to keep within the bounds, so it is never run twice under one attempt", () => {
    const cache = new OutcomeCache<string>({ maxOutcomes: 2 });
    for (let attempt = 1; attempt <= 3; attempt++) {
      cache.ran(ID, attempt);
      cache.ended(ID, attempt, `outcome ${attempt}`, 9);
    }
    expect(cache.lookup(ID, 1)).toMatchObject({ state: "lost", why: "the plane no longer keeps its outcome" });
    expect(cache.lookup(ID, 3)).toEqual({ state: "ended", outcome: "outcome 3" });
    expect(cache.sizes()).toMatchObject({ outcomes: 2, bytes: 18, attempts: 3 });
  });

  it("is lost when its outcome alone is larger than the bytes kept", () => {
    const cache = new OutcomeCache<string>({ maxBytes: 100 });
    cache.ran(ID, 1);
    cache.ended(ID, 1, "big", 101);
    expect(cache.lookup(ID, 1)?.state).toBe("lost");
    expect(cache.sizes().bytes).toBe(0);
  });

  it("is forgotten after the TTL", () => {
    let now = 1_000_000;
    const cache = new OutcomeCache<string>({ ttlMs: 60_000, now: () => now });
    cache.ran(ID, 1);
    cache.ended(ID, 1, "done", 4);
    now += 59_000;
    expect(cache.lookup(ID, 1)?.state).toBe("ended");
    now += 2_000;
    expect(cache.lookup(ID, 1)).toBeUndefined();
    expect(cache.sizes()).toMatchObject({ outcomes: 0, bytes: 0, attempts: 0 });
  });
});

describe("whether a call ended here", () => {
  it("is true once an attempt of it ran and none is running, false before, while one runs, and once forgotten", async () => {
    const cache = new OutcomeCache<string>({ maxAttempts: 2 });
    expect(cache.endedHere(ID)).toBe(false);
    let finish!: (value: string) => void;
    cache.running(ID, 1, new Promise<string>((resolve) => (finish = resolve)));
    cache.ran(ID, 1);
    expect(cache.endedHere(ID)).toBe(false); // running
    finish("done");
    cache.ended(ID, 1, "done", 4);
    expect(cache.endedHere(ID)).toBe(true);
    cache.ran(ID, 1); // the same attempt noted again counts once
    cache.ran(`${ID}x`, 1);
    cache.ran(`${ID}y`, 1); // a third attempt over maxAttempts: the oldest, ID's, is forgotten
    expect(cache.endedHere(ID)).toBe(false);
    expect(cache.endedHere(`${ID}y`)).toBe(true);
  });

  it("is true for what a restarted plane's previous process ran", () => {
    const dir = tempDir();
    new OutcomeCache<string>({ dir }).ran(ID, 2);
    expect(new OutcomeCache<string>({ dir }).endedHere(ID)).toBe(true);
  });
});

describe("the journal", () => {
  it("tells a restarted plane which attempts its previous process ran, as lost", () => {
    const dir = tempDir();
    const before = new OutcomeCache<string>({ dir });
    before.ran(ID, 1);
    before.ended(ID, 1, "done", 4);
    before.ran(ID, 2); // still running when the plane was killed
    // No close(): a killed process does not close its files.

    const after = new OutcomeCache<string>({ dir });
    expect(after.lookup(ID, 1)).toMatchObject({ state: "lost", why: "it ran on this plane before the plane restarted" });
    expect(after.lookup(ID, 2)?.state).toBe("lost");
    expect(after.lookup(ID, 3)).toBeUndefined();
    after.close();
  });

  it("drops attempts older than the TTL when read back, and keeps the rest for the next restart", () => {
    const dir = tempDir();
    let now = 5_000_000;
    const first = new OutcomeCache<string>({ dir, ttlMs: 60_000, now: () => now });
    first.ran(ID, 1);
    now += 30_000;
    first.ran(ID, 2);
    first.close();
    now += 40_000; // attempt 1 is 70 s old, attempt 2 is 40 s old
    const second = new OutcomeCache<string>({ dir, ttlMs: 60_000, now: () => now });
    expect(second.lookup(ID, 1)).toBeUndefined();
    expect(second.lookup(ID, 2)?.state).toBe("lost");
    second.close();
    expect(readFileSync(join(dir, "attempts.log"), "utf8").trim().split("\n")).toEqual([`${now - 40_000} ${ID} 2`]);
    const third = new OutcomeCache<string>({ dir, ttlMs: 60_000, now: () => now });
    expect(third.lookup(ID, 2)?.state).toBe("lost");
    third.close();
  });

  it("starts again once older than the TTL, holding only what is still remembered", () => {
    const dir = tempDir();
    let now = 9_000_000;
    const cache = new OutcomeCache<string>({ dir, ttlMs: 60_000, now: () => now });
    cache.ran(ID, 1);
    now += 61_000;
    cache.ran(ID, 2);
    cache.close();
    expect(readFileSync(join(dir, "attempts.log"), "utf8").trim().split("\n")).toEqual([`${now} ${ID} 2`]);
  });
});
