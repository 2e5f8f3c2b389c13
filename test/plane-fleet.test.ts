/**
 * Planes as separate processes, the way `tandem plane` runs them: a burst of
 * GPU calls spreads over the planes' free GPUs; losing one mid-load loses no spawned call, and the records count the runs lost with
 * it; a plane killed and started again answers for what it ran before; a
 * plane without a Docker engine says how to start one; the process runtime is
 * announced as unsandboxed, and `tandem planes` lists its plane; `tandem plane` says ✓ only once the gateway took
 * its heartbeat, and what to do when it refuses it or cannot be reached; it
 * serves its metrics on the listener `--metrics-port` asks for; it gives the
 * gateway an IPv6 --host in brackets, and warns of a --host that names no machine; a
 * plane told to stop (SIGTERM) drains: what it runs ends, new calls go to
 * another plane, and its readiness probe says so meanwhile.
 */
import { execFileSync } from "node:child_process";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { FunctionCall, PlaneUnavailableError, lookup, type CallRecord, type TandemError } from "../sdk/index.js";
import { PLANE_DEFAULTS } from "../sdk/defaults.js";
import type { PlaneInfo, UsageAnswer } from "../sdk/protocol.js";
import { runCli } from "./helpers/cli.js";
import { parsePrometheus, sampleValue } from "./helpers/prometheus.js";
import { authed, eventually } from "./helpers/gateway.js";
import { planeExit, removeContainersOf, startPlaneProcess, stopPlaneProcess, type PlaneProcess } from "./helpers/plane-process.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/plane-app.ts", import.meta.url).pathname;

/**
 * A gateway with no plane of its own and two `tandem plane` processes, one for each inventory, for the describe block
 * it is called in: started before its tests (both healthy), stopped after them.
 */
function twoPlanes(gpus: [string, string]): { stack: () => TestStack; planes: PlaneProcess[] } {
  let stack: TestStack | undefined;
  const planes: PlaneProcess[] = [];
  beforeAll(async () => {
    stack = await startTestStack(APP, {}, { planes: 0 });
    for (const inventory of gpus) planes.push(await startPlaneProcess(stack.url, ["--gpus", inventory]));
    await eventually(async () => {
      const res = (await (await fetch(`${stack!.url}/v1/planes`, authed())).json()) as { planes: { healthy: boolean }[] };
      return res.planes.filter((p) => p.healthy).length === 2;
    }, 20_000);
  });
  afterAll(async () => {
    for (const p of planes) await stopPlaneProcess(p).catch(() => {});
    await stack?.dispose();
  });
  return { stack: () => stack!, planes };
}

describe("a burst of GPU calls over two planes", () => {
  const { stack: started, planes } = twoPlanes(["T4:2", "T4:1"]);
  let stack: TestStack;
  beforeAll(async () => {
    stack = started();
    await new Promise((r) => setTimeout(r, 1_100)); // past the gateway's second-long cache of the list
  });

  it("spreads over the planes' free GPUs, where it queued on the plane with the most free at its last heartbeat", async () => {
    const t4 = lookup<[number], string>("plane", "queuedT4", { gateway: stack.url });
    const containers = await Promise.all([0, 1, 2].map(() => t4.remote(2_000)));
    const ranOn = (plane: PlaneProcess) => containers.filter((id) => plane.output().includes(id)).length;
    // Before: all three went to the plane with two T4s free, the third to wait there for one while the other's sat free.
    expect([ranOn(planes[0]!), ranOn(planes[1]!)]).toEqual([2, 1]);
  });

  it("prices a queued burst on the usage page by its calls' time in their containers, not their wait for one", async () => {
    const capped = lookup<[number], string>("plane", "cappedTwo", { gateway: stack.url });
    await Promise.all(Array.from({ length: 6 }, () => capped.remote(1_500)));
    // The usage page's run time (what it prices) is the calls' time in their containers, 6 × 1.5 s, not their waits
    // for one as well (two containers a plane, so a third call on one waits 1.5 s: 12 s or more from start to end).
    const runSeconds = async () => {
      const page = await (await fetch(`${stack.url}/_tandem/usage`, authed())).text();
      const chart =
        /<figcaption>Run time, by function <small>\(seconds; times in UTC\)<\/small><\/figcaption>\s*<div data-chart[^>]*>\s*<script type="application\/json">(.*?)<\/script>/s.exec(
          page,
        );
      const { series } = JSON.parse(chart![1]!.replace(/\\u003c/g, "<")) as { series: { label: string; values: number[] }[] };
      return series.find((s) => s.label === "plane.cappedTwo")?.values.reduce((a, b) => a + b, 0) ?? 0;
    };
    await expect.poll(runSeconds, { timeout: 5_000, interval: 200 }).toBeGreaterThanOrEqual(9); // all six recorded (in batches)
    expect(await runSeconds()).toBeLessThan(11);
  });
});

describe("two planes, one killed mid-load", () => {
  const { stack: started, planes } = twoPlanes(["A100:2,T4:1", "A100:2,T4:1"]);
  let stack: TestStack;
  beforeAll(() => {
    stack = started();
  });

  it("sends a function's next calls to the plane whose container of it is warm, not to the roomier cold one", async () => {
    const slow = lookup<[number], string>("plane", "slowPlane", { gateway: stack.url });
    const containerOf = (answer: string) => answer.split(" in ")[1];
    const first = containerOf(await slow.remote(1));
    // Once a heartbeat says so (and the gateway's second-long cache of the list has passed), that plane has it idle.
    await eventually(async () => {
      const res = (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: PlaneInfo[] };
      return res.planes.some((p) => p.warm?.some((w) => w.function === "slowPlane" && w.idle > 0));
    }, 20_000);
    await new Promise((r) => setTimeout(r, 1_100));
    // The warm container holds its CPU, so the other plane reports more free: before, the next call went there, cold.
    for (let i = 0; i < 4; i++) expect(containerOf(await slow.remote(1))).toBe(first);
  });

  it("loses no spawned call: calls on the dead plane finish on the other, their lost runs counted", async () => {
    const slow = lookup<[number], string>("plane", "slowPlane", { gateway: stack.url });
    const calls: FunctionCall<string>[] = [];
    for (let i = 0; i < 8; i++) calls.push(await slow.spawn(2_500));

    // Once some of them run, find the plane running the most containers (they carry its id; the earlier test's warm
    // one takes the first call there), and kill it hard. A plane picked by its idle container alone, before any call
    // reached it, would lose nothing.
    const record = async (call: FunctionCall<string>) => (await (await fetch(`${stack.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
    await eventually(async () => (await Promise.all(calls.map(record))).some((r) => r.status === "running"), 20_000);
    const containersOf = (p: PlaneProcess) =>
      execFileSync("docker", ["ps", "-q", "--filter", `label=tandem.plane=${p.planeId()}`])
        .toString()
        .split("\n")
        .filter(Boolean).length;
    const victim = planes.map((p) => ({ p, n: containersOf(p) })).sort((a, b) => b.n - a.n)[0]!.p;
    victim.child.kill("SIGKILL");
    // A plane killed so leaves its containers to its next start on its folder, which this test never makes.
    onTestFinished(() => removeContainersOf(victim.planeId()!));

    const results = await Promise.all(calls.map((c) => c.get({ timeoutMs: 60_000 })));
    expect(results.every((r) => /^slept 2500 in ctr-/.test(r))).toBe(true);
    // A call the dead plane had may have run there: it ran again on the other plane as attempt 2, and its record says so.
    let moved = 0;
    for (const call of calls) {
      const lost = stack.gatewayOutput.some((l) => l.includes(`attempt 1 of ${call.id} may have run on plane ${victim.planeId()}`));
      expect(await record(call)).toMatchObject({ status: "succeeded", kind: "spawn", attempts: lost ? 2 : 1 });
      if (lost) moved++;
    }
    expect(moved, stack.gatewayOutput.filter((l) => /plane|fc-/.test(l)).join("\n")).toBeGreaterThan(0);
    expect(stack.gatewayOutput.some((l) => /could not be reached for fc-/.test(l))).toBe(true);
  });
});

describe("two planes, a class kept warm on one", () => {
  let stack: TestStack;
  const planes: PlaneProcess[] = [];
  beforeAll(async () => {
    stack = await startTestStack(new URL("./fixtures/class-app.ts", import.meta.url).pathname, {}, { planes: 0 });
    planes.push(await startPlaneProcess(stack.url, []));
    planes.push(await startPlaneProcess(stack.url, []));
  });
  afterAll(async () => {
    for (const p of planes) await stopPlaneProcess(p).catch(() => {});
    await stack?.dispose();
  });

  it("sends each of its methods' calls to the plane whose container of the class is warm, whichever method it was started for", async () => {
    // Warm has minContainers 1: the gateway has one plane keep it (started for its first method, ping), heartbeats say so.
    await eventually(async () => {
      const res = (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: PlaneInfo[] };
      return res.planes.filter((p) => p.healthy).length === 2 && res.planes.some((p) => p.warm?.some((w) => w.idle > 0));
    }, 30_000);
    await new Promise((r) => setTimeout(r, 1_100)); // the gateway's second-long cache of the list
    // Each container of Warm prints "warm enter" once, as it starts.
    const started = () => planes.flatMap((p) => p.output().split("\n")).filter((l) => l.endsWith("] warm enter")).length;
    // The pool settles once both planes report (one that held it before the other registered may hand it over): wait
    // until no container of the class starts for two heartbeats running.
    for (let last = -1, steady = 0, round = 0; steady < 2 && round < 10; round++) {
      await new Promise((r) => setTimeout(r, PLANE_DEFAULTS.heartbeatMs));
      const now = started();
      steady = now === last ? steady + 1 : 0;
      last = now;
    }
    const before = started();
    const pong = lookup<[Record<string, unknown>], string>("classes", "Warm.pong", { gateway: stack.url });
    // The warm container holds its CPU, so the other plane reports more free: before, pong went there and started one.
    for (let i = 0; i < 4; i++) await pong.remote({});
    expect(started()).toBe(before);
    const warm = ((await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: PlaneInfo[] }).planes.flatMap((p) => p.warm ?? []);
    // By the class's name, not the method it was started for (a plane that held the pool before the other registered
    // may still have its container).
    expect([...new Set(warm.map((w) => w.function))]).toEqual(["Warm"]);
  });
});

describe("a plane told to stop (SIGTERM)", () => {
  it("drains: its calls in flight finish there once, new calls go to the other plane, its readiness probe fails meanwhile, it exits 0", async () => {
    const stack = await startTestStack(APP, {}, { planes: 0 });
    const draining = await startPlaneProcess(stack.url, ["--gpus", "T4:1"]);
    let other: PlaneProcess | undefined;
    try {
      await eventually(async () => {
        const res = (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: { planeId: string; healthy: boolean }[] };
        return res.planes.some((p) => p.planeId === draining.planeId() && p.healthy);
      }, 20_000);
      const probe = async (kind: string) => {
        const res = await fetch(`${draining.url()}/v1/plane/status?probe=${kind}`);
        return { status: res.status, body: (await res.json()) as { state: string; inFlight: number } };
      };
      expect(await probe("ready")).toMatchObject({ status: 200, body: { state: "ready" } });
      expect((await fetch(`${draining.url()}/v1/plane/status?probe=soon`)).status).toBe(400);
      expect((await fetch(`${draining.url()}/v1/plane/status`)).status).toBe(401); // the full status stays signed

      const nap = lookup<[number], string>("plane", "announcedNap", { gateway: stack.url });
      // Long enough to outlast the second plane's start on a loaded machine, so both are still running when it drains.
      const running = [await nap.spawn(15_000), await nap.spawn(15_000)];
      const ran = (out: string, id: string) => out.split("\n").filter((l) => l.includes(id) && l.includes("running attempt")).length;
      await eventually(() => running.every((c) => ran(draining.output(), c.id) === 1), 30_000);
      other = await startPlaneProcess(stack.url, ["--gpus", "T4:1"]);

      draining.child.kill("SIGTERM");
      await eventually(() => draining.output().includes("takes no new input"), 5_000);
      expect(await probe("ready")).toMatchObject({ status: 503, body: { state: "draining", inFlight: 2 } });
      expect(await probe("live")).toMatchObject({ status: 200, body: { state: "draining" } });
      // The gateway hears it with the heartbeat the plane sends as it starts draining (under load a moment after the
      // line above): the plane is listed, not healthy.
      const listed = async () =>
        (
          (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: { planeId: string; healthy: boolean; draining?: boolean }[] }
        ).planes.find((p) => p.planeId === draining.planeId());
      await expect.poll(listed, { timeout: 5_000, interval: 100 }).toMatchObject({ healthy: false, draining: true });
      // Its usage is still read while it drains (before: only healthy planes were asked, and its rows went).
      const usage = async () => (await (await fetch(`${stack.url}/v1/usage`, authed())).json()) as UsageAnswer;
      const whileDraining = await usage();
      expect(whileDraining.rows.some((r) => r.plane === draining.planeId())).toBe(true);
      expect(whileDraining.notCounted).toEqual([]);

      const later = await nap.spawn(100);
      expect(await later.get({ timeoutMs: 60_000 })).toBe("slept 100");
      expect(ran(draining.output(), later.id)).toBe(0);
      expect(ran(other.output(), later.id)).toBe(1);

      expect(await Promise.all(running.map((c) => c.get({ timeoutMs: 60_000 })))).toEqual(["slept 15000", "slept 15000"]);
      for (const call of running) {
        const record = (await (await fetch(`${stack.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
        expect(record).toMatchObject({ status: "succeeded", attempts: 1 });
        expect(ran(other.output(), call.id)).toBe(0);
      }
      expect(await planeExit(draining)).toBe(0);
      expect(draining.output()).toContain(`plane ${draining.planeId()} drained; stopping`);
      // Once it stopped, its ledger is out of reach: the answer says which plane it lacks (before: its rows went, and
      // the total fell, without a word), as tandem usage does.
      await expect
        .poll(async () => (await usage()).notCounted, { timeout: 10_000, interval: 200 })
        .toEqual([{ planeId: draining.planeId(), region: expect.any(String), why: "stopped" }]);
      const printed = await runCli(["usage", "--gateway", stack.url]);
      expect(printed.stdout).toMatch(
        new RegExp(`\\nnot counted: plane ${draining.planeId()} \\([\\w-]+\\), stopped: its usage stays in its own ledger, counted again once it runs\\n$`),
      );
      expect(stack.gatewayOutput.some((l) => l.includes(`plane ${draining.planeId()} is draining`))).toBe(true);
    } finally {
      await stopPlaneProcess(draining);
      if (other) await stopPlaneProcess(other);
      await stack.dispose();
    }
  }, 120_000);
});

describe("a plane told to stop twice", () => {
  it("ends its drain at once on the second signal, yet stops its containers and tells the gateway it stopped, exiting 130", async () => {
    const stack = await startTestStack(APP, {}, { planes: 0 });
    const plane = await startPlaneProcess(stack.url, ["--gpus", "T4:1", "--drain-timeout", "60"]);
    try {
      const nap = lookup<[number], string>("plane", "announcedNap", { gateway: stack.url });
      const call = await nap.spawn(30_000);
      await eventually(() => plane.output().includes(call.id) && plane.output().includes("running attempt"), 30_000);
      plane.child.kill("SIGTERM");
      await eventually(() => plane.output().includes("takes no new input"), 5_000);
      plane.child.kill("SIGINT");
      // Before, the second signal quit at once: its containers left behind, the gateway never told.
      expect(await planeExit(plane)).toBe(130);
      expect(plane.output()).toContain("stopping now: the containers of the inputs still running stop");
      expect(
        execFileSync("docker", ["ps", "-aq", "--filter", `label=tandem.plane=${plane.planeId()}`])
          .toString()
          .trim(),
      ).toBe("");
      const listed = (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: PlaneInfo[] };
      expect(listed.planes.find((p) => p.planeId === plane.planeId())).toMatchObject({ stopped: true });
    } finally {
      await stopPlaneProcess(plane);
      await stack.dispose();
    }
  }, 120_000);
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

      const exited = planeExit(plane);
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

  it("stopped cleanly (SIGTERM, drained): is listed stopped at once, its containers none and its GPUs free, and the gateway says so", async () => {
    const plane = await startPlaneProcess(stack.url, ["--runtime", "process", "--gpus", "A100:2"]);
    try {
      const id = plane.planeId()!;
      const listed = async () =>
        ((await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: PlaneInfo[] }).planes.find((p) => p.planeId === id);
      await eventually(async () => (await listed())?.healthy === true, 20_000);
      const nap = lookup<[number], string>("plane", "announcedNap", { gateway: stack.url });
      const running = [await nap.spawn(3_000), await nap.spawn(3_000), await nap.spawn(3_000)];
      await eventually(async () => (await listed())?.warm?.some((w) => w.busy === 3) === true, 20_000);

      plane.child.kill("SIGTERM");
      expect(await planeExit(plane)).toBe(0);
      expect(plane.output()).toContain(`plane ${id} drained; stopping`);
      expect(await Promise.all(running.map((c) => c.get({ timeoutMs: 30_000 })))).toEqual(["slept 3000", "slept 3000", "slept 3000"]);
      // Its last heartbeat said it stopped: listed so at once, not as it last ran (3 busy) until it went stale.
      expect(await listed()).toMatchObject({ stopped: true, healthy: false, gpus: { A100: { total: 2, free: 2 } } });
      expect((await listed())?.warm).toBeUndefined();
      const { stdout } = await runCli(["planes", "--gateway", stack.url]);
      const row = stdout.split("\n").find((line) => line.startsWith(id))!;
      expect(row.split(/\s{2,}/)).toEqual([
        id,
        "local",
        "stopped",
        expect.stringMatching(/^\d{4}-\d\d-\d\d \d\d:\d\d \(\d+s ago\)$/),
        "A100 2 free 0 used (simulated)",
        "none",
        plane.url(),
      ]);
      expect(stack.gatewayOutput.some((l) => l.includes(`plane ${id} stopped: it runs nothing and is sent nothing`))).toBe(true);
    } finally {
      await stopPlaneProcess(plane);
    }
  }, 60_000);

  it("with a second plane on a copy of its folder (one id): the one started later holds the id, the other is refused and says why, once", async () => {
    const first = await startPlaneProcess(stack.url, ["--runtime", "process", "--region", "eu-west"]);
    let second: PlaneProcess | undefined;
    try {
      await eventually(() => first.output().includes("registered with the gateway"));
      const copy = await mkdtemp(join(tmpdir(), "tandem-plane-copy-"));
      await cp(join(first.dir, ".tandem", "plane"), join(copy, ".tandem", "plane"), { recursive: true });
      await rm(join(copy, ".tandem", "plane", "plane.pid")); // as on another machine, where no process holds the folder
      second = await startPlaneProcess(stack.url, ["--runtime", "process", "--region", "us-east"], {}, copy);
      expect(second.planeId()).toBe(first.planeId());
      await eventually(() => first.output().includes("is held by another plane, started later"), 15_000);
      await new Promise((r) => setTimeout(r, 1_100)); // an isolate's copy of the plane list is a second old at most

      // Over three heartbeats of each, the gateway lists the id at the second plane's address only: before, the two
      // took turns, and a call for an eu-west plane could reach the us-east one.
      const seen = new Set<string>();
      for (let i = 0; i < 14; i++) {
        const res = (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: PlaneInfo[] };
        for (const p of res.planes) if (p.planeId === first.planeId()) seen.add(`${p.region} ${p.url}`);
        await new Promise((r) => setTimeout(r, 700));
      }
      expect([...seen]).toEqual([`us-east ${second.url()}`]);
      expect(first.output().split("is held by another plane").length - 1).toBe(1); // said once, not at every heartbeat
      expect(first.output()).toContain("Give each plane a folder of its own");
      // The gateway logs it once, not at each of the refused plane's heartbeats.
      expect(stack.gatewayOutput.filter((l) => l.includes(`refused the heartbeat of plane ${first.planeId()}`))).toHaveLength(1);
      // The second's first heartbeat read as a restart of the same plane elsewhere, not as a refusal of the first.
      expect(stack.gatewayOutput.join("\n")).toContain(
        `plane ${first.planeId()} started again at ${second.url()}, region us-east; it was at ${first.url()}, region eu-west`,
      );
    } finally {
      if (second) await stopPlaneProcess(second);
      await stopPlaneProcess(first);
    }
  });

  it("echoes its containers' control characters as escapes, as tandem serve and tandem logs print them", async () => {
    const plane = await startPlaneProcess(stack.url, ["--runtime", "process"]);
    try {
      await eventually(() => plane.output().includes("registered with the gateway"));
      const printed = "\x1b[31mred\x1b[0m \x1b]0;title\x07 plane\rechoed";
      await lookup<[string], string>("plane", "sayPlane", { gateway: stack.url }).remote(printed);
      await eventually(() => plane.output().includes("plane says \\x1b[31mred\\x1b[0m \\x1b]0;title\\x07 plane\\rechoed\n"));
      expect(plane.output()).not.toContain("\x1b[31mred");
      expect(plane.output()).not.toContain("plane\rechoed");
    } finally {
      await stopPlaneProcess(plane);
    }
  });

  it("on an IPv6 --host: gives the gateway its address in brackets, and runs the calls the gateway sends there", async () => {
    const plane = await startPlaneProcess(stack.url, ["--runtime", "process", "--host", "::1"]);
    try {
      await eventually(() => plane.output().includes("registered with the gateway") || plane.child.exitCode !== null);
      expect(plane.output()).toMatch(new RegExp(`✓ plane ${plane.planeId()} at http://\\[::1\\]:\\d+ \\(.*\\), registered with the gateway`));
      expect(await lookup<[string], string>("plane", "firstWordPlane", { gateway: stack.url }).remote("over ipv6")).toBe("over");
    } finally {
      await stopPlaneProcess(plane);
    }
  });

  it("on --host 0.0.0.0: warns at once that the gateway is given an address that names no machine, whether or not it answers", async () => {
    const warning =
      /⚠ --host 0\.0\.0\.0 listens on every address, and the gateway is told to reach this plane at http:\/\/0\.0\.0\.0:\d+, which names no machine: only a gateway on this machine can\. Give --host the address the gateway reaches this machine at\n/;
    // A gateway that cannot be reached (before, the warning waited for the first heartbeat it took).
    for (const gateway of [stack.url, "http://127.0.0.1:9"]) {
      const plane = await startPlaneProcess(gateway, ["--runtime", "process", "--host", "0.0.0.0"]);
      try {
        await eventually(() => plane.output().includes("names no machine") || plane.child.exitCode !== null);
        expect(plane.output()).toMatch(warning);
      } finally {
        await stopPlaneProcess(plane);
      }
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
      expect(await planeExit(plane)).toBe(2);
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

  it("with its gateway down: says it cannot reach it (in its metrics too), keeps trying, and prints ✓ once it answers", async () => {
    let plane: PlaneProcess | undefined;
    const token = "fleet-metrics-token-0456";
    const reachable = async () => {
      const api = /plane pl-[0-9a-f]+ at (http:\/\/127\.0\.0\.1:\d+)/.exec(plane!.output())![1]!;
      const scraped = await fetch(`${api}/metrics`, { headers: { authorization: `Bearer ${token}` } });
      return sampleValue(parsePrometheus(await scraped.text()), "tandem_plane_gateway_reachable");
    };
    try {
      await stack.restartGateway(0, async () => {
        plane = await startPlaneProcess(stack.url, ["--runtime", "process"], { TANDEM_METRICS_TOKEN: token });
        await eventually(() => plane!.output().includes("cannot reach the gateway"));
        expect(plane.output()).toMatch(
          new RegExp(`… plane pl-[0-9a-f]+ at .* cannot reach the gateway at ${stack.url}: connection refused \\(ECONNREFUSED\\); trying again every 3 s\n`),
        );
        expect(plane.output()).not.toContain("✓");
        expect(await reachable()).toBe(0); // before: no series said so, only this line
      });
      await eventually(() => plane!.output().includes("registered with the gateway"), 15_000);
      await expect.poll(reachable, { timeout: 10_000 }).toBe(1);
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

  it("is listed by tandem planes: its region, health, GPUs free and used, containers and URL; --json as the gateway answers", async () => {
    const [plane] = stack.planes;
    await lookup("plane", "whereAmI", { gateway: stack.url }).remote(); // its container then waits, warm
    let listed = { code: -1, stdout: "", stderr: "" };
    await eventually(async () => {
      listed = await runCli(["planes", "--gateway", stack.url]);
      return /1 idle/.test(listed.stdout);
    }, 15_000);
    expect(listed.code).toBe(0);
    const [header, row, ...rest] = listed.stdout.trimEnd().split("\n");
    expect(header!.split(/\s{2,}/)).toEqual(["plane", "region", "health", "since", "GPUs", "containers", "url"]);
    expect(rest).toEqual([]);
    expect(row!.split(/\s{2,}/)).toEqual([
      plane!.planeId,
      "test",
      "healthy",
      expect.stringMatching(/^\d{4}-\d\d-\d\d \d\d:\d\d \(up \d+[smh]/),
      "A100 1 free 1 used, T4 1 free 0 used (simulated)", // the waiting container keeps its GPU
      "0 busy, 1 idle",
      plane!.url,
    ]);
    const json = await runCli(["planes", "--json", "--gateway", stack.url]);
    expect((JSON.parse(json.stdout) as PlaneInfo[]).map((p) => [p.planeId, p.healthy, p.gpus.T4])).toEqual([[plane!.planeId, true, { total: 1, free: 1 }]]);
    // The plane list is an admin's: a deploy token is told what it lacks, and the command exits 2.
    const made = await fetch(`${stack.url}/v1/tokens`, authed({ method: "POST", body: JSON.stringify({ scope: "deploy" }) }));
    const { token } = (await made.json()) as { token: string };
    const refused = await runCli(["planes", "--gateway", stack.url, "--token", token]);
    expect([refused.code, refused.stdout]).toEqual([2, ""]);
    expect(refused.stderr).toMatch(/^error: token tk-\w+ \("token \w+"\) has scope "deploy"; GET \/v1\/planes needs "admin"/);
  });
});

describe("the only plane of a region killed mid-call", () => {
  it("ends the call saying that its plane stopped answering during the attempt, in its error and its log", async () => {
    const stack = await startTestStack(APP, {}, { planes: 0 });
    const plane = await startPlaneProcess(stack.url, ["--region", "pinned-west"]);
    try {
      await eventually(async () => {
        const res = (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: { healthy: boolean }[] };
        return res.planes.some((p) => p.healthy);
      }, 20_000);
      const call = await lookup<[number], number>("plane", "napPinned", { gateway: stack.url }).spawn(4_000);
      const record = async () => (await (await fetch(`${stack.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
      await eventually(async () => (await record()).status === "running", 20_000);
      await new Promise((r) => setTimeout(r, 1_000));
      plane.child.kill("SIGKILL");
      onTestFinished(() => removeContainersOf(plane.planeId()!));
      const err = (await call.get({ timeoutMs: 30_000 }).catch((e: unknown) => e)) as TandemError;
      // Before, it read as a call that never found a plane: "no capacity for CPU in region pinned-west within 6 s".
      expect(err.code).toBe("no_capacity");
      expect(err.message).toMatch(
        new RegExp(`^its plane ${plane.planeId()} stopped answering during attempt 1; no other plane could take it: no capacity for CPU in region pinned-west`),
      );
      expect(await record()).toMatchObject({ attempts: 1, error: { details: { lostPlanes: [plane.planeId()] } } });
      const lines = (await call.logs()).map((l) => l.text);
      expect(lines).toContain(`plane ${plane.planeId()} stopped answering during attempt 1; trying another plane`);
    } finally {
      await stopPlaneProcess(plane).catch(() => {});
      await stack.dispose();
    }
  }, 60_000);
});
