/** What `Dict` and `Queue` refuse before they send anything: values the wire cannot carry, options that contradict. */
import { describe, expect, it } from "vitest";
import { Dict } from "./dict.js";
import { InvalidArgumentError, InvalidOptionsError } from "./errors.js";
import { Queue } from "./queue.js";

// Nothing listens there: a refusal that came from sending would be gateway_unreachable, not these.
const where = { gateway: "http://127.0.0.1:9", token: "t" };

describe("a dict value or queue item the wire cannot carry", () => {
  it("is refused before it is sent, as a call's argument is, naming where the function or symbol is", async () => {
    const cache = Dict.fromName("cache", where);
    const refusal = async (put: Promise<unknown>) => put.catch((e: unknown) => e);
    const fn = await refusal(cache.put("f", () => 1));
    expect(fn).toBeInstanceOf(InvalidArgumentError);
    expect((fn as Error).message).toBe(
      'dict "cache" put: the value is a function, which a dict cannot carry: values travel as data, as arguments do (docs/api.md, "Values")',
    );
    await expect(cache.put("f2", { cb: () => 1 })).rejects.toThrow('dict "cache" put: the value (at .cb) is a function');
    await expect(cache.put("s", Symbol("x"))).rejects.toThrow('dict "cache" put: the value is a symbol');
    await expect(cache.put("m", new Map([["k", [1, () => 2]]]))).rejects.toThrow("the value (at [0][1]) is a function");
    await expect(cache.update({ ok: 1, bad: { cb: () => 1 } })).rejects.toThrow('dict "cache" update: the value of key "bad" (at .cb) is a function');

    const jobs = Queue.fromName("jobs", where);
    const item = await refusal(jobs.put(() => 1));
    expect(item).toBeInstanceOf(InvalidArgumentError);
    expect((item as Error).message).toBe(
      'queue "jobs" put: the item is a function, which a queue cannot carry: items travel as data, as arguments do (docs/api.md, "Values")',
    );
    await expect(jobs.putMany([1, { at: new Date(0), tag: Symbol("x") }])).rejects.toThrow('queue "jobs" put: item 2 (at .tag) is a symbol');
  });
});

describe("options that contradict each other", () => {
  it("are refused before they are sent, naming both", async () => {
    const cache = Dict.fromName("cache", where);
    const put = await cache.put("k", 1, { ifAbsent: true, ifVersion: 1 }).catch((e: unknown) => e);
    expect(put).toBeInstanceOf(InvalidOptionsError);
    expect((put as Error).message).toMatch(/^dict "cache" put: "ifAbsent" and "ifVersion" cannot go together: /);
    const jobs = Queue.fromName("jobs", where);
    await expect(jobs.len({ total: true, partition: "p1" })).rejects.toThrow(/^queue "jobs" len: "partition" and "total" cannot go together/);
    await expect(jobs.clear({ all: true, partition: "p1" })).rejects.toThrow(/^queue "jobs" clear: "partition" and "all" cannot go together/);
  });
});
