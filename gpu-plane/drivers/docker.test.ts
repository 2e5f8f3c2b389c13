/**
 * The Docker driver against a real engine. Each sandbox property is checked
 * from inside a real container started by `DockerDriver.start`: a small probe
 * bundle tries what a function must not be able to do and prints what it saw.
 * Needs a running engine; without one every test fails with the driver's own
 * message on how to start it.
 */

import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { release as hostRelease, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PLANE_DEFAULTS } from "../../sdk/defaults.js";
import { DockerDriver, chooseRuntime } from "./docker.js";
import type { ContainerSpec, RemovedContainer, StartedContainer } from "./driver.js";

const run = promisify(execFile);

/** One bundle, several probes; `PROBE` picks one. Plain JS: it runs as is in the base image. */
const PROBE_BUNDLE = String.raw`
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import { spawn, spawnSync } from "node:child_process";

const probes = {
  async sandbox() {
    const attempt = (fn) => { try { fn(); return "ok"; } catch (err) { return err.code; } };
    const status = fs.readFileSync("/proc/self/status", "utf8");
    const connect = await new Promise((resolve) => {
      const socket = net.connect({ host: "127.0.0.1", port: Number(process.env.HOST_PORT) });
      socket.setTimeout(2000, () => { socket.destroy(); resolve("timeout"); });
      socket.on("connect", () => { socket.destroy(); resolve("connected"); });
      socket.on("error", (err) => resolve(err.code));
    });
    return {
      uid: process.getuid(),
      gid: process.getgid(),
      writeRoot: attempt(() => fs.writeFileSync("/x", "x")),
      writeTmp: attempt(() => fs.writeFileSync("/tmp/x", "x")),
      writeBundle: attempt(() => fs.writeFileSync("/tandem/app/bundle.mjs", "x")),
      writeAppFolder: attempt(() => fs.writeFileSync("/tandem/app/other.mjs", "x")),
      capEff: /^CapEff:\s*(\S+)/m.exec(status)[1],
      // gVisor's /proc/self/status has no NoNewPrivs line.
      noNewPrivs: /^NoNewPrivs:\s*(\d)/m.exec(status)?.[1] ?? null,
      env: process.env.TANDEM_PROBE_VALUE,
      interfaces: Object.keys(os.networkInterfaces()),
      connect,
    };
  },
  async pids() {
    let spawned = 0;
    let failure = null;
    while (spawned < 64 && !failure) {
      failure = await new Promise((resolve) => {
        try {
          const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1e6)"], { stdio: "ignore" });
          child.once("spawn", () => { spawned++; resolve(null); });
          child.once("error", (err) => resolve(err.code));
        } catch (err) {
          resolve(err.code);
        }
      });
    }
    return { spawned, failure };
  },
  async memory() {
    const held = [];
    // Filled, not just allocated: untouched pages would not count against the limit.
    for (let i = 0; i < 200; i++) held.push(Buffer.alloc(1024 * 1024, 1));
    return { held: held.length };
  },
  async lines() {
    console.log("first");
    console.error("to stderr");
    console.log("second\nthird");
    return { done: true };
  },
  async sleep() {
    console.log("ready");
    await new Promise(() => setInterval(() => {}, 1e6));
  },
  async kernel() {
    return { release: os.release(), version: fs.readFileSync("/proc/version", "utf8").trim() };
  },
  async mounts() {
    return { mountinfo: fs.readFileSync("/proc/self/mountinfo", "utf8") };
  },
  // A child process reads this one's memory: /proc/<pid>/mem passes the same ptrace access check as PTRACE_ATTACH.
  async ptrace() {
    const peek = [
      "const fs = require('fs');",
      "try {",
      "  const map = fs.readFileSync('/proc/' + process.ppid + '/maps', 'utf8').split('\\n').find((l) => / r..p /.test(l));",
      "  const fd = fs.openSync('/proc/' + process.ppid + '/mem', 'r');",
      "  const n = fs.readSync(fd, Buffer.alloc(16), 0, 16, BigInt('0x' + map.split('-')[0]));",
      "  console.log('read ' + n + ' bytes');",
      "} catch (err) { console.log(err.code); }",
    ].join("\n");
    const child = spawnSync(process.execPath, ["-e", peek], { encoding: "utf8" });
    return { child: child.stdout.trim(), childError: child.stderr.trim() };
  },
};

console.log(JSON.stringify(await probes[process.env.PROBE]()));
process.exit(0);
`;

/** The default driver: gVisor (runsc) where the engine lists it, which the test set-up sees to. */
const driver = new DockerDriver();
/** The same, opted out of gVisor (`--docker-runtime runc`). */
const runcDriver = new DockerDriver({ runtime: "runc" });
const planeId = `test-${randomBytes(4).toString("hex")}`;
let workDir: string;
let bundlePath: string;
let controlDir: string;

function specFor(probe: string, overrides: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    id: `ctr-${randomBytes(4).toString("hex")}`,
    bundlePath,
    nodeModulesPath: undefined,
    controlDir,
    env: { PROBE: probe },
    cpu: 1,
    memoryMiB: 256,
    // The plane's own: gVisor's kernel takes about 50 of them (host threads) before the function's first.
    pidsLimit: PLANE_DEFAULTS.pidsLimit,
    network: false,
    gpuDeviceIds: [],
    labels: { "tandem.plane": planeId },
    ...overrides,
  };
}

/** Starts a probe and returns every line it wrote, the parsed last stdout line, and its exit. */
async function runProbe(probe: string, overrides: Partial<ContainerSpec> = {}, on: DockerDriver = driver) {
  const container = await on.start(specFor(probe, overrides));
  const lines: { stream: "stdout" | "stderr"; line: string }[] = [];
  container.onOutput((stream, line) => lines.push({ stream, line }));
  const exit = await container.exited;
  const last = lines.filter((l) => l.stream === "stdout").at(-1)?.line;
  return { container, lines, exit, result: last ? JSON.parse(last) : undefined };
}

/** Resolves with the next line the container writes. */
function firstLine(container: StartedContainer): Promise<string> {
  return new Promise((resolve) => container.onOutput((_stream, line) => resolve(line)));
}

async function dockerCli(...args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout } = await run("docker", args);
    return { ok: true, out: stdout.trim() };
  } catch (err) {
    return { ok: false, out: String((err as { stderr?: string }).stderr ?? err) };
  }
}

beforeAll(async () => {
  // Fails every test with the driver's message ("no Docker engine at … Start one with …") when there is no engine.
  await driver.prepare();
  await runcDriver.prepare();
  workDir = await mkdtemp(join(tmpdir(), "tandem-docker-test-"));
  bundlePath = join(workDir, "bundle.mjs");
  controlDir = join(workDir, "control");
  await writeFile(bundlePath, PROBE_BUNDLE);
  await mkdir(controlDir);
});

afterAll(async () => {
  if (!workDir) return; // never prepared: the engine's absence is already the failure
  await driver.cleanup(planeId);
  await rm(workDir, { recursive: true, force: true });
});

for (const [runtime, on] of [
  ["runsc", driver],
  ["runc", runcDriver],
] as const) {
  describe(`a container started by the docker driver (${runtime})`, () => {
    let hostServer: Server;
    let hostPort: number;
    let probe: Awaited<ReturnType<typeof runProbe>>;

    beforeAll(async () => {
      // A listener on the host's loopback: the container must not reach it.
      hostServer = createServer((socket) => socket.destroy());
      await new Promise<void>((resolve) => hostServer.listen(0, "127.0.0.1", resolve));
      hostPort = (hostServer.address() as { port: number }).port;
      probe = await runProbe("sandbox", { env: { PROBE: "sandbox", HOST_PORT: String(hostPort), TANDEM_PROBE_VALUE: "from spec.env" } }, on);
    });

    afterAll(() => new Promise<void>((resolve) => hostServer.close(() => resolve())));

    it("runs under the runtime asked for", () => {
      expect(on.runtime).toBe(runtime);
    });

    it("exits cleanly with code 0", () => {
      expect(probe.exit).toEqual({ code: 0, oomKilled: false });
    });

    it("runs as nobody (65534:65534)", () => {
      expect(probe.result.uid).toBe(65534);
      expect(probe.result.gid).toBe(65534);
    });

    // gVisor checks a write's permission before the mount's read-only flag: nobody writing root's files is EACCES there.
    const readOnly = runtime === "runc" ? "EROFS" : "EACCES";

    it("has a read-only root and a writable /tmp", () => {
      expect(probe.result.writeRoot).toBe(readOnly);
      expect(probe.result.writeTmp).toBe("ok");
    });

    it("cannot change its bundle or add files next to it", () => {
      expect(probe.result.writeBundle).toBe(readOnly);
      expect(probe.result.writeAppFolder).toBe(readOnly);
    });

    it("has no capabilities and cannot gain privileges", () => {
      expect(probe.result.capEff).toBe("0000000000000000");
      // gVisor does not show NoNewPrivs; the engine sets it all the same (SecurityOpt), and runc's line proves it does.
      expect(probe.result.noNewPrivs).toBe(runtime === "runc" ? "1" : null);
    });

    it("sees the spec's environment", () => {
      expect(probe.result.env).toBe("from spec.env");
    });

    it("has only its own loopback: no interfaces and no way to the host's listeners", () => {
      expect(probe.result.interfaces).toEqual(["lo"]);
      expect(probe.result.connect).toBe("ECONNREFUSED");
    });

    if (runtime === "runc") {
      // Only under runc: the engine registers gVisor with its own network off (--network=none), so under runsc there is none.
      it("shares the host's network when the spec asks for network", async () => {
        const withNetwork = await runProbe("sandbox", { network: true, env: { PROBE: "sandbox", HOST_PORT: String(hostPort) } }, on);
        expect(withNetwork.result.connect).toBe("connected");
      });
    }
  });
}

describe("the docker driver's runtime", () => {
  it("runs function containers under gVisor by default: the kernel they see is gVisor's, not the host's", async () => {
    expect(driver.runtime).toBe("runsc");
    const { result } = await runProbe("kernel");
    expect(result.release).toBe("4.4.0");
    expect(result.release).not.toBe(hostRelease());
  });

  it("can take memory snapshots under gVisor (engine with --experimental), and says why not under runc", () => {
    expect(driver.snapshotsUnavailable()).toBeUndefined();
    expect(runcDriver.snapshotsUnavailable()).toBe("function containers run under runc, not gVisor (runsc), which memory snapshots need");
  });

  it("resumes several containers from one memory snapshot at once, from two planes on one engine, right after it was taken", async () => {
    // The engine hands each resume's checkpoint to containerd's content store, named by its bytes: two resumes of one
    // snapshot at once, or one while the store still holds the checkpoint's own copy, failed there ("already exists").
    const other = new DockerDriver();
    await other.prepare();
    const source = await driver.start(specFor("sleep"));
    expect(await firstLine(source)).toBe("ready");
    const dir = join(workDir, "snapshot");
    await driver.checkpoint(source, dir);
    const resumed = await Promise.allSettled([driver, driver, other, other].map((on) => on.start({ ...specFor("sleep"), restoreFrom: dir })));
    const started = resumed.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    try {
      expect(resumed.map((r) => (r.status === "fulfilled" ? "resumed" : String(r.reason)))).toEqual(["resumed", "resumed", "resumed", "resumed"]);
      for (const container of started) {
        expect((await dockerCli("inspect", "--format", "{{.State.Running}}", container.runtimeId)).out).toBe("true");
      }
    } finally {
      await Promise.all(started.map((container) => container.kill()));
    }
  });

  it("runs them on the host's kernel when asked for runc", async () => {
    expect(runcDriver.runtime).toBe("runc");
    const { result } = await runProbe("kernel", {}, runcDriver);
    expect(result.release).toBe(hostRelease());
  });

  it("picks runsc where the engine lists it, able to reach host sockets, else runc with a note; refuses a runtime asked for that it lacks", () => {
    const runc = { "io.containerd.runc.v2": { path: "runc" }, runc: { path: "runc" } };
    const gvisor = { path: "/usr/bin/runsc", runtimeArgs: ["--network=none", "--host-uds=open"] };
    const closedGvisor = { path: "/usr/bin/runsc", runtimeArgs: ["--network=none"] };
    expect(chooseRuntime({ ...runc, runsc: gvisor }, undefined, "E")).toEqual({ runtime: "runsc", gvisor: true });
    expect(chooseRuntime({ ...runc, runsc: gvisor }, "runc", "E")).toEqual({ runtime: "runc", gvisor: false });
    // gVisor under a name of the operator's: known by its program, so it gets what gVisor needs (a readable Node).
    expect(chooseRuntime({ ...runc, gvisor }, "gvisor", "E")).toEqual({ runtime: "gvisor", gvisor: true });
    expect(() => chooseRuntime({ ...runc, sandbox: closedGvisor }, "sandbox", "E")).toThrow(/registers gVisor as sandbox without leave/);

    const none = chooseRuntime(runc, undefined, "E");
    expect(none.runtime).toBe("runc");
    expect(none.note).toMatch(/no gVisor runtime \(runsc\): function containers run under runc.*apt-get install -y runsc/);

    // gVisor refuses a connection to a host unix socket (the plane's control socket) unless told otherwise.
    const closed = chooseRuntime({ ...runc, runsc: closedGvisor }, undefined, "E");
    expect(closed.runtime).toBe("runc");
    expect(closed.note).toMatch(/registers runsc without leave to connect to a host unix socket .*Add "--host-uds=open"/);
    expect(() => chooseRuntime({ ...runc, runsc: closedGvisor }, "runsc", "E")).toThrow(/Add "--host-uds=open" to its runtimeArgs/);

    expect(() => chooseRuntime(runc, "runsc", "E")).toThrow(
      /engine at E has no runtime "runsc" \(it has: io\.containerd\.runc\.v2, runc\)\. For gVisor: apt-get install -y runsc/,
    );
  });
});

describe("the docker driver's limits", () => {
  it("stops a fork bomb at the pids limit (runc: the next fork fails)", async () => {
    const { result } = await runProbe("pids", { pidsLimit: 32 }, runcDriver);
    expect(result.failure).toBe("EAGAIN");
    expect(result.spawned).toBeLessThan(64);
  });

  // The limit counts the sandbox's host threads (gVisor's kernel's and one per thread inside); reaching it, gVisor cannot
  // go on and the container ends.
  it("stops a fork bomb at the pids limit (runsc: the container ends)", async () => {
    const { result, exit } = await runProbe("pids", { pidsLimit: 128 });
    expect(result).toBeUndefined();
    expect(exit.code).not.toBe(0);
    expect(exit.oomKilled).toBe(false);
  });

  it("OOM-kills a container past its memory limit, and says so", async () => {
    const { exit, result } = await runProbe("memory", { memoryMiB: 64 });
    expect(result).toBeUndefined();
    expect(exit).toMatchObject({ code: 137, oomKilled: true });
  });

  it("reports a docker kill from outside as a SIGKILL, not as running out of memory", async () => {
    const container = await driver.start(specFor("sleep"));
    expect(await firstLine(container)).toBe("ready");
    expect((await dockerCli("kill", container.runtimeId)).ok).toBe(true);
    expect(await container.exited).toEqual({ code: 137, oomKilled: false, signal: "SIGKILL" });
  });
});

describe("what a container can learn of the plane and its runner", () => {
  for (const [runtime, on] of [
    ["runsc", driver],
    ["runc", runcDriver],
  ] as const) {
    it(`shows no host path of the plane's folders in its mountinfo (${runtime})`, async () => {
      const id = `ctr-${randomBytes(4).toString("hex")}`;
      // Where the plane opens a container's control folder (container-start.ts asks the driver).
      const control = on.controlDirFor(planeId, id);
      await mkdir(control, { recursive: true });
      const { result } = await runProbe("mounts", { id, controlDir: control }, on);
      const mounts = (result.mountinfo as string).split("\n").map((line) => line.split(" "));
      const rootOf = (target: string) => mounts.find((fields) => fields[4] === target)?.[3];

      expect(result.mountinfo).not.toContain(workDir); // where this plane keeps the bundle
      expect(result.mountinfo).not.toContain(control); // the control folder, as the plane sees it
      if (runtime === "runc") {
        // Both are mounted, each from the root of a tmpfs: a path inside it, not one of the host's.
        expect(rootOf("/tandem/app/bundle.mjs")).toBe(`/tandem-${planeId}/${id}/bundle.mjs`);
        expect(rootOf("/tandem/control")).toBe(`/tandem-${planeId}/${id}/control`);
      } else {
        // gVisor's mountinfo gives every bind its own root: no path of the host's at all.
        expect(rootOf("/tandem/app/bundle.mjs")).toBe("/");
        expect(rootOf("/tandem/control")).toBe("/");
      }
    });

    it(`keeps a process it spawns from reading the runner's memory (${runtime})`, async () => {
      const { result } = await runProbe("ptrace", {}, on);
      expect(result.childError).toBe("");
      expect(result.child).toBe("EACCES");
    });
  }
});

describe("the docker driver's output and lifecycle", () => {
  // stdout and stderr are separate streams: order holds within each, not across them.
  it("delivers stdout and stderr as lines", async () => {
    const { lines } = await runProbe("lines");
    expect(
      lines
        .filter((l) => l.stream === "stdout")
        .map((l) => l.line)
        .slice(0, 3),
    ).toEqual(["first", "second", "third"]);
    expect(lines.filter((l) => l.stream === "stderr").map((l) => l.line)).toEqual(["to stderr"]);
  });

  it("replays lines written before a listener was added", async () => {
    const container = await driver.start(specFor("lines"));
    await container.exited;
    const lines: string[] = [];
    container.onOutput((_stream, line) => lines.push(line));
    expect(lines.filter((l) => l !== "to stderr")).toEqual(["first", "second", "third", '{"done":true}']);
    expect(lines).toContain("to stderr");
  });

  it("removes a container once it has exited", async () => {
    const { container } = await runProbe("lines");
    await expect.poll(async () => (await dockerCli("inspect", container.runtimeId)).out, { timeout: 5000 }).toMatch(/No such object/i);
  });

  it("keeps no copy of a container's lines in the engine: the plane has them from its attach stream", async () => {
    const container = await driver.start(specFor("sleep"));
    try {
      expect(await firstLine(container)).toBe("ready"); // read through the attach stream
      const logConfig = await dockerCli("inspect", "--format", "{{.HostConfig.LogConfig.Type}}", container.runtimeId);
      expect(logConfig.out.trim()).toBe("none");
      const logs = await dockerCli("logs", container.runtimeId);
      expect(logs.ok).toBe(false); // no json-file on the plane's disk growing with every line
    } finally {
      await container.kill();
    }
  });

  it("kills and removes a running container, and a second kill is harmless", async () => {
    const container = await driver.start(specFor("sleep"));
    expect(await firstLine(container)).toBe("ready");

    await container.kill();
    expect((await container.exited).code).toBe(137);
    const inspect = await dockerCli("inspect", container.runtimeId);
    expect(inspect.ok).toBe(false);
    expect(inspect.out).toMatch(/No such object/i);
    await expect(container.kill()).resolves.toBeUndefined();
  });

  it("cleanup(planeId) removes that plane's containers and no other's, and tells when each ran", async () => {
    const doomedPlane = `${planeId}-doomed`;
    const before = Date.now();
    const doomed = await Promise.all([1, 2].map(() => driver.start(specFor("sleep", { labels: { "tandem.plane": doomedPlane } }))));
    const kept = await driver.start(specFor("sleep"));

    const removed: RemovedContainer[] = [];
    await driver.cleanup(doomedPlane, (container) => removed.push(container));
    const after = Date.now();

    expect((await dockerCli("ps", "-aq", "--filter", `label=tandem.plane=${doomedPlane}`)).out).toBe("");
    // Still running as they were removed: their time ends with the removal.
    expect(removed.map((c) => c.labels["tandem.container"]).sort()).toEqual(doomed.map((c) => c.id).sort());
    for (const container of removed) {
      expect(container.startedAt).toBeGreaterThanOrEqual(before - 1_000); // the engine's clock, to the millisecond
      expect(container.endedAt).toBeGreaterThan(container.startedAt);
      expect(container.endedAt).toBeLessThanOrEqual(after);
    }
    await Promise.all(doomed.map((container) => container.exited));
    expect((await dockerCli("ps", "-aq", "--no-trunc", "--filter", `label=tandem.container=${kept.id}`)).out).toBe(kept.runtimeId);
    await kept.kill();
  });
});

describe("the docker driver's readable failures", () => {
  it("says how to start an engine when there is none", async () => {
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = "unix:///nonexistent/docker.sock";
    try {
      await expect(new DockerDriver().prepare()).rejects.toThrow(
        /no Docker engine at \/nonexistent\/docker\.sock .*dockerd --bridge=none --iptables=false.*--runtime process/,
      );
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  });

  it("refuses a runtime the engine does not list", async () => {
    await expect(new DockerDriver({ runtime: "no-such-runtime" }).prepare()).rejects.toThrow(/has no runtime "no-such-runtime" \(it has: .*runc/);
  });

  it("names the engine by the socket it dialled, DOCKER_HOST unset", async () => {
    const saved = process.env.DOCKER_HOST;
    delete process.env.DOCKER_HOST;
    try {
      const refused = await new DockerDriver({ runtime: "no-such-runtime" }).prepare().then(
        () => undefined,
        (err: unknown) => err as Error,
      );
      expect(refused?.message).toMatch(/^the Docker engine at \/\S*docker\.sock has no runtime "no-such-runtime"/);
    } finally {
      if (saved !== undefined) process.env.DOCKER_HOST = saved;
    }
  });
});
