/**
 * Dicts and queues in real workerd: one Durable Object per dict or queue,
 * reached over `/v1/dicts` and `/v1/queues` from Node (the SDK's `Dict` and
 * `Queue`) and straight through the bindings from edge functions; the call
 * codec's values both ways, conditional puts as a lock, TTLs, FIFO
 * partitions, blocking gets woken by a put, leases, limits and errors.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Dict,
  ForbiddenError,
  InvalidArgumentError,
  InvalidOptionsError,
  NotFoundError,
  Queue,
  QueueFullError,
  ValueTooLargeError,
  Volume,
  lookup,
} from "../sdk/index.js";
import { DICT_LIMITS, QUEUE_LIMITS } from "../sdk/defaults.js";
import type { TokenCreateAnswer } from "../sdk/protocol.js";
import { runCli } from "./helpers/cli.js";
import { ADMIN_TOKEN, startTestGateway, type TestGateway } from "./helpers/gateway.js";

let gw: TestGateway;
const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
const dict = (name: string, options: { createIfMissing?: boolean; token?: string } = {}) =>
  Dict.fromName(name, { gateway: gw.url, token: ADMIN_TOKEN, ...options });
const queue = (name: string, options: { createIfMissing?: boolean; token?: string } = {}) =>
  Queue.fromName(name, { gateway: gw.url, token: ADMIN_TOKEN, ...options });
const edge = (fn: string) => lookup("state", fn, { gateway: gw.url, token: ADMIN_TOKEN });
const api = (path: string, init: RequestInit & { token?: string | null } = {}) => {
  const token = init.token === undefined ? ADMIN_TOKEN : init.token;
  return fetch(gw.url + path, {
    ...init,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.headers as Record<string, string>) },
  });
};
const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The keys a dict's `DictStore` holds in its SQLite file, expired ones too (read beside workerd, read-only). */
const storedKeys = (name: string): string[] | undefined => {
  const folder = join(gw.dir, "state/do/tandem-gateway-DictStore");
  for (const file of readdirSync(folder).filter((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite")) {
    const db = new Database(join(folder, file), { readonly: true, fileMustExist: true });
    try {
      const isDict = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dict'").get() !== undefined;
      if (isDict && db.prepare("SELECT 1 FROM dict WHERE name = ?").get(name) !== undefined) {
        return (db.prepare("SELECT key FROM entries ORDER BY key").all() as { key: string }[]).map((r) => r.key);
      }
    } finally {
      db.close();
    }
  }
  return undefined;
};

beforeAll(async () => {
  gw = await startTestGateway(fixture("dict-queue-app.ts"));
});
afterAll(async () => {
  await gw?.dispose();
});

describe("dict", () => {
  it("puts, gets, pops, deletes and counts entries, with JSON keys compared as canonical JSON", async () => {
    const d = dict("basics", { createIfMissing: true });
    expect(await d.put("a", 1)).toBe(true);
    expect(await d.put({ b: 2, a: 1 }, "object key")).toBe(true);
    expect(await d.get({ a: 1, b: 2 })).toBe("object key");
    expect(await d.get("missing", "fallback")).toBe("fallback");
    expect(await d.contains("a")).toBe(true);
    expect(await d.len()).toBe(2);
    expect(await d.pop("a")).toBe(1);
    expect(await d.contains("a")).toBe(false);
    expect(await d.delete({ b: 2, a: 1 })).toBe(true);
    expect(await d.delete("nothing")).toBe(false);
    expect(
      await d.update(
        new Map<unknown, unknown>([
          ["x", 1],
          [["y", 2], 2],
        ]),
      ),
    ).toBe(2);
    expect(await d.update({ z: 3 })).toBe(1);
    expect(await d.len()).toBe(3);
    expect(await d.clear()).toBe(3);
    expect(await d.len()).toBe(0);
  });

  it("carries Date, Map, Set, bytes and BigInt through the call codec, from Node to the edge and back", async () => {
    const d = dict("codec", { createIfMissing: true });
    const when = new Date("2026-01-02T03:04:05.678Z");
    await d.update({ when, map: new Map([[1, "one"]]), bytes: new Uint8Array([0, 255, 7]), big: 12345678901234567890n });
    const seen = (await edge("inspect").remote("codec", ["when", "map", "bytes", "big"])) as Record<string, { type: string; value: unknown }>;
    expect(Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, v.type]))).toEqual({ when: "Date", map: "Map", bytes: "Uint8Array", big: "bigint" });
    expect(seen.big!.value).toBe(12345678901234567890n);
    expect(await d.get("when")).toEqual(when);
    expect(await d.get("bytes")).toEqual(new Uint8Array([0, 255, 7]));
    // Written at the edge, read in Node.
    expect(await edge("store").remote("codec", "edge")).toBe(true);
    const value = (await d.get("edge")) as { at: Date; big: bigint; tags: Set<string>; bytes: Uint8Array };
    expect(value.at).toEqual(new Date(0));
    expect(value.big).toBe(2n ** 70n);
    expect(value.tags).toEqual(new Set(["a", "b"]));
    expect(value.bytes).toEqual(new Uint8Array([1, 2, 3]));
  });

  it("lets exactly one of 50 concurrent ifAbsent writers through, from Node and from the edge", async () => {
    const d = dict("locks", { createIfMissing: true });
    const wrote = await Promise.all(Array.from({ length: 50 }, (_, i) => d.put("lock", i, { ifAbsent: true })));
    expect(wrote.filter(Boolean)).toHaveLength(1);
    expect(await d.get("lock")).toBe(wrote.indexOf(true));
    expect(await edge("race").remote("locks", "edge-lock", 50)).toBe(1);
  });

  it("writes with ifVersion only over the version it read", async () => {
    const d = dict("cas", { createIfMissing: true });
    await d.put("n", 1);
    const entry = (await d.getEntry<number>("n"))!;
    expect(await d.put("n", 2, { ifVersion: entry.version })).toBe(true);
    expect(await d.put("n", 3, { ifVersion: entry.version })).toBe(false);
    expect(await d.get("n")).toBe(2);
  });

  it("never gives a version twice: not after the entries that held the highest are gone, nor after a restart", async () => {
    const d = dict("versions", { createIfMissing: true });
    const versionOf = async (key: string) => (await d.getEntry(key))!.version;
    await d.put("a", 1);
    await d.put("b", 2);
    await d.put("c", 3, { ttlSeconds: 0.5 });
    const highest = await versionOf("c");
    expect(highest).toBeGreaterThan(await versionOf("b"));
    expect(await d.pop("b")).toBe(2);
    await sleep(600); // "c" expires: its row goes with the object's alarm
    await d.put("a", 4);
    const afterExpiry = await versionOf("a");
    expect(afterExpiry).toBeGreaterThan(highest);
    expect(await d.delete("a")).toBe(true);
    await gw.restart(); // the object starts again with no row left
    await d.put("d", 5);
    expect(await versionOf("d")).toBeGreaterThan(afterExpiry);
    // Every entry of one update shares its version, the next write's is past it.
    await d.update({ e: 1, f: 2 });
    const [e, f] = [await versionOf("e"), await versionOf("f")];
    expect(e).toBe(f);
    await d.put("g", 1);
    expect(await versionOf("g")).toBe(e + 1);
  });

  it("drops an entry when its TTL runs out, and others 7 days after their last write", async () => {
    const d = dict("ttl", { createIfMissing: true });
    const before = Date.now();
    await d.put("short", "gone soon", { ttlSeconds: 1 });
    await d.put("long", "stays");
    const long = (await d.getEntry("long"))!;
    expect(long.expiresAt - before).toBeGreaterThanOrEqual(DICT_LIMITS.defaultTtlSeconds * 1000);
    expect(long.expiresAt - before).toBeLessThan(DICT_LIMITS.defaultTtlSeconds * 1000 + 60_000);
    expect(await d.get("short")).toBe("gone soon");
    await sleep(1_300);
    expect(await d.get("short")).toBeUndefined();
    expect(await d.contains("short")).toBe(false);
    expect(await d.len()).toBe(1);
    // An expired key can be taken again with ifAbsent; clear counts only the entries still there.
    expect(await d.put("short", "again", { ifAbsent: true })).toBe(true);
    await d.put("brief", 1, { ttlSeconds: 0.2 });
    await sleep(300);
    expect(await d.clear()).toBe(2);
  });

  it("deletes expired rows from its storage with its alarm, and keeps the rest", async () => {
    const d = dict("alarm", { createIfMissing: true });
    await d.put("short", 1, { ttlSeconds: 1 });
    await d.put("long", 2);
    expect(storedKeys("alarm")).toEqual(['"long"', '"short"']);
    await sleep(1_100);
    expect(await d.get("short")).toBeUndefined(); // a read skips it at once but leaves the row: only the alarm deletes it
    const deadline = Date.now() + 5_000;
    while (storedKeys("alarm")!.length > 1 && Date.now() < deadline) await sleep(100);
    expect(storedKeys("alarm")).toEqual(['"long"']);
    expect(await d.get("long")).toBe(2);
  });

  it("updates many entries each under the value limit that add up past the body limit, in several requests", async () => {
    const d = dict("heavy-update", { createIfMissing: true });
    const value = "y".repeat(900 * 1024);
    expect(await d.update(Array.from({ length: 14 }, (_, i) => [`v${i}`, value] as const))).toBe(14);
    expect(await d.len()).toBe(14);
    expect(await d.get("v13")).toBe(value);
  });

  it("pages keys, values and items in canonical-key order", async () => {
    const d = dict("pages", { createIfMissing: true });
    const entries = Array.from({ length: 25 }, (_, i) => [`k${String(i).padStart(2, "0")}`, i] as const);
    await d.update(entries);
    const keys: unknown[] = [];
    for await (const key of d.keys({ pageSize: 7 })) keys.push(key);
    expect(keys).toEqual(entries.map(([k]) => k));
    const values: unknown[] = [];
    for await (const value of d.values({ pageSize: 10 })) values.push(value);
    expect(values).toEqual(entries.map(([, v]) => v));
    const items: [unknown, unknown][] = [];
    for await (const item of d.items()) items.push(item);
    expect(items).toEqual(entries);
  });

  it("lists a dict whose entries add up past what one answer may carry, in shorter pages, losing none", async () => {
    const d = dict("huge-list", { createIfMissing: true });
    const value = (i: number) => `${i}:${"v".repeat(1_000_000)}`; // 34 of them: past one Durable Object answer's 32 MiB
    await d.update(Array.from({ length: 34 }, (_, i) => [`k${String(i).padStart(2, "0")}`, value(i)] as const));
    const res = await api("/v1/dicts/huge-list/entries", { method: "POST", body: JSON.stringify({ limit: 1000 }) });
    expect(res.status).toBe(200);
    const page = (await res.json()) as { entries: unknown[]; next?: string };
    expect(page.entries.length).toBeLessThan(34);
    expect(page.next).toBe(`"k${String(page.entries.length - 1).padStart(2, "0")}"`);
    let n = 0;
    for await (const [key, v] of d.items<string, string>({ pageSize: 1000 })) {
      expect([key, v.length, v.startsWith(`${n}:`)]).toEqual([`k${String(n).padStart(2, "0")}`, value(n).length, true]);
      n++;
    }
    expect(n).toBe(34);
    const keys: unknown[] = [];
    for await (const key of d.keys()) keys.push(key);
    expect(keys).toHaveLength(34);
    expect((await Dict.delete("huge-list", { gateway: gw.url, token: ADMIN_TOKEN })).len).toBe(34);
  }, 60_000);

  it("makes the dict again for a createIfMissing handle after it was deleted, and gives no version twice across the drop", async () => {
    const opts = { gateway: gw.url, token: ADMIN_TOKEN };
    const d = dict("reborn", { createIfMissing: true });
    await d.put("a", 1);
    const before = (await d.getEntry("a"))!.version;
    await Dict.delete("reborn", opts);
    await expect(dict("reborn").get("a")).rejects.toBeInstanceOf(NotFoundError); // a handle without the option: 404
    expect(await d.put("b", 2)).toBe(true); // before: NotFoundError, telling to use the option the handle has
    expect(await d.get("b")).toBe(2);
    expect((await d.getEntry("b"))!.version).toBeGreaterThan(before);
    await d.put("a", "new");
    // An ifVersion read before the drop no longer matches: versions went on from the dropped dict's highest.
    expect(await d.put("a", "stale", { ifVersion: before })).toBe(false);
    expect(await d.get("a")).toBe("new");
    // A handle kept at module scope at the edge does the same.
    expect(await edge("keptPut").remote("a", "1")).toBe(true);
    await Dict.delete("edge-reborn", opts);
    expect(await edge("keptPut").remote("b", "2")).toBe(true);
    expect(await dict("edge-reborn").get("b")).toBe("2");
    const q = queue("reborn-q", { createIfMissing: true });
    await q.put("old");
    await Queue.delete("reborn-q", opts);
    await q.put("new");
    expect(await q.get({ timeoutMs: 0 })).toBe("new");
  });

  it("refuses a value over 1 MiB as value_too_large, and bad keys and options before sending", async () => {
    const d = dict("limits", { createIfMissing: true });
    const err = await d.put("big", "x".repeat(DICT_LIMITS.maxValueBytes)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValueTooLargeError);
    expect((err as Error).message).toMatch(/larger than 1048576, the most dict "limits" holds/);
    // One past the gateway's body limit too: refused for the value, not the request's size.
    const huge = await d.put("huge", "x".repeat(11 * 1024 * 1024)).catch((e: unknown) => e);
    expect(huge).toBeInstanceOf(ValueTooLargeError);
    expect((huge as Error).message).toMatch(/a value of 11534347 bytes .* larger than 1048576, the most dict "limits" holds in one entry/);
    await expect(d.put(new Date(), 1)).rejects.toThrow(InvalidOptionsError);
    await expect(d.put("k", 1, { ttlSeconds: -1 })).rejects.toThrow(/option "ttlSeconds" must be more than 0/);
    await expect(d.keys({ pageSize: 5000 }).next()).rejects.toThrow(/option "pageSize" must be a whole number from 1 to 1000 \(got 5000\)/);
  });

  it("refuses a function or a symbol in a value before sending, from Node and at the edge, as a call's arguments are", async () => {
    const d = dict("unsendable", { createIfMissing: true });
    const err = await d.put("f", () => 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(/^dict "unsendable" put: the value is a function, which a dict cannot carry/);
    await expect(d.put("f2", { cb: () => 1 })).rejects.toThrow(/the value \(at \.cb\) is a function/);
    await expect(d.put("s", Symbol("x"))).rejects.toThrow(/the value is a symbol/);
    const q = queue("unsendable", { createIfMissing: true });
    await expect(q.put(() => 1)).rejects.toThrow(/^queue "unsendable" put: the item is a function, which a queue cannot carry/);
    expect(await edge("storeUnsendable").remote("unsendable-edge")).toEqual({
      dict: { code: "invalid_argument", message: expect.stringMatching(/^dict "unsendable-edge" put: the value \(at \.cb\) is a function/) },
      queue: { code: "invalid_argument", message: expect.stringMatching(/^queue "unsendable-edge" put: the item is a symbol/) },
    });
    // Nothing was stored: no `{ value: undefined }` entry, no item with no value (at the edge, refused before the first
    // operation made the dict and the queue).
    const atEdge = [dict("unsendable-edge", { createIfMissing: true }), queue("unsendable-edge", { createIfMissing: true })];
    expect([await d.len(), await q.len(), ...(await Promise.all(atEdge.map((store) => store.len())))]).toEqual([0, 0, 0, 0]);
  });

  it("refuses ifAbsent with ifVersion, over HTTP and before sending", async () => {
    const d = dict("contradict", { createIfMissing: true });
    await expect(d.put("k", 1, { ifAbsent: true, ifVersion: 1 })).rejects.toThrow(InvalidOptionsError);
    const res = await api("/v1/dicts/contradict/put", { method: "POST", body: JSON.stringify({ key: "k", value: { json: 1 }, ifVersion: 1, ifAbsent: true }) });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).message).toMatch(/"ifAbsent" and "ifVersion" cannot go together/);
    expect(await d.len()).toBe(0);
  });

  it("answers a missing dict with 404 naming how to make it, in its environment, unless createIfMissing", async () => {
    const err = await dict("nowhere")
      .get("k")
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toMatch(/no dict named "nowhere" in environment "main".*createIfMissing: true/);
    const res = await api("/v1/dicts/nowhere/get", { method: "POST", body: JSON.stringify({ key: "k" }) });
    expect(res.status).toBe(404);
    expect((await errorOf(res)).message).toMatch(/no dict named "nowhere" in environment "main" \(tandem dict create nowhere makes it/);
    // Another environment's dicts are its own: the 404 names it, and the flag that reaches it.
    await dict("elsewhere", { createIfMissing: true }).len();
    for (const [path, body, message] of [
      ["/v1/dicts/elsewhere/get", { key: "k" }, /^no dict named "elsewhere" in environment "dev" \(tandem dict create elsewhere --env dev makes it/],
      ["/v1/queues/elsewhere/len", {}, /^no queue named "elsewhere" in environment "dev" \(tandem queue create elsewhere --env dev makes it/],
    ] as const) {
      const other = await api(path, { method: "POST", body: JSON.stringify(body), headers: { "tandem-env": "dev" } });
      expect(other.status).toBe(404);
      expect((await errorOf(other)).message).toMatch(message);
    }
  });
});

describe("queue", () => {
  it("hands items out first in, first out, in each partition apart", async () => {
    const q = queue("fifo", { createIfMissing: true });
    await q.putMany([1, 2, 3]);
    await q.putMany(["a", "b"], { partition: "letters" });
    await q.put(4);
    expect(await q.len()).toBe(4);
    expect(await q.len({ partition: "letters" })).toBe(2);
    expect(await q.len({ total: true })).toBe(6);
    const peeked: unknown[] = [];
    for await (const item of q.iterate({ pageSize: 3 })) peeked.push(item);
    expect(peeked).toEqual([1, 2, 3, 4]);
    expect(await q.getMany(3, { timeoutMs: 0 })).toEqual([1, 2, 3]);
    expect(await q.get({ partition: "letters", timeoutMs: 0 })).toBe("a");
    expect(await q.get({ timeoutMs: 0 })).toBe(4);
    expect(await q.get({ timeoutMs: 0 })).toBeNull();
    expect(await q.clear({ all: true })).toBe(1);
  });

  it("takes more items in one getMany than a request holds, as putMany puts them (before: n over 1,000 was refused)", async () => {
    const q = queue("many", { createIfMissing: true });
    await q.putMany(Array.from({ length: 2_500 }, (_, i) => i));
    const got = await q.getMany<number>(2_200, { timeoutMs: 0 });
    expect(got).toEqual(Array.from({ length: 2_200 }, (_, i) => i));
    expect(await q.getMany<number>(5_000, { timeoutMs: 0 })).toEqual(Array.from({ length: 300 }, (_, i) => 2_200 + i));
    expect(await q.getMany(5_000, { timeoutMs: 0 })).toEqual([]);
    await expect(q.getMany(1e21, { timeoutMs: 0 })).rejects.toThrow('queue "many" get: n must be a whole number of items (got 1e+21)');
  });

  it("clears leased items too: their ack and extend then answer 0", async () => {
    const q = queue("cleared", { createIfMissing: true });
    await q.putMany(["a", "b", "c"]);
    const leased = await q.get({ lease: 60, timeoutMs: 0 });
    expect(await q.len()).toBe(2); // a leased item is not waiting
    expect(await q.clear()).toBe(3);
    expect(await q.ack(leased!)).toBe(0);
    expect(await q.extend(30, leased!)).toBe(0);
  });

  it("wakes a blocking get in Node as soon as an edge function puts an item", async () => {
    const q = queue("wake", { createIfMissing: true });
    await q.len();
    const waiting = q.get({ timeoutMs: 20_000 }).then((value) => ({ value, at: Date.now() }));
    await sleep(500); // the get is waiting in the queue's object
    const sentAt = Date.now();
    const { doneAt } = (await edge("enqueue").remote("wake", [{ job: 1 }])) as { doneAt: number };
    const got = await waiting;
    // One machine, one clock: workerd's Date.now() and Node's compare.
    console.log(
      `queue wake: the get in Node answered ${got.at - doneAt} ms after the edge function's put returned (${got.at - sentAt} ms after the call was sent)`,
    );
    expect(got.value).toEqual({ job: 1 });
    expect(got.at - doneAt).toBeLessThan(1_000);
  });

  it("wakes a blocking get at the edge on a put from Node", async () => {
    const q = queue("wake-edge", { createIfMissing: true });
    await q.len();
    const started = performance.now();
    const got = edge("dequeue").remote("wake-edge", 20_000);
    await sleep(500);
    await q.put("hello");
    expect(await got).toBe("hello");
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it("answers null when nothing comes in the timeout", async () => {
    const q = queue("empty", { createIfMissing: true });
    const started = performance.now();
    expect(await q.get({ timeoutMs: 300 })).toBeNull();
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
  });

  it("hands out a null item as docs/dict-queue.md says: get's null, getMany's [null], a lease's value null", async () => {
    const q = queue("nulls", { createIfMissing: true });
    await q.putMany([null, null, null, undefined]);
    expect(await q.get({ timeoutMs: 0 })).toBeNull(); // the item, taken: as none would read
    expect(await q.len()).toBe(3);
    expect(await q.getMany(1, { timeoutMs: 0 })).toEqual([null]);
    const leased = await q.get({ lease: 30, timeoutMs: 0 });
    expect(leased).not.toBeNull();
    expect(leased!.value).toBeNull();
    expect(await leased!.ack()).toBe(true);
    expect(await q.getMany(5, { timeoutMs: 0 })).toEqual([undefined]);
    expect(await q.getMany(5, { timeoutMs: 0 })).toEqual([]);
  });

  it("brings a leased item back when it is not acked in time, and removes it once acked", async () => {
    const q = queue("leases", { createIfMissing: true });
    await q.putMany(["first", "second"]);
    const lost = (await q.get({ lease: 0.5, timeoutMs: 0 }))!;
    expect(lost.value).toBe("first");
    expect(await q.len()).toBe(1);
    expect(await q.get({ timeoutMs: 0 })).toBe("second");
    expect(await q.get({ timeoutMs: 0 })).toBeNull(); // "first" is out on its lease
    // A blocking get is woken by the lease running out (the queue's alarm), and gets the item back.
    const started = performance.now();
    const again = (await q.get({ lease: 30, timeoutMs: 5_000 }))!;
    const waited = performance.now() - started;
    expect(again.value).toBe("first");
    expect(waited).toBeGreaterThan(200);
    expect(waited).toBeLessThan(4_000);
    expect(await lost.ack()).toBe(false); // its lease ran out: the item is someone else's now
    expect(await q.len()).toBe(0);
    expect((await q.info()).leased).toBe(1);
    expect(await again.ack()).toBe(true);
    expect(await q.len()).toBe(0);
    expect((await q.info()).leased).toBe(0);
  });

  it("keeps a leased item past its first lease when its worker extends it, from Node and at the edge", async () => {
    const q = queue("extended", { createIfMissing: true });
    await q.put("long job");
    const job = (await q.get({ lease: 0.5, timeoutMs: 0 }))!;
    const first = job.leaseUntil;
    expect(await job.extend(5)).toBe(true);
    expect(job.leaseUntil).toBeGreaterThan(first + 4_000);
    await sleep(1_000); // past its first lease
    expect(await q.get({ timeoutMs: 0 })).toBeNull(); // still out on its lease
    expect((await q.info()).leased).toBe(1);
    expect(await job.ack()).toBe(true);
    // A lease that ran out is not revived: its item went back to the queue.
    await q.put("short job");
    const late = (await q.get({ lease: 0.2, timeoutMs: 0 }))!;
    await sleep(500);
    expect(await late.extend(5)).toBe(false);
    expect(await q.extend(5, late.lease, "1.not-a-lease")).toBe(0);
    expect(await q.get({ timeoutMs: 0 })).toBe("short job");
    await expect(q.extend(0, "1.x")).rejects.toThrow(/"leaseSeconds" must be at least 0.1 seconds/);
    expect(await edge("extendAtEdge").remote("extended-at-edge")).toEqual({
      extended: true,
      moved: expect.any(Number),
      takenMeanwhile: null,
      acked: true,
    });
  });

  it("puts many items each under the item limit that add up past the body limit, in order, in several requests", async () => {
    const q = queue("heavy-put", { createIfMissing: true });
    await q.putMany(Array.from({ length: 14 }, (_, i) => `${i}:${"x".repeat(900 * 1024)}`));
    expect(await q.len()).toBe(14);
    const got = await q.getMany<string>(14, { timeoutMs: 0 });
    expect(got.map((item) => item.split(":")[0])).toEqual(Array.from({ length: 14 }, (_, i) => String(i)));
  });

  it("hands out a get that asks for more than one answer may carry in parts, taking none it does not hand out", async () => {
    const q = queue("huge-get", { createIfMissing: true });
    const item = (i: number) => `${i}:${"x".repeat(1_000_000)}`; // 34 of them: past one Durable Object answer's 32 MiB
    await q.putMany(Array.from({ length: 34 }, (_, i) => item(i)));
    const took = await api("/v1/queues/huge-get/get", { method: "POST", body: JSON.stringify({ n: 34, timeoutMs: 0, leaseSeconds: 1 }) });
    expect(took.status).toBe(200);
    const part = (await took.json()) as { items: unknown[]; more?: boolean };
    expect([part.items.length < 34, part.more]).toEqual([true, true]);
    await sleep(1100); // its leases run out: the items wait again
    const peeked = await api("/v1/queues/huge-get/peek", { method: "POST", body: JSON.stringify({ limit: 1000 }) });
    expect(peeked.status).toBe(200);
    const page = (await peeked.json()) as { items: unknown[]; next?: number };
    expect(page.items.length).toBeLessThan(34);
    expect(page.next).toBeDefined();
    let peekedAll = 0;
    for await (const value of q.iterate<string>({ pageSize: 1000 })) expect(value.startsWith(`${peekedAll++}:`)).toBe(true);
    expect(peekedAll).toBe(34);
    // The SDK asks for the rest at once: one getMany, every item, each on its lease. Leased for long enough that the
    // parts' transfer (34 MB, over a second on a loaded machine) ends before the first part's leases do.
    const leased = await q.getMany<string>(34, { timeoutMs: 0, lease: 5 });
    expect(leased.map((job) => job.value.split(":")[0])).toEqual(Array.from({ length: 34 }, (_, i) => String(i)));
    expect(await q.len()).toBe(0);
    await sleep(5100); // not acked: back in the queue
    const got = await q.getMany<string>(34, { timeoutMs: 0 });
    expect(got.map((v) => v.split(":")[0])).toEqual(Array.from({ length: 34 }, (_, i) => String(i)));
    expect(got.every((v, i) => v === item(i))).toBe(true);
    expect(await q.len()).toBe(0);
    // At the edge too, through the gateway's binding: every item in one getMany.
    await q.putMany(Array.from({ length: 34 }, (_, i) => item(i)));
    expect(await edge("takeMany").remote("huge-get", 34)).toBe(34);
    expect(await q.len()).toBe(0);
  }, 60_000);

  it("states and enforces its limits with clear errors", async () => {
    const q = queue("limits", { createIfMissing: true });
    const big = await q.put("x".repeat(QUEUE_LIMITS.maxItemBytes)).catch((e: unknown) => e);
    expect(big).toBeInstanceOf(ValueTooLargeError);
    const huge = await q.put("x".repeat(11 * 1024 * 1024)).catch((e: unknown) => e);
    expect(huge).toBeInstanceOf(ValueTooLargeError);
    expect((huge as Error).message).toMatch(/an item of 11534347 bytes .* the most queue "limits" holds in one item/);
    await q.putMany(Array.from({ length: QUEUE_LIMITS.maxItemsPerPartition }, (_, i) => i));
    const full = await q.put("one more").catch((e: unknown) => e);
    expect(full).toBeInstanceOf(QueueFullError);
    expect((full as Error).message).toMatch(/holds 5000 items; a partition holds at most 5000/);
    expect(await q.clear()).toBe(QUEUE_LIMITS.maxItemsPerPartition);
    // A putMany past the limit says how many of its items went in: those stay, and a caller that sends it again knows.
    const partly = await q.putMany(Array.from({ length: QUEUE_LIMITS.maxItemsPerPartition + 1 }, (_, i) => i)).catch((e: unknown) => e);
    expect(partly).toBeInstanceOf(QueueFullError);
    expect((partly as QueueFullError).message).toMatch(
      new RegExp(`the first ${QUEUE_LIMITS.maxItemsPerPartition} of these ${QUEUE_LIMITS.maxItemsPerPartition + 1} items went in and stay`),
    );
    expect((partly as QueueFullError).details?.put).toBe(QUEUE_LIMITS.maxItemsPerPartition);
    expect(await q.len()).toBe(QUEUE_LIMITS.maxItemsPerPartition);
    // One refused in its first batch says that none of them went in, of how many (before: only the batch's "1000 more").
    const none = await q.putMany(Array.from({ length: QUEUE_LIMITS.maxItemsPerRequest + 200 }, (_, i) => i)).catch((e: unknown) => e);
    expect(none).toBeInstanceOf(QueueFullError);
    expect((none as QueueFullError).message).toMatch(new RegExp(`; none of these ${QUEUE_LIMITS.maxItemsPerRequest + 200} items went in \\(each batch of`));
    expect((none as QueueFullError).details?.put).toBe(0);
    expect(await q.clear()).toBe(QUEUE_LIMITS.maxItemsPerPartition);
    await expect(q.get({ partition: "p".repeat(65), timeoutMs: 0 })).rejects.toThrow(/option "partition" must be at most 64 bytes/);
    await expect(q.get({ lease: 0, timeoutMs: 0 })).rejects.toThrow(/option "lease" must be seconds from 0.1 to 43200 \(got 0\)/);
  });
});

describe("HTTP", () => {
  it("answers bad names, unknown operations, bad bodies and large values with readable 4xx errors", async () => {
    await api("/v1/dicts", { method: "POST", body: JSON.stringify({ name: "http" }) });
    await api("/v1/queues", { method: "POST", body: JSON.stringify({ name: "http" }) });
    const cases: [string, unknown, number, RegExp][] = [
      ["/v1/dicts/bad%20name/get", { key: "k" }, 400, /"bad name" is not a dict name/],
      ["/v1/queues/-x/put", { values: [{ json: 1 }] }, 400, /"-x" is not a queue name/],
      ["/v1/dicts/http/frobnicate", {}, 404, /dicts have no operation "frobnicate" \(they have get, contains/],
      ["/v1/dicts/http/put", { key: "k" }, 400, /field "value"/],
      ["/v1/dicts/http/put", { key: "k", value: { json: "x".repeat(DICT_LIMITS.maxValueBytes) } }, 413, /larger than 1048576/],
      ["/v1/dicts/http/put", { key: "k", value: { json: 1, meta: { values: ["nonsense"] } } }, 400, /"meta" does not describe "value"/],
      ["/v1/dicts/http/get", { key: "k", extra: 1 }, 400, /unknown field "extra"/],
      ["/v1/dicts/http/put", { key: "k", value: { json: 1, meta: 5 } }, 400, /field "value.meta" must be an object in superjson's meta format/],
      ["/v1/queues/http/put", { values: [{ json: 1, meta: "Date" }] }, 400, /field "values.0.meta" must be an object in superjson's meta format/],
      ["/v1/queues/http/get", { timeoutMs: 60_000 }, 400, /field "timeoutMs" must be at most 50000 \(one request waits at most that long/],
      ["/v1/queues/http/get", { n: 5000 }, 400, /field "n" must be at most 1000$/],
      ["/v1/queues/http/peek", { after: -1 }, 400, /field "after" must be the previous page's next$/],
      // A dict's cursor is a key as stored (its canonical JSON); anything else answered 200 with no entries.
      ["/v1/dicts/http/entries", { after: "bogus" }, 400, /field "after" must be the previous page's next$/],
      ["/v1/dicts/http/entries", { after: '{"b":1,"a":2}' }, 400, /field "after" must be the previous page's next$/],
      ["/v1/queues/nowhere/get", {}, 404, /no queue named "nowhere" in environment "main"/],
      // An encoded value is { json, meta? }: without json it is no value (stored, it read back as {}).
      ["/v1/dicts/http/put", { key: "k", value: {} }, 400, /field "value.json" must be there/],
      ["/v1/dicts/http/update", { entries: [{ key: "k", value: { meta: {} } }] }, 400, /field "entries.0.value.json" must be there/],
      ["/v1/queues/http/put", { values: [{ json: 1 }, {}] }, 400, /field "values.1.json" must be there/],
      // Options that contradict each other: neither is taken for the other.
      ["/v1/dicts/http/put", { key: "k", value: { json: 1 }, ifVersion: 1, ifAbsent: true }, 400, /"ifAbsent" and "ifVersion" cannot go together/],
      ["/v1/queues/http/len", { total: true, partition: "p1" }, 400, /"partition" and "total" cannot go together/],
      ["/v1/queues/http/clear", { all: true, partition: "p1" }, 400, /"partition" and "all" cannot go together/],
    ];
    for (const [path, body, status, message] of cases) {
      const res = await api(path, { method: "POST", body: JSON.stringify(body) });
      expect([path, res.status]).toEqual([path, status]);
      expect((await errorOf(res)).message).toMatch(message);
    }
    const created = await api("/v1/queues", { method: "POST", body: JSON.stringify({ name: "http-q" }) });
    expect(created.status).toBe(201);
    const put = await api("/v1/queues/http-q/put", { method: "POST", body: JSON.stringify({ values: [{ json: { plain: "json" } }] }) });
    expect(await put.json()).toEqual({ put: 1 });
    const got = await api("/v1/queues/http-q/get", { method: "POST", body: JSON.stringify({}) });
    expect(((await got.json()) as { items: { value: unknown }[] }).items.map((i) => i.value)).toEqual([{ json: { plain: "json" } }]);
  });

  it("needs a token, scope deploy to make and delete, and one that reaches every app", async () => {
    const token = async (body: object) => {
      const res = await api("/v1/tokens", { method: "POST", body: JSON.stringify(body) });
      return ((await res.json()) as TokenCreateAnswer).token;
    };
    expect((await api("/v1/dicts", { token: null })).status).toBe(401);
    const call = await token({ scope: "call" });
    await expect(dict("guarded", { token: call, createIfMissing: true }).len()).rejects.toThrow(/needs scope deploy|scope "deploy"|deploy/);
    await dict("guarded", { createIfMissing: true }).len();
    expect(await dict("guarded", { token: call }).put("k", 1)).toBe(true);
    const scoped = await token({ scope: "deploy", apps: ["state"] });
    const err = await queue("guarded", { token: scoped })
      .len()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ForbiddenError);
    expect((err as Error).message).toMatch(/queues belong to the whole gateway/);
  });
});

describe("tandem dict and tandem queue", () => {
  it("lists, reads, peeks, clears and deletes from the shell", async () => {
    const d = dict("cli-dict", { createIfMissing: true });
    await d.update({ greeting: "hello", count: 3 });
    const q = queue("cli-queue", { createIfMissing: true });
    await q.putMany(["job-1", "job-2"]);
    const env = { TANDEM_GATEWAY: gw.url, TANDEM_TOKEN: ADMIN_TOKEN };
    const list = await runCli(["dict", "list"], { env });
    expect(list.stdout).toMatch(/cli-dict\s+2/);
    expect((await runCli(["dict", "get", "cli-dict", "greeting"], { env })).stdout.trim()).toBe('"hello"');
    // A key it does not hold: 1, as README's exit codes say of a command naming nothing the gateway holds (before: 2,
    // as for a dict or gateway that is not there).
    const missing = await runCli(["dict", "get", "cli-dict", "nope"], { env });
    expect([missing.code, missing.stderr]).toEqual([1, 'error: dict "cli-dict" has no key "nope"\n']);
    expect((await runCli(["dict", "get", "no-such-dict", "nope"], { env })).code).toBe(2);
    expect((await runCli(["dict", "items", "cli-dict", "--json"], { env })).stdout).toMatch(/"greeting"/);
    expect((await runCli(["queue", "len", "cli-queue"], { env })).stdout.trim()).toBe("2");
    expect((await runCli(["queue", "peek", "cli-queue"], { env })).stdout).toMatch(/"job-1"\n"job-2"/);
    expect((await runCli(["queue", "list"], { env })).stdout).toMatch(/cli-queue\s+2/);
    expect((await runCli(["queue", "clear", "cli-queue"], { env })).stdout).toMatch(/removed 2 items/);
    expect((await runCli(["queue", "peek", "cli-queue"], { env })).stdout).toBe('queue "cli-queue" is empty\n'); // before: nothing
    expect((await runCli(["dict", "clear", "cli-dict"], { env })).stdout).toMatch(/removed 2 entries/);
    expect((await runCli(["dict", "delete", "cli-dict"], { env })).code).toBe(0);
    expect((await runCli(["queue", "delete", "cli-queue"], { env })).code).toBe(0);
    expect((await runCli(["dict", "list"], { env })).stdout).not.toMatch(/cli-dict/);
  });

  it("cuts a long value on its line, saying how to see it whole, and prints it whole as JSON", async () => {
    const big = "x".repeat(DICT_LIMITS.maxValueBytes - 100);
    await dict("cli-long", { createIfMissing: true }).update({ big, small: "s" });
    await queue("cli-long", { createIfMissing: true }).putMany([big, "s"]);
    const env = { TANDEM_GATEWAY: gw.url, TANDEM_TOKEN: ADMIN_TOKEN };
    const items = (await runCli(["dict", "items", "cli-long"], { env })).stdout.split("\n");
    expect(items[0]).toBe(`"big"  "${"x".repeat(199)}… (${big.length + 2} characters; tandem dict get cli-long big shows it whole)`);
    expect(items[1]).toBe('"small"  "s"');
    const json = (await runCli(["dict", "items", "cli-long", "--json"], { env })).stdout.split("\n");
    expect(JSON.parse(json[0]!)).toEqual({ key: "big", value: { json: big } });
    expect((await runCli(["dict", "get", "cli-long", "big"], { env })).stdout).toBe(`"${big}"\n`);
    const peek = (await runCli(["queue", "peek", "cli-long"], { env })).stdout.split("\n");
    expect(peek[0]).toBe(`"${"x".repeat(199)}… (${big.length + 2} characters; tandem queue peek cli-long --json shows it whole)`);
    expect(peek[1]).toBe('"s"');
    expect(JSON.parse((await runCli(["queue", "peek", "cli-long", "--json", "-n", "1"], { env })).stdout)).toEqual({ json: big });
  });

  it("makes a dict and a queue from the shell, and says how when one is missing", async () => {
    const env = { TANDEM_GATEWAY: gw.url, TANDEM_TOKEN: ADMIN_TOKEN };
    const missing = await runCli(["dict", "items", "shell-made"], { env });
    expect(missing.stderr).toMatch(/no dict named "shell-made" in environment "main" \(tandem dict create shell-made makes it/);
    expect((await runCli(["dict", "create", "shell-made"], { env })).stdout).toMatch(/dict shell-made \(0 entries\)/);
    expect((await runCli(["dict", "create", "shell-made"], { env })).stderr).toMatch(/dict "shell-made" already exists \(to use it as it is: --exist-ok/);
    const again = await api("/v1/dicts", { method: "POST", body: JSON.stringify({ name: "shell-made" }) });
    expect(again.status).toBe(409); // as a secret that exists
    expect((await again.json()) as unknown).toMatchObject({ error: { code: "already_exists" } });
    expect((await runCli(["dict", "create", "shell-made", "--exist-ok"], { env })).code).toBe(0);
    expect((await runCli(["volume", "create", "shell-made"], { env })).stdout).toMatch(/volume shell-made \(version 0, 0 files\)/);
    expect((await runCli(["volume", "create", "shell-made"], { env })).stderr).toMatch(/volume "shell-made" already exists/);
    expect((await runCli(["volume", "create", "shell-made", "--exist-ok"], { env })).code).toBe(0);
    await Volume.delete("shell-made", { gateway: gw.url, token: ADMIN_TOKEN });
    expect((await runCli(["queue", "create", "shell-made"], { env })).stdout).toMatch(/queue shell-made \(0 items\)/);
    expect((await runCli(["queue", "len", "shell-made"], { env })).stdout.trim()).toBe("0");
    expect(await dict("shell-made").len()).toBe(0);
    // One of each is said as one: "1 entry", "1 item".
    await dict("shell-made").put("k", 1);
    await Queue.fromName("shell-made", { gateway: gw.url, token: ADMIN_TOKEN }).put("x");
    expect((await runCli(["dict", "create", "shell-made", "--exist-ok"], { env })).stdout).toMatch(/dict shell-made \(1 entry\)/);
    expect((await runCli(["queue", "create", "shell-made", "--exist-ok"], { env })).stdout).toMatch(/queue shell-made \(1 item\)/);
    await Dict.delete("shell-made", { gateway: gw.url, token: ADMIN_TOKEN });
    await Queue.delete("shell-made", { gateway: gw.url, token: ADMIN_TOKEN });
  });
});
