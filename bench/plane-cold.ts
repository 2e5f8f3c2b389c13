/**
 * bench/plane-cold: time from call to result on a cold start (no container of
 * the function running, the image already cached), against a bare create +
 * start of the same image running the same handler through the same Docker
 * engine, in one run. (a) is a cold start as a plane makes it by default:
 * the function has started cold before, so the plane keeps a prepared
 * container, paused, and resumes it (docs/plane.md, "Prepared containers");
 * (c) is a cold start on a plane with none (`--prepared 0`): a new container.
 * Reports the ratios of the medians. Measured twice, all sides under gVisor
 * (runsc) and under runc, each on stacks of their own, and the medians set
 * side by side.
 *
 * Then, under gVisor, the snapshot rows (docs/plane.md, "Memory snapshots"): a class whose enter() builds a large
 * table (about 2 s), cold-started fresh against resumed from its memory snapshot (target: under a quarter).
 *
 *   npx tsx bench/plane-cold.ts [--n 20] [--tiny] [--snapshot-only]
 */
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import { DockerDriver } from "../gpu-plane/drivers/docker.js";
import { lookup } from "../sdk/index.js";
import { eventually } from "../test/helpers/gateway.js";
import { startTestStack } from "../test/helpers/stack.js";
import { ADMIN_TOKEN } from "../test/helpers/gateway.js";
import { buildBareScript, startBareContainer } from "./bare-script.js";
import { benchArgs, printTable, summarize } from "./stats.js";

const here = dirname(fileURLToPath(import.meta.url));
const { n, tiny } = benchArgs(20, 3);
const WORK = 1000;

/** gVisor (the plane's default where the engine lists it) and runc, measured in turn, each on a stack of its own. */
const RUNTIMES = ["runsc", "runc"] as const;
const medians: Record<string, { plane: number; bare: number; fresh: number }> = {};

if (!process.argv.includes("--snapshot-only")) {
  for (const runtime of RUNTIMES) await measure(runtime);
  const { runsc, runc } = medians as Record<(typeof RUNTIMES)[number], { plane: number; bare: number; fresh: number }>;
  console.log(
    `runsc against runc at the median: (a) ${runsc.plane.toFixed(1)} against ${runc.plane.toFixed(1)} ms, ` +
      `(b) ${runsc.bare.toFixed(1)} against ${runc.bare.toFixed(1)} ms, (c) ${runsc.fresh.toFixed(1)} against ${runc.fresh.toFixed(1)} ms`,
  );
}
await measureSnapshots();

/** (d) a cold start that runs a 2 s enter(), against (e) the same class resumed from its memory snapshot. */
async function measureSnapshots(): Promise<void> {
  // No prepared containers: these rows compare two ways of starting a new container.
  const stack = await startTestStack(join(here, "apps/snapshot-app.ts"), { scaledownWindowSeconds: 0.001, dockerRuntime: "runsc", preparedPerFunction: 0 });
  const plane = stack.planes[0]!;
  try {
    const call = (cls: string) =>
      lookup<[Record<string, unknown>, number], string | null>("snapbench", `${cls}.lookup`, { gateway: stack.url, token: ADMIN_TOKEN });
    const [fresh, snapped] = [call("Fresh"), call("Snapped")];
    // The first call of each: the snapshot is taken here, outside the samples.
    const answers = [await fresh.remote({}, 1234), await snapped.remote({}, 1234)];
    if (answers[0] === null || answers[0] !== answers[1]) throw new Error("the two sides disagree");
    const sides: [string, () => Promise<unknown>][] = [
      ["(d) cold start, enter() builds the table (fresh)", () => fresh.remote({}, 1234)],
      ["(e) cold start resumed from its memory snapshot", () => snapped.remote({}, 1234)],
    ];
    const samples: number[][] = [[], []];
    for (let i = 0; i < n; i++) {
      for (const [k, [, fn]] of sides.entries()) {
        await eventually(() => plane.status().containers.length === 0, 20_000);
        const t0 = performance.now();
        await fn();
        samples[k]!.push(performance.now() - t0);
      }
    }
    const rows = sides.map(([name], k) => summarize(name, samples[k]!));
    const taken = stack.planeOutput.find((l) => l.includes("memory snapshot of snapbench.Snapped taken")) ?? "no snapshot taken";
    console.log(`bench/plane-cold snapshots: ${n} calls per side${tiny ? " (tiny)" : ""}, Docker runtime runsc; ${taken.replace(/^\[plane\] /, "")}`);
    printTable(rows);
    console.log(
      `ratio (e)/(d): median ${(rows[1]!.medianMs / rows[0]!.medianMs).toFixed(3)}  p99 ${(rows[1]!.p99Ms / rows[0]!.p99Ms).toFixed(3)}   (target: median < 0.25)`,
    );
  } finally {
    await stack.dispose();
  }
}

async function measure(runtime: (typeof RUNTIMES)[number]): Promise<void> {
  // Containers stopped as soon as their call ends, so every call starts cold: on a plane that keeps prepared
  // containers (its default), and on one that keeps none.
  const prepared = await startTestStack(join(here, "apps/plane-work-app.ts"), { scaledownWindowSeconds: 0.001, dockerRuntime: runtime });
  const fresh = await startTestStack(join(here, "apps/plane-work-app.ts"), { scaledownWindowSeconds: 0.001, dockerRuntime: runtime, preparedPerFunction: 0 });
  const plane = prepared.planes[0]!;
  const planes = [plane, fresh.planes[0]!];
  const driver = new DockerDriver({ runtime });
  const docker = new Docker();

  // The bare side: the same handler from the same app module, called directly by a script that prints its
  // result, bundled as the plane bundles it (so both load the same code), started by create + start.
  const bareDir = join(prepared.dir, "bare");
  await mkdir(join(bareDir, "control"), { recursive: true });
  const bareScript = join(bareDir, "bare.mjs");
  await buildBareScript(join(here, "apps/plane-work-app.ts"), "compute", WORK, bareScript);

  /**
   * Resolves once neither plane runs a container, the first keeps its prepared one (paused), and the engine runs no
   * other container of this run: a container being started or torn down slows the next start.
   */
  async function atRest(): Promise<void> {
    await eventually(() => planes.every((p) => p.status().containers.length === 0) && plane.status().prepared.length === 1, 20_000);
    await lastBare;
    await eventually(async () => {
      // One list per plane: the engine matches every label a filter names.
      const lists = await Promise.all(planes.map((p) => docker.listContainers({ all: true, filters: { label: [`tandem.plane=${p.planeId}`] } })));
      return lists.flat().every((c) => c.State === "paused");
    }, 10_000);
  }

  let lastBare: Promise<void> = Promise.resolve();
  async function bare(): Promise<string> {
    const { line, container } = await startBareContainer(driver, { script: bareScript, controlDir: join(bareDir, "control"), planeId: plane.planeId });
    lastBare = container.kill(); // removed outside the timed part, as the plane's container is
    return line;
  }

  try {
    await driver.prepare();
    const compute = lookup<[number], unknown>("planebench", "compute", { gateway: prepared.url, token: ADMIN_TOKEN });
    const computeFresh = lookup<[number], unknown>("planebench", "compute", { gateway: fresh.url, token: ADMIN_TOKEN });
    const expected = await bare();
    for (const answer of [await compute.remote(WORK), await computeFresh.remote(WORK)]) {
      if (JSON.stringify(answer) !== expected) throw new Error("the sides disagree");
    }
    // A second cold start, after which the plane keeps a prepared container for the function.
    await eventually(() => plane.status().containers.length === 0, 10_000);
    await compute.remote(WORK);

    const sides: [string, () => Promise<unknown>][] = [
      ["(a) cold .remote() → gateway → plane → prepared container", () => compute.remote(WORK)],
      ["(b) bare create + start, same image, app and handler", bare],
      ["(c) cold .remote() on a plane with --prepared 0 → new container", () => computeFresh.remote(WORK)],
    ];
    const samples: number[][] = [[], [], []];
    for (let i = 0; i < n; i++) {
      for (const [k, [, fn]] of sides.entries()) {
        await atRest();
        const t0 = performance.now();
        await fn();
        samples[k]!.push(performance.now() - t0);
      }
    }
    const rows = sides.map(([name], k) => summarize(name, samples[k]!));
    medians[runtime] = { plane: rows[0]!.medianMs, bare: rows[1]!.medianMs, fresh: rows[2]!.medianMs };
    const resumed = prepared.planeOutput.filter((l) => / resumed in \d+ ms \(a prepared container\)/.test(l)).length;
    console.log(
      `bench/plane-cold: ${n} calls per side${tiny ? " (tiny)" : ""}, Docker runtime ${runtime}, image cached; ` +
        `${resumed} of (a)'s cold starts resumed a prepared container`,
    );
    printTable(rows);
    console.log(
      `ratio (a)/(b): median ${(rows[0]!.medianMs / rows[1]!.medianMs).toFixed(3)}  p99 ${(rows[0]!.p99Ms / rows[1]!.p99Ms).toFixed(3)}   (a cold call resumed from a prepared container, made ahead between samples, against a bare create + start; target: median <= 0.5; 1.055 when it was set)`,
    );
    console.log(
      `ratio (c)/(b): median ${(rows[2]!.medianMs / rows[1]!.medianMs).toFixed(3)}  p99 ${(rows[2]!.p99Ms / rows[1]!.p99Ms).toFixed(3)}   (a new container, as a burst past the prepared ones gets: the first round's target <= 1.1)`,
    );
  } finally {
    await Promise.all([prepared.dispose(), fresh.dispose()]);
    await Promise.all(planes.map((p) => driver.cleanup(p.planeId).catch(() => {})));
  }
}
