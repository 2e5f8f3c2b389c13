/**
 * The plane's own container image (scripts/build-plane-image.mjs), run the
 * way deploy/ runs it: built from this checkout with no registry, started
 * with the host's Docker socket, /dev/shm and its state folder at the same
 * path, it registers with the gateway, runs a function in a container on the
 * host's engine, answers its probes, and drains on `docker stop` (SIGTERM).
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lookup, type CallRecord } from "../sdk/index.js";
import { authed, eventually } from "./helpers/gateway.js";
import { SECRET, startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/plane-app.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const TAG = `localhost/tandem-test/tandem-plane:${process.pid}`;
const NAME = `tandem-plane-image-test-${process.pid}`;

const docker = (...args: string[]) => execFileSync("docker", args, { encoding: "utf8" }).trim();

describe("the plane's container image", () => {
  let stack: TestStack;
  let state: string;
  let built: string;
  beforeAll(async () => {
    built = execFileSync(process.execPath, [join(ROOT, "scripts/build-plane-image.mjs"), "--tag", TAG], { encoding: "utf8" });
    stack = await startTestStack(APP, {}, { planes: 0 });
    state = await mkdtemp(join(tmpdir(), "tandem-plane-image-"));
  }, 120_000);
  afterAll(async () => {
    const planeId = /plane (pl-[0-9a-z]+) at/.exec(docker("logs", NAME))?.[1];
    docker("rm", "-f", NAME);
    if (planeId) {
      const left = docker("ps", "-aq", "--filter", `label=tandem.plane=${planeId}`).split("\n").filter(Boolean);
      if (left.length) docker("rm", "-f", ...left);
    }
    docker("rmi", "-f", TAG);
    await rm(state, { recursive: true, force: true }).catch(() => {});
    await stack?.dispose();
  });

  it("builds for the tag asked, runs a function in a container on the host's engine, and drains on docker stop", async () => {
    expect(built).toContain(`✓ built ${TAG}`);
    expect(built).toContain(`docker push ${TAG}`);
    docker(
      ...["run", "-d", "--name", NAME, "--network", "host"],
      ...["-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", "/dev/shm:/dev/shm", "-v", `${state}:${state}`, "-w", state],
      ...["-e", `TANDEM_PLANE_SECRET=${SECRET}`, TAG],
      ...["plane", "--gateway", stack.url, "--port", "0", "--gpus", "T4:1", "--drain-timeout", "60"],
    );
    const logs = () => execFileSync("docker", ["logs", NAME], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    await eventually(() => logs().includes("registered with the gateway"), 60_000);
    const planeId = /plane (pl-[0-9a-z]+) at/.exec(logs())![1]!;
    const url = /plane pl-[0-9a-z]+ at (http:\/\/\S+) \(/.exec(logs())![1]!;
    expect((await fetch(`${url}/v1/plane/status?probe=ready`)).status).toBe(200);

    const nap = lookup<[number], string>("plane", "announcedNap", { gateway: stack.url });
    expect(await lookup<[number], string>("plane", "slowPlane", { gateway: stack.url }).remote(10)).toMatch(/^slept 10 in ctr-/);
    expect(docker("ps", "-q", "--filter", `label=tandem.plane=${planeId}`)).not.toBe(""); // on the host's engine

    const call = await nap.spawn(3_000);
    await eventually(() => logs().includes("running attempt 1"), 30_000);
    docker("stop", "-t", "60", NAME); // SIGTERM, then waits for it to exit
    expect(docker("inspect", "--format", "{{.State.ExitCode}}", NAME)).toBe("0");
    expect(logs()).toContain(`plane ${planeId} drained; stopping`);
    expect(await call.get({ timeoutMs: 30_000 })).toBe("slept 3000");
    const record = (await (await fetch(`${stack.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
    expect(record).toMatchObject({ status: "succeeded", attempts: 1 });
  }, 180_000);
});
