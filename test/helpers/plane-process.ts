/**
 * `tandem plane` as a child process, the way an operator runs it: started in
 * a folder of its own (which holds its id and what it ran), its output kept,
 * and stopped with its containers removed.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { childEnded } from "./child-exit.js";
import { CLI } from "./cli.js";
import { eventually } from "./gateway.js";
import { SECRET } from "./stack.js";

export interface PlaneProcess {
  child: ChildProcess;
  output: () => string;
  planeId: () => string | undefined;
  /** The URL it gives the gateway, once it has said it. */
  url: () => string | undefined;
  dir: string;
}

/** `tandem plane` in `dir` (a new folder by default; a plane's folder holds its id and what it ran); `env` undefined unsets. */
export async function startPlaneProcess(
  gateway: string,
  args: string[] = [],
  env: Record<string, string | undefined> = {},
  folder?: string,
): Promise<PlaneProcess> {
  const dir = folder ?? (await mkdtemp(join(tmpdir(), "tandem-plane-")));
  const child = spawn(process.execPath, [CLI, "plane", "--gateway", gateway, "--port", "0", ...args], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: "1", TANDEM_PLANE_SECRET: SECRET, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const plane: PlaneProcess = {
    child,
    dir,
    output: () => out,
    planeId: () => /plane (pl-[0-9a-z]+) at/.exec(out)?.[1],
    url: () => /plane pl-[0-9a-z]+ at (http:\/\/\S+) \(/.exec(out)?.[1],
  };
  await eventually(() => plane.planeId() !== undefined || child.exitCode !== null, 30_000);
  return plane;
}

/** Resolves with the process's exit code once it has exited and all it printed has been read. */
export function planeExit(plane: PlaneProcess): Promise<number | null> {
  return childEnded(plane.child);
}

/** Kills the process (SIGKILL) unless it has exited, removes the containers it left, and its folder. */
export async function stopPlaneProcess(plane: PlaneProcess): Promise<void> {
  if (plane.child.exitCode === null && plane.child.signalCode === null) {
    const exited = new Promise((r) => plane.child.once("exit", r));
    plane.child.kill("SIGKILL");
    await exited;
  }
  const id = plane.planeId();
  if (id) await removeContainersOf(id);
  await rm(plane.dir, { recursive: true, force: true });
}

/**
 * Removes every container of plane `planeId` (one killed leaves its containers to its next start on its folder). The
 * engine may refuse a container that is still starting or stopping (`docker rm -f` exits non-zero, under gVisor more
 * often): it is listed and removed again, up to 5 times, half a second apart; then the refusal is thrown.
 */
export async function removeContainersOf(planeId: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const ids = execFileSync("docker", ["ps", "-aq", "--filter", `label=tandem.plane=${planeId}`])
      .toString()
      .split("\n")
      .filter(Boolean);
    if (ids.length === 0) return;
    try {
      execFileSync("docker", ["rm", "-f", ...ids], { stdio: "pipe" });
    } catch (err) {
      if (attempt >= 5) throw err;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
