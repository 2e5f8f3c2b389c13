/**
 * A plane SIGKILLed in the middle of uploading a container's commit (a
 * `tandem plane` process, real Docker and workerd): the volume is at the
 * version before or the one after, never between, and a later commit through
 * another plane works. (A container killed mid-commit: test/plane-volumes.test.ts.)
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Volume, lookup } from "../sdk/index.js";
import { bytesOf } from "./fixtures/volume-bytes.js";
import { CLI } from "./helpers/cli.js";
import { ADMIN_TOKEN, eventually } from "./helpers/gateway.js";
import { SECRET, startTestStack, type TestStack } from "./helpers/stack.js";

let stack: TestStack;
let child: ChildProcess | undefined;
let planeDir: string;
let planeId: string | undefined;
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

beforeAll(async () => {
  stack = await startTestStack(new URL("./fixtures/volume-plane-app.ts", import.meta.url).pathname, {}, { planes: 0 });
  planeDir = await mkdtemp(join(tmpdir(), "tandem-plane-"));
}, 120_000);
afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  if (planeId) {
    const ids = execFileSync("docker", ["ps", "-aq", "--filter", `label=tandem.plane=${planeId}`])
      .toString()
      .split("\n")
      .filter(Boolean);
    if (ids.length) execFileSync("docker", ["rm", "-f", ...ids]);
  }
  await stack?.dispose();
  await rm(planeDir, { recursive: true, force: true });
});

it("a plane killed while it uploads a commit leaves the volume before or after it, and a later commit works", async () => {
  child = spawn(process.execPath, [CLI, "plane", "--gateway", stack.url, "--port", "0"], {
    cwd: planeDir,
    env: { ...process.env, NO_COLOR: "1", TANDEM_PLANE_SECRET: SECRET },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  await eventually(() => (planeId = /plane (pl-[0-9a-z]+) at/.exec(out)?.[1]) !== undefined, 30_000);
  await eventually(() => out.includes("✓"), 30_000);

  const putLarge = lookup<[string, number, number], { sha256: string; version: number }>("volplane", "putLarge", { gateway: stack.url, token: ADMIN_TOKEN });
  const call = putLarge.remote("pair/a.bin", 24, 9).catch((err: Error) => err);
  await eventually(() => out.includes("committing pair/a.bin"), 60_000);
  const exited = new Promise((r) => child!.once("exit", r));
  child.kill("SIGKILL");
  await exited;
  expect(out).not.toContain('committed volume "pv-large"'); // killed before its commit was published, as meant

  // Another plane takes over; the first one's call ends one way or another (failed, or run again there).
  await stack.addPlane();
  await call;
  const large = Volume.fromName("pv-large", { gateway: stack.url, token: ADMIN_TOKEN });
  const files = new Map<string, string>();
  for (const entry of await large.listdir("/", { recursive: true }).catch(() => [])) {
    if (entry.path.startsWith("pair/a.bin")) files.set(entry.path, sha256(await (await large.readFile(entry.path)).bytes()));
  }
  // Both files of the commit, whole, or neither.
  expect([0, 2]).toContain(files.size);
  if (files.size === 2) expect(files.get("pair/a.bin")).toBe(sha256(bytesOf(24, 9)));

  const again = await putLarge.remote("pair/b.bin", 1, 10);
  expect(again.sha256).toBe(sha256(bytesOf(1, 10)));
  expect((await large.info()).version).toBe(again.version);
  expect(sha256(await (await large.readFile("pair/b.bin")).bytes())).toBe(again.sha256);
}, 180_000);
