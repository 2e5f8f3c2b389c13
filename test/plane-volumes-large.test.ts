/**
 * The end-to-end check at full size (docs/volumes.md), real Docker and
 * workerd: a plane function writes a 200 MiB file into a volume and commits; a
 * cold container of another function reads it with the same sha256; an edge
 * function lists it and reads its first bytes; `tandem volume get` fetches it.
 * About 30 s on a 2-core machine; `test/plane-volumes.test.ts` is the quick one.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { lookup } from "../sdk/index.js";
import { bytesOf } from "./fixtures/volume-bytes.js";
import { runCli } from "./helpers/cli.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

const MIB = 200;
let stack: TestStack;
let dir: string;
const fn = <A extends unknown[], R>(name: string) => lookup<A, R>("volplane", name, { gateway: stack.url });

beforeAll(async () => {
  stack = await startTestStack(new URL("./fixtures/volume-plane-app.ts", import.meta.url).pathname);
  dir = await mkdtemp(join(tmpdir(), "tandem-volumes-large-"));
}, 120_000);
afterAll(async () => {
  await stack?.dispose();
  await rm(dir, { recursive: true, force: true });
});

it(`a ${MIB} MiB file written in one container is read by another, by an edge function and by tandem volume get`, async () => {
  const expected = createHash("sha256").update(bytesOf(MIB, 200)).digest("hex");
  let began = performance.now();
  const written = await fn<[string, number, number], { sha256: string; version: number }>("putLarge").remote("weights/model.bin", MIB, 200);
  const writeMs = performance.now() - began;
  expect(written.sha256).toBe(expected);

  began = performance.now();
  const read = await fn<[string], { sha256: string; size: number }>("sumLarge").remote("weights/model.bin");
  const readMs = performance.now() - began;
  expect(read).toEqual({ sha256: expected, size: MIB * 1024 * 1024 });
  expect(stack.planeOutput.some((l) => /mounts "pv-large" v\d+ at \/big \(read-only\): \d+ file\(s\), 0 block\(s\) downloaded/.test(l))).toBe(true);

  const edge = await fn<[string, number, string], { paths: string[]; size: number; first: number[] }>("peek").remote("weights/model.bin", 8, "pv-large");
  expect(edge.paths).toContain("weights/model.bin");
  expect(edge.size).toBe(MIB * 1024 * 1024);
  expect(edge.first).toEqual([...bytesOf(1, 200).subarray(0, 8)]);

  const out = join(dir, "model.bin");
  const get = await runCli(["volume", "get", "pv-large", "/weights/model.bin", out, "--gateway", stack.url]);
  expect(get.code, get.stderr).toBe(0);
  expect(
    createHash("sha256")
      .update(await readFile(out))
      .digest("hex"),
  ).toBe(expected);
  console.log(`${MIB} MiB: written and committed in a cold container in ${Math.round(writeMs)} ms, read in another in ${Math.round(readMs)} ms`);
}, 180_000);
