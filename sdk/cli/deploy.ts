/**
 * `tandem deploy`: bundle the gateway with the app files, write a wrangler
 * configuration beside the bundle (this package's wrangler.toml, with `main`
 * pointed at it), and deploy with wrangler, then put the plane bundles in the
 * gateway's blob bucket. `--dry-run` checks everything without an account or
 * a network.
 */
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { InvalidOptionsError } from "../errors.js";
import { BLOB_KEYS, type SecretInfo } from "../protocol.js";
import type { App } from "../app.js";
import { buildApps } from "./local-stack.js";
import { checkNamedSecrets, declaresNamedSecrets } from "./secret-values.js";
import { PACKAGE_ROOT, stateDir } from "./paths.js";

export interface DeployOptions {
  appFiles: string[];
  dryRun: boolean;
  /** The Worker's name; default `tandem-gateway`. */
  name?: string;
  outDir?: string;
  /** The secrets of the gateway deployed to, to check the app's named secrets against; undefined: no gateway named, not checked. */
  heldSecrets?: () => Promise<SecretInfo[]>;
}

export async function deploy(options: DeployOptions): Promise<number> {
  const outDir = resolve(options.outDir ?? join(stateDir(), "deploy"));
  const { worker: bundle, planes, images, apps } = await buildApps(options.appFiles, outDir, { minify: true, sourceMap: false });
  refuseLocalSecrets(apps);
  if (declaresNamedSecrets(apps)) {
    if (options.heldSecrets) checkNamedSecrets(apps, await options.heldSecrets());
    else console.log("the app declares named secrets: name the gateway they are on (--gateway, or TANDEM_GATEWAY) to check them before deploying");
  }
  const template = await readFile(join(PACKAGE_ROOT, "wrangler.toml"), "utf8");
  let config = template.replace(/^main = .*$/m, `main = "worker.mjs"`);
  if (options.name !== undefined) {
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(options.name)) throw new InvalidOptionsError(`--name "${options.name}" must be lowercase letters, digits and '-'`);
    config = config.replace(/^name = .*$/m, `name = "${options.name}"`);
  }
  // Scheduled functions: one trigger every minute, and the Scheduler decides what is due. Cloudflare's cron triggers
  // read UTC only and number the days of the week differently, so users' expressions are never passed to them.
  const scheduled = apps.flatMap((a) => a.callables.filter((c) => c.spec.schedule).map((c) => `${a.name}::${c.name} (${c.spec.schedule!.description})`));
  if (scheduled.length)
    config += `\n# ${scheduled.length} scheduled function${scheduled.length === 1 ? "" : "s"}: ${scheduled.join(", ")}\n[triggers]\ncrons = ["* * * * *"]\n`;
  const configPath = join(outDir, "wrangler.toml");
  await writeFile(configPath, config);
  console.log(`bundled ${options.appFiles.join(", ")} into ${bundle.path} (${(bundle.bytes / 1024).toFixed(1)} KiB)`);
  const code = await wrangler(["deploy", "--config", configPath, ...(options.dryRun ? ["--dry-run", "--outdir", join(outDir, "dist")] : [])]);
  if (code !== 0) return code;
  // Plane bundles go where planes fetch them: the gateway's blob bucket, by content hash.
  const bucket = /^bucket_name = "(.*)"$/m.exec(config)?.[1] ?? "tandem-blobs";
  for (const plane of planes) {
    // The bundle, and its source map beside it (planes map failed calls' stacks with it).
    for (const [key, file] of [
      [`${bucket}/${BLOB_KEYS.planeBundle(plane.hash)}`, plane.path],
      [`${bucket}/${BLOB_KEYS.planeBundleMap(plane.hash)}`, `${plane.path}.map`],
    ] as const) {
      if (options.dryRun) {
        console.log(`would upload ${file} to r2://${key}`);
        continue;
      }
      const uploaded = await wrangler(["r2", "object", "put", key, "--file", file, "--remote", "--config", configPath]);
      if (uploaded !== 0) return uploaded;
    }
  }
  for (const [hash, json] of images) {
    const file = join(outDir, `image-${hash}.json`);
    await writeFile(file, json);
    if (options.dryRun) {
      console.log(`would upload the image spec ${file} to r2://${bucket}/${BLOB_KEYS.image(hash)}`);
      continue;
    }
    const uploaded = await wrangler(["r2", "object", "put", `${bucket}/${BLOB_KEYS.image(hash)}`, "--file", file, "--remote", "--config", configPath]);
    if (uploaded !== 0) return uploaded;
  }
  return 0;
}

function wrangler(args: string[]): Promise<number> {
  const bin = join(PACKAGE_ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
  return new Promise((resolveCode) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: "inherit", env: { WRANGLER_SEND_METRICS: "false", ...process.env } });
    child.on("exit", (code) => resolveCode(code ?? 1));
  });
}

/** A deployed gateway gets no local secrets yet (their values would have to travel as a Worker secret): say so, naming one. */
function refuseLocalSecrets(apps: App[]): void {
  for (const app of apps) {
    for (const { what, secrets } of app.secretHolders()) {
      const local = secrets.find((s) => s.source.kind !== "name");
      if (local)
        throw new InvalidOptionsError(
          `app "${app.name}": ${what} declares ${local.describe()}, a local secret, and tandem deploy does not send local secrets: store it with tandem secret create NAME KEY=value --gateway <the deployed gateway> and declare Secret.fromName(NAME)`,
        );
    }
  }
}
