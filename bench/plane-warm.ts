/**
 * bench/plane-warm: `.remote()` through gateway → plane → a warm container
 * and back (the SDK, whose calls go over `node:http` in Node), against the
 * same handler in a plain Node process over HTTP on loopback, called with
 * Node's fetch, and (e) the same called over `node:http`, in one run. Reports the
 * overhead, (a) − (e), both sides on one client, in ms at the median and p99 ((a) − (b)
 * beside it), and (c) the same function, asked to print one
 * line (sent to the gateway's log store), against (a): the cost of logging, with
 * (d), (a) once more, as the control that shows what noise alone gives; and (f) the
 * same path with none of Tandem's work in it: the client, a Node relay in the
 * gateway's place, a Node server in the plane's, and the same work in a bare
 * container of the same image and runtime over a unix socket, four processes
 * as the call crosses them; and (g) that chain with a bare Worker on workerd in
 * the relay's place, so (a) − (g) is Tandem's own work over the runtimes beneath.
 * Measured twice, the containers under gVisor (runsc) and under runc, each on a
 * stack of its own, and the two (a) medians set side by side.
 *
 *   npx tsx bench/plane-warm.ts [--n 1000] [--tiny] [--runtime runsc|runc]
 */
import { spawn } from "node:child_process";
import { openSync, closeSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { DockerDriver } from "../gpu-plane/drivers/docker.js";
import { lookup } from "../sdk/index.js";
import { buildBareEntry, startBareContainer } from "./bare-script.js";
import { startBareWorker } from "./bare-worker.js";
import { nodeHttpJson } from "./node-http.js";
import { ADMIN_TOKEN, authed, eventually } from "../test/helpers/gateway.js";
import { SECRET, startTestStack } from "../test/helpers/stack.js";
import { benchArgs, printTable, refuseArgs, roundOrder, stateInMemory, summarize } from "./stats.js";

const here = dirname(fileURLToPath(import.meta.url));
const { n, tiny } = benchArgs(1000);
console.log(stateInMemory());
const WORK = 1000;

/** gVisor (the plane's default where the engine lists it) and runc, measured in turn, each on a stack of its own; `--runtime runc` (or `runsc`) measures one. */
const RUNTIMES = ["runsc", "runc"] as const;
const asked = process.argv.includes("--runtime") ? process.argv[process.argv.indexOf("--runtime") + 1] : undefined;
if (asked !== undefined && !RUNTIMES.includes(asked as (typeof RUNTIMES)[number])) refuseArgs(`--runtime must be one of ${RUNTIMES.join(", ")}`);
const medians: Record<string, number> = {};

for (const runtime of RUNTIMES) if (asked === undefined || asked === runtime) await measure(runtime);
if (asked === undefined)
  console.log(
    `runsc against runc, (a) at the median: ${medians.runsc!.toFixed(3)} against ${medians.runc!.toFixed(3)} ms (${(medians.runsc! - medians.runc!).toFixed(3)} ms for gVisor)`,
  );

async function measure(runtime: (typeof RUNTIMES)[number]): Promise<void> {
  // The plane runs as its own process, as `tandem plane` does, so it does not share this client's event loop.
  const stack = await startTestStack(join(here, "apps/plane-work-app.ts"), {}, { planes: 0 });
  const planeDir = await mkdtemp(join(tmpdir(), "tandem-bench-plane-"));
  // The plane's lines (one per call of (c)) go to a file, as a deployed plane's go to its journal: read through a pipe,
  // each would wake this process, the client being timed, on the same cores.
  const planeLog = join(planeDir, "plane.log");
  const planeOut = openSync(planeLog, "w");
  const planeProcess = spawn(
    process.execPath,
    [join(here, "../dist/cli.js"), "plane", "--gateway", stack.url, "--port", "0", "--scaledown-window", "600", "--docker-runtime", runtime],
    {
      cwd: planeDir,
      env: { ...process.env, TANDEM_PLANE_SECRET: SECRET },
      stdio: ["ignore", planeOut, "inherit"],
    },
  );
  closeSync(planeOut);
  const exited = new Promise<never>((_, reject) => planeProcess.once("exit", (code) => reject(new Error(`tandem plane exited with ${code}`))));
  exited.catch(() => {});
  await Promise.race([eventually(() => readFileSync(planeLog, "utf8").includes(" at http://"), 60_000), exited]);
  await eventually(
    async () => ((await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: { healthy: boolean }[] }).planes.some((p) => p.healthy),
    20_000,
  );
  const node = (script: string, ...args: string[]) =>
    spawn(process.execPath, ["--import", "tsx", join(here, script), ...args], { stdio: ["ignore", "pipe", "inherit"] });
  const portOf = (child: ReturnType<typeof node>) => new Promise<number>((resolve) => child.stdout!.once("data", (d) => resolve(JSON.parse(String(d)).port)));
  const baseline = node("apps/plain-node-server.ts");
  const port = await portOf(baseline);
  // (f): the bare chain. Its container connects to the front's socket, in a folder mounted as a runner's is.
  const controlDir = join(planeDir, "bare-chain");
  await mkdir(controlDir, { mode: 0o755 });
  const front = node("apps/bare-chain.ts", "front", join(controlDir, "control.sock"));
  const frontPort = await portOf(front);
  const relay = node("apps/bare-chain.ts", "relay", String(frontPort));
  const relayPort = await portOf(relay);
  // (g): the same chain with a bare Worker on workerd in the relay's place.
  const bareRelay = await startBareWorker(join(here, "apps/bare-relay-worker.ts"), join(planeDir, "bare-relay"), {
    bindings: { FRONT: `http://127.0.0.1:${frontPort}/` },
  });
  await buildBareEntry(join(here, "apps/bare-chain-runner.ts"), join(planeDir, "bare-chain.mjs"));
  const { container: chainContainer } = await startBareContainer(new DockerDriver({ runtime }), {
    script: join(planeDir, "bare-chain.mjs"),
    controlDir,
    planeId: "bench-plane-warm",
  });

  try {
    const compute = lookup<[number, boolean?], { n: number; sum: number }>("planebench", "compute", { gateway: stack.url, token: ADMIN_TOKEN });
    const plain = async () => (await fetch(`http://127.0.0.1:${port}/`, { method: "POST", body: JSON.stringify({ n: WORK }) })).json();
    if (JSON.stringify(await compute.remote(WORK)) !== JSON.stringify(await plain())) throw new Error("the two sides disagree");
    const chained = await nodeHttpJson(`http://127.0.0.1:${relayPort}/`, { method: "POST", body: JSON.stringify({ n: WORK }) });
    if (JSON.stringify(chained) !== JSON.stringify(await plain())) throw new Error("the bare chain disagrees");
    const viaWorkerd = await nodeHttpJson(`${bareRelay.url}/`, { method: "POST", body: JSON.stringify({ n: WORK }) });
    if (JSON.stringify(viaWorkerd) !== JSON.stringify(await plain())) throw new Error("the bare chain through workerd disagrees");

    const targets: [string, () => Promise<unknown>][] = [
      ["(a) .remote() → gateway → plane → warm container", () => compute.remote(WORK)],
      ["(b) plain Node process over HTTP, same handler", plain],
      ["(c) (a), the function printing a line", () => compute.remote(WORK, true)],
      ["(d) (a) again, the control", () => compute.remote(WORK)],
      ["(e) (b) over node:http, as the SDK sends", () => nodeHttpJson(`http://127.0.0.1:${port}/`, { method: "POST", body: JSON.stringify({ n: WORK }) })],
      [
        "(f) bare chain: (a)'s processes, none of its work",
        () => nodeHttpJson(`http://127.0.0.1:${relayPort}/`, { method: "POST", body: JSON.stringify({ n: WORK }) }),
      ],
      ["(g) (f), a bare Worker on workerd as its relay", () => nodeHttpJson(`${bareRelay.url}/`, { method: "POST", body: JSON.stringify({ n: WORK }) })],
    ];
    const samples = targets.map(() => [] as number[]);
    // Warmed for WARM_MS in rounds like the timed ones: for the first seconds after a stack starts (the plane making its
    // prepared containers, the engine, every process's compiler), all six targets, the bare ones too, are slower, and
    // a logged call more so (bench/README.md, "A run's first seconds").
    const WARM_MS = tiny ? 0 : 5_000;
    for (const warmUntil = performance.now() + WARM_MS; ;) {
      for (const i of roundOrder(targets.length)) for (let k = 0; k < 30; k++) await targets[i]![1]();
      if (performance.now() >= warmUntil) break;
    }
    // Rounds of a block of 25 a target, in an order shuffled each round; (a), (c) and (d) on one function and
    // container. The first SETTLE calls of each block are not timed: a stack that another's block has left idle is
    // slower for a while, and the target after it paid for that (bench/README.md, "Measuring a log line's cost fairly").
    const SETTLE = 5;
    for (let done = 0; done < n; done += 25) {
      for (const i of roundOrder(targets.length)) {
        const fn = targets[i]![1];
        for (let k = 0; k < SETTLE; k++) await fn();
        for (let k = 0; k < Math.min(25, n - done); k++) {
          const t0 = performance.now();
          await fn();
          samples[i]!.push(performance.now() - t0);
        }
      }
    }
    const rows = targets.map(([name], i) => summarize(name, samples[i]!));
    medians[runtime] = rows[0]!.medianMs;
    console.log(
      `bench/plane-warm: ${n} sequential calls per target, work(${WORK}), Docker runtime ${runtime}, the plane in its own process; ` +
        `blocks of 25 in an order shuffled each round, after ${WARM_MS / 1000} s of the same rounds untimed`,
    );
    printTable(rows);
    console.log(
      `overhead (a)-(e): median ${(rows[0]!.medianMs - rows[4]!.medianMs).toFixed(3)} ms, p99 ${(rows[0]!.p99Ms - rows[4]!.p99Ms).toFixed(3)} ms   (both sides over node:http, the SDK's client; target: median <= 1.0 ms; 1.5-1.7 ms when it was set, both sides then on Node's fetch)`,
    );
    console.log(
      `overhead (a)-(b): median ${(rows[0]!.medianMs - rows[1]!.medianMs).toFixed(3)} ms   (the bare side on Node's fetch, slower a call than node:http; not a target, shown beside it)`,
    );
    console.log(
      `overhead (a)-(f): median ${(rows[0]!.medianMs - rows[5]!.medianMs).toFixed(3)} ms   (Tandem's work over the bare chain of the same processes; not a target: (f)-(e), ${(rows[5]!.medianMs - rows[4]!.medianMs).toFixed(3)} ms, is what the two extra processes cost by themselves)`,
    );
    console.log(
      `overhead (a)-(g): median ${(rows[0]!.medianMs - rows[6]!.medianMs).toFixed(3)} ms   (Tandem's work over the bare chain with workerd in the gateway's place, the runtimes beneath; not a target: (g)-(f), ${(rows[6]!.medianMs - rows[5]!.medianMs).toFixed(3)} ms, is workerd's relay against Node's)`,
    );
    console.log(
      `ratio (c)/(a): median ${(rows[2]!.medianMs / rows[0]!.medianMs).toFixed(3)}, p99 ${(rows[2]!.p99Ms / rows[0]!.p99Ms).toFixed(3)}   (logging one line a call; target: median <= 1.05)`,
    );
    console.log(
      `ratio (d)/(a): median ${(rows[3]!.medianMs / rows[0]!.medianMs).toFixed(3)}, p99 ${(rows[3]!.p99Ms / rows[0]!.p99Ms).toFixed(3)}   (the control: the same calls twice, what noise alone gives)`,
    );
  } finally {
    baseline.kill();
    relay.kill();
    await bareRelay.dispose();
    front.kill();
    await chainContainer.kill();
    planeProcess.kill("SIGINT");
    await new Promise((r) => planeProcess.once("exit", r));
    await stack.dispose();
    await rm(planeDir, { recursive: true, force: true });
  }
}
