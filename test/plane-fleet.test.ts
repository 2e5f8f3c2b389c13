/**
 * Planes as separate processes, the way `tandem plane` runs them: losing one
 * mid-load loses no spawned call, and the records count the runs lost with
 * it; a plane killed and started again answers for what it ran before; a
 * plane without a Docker engine says how to start one; the process runtime is
 * announced as unsandboxed; `tandem plane` says ✓ only once the gateway took
 * its heartbeat, and what to do when it refuses it or cannot be reached; it
 * serves its metrics on the listener `--metrics-port` asks for.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FunctionCall, PlaneUnavailableError, lookup, type CallRecord } from "../sdk/index.js";
import { CLI } from "./helpers/cli.js";
import { authed, eventually } from "./helpers/gateway.js";
import { SECRET, startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/plane-app.ts", import.meta.url).pathname;

interface PlaneProcess {
  child: ChildProcess;
  output: () => string;
  planeId: () => string | undefined;
  dir: string;
}

/** `tandem plane` in `dir` (a new folder by default; a plane's folder holds its id and what it ran); `env` undefined unsets. */
async function startPlaneProcess(gateway: string, args: string[] = [], env: Record<string, string | undefined> = {}, folder?: string): Promise<PlaneProcess> {
  const dir = folder ?? (await mkdtemp(join(tmpdir(), "tandem-plane-")));
  const child = spawn(process.execPath, [CLI, "plane", "--gateway", gateway, "--port", "0", ...args], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: "1", TANDEM_PLANE_SECRET: SECRET, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const plane: PlaneProcess = { child, dir, output: () => out, planeId: () => /plane (pl-[0-9a-z]+) at/.exec(out)?.[1] };
  await eventually(() => plane.planeId() !== undefined || child.exitCode !== null, 30_000);
  return plane;
}

async function stopPlaneProcess(plane: PlaneProcess): Promise<void> {
  if (plane.child.exitCode === null && plane.child.signalCode === null) {
    const exited = new Promise((r) => plane.child.once("exit", r));
    plane.child.kill("SIGKILL");
    await exited;
  }
  const id = plane.planeId();
  if (id) {
    const ids = execFileSync("docker", ["ps", "-aq", "--filter", `label=tandem.plane=${id}`])
      .toString()
      .split("\n")
      .filter(Boolean);
    if (ids.length) execFileSync("docker", ["rm", "-f", ...ids]);
  }
  await rm(plane.dir, { recursive: true, force: true });
}

describe("two planes, one killed mid-load", () => {
  let stack: TestStack;
  const planes: PlaneProcess[] = [];
  beforeAll(async () => {
    stack = await startTestStack(APP, {}, { planes: 0 });
    planes.push(await startPlaneProcess(stack.url, ["--gpus", "A100:2,T4:1"]));
    planes.push(await startPlaneProcess(stack.url, ["--gpus", "A100:2,T4:1"]));
    await eventually(async () => {
      const res = (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: { healthy: boolean }[] };
      return res.planes.filter((p) => p.healthy).length === 2;
    }, 20_000);
  });
  afterAll(async () => {
    for (const p of planes) await stopPlaneProcess(p).catch(() => {});
    await stack?.dispose();
  });

  it("loses no spawned call: calls on the dead plane finish on the other, their lost runs counted", async () => {
    const slow = lookup<[number], string>("plane", "slowPlane", { gateway: stack.url });
    const calls: FunctionCall<string>[] = [];
    for (let i = 0; i < 8; i++) calls.push(await slow.spawn(2_500));

    // Find the plane running them (its containers carry its id), and kill it hard.
    let victim: PlaneProcess | undefined;
    await eventually(() => {
      victim = planes.find(
        (p) =>
          execFileSync("docker", ["ps", "-q", "--filter", `label=tandem.plane=${p.planeId()}`])
            .toString()
            .trim() !== "",
      );
      return victim !== undefined;
    }, 20_000);
    victim!.child.kill("SIGKILL");

    const results = await Promise.all(calls.map((c) => c.get({ timeoutMs: 60_000 })));
    expect(results.every((r) => /^slept 2500 in ctr-/.test(r))).toBe(true);
    // A call the dead plane had may have run there: it ran again on the other plane as attempt 2, and its record says so.
    let moved = 0;
    for (const call of calls) {
      const record = (await (await fetch(`${stack.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
      const lost = stack.gatewayOutput.some((l) => l.includes(`attempt 1 of ${call.id} may have run on plane ${victim!.planeId()}`));
      expect(record).toMatchObject({ status: "succeeded", kind: "spawn", attempts: lost ? 2 : 1 });
      if (lost) moved++;
    }
    expect(moved).toBeGreaterThan(0);
    expect(stack.gatewayOutput.some((l) => /could not be reached for fc-/.test(l))).toBe(true);
  });
});

describe("a plane killed mid-call and started again on its folder", () => {
  it("answers that the run it had is lost: the call runs again as attempt 2, and its record says so", async () => {
    const stack = await startTestStack(APP, {}, { planes: 0 });
    let plane = await startPlaneProcess(stack.url, ["--gpus", "T4:1"]);
    const healthy = (id: string | undefined) => async () => {
      const res = (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: { planeId: string; url: string; healthy: boolean }[] };
      return res.planes.some((p) => p.planeId === id && p.healthy && p.url === /at (http:\/\/\S+) \(/.exec(plane.output())?.[1]);
    };
    try {
      await eventually(healthy(plane.planeId()), 20_000);
      const call = await lookup<[number], string>("plane", "announcedNap", { gateway: stack.url }).spawn(2_000);
      const ran = (out: string, attempt: number) => out.split("\n").some((l) => l.includes(call.id) && l.includes(`running attempt ${attempt}`));
      await eventually(() => ran(plane.output(), 1), 30_000);

      const exited = new Promise((r) => plane.child.once("exit", r));
      plane.child.kill("SIGKILL");
      await exited;
      const first = plane.output();
      plane = await startPlaneProcess(stack.url, ["--gpus", "T4:1"], {}, plane.dir); // the same id, and its journal

      expect(await call.get({ timeoutMs: 60_000 })).toBe("slept 2000");
      const record = (await (await fetch(`${stack.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
      expect(record).toMatchObject({ status: "succeeded", attempts: 2 });
      expect(ran(first, 1)).toBe(true);
      expect(ran(plane.output(), 2)).toBe(true);
      expect(ran(plane.output(), 1)).toBe(false); // attempt 1 was not run a second time
      expect(plane.output()).toContain(`${call.id} attempt 1 was sent again: lost (it ran on this plane before the plane restarted)`);
    } finally {
      await stopPlaneProcess(plane);
      await stack.dispose();
    }
  });
});

describe("a plane without a Docker engine", () => {
  it("starts, reports why it cannot run containers, and says how to start an engine", async () => {
    const stack = await startTestStack(APP, {}, { planes: 0 });
    const plane = await startPlaneProcess(stack.url, ["--gpus", "T4:1"], { DOCKER_HOST: "unix:///tmp/tandem-no-docker.sock" });
    try {
      expect(plane.output()).toContain("cannot start containers");
      expect(plane.output()).toContain("dockerd --bridge=none --iptables=false");
      expect(plane.output()).toContain("--runtime process");
      await eventually(async () => {
        const res = (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: { planeId: string; unavailable?: string }[] };
        return res.planes.some((p) => p.planeId === plane.planeId() && p.unavailable !== undefined);
      });
      const started = Date.now();
      const err = await lookup("plane", "quickT4", { gateway: stack.url })
        .remote()
        .catch((e) => e);
      expect(err).toBeInstanceOf(PlaneUnavailableError);
      expect(err.message).toContain(`plane ${plane.planeId()} cannot start containers: no Docker engine`);
      expect(Date.now() - started).toBeLessThan(1_500); // said at once, not after the call's 2 s timeout
    } finally {
      await stopPlaneProcess(plane);
      await stack.dispose();
    }
  });
});

describe("tandem plane and its gateway", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack(APP, {}, { planes: 0 });
  });
  afterAll(async () => {
    await stack?.dispose();
  });
  const exited = (plane: PlaneProcess) =>
    plane.child.exitCode !== null ? Promise.resolve(plane.child.exitCode) : new Promise<number | null>((r) => plane.child.once("exit", r));

  it("prints ✓ once the gateway has taken its first heartbeat", async () => {
    const plane = await startPlaneProcess(stack.url, ["--runtime", "process"]);
    try {
      await eventually(() => plane.output().includes("registered with the gateway"));
      expect(plane.output()).toMatch(
        new RegExp(`✓ plane ${plane.planeId()} at http://127\\.0\\.0\\.1:\\d+ \\(.*\\), registered with the gateway at ${stack.url}\n`),
      );
    } finally {
      await stopPlaneProcess(plane);
    }
  });

  it("serves its metrics on the --metrics-port listener it prints, and on its API port, with TANDEM_METRICS_TOKEN only", async () => {
    const token = "fleet-metrics-token-0123";
    const plane = await startPlaneProcess(stack.url, ["--runtime", "process", "--metrics-port", "0"], { TANDEM_METRICS_TOKEN: token });
    try {
      await eventually(() => /metrics at http:\/\/127\.0\.0\.1:\d+\/metrics/.test(plane.output()));
      const listener = /metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(plane.output())![1]!;
      const api = /plane pl-[0-9a-f]+ at (http:\/\/127\.0\.0\.1:\d+)/.exec(plane.output())![1]!;
      const auth = { headers: { authorization: `Bearer ${token}` } };
      for (const url of [listener, `${api}/metrics`]) {
        expect((await fetch(url)).status).toBe(401);
        const res = await fetch(url, auth);
        expect(res.status).toBe(200);
        expect(await res.text()).toMatch(
          new RegExp(`^tandem_plane_info\\{plane="${plane.planeId()}",region="local",runtime="process",sandboxed="false",simulated="false"\\} 1$`, "m"),
        );
      }
    } finally {
      await stopPlaneProcess(plane);
    }
  });

  it("refused for another secret: says so, how to give it the gateway's, and stops, without ✓", async () => {
    // Started in a folder of its own, as a newcomer does: it makes a secret there, which is not the gateway's.
    const plane = await startPlaneProcess(stack.url, ["--runtime", "process"], { TANDEM_PLANE_SECRET: undefined });
    try {
      expect(await exited(plane)).toBe(2);
      expect(plane.output()).toMatch(
        new RegExp(
          `error: the gateway at ${stack.url} refused plane pl-[0-9a-f]+: bad signature\\. This plane's secret is not the gateway's: it signs with the secret in \\.tandem/plane-secret\\. Give it the gateway's secret as TANDEM_PLANE_SECRET`,
        ),
      );
      expect(plane.output()).toContain("or run tandem plane from the gateway's folder");
      expect(plane.output()).not.toContain("✓");
    } finally {
      await stopPlaneProcess(plane);
    }
  });

  it("with its gateway down: says it cannot reach it, keeps trying, and prints ✓ once it answers", async () => {
    let plane: PlaneProcess | undefined;
    try {
      await stack.restartGateway(0, async () => {
        plane = await startPlaneProcess(stack.url, ["--runtime", "process"]);
        await eventually(() => plane!.output().includes("cannot reach the gateway"));
        expect(plane.output()).toMatch(
          new RegExp(`… plane pl-[0-9a-f]+ at .* cannot reach the gateway at ${stack.url}: connection refused \\(ECONNREFUSED\\); trying again every 3 s\n`),
        );
        expect(plane.output()).not.toContain("✓");
      });
      await eventually(() => plane!.output().includes("registered with the gateway"), 15_000);
      expect(plane!.child.exitCode).toBeNull();
    } finally {
      if (plane) await stopPlaneProcess(plane);
    }
  });
});

describe("the process runtime", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack(APP, { runtime: "process", gpus: "A100:2,T4:1" });
  });
  afterAll(async () => {
    await stack?.dispose();
  });

  it("runs plane functions as plain processes and says on start that they are not sandboxed", async () => {
    expect(stack.planeOutput.some((l) => l.includes("NOT sandboxed"))).toBe(true);
    const out = await lookup("plane", "whereAmI", { gateway: stack.url }).remote();
    expect(out.cuda).toMatch(/^[01]$/);
    expect(out.container).toMatch(/^ctr-/);
  });
});
