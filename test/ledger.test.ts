/**
 * The call ledger in real workerd: a spawned call whose runner dies with the
 * gateway is resumed after a restart (its lost attempt counted), one whose
 * runner lives is not however late its renewals come, a keyed map's ended
 * input is not while the map runs, and large values go to blob storage. A
 * call made without an Idempotency-Key is recorded while it runs once it has
 * run half a second, can be cancelled then, and is ended as failed, not run
 * again, when its gateway is lost.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { FunctionCall, lookup, type CallRecord } from "../sdk/index.js";
import { DELIVERY_DEFAULTS } from "../sdk/defaults.js";
import { DASHBOARD, encodeValue, HEADERS, type MapResultLine } from "../sdk/protocol.js";
import { authed, eventually, startTestGateway, type TestGateway } from "./helpers/gateway.js";

const APP = new URL("./fixtures/edge-app.ts", import.meta.url).pathname;
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway(APP, { bindings: { TANDEM_CALL_LEASE_SECONDS: "1" } });
});
afterAll(async () => {
  await gw?.dispose();
});

it("resumes a spawned call that was running when the gateway stopped, as its second attempt", async () => {
  const call = await lookup("edge", "napping", { gateway: gw.url }).spawn(1_500);
  await new Promise((r) => setTimeout(r, 300));
  const before = (await (await fetch(`${gw.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
  expect(before.status).toBe("running");

  await gw.stop(); // the runner dies mid-call
  await gw.restart();

  expect(await FunctionCall.fromId(call.id, { gateway: gw.url }).get({ timeoutMs: 20_000 })).toBe("slept 1500");
  const after = (await (await fetch(`${gw.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
  // Its first attempt died with the isolate; it ran again, and the record says so.
  expect(after).toMatchObject({ status: "succeeded", result: "slept 1500", kind: "spawn", attempts: 2 });
  await eventually(() => gw.output.some((l) => l.includes(`resuming edge.napping ${call.id}, whose runner was lost (attempt 1 was under way)`)));
  // And in the call's own log, where its reader sees why it ran twice (before: only on the gateway's terminal).
  const said = async () => (await FunctionCall.fromId(call.id, { gateway: gw.url }).logs({ source: "system" })).map((l) => l.text);
  await eventually(async () =>
    (await said()).some((t) =>
      t.includes(
        "its runner was lost, as when its gateway stops or restarts mid-call (attempt 1 was under way): the ledger takes it over from there, so it runs again as attempt 2",
      ),
    ),
  );
});

it("keeps a result holding a class's instances as their own fields, as its caller gets it (before: recorded failed, and a spawned call ran twice)", async () => {
  const f = lookup<[number], unknown>("edge", "pointResult", { gateway: gw.url });
  const expected = (x: number) => ({ at: { x, y: 2 }, list: [{ x: 0, y: 0 }], when: new Date(0) });
  expect(await f.remote(1)).toEqual(expected(1));
  const call = await f.spawn(3);
  expect(await FunctionCall.fromId(call.id, { gateway: gw.url }).get({ timeoutMs: 10_000 })).toEqual(expected(3));
  const record = (await (await fetch(`${gw.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
  expect(record).toMatchObject({ status: "succeeded", attempts: 1, result: { at: { x: 3, y: 2 }, list: [{ x: 0, y: 0 }], when: "1970-01-01T00:00:00.000Z" } });
  // A keyed call over HTTP is recorded with what it answered.
  const res = await fetch(
    `${gw.url}/v1/apps/edge/functions/pointResult/call`,
    authed({ method: "POST", body: '{"args":[5]}', headers: { [HEADERS.idempotencyKey]: `point-${Date.now()}` } }),
  );
  expect(res.status).toBe(200);
  const id = res.headers.get(HEADERS.callId)!;
  await eventually(async () => ((await (await fetch(`${gw.url}/v1/calls/${id}`, authed())).json()) as CallRecord).status === "succeeded");
  expect(gw.output.filter((l) => l.includes("could not record"))).toEqual([]);
});

it("resumes a call whose runner was lost while it waited to retry a failed attempt with that retry, not one more", async () => {
  const token = `retrying-${Date.now()}`;
  const call = await lookup<[string], never>("edge", "failsSlowly", { gateway: gw.url }).spawn(token);
  await eventually(() => gw.output.some((l) => l.includes(`running ${token} attempt 1`)));
  await new Promise((r) => setTimeout(r, 300)); // attempt 1 failed; its retry is due in 3 s

  await gw.stop(); // the runner dies while it waits
  await gw.restart();

  await expect(FunctionCall.fromId(call.id, { gateway: gw.url }).get({ timeoutMs: 20_000 })).rejects.toThrow(`${token} failed`);
  const record = (await (await fetch(`${gw.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
  // One retry, as the function asks: before, the failed attempt was taken for one cut off, and a third one ran.
  expect(record).toMatchObject({ status: "failed", attempts: 2 });
  expect(gw.output.filter((l) => l.includes(`running ${token} attempt`))).toEqual([
    expect.stringContaining(`running ${token} attempt 1`),
    expect.stringContaining(`running ${token} attempt 2`),
  ]);
  await eventually(() => gw.output.some((l) => l.includes(`resuming edge.failsSlowly ${call.id}, whose runner was lost (attempt 1 had failed`)));
});

it("resumes a spawned call with its arguments as they were sent", async () => {
  const values = [new Date("2026-01-01T00:00:00Z"), new Map([["k", 1n]]), 2n ** 70n, new Uint8Array([1, 2, 3]), undefined];
  // The last argument an invalid Date, which the ledger would have kept as null had the gateway encoded it again.
  const { json, meta } = encodeValue([1_500, ...values, "not a date"]) as { json: unknown[]; meta: { values: Record<string, unknown> } };
  meta.values[String(json.length - 1)] = ["Date"];
  const res = await fetch(`${gw.url}/v1/apps/edge/functions/argsAfter/spawn`, authed({ method: "POST", body: JSON.stringify({ args: json, meta }) }));
  const { callId } = (await res.json()) as { callId: string };
  await eventually(async () => ((await (await fetch(`${gw.url}/v1/calls/${callId}`, authed())).json()) as CallRecord).status === "running");

  await gw.stop(); // the runner dies mid-call
  await gw.restart();

  const back = (await FunctionCall.fromId(callId, { gateway: gw.url }).get({ timeoutMs: 20_000 })) as { kinds: string[]; values: unknown[] };
  expect(back.kinds).toEqual(["[object Date]", "[object Map]", "[object BigInt]", "[object Uint8Array]", "[object Undefined]", "[object Date]"]);
  expect(back.values.slice(0, values.length)).toEqual(values);
  await eventually(() => gw.output.some((l) => l.includes(`resuming edge.argsAfter ${callId}`)));
});

it("does not resume an input of a keyed map that ended while the map still runs: its runner keeps its lease until it records it", async () => {
  // The first input ends long before the second; the map records both as it ends, three leases later.
  const res = await fetch(
    `${gw.url}/v1/apps/edge/functions/napping/map`,
    authed({
      method: "POST",
      body: JSON.stringify({ inputs: [[50], [3_500]] }),
      headers: { "content-type": "application/json", [HEADERS.idempotencyKey]: `long-map-${Date.now()}`, [HEADERS.freshKey]: "1" },
    }),
  );
  const lines = (await res.text())
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as MapResultLine);
  expect(lines.map((l) => [l.index, l.status])).toEqual([
    [0, "succeeded"],
    [1, "succeeded"],
  ]);
  for (const { callId } of lines) {
    await FunctionCall.fromId(callId, { gateway: gw.url }).get({ timeoutMs: 10_000 }); // recorded as the map ends
    const record = (await (await fetch(`${gw.url}/v1/calls/${callId}`, authed())).json()) as CallRecord;
    expect(record).toMatchObject({ status: "succeeded", kind: "map", attempts: 1 });
    expect(gw.output.filter((l) => l.includes(callId))).toEqual([]);
  }
});

it("keeps a result larger than a ledger row in blob storage and returns it whole", async () => {
  const big = "x".repeat(700_000) + "end";
  const call = await lookup("edge", "echo", { gateway: gw.url }).spawn(big, new Uint8Array(300_000).fill(7));
  const [text, bytes] = (await call.get({ timeoutMs: 10_000 })) as [string, Uint8Array];
  expect(text).toBe(big);
  expect(bytes).toBeInstanceOf(Uint8Array);
  expect(bytes.length).toBe(300_000);
  expect(bytes.every((b) => b === 7)).toBe(true);
  const blobs = await gw.blobKeys();
  expect(blobs).toContain(`results/${call.id}`);
  expect(blobs).toContain(`inputs/${call.id}`);
});

/** A call made as curl makes it: no Idempotency-Key. Its answer comes as it ends (a failed fetch if its gateway goes first). */
const keyless = (fn: string, args: unknown[]) =>
  fetch(`${gw.url}/v1/apps/edge/functions/${fn}/call`, authed({ method: "POST", body: JSON.stringify({ args }) })).catch(() => undefined);

/** The ids of `fn`'s calls the dashboard lists as `status`: how whoever made a call without a key finds it while it runs. */
async function listed(fn: string, status: string): Promise<string[]> {
  const page = await (await fetch(`${gw.url}${DASHBOARD.base}/apps/edge/functions/${fn}`, authed())).text();
  return [...page.matchAll(/data-call-id="(fc-[0-9a-z]{26})" class="status-([a-z_]+)"/g)].filter((m) => m[2] === status).map((m) => m[1]!);
}

/** The one call of `fn` listed as running that was not before; resolves once there is one. */
async function newRunning(fn: string, before: string[], ms = 10_000): Promise<string> {
  let ids: string[] = [];
  await eventually(async () => (ids = (await listed(fn, "running")).filter((id) => !before.includes(id))).length > 0, ms);
  expect(ids).toHaveLength(1);
  return ids[0]!;
}

const recordOf = async (id: string) => {
  const res = await fetch(`${gw.url}/v1/calls/${id}`, authed());
  return { status: res.status, record: (await res.json()) as CallRecord };
};

it("records a call made without an Idempotency-Key as running once it has run half a second, and its end in that record", async () => {
  const token = `keyless-${Date.now()}`;
  const before = await listed("countedNap", "running");
  const started = Date.now();
  const answer = keyless("countedNap", [token, 3_000]);
  const id = await newRunning("countedNap", before);
  // Before, nothing knew of it until it ended, 3 s later.
  expect(Date.now() - started).toBeLessThan(DELIVERY_DEFAULTS.keylessRecordWaitMs + 1_000);
  expect(await recordOf(id)).toMatchObject({
    status: 202,
    record: { callId: id, app: "edge", function: "countedNap", kind: "remote", status: "running", attempts: 1 },
  });

  const res = (await answer)!;
  expect(res.headers.get(HEADERS.callId)).toBe(id);
  expect(await res.json()).toMatchObject({ callId: id, status: "succeeded", result: { token, runs: 1 } });
  await eventually(async () => (await recordOf(id)).record.status === "succeeded", 5_000);
  const { record } = await recordOf(id);
  expect(record).toMatchObject({ kind: "remote", attempts: 1, result: { token, runs: 1 } });
  expect(record.finishedAt! - record.startedAt!).toBeGreaterThanOrEqual(3_000);
  // Its renewals kept its 1 s lease: the ledger took nothing for lost.
  expect(gw.output.filter((l) => l.includes(id))).toEqual([]);
});

it("cancels a call made without an Idempotency-Key once it is recorded: its function sees its signal abort", async () => {
  const token = `keyless-cancel-${Date.now()}`;
  const before = await listed("watchful", "running");
  const answer = keyless("watchful", [token]);
  const id = await newRunning("watchful", before);
  const cancelled = await fetch(`${gw.url}/v1/calls/${id}/cancel`, authed({ method: "POST" }));
  expect(await cancelled.json()).toEqual({ callId: id, status: "cancelled" });
  expect(await (await answer)!.json()).toMatchObject({ callId: id, status: "cancelled", error: { code: "call_cancelled" } });
  await eventually(() => gw.output.some((l) => l.includes(`saw abort ${token}: cancelled`)));
  expect((await recordOf(id)).record).toMatchObject({ status: "cancelled" });
});

it("ends a call made without an Idempotency-Key whose gateway was lost as failed, saying so, and does not run it again", async () => {
  const token = `keyless-lost-${Date.now()}`;
  const before = await listed("countedNap", "running");
  void keyless("countedNap", [token, 3_000]);
  const id = await newRunning("countedNap", before);

  await gw.stop(); // its runner, and its caller's connection, die mid-call
  await gw.restart();

  await eventually(async () => (await recordOf(id)).record.status === "failed", 20_000);
  const { status, record } = await recordOf(id);
  expect(status).toBe(200); // it ended
  expect(record).toMatchObject({ kind: "remote", attempts: 1, error: { code: "internal" } });
  expect(record.error!.message).toContain(`call ${id} was lost with its gateway (attempt 1 was under way)`);
  expect(record.error!.message).toContain("a call made without an Idempotency-Key is not run again");
  const said = async () => (await FunctionCall.fromId(id, { gateway: gw.url }).logs({ source: "system" })).map((l) => l.text);
  await eventually(async () => (await said()).some((t) => t.includes("lost with its gateway (attempt 1 was under way): ended as failed, not run again")));
  await new Promise((r) => setTimeout(r, 500)); // a run started again would have counted by now
  expect(await lookup("edge", "runsOf", { gateway: gw.url }).remote(token)).toBe(0);
  expect(gw.output.some((l) => l.includes(`resuming edge.countedNap ${id}`))).toBe(false);
  expect(gw.output.some((l) => l.includes(`edge.countedNap ${id}, made without an Idempotency-Key, lost its gateway`))).toBe(true);
});

// A lease of 2 ms is shorter than a timer's jitter: every renewal comes late, as on a loaded machine, while the runner
// lives. The ledger sees the runner in its isolate, and does not take it for lost.
const LATE_RENEWALS = { TANDEM_CALL_LEASE_SECONDS: "0.002" };

it("does not run a spawned call again while its runner lives, however late its lease's renewals come", async () => {
  await gw.restart(LATE_RENEWALS);
  try {
    const token = `late-${Date.now()}`;
    const call = await lookup("edge", "countedNap", { gateway: gw.url }).spawn(token, 1_500);
    expect(await call.get({ timeoutMs: 20_000 })).toEqual({ token, runs: 1 });
    await new Promise((r) => setTimeout(r, 500)); // a run started late would have counted by now
    expect(await lookup("edge", "runsOf", { gateway: gw.url }).remote(token)).toBe(1);
    const record = (await (await fetch(`${gw.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
    expect(record).toMatchObject({ status: "succeeded", attempts: 1 });
    expect(gw.output.filter((l) => l.includes(call.id))).toEqual([]);
  } finally {
    await gw.restart();
  }
});

it("resumes a call whose runner was lost once, and not again while the resumed run lives, however late its renewals come", async () => {
  const token = `late-resumed-${Date.now()}`;
  const call = await lookup("edge", "countedNap", { gateway: gw.url }).spawn(token, 2_500);
  await new Promise((r) => setTimeout(r, 300));
  await gw.stop(); // the runner dies mid-call
  await gw.restart(LATE_RENEWALS);
  try {
    // The run counts in the restarted isolate: the resumed one, alone.
    expect(await FunctionCall.fromId(call.id, { gateway: gw.url }).get({ timeoutMs: 20_000 })).toEqual({ token, runs: 1 });
    await new Promise((r) => setTimeout(r, 500));
    expect(await lookup("edge", "runsOf", { gateway: gw.url }).remote(token)).toBe(1);
    const record = (await (await fetch(`${gw.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
    expect(record).toMatchObject({ status: "succeeded", attempts: 2 });
    expect(gw.output.filter((l) => l.includes(`resuming edge.countedNap ${call.id}`))).toHaveLength(1);
  } finally {
    await gw.restart();
  }
});
