/**
 * Deployments and their versions (docs/deploy.md, "Versions and rollback"):
 * what `tandem deploy` records in the deployed gateway once wrangler has
 * uploaded (its files by SHA-256, then the record: the app's next version),
 * and `tandem app history` and `tandem app rollback`, which fetches an old
 * version's files and runs the upload step deploy runs with them.
 */
import { GATEWAY_HELP } from "./config.js";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import type { HttpInvoker } from "../client.js";
import { ForbiddenError, InvalidOptionsError, InvalidRequestError, NotFoundError } from "../errors.js";
import { sha256Hex } from "../hex.js";
import {
  paths,
  scopeAllows,
  type AppsAnswer,
  type TokenInfo,
  type DeploymentFile,
  type DeploymentGit,
  type DeploymentList,
  type DeploymentRecord,
  type DeploymentRecordRequest,
} from "../protocol.js";
import { uploadArtifact } from "./wrangler.js";
import { notAFolder, stateDir } from "./paths.js";
import { style } from "./style.js";
import { parseAppName } from "./choice-option.js";

type GatewayOpts = { gateway?: string; token?: string; env?: string };

/**
 * The files of a deployment as they lie in `outDir` (each given by its path there, with the blob key it also goes
 * to, if any), with their SHA-256 and length: the artifact a record names.
 * @example await artifactOf(".tandem/deploy", [{ path: ".tandem/deploy/worker.mjs" }]); // [{ path: "worker.mjs", sha256: "…", bytes: 1843 }]
 */
export async function artifactOf(outDir: string, files: { path: string; blobKey?: string }[]): Promise<DeploymentFile[]> {
  return Promise.all(
    files.map(async (file) => {
      const bytes = await readFile(file.path);
      return {
        path: relative(outDir, file.path).split("\\").join("/"),
        sha256: await sha256Hex(bytes),
        bytes: bytes.byteLength,
        ...(file.blobKey === undefined ? {} : { blobKey: file.blobKey }),
      };
    }),
  );
}

/**
 * The git commit `dir` is checked out at (short), and whether anything in the checkout differs from it; undefined
 * when `dir` is not in a git checkout (or git is not installed).
 * @example gitStateOf("."); // { commit: "1f994a6", dirty: false }
 */
export function gitStateOf(dir: string): DeploymentGit | undefined {
  const git = (...args: string[]) => execFileSync("git", ["-C", dir, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  try {
    const commit = git("rev-parse", "--short", "HEAD");
    return { commit, dirty: git("status", "--porcelain").length > 0 };
  } catch {
    return undefined;
  }
}

/** @example describeGit({ commit: "1f994a6", dirty: true }); // "1f994a6-dirty" */
export function describeGit(git: DeploymentGit | undefined): string {
  return git === undefined ? "-" : `${git.commit}${git.dirty ? "-dirty" : ""}`;
}

/** The token `tandem deploy` records with, as `GET /v1/whoami` names it. */
export type Recorder = Pick<TokenInfo, "id" | "name" | "scope" | "apps">;

/**
 * Throws, naming the token and what it lacks, unless the gateway takes `client`'s token for recording deployments
 * (scope `deploy`): `tandem deploy` asks before it uploads anything. Answers the token, for `checkMayRecordApps`.
 */
export async function checkMayRecord(client: HttpInvoker): Promise<Recorder> {
  const who = (await client.request("GET", paths.whoami())) as Recorder;
  if (!scopeAllows(who.scope, "deploy"))
    throw new ForbiddenError(
      `token ${who.id} ("${who.name}") has scope "${who.scope}"; recording a deployment in ${client.baseUrl} needs "deploy" (nothing was uploaded)`,
      { token: who.id, scope: who.scope, needs: "deploy" },
    );
  return who;
}

/**
 * Throws unless the token records every app deployed: one restricted to apps (`--app`) would see the Worker deployed
 * with all of them and only its own recorded, the others then out of a rollback's reach.
 * @example checkMayRecordApps(who, ["shop", "blog"], "https://tandem.example.com"); // throws for a token of shop only
 */
export function checkMayRecordApps(who: Recorder, apps: string[], gateway: string): void {
  const beyond = who.apps ? apps.filter((app) => !who.apps!.includes(app)) : [];
  if (beyond.length)
    throw new ForbiddenError(
      `token ${who.id} ("${who.name}") may reach only app${who.apps!.length === 1 ? "" : "s"} ${who.apps!.join(", ")}, not ${beyond.map((a) => `"${a}"`).join(", ")}: its deployment could not be recorded in ${gateway}. Deploy with a token that reaches every app deployed (nothing was uploaded)`,
      { token: who.id, apps: beyond },
    );
}

/**
 * The apps the gateway `client` names serves now that a Worker of `keeps` would serve no more: `tandem deploy` and
 * `tandem app rollback` (`doing`) replace the whole Worker. Throws, before anything is uploaded, when the token does
 * not reach every app served: it may not take off apps it cannot even see.
 * @example const dropped = await droppedApps(client, ["shop"], "a deploy"); // ["blog"]: warn that blog goes
 */
export async function droppedApps(client: HttpInvoker, keeps: string[], doing: string): Promise<string[]> {
  const { apps, othersServed } = (await client.request("GET", paths.apps())) as AppsAnswer;
  if (othersServed)
    throw new ForbiddenError(
      `the Worker at ${client.baseUrl} serves ${othersServed} app${othersServed === 1 ? "" : "s"} this token does not reach; ${doing} replaces the whole Worker, so ${othersServed === 1 ? "it" : "they"} would be served no more: use a deploy token that reaches every app (nothing was uploaded)`,
      { othersServed },
    );
  return apps.map((a) => a.name).filter((name) => !keeps.includes(name));
}

/**
 * Throws unless the gateway `client` names serves the environment its requests address (`--env`): a deployment into
 * another environment is a Worker of its own (`worker`), whose deployments are recorded there, not here. `tandem
 * deploy` asks before it uploads anything, as it asks for the token's scope.
 */
export async function checkServesEnvironment(client: HttpInvoker, app: string, worker: string): Promise<void> {
  try {
    await client.request("GET", paths.deployments(app));
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    const asked = err.details?.env;
    if (typeof asked !== "string") return; // an app not deployed yet: its first deployment is recorded after the upload
    throw new InvalidOptionsError(
      `the gateway at ${client.baseUrl} does not serve environment "${asked}": a deployment into it is the Worker ${worker}, and is recorded there. Name that Worker's URL with --gateway (or TANDEM_GATEWAY), or leave both out to record nothing (nothing was uploaded)`,
      { env: asked },
    );
  }
}

/**
 * Records a deployment of `app` whose files lie in `outDir`: uploads each file (unless `uploaded`: a rollback's came
 * from the gateway), then the record, which the gateway numbers as the app's next version.
 */
export async function recordDeployment(
  client: HttpInvoker,
  app: string,
  outDir: string,
  files: DeploymentFile[],
  extra: Pick<DeploymentRecordRequest, "git" | "rollbackOf" | "apps">,
  uploaded = false,
): Promise<DeploymentRecord> {
  if (!uploaded) for (const file of files) await client.requestBytes("PUT", paths.deploymentFile(app, file.sha256), await readFile(join(outDir, file.path)));
  const worker = files.find((f) => f.path === "worker.mjs")!;
  const request: DeploymentRecordRequest = { codeHash: worker.sha256, files, ...extra };
  return (await client.request("POST", paths.deployments(app), request)) as DeploymentRecord;
}

/** What `tandem app rollback` is told. */
export interface RollbackOptions {
  client: HttpInvoker;
  app: string;
  /** The version to restore; default: the one before the live one. */
  version?: number;
  /** Where the old version's files are written, and left (default: a new folder under .tandem/rollback, removed once done). */
  outDir?: string;
  /** A program to run in wrangler's place (`TANDEM_WRANGLER`). */
  wrangler?: string;
}

/**
 * Deploys an old version of an app again, as a new version: its files fetched from the gateway (each checked
 * against its SHA-256), written as deploy wrote them, uploaded by the same step, then recorded with `rollbackOf`.
 * The other apps its Worker held go back with it, and each is recorded so: a new version of its own, a rollback to
 * its version of that Worker. Local secrets are not part of a deployment's files: the Worker keeps the values last sent.
 * Answers the rolled app's record first, then the others'.
 */
export async function rollback(options: RollbackOptions): Promise<DeploymentRecord[]> {
  const { client, app } = options;
  const { deployments } = (await client.request("GET", paths.deployments(app))) as DeploymentList;
  const live = deployments[0];
  if (!live) throw new InvalidRequestError(`app "${app}" has no deployment recorded here to roll back (tandem deploy … --gateway records them)`, { app });
  if (options.version === undefined && deployments.length < 2)
    throw new InvalidRequestError(`app "${app}" has only version ${live.version}, which is live: there is none before it to roll back to`, { app });
  // The gateway names a version it does not have (404) before anything is fetched.
  const target = options.version === undefined ? deployments[1]! : ((await client.request("GET", paths.deployment(app, options.version))) as DeploymentRecord);
  if (target.version === live.version)
    throw new InvalidRequestError(
      `version ${live.version} is the live version of app "${app}" already; roll back to an older one (tandem app history ${app})`,
      {
        app,
        version: live.version,
      },
    );
  // The Worker is replaced whole: asked before anything is fetched, whether the token may take off what it serves,
  // and record every app the old Worker holds.
  // A token limited to apps sees the others that Worker holds only as their count: it may not deploy them.
  if (target.othersServed)
    throw new ForbiddenError(
      `version ${target.version}'s Worker holds ${target.othersServed} app${target.othersServed === 1 ? "" : "s"} this token does not reach besides ${app}; a rollback deploys that whole Worker again: use a deploy token that reaches every app (nothing was fetched)`,
      { version: target.version, othersServed: target.othersServed },
    );
  const keeps = target.apps ?? [app];
  checkMayRecordApps(await checkMayRecord(client), keeps, client.baseUrl);
  const served = await droppedApps(client, keeps, "a rollback");
  const others = keeps.filter((a) => a !== app);
  // Each other app's version of the same Worker, which it goes back to: its own history names it by the same code.
  const othersBack = await Promise.all(
    others.map(async (other) => {
      const list = (await client.request("GET", paths.deployments(other))) as DeploymentList;
      return { app: other, live: list.deployments[0], version: list.deployments.find((d) => d.codeHash === target.codeHash)?.version };
    }),
  );
  if (options.outDir === undefined) {
    const outDir = await mkdtemp(join(await made(join(stateDir(), "rollback")), `${app}-v${target.version}-`));
    try {
      return await rollbackFrom(outDir, { ...options, live, target, served, othersBack });
    } finally {
      await rm(outDir, { recursive: true, force: true });
    }
  }
  const outDir = options.outDir;
  // Only into a folder of its own: a file left there by something else would go to wrangler with the old version's.
  if (await notAFolder(outDir)) throw new InvalidOptionsError(`--outdir ${outDir} is a file: name a new or empty folder for version ${target.version}'s files`);
  if ((await readdir(outDir).catch(() => [])).length > 0)
    throw new InvalidOptionsError(`--outdir ${outDir} is not empty: name a new or empty folder for version ${target.version}'s files`);
  return rollbackFrom(outDir, { ...options, live, target, served, othersBack });
}

/** The rest of `rollback`, once it is known what goes back: the files fetched into `outDir`, uploaded and recorded. */
async function rollbackFrom(
  outDir: string,
  options: RollbackOptions & {
    live: DeploymentRecord;
    target: DeploymentRecord;
    served: string[];
    othersBack: { app: string; live: DeploymentRecord | undefined; version: number | undefined }[];
  },
): Promise<DeploymentRecord[]> {
  const { client, app, live, target, othersBack } = options;
  for (const file of target.files) {
    const bytes = await client.requestBytes("GET", paths.deploymentFile(app, file.sha256));
    if ((await sha256Hex(bytes)) !== file.sha256)
      throw new Error(`the gateway answered file ${file.path} of version ${target.version} with other bytes than it recorded`);
    await mkdir(dirname(join(outDir, file.path)), { recursive: true });
    await writeFile(join(outDir, file.path), bytes);
  }
  const kept = options.outDir === undefined ? "" : ` into ${outDir}`;
  console.log(`fetched version ${target.version} of app ${app} (${target.files.length} files, code ${target.codeHash.slice(0, 12)})${kept}`);
  if (othersBack.length)
    console.log(style.dim(`  its Worker holds app${othersBack.length === 1 ? "" : "s"} ${othersBack.map((o) => o.app).join(", ")} too: they go back with it`));
  const keeps = target.apps ?? [app];
  const dropped = [...new Set([...(live.apps ?? [app]).filter((a) => !keeps.includes(a)), ...options.served])];
  if (dropped.length)
    console.log(
      style.warn(
        `  the live Worker also serves app${dropped.length === 1 ? "" : "s"} ${dropped.join(", ")}, which version ${target.version}'s does not: ${dropped.length === 1 ? "it is" : "they are"} served no more once it is deployed (deploy ${dropped.length === 1 ? "it" : "them"} again with ${app} to bring ${dropped.length === 1 ? "it" : "them"} back)`,
      ),
    );
  const upload = await uploadArtifact(outDir, target.files, { dryRun: false, ...(options.wrangler ? { wrangler: options.wrangler } : {}) });
  if ("failed" in upload && upload.failed === "deploy")
    throw new Error(`wrangler exited with ${upload.code}; version ${live.version} of app ${app} is still live, and nothing was recorded`);
  // `wrangler deploy` passed: the old Worker runs now, whatever history says, until the rollback is run again.
  if ("failed" in upload)
    throw new Error(
      `version ${target.version}'s Worker is deployed, but wrangler exited with ${upload.code} putting ${upload.key} in the bucket; nothing was recorded, so tandem app history still names version ${live.version} live: run tandem app rollback ${app} ${target.version} again to finish`,
    );
  const extra = { ...(target.git ? { git: target.git } : {}), ...(target.apps ? { apps: target.apps } : {}) };
  const records = [await recordDeployment(client, app, outDir, target.files, { rollbackOf: target.version, ...extra }, true)];
  // The apps that went back with it: each a new version, a rollback to its own version of that Worker where its history
  // has one; one whose live version is that Worker already (rolled back with it before) has nothing new to record.
  for (const other of othersBack) {
    if (other.live?.codeHash === target.codeHash) continue;
    const back = other.version === undefined || other.version === other.live?.version ? {} : { rollbackOf: other.version };
    records.push(await recordDeployment(client, other.app, outDir, target.files, { ...back, ...extra }, true));
  }
  return records;
}

async function made(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Adds `tandem app history` and `tandem app rollback` to the `tandem app` command. */
export function addDeploymentCommands(
  appCommand: Command,
  clientOf: (opts: GatewayOpts) => HttpInvoker,
  tokenHelp: string,
  envHelp: string,
  wranglerCommand: string | undefined,
): void {
  appCommand
    .command("history")
    .description("an app's deployments, newest (live) first: version, time, code, git commit, who, and what a rollback restored")
    .argument("<app>", "the app's name", parseAppName)
    .option("-g, --gateway <url>", GATEWAY_HELP)
    .option("--token <token>", tokenHelp)
    .option("--env <name>", envHelp)
    .option("--json", "print JSON")
    .action(async (app: string, opts: GatewayOpts & { json?: boolean }) => {
      const { deployments } = (await clientOf(opts).request("GET", paths.deployments(app))) as DeploymentList;
      if (opts.json) return console.log(JSON.stringify(deployments, null, 2));
      if (deployments.length === 0) return console.log(`no deployments of app ${app} recorded yet (tandem deploy … --gateway records them)`);
      // As wide as the longest name: a token's name ("bootstrap (TANDEM_ADMIN_TOKEN)") is the one way to tell who deployed.
      const byWidth = Math.max(2, ...deployments.map((d) => d.by.name.length));
      console.log(`${"version".padEnd(8)} ${"deployed".padEnd(20)} ${"code".padEnd(12)} ${"git".padEnd(14)} ${"by".padEnd(byWidth)} note`);
      for (const d of deployments) {
        const note = [d === deployments[0] ? "live" : "", d.rollbackOf === undefined ? "" : `rollback to ${d.rollbackOf}`].filter(Boolean).join(", ");
        console.log(
          `${String(d.version).padEnd(8)} ${new Date(d.createdAt).toISOString().slice(0, 19).replace("T", " ").padEnd(20)} ${d.codeHash.slice(0, 12).padEnd(12)} ${describeGit(d.git).padEnd(14)} ${d.by.name.padEnd(byWidth)} ${note}`,
        );
      }
    });
  appCommand
    .command("rollback")
    .description("deploy an older version of an app again, as a new version (its Worker and plane bundles, as they were deployed)")
    .argument("<app>", "the app's name", parseAppName)
    .argument("[version]", "the version to restore (default: the one before the live one)", parseVersion)
    .option("-g, --gateway <url>", GATEWAY_HELP)
    .option("--token <token>", tokenHelp)
    .option("--env <name>", envHelp)
    .option(
      "--outdir <dir>",
      "where the old version's files are written before they are uploaded, and kept (default: a folder in .tandem/rollback, removed once done)",
    )
    .action(async (app: string, version: number | undefined, opts: GatewayOpts & { outdir?: string }) => {
      const records = await rollback({
        client: clientOf(opts),
        app,
        ...(version === undefined ? {} : { version }),
        ...(opts.outdir ? { outDir: opts.outdir } : {}),
        ...(wranglerCommand ? { wrangler: wranglerCommand } : {}),
      });
      records.forEach((record, i) => {
        const what =
          record.rollbackOf === undefined ? `its Worker of version ${records[0]!.rollbackOf} of ${app}` : `a rollback to version ${record.rollbackOf}`;
        console.log(`${style.ok("✓")} app ${i === 0 ? app : record.app}: version ${record.version}, ${what} (code ${record.codeHash.slice(0, 12)})`);
      });
    });
}

function parseVersion(value: string): number {
  const version = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(version) || version < 1)
    throw new InvalidArgumentError("must be a version number (1, 2, …; tandem app history shows them)");
  return version;
}
