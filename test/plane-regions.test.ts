/**
 * Regions, with three real planes in two regions (two in eu-west, one in us-east) and real Docker: a function
 * restricted to a region runs only there, whatever the caller prefers, for calls, streams, maps, spawns, class
 * methods, scheduled runs and warm pools; an unrestricted one runs in the region nearest the caller (the
 * `Tandem-Region` header, else the gateway's `TANDEM_REGION_PREFERENCE`) and falls back to any other; a region
 * with no healthy plane fails naming the region.
 */
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FunctionCall, NoCapacityError, TandemError, lookup, type CallRecord } from "../sdk/index.js";
import { runCli } from "./helpers/cli.js";
import { ADMIN_TOKEN, authed, eventually } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/region-app.ts", import.meta.url).pathname;

describe("three planes in two regions", () => {
  let stack: TestStack;
  const planeRegion = new Map<string, string>();
  const fn = <R = string | undefined>(name: string, region?: string | string[]) =>
    lookup<unknown[], R>("regions", name, { gateway: stack.url, ...(region === undefined ? {} : { region }) });

  beforeAll(async () => {
    // Requests that name no region, and scheduled runs, prefer us-east.
    stack = await startTestStack(APP, {}, { planes: 0, bindings: { TANDEM_REGION_PREFERENCE: "*=us-east" } });
    for (const region of ["eu-west", "eu-west", "us-east"]) {
      const plane = await stack.addPlane({ region });
      planeRegion.set(plane.planeId, region);
    }
  }, 120_000);
  afterAll(async () => {
    await stack?.dispose();
  });

  it("lists a function's regions in tandem apps", async () => {
    const { stdout } = await runCli(["apps", "--gateway", stack.url], { env: { TANDEM_TOKEN: ADMIN_TOKEN } });
    expect(stdout).toMatch(/function\s+usOnly\s+plane, region us-east, timeout 20 s/);
    expect(stdout).toMatch(/function\s+anywhere\s+plane, timeout 20 s/);
  });

  it("lists each plane with the region it reported", async () => {
    const { planes } = (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: { planeId: string; region: string }[] };
    expect(Object.fromEntries(planes.map((p) => [p.planeId, p.region]))).toEqual(Object.fromEntries(planeRegion));
  });

  it("runs an unrestricted function in the region nearest the caller: the header, else the gateway's preference", async () => {
    expect(await fn("anywhere", "eu-west").remote()).toBe("eu-west");
    expect(await fn("anywhere", ["eu"]).remote()).toBe("eu-west"); // a prefix before a '-'
    expect(await fn("anywhere").remote()).toBe("us-east"); // TANDEM_REGION_PREFERENCE="*=us-east"
    expect(await fn("anywhere", "us-east").remote()).toBe("us-east");
  });

  it("falls back to another region for an unrestricted function when the nearest has no plane", async () => {
    expect(["eu-west", "us-east"]).toContain(await fn("anywhere", "ap-south").remote());
  });

  it("runs a restricted function only in its region, whatever the caller prefers", async () => {
    expect(await fn("euOnly", "us-east").remote()).toBe("eu-west");
    expect(await fn("usOnly", "eu-west").remote()).toBe("us-east");
    const chunks: unknown[] = [];
    for await (const chunk of fn<AsyncGenerator<string>>("euStream", "us-east").remoteGen()) chunks.push(chunk);
    expect(chunks).toEqual(["eu-west", "eu-west"]);
  });

  it("keeps map inputs, spawned calls and class methods in the function's region", async () => {
    const mapped: unknown[] = [];
    for await (const r of fn("euOnly", "us-east").map([1, 2, 3, 4, 5, 6])) mapped.push(r);
    expect(mapped).toEqual(Array(6).fill("eu-west"));
    const spawned = await fn("usOnly", "eu-west").spawn();
    expect(await spawned.get({ timeoutMs: 30_000 })).toBe("us-east");
    expect(await fn("EuModel.where", "us-east").remote({})).toBe("eu-west");
  });

  it("runs a scheduled run of a restricted function in its region, not the gateway's preferred one", async () => {
    const res = await fetch(`${stack.url}/v1/apps/regions/functions/nightlyEu/trigger`, authed({ method: "POST" }));
    expect(res.status).toBe(202);
    const { callId } = (await res.json()) as { callId: string };
    expect(await FunctionCall.fromId<string>(callId, { gateway: stack.url }).get({ timeoutMs: 30_000 })).toBe("eu-west");
  });

  it("keeps a warm pool on a plane in the function's region", async () => {
    const usPlane = [...planeRegion].find(([, r]) => r === "us-east")![0];
    const warmOn = () =>
      execFileSync("docker", [
        "ps",
        "--filter",
        "label=tandem.function=warmUs",
        "--filter",
        `label=tandem.app=regions`,
        "--format",
        '{{.Label "tandem.plane"}}',
      ])
        .toString()
        .split("\n")
        .filter(Boolean);
    await eventually(() => warmOn().length > 0, 30_000);
    expect(new Set(warmOn())).toEqual(new Set([usPlane]));
  });

  it("fails a call to a region with no healthy plane with no_capacity naming the region", async () => {
    const err = await fn("apOnly", "ap-south")
      .remote()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoCapacityError);
    expect((err as NoCapacityError).message).toMatch(
      /no capacity for CPU in region ap-south within 2 s for regions\.apOnly; no healthy plane is in region ap-south/,
    );
    expect((err as NoCapacityError).details).toMatchObject({ regions: ["ap-south"] });
  });

  it("gives the error of a call, a spawn and a stream that found no plane the id of the call's record", async () => {
    // Before, err.callId was undefined though the call was recorded.
    const record = async (id: string) => (await (await fetch(`${stack.url}/v1/calls/${id}`, authed())).json()) as CallRecord;
    const called = (await fn("apOnly", "ap-south")
      .remote()
      .catch((e: unknown) => e)) as NoCapacityError;
    expect(called).toBeInstanceOf(NoCapacityError);
    expect(called.callId).toMatch(/^fc-/);
    await eventually(async () => (await record(called.callId!)).status === "failed", 5_000); // recorded after the answer
    expect(await record(called.callId!)).toMatchObject({ callId: called.callId, error: { code: "no_capacity", details: { callId: called.callId } } });
    const spawned = await fn("apOnly", "ap-south").spawn();
    const got = (await spawned.get().catch((e: unknown) => e)) as NoCapacityError;
    expect(got).toBeInstanceOf(NoCapacityError);
    expect(got.callId).toBe(spawned.id);
    expect((await record(spawned.id)).error?.details).toMatchObject({ callId: spawned.id });
    const streamed = (await (async () => {
      for await (const _ of fn<AsyncGenerator<string>>("apStream", "ap-south").remoteGen());
    })().catch((e: unknown) => e)) as TandemError;
    expect(streamed).toBeInstanceOf(TandemError); // a stream waits for a plane within its timeout: it times out
    expect(streamed.callId).toMatch(/^fc-/);
  });

  it("names a plane in the region that is draining when a call finds no capacity there", async () => {
    // Before, a region whose only plane was stopping read as empty: "no healthy plane is in region ap-south".
    const plane = await stack.addPlane({ region: "ap-south" });
    await plane.drain(5_000); // it has no input: it tells the gateway at once, and goes on reporting, draining
    await new Promise((r) => setTimeout(r, 1_100)); // an isolate's copy of the plane list is a second old at most
    const err = await fn("apOnly", "ap-south")
      .remote()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoCapacityError);
    expect((err as NoCapacityError).message).toMatch(
      new RegExp(
        `no healthy plane is in region ap-south \\(planes elsewhere: .*\\); draining, so sent no new input: ${plane.planeId} \\(ap-south; no GPUs\\)$`,
      ),
    );
    // Once it has stopped, the gateway still knows it for a while: named as gone (before: the region read as empty).
    await plane.close();
    await new Promise((r) => setTimeout(r, 1_100));
    const after = await fn("apOnly", "ap-south")
      .remote()
      .catch((e: unknown) => e);
    expect((after as NoCapacityError).message).toMatch(
      new RegExp(`no healthy plane is in region ap-south \\(planes elsewhere: .*\\); gone: ${plane.planeId} \\(ap-south; stopped\\)$`),
    );
  });

  it("refuses a malformed Tandem-Region header with a 400 naming it", async () => {
    const res = await fetch(
      `${stack.url}/v1/apps/regions/functions/anywhere/call`,
      authed({ method: "POST", headers: { "content-type": "application/json", "tandem-region": "EU West" }, body: JSON.stringify({ args: [] }) }),
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/header Tandem-Region: "EU West" is not a region name/);
  });
});
