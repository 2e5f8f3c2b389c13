/**
 * Zero-downtime redeploys, as a user sees them under `tandem serve`: while a
 * steady, bounded load of edge calls, plane calls, a plane generator and
 * WebSocket sessions runs, the app file is edited twice. No call fails; each
 * session stays open or is closed with 1012 ("service restart"), reconnects
 * and resumes its state; the old version's plane containers finish their
 * inputs and stop, and its warm container stops only once the new version's
 * is ready. With `--strategy recreate` the old containers stop at once, and
 * the calls they run fail with `container_failed`, saying why.
 * Real workerd, real Docker; all traffic to loopback.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, lookup, type AgentSocket } from "../sdk/index.js";
import { LOCAL_PLANE_REGION } from "../sdk/cli/local-stack.js";
import { AGENT_CLOSE, CONTAINER_LABELS } from "../sdk/protocol.js";
import { ROOT, startServe, type Served } from "./helpers/cli.js";
import { authed } from "./helpers/gateway.js";
import { startPlaneProcess, stopPlaneProcess } from "./helpers/plane-process.js";
import { SECRET } from "./helpers/stack.js";

const FIXTURE = join(ROOT, "test/fixtures/redeploy-app.ts");
const SESSIONS = 3;
/** A load loop stops by itself after this long, whatever the test does. */
const LOAD_LIMIT_MS = 120_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** `tandem serve`'s own plane's region. */
const LOCAL = LOCAL_PLANE_REGION;

/** A served copy of the fixture, under an app name of its own (the Docker engine is shared). */
async function serveFixture(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ dir: string; name: string; served: Served; edit: (from: string, to: string) => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "tandem-redeploy-"));
  const name = `redeploy${randomBytes(3).toString("hex")}`;
  const file = join(dir, "app.ts");
  await writeFile(file, (await readFile(FIXTURE, "utf8")).replace('new App("redeploy")', `new App("${name}")`));
  const served = await startServe(["app.ts", "--scaledown-window", "600", ...args], dir, env);
  const edit = async (from: string, to: string) => {
    const source = await readFile(file, "utf8");
    expect(source).toContain(from);
    const reloads = served.output().split("reloaded in").length - 1;
    await writeFile(file, source.replace(from, to));
    await served.waitFor(new RegExp(`(reloaded in[\\s\\S]*){${reloads + 1}}`), 60_000);
  };
  return { dir, name, served, edit };
}

/** The plane's ids (`ctr-…`) of the app's containers the engine runs now (of plane `planeId` alone, when named). */
async function containersOf(name: string, planeId?: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)("docker", [
    "ps",
    "--filter",
    `label=${CONTAINER_LABELS.app}=${name}`,
    ...(planeId ? ["--filter", `label=${CONTAINER_LABELS.plane}=${planeId}`] : []),
    "--format",
    `{{.Label "${CONTAINER_LABELS.container}"}}`,
  ]);
  return stdout.split("\n").filter(Boolean);
}

/** Waits until `check` holds, or fails naming `what`. */
async function until(check: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await sleep(100);
  }
}

describe("tandem serve reloading under load", () => {
  let dir: string;
  let name: string;
  let served: Served;
  let edit: (from: string, to: string) => Promise<void>;

  beforeAll(async () => {
    ({ dir, name, served, edit } = await serveFixture([]));
  }, 120_000);
  afterAll(async () => {
    await served?.stop();
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it("fails no call and drops no session while the app is edited twice, and retires the old versions' containers", async () => {
    const fn = <A extends unknown[], R>(f: string) => lookup<A, R>(name, f, { gateway: served.url });
    const hello = fn<[string], string>("hello");
    const work = fn<[number], { version: number; container: string }>("work");
    const count = fn<[number], AsyncGenerator<string>>("count");
    // Warm: the first plane call waits for its container; the load measures the reloads, not the first cold start.
    await until(() => served.output().includes(`keeping ${name}.work`), "the warm container of work", 60_000);
    expect((await work.remote(0)).version).toBe(1);

    const failures: string[] = [];
    const done = { edge: 0, plane: 0, stream: 0 };
    const versions = { edge: new Set<string>(), plane: new Set<number>(), stream: new Set<string>() };
    /** The containers that answered work with a version before the last. */
    const oldWork = new Set<string>();
    const workedOn = ({ version, container }: { version: number; container: string }) => {
      versions.plane.add(version);
      if (version < 3) oldWork.add(container);
    };
    let stop = false;
    const started = Date.now();
    const running = () => !stop && Date.now() - started < LOAD_LIMIT_MS;
    const loop = async (what: keyof typeof done, once: () => Promise<void>) => {
      while (running()) {
        try {
          await once();
          done[what]++;
        } catch (err) {
          failures.push(`${what}: ${(err as Error).message}`);
        }
        await sleep(20);
      }
    };
    const loops = [
      loop("edge", async () => void versions.edge.add((await hello.remote("ada")).split(" ")[0]!)),
      loop("edge", async () => void versions.edge.add((await hello.remote("bob")).split(" ")[0]!)),
      loop("plane", async () => workedOn(await work.remote(150))),
      loop("plane", async () => workedOn(await work.remote(150))),
      loop("stream", async () => {
        const chunks: string[] = [];
        for await (const chunk of count.remoteGen(4)) chunks.push(chunk);
        if (chunks.length !== 4) throw new Error(`the stream ended after ${chunks.length} chunks`);
        versions.stream.add(chunks[0]!.split(":")[0]!);
      }),
    ];

    // Sessions: each sends a numbered message and waits for its echo, sending it again after a reconnect.
    const closes: { code: number; willReconnect: boolean }[] = [];
    const sockets: AgentSocket[] = [];
    const echoed: number[] = [];
    /** The version of the gateway that echoed each session's latest message. */
    const echoedBy: string[] = [];
    const resumedStates: number[] = [];
    const sessions = Array.from({ length: SESSIONS }, async (_, s) => {
      const socket = connect(name, "echo", { gateway: served.url, pingIntervalMs: 0 });
      sockets.push(socket);
      echoed[s] = 0;
      let waiting: ((text: string) => void) | undefined;
      socket.addEventListener("message", (e) => {
        const text = String((e as Event & { data: unknown }).data);
        if (text.startsWith("{")) {
          const hello = JSON.parse(text) as { resumed: boolean; messages: number };
          if (hello.resumed) resumedStates.push(hello.messages);
          return;
        }
        waiting?.(text);
      });
      socket.addEventListener("close", (e) => {
        const { code, willReconnect } = e as Event & { code: number; willReconnect: boolean };
        closes.push({ code, willReconnect });
        waiting?.("closed");
      });
      for (let k = 1; running(); k++) {
        for (;;) {
          const answer = await new Promise<string>((resolve) => {
            const timer = setTimeout(() => resolve("timed out"), 10_000);
            waiting = (text) => {
              clearTimeout(timer);
              resolve(text);
            };
            socket.send(`m${k}`);
          });
          if (answer.endsWith(` m${k}`)) {
            echoedBy[s] = answer.split(" ")[0]!;
            break;
          }
          if (answer === "timed out") failures.push(`session ${s}: no echo of m${k} in 10 s`);
          if (!running()) return;
          await until(() => socket.readyState === 1 || !running(), `session ${s} to reopen`);
        }
        echoed[s]!++;
        await sleep(100);
      }
    });

    await sleep(1_500);
    await edit("const VERSION = 1;", "const VERSION = 2;");
    await until(() => versions.plane.has(2) && versions.edge.has("v2") && versions.stream.has("v2"), "every kind of call to reach version 2");
    // Every container running now is of an old version once the next edit is live.
    const beforeLast = await containersOf(name);
    await edit("const VERSION = 2;", "const VERSION = 3;");
    await until(() => versions.plane.has(3) && versions.edge.has("v3") && versions.stream.has("v3"), "every kind of call to reach version 3");
    // A session stays on the workerd it opened on until that one stops (five seconds after its last request).
    await until(() => echoedBy.length === SESSIONS && echoedBy.every((v) => v === "v3"), "every session to be answered by version 3");
    stop = true;
    await Promise.all([...loops, ...sessions]);

    expect(failures).toEqual([]);
    expect(done.edge).toBeGreaterThan(20);
    expect(done.plane).toBeGreaterThan(10);
    expect(done.stream).toBeGreaterThan(3);
    // Every close was a service restart the client reconnected from; every session is open, its state kept.
    expect(closes.length).toBeGreaterThanOrEqual(SESSIONS); // the first reload's workerd stopped under each of them
    expect(closes.filter((c) => !c.willReconnect)).toEqual([]);
    expect(closes.filter((c) => c.code !== AGENT_CLOSE.serviceRestart)).toEqual([]);
    expect(sockets.every((s) => s.readyState === 1)).toBe(true);
    expect(resumedStates.every((n) => n > 0)).toBe(true);
    for (const socket of sockets) socket.close();

    // The plane: two switches, the old versions' containers stopped, the warm one only once the new one was ready.
    const out = served.output();
    expect(out.match(new RegExp(`a new version of ${name}\\.work is live`, "g"))?.length).toBe(2);
    expect(out).toMatch(new RegExp(`a new version of ${name}\\.count is live`));
    expect(out).toMatch(/finished its inputs after a new version went live; stopping it/);
    // The first version's warm container stopped only once a container of the second version was ready.
    const firstWarm = new RegExp(`keeping ${name}\\.work (ctr-[0-9a-f]{8}) warm`).exec(out)![1]!;
    const switched = out.indexOf(`a new version of ${name}.work is live`);
    const newReady = switched + out.slice(switched).search(new RegExp(`cold start: ${name}\\.work ctr-[0-9a-f]{8} ready`));
    expect(newReady).toBeGreaterThan(switched);
    expect(out.indexOf(`${name}.work ${firstWarm} finished its inputs after a new version went live`)).toBeGreaterThan(newReady);
    // What is left are the latest version's containers: the load may have scaled it up, and its scale-down window is long.
    const old = new Set([...beforeLast, ...oldWork]);
    expect(old.size).toBeGreaterThanOrEqual(2);
    const oldRunning = async () => (await containersOf(name)).filter((c) => old.has(c));
    await until(async () => (await oldRunning()).length === 0, "the old versions' containers to stop", 45_000).catch(async (err: Error) => {
      const plane = served
        .output()
        .split("\n")
        .filter((l) => l.includes("[plane]"));
      throw new Error(`${err.message} (${(await oldRunning()).join(", ")} still run); the plane said:\n${plane.join("\n")}`);
    });
    expect(await work.remote(0)).toMatchObject({ version: 3 });
  }, 240_000);

  it("does not hold every request while a long plane call is in flight, nor while a log follow is open: each goes on after the reload", async () => {
    const work = lookup<[number], { version: number }>(name, "work", { gateway: served.url });
    const hello = lookup<[string], string>(name, "hello", { gateway: served.url });
    await work.remote(0);
    const follow = new AbortController();
    const followed = (async () => {
      try {
        const res = await fetch(`${served.url}/v1/apps/${name}/logs?follow=1`, authed({ signal: follow.signal }));
        const reader = res.body!.getReader();
        while (!(await reader.read()).done); // held open until the reload cuts it
        return "ended";
      } catch {
        return "cut";
      }
    })();
    let longEnded = 0;
    const long = work.remote(20_000).then((v) => ((longEnded = Date.now()), v));
    await sleep(1_000);
    await edit("const VERSION = 3;", "const VERSION = 4;");
    const reloadedAt = Date.now();
    expect(await hello.remote("eve")).toBe("v4 hello eve");
    // The reload went live while the long call still ran, and its caller gets the call's one result.
    expect(longEnded).toBe(0);
    expect(await long).toMatchObject({ version: 3 });
    expect(longEnded).toBeGreaterThan(reloadedAt);
    expect(await followed).toMatch(/^(cut|ended)$/); // it did not hold the reload: the follow is the client's to open again
    follow.abort();
  }, 120_000);
});

describe("tandem serve --strategy recreate", () => {
  let dir: string;
  let name: string;
  let served: Served;
  let edit: (from: string, to: string) => Promise<void>;

  beforeAll(async () => {
    ({ dir, name, served, edit } = await serveFixture(["--strategy", "recreate"]));
  }, 120_000);
  afterAll(async () => {
    await served?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("stops the old version's plane containers at once when the new version goes live", async () => {
    const work = lookup<[number], { version: number; container: string }>(name, "work", { gateway: served.url });
    const before = await work.remote(0);
    expect(before.version).toBe(1);
    const old = await containersOf(name);
    expect(old).toContain(before.container);
    await edit("const VERSION = 1;", "const VERSION = 2;");
    const after = await work.remote(0);
    expect(after.version).toBe(2);
    expect(after.container).not.toBe(before.container);
    const switched = new RegExp(`a new version of ${name}\\.work is live \\(strategy recreate\\): stopping \\d+ containers? of the old one now`);
    expect(served.output()).toMatch(switched);
    // The same line is in the app's log, a system line of the function, where `tandem logs` and the dashboard show it.
    await until(
      async () => {
        const res = await fetch(`${served.url}/v1/apps/${name}/logs?source=system&function=work`, authed());
        const lines = (await res.text())
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { text: string; function: string | null; tier: string });
        return lines.some((l) => switched.test(l.text) && l.function === "work" && l.tier === "plane");
      },
      "the switch's line to reach the app's log",
      10_000,
    );
    // Only the new version's containers run: the one that answered, and any other it started (its warm one may have
    // come second, the call not waiting for it).
    const oldRunning = async () => (await containersOf(name)).filter((c) => old.includes(c));
    await until(async () => (await oldRunning()).length === 0, "the old version's containers to stop", 15_000);
    expect(await containersOf(name)).toContain(after.container);
  }, 180_000);

  it("fails a call in flight on the old version with container_failed as the new version goes live, and runs new calls on the new one", async () => {
    // The user's report: a 25 s call, the app edited 6 s in, a new call 16 s in.
    const slow = lookup<[number], { version: number; container: string }>(name, "slow", { gateway: served.url });
    const warmed = await slow.remote(0); // version 1, or 2 after the test above
    const next = warmed.version + 1;
    const started = Date.now();
    const long = slow.remote(25_000).then(
      () => ({ endedAt: Date.now(), error: undefined }),
      (error: { code?: string; message?: string }) => ({ endedAt: Date.now(), error }),
    );
    await sleep(6_000);
    await edit(`const VERSION = ${warmed.version};`, `const VERSION = ${next};`);
    const live = Date.now();
    await sleep(16_000 - (Date.now() - started));
    expect((await slow.remote(0)).version).toBe(next);
    // The new version went live on the plane with the new gateway's first heartbeat answer: the old container was
    // killed under the long call, which failed then, saying why, not at its end with the old version's result.
    const { endedAt, error } = await long;
    expect(error, "the long call on the old version should have failed").toBeDefined();
    expect(error!.code).toBe("container_failed");
    expect(error!.message).toMatch(new RegExp(`was stopped by the plane as a new version of ${name}\\.slow went live \\(strategy recreate\\)`));
    expect(endedAt - live).toBeLessThan(8_000); // within a heartbeat (3 s) or so
    expect(endedAt - started).toBeLessThan(20_000);
    await until(async () => !(await containersOf(name)).includes(warmed.container), "the old version's container to stop", 15_000);
    expect((await slow.remote(0)).version).toBe(next);
  }, 180_000);
});

describe("a new version reaches every plane of a fleet", () => {
  // `tandem serve`'s own plane (region local) and a `tandem plane` process beside it (region far): a caller's region
  // picks the plane, so the old version's call runs on the one, the new version's first call on the other.
  const FAR = "far";
  const fleet = async (args: string[]) => {
    const fixture = await serveFixture(args, { TANDEM_PLANE_SECRET: SECRET });
    stops.push(
      () => fixture.served.stop(),
      () => rm(fixture.dir, { recursive: true, force: true }),
    );
    const far = await startPlaneProcess(fixture.served.url, ["--region", FAR, "--scaledown-window", "600"]);
    stops.push(() => stopPlaneProcess(far));
    // Listed healthy before a call prefers its region (else the call runs on the only plane there is).
    await until(
      async () => {
        const res = await fetch(`${fixture.served.url}/v1/planes`, authed());
        const { planes } = (await res.json()) as { planes: { planeId: string; healthy: boolean }[] };
        return planes.some((p) => p.planeId === far.planeId() && p.healthy);
      },
      "the far plane to be listed healthy",
      30_000,
    );
    await sleep(1_500); // each gateway isolate reads the plane list at most once a second
    const slow = (region: string) => lookup<[number], { version: number; container: string }>(fixture.name, "slow", { gateway: fixture.served.url, region });
    // The first version, warm on the far plane.
    const warmed = await slow(FAR).remote(0);
    expect(warmed.version).toBe(1);
    expect(await containersOf(fixture.name, far.planeId())).toContain(warmed.container);
    return { ...fixture, far, slow, warmed };
  };
  const stops: (() => Promise<void>)[] = [];
  afterAll(async () => {
    await Promise.all(stops.map((stop) => stop().catch(() => {})));
  }, 60_000);

  it("fails a recreate call in flight on a plane that runs no input of the new version, within a heartbeat of it going live", async () => {
    const { name, edit, far, slow, warmed } = await fleet(["--strategy", "recreate"]);
    const started = Date.now();
    const long = slow(FAR)
      .remote(25_000)
      .then(
        () => ({ endedAt: Date.now(), error: undefined }),
        (error: { code?: string; message?: string }) => ({ endedAt: Date.now(), error }),
      );
    await sleep(3_000);
    await edit("const VERSION = 1;", "const VERSION = 2;");
    const live = Date.now();
    // The new version's first call runs on serve's own plane: the far plane sees no input of it.
    const next = await slow(LOCAL).remote(0);
    expect(next.version).toBe(2);
    expect(await containersOf(name, far.planeId())).not.toContain(next.container);
    const { endedAt, error } = await long;
    expect(error, "the long call on the old version should have failed").toBeDefined();
    expect(error!.code).toBe("container_failed");
    expect(error!.message).toMatch(new RegExp(`was stopped by the plane as a new version of ${name}\\.slow went live \\(strategy recreate\\)`));
    // Within a heartbeat (3 s) or so of the new version going live, well before the call's own end (25 s).
    expect(endedAt - live).toBeLessThan(8_000);
    expect(endedAt - started).toBeLessThan(20_000);
    expect(far.output()).toMatch(new RegExp(`a new version of ${name}\\.slow is live \\(strategy recreate\\): stopping 1 container of the old one now`));
    await until(async () => !(await containersOf(name)).includes(warmed.container), "the old version's container to stop", 15_000);
  }, 180_000);

  it("stops the old version's idle container on a plane that runs no input of the new version, within a heartbeat (rolling)", async () => {
    const { name, edit, far, slow, warmed } = await fleet([]);
    await edit("const VERSION = 1;", "const VERSION = 2;");
    const live = Date.now();
    expect((await slow(LOCAL).remote(0)).version).toBe(2);
    // Its scale-down window is 600 s: it stops for the new version, not for being idle.
    await until(async () => !(await containersOf(name)).includes(warmed.container), "the far plane's old idle container to stop", 10_000);
    expect(Date.now() - live).toBeLessThan(10_000);
    expect(far.output()).toMatch(
      new RegExp(`a new version of ${name}\\.slow is live: 1 container of the old one takes no new input and stops once its inputs end`),
    );
  }, 180_000);
});
