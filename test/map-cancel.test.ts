/**
 * A map left early stops the work it no longer wants: the SDK's `.map`, left
 * with a `break`, cancels the inputs its batches in flight had not run
 * (`POST .../map/cancel`), at the edge (real workerd) and on the plane (real
 * Docker); and that route's own answers, good and bad.
 */
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lookup, type CallRecord } from "../sdk/index.js";
import { HEADERS, paths, type MapCancelAnswer, type MapResultLine, type TokenCreateAnswer } from "../sdk/protocol.js";
import { installGatewayFetch } from "../sdk/transport.js";
import { ndjsonLines } from "../sdk/stream-lines.js";
import { authed, eventually } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/map-cancel-app.ts", import.meta.url).pathname;
/** Another app, for a token that may reach only it. */
const OTHER_APP = new URL("./fixtures/input-app.ts", import.meta.url).pathname;
let stack: TestStack;
/** The SDK's requests to the gateway, as sent: path and idempotency key. */
const sent: { path: string; key: string | undefined }[] = [];

beforeAll(async () => {
  stack = await startTestStack([APP, OTHER_APP], { gpus: "A100:1", scaledownWindowSeconds: 30 });
  installGatewayFetch((url, init) => {
    sent.push({ path: new URL(url).pathname, key: (init.headers as Record<string, string> | undefined)?.[HEADERS.idempotencyKey] });
    return fetch(url, init);
  });
});
afterAll(async () => {
  installGatewayFetch(undefined);
  await stack?.dispose();
});

const nap = (name: "edgeNap" | "planeNap") => lookup<[number, number], number>("mapcancel", name, { gateway: stack.url });
/** The inputs of `fn` that began, by the lines each wrote as it began (edge lines are the gateway's, plane lines the plane's). */
const began = (fn: string, lines: string[]) =>
  new Set(lines.filter((l) => l.includes(`[mapcancel.${fn} `) && l.includes("began input")).map((l) => /fc-[0-9a-z]{26}/.exec(l)![0]));
const cancelMap = (fn: string, key: string | undefined, token?: string) =>
  fetch(stack.url + paths.mapCancel("mapcancel", fn), {
    method: "POST",
    headers: {
      ...(key === undefined ? {} : { [HEADERS.idempotencyKey]: key }),
      authorization: `Bearer ${token ?? (authed().headers as Record<string, string>).authorization.slice(7)}`,
    },
  });
const record = async (id: string) => (await (await fetch(`${stack.url}/v1/calls/${id}`, authed())).json()) as CallRecord;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Maps 200 inputs of `fn`, each napping `ms`, and leaves the loop after the first result to come; returns the keys of the map
 * requests the SDK sent, and of the cancels it sent.
 */
async function mapThenBreak(fn: "edgeNap" | "planeNap", ms: number): Promise<{ mapKeys: string[]; cancelKeys: string[] }> {
  const from = sent.length;
  const inputs = Array.from({ length: 200 }, (_, i) => [i, ms] as [number, number]);
  for await (const y of nap(fn).starmap(inputs, { orderOutputs: false })) {
    expect(y).toBeLessThan(200);
    break;
  }
  const mine = sent.slice(from);
  return {
    mapKeys: mine.filter((r) => r.path === paths.map("mapcancel", fn)).map((r) => r.key!),
    cancelKeys: mine.filter((r) => r.path === paths.mapCancel("mapcancel", fn)).map((r) => r.key!),
  };
}

describe("a map left early", () => {
  it("at the edge: cancels the inputs not yet begun, so no more begin and none is left pending or running", async () => {
    const { mapKeys, cancelKeys } = await mapThenBreak("edgeNap", 1_000);
    expect(mapKeys).toHaveLength(1);
    expect(cancelKeys).toEqual(mapKeys);
    // Those under way when the cancel came (32 at a time, and those whose start it found marked) run to their end;
    // no other begins after it, where the next 32 would have begun within the second.
    await sleep(500);
    const soon = began("edgeNap", stack.gatewayOutput);
    await sleep(3_000);
    const later = began("edgeNap", stack.gatewayOutput);
    expect(later.size).toBe(soon.size);
    expect(later.size).toBeLessThan(100);
    expect(await (await cancelMap("edgeNap", mapKeys[0])).json()).toEqual({ cancelled: 0 }); // nothing of it is left to cancel
    const records = await Promise.all([...later].map(record));
    expect(records.every((r) => r.status === "succeeded" || r.status === "cancelled")).toBe(true);
  });

  it("on the plane: stops the inputs under way, and cancels those queued there and those not yet sent, so its containers go idle", async () => {
    const { mapKeys, cancelKeys } = await mapThenBreak("planeNap", 1_500);
    expect(mapKeys).toHaveLength(1);
    expect(cancelKeys).toEqual(mapKeys);
    const plane = stack.planes[0]!;
    const idle = () => {
      const status = plane.status();
      const stats = status.functions.find((f) => f.app === "mapcancel" && f.function === "planeNap");
      return (stats?.queued ?? 0) === 0 && status.containers.every((c) => c.app !== "mapcancel" || !c.busy);
    };
    await eventually(idle, 5_000);
    // An input that takes a container freed by a cancel before its own cancel reaches it begins, and stops at once.
    await sleep(1_000);
    const soon = began("planeNap", stack.planeOutput);
    await sleep(3_000);
    const later = began("planeNap", stack.planeOutput);
    expect(idle()).toBe(true);
    expect(later.size).toBe(soon.size);
    // The gateway sends a batch's first 32 inputs on at once, and one more for each that ends (the first result, and any
    // other that ended before the cancel came: sent on before it, it may begin); none was sent once the map was cancelled.
    const records = await Promise.all([...later].map(record));
    // Those that ran to their end, by their own lines: one that ended as the cancel came is recorded as cancelled (the
    // ledger marked it before its end was written), though its end sent the next input on.
    const ended = [...later].filter((id) => stack.planeOutput.some((l) => l.includes(id) && l.includes("ended input"))).length;
    const indexes = stack.planeOutput
      .filter((l) => [...later].some((id) => l.includes(id)) && l.includes("began input"))
      .map((l) => Number(/began input (\d+)/.exec(l)![1]));
    expect(ended).toBeGreaterThanOrEqual(1); // the result the loop took
    expect(Math.max(...indexes)).toBeLessThan(32 + ended);
    expect(later.size).toBeLessThan(10); // two containers: the two under way when it was cancelled, and those before
    // The gateway names all the map's inputs on the plane in one cancel, and the plane drops those queued before it stops
    // those running: no input takes a container a stop frees, so it stops the two under way and no more. (Sent one by
    // one, a queued input could take a freed container before its own cancel came, and be stopped in turn.)
    expect(stack.planeOutput.filter((l) => /\[plane\] cancelling mapcancel\.planeNap fc-/.test(l)).length).toBeLessThanOrEqual(2);
    expect(await (await cancelMap("planeNap", mapKeys[0])).json()).toEqual({ cancelled: 0 });
    expect(records.every((r) => r.status === "succeeded" || r.status === "cancelled")).toBe(true);
    expect(stack.planeOutput.some((l) => /\[plane\] cancelling fc-[0-9a-z]{26}, waiting for a container/.test(l))).toBe(true);
  });

  it("inside an edge function: hands each result on as it ends, and starts no more inputs once its loop is left", async () => {
    await sleep(2_500); // the inputs of the tests before have ended
    const before = began("edgeNap", stack.gatewayOutput).size;
    const mapInside = lookup<[number], { first: number; ms: number }>("mapcancel", "mapInside", { gateway: stack.url });
    const { first, ms } = await mapInside.remote(64);
    expect(first).toBe(0);
    expect(ms).toBeLessThan(1_500); // the first result, not the 2 s naps of the rest (before: every input, in two waves)
    await sleep(3_000);
    // 32 at a time: those under way when the loop was left end, and at most the one whose worker took it before then
    // begins; none of the other 31.
    expect(began("edgeNap", stack.gatewayOutput).size - before).toBeLessThanOrEqual(33);
  });

  it("is left without an error, within 2 s, when the gateway refuses its cancel or does not answer it", async () => {
    const recording = (url: string, init: RequestInit) => {
      sent.push({ path: new URL(url).pathname, key: (init.headers as Record<string, string> | undefined)?.[HEADERS.idempotencyKey] });
      return fetch(url, init);
    };
    const inputs = Array.from({ length: 40 }, (_, i) => [i, 300] as [number, number]);
    try {
      for (const cancel of [() => Promise.reject(new Error("connection refused")), () => new Promise<Response>(() => {})]) {
        installGatewayFetch((url, init) => (new URL(url).pathname.endsWith("/map/cancel") ? cancel() : recording(url, init)));
        let left = 0;
        for await (const _ of nap("edgeNap").starmap(inputs, { orderOutputs: false })) {
          left = Date.now();
          break;
        }
        expect(Date.now() - left).toBeLessThan(2_500);
      }
    } finally {
      installGatewayFetch(recording);
    }
  });

  it("run to its end sends nothing more than its map requests", async () => {
    const from = sent.length;
    const out: number[] = [];
    for await (const y of nap("edgeNap").starmap([
      [1, 10],
      [2, 10],
      [3, 10],
    ] as [number, number][]))
      out.push(y);
    expect(out).toEqual([1, 2, 3]);
    expect(sent.slice(from).map((r) => r.path)).toEqual([paths.map("mapcancel", "edgeNap")]);
  });
});

describe("a map request whose client goes away", () => {
  /** Sends a map request of `n` inputs of edgeNap, each napping `ms`, reads its first line, and drops the connection. */
  const mapThenLeave = (n: number, ms: number, key?: string) =>
    new Promise<string>((resolve, reject) => {
      const body = JSON.stringify({ inputs: Array.from({ length: n }, (_, i) => [i, ms]) });
      const req = http.request(
        stack.url + paths.map("mapcancel", "edgeNap"),
        {
          method: "POST",
          headers: { "content-type": "application/json", ...(authed().headers as Record<string, string>), ...(key ? { [HEADERS.idempotencyKey]: key } : {}) },
        },
        (res) =>
          res.once("data", (chunk: Buffer) => {
            req.destroy();
            resolve(String(chunk));
          }),
      );
      req.on("error", (err) => (req.destroyed ? undefined : reject(err)));
      req.end(body);
    });
  /** How many times each input index of edgeNap began since `from` lines of the gateway's output. */
  const beganSince = (from: number) => {
    const times = new Map<number, number>();
    for (const l of stack.gatewayOutput.slice(from).filter((l) => l.includes("[mapcancel.edgeNap ") && l.includes("began input"))) {
      const index = Number(/began input (\d+)/.exec(l)![1]);
      times.set(index, (times.get(index) ?? 0) + 1);
    }
    return times;
  };

  for (const keyed of [false, true]) {
    it(`${keyed ? "with" : "without"} a key: runs every input it sent to its end, once`, async () => {
      await sleep(2_500); // the inputs of the tests before have ended
      const from = stack.gatewayOutput.length;
      expect(await mapThenLeave(120, 300, keyed ? `leave-${Date.now()}` : undefined)).toContain('"index"');
      // 120 inputs of 300 ms, 32 at a time, take about 1.2 s; before, the map ended at the first line it failed to write.
      await eventually(() => beganSince(from).size === 120, 10_000);
      await sleep(1_000);
      const times = beganSince(from);
      expect(times.size).toBe(120);
      expect([...times.values()].every((t) => t === 1)).toBe(true);
    });
  }
});

describe("POST .../map/cancel", () => {
  it("ends a map request's inputs not yet ended as cancelled, which its stream then says, and leaves those ended as they are", async () => {
    const key = `cancel-route-${Date.now()}`;
    const map = (key: string, inputs: number[][]) =>
      fetch(stack.url + paths.map("mapcancel", "edgeNap"), {
        method: "POST",
        body: JSON.stringify({ inputs }),
        headers: { "content-type": "application/json", [HEADERS.idempotencyKey]: key, ...(authed().headers as Record<string, string>) },
      });
    // Another map, whose key starts with this one's, runs on untouched.
    const neighbour = map(`${key}2`, [
      [0, 800],
      [1, 800],
    ]).then(async (r) =>
      (await r.text())
        .trim()
        .split("\n")
        .map((l) => (JSON.parse(l) as MapResultLine).status),
    );
    const res = await map(
      key,
      Array.from({ length: 60 }, (_, i) => [i, i === 0 ? 10 : 800]),
    );
    expect(res.status).toBe(200);
    const lines: MapResultLine[] = [];
    let answer: MapCancelAnswer | undefined;
    for await (const line of ndjsonLines(res.body!)) {
      lines.push(line as MapResultLine);
      if (lines.length === 1) answer = (await (await cancelMap("edgeNap", key)).json()) as MapCancelAnswer;
    }
    expect(lines).toHaveLength(60);
    const cancelled = lines.filter((l) => l.status === "cancelled");
    expect(answer!.cancelled).toBeGreaterThanOrEqual(cancelled.length);
    expect(cancelled.length).toBeGreaterThan(20); // 32 run at a time: the rest had not begun
    expect(lines.filter((l) => l.status === "succeeded").length).toBeLessThan(60);
    for (const line of cancelled) expect(line.error).toMatchObject({ code: "call_cancelled" });
    const first = lines.find((l) => l.index === 0)!;
    // Ended before the cancel: its outcome, once the map has written its inputs' records (as it ends).
    await eventually(async () => (await record(first.callId)).status === "succeeded", 5_000);
    expect(await record(first.callId)).toMatchObject({ status: "succeeded", result: 0 });
    expect(await record(cancelled[0]!.callId)).toMatchObject({ status: "cancelled", kind: "map", error: { code: "call_cancelled" } });
    // Each line says what its input's record says: one running as the cancel came ran on to its end (edgeNap does not
    // read its signal), and is cancelled in both (before: its line said succeeded, its record cancelled).
    const ran = lines.filter((l) => l.index > 0 && l.index < 32);
    expect(ran.every((l) => l.status === "cancelled")).toBe(true);
    for (const line of [...ran, first]) expect((await record(line.callId)).status, `input ${line.index}`).toBe(line.status);
    expect(await (await cancelMap("edgeNap", key)).json()).toEqual({ cancelled: 0 }); // a map that has ended
    expect(await neighbour).toEqual(["succeeded", "succeeded"]);
  });

  it("answers 400 without a key or with a malformed one, 404 for an unknown function, and 403 to a token for another app", async () => {
    const missing = await cancelMap("edgeNap", undefined);
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { error: { message: string } }).error.message).toBe(
      "cancelling a map needs the idempotency-key header its map request carried (the SDK sends one with each batch)",
    );
    const malformed = await cancelMap("edgeNap", "two words");
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { error: { message: string } }).error.message).toMatch(/idempotency-key header must be 1 to 255 visible ASCII/);
    const unknown = await cancelMap("nope", "k1");
    expect(unknown.status).toBe(404);
    const made = await fetch(`${stack.url}/v1/tokens`, authed({ method: "POST", body: JSON.stringify({ scope: "call", apps: ["input"] }) }));
    expect(made.status).toBe(201);
    const other = (await made.json()) as TokenCreateAnswer;
    const refused = await cancelMap("edgeNap", "k1", other.token);
    expect(refused.status).toBe(403);
    expect(await (await cancelMap("edgeNap", "never-sent")).json()).toEqual({ cancelled: 0 });
  });
});
