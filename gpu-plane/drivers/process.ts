/**
 * The development-only driver: each "container" is a plain Node child
 * process. It is NOT a sandbox (no network, filesystem, pid or memory
 * isolation), and the plane says so on every start.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { ImageBuildError, InvalidOptionsError } from "../../sdk/errors.js";
import { CONTAINER_ENV } from "../../sdk/protocol.js";
import { LineSplitter } from "../../sdk/stream-lines.js";
import type { ContainerDriver, ContainerSpec, ExitInfo, StartedContainer } from "./driver.js";

export class ProcessDriver implements ContainerDriver {
  readonly name = "process" as const;
  readonly sandboxed = false;

  async prepare(): Promise<void> {}

  async start(spec: ContainerSpec): Promise<StartedContainer> {
    if (spec.mounts?.length) throw processMountsRefused(spec.mounts.map((m) => m.containerPath));
    const child = spawn(process.execPath, [`--max-old-space-size=${Math.max(64, spec.memoryMiB)}`, spec.bundlePath], {
      env: {
        PATH: process.env.PATH ?? "",
        ...spec.env,
        [CONTAINER_ENV.controlSocket]: join(spec.controlDir, "control.sock"),
        [CONTAINER_ENV.apiSocket]: join(spec.controlDir, "api.sock"),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const listeners: ((stream: "stdout" | "stderr", line: string) => void)[] = [];
    const early: ["stdout" | "stderr", string][] = [];
    for (const stream of ["stdout", "stderr"] as const) {
      const lines = new LineSplitter();
      const emit = (line: string) => {
        if (listeners.length) for (const l of listeners) l(stream, line);
        else early.push([stream, line]);
      };
      child[stream].setEncoding("utf8");
      child[stream].on("data", (chunk: string) => lines.push(chunk).forEach(emit));
      child[stream].on("end", () => lines.end().forEach(emit));
    }
    const exited = new Promise<ExitInfo>((resolve) => child.once("exit", (code) => resolve({ code, oomKilled: false })));
    return {
      id: spec.id,
      runtimeId: String(child.pid),
      onOutput(listener) {
        listeners.push(listener);
        for (const [stream, line] of early.splice(0)) listener(stream, line);
      },
      exited,
      async kill() {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        await exited;
      },
    };
  }

  async cleanup(): Promise<void> {}

  async buildImage(): Promise<string> {
    throw new ImageBuildError("images need the docker runtime; this plane runs functions as plain processes (--runtime process)");
  }
}

/** What a function that mounts volumes at `paths` is told on a plane of the process runtime, before anything is fetched. */
export function processMountsRefused(paths: readonly string[]): InvalidOptionsError {
  return new InvalidOptionsError(`volume mounts (${paths.join(", ")}) need the docker runtime: a plain process has no mounts of its own`);
}
