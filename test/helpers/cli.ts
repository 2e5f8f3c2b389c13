/** Runs the built `tandem` CLI as a subprocess, the way a user does. */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { childEnded } from "./child-exit.js";

export const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface Served {
  url: string;
  output: () => string;
  waitFor(text: string | RegExp, ms?: number): Promise<void>;
  /** Ctrl-C (SIGINT), resolved once serve has exited; one still running after `ms` is killed, and its output thrown. */
  stop(ms?: number): Promise<void>;
  process: ChildProcess;
}

/**
 * `tandem serve <args> --port 0`, resolved once it prints its URL; `cli` is another `tandem` to run (a project's own).
 * `ownGroup`: in a process group of its own, as a terminal starts a command, so a test can signal the whole group as
 * a terminal's Ctrl-C does (`process.kill(-served.process.pid, "SIGINT")`).
 */
export async function startServe(args: string[], cwd = ROOT, env: Record<string, string> = {}, cli = CLI, ownGroup = false): Promise<Served> {
  const child = spawn(process.execPath, [cli, "serve", ...args, ...(args.includes("--port") ? [] : ["--port", "0"])], {
    cwd,
    detached: ownGroup,
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const served: Served = {
    url: "",
    output: () => out,
    process: child,
    async waitFor(text, ms = 30_000) {
      const deadline = Date.now() + ms;
      while (!(typeof text === "string" ? out.includes(text) : text.test(out))) {
        if (child.exitCode !== null) throw new Error(`tandem serve exited (${child.exitCode}) before printing ${text}:\n${out}`);
        if (Date.now() > deadline) throw new Error(`tandem serve did not print ${text} in ${ms} ms:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop(ms = 60_000) {
      if (child.exitCode !== null) return;
      const exited = childEnded(child);
      child.kill("SIGINT");
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), ms)));
      const outcome = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (outcome !== "late") return;
      child.kill("SIGKILL");
      await exited;
      throw new Error(`tandem serve had not exited ${ms} ms after Ctrl-C (killed):\n${out}`);
    },
  };
  await served.waitFor(/gateway ready at (http:\/\/\S+)/);
  served.url = /gateway ready at (http:\/\/\S+)/.exec(out)![1]!;
  return served;
}

/** Runs the CLI to completion. */
export function runCli(
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return runNode([CLI, ...args], options);
}

export function runNode(
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: options.cwd ?? ROOT, env: { ...process.env, NO_COLOR: "1", ...options.env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    void childEnded(child).then((code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
