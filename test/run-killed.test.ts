/**
 * `tandem run` killed with SIGKILL (the built CLI as a subprocess, real workerd and Docker): the containers of its
 * plane, one that ended on its own and one still running, are removed by the next run in the same folder, with the
 * folders the killed runs left.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { childEnded } from "./helpers/child-exit.js";
import { CLI, runCli } from "./helpers/cli.js";

const APP = `import { App } from "tandem";
const app = new App("killed-runs");
// Waits: its container ends on its own once its run is gone.
export const slow = app.function({ tier: "plane", timeout: 300 }, async (secs: number) => {
  await new Promise((r) => setTimeout(r, secs * 1000));
  return "slept " + secs;
});
// Holds its container's only thread: the container runs on after its run is gone, until it is removed.
export const spin = app.function({ tier: "plane", timeout: 300 }, (secs: number) => {
  const end = Date.now() + secs * 1000;
  while (Date.now() < end);
  return "spun " + secs;
});
export default app;
`;

it("removes the containers and folders of runs killed before their end, exited or still running, at the next run in the folder", async () => {
  // Before, the next run removed the killed runs' folders and left their containers for good.
  const dir = await mkdtemp(join(tmpdir(), "tandem-run-killed-"));
  const planes: string[] = [];
  try {
    await writeFile(join(dir, "app.ts"), APP);
    // Side by side, each killed once both run: a run removes only what runs already gone left.
    const [ended, running] = [await startedRun(dir, "slow", planes), await startedRun(dir, "spin", planes)];
    for (const run of [ended, running]) run.child.kill("SIGKILL");
    await Promise.all([ended.exited, running.exited]); // reaped: their processes are gone, as the next run checks
    // What each left: the first's container ended with its run (Exited (0), as a user found it), the second's runs on.
    await expect.poll(() => containerStates(ended.planeId), { timeout: 15_000 }).toEqual(["exited"]);
    expect(containerStates(running.planeId)).toEqual(["running"]);

    const next = await runCli(["run", "app.ts::slow", "0"], { cwd: dir });
    expect(next.code, next.stderr).toBe(0);
    expect(next.stdout.trim()).toBe("slept 0");
    for (const left of [ended, running]) {
      expect(containerStates(left.planeId)).toEqual([]);
      expect(next.stderr).toContain(`removed 1 container(s) of plane ${left.planeId}, left by a run killed before its end (process ${left.pid})`);
      for (const kind of ["run-planes", "run-state"]) expect(existsSync(join(dir, ".tandem", kind, String(left.pid)))).toBe(false);
    }
  } finally {
    // Not left to spin for minutes where the run did not remove it.
    for (const planeId of planes) {
      const ids = execFileSync("docker", ["ps", "-aq", "--filter", `label=tandem.plane=${planeId}`])
        .toString()
        .trim();
      if (ids) execFileSync("docker", ["rm", "-f", ...ids.split("\n")]);
    }
    await rm(dir, { recursive: true, force: true });
  }
}, 180_000);

/** Starts `tandem run app.ts::<fn> 120` in `dir`, resolved once its container runs the call. */
async function startedRun(dir: string, fn: string, planes: string[]) {
  const child = spawn(process.execPath, [CLI, "run", `app.ts::${fn}`, "120"], { cwd: dir, env: { ...process.env, NO_COLOR: "1" } });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const exited = childEnded(child);
  const pid = child.pid!;
  const idFile = join(dir, ".tandem", "run-planes", String(pid), "plane-id");
  await expect.poll(() => existsSync(idFile), { timeout: 60_000, message: output }).toBe(true);
  const planeId = (await readFile(idFile, "utf8")).trim();
  planes.push(planeId);
  await expect.poll(() => containerStates(planeId), { timeout: 60_000, message: output }).toEqual(["running"]);
  await expect.poll(() => output, { timeout: 30_000 }).toContain("registered");
  await new Promise((r) => setTimeout(r, 2_000)); // the call, sent once the plane has registered, reaches its container
  return { child, exited, pid, planeId };
}

/** The engine's states (`running`, `exited`) of plane `planeId`'s containers. */
function containerStates(planeId: string): string[] {
  const out = execFileSync("docker", ["ps", "-a", "--filter", `label=tandem.plane=${planeId}`, "--format", "{{.State}}"])
    .toString()
    .trim();
  return out ? out.split("\n") : [];
}
