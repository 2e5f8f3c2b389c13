/**
 * Deployments and their versions, against a real gateway in workerd: `tandem deploy` (the built CLI) records each
 * deployment (version, code hash, git commit, the token's name) with its files, `tandem app history` lists them,
 * and `tandem app rollback` fetches an old version's files and hands wrangler exactly the old Worker's bytes.
 * Wrangler itself is stood in for (`TANDEM_WRANGLER`, test/fixtures/stand-in-wrangler.mjs): no Cloudflare account.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Hex } from "../sdk/hex.js";
import { BLOB_KEYS, type DeploymentList, type DeploymentRecord, type TokenCreateAnswer } from "../sdk/protocol.js";
import { runCli } from "./helpers/cli.js";
import { ADMIN_TOKEN, startTestGateway, type TestGateway } from "./helpers/gateway.js";

const STAND_IN = new URL("./fixtures/stand-in-wrangler.mjs", import.meta.url).pathname;
const APP_SOURCE = (greeting: string) => `import { App } from "tandem";

const app = new App("history");

export const greet = app.function({ tier: "edge" }, (name: string) => \`${greeting} \${name}\`);

export const heavy = app.function({ tier: "plane", cpu: 0.1, memory: 128 }, (n: number) => n * 2);

export default app;
`;

type WranglerRun = { args: string[]; worker?: string; key?: string; file?: string };

let gw: TestGateway;
let dir: string;
let project: string;
let deployToken: TokenCreateAnswer;
let callToken: TokenCreateAnswer;
let commit: string;

const git = (...args: string[]) =>
  execFileSync("git", ["-C", project, "-c", "user.email=test@example.com", "-c", "user.name=test", ...args], { encoding: "utf8" }).trim();
const log = () => join(dir, "wrangler.log");
const wranglerRuns = async (): Promise<WranglerRun[]> =>
  (await readFile(log(), "utf8").catch(() => ""))
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as WranglerRun);
/** A command run with the stand-in wrangler; its stderr without the line saying the stand-in ran (cli.test.ts checks it). */
const cli = async (args: string[], token = deployToken.token, env: Record<string, string> = {}) => {
  const ran = await runCli(args, { cwd: project, env: { TANDEM_TOKEN: token, TANDEM_WRANGLER: STAND_IN, WRANGLER_STAND_IN_LOG: log(), ...env } });
  return { ...ran, stderr: ran.stderr.replace(`(TANDEM_WRANGLER: running ${STAND_IN} in wrangler's place)\n`, "") };
};
const api = (path: string, token: string, init: RequestInit = {}) =>
  fetch(gw.url + path, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) } });
const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;
const history = async (): Promise<DeploymentRecord[]> => {
  const { code, stdout, stderr } = await cli(["app", "history", "history", "--gateway", gw.url, "--json"]);
  expect(stderr).toBe("");
  expect(code).toBe(0);
  return JSON.parse(stdout) as DeploymentRecord[];
};

async function createToken(name: string, scope: string, apps?: string[]): Promise<TokenCreateAnswer> {
  const res = await api("/v1/tokens", ADMIN_TOKEN, {
    method: "POST",
    body: JSON.stringify({ name, scope, ...(apps ? { apps } : {}) }),
    headers: { "content-type": "application/json" },
  });
  expect(res.status).toBe(201);
  return (await res.json()) as TokenCreateAnswer;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tandem-deployments-"));
  project = join(dir, "project");
  execFileSync("mkdir", [project]);
  await writeFile(join(project, "app.ts"), APP_SOURCE("hello"));
  git("init", "-q");
  git("add", "app.ts");
  git("commit", "-q", "-m", "first");
  commit = git("rev-parse", "--short", "HEAD");
  gw = await startTestGateway(join(project, "app.ts"));
  deployToken = await createToken("ci-deployer of the release pipeline", "deploy");
  callToken = await createToken("caller", "call");
}, 120_000);

afterAll(async () => {
  await gw?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("tandem deploy, history and rollback", () => {
  it("records a deployment after wrangler uploads it: version 1, the Worker's hash, the git commit, the token's name", async () => {
    const { code, stdout, stderr } = await cli(["deploy", "app.ts", "--outdir", join(dir, "out1"), "--gateway", gw.url]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const worker = await sha256Hex(await readFile(join(dir, "out1", "worker.mjs")));
    expect(stdout).toContain(`✓ app history: version 1, code ${worker.slice(0, 12)}, git ${commit}`);
    const [deployed, ...puts] = await wranglerRuns();
    expect(deployed!.args.slice(0, 3)).toEqual(["deploy", "--config", join(dir, "out1", "wrangler.toml")]);
    expect(deployed!.worker).toBe(worker);
    expect(puts.map((p) => p.key)).toEqual([expect.stringMatching(/^tandem-blobs\/bundles\/[0-9a-f]{64}\.mjs$/), expect.stringMatching(/\.mjs\.map$/)]);

    const [v1] = await history();
    expect(v1).toMatchObject({
      app: "history",
      env: "main",
      version: 1,
      codeHash: worker,
      git: { commit, dirty: false },
      by: { id: deployToken.id, name: "ci-deployer of the release pipeline" },
    });
    expect(v1!.rollbackOf).toBeUndefined();
    expect(v1!.files.map((f) => f.path)).toEqual(expect.arrayContaining(["worker.mjs", "wrangler.toml", "plane/plane-app.mjs", "plane/plane-app.mjs.map"]));
    // Every file is kept in the gateway's bucket by its hash, the plane bundle too.
    const keys = await gw.blobKeys();
    for (const file of v1!.files) expect(keys).toContain(BLOB_KEYS.deploymentFile(file.sha256));
  });

  it("numbers the next deployment 2, marked dirty when the checkout has uncommitted changes, and lists it first", async () => {
    await writeFile(join(project, "app.ts"), APP_SOURCE("good day"));
    const { code, stderr } = await cli(["deploy", "app.ts", "--outdir", join(dir, "out2"), "--gateway", gw.url]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const [v2, v1] = await history();
    expect(v2).toMatchObject({ version: 2, git: { commit, dirty: true }, by: { name: "ci-deployer of the release pipeline" } });
    expect(v2!.codeHash).not.toBe(v1!.codeHash);
    expect(v1!.version).toBe(1);

    const table = await cli(["app", "history", "history", "--gateway", gw.url]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^version\s+deployed\s+code\s+git\s+by\s+note$/);
    expect(lines[1]).toMatch(
      new RegExp(
        `^2\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\s+${v2!.codeHash.slice(0, 12)}\\s+${commit}-dirty\\s+ci-deployer of the release pipeline\\s+live$`,
      ),
    );
    expect(lines[2]).toMatch(new RegExp(`^1\\s+.*\\s+${commit}\\s+ci-deployer of the release pipeline\\s*$`));
  });

  it("rolls back to the version before the live one as a new version, handing wrangler exactly the old Worker and plane bundle", async () => {
    const before = (await wranglerRuns()).length;
    const { code, stdout, stderr } = await cli(["app", "rollback", "history", "--gateway", gw.url, "--outdir", join(dir, "rolled")]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const [v3, , v1] = await history();
    expect(stdout).toContain(`✓ app history: version 3, a rollback to version 1 (code ${v1!.codeHash.slice(0, 12)})`);
    expect(v3).toMatchObject({
      version: 3,
      rollbackOf: 1,
      codeHash: v1!.codeHash,
      git: v1!.git,
      files: v1!.files,
      by: { name: "ci-deployer of the release pipeline" },
    });

    const runs = (await wranglerRuns()).slice(before);
    const firstDeploy = (await wranglerRuns())[0]!;
    expect(runs[0]!.args.slice(0, 3)).toEqual(["deploy", "--config", join(dir, "rolled", "wrangler.toml")]);
    expect(runs[0]!.worker).toBe(firstDeploy.worker); // the very bytes version 1 deployed
    expect(runs[0]!.worker).toBe(await sha256Hex(await readFile(join(dir, "out1", "worker.mjs"))));
    const bundle = v1!.files.find((f) => f.path === "plane/plane-app.mjs")!;
    expect(runs.slice(1)).toContainEqual(expect.objectContaining({ key: `tandem-blobs/${bundle.blobKey}`, file: bundle.sha256 }));
    expect(await readFile(join(dir, "rolled", "wrangler.toml"), "utf8")).toBe(await readFile(join(dir, "out1", "wrangler.toml"), "utf8"));
  });

  it("rolls back to a version named, and refuses the live one, an unknown one, an unknown app, a folder in use and a file before running wrangler", async () => {
    const before = (await wranglerRuns()).length;
    const live = await cli(["app", "rollback", "history", "3", "--gateway", gw.url]);
    expect(live.code).not.toBe(0);
    expect(live.stderr).toContain('version 3 is the live version of app "history" already');
    const unknown = await cli(["app", "rollback", "history", "9", "--gateway", gw.url]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('app "history" has no version 9 in environment "main" (versions are 1 to 3');
    const noApp = await cli(["app", "rollback", "nosuch", "--gateway", gw.url]);
    expect(noApp.code).not.toBe(0);
    expect(noApp.stderr).toContain('no deployment of app "nosuch" is recorded in environment "main"');
    const notEmpty = await cli(["app", "rollback", "history", "1", "--gateway", gw.url, "--outdir", join(dir, "out1")]);
    expect(notEmpty.code).not.toBe(0);
    expect(notEmpty.stderr).toContain(`--outdir ${join(dir, "out1")} is not empty`);
    const aFile = await cli(["app", "rollback", "history", "1", "--gateway", gw.url, "--outdir", join(project, "app.ts")]);
    expect(aFile.code).toBe(2);
    expect(aFile.stderr).toBe(`error: --outdir ${join(project, "app.ts")} is a file: name a new or empty folder for version 1's files\n`);
    const notNumber = await cli(["app", "rollback", "history", "two", "--gateway", gw.url]);
    expect(notNumber.code).not.toBe(0);
    expect(notNumber.stderr).toContain("must be a version number");
    expect((await wranglerRuns()).length).toBe(before);

    const named = await cli(["app", "rollback", "history", "2", "--gateway", gw.url, "--outdir", join(dir, "rolled2")]);
    expect(named.stderr).toBe("");
    expect(named.code).toBe(0);
    const [v4, , v2] = (await history()).slice(0, 3);
    expect(v4).toMatchObject({ version: 4, rollbackOf: 2, codeHash: v2!.codeHash });
    expect((await wranglerRuns())[before]!.worker).toBe(v2!.codeHash);
  });

  it("refuses a token without the deploy scope (403) before uploading, records nothing without a gateway named or when wrangler fails", async () => {
    const denied = await cli(["app", "rollback", "history", "1", "--gateway", gw.url], callToken.token);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/scope "call".*needs "deploy"/);
    const listed = await cli(["app", "history", "history", "--gateway", gw.url], callToken.token);
    expect(listed.stderr).toMatch(/needs "deploy"/);

    const versions = (await history()).length;
    const before = (await wranglerRuns()).length;
    const callDeploy = await cli(["deploy", "app.ts", "--outdir", join(dir, "out-call"), "--gateway", gw.url], callToken.token);
    expect(callDeploy.code).not.toBe(0);
    expect(callDeploy.stderr).toContain(
      `token ${callToken.id} ("caller") has scope "call"; recording a deployment in ${gw.url} needs "deploy" (nothing was uploaded)`,
    );
    expect((await wranglerRuns()).length).toBe(before);
    const unrecorded = await cli(["deploy", "app.ts", "--outdir", join(dir, "out-unrecorded")]);
    expect(unrecorded.code).toBe(0);
    expect(unrecorded.stdout).toContain("not recorded: name the deployed gateway (--gateway, or TANDEM_GATEWAY)");
    expect((await wranglerRuns()).length).toBe(before + 3); // it deployed: the Worker, the plane bundle and its map
    const failed = await cli(["deploy", "app.ts", "--outdir", join(dir, "out-failed"), "--gateway", gw.url], deployToken.token, {
      WRANGLER_STAND_IN_FAIL: "1",
    });
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain("error: wrangler deploy exited with 1: nothing was deployed, and nothing was recorded\n");
    const failedRollback = await cli(["app", "rollback", "history", "1", "--gateway", gw.url], deployToken.token, { WRANGLER_STAND_IN_FAIL: "1" });
    expect(failedRollback.code).not.toBe(0);
    expect(failedRollback.stderr).toContain("nothing was recorded");
    expect((await history()).length).toBe(versions);
  });

  it("says the Worker is deployed when only putting a plane bundle in the bucket failed, and a rollback run again finishes it", async () => {
    const [live] = await history();
    const failed = await cli(["deploy", "app.ts", "--outdir", join(dir, "out-bucket"), "--gateway", gw.url], deployToken.token, {
      WRANGLER_STAND_IN_FAIL: "r2",
    });
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toMatch(
      /^error: the Worker is deployed, but wrangler exited with 1 putting tandem-blobs\/bundles\/[0-9a-f]{64}\.mjs in the bucket, so its plane calls may find no bundle, and nothing was recorded: run the same tandem deploy again to finish$/m,
    );
    expect(failed.stderr).not.toContain("nothing was deployed");

    const rolled = await cli(["app", "rollback", "history", "1", "--gateway", gw.url], deployToken.token, { WRANGLER_STAND_IN_FAIL: "r2" });
    expect(rolled.code).not.toBe(0);
    expect(rolled.stderr).toContain(`error: version 1's Worker is deployed, but wrangler exited with 1 putting tandem-blobs/bundles/`);
    expect(rolled.stderr).toContain(
      `nothing was recorded, so tandem app history still names version ${live!.version} live: run tandem app rollback history 1 again to finish\n`,
    );
    expect(rolled.stderr).not.toContain("is still live");
    expect((await history())[0]!.version).toBe(live!.version);
    const again = await cli(["app", "rollback", "history", "1", "--gateway", gw.url]);
    expect(again.stderr).toBe("");
    expect(again.code).toBe(0);
    expect((await history())[0]).toMatchObject({ version: live!.version + 1, rollbackOf: 1 });
  });

  it("says which apps a rollback takes off the Worker when the old version's Worker did not hold them, and which it takes back with it", async () => {
    await writeFile(
      join(project, "second.ts"),
      `import { App } from "tandem";\n\nconst app = new App("second");\n\nexport const ping = app.function({ tier: "edge" }, () => "pong");\n\nexport default app;\n`,
    );
    const both = await cli(["deploy", "app.ts", "second.ts", "--outdir", join(dir, "out-both"), "--gateway", gw.url]);
    expect(both.stderr).toBe("");
    expect(both.code).toBe(0);
    const [together, alone] = await history();
    expect(together!.apps).toEqual(["history", "second"]);
    expect(alone!.apps ?? ["history"]).toEqual(["history"]);

    const back = await cli(["app", "rollback", "history", "--gateway", gw.url, "--outdir", join(dir, "rolled-alone")]);
    expect(back.stderr).toBe("");
    expect(back.code).toBe(0);
    expect(back.stdout).toContain(
      `the live Worker also serves app second, which version ${alone!.version}'s does not: it is served no more once it is deployed (deploy it again with history to bring it back)`,
    );
    const forth = await cli(["app", "rollback", "history", String(together!.version), "--gateway", gw.url, "--outdir", join(dir, "rolled-both")]);
    expect(forth.code).toBe(0);
    expect(forth.stdout).toContain("its Worker holds app second too: they go back with it");
    expect(forth.stdout).not.toContain("served no more");
  });

  it("refuses, before wrangler runs, a deploy of several apps with a token restricted to some of them", async () => {
    const restricted = await createToken("history-ci", "deploy", ["history"]);
    const versions = (await history()).length;
    const before = (await wranglerRuns()).length;
    const both = await cli(["deploy", "app.ts", "second.ts", "--outdir", join(dir, "out-restricted"), "--gateway", gw.url], restricted.token);
    expect(both.code).toBe(2);
    expect(both.stderr).toBe(
      `error: token ${restricted.id} ("history-ci") may reach only app history, not "second": its deployment could not be recorded in ${gw.url}. ` +
        "Deploy with a token that reaches every app deployed (nothing was uploaded)\n",
    );
    expect(both.stdout).not.toContain("the Worker is deployed");
    expect((await wranglerRuns()).length).toBe(before);
    expect((await history()).length).toBe(versions);
    const own = await cli(["deploy", "app.ts", "--outdir", join(dir, "out-own"), "--gateway", gw.url], restricted.token);
    expect(own.stderr).toBe("");
    expect(own.code).toBe(0);
    expect(own.stdout).not.toContain("served no more");
  });

  it("says which apps the deployed gateway serves that a deploy leaves out of the Worker it replaces", async () => {
    const alone = await cli(["deploy", "second.ts", "--outdir", join(dir, "out-second"), "--gateway", gw.url]);
    expect(alone.stderr).toBe("");
    expect(alone.code).toBe(0);
    expect(alone.stdout).toContain(
      `the Worker at ${gw.url} serves app history too, which this deploy does not bundle: it is served no more once it is deployed (name its file too to keep it)`,
    );
  });

  it("refuses a deploy or a rollback, before wrangler runs, with a token of some apps when the gateway serves others it does not reach", async () => {
    const again = await cli(["deploy", "second.ts", "--outdir", join(dir, "out-second-2"), "--gateway", gw.url]);
    expect(again.code).toBe(0); // a second version of second, to roll back from
    const restricted = await createToken("second-ci", "deploy", ["second"]);
    const before = (await wranglerRuns()).length;
    const refusal = `the Worker at ${gw.url} serves 1 app this token does not reach; a deploy replaces the whole Worker, so it would be served no more: use a deploy token that reaches every app (nothing was uploaded)`;
    const deploy = await cli(["deploy", "second.ts", "--outdir", join(dir, "out-second-3"), "--gateway", gw.url], restricted.token);
    expect([deploy.code, deploy.stderr]).toEqual([2, `error: ${refusal}\n`]);
    const rollback = await cli(["app", "rollback", "second", "--gateway", gw.url, "--outdir", join(dir, "rollback-second")], restricted.token);
    expect([rollback.code, rollback.stderr]).toEqual([2, `error: ${refusal.replace("a deploy", "a rollback")}\n`]);
    expect((await wranglerRuns()).length).toBe(before);
    // Its names stay hidden: the list says only how many others there are.
    const listed = (await (await api("/v1/apps", restricted.token)).json()) as { apps: { name: string }[]; othersServed?: number };
    expect(listed.othersServed).toBe(1);
    expect(JSON.stringify(listed)).not.toContain("history");
  });

  it("records each app a rollback takes back with it, as a rollback to its own version of that Worker, and leaves no folder behind", async () => {
    const secondHistory = async () =>
      ((await (await api("/v1/apps/second/deployments", ADMIN_TOKEN)).json()) as { deployments: DeploymentRecord[] }).deployments;
    const pair = await cli(["deploy", "app.ts", "second.ts", "--outdir", join(dir, "out-pair-1"), "--gateway", gw.url]);
    expect(pair.code).toBe(0);
    const [older] = await secondHistory();
    await writeFile(
      join(project, "second.ts"),
      `${await readFile(join(project, "second.ts"), "utf8")}\nexport const two = app.function({ tier: "edge" }, () => 2);\n`,
    );
    const newer = await cli(["deploy", "app.ts", "second.ts", "--outdir", join(dir, "out-pair-2"), "--gateway", gw.url]);
    expect(newer.code).toBe(0);
    const [historyLive] = await history();
    expect((await secondHistory())[0]!.codeHash).not.toBe(older!.codeHash);

    const back = await cli(["app", "rollback", "history", String(historyLive!.version - 1), "--gateway", gw.url]);
    expect(back.stderr).toBe("");
    expect(back.code).toBe(0);
    const [secondLive] = await secondHistory();
    // Before: second's history still named its newer version live, though the Worker ran the older one's code.
    expect(secondLive).toMatchObject({ rollbackOf: older!.version, codeHash: older!.codeHash, apps: ["history", "second"] });
    expect(back.stdout).toContain(
      `✓ app second: version ${secondLive!.version}, a rollback to version ${older!.version} (code ${older!.codeHash.slice(0, 12)})`,
    );
    // Its files were fetched into a folder of .tandem/rollback, which is gone now (before: one left a rollback).
    expect(back.stdout).not.toContain(" into ");
    expect(await readdir(join(project, ".tandem", "rollback"))).toEqual([]);
  });
});

describe("a deploy token limited to some apps", () => {
  it("sees the other apps a Worker holds only as a count, may not fetch its files, and may not record a Worker that holds them", async () => {
    const restricted = await createToken("second-only", "deploy", ["second"]);
    const asAdmin = ((await (await api("/v1/apps/second/deployments", ADMIN_TOKEN)).json()) as DeploymentList).deployments;
    const live = asAdmin[0]!;
    expect(live.apps).toEqual(["history", "second"]); // the last test's pair, rolled back together
    // Before: its record named "history", and its Worker's file, which holds history's code, was served.
    const listed = ((await (await api("/v1/apps/second/deployments", restricted.token)).json()) as DeploymentList).deployments;
    expect(listed[0]).toMatchObject({ version: live.version, apps: ["second"], othersServed: 1 });
    const one = (await (await api(`/v1/apps/second/deployments/${live.version}`, restricted.token)).json()) as DeploymentRecord;
    expect(one).toMatchObject({ apps: ["second"], othersServed: 1 });
    expect(JSON.stringify(listed.map((d) => d.apps))).not.toContain("history");
    const file = await api(`/v1/apps/second/deployments/files/${live.codeHash}`, restricted.token);
    expect(file.status).toBe(403);
    expect((await errorOf(file)).message).toBe(
      `token ${restricted.id} ("second-only") may not fetch file ${live.codeHash}: the Worker it is part of holds 1 app this token does not reach besides "second" (use a deploy token that reaches every app)`,
    );
    const full = await api(`/v1/apps/second/deployments/files/${live.codeHash}`, ADMIN_TOKEN);
    expect(full.status).toBe(200);
    await full.arrayBuffer();
    // A record of its own, naming the files it has seen: refused whether it names the other app or not.
    const post = (apps: string[]) =>
      api("/v1/apps/second/deployments", restricted.token, {
        method: "POST",
        body: JSON.stringify({ codeHash: live.codeHash, files: live.files, apps }),
        headers: { "content-type": "application/json" },
      });
    const naming = await post(["second", "history"]);
    expect(naming.status).toBe(403);
    expect((await errorOf(naming)).message).toBe(
      `token ${restricted.id} ("second-only") may not record a deployment of app "second": the record names app "history"; record it with a deploy token that reaches every app`,
    );
    const alone = await post(["second"]);
    expect(alone.status).toBe(403);
    expect((await errorOf(alone)).message).toContain("this gateway's Worker serves 1 app it does not reach, which a deployment replaces");
    expect(((await (await api("/v1/apps/second/deployments", ADMIN_TOKEN)).json()) as DeploymentList).deployments).toHaveLength(asAdmin.length);
    // The CLI's rollback says why, before it fetches anything (before: "its deployment could not be recorded").
    const before = (await wranglerRuns()).length;
    const rollback = await cli(["app", "rollback", "second", "--gateway", gw.url], restricted.token);
    expect([rollback.code, rollback.stderr]).toEqual([
      2,
      `error: version ${asAdmin[1]!.version}'s Worker holds 1 app this token does not reach besides second; a rollback deploys that whole Worker again: use a deploy token that reaches every app (nothing was fetched)\n`,
    ]);
    expect((await wranglerRuns()).length).toBe(before);
  });
});

describe("deployments per environment", () => {
  it("records a deploy --env dev in the dev gateway as that environment's version 1, apart from main's", async () => {
    const dev = await startTestGateway(join(project, "app.ts"), { bindings: { TANDEM_ENV: "dev" } });
    try {
      const mainVersions = (await history()).length;
      const before = (await wranglerRuns()).length;
      const { code, stdout, stderr } = await cli(["deploy", "app.ts", "--env", "dev", "--outdir", join(dir, "out-dev"), "--gateway", dev.url], ADMIN_TOKEN);
      expect(stderr).toBe("");
      expect(code).toBe(0);
      expect(stdout).toContain("✓ app history: version 1,");
      expect(await readFile(join(dir, "out-dev", "wrangler.toml"), "utf8")).toContain('name = "tandem-gateway-dev"');
      expect((await wranglerRuns())[before]!.args).toContain(join(dir, "out-dev", "wrangler.toml"));
      const listed = await cli(["app", "history", "history", "--env", "dev", "--gateway", dev.url, "--json"], ADMIN_TOKEN);
      expect(JSON.parse(listed.stdout)).toEqual([
        expect.objectContaining({ env: "dev", version: 1, by: { id: expect.any(String), name: "bootstrap (TANDEM_ADMIN_TOKEN)" } }),
      ]);
      // main's history, on its own gateway, did not move; and the dev gateway has no main deployments to show.
      expect((await history()).length).toBe(mainVersions);
      const wrongEnv = await cli(["app", "history", "history", "--env", "main", "--gateway", dev.url], ADMIN_TOKEN);
      expect(wrongEnv.code).not.toBe(0);
      expect(wrongEnv.stderr).toContain('in environment "main" here: this gateway serves environment "dev"');
      // A deploy without --env is main's Worker: the dev gateway is not where it is recorded, and nothing is uploaded.
      const runs = (await wranglerRuns()).length;
      const mainIntoDev = await cli(["deploy", "app.ts", "--outdir", join(dir, "out-main-dev"), "--gateway", dev.url], ADMIN_TOKEN);
      expect(mainIntoDev.code).toBe(2);
      expect(mainIntoDev.stderr).toContain(
        `error: the gateway at ${dev.url} does not serve environment "main": a deployment into it is the Worker tandem-gateway,`,
      );
      expect((await wranglerRuns()).length).toBe(runs);
      expect(JSON.parse((await cli(["app", "history", "history", "--env", "dev", "--gateway", dev.url, "--json"], ADMIN_TOKEN)).stdout)).toHaveLength(1);
    } finally {
      await dev.dispose();
    }
  });

  it("refuses a deploy --env dev that names main's gateway before wrangler runs, saying which Worker records it", async () => {
    const versions = (await history()).length;
    const before = (await wranglerRuns()).length;
    const { code, stdout, stderr } = await cli(["deploy", "app.ts", "--env", "dev", "--outdir", join(dir, "out-dev-main"), "--gateway", gw.url]);
    expect(code).toBe(2);
    expect(stderr).toBe(
      `error: the gateway at ${gw.url} does not serve environment "dev": a deployment into it is the Worker tandem-gateway-dev, and is recorded there. ` +
        `Name that Worker's URL with --gateway (or TANDEM_GATEWAY), or leave both out to record nothing (nothing was uploaded)\n`,
    );
    expect(stdout).not.toContain("the Worker is deployed");
    expect((await wranglerRuns()).length).toBe(before);
    expect((await history()).length).toBe(versions);
  });
});

describe("the deployments routes", () => {
  it("need a deploy token", async () => {
    const res = await api("/v1/apps/history/deployments", callToken.token);
    expect(res.status).toBe(403);
    expect((await errorOf(res)).message).toContain('needs "deploy"');
  });

  it("take a file only under its own SHA-256, and serve back only files a deployment of the app names", async () => {
    const body = new TextEncoder().encode("not the worker");
    const wrong = await api(`/v1/apps/history/deployments/files/${"0".repeat(64)}`, deployToken.token, { method: "PUT", body });
    expect(wrong.status).toBe(400);
    expect((await errorOf(wrong)).message).toContain(`not the ${"0".repeat(64)} the path names`);
    const hash = await sha256Hex(body);
    const put = await api(`/v1/apps/history/deployments/files/${hash}`, deployToken.token, { method: "PUT", body });
    expect(put.status).toBe(201);
    const again = await api(`/v1/apps/history/deployments/files/${hash}`, deployToken.token, { method: "PUT", body });
    expect(await again.json()).toMatchObject({ stored: false });
    // Uploaded, but named by no record: not served.
    const get = await api(`/v1/apps/history/deployments/files/${hash}`, deployToken.token);
    expect(get.status).toBe(404);
    const notHash = await api("/v1/apps/history/deployments/files/abc", deployToken.token);
    expect(notHash.status).toBe(400);
  });

  it("refuse a record whose files are not uploaded, or whose shape is wrong, naming the problem", async () => {
    const post = (body: unknown) =>
      api("/v1/apps/history/deployments", deployToken.token, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
    const missing = await post({ codeHash: "b".repeat(64), files: [{ path: "worker.mjs", sha256: "b".repeat(64), bytes: 3 }] });
    expect(missing.status).toBe(400);
    expect((await errorOf(missing)).message).toContain(`file worker.mjs (${"b".repeat(64)}) is not uploaded`);
    const noWorker = await post({ codeHash: "a".repeat(64), files: [{ path: "wrangler.toml", sha256: "b".repeat(64), bytes: 3 }] });
    expect(noWorker.status).toBe(400);
    expect((await errorOf(noWorker)).message).toContain("must name the Worker, worker.mjs");
    const none = await post({ codeHash: "a".repeat(64), files: [] });
    expect(none.status).toBe(400);
    expect((await errorOf(none)).message).toBe('request body has the wrong shape: field "files" must name the Worker, worker.mjs');
    const otherCode = await post({ codeHash: "a".repeat(64), files: [{ path: "worker.mjs", sha256: "b".repeat(64), bytes: 3 }] });
    expect(otherCode.status).toBe(400);
    expect((await errorOf(otherCode)).message).toBe(
      'request body has the wrong shape: field "codeHash" must be the SHA-256 of the Worker, worker.mjs, as files names it',
    );
    const escaping = await post({ codeHash: "a".repeat(64), files: [{ path: "../worker.mjs", sha256: "b".repeat(64), bytes: 3 }] });
    expect(escaping.status).toBe(400);
    expect((await errorOf(escaping)).message).toContain("files.0.path");
    const badApp = await api(`/v1/apps/${"x".repeat(65)}/deployments`, deployToken.token);
    expect(badApp.status).toBe(400); // a path whose app is no name, as on every /v1/apps route (it was this route's own 404)
    expect((await errorOf(badApp)).message).toContain("is not an app name");
    const version = await api("/v1/apps/history/deployments/latest", deployToken.token);
    expect(version.status).toBe(400);
    expect((await errorOf(version)).message).toContain('"latest" is not a version number');
    const huge = await api("/v1/apps/history/deployments/99999999999999999999", deployToken.token);
    expect(huge.status).toBe(400);
    expect((await errorOf(huge)).message).toBe('"99999999999999999999" is not a version number (1, 2, …)');
  });
});
