/**
 * A `.map`'s inputs, sent to a plane together (`POST /v1/plane/run-many`):
 * the plane runs each input of a batch once and answers each on its own line,
 * an input it has seen from its outcome; the gateway, in real workerd, sends a
 * map's inputs in fewer requests than inputs, matches answers that come out of
 * order to their inputs, and sends them one by one to a plane that does not
 * know the route. The plane runs in this process on real Docker.
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lookup } from "../sdk/index.js";
import type { PlaneRunManyLine } from "../sdk/protocol.js";
import { signRequest } from "../sdk/signing.js";
import { ADMIN_TOKEN } from "./helpers/gateway.js";
import { SECRET, planeHeartbeat, planeRunRequest, startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/plane-app.ts", import.meta.url).pathname;
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack(APP, { gpus: "A100:2,T4:1", scaledownWindowSeconds: 30 });
});
afterAll(async () => {
  await stack?.dispose();
});

const fn = <A extends unknown[], R>(name: string) => lookup<A, R>("plane", name, { gateway: stack.url, token: ADMIN_TOKEN });
const runs = (callId: string) => stack.planeOutput.filter((l) => l.includes(callId) && l.includes("running attempt")).length;

/** Sends a signed request to the test plane, as the gateway does. */
async function toPlane(route: string, body: string): Promise<Response> {
  const plane = stack.planes[0]!;
  const headers = await signRequest(SECRET, { audience: plane.planeId, method: "POST", path: route, body });
  return fetch(`${plane.url}${route}`, { method: "POST", body, headers });
}

/** A run-many request's answer, its lines sorted by input. */
async function lines(res: Response): Promise<PlaneRunManyLine[]> {
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("application/x-ndjson");
  return (await res.text())
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as PlaneRunManyLine)
    .sort((a, b) => a.i - b.i);
}

const newCallId = () => `fc-${randomBytes(13).toString("hex")}`;

describe("a plane's run-many route", () => {
  it("runs each input once, answers each on its own line, and answers an input it has seen from its outcome", async () => {
    const { callId, attempt, args, ...base } = await planeRunRequest(stack, "announcedNap", [30], { maxContainers: 4, maxInputs: 4, targetInputs: 4 });
    const seen = await toPlane("/v1/plane/run", JSON.stringify({ ...base, callId, attempt, args }));
    expect(((await seen.json()) as { status: string }).status).toBe("succeeded");
    expect(runs(callId)).toBe(1);

    const fresh = [newCallId(), newCallId(), newCallId()];
    const body = JSON.stringify({
      base,
      runs: [{ callId, attempt, args }, ...fresh.map((id, n) => ({ callId: id, attempt: 1, args: [10 * (n + 1)] }))],
    });
    const answered = await lines(await toPlane("/v1/plane/run-many", body));
    expect(answered.map((l) => l.i)).toEqual([0, 1, 2, 3]);
    expect(answered[0]).toMatchObject({ status: "succeeded", result: "slept 30", again: "replayed" });
    expect(answered.slice(1).map((l) => ("result" in l ? l.result : l))).toEqual(["slept 10", "slept 20", "slept 30"]);
    expect(runs(callId)).toBe(1);
    for (const id of fresh) expect(runs(id)).toBe(1);
  });

  it("answers a failing input with its error on its line, beside the inputs that succeed", async () => {
    const { callId: _c, attempt: _a, args: _r, ...base } = await planeRunRequest(stack, "boomPlane", [], { maxContainers: 4, maxInputs: 4, targetInputs: 4 });
    const body = JSON.stringify({
      base,
      runs: [
        { callId: newCallId(), attempt: 1, args: ["first"] },
        { callId: newCallId(), attempt: 1, args: ["second"] },
      ],
    });
    const answered = await lines(await toPlane("/v1/plane/run-many", body));
    expect(answered.map((l) => ("status" in l ? [l.status, l.error?.message] : l))).toEqual([
      ["failed", "first"],
      ["failed", "second"],
    ]);
  });

  it("refuses a batch over its size in inputs, or with an input the base does not fit, with 400 and a reason", async () => {
    const {
      callId: _c,
      attempt: _a,
      args: _r,
      ...base
    } = await planeRunRequest(stack, "announcedNap", [], { maxContainers: 4, maxInputs: 4, targetInputs: 4 });
    const tooMany = JSON.stringify({ base, runs: Array.from({ length: 65 }, () => ({ callId: newCallId(), attempt: 1, args: [1] })) });
    const many = await toPlane("/v1/plane/run-many", tooMany);
    expect(many.status).toBe(400);
    expect(((await many.json()) as { error: { message: string } }).error.message).toContain("runs");
    const stray = JSON.stringify({ base, runs: [{ callId: newCallId(), attempt: 1, args: [1], function: "slowPlane" }] });
    const strayAnswer = await toPlane("/v1/plane/run-many", stray);
    expect(strayAnswer.status).toBe(400);
    expect(((await strayAnswer.json()) as { error: { message: string } }).error.message).toContain("function");
  });
});

interface Recorded {
  route: string;
  inputs: number;
}

/**
 * A listener registered as a plane with the H100s `twoGpus` asks for first, so the gateway sends it that function's
 * inputs. It answers each input with ten times its argument (lines in reverse order, the second input's as an
 * error), or, with `knowsRunMany` false, answers run-many with 404 as a plane from before it would.
 */
async function recorderPlane(knowsRunMany: boolean): Promise<{ recorded: Recorded[]; close(): void }> {
  const recorded: Recorded[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => (body += d));
    req.on("end", () => {
      const answer = (run: { args: unknown[] }, i: number) =>
        i === 1
          ? { error: { code: "invalid_request", message: "the second input is refused" } }
          : { status: "succeeded", result: (run.args[0] as number) * 10 };
      if (req.url === "/v1/plane/run") {
        const run = JSON.parse(body) as { args: unknown[]; callId: string };
        recorded.push({ route: req.url, inputs: 1 });
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(answer(run, run.args[0] === 2 ? 1 : 0)));
      } else if (req.url === "/v1/plane/run-many" && knowsRunMany) {
        const { runs } = JSON.parse(body) as { runs: { args: unknown[] }[] };
        recorded.push({ route: req.url, inputs: runs.length });
        res.writeHead(200, { "content-type": "application/x-ndjson" });
        for (let i = runs.length - 1; i >= 0; i--) res.write(JSON.stringify({ i, ...answer(runs[i]!, runs[i]!.args[0] === 2 ? 1 : 0) }) + "\n");
        res.end();
      } else {
        recorded.push({ route: req.url ?? "", inputs: 0 });
        res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { code: "not_found", message: "no such route" } }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const planeId = "pl-recorder01"; // one id: the second recorder takes the first one's place
  // H100s enough for every input at once (twoGpus takes two each): the gateway counts those it sent since the last
  // heartbeat, and with two it would send the rest to the real plane's A100s.
  const body = JSON.stringify(planeHeartbeat(planeId, `http://127.0.0.1:${(server.address() as { port: number }).port}`, { H100: { total: 40, free: 40 } }));
  const headers = await signRequest(SECRET, { audience: "gateway", method: "POST", path: "/v1/planes/heartbeat", body });
  expect((await fetch(`${stack.url}/v1/planes/heartbeat`, { method: "POST", body, headers })).status).toBe(200);
  await new Promise((r) => setTimeout(r, 1_100)); // the gateway's isolate caches its plane list for a second
  return { recorded, close: () => server.close() };
}

describe("a .map through the gateway", () => {
  const inputs = Array.from({ length: 20 }, (_, n) => n + 1);
  const expected = inputs.map((x) => (x === 2 ? "the second input is refused" : x * 10));
  const mapped = async () => {
    const out: unknown[] = [];
    for await (const r of fn<[number], number>("twoGpus").map(inputs, { returnExceptions: true })) out.push(r instanceof Error ? r.message : r);
    return out;
  };

  it("sends the inputs to a plane in fewer requests than inputs, and matches answers out of order to their inputs", async () => {
    const recorder = await recorderPlane(true);
    try {
      expect(await mapped()).toEqual(expected);
      const batches = recorder.recorded.filter((r) => r.route === "/v1/plane/run-many");
      expect(recorder.recorded.reduce((n, r) => n + r.inputs, 0)).toBe(inputs.length);
      expect(batches.length).toBeGreaterThan(0);
      expect(recorder.recorded.length).toBeLessThan(inputs.length);
    } finally {
      recorder.close();
    }
  });

  it("sends the inputs one by one to a plane that answers run-many with 404", async () => {
    const recorder = await recorderPlane(false);
    try {
      expect(await mapped()).toEqual(expected);
      const lone = recorder.recorded.filter((r) => r.route === "/v1/plane/run");
      expect(lone.length).toBe(inputs.length);
      expect(recorder.recorded.filter((r) => r.route === "/v1/plane/run-many").length).toBeGreaterThan(0);
    } finally {
      recorder.close();
    }
  });
});

describe("a .map on a real plane", () => {
  it("runs each input once and gives every result in order", async () => {
    const ran = () => stack.planeOutput.filter((l) => l.includes("[plane.announcedNap ") && l.includes("running attempt")).length;
    const before = ran();
    const results: string[] = [];
    const inputs = Array.from({ length: 12 }, (_, n) => n);
    for await (const r of fn<[number], string>("announcedNap").map(inputs)) results.push(r);
    expect(results).toEqual(inputs.map((n) => `slept ${n}`));
    await expect.poll(ran).toBe(before + inputs.length); // a line can reach the plane's output just after its answer
  });
});
