/**
 * The GPU plane end to end: the gateway in real workerd forwards plane-tier
 * calls to a plane that runs them in real Docker containers, sandboxed; a
 * test tries to break each sandbox property from inside a container.
 */
import { execFile } from "node:child_process";
import net from "node:net";
import os from "node:os";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CancelledError,
  ContainerFailedError,
  FunctionCall,
  FunctionTimeoutError,
  NoCapacityError,
  ProtocolError,
  RemoteError,
  lookup,
  type CallRecord,
} from "../sdk/index.js";
import { HEADERS, encodeValue, type AppManifest, type LogLine, type MapResultLine } from "../sdk/protocol.js";
import { runCli } from "./helpers/cli.js";
import { ADMIN_TOKEN, authed, eventually, streamThenDrop } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/plane-app.ts", import.meta.url).pathname;
let stack: TestStack;
const fn = <A extends unknown[] = any[], R = any>(name: string) => lookup<A, R>("plane", name, { gateway: stack.url });
/** The docker CLI: tests outside gpu-plane/ do not import dockerode. */
const docker = async (...args: string[]) => (await promisify(execFile)("docker", args)).stdout.trim();

beforeAll(async () => {
  stack = await startTestStack(APP, { gpus: "A100:2,T4:1", scaledownWindowSeconds: 3 });
});
afterAll(async () => {
  await stack?.dispose();
});

describe("calls forwarded to the plane", () => {
  it("runs a GPU function in a container, with CUDA_VISIBLE_DEVICES from the simulated inventory", async () => {
    const out = await fn("whereAmI").remote();
    expect(out.cuda).toMatch(/^[01]$/);
    expect(out.uid).toBe(65534);
    expect(out.container).toMatch(/^ctr-[0-9a-f]{8}$/);
    expect(out.callId).toMatch(/^fc-/);
    expect(out.interfaces).toEqual(["lo"]);
    // Under gVisor by default, where the engine lists runsc (the test set-up registers it): its kernel, not the host's.
    expect(stack.planes[0]!.status().dockerRuntime).toBe("runsc");
    expect(stack.planes[0]!.describe()).toContain("runtime docker (gVisor, runsc)");
    expect(out.kernel).toBe("4.4.0");
    expect(out.kernel).not.toBe(os.release());
    expect(
      stack.planeOutput.some((l) => new RegExp(`cold start: plane\\.whereAmI ${out.container} ready in \\d+ ms, A100#${out.cuda} \\(simulated\\)`).test(l)),
    ).toBe(true);
  });

  it("lists a plane function's GPUs in tandem apps, and in its manifest", async () => {
    const { code, stdout } = await runCli(["apps", "--gateway", stack.url], { env: { TANDEM_TOKEN: ADMIN_TOKEN } });
    expect(code).toBe(0);
    expect(stdout).toMatch(/function\s+twoGpus\s+plane, GPU H100:2 or A100:2, timeout 60 s, retries 0\n/);
    expect(stdout).toMatch(/function\s+whereAmI\s+plane, GPU A100, timeout 60 s/);
    expect(stdout).toMatch(/function\s+sayPlane\s+plane, timeout/);
    const manifest = (await (await fetch(`${stack.url}/v1/apps/plane`, authed())).json()) as AppManifest;
    expect(manifest.functions.find((f) => f.name === "twoGpus")?.gpu).toEqual(["H100:2", "A100:2"]);
    expect(manifest.functions.find((f) => f.name === "sayPlane")?.gpu).toBeUndefined();
  });

  it("falls back along a GPU list to a type the plane has", async () => {
    expect(await fn("twoGpus").remote()).toBe("0,1");
  });

  it("round-trips values and the function's env, and tags its logs with function, call id and container", async () => {
    const args = [new Date("2026-01-01T00:00:00Z"), new Uint8Array([1, 2, 3]), new Map([["k", 1]]), undefined];
    expect(await fn("echoPlane").remote(...args)).toEqual(args);
    await eventually(() => stack.planeOutput.some((l) => /\[plane\.echoPlane fc-[0-9a-z]{26} ctr-[0-9a-f]{8}\] echoing 4 values/.test(l)));
  });

  it("hands a plane function its arguments as the request sent them, called or spawned", async () => {
    const values = [
      new Date("2026-01-01T00:00:00Z"),
      new Map([["k", 1n]]),
      2n ** 70n,
      new Uint8Array([1, 2, 3]),
      undefined,
      { nested: [new Set(["a"]), null] },
    ];
    const kinds = ["[object Date]", "[object Map]", "[object BigInt]", "[object Uint8Array]", "[object Undefined]", "[object Object]"];
    expect(await fn("argsPlane").remote(0, ...values)).toEqual({ kinds, values });
    expect(await (await fn("argsPlane").spawn(0, ...values)).get({ timeoutMs: 30_000 })).toEqual({ kinds, values });
    // An invalid Date, which superjson would encode again as null: sent on as it came, the function gets the Date that
    // an edge function would get.
    const body = JSON.stringify({ args: [0, "not a date"], meta: { values: { "1": ["Date"] }, v: 1 } });
    const called = (await (await fetch(`${stack.url}/v1/apps/plane/functions/argsPlane/call`, authed({ method: "POST", body }))).json()) as CallRecord;
    expect(called.result).toMatchObject({ kinds: ["[object Date]"] });
    const { callId } = (await (await fetch(`${stack.url}/v1/apps/plane/functions/argsPlane/spawn`, authed({ method: "POST", body }))).json()) as {
      callId: string;
    };
    const spawned = (await (await fetch(`${stack.url}/v1/calls/${callId}?wait=30000`, authed())).json()) as CallRecord;
    expect(spawned.result).toMatchObject({ kinds: ["[object Date]"] });
  });

  it("reuses a warm container for the next input, then stops it after the scale-down window", async () => {
    const first = await fn("slowPlane").remote(10);
    const second = await fn("slowPlane").remote(10);
    expect(second.split(" in ")[1]).toBe(first.split(" in ")[1]);
    const container = first.split(" in ")[1];
    const stats = stack.planes[0]!.status().functions.find((f) => f.function === "slowPlane")!;
    expect(stats.coldStarts).toBe(1);
    await eventually(() => !stack.planes[0]!.status().containers.some((c) => c.id === container), 15_000);
  });

  it("brings a RemoteError back from the container", async () => {
    const err = await fn("boomPlane")
      .remote("out of range")
      .catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.remoteName).toBe("RangeError");
    expect(err.message).toBe("out of range");
    // The stack names the app's file and line, as an edge function's does, not the bundle the container ran.
    expect(err.remoteStack).toMatch(/^RangeError: out of range\n\s+at .*\(test\/fixtures\/plane-app\.ts:\d+:\d+\)/);
    expect(err.remoteStack).not.toContain("bundle.mjs");
    expect(err.remoteStack).not.toContain("runner");
  });

  it("says a function's own mistake in its author's words, as the edge does", async () => {
    const atEdge = await fn("firstWordEdge")
      .remote(42)
      .catch((e) => e);
    const onPlane = await fn("firstWordPlane")
      .remote(42)
      .catch((e) => e);
    expect(atEdge.message).toBe("text.split is not a function");
    expect(onPlane).toBeInstanceOf(RemoteError);
    expect(`${onPlane.remoteName}: ${onPlane.message}`).toBe(`${atEdge.remoteName}: ${atEdge.message}`);
  });

  it("records a spawned plane call in the ledger", async () => {
    const call = await fn("slowPlane").spawn(50);
    expect(await call.get({ timeoutMs: 30_000 })).toMatch(/^slept 50 in ctr-/);
    const record = (await (await fetch(`${stack.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
    expect(record).toMatchObject({ status: "succeeded", kind: "spawn" });
  });

  it("records where a plane call's time went on its plane: its wait for a container, the cold start, the run", async () => {
    // Once its containers have scaled down (3 s here), the next call starts one.
    await eventually(() => !stack.planes[0]!.status().containers.some((c) => c.function === "slowPlane"), 15_000);
    const record = async (id: string) => (await (await fetch(`${stack.url}/v1/calls/${id}`, authed())).json()) as CallRecord;
    const cold = await fn("slowPlane").spawn(200);
    await cold.get({ timeoutMs: 30_000 });
    const coldRecord = await record(cold.id);
    expect(coldRecord.plane!.coldStartMs).toBeGreaterThan(0);
    expect(coldRecord.plane!.runMs).toBeGreaterThanOrEqual(200);
    expect(coldRecord.plane!.queueMs).toBeGreaterThanOrEqual(0);
    // The gateway's view holds the plane's: the cold start and the run.
    const gatewayMs = coldRecord.finishedAt! - coldRecord.startedAt!;
    expect(gatewayMs).toBeGreaterThanOrEqual(Math.floor(coldRecord.plane!.coldStartMs! + coldRecord.plane!.runMs!));
    const warm = await fn("slowPlane").spawn(10);
    await warm.get({ timeoutMs: 30_000 });
    const warmRecord = await record(warm.id);
    expect(warmRecord.plane!.coldStartMs).toBeUndefined();
    expect(warmRecord.plane!.runMs).toBeGreaterThanOrEqual(10);
    // The call's page shows them apart: "ran" is the run alone, not the cold start before it.
    const page = await (await fetch(`${stack.url}/_tandem/calls/${cold.id}`, authed())).text();
    const fact = (name: string) => new RegExp(`<dt>${name}</dt>\\s*<dd>([^<]*)</dd>`).exec(page)?.[1];
    expect(fact("cold start")).toBe(`${Math.round(coldRecord.plane!.coldStartMs!)} ms`);
    expect(fact("ran")).toBe(`${Math.round(coldRecord.plane!.runMs!)} ms`);
  });
});

describe("a keyed plane call the client says is fresh", () => {
  const call = (key: string, fresh: boolean) =>
    fetch(`${stack.url}/v1/apps/plane/functions/announcedNap/call`, {
      method: "POST",
      body: JSON.stringify({ args: [300] }),
      headers: { "content-type": "application/json", [HEADERS.idempotencyKey]: key, ...(fresh ? { [HEADERS.freshKey]: "1" } : {}), ...authed().headers },
    });
  const runs = (callId: string) => stack.planeOutput.filter((l) => l.includes(callId) && l.includes("running attempt")).length;

  it("is recorded while it runs, and sent again it answers with the same record without running again", async () => {
    const key = `fresh-${Date.now()}`;
    const first = call(key, true);
    await new Promise((r) => setTimeout(r, 150));
    const again = await call(key, false); // while the first still runs: waits for it
    const a = (await (await first).json()) as CallRecord;
    const b = (await again.json()) as CallRecord;
    expect(a).toMatchObject({ status: "succeeded", attempts: 1, kind: "remote" });
    expect(b.callId).toBe(a.callId);
    const later = (await (await call(key, false)).json()) as CallRecord; // after it ended: its record
    expect(later).toMatchObject({ callId: a.callId, status: "succeeded" });
    const record = (await (await fetch(`${stack.url}/v1/calls/${a.callId}`, authed())).json()) as CallRecord;
    expect(record).toMatchObject({ status: "succeeded", attempts: 1 });
    expect(runs(a.callId)).toBe(1);
  });

  it("runs a fresh keyed map's inputs once each, and the map sent again streams the same calls", async () => {
    const key = `fresh-map-${Date.now()}`;
    const map = (fresh: boolean) =>
      fetch(`${stack.url}/v1/apps/plane/functions/announcedNap/map`, {
        method: "POST",
        body: JSON.stringify({ inputs: [[100], [200], [50]] }),
        headers: { "content-type": "application/json", [HEADERS.idempotencyKey]: key, ...(fresh ? { [HEADERS.freshKey]: "1" } : {}), ...authed().headers },
      }).then(async (res) =>
        (await res.text())
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as MapResultLine)
          .sort((a, b) => a.index - b.index),
      );
    const first = await map(true);
    expect(first.map((l) => [l.status, l.result])).toEqual([
      ["succeeded", "slept 100"],
      ["succeeded", "slept 200"],
      ["succeeded", "slept 50"],
    ]);
    const again = await map(false);
    expect(again.map((l) => l.callId)).toEqual(first.map((l) => l.callId));
    for (const line of first) {
      expect(runs(line.callId)).toBe(1);
      const record = (await (await fetch(`${stack.url}/v1/calls/${line.callId}`, authed())).json()) as CallRecord;
      expect(record).toMatchObject({ status: "succeeded", attempts: 1, kind: "map" });
    }
  });

  // The ids of `watchful` calls that have begun on the plane, and a cancel of one through the API.
  const watching = () => stack.planeOutput.filter((l) => l.includes("[plane.watchful ") && l.includes("watching")).map((l) => /fc-[0-9a-z]{26}/.exec(l)![0]);
  const newWatchers = async (before: string[], count: number) => {
    let ids: string[] = [];
    await eventually(() => (ids = watching().filter((id) => !before.includes(id))).length >= count, 20_000);
    return ids;
  };
  const cancel = (id: string) => fetch(`${stack.url}/v1/calls/${id}/cancel`, authed({ method: "POST" }));

  it("notes its plane with its record, so a cancel while it runs reaches the function there", async () => {
    const before = watching();
    const answer = fetch(`${stack.url}/v1/apps/plane/functions/watchful/call`, {
      method: "POST",
      body: JSON.stringify({ args: [] }),
      headers: { "content-type": "application/json", [HEADERS.idempotencyKey]: `fresh-cancel-${Date.now()}`, [HEADERS.freshKey]: "1", ...authed().headers },
    });
    const [id] = await newWatchers(before, 1);
    expect((await cancel(id!)).status).toBe(200);
    // The answer says what the record says: cancelled (it said "failed", with the cancel as its error).
    expect((await (await answer).json()) as CallRecord).toMatchObject({ callId: id, status: "cancelled", error: { code: "call_cancelled" } });
    await eventually(() => stack.planeOutput.some((l) => l.includes(id!) && l.includes("saw cancel")));
  });

  it("marks and notes a keyed map's inputs sent again without fresh, so a cancel reaches each one's plane", async () => {
    const before = watching();
    const lines = fetch(`${stack.url}/v1/apps/plane/functions/watchful/map`, {
      method: "POST",
      body: JSON.stringify({ inputs: [[], []] }),
      headers: { "content-type": "application/json", [HEADERS.idempotencyKey]: `stale-map-${Date.now()}`, ...authed().headers },
    }).then(async (res) =>
      (await res.text())
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as MapResultLine),
    );
    const ids = await newWatchers(before, 2);
    for (const id of ids) expect((await cancel(id)).status).toBe(200);
    expect((await lines).map((l) => [l.callId, l.status]).sort()).toEqual(ids.map((id) => [id, "cancelled"]).sort());
    for (const id of ids) await eventually(() => stack.planeOutput.some((l) => l.includes(id) && l.includes("saw cancel")));
  });

  it("answers a key it already knows with that call's record, even when the client wrongly says fresh", async () => {
    const key = `lied-${Date.now()}`;
    const a = (await (await call(key, true)).json()) as CallRecord;
    const b = (await (await call(key, true)).json()) as CallRecord;
    expect(b.callId).toBe(a.callId);
    expect(b).toMatchObject({ status: "succeeded", result: a.result });
    await eventually(() => stack.gatewayOutput.some((l) => l.includes(`key ${key} was sent as fresh but names call ${a.callId}`)), 5_000);
  });
});

describe("a plane call made without an Idempotency-Key", () => {
  /** A call as curl makes it: its answer comes as it ends. */
  const keyless = (url: string, name: string, args: unknown[]) =>
    fetch(`${url}/v1/apps/plane/functions/${name}/call`, authed({ method: "POST", body: JSON.stringify({ args }) })).catch(() => undefined);
  /** The id of the one call of `name` whose run on the plane printed `said` since `from` lines (the plane tags them). */
  const ranOnPlane = async (output: string[], from: number, name: string, said: string) => {
    let ids: string[] = [];
    await eventually(
      () =>
        (ids = output
          .slice(from)
          .filter((l) => l.includes(`[plane.${name} `) && l.includes(said))
          .map((l) => /fc-[0-9a-z]{26}/.exec(l)![0])).length > 0,
      30_000,
    );
    expect(ids).toHaveLength(1);
    return ids[0]!;
  };
  const recordOf = async (url: string, id: string) => {
    const res = await fetch(`${url}/v1/calls/${id}`, authed());
    return { status: res.status, record: (await res.json()) as CallRecord };
  };

  it("is recorded while it runs, once it has run half a second, and its end updates that record with its plane's timings", async () => {
    const from = stack.planeOutput.length;
    const answer = keyless(stack.url, "announcedNap", [3_000]);
    const id = await ranOnPlane(stack.planeOutput, from, "announcedNap", "running attempt 1");
    // Before, nothing knew of it until it ended: a 404.
    await eventually(async () => (await recordOf(stack.url, id)).status === 202, 2_000);
    expect((await recordOf(stack.url, id)).record).toMatchObject({ callId: id, function: "announcedNap", kind: "remote", status: "running", attempts: 1 });

    const res = (await answer)!;
    expect(res.headers.get(HEADERS.callId)).toBe(id);
    expect(await res.json()).toMatchObject({ callId: id, status: "succeeded", result: "slept 3000" });
    await eventually(async () => (await recordOf(stack.url, id)).record.status === "succeeded", 5_000);
    const { record } = await recordOf(stack.url, id);
    expect(record).toMatchObject({ kind: "remote", attempts: 1, result: "slept 3000" });
    expect(record.plane!.runMs).toBeGreaterThanOrEqual(3_000);
  });

  it("is cancelled once recorded: the record noted its plane, so the cancel reaches the function there", async () => {
    const from = stack.planeOutput.length;
    const answer = keyless(stack.url, "watchful", []);
    const id = await ranOnPlane(stack.planeOutput, from, "watchful", "watching");
    await eventually(async () => (await recordOf(stack.url, id)).status === 202, 2_000);
    const cancelled = await fetch(`${stack.url}/v1/calls/${id}/cancel`, authed({ method: "POST" }));
    expect(await cancelled.json()).toEqual({ callId: id, status: "cancelled" });
    expect(await (await answer)!.json()).toMatchObject({ callId: id, status: "cancelled", error: { code: "call_cancelled" } });
    await eventually(() => stack.planeOutput.some((l) => l.includes(id) && l.includes("saw cancel")));
  });

  describe("whose gateway is lost", () => {
    let lossy: TestStack;
    beforeAll(async () => {
      lossy = await startTestStack(APP, {}, { bindings: { TANDEM_CALL_LEASE_SECONDS: "1" } });
    });
    afterAll(async () => {
      await lossy?.dispose();
    });

    it("is ended as failed, saying its gateway was lost, and not run again", async () => {
      const from = lossy.planeOutput.length;
      void keyless(lossy.url, "announcedNap", [3_000]);
      const id = await ranOnPlane(lossy.planeOutput, from, "announcedNap", "running attempt");
      await eventually(async () => (await recordOf(lossy.url, id)).status === 202, 2_000);

      await lossy.restartGateway(); // its runner, and its caller's connection, die mid-call; the plane goes on

      await eventually(async () => (await recordOf(lossy.url, id)).record.status === "failed", 20_000);
      const { record } = await recordOf(lossy.url, id);
      expect(record).toMatchObject({ kind: "remote", attempts: 1, error: { code: "internal" } });
      expect(record.error!.message).toMatch(
        new RegExp(
          `^call ${id} was lost with its gateway \\(attempt 1 was under way on plane pl-[0-9a-z]+, which may have run it to its end\\); a call made without an Idempotency-Key is not run again`,
        ),
      );
      await new Promise((r) => setTimeout(r, 3_500)); // past the end of its one run
      expect(lossy.planeOutput.filter((l) => l.includes(id) && l.includes("running attempt"))).toHaveLength(1);
      expect(lossy.gatewayOutput.some((l) => l.includes(`resuming plane.announcedNap ${id}`))).toBe(false);
    });
  });
});

describe("plane calls whose runner is lost", () => {
  let lossy: TestStack;
  beforeAll(async () => {
    lossy = await startTestStack(APP, {}, { bindings: { TANDEM_CALL_LEASE_SECONDS: "1" } });
  });
  afterAll(async () => {
    await lossy?.dispose();
  });

  it("is resumed after a gateway restart with its arguments as they were sent", async () => {
    const values = [new Date("2026-01-01T00:00:00Z"), new Map([["k", 1n]]), 2n ** 70n, new Uint8Array([1, 2, 3]), undefined];
    // The last argument an invalid Date, which the ledger would have kept as null had the gateway encoded it again.
    const { json, meta } = encodeValue([3_000, ...values, "not a date"]) as { json: unknown[]; meta: { values: Record<string, unknown> } };
    meta.values[String(json.length - 1)] = ["Date"];
    const res = await fetch(`${lossy.url}/v1/apps/plane/functions/argsPlane/spawn`, authed({ method: "POST", body: JSON.stringify({ args: json, meta }) }));
    const { callId } = (await res.json()) as { callId: string };
    await eventually(async () => ((await (await fetch(`${lossy.url}/v1/calls/${callId}`, authed())).json()) as CallRecord).status === "running", 20_000);

    await lossy.restartGateway(); // the runner dies mid-call

    const back = (await FunctionCall.fromId(callId, { gateway: lossy.url }).get({ timeoutMs: 60_000 })) as { kinds: string[]; values: unknown[] };
    expect(back.kinds).toEqual(["[object Date]", "[object Map]", "[object BigInt]", "[object Uint8Array]", "[object Undefined]", "[object Date]"]);
    expect(back.values.slice(0, values.length)).toEqual(values);
    expect(lossy.gatewayOutput.some((l) => l.includes(`resuming plane.argsPlane ${callId}`))).toBe(true);
  });

  it("goes on with the retry a failed attempt waited for when the gateway restarted meanwhile, not with one more", async () => {
    const call = await lookup<[], never>("plane", "failsSlowlyPlane", { gateway: lossy.url }).spawn();
    const attempts = () => lossy.planeOutput.filter((l) => l.includes(call.id) && l.includes("running attempt"));
    await eventually(() => attempts().length === 1, 30_000);
    await new Promise((r) => setTimeout(r, 500)); // attempt 1 failed; its retry is due in 4 s

    await lossy.restartGateway(); // the runner dies while it waits

    await expect(FunctionCall.fromId(call.id, { gateway: lossy.url }).get({ timeoutMs: 60_000 })).rejects.toThrow("failed on the plane");
    const record = (await (await fetch(`${lossy.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
    expect(record).toMatchObject({ status: "failed", attempts: 2 });
    expect(attempts()).toEqual([expect.stringContaining("running attempt 1"), expect.stringContaining("running attempt 2")]);
  });

  /** How many times the plane ran a call of `announcedNap` (each run prints a line, tagged with its call id). */
  const runs = (callId: string) => lossy.planeOutput.filter((l) => l.includes(callId) && l.includes("running attempt")).length;

  it("is not run again after a gateway restart: the plane that runs it answers for it, and the record says 1 attempt", async () => {
    const call = await lookup<[number], string>("plane", "announcedNap", { gateway: lossy.url }).spawn(12_000); // long enough to outlast a gateway restart on a loaded machine
    await eventually(() => runs(call.id) === 1, 30_000);

    await lossy.restartGateway(); // the runner dies mid-call; the plane goes on

    expect(await call.get({ timeoutMs: 60_000 })).toBe("slept 12000");
    const record = (await (await fetch(`${lossy.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
    expect(record).toMatchObject({ status: "succeeded", attempts: 1 });
    expect(runs(call.id)).toBe(1);
    expect(lossy.planeOutput.some((l) => l.includes(`${call.id} attempt 1 was sent again: still running`))).toBe(true);
  });

  it("runs each input of a keyed map once when the gateway restarts while the plane runs them, sent in one batch", async () => {
    const key = `restart-map-${Date.now()}`;
    const send = (fresh: boolean) =>
      fetch(
        `${lossy.url}/v1/apps/plane/functions/announcedNap/map`,
        authed({
          method: "POST",
          body: JSON.stringify({ inputs: [[4_000], [4_000], [4_000]] }),
          headers: { "content-type": "application/json", [HEADERS.idempotencyKey]: key, ...(fresh ? { [HEADERS.freshKey]: "1" } : {}) },
        }),
      );
    const from = lossy.planeOutput.length;
    const started = () =>
      new Set(
        lossy.planeOutput
          .slice(from)
          .filter((l) => l.includes("[plane.announcedNap ") && l.includes("running attempt"))
          .map((l) => /fc-[0-9a-z]{26}/.exec(l)![0]),
      );
    const first = send(true)
      .then((res) => res.text())
      .catch(() => ""); // its answer is cut short by the restart
    await eventually(() => started().size === 3, 30_000);

    await lossy.restartGateway(); // the runner of the map dies while the plane runs its three inputs

    await first;
    const lines = (await (await send(false)).text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as MapResultLine);
    expect(lines.map((l) => [l.status, l.result])).toEqual(Array.from({ length: 3 }, () => ["succeeded", "slept 4000"]));
    expect(new Set(lines.map((l) => l.callId))).toEqual(started());
    for (const id of started()) {
      expect(runs(id)).toBe(1);
      const record = (await (await fetch(`${lossy.url}/v1/calls/${id}`, authed())).json()) as CallRecord;
      expect(record).toMatchObject({ status: "succeeded", attempts: 1, kind: "map" });
    }
  });

  it("that ended while the gateway was down gets the outcome the plane kept, without running again", async () => {
    const call = await lookup<[number], string>("plane", "announcedNap", { gateway: lossy.url }).spawn(800);
    await eventually(() => runs(call.id) === 1, 30_000);

    await lossy.restartGateway(2_000); // it ends on the plane meanwhile

    expect(await call.get({ timeoutMs: 60_000 })).toBe("slept 800");
    const record = (await (await fetch(`${lossy.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
    expect(record).toMatchObject({ status: "succeeded", attempts: 1 });
    expect(runs(call.id)).toBe(1);
    expect(lossy.planeOutput.some((l) => l.includes(`${call.id} attempt 1 was sent again: it ended`))).toBe(true);
  });
});

describe("generator functions on the plane", () => {
  it("streams what a container's generator yields", async () => {
    const got: number[] = [];
    for await (const x of fn<[number], AsyncGenerator<number>>("countPlane").remoteGen(4)) got.push(x);
    expect(got).toEqual([0, 1, 2, 3]);
  });

  it("delivers a chunk while the generator is still running in its container", async () => {
    const stream = fn("slowTokens").remoteGen()[Symbol.asyncIterator]();
    expect((await stream.next()).value).toBe("first");
    expect(stack.planes[0]!.status().containers.some((c) => c.function === "slowTokens" && c.busy)).toBe(true);
    expect((await stream.next()).value).toBe("second");
    expect((await stream.next()).done).toBe(true);
  });

  it("gives the chunks so far, then the error, when the generator throws midway", async () => {
    const got: unknown[] = [];
    const err = await (async () => {
      for await (const x of fn("boomAfter").remoteGen(2)) got.push(x);
    })().catch((e) => e);
    expect(got).toEqual([0, 1]);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.remoteName).toBe("TypeError");
    expect(err.message).toBe("gave up after 2");
    await eventually(() => stack.planes[0]!.status().containers.some((c) => c.function === "boomAfter" && !c.busy)); // warm again, not retired
  });

  it("stops the container's generator (its finally runs) when the caller stops reading", async () => {
    let n = 0;
    for await (const _ of fn("endlessPlane").remoteGen()) if (++n === 3) break;
    await eventually(() => stack.planeOutput.some((l) => /\[plane\.endlessPlane fc-[0-9a-z]{26} ctr-[0-9a-f]{8}\] plane generator stopped after \d+/.test(l)));
    await eventually(() => stack.planes[0]!.status().containers.some((c) => c.function === "endlessPlane" && !c.busy)); // warm again, not killed
  });

  it("aborts a container's generator's signal when its caller stops reading, as at the edge, before its finally runs", async () => {
    let n = 0;
    for await (const _ of fn("restlessPlane").remoteGen()) if (++n === 3) break;
    // Before: its finally ran with its signal not aborted (the edge's aborts, with this reason).
    await eventually(() => stack.planeOutput.some((l) => /\[plane\.restlessPlane fc-[0-9a-z]{26} ctr-[0-9a-f]{8}\] restless generator stopped after/.test(l)));
    expect(stack.planeOutput.find((l) => l.includes("restless generator stopped after"))).toMatch(
      /its signal aborted: CancelledError: call fc-[0-9a-z]{26} was cancelled: the caller stopped reading once \d+ chunks were sent$/,
    );
  });

  it("stops the container's generator, frees its container and records the call when the client drops the connection mid-stream", async () => {
    const stopped = () =>
      stack.planeOutput.filter((l) => /\[plane\.endlessPlane fc-[0-9a-z]{26} ctr-[0-9a-f]{8}\] plane generator stopped after/.test(l)).length;
    const before = stopped();
    const callId = await streamThenDrop(`${stack.url}/v1/apps/plane/functions/endlessPlane/stream`, authed().headers as Record<string, string>);
    await eventually(() => stopped() > before);
    await eventually(() => stack.planes[0]!.status().containers.some((c) => c.function === "endlessPlane" && !c.busy));
    // The gateway's end of it ran too: the call is recorded (and its input no longer counted in flight on the plane).
    await eventually(async () => (await fetch(`${stack.url}/v1/calls/${callId}`, authed())).status === 200);
    expect(await (await fetch(`${stack.url}/v1/calls/${callId}`, authed())).json()).toMatchObject({ kind: "stream", status: "cancelled" });
    // Its logs say so, as an edge stream's do.
    const system = (await FunctionCall.fromId(callId, { gateway: stack.url }).logs()).filter((l) => l.source === "system").map((l) => l.text);
    expect(system).toContainEqual(expect.stringMatching(/^cancelled: the caller stopped reading once \d+ chunks? (was|were) sent$/));
  });

  it("times a stream out on the plane, which stops its container at once, as it does a call's", async () => {
    const ran = () => stack.planeOutput.filter((l) => /the stalling generator's finally ran/.test(l)).length;
    const before = ran();
    const got: string[] = [];
    const err = await (async () => {
      for await (const chunk of fn<[number], AsyncGenerator<string>>("stallingPlane").remoteGen(8_000)) got.push(chunk);
    })().catch((e: unknown) => e);
    expect(got).toHaveLength(1);
    expect(err).toBeInstanceOf(FunctionTimeoutError);
    expect((err as FunctionTimeoutError).details).toMatchObject({ containerId: got[0] });
    expect((err as FunctionTimeoutError).message).toContain(`in container ${got[0]}`);
    // Stopped, not kept warm with its generator still inside it (before: cancelled, and kept).
    await eventually(() => !stack.planes[0]!.status().containers.some((c) => c.id === got[0]), 15_000);
    expect(stack.planeOutput.some((l) => l.includes((err as FunctionTimeoutError).callId!) && l.includes("timed out"))).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(ran()).toBe(before); // no code of it ran after the timeout
  }, 40_000);

  it("tells a public endpoint's client a plane call's failure without its container's last log lines or any details", async () => {
    const crashed = await fetch(`${stack.url}/plane/passes-crash`);
    expect(crashed.status).toBe(500);
    const error = ((await crashed.json()) as { error: { code: string; message: string; details?: unknown } }).error;
    expect(error).toMatchObject({
      code: "container_failed",
      message: expect.stringMatching(/^plane\.crash container ctr-[0-9a-f]{8} crashed with exit code 3 during the call$/),
    });
    expect(error.details).toBeUndefined(); // before: "…; last log lines:\ngoing down" (lines of other calls too) in its message
    // A stream's error event likewise: no call id, no plane, no stack.
    const events = await (await fetch(`${stack.url}/plane/boom-tokens`)).text();
    const data = JSON.parse(/event: error\ndata: (.*)\n/.exec(events)![1]!) as { code: string; details?: unknown; remote?: { stack?: string } };
    expect(data).toMatchObject({ code: "function_failed", message: "gave up after 1" });
    expect([data.details, data.remote?.stack]).toEqual([undefined, undefined]);
  });

  it("streams a plane generator through an edge endpoint as Server-Sent Events", async () => {
    const res = await fetch(`${stack.url}/plane/tokens/3`);
    expect(await res.text()).toBe("data: 0\n\ndata: 1\n\ndata: 2\n\nevent: done\ndata: null\n\n");
  });

  it("stops a plane generator streamed through an edge endpoint, frees its container and records the call when the client drops the connection", async () => {
    const stoppedCalls = () =>
      stack.planeOutput.flatMap((l) => /\[plane\.endlessPlane (fc-[0-9a-z]{26}) ctr-[0-9a-f]{8}\] plane generator stopped after/.exec(l)?.[1] ?? []);
    const before = stoppedCalls().length;
    await streamThenDrop(`${stack.url}/plane/endless-tokens`, {}, 3, "GET");
    await eventually(() => stoppedCalls().length > before);
    await eventually(() => stack.planes[0]!.status().containers.some((c) => c.function === "endlessPlane" && !c.busy));
    const callId = stoppedCalls().at(-1)!;
    await eventually(async () => (await fetch(`${stack.url}/v1/calls/${callId}`, authed())).status === 200);
    expect(await (await fetch(`${stack.url}/v1/calls/${callId}`, authed())).json()).toMatchObject({ kind: "stream", status: "cancelled" });
  });
});

describe("retries and cancellation on the plane", () => {
  it("retries a failing plane function with backoff until an attempt succeeds", async () => {
    expect(await fn("flakyPlane").remote()).toEqual({ attempts: 3, attempt: 3 });
  });

  it("cancel() stops the input: the function sees its signal abort, the container stays warm", async () => {
    const call = await fn("watchful").spawn();
    // Running: a cancel that comes sooner (a prepared container still resuming for it) means it never runs at all.
    await eventually(() => stack.planeOutput.some((l) => l.includes(`[plane.watchful ${call.id} ctr-`) && l.endsWith("watching")), 15_000);
    await call.cancel();
    await expect(call.get({ timeoutMs: 10_000 })).rejects.toBeInstanceOf(CancelledError);
    await eventually(() => stack.planeOutput.some((l) => l.includes(`[plane.watchful ${call.id} ctr-`) && l.endsWith("saw cancel")));
    // What its abort listener printed is the call's line too (before: the container's, without the call).
    await eventually(() => stack.planeOutput.some((l) => l.includes(`[plane.watchful ${call.id} ctr-`) && l.endsWith("listener saw CancelledError")));
    expect(stack.planes[0]!.status().containers.some((c) => c.function === "watchful")).toBe(true);
    const record = (await (await fetch(`${stack.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
    expect(record.status).toBe("cancelled");
  });

  it("cancel({ terminateContainer: true }) stops the container of a function that ignores the signal", async () => {
    const call = await fn("stubborn").spawn();
    await eventually(() => stack.planes[0]!.status().containers.some((c) => c.function === "stubborn" && c.ready && c.busy), 15_000);
    await call.cancel({ terminateContainer: true });
    await expect(call.get({ timeoutMs: 10_000 })).rejects.toBeInstanceOf(CancelledError);
    await eventually(() => !stack.planes[0]!.status().containers.some((c) => c.function === "stubborn"), 10_000);
    // The app's log says why the container stopped, as the cancel asked, not as a crash with other calls' last lines.
    const systemLines = async () => (await call.logs()).filter((l) => l.source === "system").map((l) => l.text);
    await expect
      .poll(systemLines, { timeout: 10_000 })
      .toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^plane\\.stubborn container ctr-[0-9a-f]{8} was stopped by the plane as call ${call.id} was cancelled \\(terminateContainer\\) during the call$`,
          ),
        ),
      );
    expect((await systemLines()).join("\n")).not.toContain("last log lines");
  });
});

describe("capacity", () => {
  it("queues a call that no GPU is free for, and fails it with no capacity at its timeout", async () => {
    const holding = fn("holdT4").remote(4_000);
    await new Promise((r) => setTimeout(r, 500));
    const err = await fn("quickT4")
      .remote()
      .catch((e) => e);
    expect(err).toBeInstanceOf(NoCapacityError);
    expect(err.message).toContain("no capacity for T4");
    expect(await holding).toBe("held T4 2");
  });

  it("gives a queued call its whole timeout to run once it reaches a container", async () => {
    // One T4: the second call waits for the first (a cold start and its 5.5 s), then runs 5.5 s of its 10 s timeout: more
    // than its timeout in all, within it in each part. A cold start of up to 4.5 s (a loaded machine) leaves the wait in time.
    const [first, second] = await Promise.all([fn("queuedT4").remote(5_500), new Promise((r) => setTimeout(r, 100)).then(() => fn("queuedT4").remote(5_500))]);
    expect(first).toMatch(/^ctr-[0-9a-f]{8}$/);
    expect(second).toBe(first); // the same warm container, not stopped by a timeout
  });
});

describe("failures are explained", () => {
  it("stops a container past its timeout and reports a timeout", async () => {
    const err = await fn("tooSlow")
      .remote()
      .catch((e) => e);
    expect(err).toBeInstanceOf(FunctionTimeoutError);
    expect(err.message).toContain("timed out after 2 s");
    expect(err.details.timeoutSeconds).toBe(2); // as an edge function's timeout says it
    // Said in the plane's output (the terminal of `tandem serve`) as in the app's log.
    // Tagged as its container's lines are (before: `[plane] fc-…: …`).
    const tag = `[plane.tooSlow ${err.details.callId} ${err.details.containerId}] (system)`;
    await eventually(() => stack.planeOutput.some((l) => l.startsWith(`${tag} plane.tooSlow timed out after 2 s`)));
  });

  it("says the container ran out of memory, with its last log lines", async () => {
    const err = await fn("hog")
      .remote()
      .catch((e) => e);
    expect(err).toBeInstanceOf(ContainerFailedError);
    expect(err.details.reason).toBe("oom");
    expect(err.message).toContain("ran out of memory (limit 64 MiB)");
    expect(err.message).toContain("about to allocate");
    // The app's log keeps the container's last line and the plane's line about the OOM kill (docs/observability.md).
    const logs = async () =>
      (await (await fetch(`${stack.url}/v1/apps/plane/logs?function=hog`, authed())).text())
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as LogLine);
    await expect
      .poll(async () => (await logs()).filter((l) => l.source === "system" && l.text.includes("ran out of memory")).map((l) => [l.callId, l.containerId]))
      .toEqual([[err.details.callId ?? expect.any(String), err.details.containerId]]);
    expect((await logs()).some((l) => l.source === "stdout" && l.text.includes("about to allocate") && l.containerId === err.details.containerId)).toBe(true);
  });

  it("says a container killed from outside (docker kill) was killed, not that it ran out of memory", async () => {
    const call = fn("killMe")
      .remote()
      .catch((e) => e);
    await eventually(() => stack.planeOutput.some((line) => line.includes("waiting to be killed")), 30_000);
    const plane = stack.planes[0]!;
    const running = (await docker("ps", "-q", "--filter", `label=tandem.plane=${plane.planeId}`, "--filter", "label=tandem.function=killMe")).split("\n");
    expect(running).toHaveLength(1);
    await docker("kill", running[0]!);

    const err = await call;
    expect(err).toBeInstanceOf(ContainerFailedError);
    expect(err.details).toMatchObject({ reason: "killed", signal: "SIGKILL", exitCode: 137 });
    expect(err.message).toContain("was killed (SIGKILL)");
    expect(err.message).not.toContain("memory");
  });

  it("says the container crashed, with its exit code and last lines", async () => {
    const err = await fn("crash")
      .remote()
      .catch((e) => e);
    expect(err).toBeInstanceOf(ContainerFailedError);
    expect(err.details).toMatchObject({ reason: "crashed", exitCode: 3 });
    expect(err.message).toContain("going down");
  });

  it("kills a container that writes garbage on the control channel, with a protocol error", async () => {
    const err = await fn("garbage")
      .remote()
      .catch((e) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.message).toContain("it was killed");
  });
});

describe("the sandbox, tried from inside a container", () => {
  let server: net.Server;
  let port: number;
  beforeAll(async () => {
    server = net.createServer((s) => s.end("host"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => server.close());

  it("cannot read its runner's memory from a process it spawns", async () => {
    const out = await fn("peekRunner").remote();
    expect(out.runnerMemory).toBe("EACCES");
  });

  it("sees no path of the plane's state folder in its mountinfo", async () => {
    const out = await fn("peekRunner").remote();
    expect(out.mountinfo).toContain("/tandem/app/bundle.mjs");
    expect(out.mountinfo).not.toContain(stack.dir); // the plane's state folder: its bundles and control sockets
  });

  // gVisor checks a write's permission before the read-only mount: nobody writing root's / is EACCES there, not EROFS.
  it("cannot write / or reach the host's loopback", async () => {
    const out = await fn("escape").remote(port, 0);
    expect(out.writeRoot).toBe("EACCES");
    expect(out.connect).toBe("ECONNREFUSED");
  });

  // Under gVisor the pid limit counts the sandbox's host threads: at the limit its kernel cannot go on, and the
  // container ends (under runc the next fork fails instead: gpu-plane/drivers/docker.test.ts).
  it("cannot start processes past its pid limit: a fork bomb ends its container, and the next call gets a new one", async () => {
    const bomb = fn("escape").remote(port, 1000);
    await expect(bomb).rejects.toBeInstanceOf(ContainerFailedError);
    const out = await fn("escape").remote(port, 2);
    expect(out.processesStarted).toBe("2");
  });
});
