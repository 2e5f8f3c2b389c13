/**
 * Dicts and queues from plane containers, in real Docker with the gateway in
 * real workerd: the SDK's `Dict` and `Queue` inside a container reach the
 * gateway through its plane. An edge endpoint puts jobs on a queue, a plane
 * class with two warm containers consumes them on leases and writes each
 * result to a dict, one container is killed mid-item, and every job is done:
 * at least once, as docs/dict-queue.md promises, and again only for the one
 * whose worker died. The `ifAbsent` lock lets one of 50 through, from a
 * container and from a container and the edge at once.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Dict, Queue, lookup } from "../sdk/index.js";
import { ADMIN_TOKEN, eventually } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

const JOBS = 20;
let stack: TestStack;
const fn = <A extends unknown[], R>(name: string) => lookup<A, R>("pdq", name, { gateway: stack.url, token: ADMIN_TOKEN });
const dict = (name: string) => Dict.fromName(name, { gateway: stack.url, token: ADMIN_TOKEN, createIfMissing: true });
const queue = (name: string) => Queue.fromName(name, { gateway: stack.url, token: ADMIN_TOKEN, createIfMissing: true });

type Attempt = { id: number; attempt: string; container: string };

/** The consumers' records: each attempt's start (its container), the attempts held to be killed, and, once done, each result. */
async function records(): Promise<{ starts: Attempt[]; held: Attempt[]; done: Map<string, { id: number; result: number }> }> {
  const starts: Attempt[] = [];
  const held: Attempt[] = [];
  const done = new Map<string, { id: number; result: number }>();
  for await (const [key, value] of dict("results").items<[string, number, string], unknown>()) {
    const [what, id, attempt] = key;
    if (what === "start") starts.push({ id, attempt, container: value as string });
    else if (what === "held") held.push({ id, attempt, container: value as string });
    else if (what === "done") done.set(attempt, { id, result: value as number });
  }
  return { starts, held, done };
}

/** The plane's lines about the consumers (a late ack, a failed request), for a failed check's message. */
const consumerLines = () => stack.planeOutput.filter((l) => /pdq job|consumer in/.test(l)).join("\n");

beforeAll(async () => {
  stack = await startTestStack(new URL("./fixtures/plane-dict-queue-app.ts", import.meta.url).pathname, { scaledownWindowSeconds: 30 });
}, 120_000);
afterAll(async () => {
  await stack?.dispose();
});

describe("dicts and queues from plane containers", () => {
  it("refuses a function or a symbol in a value in a container before sending, as the SDK does in Node and at the edge", async () => {
    expect(await fn<[string], unknown>("storeUnsendable").remote("plane-unsendable")).toEqual({
      dict: { code: "invalid_argument", message: expect.stringMatching(/^dict "plane-unsendable" put: the value \(at \.cb\) is a function/) },
      queue: { code: "invalid_argument", message: expect.stringMatching(/^queue "plane-unsendable" put: the item is a symbol/) },
    });
    expect([await dict("plane-unsendable").len(), await queue("plane-unsendable").len()]).toEqual([0, 0]);
  });

  it("a plane function puts to a dict and takes from a queue, through its plane", async () => {
    await queue("inbox").put({ job: "from node", at: new Date(0) });
    const out = await fn<[string, string, unknown, string], { wrote: boolean; readBack: unknown; item: unknown }>("roundTrip").remote(
      "plane-state",
      "greeting",
      { hello: "from a container", n: 2n ** 65n },
      "inbox",
    );
    expect(out.wrote).toBe(true);
    expect(out.readBack).toEqual({ hello: "from a container", n: 2n ** 65n });
    expect(out.item).toEqual({ job: "from node", at: new Date(0) });
    expect(await dict("plane-state").get("greeting")).toEqual({ hello: "from a container", n: 2n ** 65n });
    expect(await queue("inbox").len()).toBe(0);
  }, 60_000);

  it("lets exactly one of 50 concurrent ifAbsent writers through, in a container, and across a container and the edge", async () => {
    expect(await fn<[string, string, number], number>("race").remote("plane-locks", "alone", 50)).toBe(1);
    const [plane, edge] = await Promise.all([
      fn<[string, string, number], number>("race").remote("plane-locks", "shared", 25),
      fn<[string, string, number], number>("edgeRace").remote("plane-locks", "shared", 25),
    ]);
    expect(plane + edge).toBe(1);
    expect(await dict("plane-locks").get("shared")).toMatch(/^(plane|edge) \d+$/);
  }, 60_000);

  it("every job an edge endpoint put is done by two leasing containers, once each but the one whose container was killed mid-item", async () => {
    const started = Date.now();
    const res = await fetch(`${stack.url}/pdq/submit`, { method: "POST", body: JSON.stringify({ n: JOBS }) });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ put: JOBS });

    // Once both containers have done some work, hold one in its next job (started, not done) and kill it there.
    // `docker kill` runs beside this process's loop, not in it: the plane runs in this process, and a loop blocked
    // for the kill stalls the other container's requests, past its lease when the machine is loaded.
    let victim: Attempt | undefined;
    await eventually(async () => {
      const { starts, done } = await records();
      const doneBy = new Set(starts.filter((s) => done.has(s.attempt)).map((s) => s.container));
      if (doneBy.size < 2) return false;
      await dict("results").put(["hold", [...doneBy][0]!], true);
      return true;
    }, 40_000);
    await eventually(async () => (victim = (await records()).held[0]) !== undefined, 20_000);
    await promisify(execFile)("docker", ["kill", "--signal", "KILL", `tandem-${victim!.container}`]);

    await eventually(async () => new Set([...(await records()).done.values()].map((d) => d.id)).size === JOBS, 60_000);
    // A worker acks its job just after it writes the job's result: the last ack may come a moment after the last result.
    await eventually(async () => {
      const info = await queue("jobs").info();
      return info.len === 0 && info.leased === 0;
    }, 10_000);
    const { starts, done } = await records();

    // The kill landed mid-item: that attempt never finished, and its job was leased out again and done.
    expect(done.has(victim!.attempt)).toBe(false);
    expect(new Set(starts.map((s) => s.container)).size).toBeGreaterThanOrEqual(2);
    for (let id = 0; id < JOBS; id++) {
      const results = [...done.values()].filter((d) => d.id === id);
      expect(results, `job ${id}\n${consumerLines()}`).toEqual([{ id, result: (id + 1) ** 2 }]);
      expect(starts.filter((s) => s.id === id).length, `attempts at job ${id}`).toBe(id === victim!.id ? 2 : 1);
    }
    expect(await queue("jobs").info()).toMatchObject({ len: 0, leased: 0 });
    console.log(`${JOBS} jobs, one container killed mid-item: all done in ${Date.now() - started} ms`);
  }, 150_000);
});
