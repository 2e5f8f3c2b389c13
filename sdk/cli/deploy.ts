/**
 * `tandem deploy`: bundle the gateway with the app files, write a wrangler
 * configuration beside the bundle (this package's wrangler.toml, with `main`
 * pointed at it), and deploy with wrangler, then put the plane bundles in the
 * gateway's blob bucket. Local secrets (`Secret.fromDict`, `fromDotenv`) are
 * read now and go with the deployment as the Worker secret
 * `TANDEM_LOCAL_SECRETS`, handed to wrangler on its stdin, never written to a
 * file. With a gateway named, the deployment is then recorded there as the
 * app's next version, its files uploaded for a rollback (deployments.ts).
 * `--dry-run` checks everything without an account or a network.
 */
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { HttpInvoker } from "../client.js";
import { SECRET_LIMITS } from "../defaults.js";
import { ForbiddenError, InvalidOptionsError } from "../errors.js";
import { BLOB_KEYS, DEFAULT_ENV, ENV_NAME_PATTERN, type DeployStrategy, type SecretInfo } from "../protocol.js";
import type { App } from "../app.js";
import { BuildCache } from "./build-cache.js";
import { buildApps } from "./local-stack.js";
import { checkNamedSecrets, declaresNamedSecrets, localSecretValues } from "./secret-values.js";
import {
  artifactOf,
  checkMayRecord,
  checkMayRecordApps,
  checkServesEnvironment,
  describeGit,
  droppedApps,
  gitStateOf,
  recordDeployment,
} from "./deployments.js";
import { PACKAGE_ROOT, notAFolder, stateDir } from "./paths.js";
import { WORKER_NAME_PATTERN, uploadArtifact } from "./wrangler.js";
import { style } from "./style.js";

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
  /** The deployed gateway, to record the deployment in once wrangler has uploaded it; undefined: no gateway named, not recorded. */
  recordAt?: HttpInvoker;
  /** A program to run in wrangler's place (`TANDEM_WRANGLER`): a test and CI hook. */
  wrangler?: string;
  /** How this version replaces the one before it on the planes (default rolling; see `DEPLOY_STRATEGIES`). */
  strategy?: DeployStrategy;
}

/** The file that marks a folder `tandem deploy` wrote into: it was empty then, so all it holds is an earlier deployment's. */
const DEPLOY_MARK = ".tandem-deploy";

/**
 * Empties the deploy folder of an earlier deployment's files, before the build writes this one's. wrangler uploads
 * every module file under the folder (`no_bundle`: each `.wasm`, `.bin`, `.txt`), so a file left there (a removed
 * WebAssembly function's module, wrangler's own dry-run output in `dist/`) went up with the Worker, and each dry run
 * nested its output one folder deeper. `.tandem/deploy` (`own`) is Tandem's; an `--outdir` is emptied only when it
 * is new or empty, or an earlier deploy marked it, and refused when it holds anything else.
 * @example await emptyDeployFolder(".tandem/deploy", true);
 */
async function emptyDeployFolder(outDir: string, own: boolean): Promise<void> {
  const entries = await readdir(outDir).catch(() => [] as string[]);
  if (entries.length > 0 && !own && !entries.includes(DEPLOY_MARK))
    throw new InvalidOptionsError(
      `--outdir ${outDir} holds files tandem deploy did not write, which wrangler would upload with the Worker: name a new or empty folder`,
    );
  for (const entry of entries) await rm(join(outDir, entry), { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, DEPLOY_MARK), "Written by tandem deploy, and emptied before each deploy into this folder.\n");
}

export async function deploy(options: DeployOptions): Promise<number> {
  const outDir = resolve(options.outDir ?? join(stateDir(), "deploy"));
  if (await notAFolder(outDir)) {
    throw new InvalidOptionsError(`--outdir ${outDir} is a file: name a folder for the deployment's files`);
  }
  // A deployment that could not be recorded is one rollback cannot reach: the token is checked before anything is uploaded.
  const recorder = options.recordAt && !options.dryRun ? await checkMayRecord(options.recordAt) : undefined;
  // Taken before the build, so that it describes what was bundled.
  const git = options.recordAt && !options.dryRun ? gitStateOf(dirname(resolve(options.appFiles[0]!))) : undefined;
  await emptyDeployFolder(outDir, options.outDir === undefined);
  const {
    worker: bundle,
    planes,
    images,
    apps,
  } = await buildApps(options.appFiles, outDir, {
    minify: true,
    sourceMap: false,
    // Each plane bundle joins the runtime (built once, kept) with its app's module: planes load it from V8's code cache.
    planeRuntimeApart: new BuildCache(join(stateDir(), "cache", "build")),
    ...(options.strategy ? { strategy: options.strategy } : {}),
  });
  const local = deployedLocalSecrets(apps, options.appFiles);
  if (declaresNamedSecrets(apps)) {
    // A token of some apps only may not list the gateway's secrets (they are every app's): the deploy goes on unchecked.
    const held =
      options.heldSecrets && (await options.heldSecrets().catch((err: unknown) => (err instanceof ForbiddenError ? undefined : Promise.reject(err))));
    if (held) checkNamedSecrets(apps, held, undefined, options.env);
    else if (options.heldSecrets)
      console.log(
        style.warn(
          "the app's named secrets were not checked: this token reaches only some apps, and the gateway's secrets are every app's (a missing one fails the calls that declare it; tandem secret list with a token for every app shows them)",
        ),
      );
    else console.log("the app declares named secrets: name the gateway they are on (--gateway, or TANDEM_GATEWAY) to check them before deploying");
  }
  const template = await readFile(join(PACKAGE_ROOT, "wrangler.toml"), "utf8");
  let config = template.replace(/^main = .*$/m, `main = "worker.mjs"`);
  if (options.name !== undefined) {
    if (!WORKER_NAME_PATTERN.test(options.name)) throw new InvalidOptionsError(`--name "${options.name}" must be lowercase letters, digits and '-'`);
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
  if (recorder)
    checkMayRecordApps(
      recorder,
      apps.map((a) => a.name),
      options.recordAt!.baseUrl,
    );
  if (options.recordAt && !options.dryRun && apps[0]) {
    await checkServesEnvironment(options.recordAt, apps[0].name, /^name = "(.*)"$/m.exec(config)?.[1] ?? "of that environment");
  }
  await writeFile(configPath, config);
  console.log(`bundled ${options.appFiles.join(", ")} into ${bundle.path} (${(bundle.bytes / 1024).toFixed(1)} KiB)`);
  if (options.recordAt && !options.dryRun) await warnOfDroppedApps(options.recordAt, apps);
  if (local) console.log(`${options.dryRun ? "would send" : "sending"} ${local.summary} as the Worker secret TANDEM_LOCAL_SECRETS`);
  // Image specs are files of the deployment like the rest: written beside the bundles, uploaded, kept for a rollback.
  for (const [hash, json] of images) await writeFile(join(outDir, `image-${hash}.json`), json);
  const artifact = await artifactOf(outDir, [
    { path: bundle.path },
    { path: configPath },
    ...bundle.modules.map((m) => ({ path: m.path })),
    ...planes.flatMap((plane) => [
      { path: plane.path, blobKey: BLOB_KEYS.planeBundle(plane.hash) },
      { path: `${plane.path}.map`, blobKey: BLOB_KEYS.planeBundleMap(plane.hash) },
    ]),
    ...[...images.keys()].map((hash) => ({ path: join(outDir, `image-${hash}.json`), blobKey: BLOB_KEYS.image(hash) })),
  ]);
  const upload = await uploadArtifact(outDir, artifact, {
    dryRun: options.dryRun,
    ...(local ? { localSecrets: local.file } : {}),
    ...(options.wrangler ? { wrangler: options.wrangler } : {}),
  });
  if ("failed" in upload) {
    const recorded = options.recordAt && !options.dryRun ? ", and nothing was recorded" : "";
    if (upload.failed === "deploy")
      throw new Error(`wrangler ${options.dryRun ? "deploy --dry-run" : "deploy"} exited with ${upload.code}: nothing was deployed${recorded}`);
    // The Worker is replaced already: saying nothing changed would leave a new Worker running unannounced.
    throw new Error(
      `the Worker is deployed, but wrangler exited with ${upload.code} putting ${upload.key} in the bucket, so its plane calls may find no bundle${recorded}: run the same tandem deploy again to finish`,
    );
  }
  if (options.dryRun) return 0;
  if (!options.recordAt) {
    console.log(
      "not recorded: name the deployed gateway (--gateway, or TANDEM_GATEWAY) to record it, see its versions (tandem app history) and roll back (docs/deploy.md)",
    );
    return 0;
  }
  for (const app of apps) {
    const record = await recordDeployment(options.recordAt, app.name, outDir, artifact, { apps: apps.map((a) => a.name), ...(git ? { git } : {}) }).catch(
      (err: unknown) => {
        console.error(`the Worker is deployed, but app ${app.name}'s deployment could not be recorded in ${options.recordAt!.baseUrl}:`);
        throw err;
      },
    );
    console.log(`${style.ok("✓")} app ${app.name}: version ${record.version}, code ${record.codeHash.slice(0, 12)}${git ? `, git ${describeGit(git)}` : ""}`);
  }
  return 0;
}

/**
 * Says which apps the deployed gateway serves now that this deploy does not bundle: the Worker is replaced whole, so
 * they are served no more, while their history still names a live version.
 */
async function warnOfDroppedApps(gateway: HttpInvoker, apps: App[]): Promise<void> {
  const dropped = await droppedApps(
    gateway,
    apps.map((a) => a.name),
    "a deploy",
  );
  if (dropped.length === 0) return;
  const one = dropped.length === 1;
  console.log(
    style.warn(
      `the Worker at ${gateway.baseUrl} serves app${one ? "" : "s"} ${dropped.join(", ")} too, which this deploy does not bundle: ${one ? "it is" : "they are"} served no more once it is deployed (name ${one ? "its file" : "their files"} too to keep ${one ? "it" : "them"})`,
    ),
  );
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
  // A function or class by its name (vault.local); a web endpoint, web app or agent as what it is (vault's endpoint "hook").
  const named = (app: string, holder: string) => {
    const what = apps
      .find((a) => a.name === app)
      ?.secretHolders()
      .find((h) => h.holder === holder)?.what;
    return holder.startsWith("web/") && what ? `${app}'s ${what}` : `${app}.${holder}`;
  };
  const holders = Object.entries(values).flatMap(([app, byHolder]) =>
    Object.entries(byHolder).map(([holder, list]) => `${named(app, holder)} (${[...new Set(list.flatMap((v) => (v ? Object.keys(v) : [])))].join(", ")})`),
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
