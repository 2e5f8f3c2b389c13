/**
 * `tandem deploy`: bundle the gateway with the app files, write a wrangler
 * configuration beside the bundle (this package's wrangler.toml, with `main`
 * pointed at it), and deploy with wrangler, then put the plane bundles in the
 * gateway's blob bucket. Local secrets (`Secret.fromDict`, `fromDotenv`) are
 * read now and go with the deployment as the Worker secret
 * `TANDEM_LOCAL_SECRETS`, handed to wrangler on its stdin, never written to a
 * file. `--dry-run` checks everything without an account or a network.
 */
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { SECRET_LIMITS } from "../defaults.js";
import { InvalidOptionsError } from "../errors.js";
import { BLOB_KEYS, DEFAULT_ENV, ENV_NAME_PATTERN, type DeployStrategy, type SecretInfo } from "../protocol.js";
import type { App } from "../app.js";
import { buildApps } from "./local-stack.js";
import { checkNamedSecrets, declaresNamedSecrets, localSecretValues } from "./secret-values.js";
import { PACKAGE_ROOT, stateDir } from "./paths.js";

export interface DeployOptions {
  appFiles: string[];
  dryRun: boolean;
  /** The Worker's name; default `tandem-gateway`. */
  name?: string;
  /** The environment deployed into: `main` is the Worker itself, any other a Worker of its own, `<name>-<env>`, with `TANDEM_ENV` set. */
  env?: string;
  outDir?: string;
  /** The secrets of the gateway deployed to, to check the app's named secrets against; undefined: no gateway named, not checked. */
  heldSecrets?: () => Promise<SecretInfo[]>;
  /** How this version replaces the one before it on the planes (default rolling; see `DEPLOY_STRATEGIES`). */
  strategy?: DeployStrategy;
}

export async function deploy(options: DeployOptions): Promise<number> {
  const outDir = resolve(options.outDir ?? join(stateDir(), "deploy"));
  const {
    worker: bundle,
    planes,
    images,
    apps,
  } = await buildApps(options.appFiles, outDir, {
    minify: true,
    sourceMap: false,
    ...(options.strategy ? { strategy: options.strategy } : {}),
  });
  const local = deployedLocalSecrets(apps, options.appFiles);
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
  // Another environment is a Worker of its own (its Durable Objects, so its state, apart too), told its name.
  if (options.env !== undefined && options.env !== DEFAULT_ENV) {
    if (!ENV_NAME_PATTERN.test(options.env)) throw new InvalidOptionsError(`--env "${options.env}" must be lowercase letters, digits and '-', up to 32`);
    config = config.replace(/^name = "(.*)"$/m, (_, name: string) => `name = "${name}-${options.env}"`);
    config += `\n# environment ${options.env} (docs/deploy.md, "Environments")\n[vars]\nTANDEM_ENV = "${options.env}"\n`;
  }
  // Scheduled functions: one trigger every minute, and the Scheduler decides what is due. Cloudflare's cron triggers
  // read UTC only and number the days of the week differently, so users' expressions are never passed to them.
  const scheduled = apps.flatMap((a) => a.callables.filter((c) => c.spec.schedule).map((c) => `${a.name}::${c.name} (${c.spec.schedule!.description})`));
  if (scheduled.length)
    config += `\n# ${scheduled.length} scheduled function${scheduled.length === 1 ? "" : "s"}: ${scheduled.join(", ")}\n[triggers]\ncrons = ["* * * * *"]\n`;
  const configPath = join(outDir, "wrangler.toml");
  await writeFile(configPath, config);
  console.log(`bundled ${options.appFiles.join(", ")} into ${bundle.path} (${(bundle.bytes / 1024).toFixed(1)} KiB)`);
  if (local) console.log(`${options.dryRun ? "would send" : "sending"} ${local.summary} as the Worker secret TANDEM_LOCAL_SECRETS`);
  const code = await wrangler(
    [
      "deploy",
      "--config",
      configPath,
      ...(local ? ["--secrets-file", "/dev/stdin"] : []),
      ...(options.dryRun ? ["--dry-run", "--outdir", join(outDir, "dist")] : []),
    ],
    local?.file,
  );
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

/** Runs wrangler; `stdin`, when given, is written to its standard input (a secrets file that never touches disk). */
function wrangler(args: string[], stdin?: string): Promise<number> {
  const bin = join(PACKAGE_ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
  return new Promise((resolveCode) => {
    const env = { WRANGLER_SEND_METRICS: "false", ...process.env };
    // Node hands a child a socket as its stdin, which wrangler cannot open as /dev/stdin: `cat` puts a pipe between.
    const child =
      stdin === undefined
        ? spawn(process.execPath, [bin, ...args], { stdio: "inherit", env })
        : spawn("/bin/sh", ["-c", 'cat | "$0" "$@"', process.execPath, bin, ...args], { stdio: ["pipe", "inherit", "inherit"], env });
    if (stdin !== undefined) child.stdin!.end(stdin);
    child.on("exit", (code) => resolveCode(code ?? 1));
  });
}

/**
 * The apps' local secrets as they go with a deployment: the Worker secret `TANDEM_LOCAL_SECRETS` (the same JSON
 * `tandem serve` hands workerd, which the gateway parses with `parseGatewaySettings`), as the secrets file wrangler
 * reads on its stdin, and a line naming what it holds (functions and keys, never a value). Undefined when the apps
 * declare none. Throws naming the limit when they are over what a Worker secret holds.
 * @example const local = deployedLocalSecrets(apps, ["app.ts"]); // { file: '{"TANDEM_LOCAL_SECRETS":"…"}', summary: "local secrets of vault.local (API_KEY, LOCAL)" }
 */
export function deployedLocalSecrets(apps: App[], appFiles: string[]): { file: string; value: string; summary: string } | undefined {
  const values = localSecretValues(apps, appFiles);
  const holders = Object.entries(values).flatMap(([app, byHolder]) =>
    Object.entries(byHolder).map(([holder, list]) => `${app}.${holder} (${[...new Set(list.flatMap((v) => (v ? Object.keys(v) : [])))].join(", ")})`),
  );
  if (holders.length === 0) return undefined;
  const value = JSON.stringify(values);
  const max = SECRET_LIMITS.maxDeployedLocalBytes;
  if (new TextEncoder().encode(value).length > max)
    throw new InvalidOptionsError(
      `the apps' local secrets are ${new TextEncoder().encode(value).length} bytes as JSON, over the ${max} a Worker secret holds: store the larger ones with tandem secret create NAME KEY=value --gateway <the deployed gateway> and declare Secret.fromName(NAME)`,
    );
  return { file: JSON.stringify({ TANDEM_LOCAL_SECRETS: value }), value, summary: `local secrets of ${holders.join(", ")}` };
}
