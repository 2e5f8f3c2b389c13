/**
 * The upload step of `tandem deploy` and `tandem app rollback`, the one place
 * wrangler runs for them: `wrangler deploy` of a deploy folder's
 * wrangler.toml, then the files the gateway's blob bucket holds put there.
 * `TANDEM_WRANGLER` names another program to run in wrangler's place, with
 * the same arguments: a hook for tests and CI (docs/deploy.md).
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { DeploymentFile } from "../protocol.js";
import { PACKAGE_ROOT } from "./paths.js";

/** A Worker's name as Cloudflare takes it (`--name` of `tandem deploy` and `tandem token bootstrap`). */
export const WORKER_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** What the upload step is told: a dry run, the local secrets to send (wrangler's secrets file), the wrangler to run. */
export interface UploadOptions {
  dryRun: boolean;
  localSecrets?: string;
  wrangler?: string;
}

/**
 * How the upload step ended: wrangler's exit code (0 when every step passed) and, when a step failed, which. A
 * failed `r2 object put` comes after `wrangler deploy` has replaced the Worker: the new one is live, its bucket
 * files only in part.
 */
export type UploadOutcome = { code: 0 } | { code: number; failed: "deploy" } | { code: number; failed: "bucket"; key: string };

/**
 * The upload step of `tandem deploy` and `tandem app rollback`: `wrangler deploy` of the folder's wrangler.toml
 * (the Worker and the modules beside it), then each file with a blob key put at that key of the gateway's bucket
 * (plane bundles, their source maps, image specs). Stops at the first step that fails.
 * @example const outcome = await uploadArtifact(".tandem/deploy", artifact, { dryRun: false }); // { code: 0 }
 */
export async function uploadArtifact(outDir: string, artifact: DeploymentFile[], options: UploadOptions): Promise<UploadOutcome> {
  const configPath = join(outDir, "wrangler.toml");
  const code = await wrangler(
    [
      "deploy",
      "--config",
      configPath,
      ...(options.localSecrets ? ["--secrets-file", "/dev/stdin"] : []),
      ...(options.dryRun ? ["--dry-run", "--outdir", join(outDir, "dist")] : []),
    ],
    options.localSecrets,
    options.wrangler,
  );
  if (code !== 0) return { code, failed: "deploy" };
  // Plane bundles go where planes fetch them: the gateway's blob bucket, by content hash.
  const bucket = /^bucket_name = "(.*)"$/m.exec(await readFile(configPath, "utf8"))?.[1] ?? "tandem-blobs";
  for (const file of artifact) {
    if (file.blobKey === undefined) continue;
    const key = `${bucket}/${file.blobKey}`;
    if (options.dryRun) {
      console.log(`would upload ${join(outDir, file.path)} to r2://${key}`);
      continue;
    }
    const uploaded = await wrangler(
      ["r2", "object", "put", key, "--file", join(outDir, file.path), "--remote", "--config", configPath],
      undefined,
      options.wrangler,
    );
    if (uploaded !== 0) return { code: uploaded, failed: "bucket", key };
  }
  return { code: 0 };
}

/**
 * Where the wrangler Tandem depends on is: found as Node finds Tandem's own dependencies, so in a project that
 * installed Tandem (npm puts wrangler beside it, in the project's node_modules) as in a checkout.
 */
function wranglerBin(): string | undefined {
  try {
    return createRequire(join(PACKAGE_ROOT, "package.json")).resolve("wrangler/bin/wrangler.js");
  } catch {
    return undefined;
  }
}

/** Whether this command has said that a stand-in runs in wrangler's place (`wrangler`). */
let toldStandIn = false;

/**
 * Runs wrangler; `stdin`, when given, is written to its standard input (a secrets file that never touches disk).
 * `command`: another program to run in its place, with the same arguments (`TANDEM_WRANGLER`, a test and CI hook).
 */
export function wrangler(args: string[], stdin?: string, command?: string): Promise<number> {
  const bin = command === undefined ? wranglerBin() : undefined;
  if (command === undefined && bin === undefined) {
    console.error(`wrangler, which Tandem depends on, is not installed beside it (${PACKAGE_ROOT}): npm install, or set TANDEM_WRANGLER`);
    return Promise.resolve(127);
  }
  const program = command === undefined ? [process.execPath, bin!] : [command];
  // A stand-in (a test's, CI's) is said once a command, on stderr: left set by mistake, its deploys would look real.
  if (command !== undefined && !toldStandIn) {
    toldStandIn = true;
    console.error(`(TANDEM_WRANGLER: running ${command} in wrangler's place)`);
  }
  return new Promise((resolveCode) => {
    const env = { WRANGLER_SEND_METRICS: "false", ...process.env };
    // Node hands a child a socket as its stdin, which wrangler cannot open as /dev/stdin: `cat` puts a pipe between.
    const child =
      stdin === undefined
        ? spawn(program[0]!, [...program.slice(1), ...args], { stdio: "inherit", env })
        : spawn("/bin/sh", ["-c", 'cat | "$0" "$@"', ...program, ...args], { stdio: ["pipe", "inherit", "inherit"], env });
    if (stdin !== undefined) child.stdin!.end(stdin);
    child.on("error", (err) => {
      console.error(`could not run ${program.join(" ")}: ${err.message}`);
      resolveCode(127);
    });
    child.on("exit", (code) => resolveCode(code ?? 1));
  });
}
