/**
 * A plane of the process runtime (development only, no Docker) and a function that mounts a volume: refused, saying
 * why, before the volume is made or fetched. Real workerd for the gateway, a real plane; all on loopback.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { lookup } from "../sdk/index.js";
import { authed } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack(new URL("./fixtures/volume-plane-app.ts", import.meta.url).pathname, { runtime: "process" });
}, 120_000);

afterAll(async () => {
  await stack?.dispose();
});

it("refuses a function that mounts a volume before the volume is made or fetched", async () => {
  const scribble = lookup<[string, string], string>("volplane", "scribble", { gateway: stack.url });
  await expect(scribble.remote("/data/a.txt", "hi")).rejects.toThrow("volume mounts (/data) need the docker runtime: a plain process has no mounts of its own");
  // Before: the plane made the volume (createIfMissing) and mounted it, then the driver refused the container.
  expect(stack.planeOutput.filter((line) => /mounts "|downloaded/.test(line))).toEqual([]);
  const volumes = (await (await fetch(`${stack.url}/v1/volumes`, authed())).json()) as { volumes: { name: string }[] };
  expect(volumes.volumes).toEqual([]);
});
