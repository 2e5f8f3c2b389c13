/**
 * bench/cli-run: the inner loop, `tandem run app.ts::fn` from start to exit,
 * each run a new process with its own ephemeral gateway (and plane), against
 * the bare thing beneath it, in one run, rounds interleaved:
 *   (a) `tandem run` of an edge function, in an app that has a plane function too,
 *   (b) `tandem run` of the same edge function in an app of edge functions only
 *       (bench/edge-call's), which has no plane bundle to build,
 *   (c) a process that bundles a bare Worker doing the same work, starts it on
 *       the same workerd, makes one request and stops it;
 *   (d) `tandem run` of (a)'s app's plane function (a cold container, the image cached),
 *   (e) a bare create + start of the same image running the same handler on the
 *       same Docker engine (as bench/plane-cold's bare side), and its removal.
 *   (f), (g): (a) and (d) just after an edit to the app file (a copy, a comment
 *       added before each run), so that nothing `tandem run` keeps in
 *       .tandem/cache/build is of use: what a run after an edit takes.
 * Reports medians, (a)/(c), (b)/(c), and (d) − (e). Runs the built CLI (`npm run build`).
 *
 *   npx tsx bench/cli-run.ts [--n 5] [--tiny]
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { appendFile, copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { DockerDriver } from "../gpu-plane/drivers/docker.js";
import { buildBareScript, startBareContainer } from "./bare-script.js";
import { benchArgs, printTable, summarize } from "./stats.js";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const { n, tiny } = benchArgs(5, 1);
const WORK = 1000;
const APP = join(here, "apps/run-app.ts");
const CLI = join(root, "dist/cli.js");
if (!existsSync(CLI)) throw new Error("bench/cli-run runs the built CLI: npm run build first");

// Every `tandem run` in a folder of its own, as a user's project; the bare runner is bundled where it finds miniflare.
const cwd = await mkdtemp(join(tmpdir(), "tandem-bench-run-"));
const bareRunner = join(root, ".tandem/bench/bare-worker-once.mjs");
await build({
  entryPoints: [join(here, "bare-worker-once.ts")],
  outfile: bareRunner,
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  packages: "external",
  logLevel: "silent",
});

/** Runs a process to its end; resolves with its stdout, throws with its output when it fails. */
function processOutput(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${args.join(" ")} exited ${code}:\n${out}${err}`))));
  });
}

// The bare plane side: the same handler from the same app module, called directly by a script that prints its
// result, bundled as the plane bundles it, started by create + start (bench/plane-cold.ts does the same).
const driver = new DockerDriver();
const planeId = `pl-bench${randomBytes(3).toString("hex")}`;
const bareDir = join(cwd, "bare-plane");
await mkdir(join(bareDir, "control"), { recursive: true });
const bareScript = join(bareDir, "bare.mjs");
await buildBareScript(APP, "onPlane", WORK, bareScript);
async function barePlane(): Promise<string> {
  const { line, container } = await startBareContainer(driver, { script: bareScript, controlDir: join(bareDir, "control"), planeId });
  await container.kill(); // removed, as `tandem run` removes its container before it exits
  return line;
}

// The edited copy: the app and the module it imports, in the run's folder; each run adds a comment to the app.
const edited = join(cwd, "edited-app.ts");
await copyFile(APP, edited);
await copyFile(join(here, "apps/work.ts"), join(cwd, "work.ts"));
let edits = 0;
const edit = async () => appendFile(edited, `// edit ${++edits}\n`);

const sides: [string, () => Promise<string>][] = [
  ["(a) tandem run, edge fn (app has plane fn)", () => processOutput([CLI, "run", `${APP}::atEdge`, String(WORK)])],
  ["(b) tandem run, edge fn (edge-only app)", () => processOutput([CLI, "run", `${join(here, "apps/edge-call-app.ts")}::compute`, String(WORK)])],
  [
    "(c) bare: bundle + workerd + 1 request",
    () => processOutput([bareRunner, join(root, "bench/apps/bare-worker.ts"), join(cwd, "bare-edge"), `/work/${WORK}`]),
  ],
  ["(d) tandem run, plane fn (cold container)", () => processOutput([CLI, "run", `${APP}::onPlane`, String(WORK)])],
  ["(e) bare: container create + start + run", barePlane],
  ["(f) (a) just after an edit", async () => (await edit(), processOutput([CLI, "run", `${edited}::atEdge`, String(WORK)]))],
  ["(g) (d) just after an edit", async () => (await edit(), processOutput([CLI, "run", `${edited}::onPlane`, String(WORK)]))],
];

try {
  await driver.prepare();
  // Warm-up, and the same answer from every side: the image built, esbuild and workerd read from disk once.
  const answers = [];
  for (const [, run] of sides) answers.push(JSON.stringify(JSON.parse(await run())));
  if (new Set(answers).size !== 1) throw new Error(`the sides disagree: ${answers.join(" / ")}`);

  const samples: number[][] = sides.map(() => []);
  for (let i = 0; i < n; i++) {
    for (const [k, [, run]] of sides.entries()) {
      const t0 = performance.now();
      await run();
      samples[k]!.push(performance.now() - t0);
    }
  }
  const rows = sides.map(([name], k) => summarize(name, samples[k]!));
  console.log(`bench/cli-run: ${n} runs per side${tiny ? " (tiny)" : ""}, each a new process but (e), work(${WORK})`);
  printTable(rows);
  const [a, b, c, d, e, f, g] = rows.map((r) => r.medianMs) as [number, number, number, number, number, number, number];
  console.log(
    `edge:  (a) ${(a / 1000).toFixed(2)} s, (b) ${(b / 1000).toFixed(2)} s; (a)/(c) ${(a / c).toFixed(2)}, (b)/(c) ${(b / c).toFixed(2)}   (target: under 2 s)`,
  );
  console.log(`plane: (d) − (e) ${((d - e) / 1000).toFixed(2)} s   (target: under 1 s)`);
  console.log(`after an edit: (f) ${(f / 1000).toFixed(2)} s, (g) − (e) ${((g - e) / 1000).toFixed(2)} s`);
} finally {
  await driver.cleanup(planeId).catch(() => {});
  await rm(cwd, { recursive: true, force: true });
}
