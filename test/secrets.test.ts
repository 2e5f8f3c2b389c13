/**
 * Secrets served by `tandem serve` (real workerd, real Docker), created with
 * the `tandem secret` CLI: an edge function and a plane function that declare
 * `Secret.fromName("api")` read its value as `process.env.API_KEY`; one that
 * does not declare it sees undefined, in both tiers; local secrets, their
 * order, and `requiredKeys`; the list never shows a value.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RemoteError, lookup } from "../sdk/index.js";
import { PLANE_SECRETS_ANSWER, PROTOCOL_VERSION, type HeartbeatAnswer, type PlaneHeartbeat, type PlaneInfo } from "../sdk/protocol.js";
import { NonceCache, signRequest, verifyRequest } from "../sdk/signing.js";
import { runCli, startServe, type Served } from "./helpers/cli.js";
import { authed, eventually } from "./helpers/gateway.js";

const VALUE = "k-7f3a9c-secret-value";
const LOCAL_VALUE = "local-4b1d-secret-value";
const DOTENV_VALUE = "dotenv-9e2c-secret-value";
const rev = (s: string) => [...s].reverse().join("");
const RUN = randomBytes(6).toString("hex");

// Each function answers a value derived from its secrets (reversed), so that a value found in a file under .tandem
// could only have been written there by Tandem, not recorded as a call's result.
const appSource = `
import { App, Image, Secret } from "tandem";
const app = new App("vault");
const rev = (s: string | undefined) => (s === undefined ? "undefined" : [...s].reverse().join(""));
const api = Secret.fromName("api", { requiredKeys: ["API_KEY"] });
export const edgeKey = app.function({ secrets: [api] }, () => "edge:" + rev(process.env.API_KEY));
export const planeKey = app.function({ tier: "plane", secrets: [api] }, () => "plane:" + rev(process.env.API_KEY));
export const warmKey = app.function({ tier: "plane", minContainers: 1, secrets: [api] }, () => rev(process.env.API_KEY));
const leak = () => {
  console.log("the key is", process.env.API_KEY, { nested: process.env.API_KEY });
  throw new Error("refused key " + process.env.API_KEY);
};
export const edgeLeak = app.function({ secrets: [api] }, leak);
export const planeLeak = app.function({ tier: "plane", secrets: [api] }, leak);
// Written to the streams themselves, as a logger may, not through console.*.
export const planeRawLeak = app.function({ tier: "plane", secrets: [api] }, () => {
  process.stdout.write("raw write " + process.env.API_KEY + "\\n");
  process.stderr.write(Buffer.from("raw bytes " + process.env.API_KEY + "\\n"));
  return "written";
});
// WebAssembly functions read their secrets in their WASI environment (env-key.as.ts: API_KEY reversed).
export const wasmKey = app.wasm("wasmKey", { source: "./env-key.as.ts" }, { secrets: [api] });
export const wasmPlaneKey = app.wasm("wasmPlaneKey", { source: "./env-key.as.ts" }, { tier: "plane", secrets: [api] });
export const wasmNone = app.wasm("wasmNone", { source: "./env-key.as.ts" });
// Classes, at the edge and on the plane: each method reads its class's secrets.
export const Keeper = app.cls({ secrets: [api] }, class { key() { return rev(process.env.API_KEY); } });
export const PlaneKeeper = app.cls({ tier: "plane", secrets: [api] }, class { key() { return rev(process.env.API_KEY); } });
export const edgeNone = app.function(() => typeof process.env.API_KEY);
export const planeNone = app.function({ tier: "plane" }, () => typeof process.env.API_KEY);
export const local = app.function(
  { secrets: [api, Secret.fromDict({ API_KEY: "overridden", LOCAL: process.env.VAULT_LOCAL }), Secret.fromDotenv()] },
  () => [process.env.API_KEY, process.env.LOCAL, process.env.FROM_DOTENV].map(rev).join(","),
);
// An image build step that needs the secret (Image.secrets): it keeps only the value's hash.
// This run's own (RUN): an image built by an earlier run would be found, not built.
const tokenImage = Image.node().env({ RUN: "${RUN}" }).secrets([api]).runCommands('printf %s "$API_KEY" | sha256sum | cut -c1-64 > /token.sha');
export const imageKey = app.function({ image: tokenImage, timeout: 180 }, async () => (await import("node:fs")).readFileSync("/token.sha", "utf8").trim());
export const slowKey = app.function({ tier: "plane", secrets: [api] }, async (ms: number) => {
  const key = process.env.API_KEY;
  if (ms > 0) console.log("slowKey sleeping", ms);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return rev(key);
});
// A secret of 2 characters: masked where it stands alone, never inside other numbers (docs/secrets.md).
const pin = Secret.fromDict({ PIN: "42" });
const pinLeak = () => {
  console.log("pin", process.env.PIN, "took 142 ms");
  throw new Error("pin " + process.env.PIN + " refused");
};
export const edgePin = app.function({ secrets: [pin] }, pinLeak);
export const planePin = app.function({ tier: "plane", secrets: [pin] }, pinLeak);
export const pay = app.endpoint({ path: "/", secrets: [api] }, () => ({ key: rev(process.env.API_KEY) }));
// Keys named as an object's own properties are environment variables like any other.
const odd = Secret.fromDict({ constructor: "ctor-value", toString: "ts-value" });
const oddKeys = () => [process.env.constructor, process.env.toString].map(String).join(",");
export const edgeOdd = app.function({ secrets: [odd] }, oddKeys);
export const planeOdd = app.function({ tier: "plane", secrets: [odd] }, oddKeys);
export default app;
`;

let dir: string;
let served: Served;
const fn = (name: string) => lookup<[], string>("vault", name, { gateway: served.url });
const cli = (args: string[]) => runCli([...args, "--gateway", served.url], { cwd: dir });
/** A new token of scope `call`, made with the tests' admin token. */
const callToken = async () =>
  (
    (await (await fetch(`${served.url}/v1/tokens`, authed({ method: "POST", body: JSON.stringify({ name: "caller", scope: "call" }) }))).json()) as {
      token: string;
    }
  ).token;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tandem-secrets-"));
  await writeFile(join(dir, "app.ts"), appSource);
  await copyFile(new URL("./fixtures/env-key.as.ts", import.meta.url), join(dir, "env-key.as.ts"));
  await writeFile(join(dir, ".env"), `# local\nFROM_DOTENV="${DOTENV_VALUE}"\n`);
  served = await startServe(["app.ts"], dir, { VAULT_LOCAL: LOCAL_VALUE });
});
afterAll(async () => {
  await served?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("secrets in both tiers", () => {
  it("tandem serve names the secret and the function a missing named secret fails", async () => {
    await served.waitFor("✗");
    expect(served.output()).toContain(
      'app "vault": function "edgeKey", function "planeKey" and 12 others declare secret "api", which the gateway does not have; make it: tandem secret create api API_KEY=…\n' +
        "  the app is served meanwhile: its calls find a secret once it exists, with no reload\n",
    );
    await expect(fn("edgeKey").remote()).rejects.toThrow('vault.edgeKey: no secret named "api"');
  });

  it("tandem secret create stores one, refuses it again without --force, and the list shows its keys, never its values", async () => {
    const created = await cli(["secret", "create", "api", `API_KEY=${VALUE}`, "OTHER=x"]);
    expect(created.stderr).toBe("");
    expect(created.stdout).toContain("✓ secret api: API_KEY, OTHER");
    expect(created.stdout).not.toContain("containers already running"); // made, not replaced: no container holds an old value
    const again = await cli(["secret", "create", "api", "API_KEY=new"]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('a secret named "api" exists; replace it with --force');
    const listed = await cli(["secret", "list", "--json"]);
    expect(JSON.parse(listed.stdout)).toMatchObject([{ name: "api", keys: ["API_KEY", "OTHER"] }]);
    expect(listed.stdout).not.toContain(VALUE);
    const bad = await cli(["secret", "create", "api", "not-a-pair"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('"not-a-pair" is not KEY=VALUE');
    const twice = await cli(["secret", "create", "twice", "A=1", "A=2"]);
    expect(twice.code).not.toBe(0);
    expect(twice.stderr).toContain("A is given twice; give each key once");
    // Over HTTP too: a token restricted to an app may not write one, and values never come back.
    const res = await fetch(`${served.url}/v1/secrets`, authed());
    expect(await res.text()).not.toContain(VALUE);
    // As serve said: the app, served since before the secret, finds it with no reload, at the edge and on the plane.
    expect(served.output()).not.toContain("reloaded");
    expect(await fn("edgeKey").remote()).toBe(`edge:${rev(VALUE)}`);
    expect(await fn("planeKey").remote()).toBe(`plane:${rev(VALUE)}`);
  }, 120_000);

  it("edge and plane functions that declare it read process.env.API_KEY; others see undefined in both tiers", async () => {
    await writeFile(join(dir, "app.ts"), appSource + "\n// reload\n"); // loads again, now that the secret exists
    await served.waitFor("reloaded", 60_000);
    expect(await fn("edgeKey").remote()).toBe(`edge:${rev(VALUE)}`);
    expect(await fn("planeKey").remote()).toBe(`plane:${rev(VALUE)}`);
    expect(await fn("edgeNone").remote()).toBe("undefined");
    expect(await fn("planeNone").remote()).toBe("undefined");
    expect(await (await fetch(`${served.url}/vault/pay`)).json()).toEqual({ key: rev(VALUE) });
    expect(await fn("wasmKey").remote()).toBe(rev(VALUE));
    expect(await fn("wasmPlaneKey").remote()).toBe(rev(VALUE));
    expect(await fn("wasmNone").remote()).toBe("undefined");
    for (const cls of ["Keeper", "PlaneKeeper"]) {
      expect(await lookup<[Record<string, unknown>], string>("vault", `${cls}.key`, { gateway: served.url }).remote({})).toBe(rev(VALUE));
    }
  }, 120_000);

  it("takes keys named as an object's own properties (constructor, toString), made with the CLI or local, at the edge and on the plane", async () => {
    const made = await cli(["secret", "create", "odd", "constructor=1", "toString=2"]);
    expect(made.stderr).toBe(""); // before: "field "values" must be an object of KEY: "value" pairs"
    expect(made.stdout).toContain("✓ secret odd: constructor, toString");
    expect((await cli(["secret", "delete", "odd"])).stdout).toContain("deleted secret odd (constructor, toString)");
    expect(await fn("edgeOdd").remote()).toBe("ctor-value,ts-value");
    expect(await fn("planeOdd").remote()).toBe("ctor-value,ts-value");
  }, 60_000);

  it("masks secret values as *** in log lines, error messages, stacks and call records, edge and plane", async () => {
    for (const name of ["edgeLeak", "planeLeak"]) {
      const error = await fn(name)
        .remote()
        .then(
          () => undefined,
          (err: unknown) => err as RemoteError,
        );
      expect(error, name).toBeInstanceOf(RemoteError);
      expect(error!.message).toBe("refused key ***");
      expect(error!.remoteStack).toContain("Error: refused key ***");
      expect(error!.remoteStack).not.toContain(VALUE);
      const spawned = await fn(name).spawn();
      await expect(spawned.get({ timeoutMs: 30_000 })).rejects.toThrow("refused key ***");
      const record = await (await fetch(`${served.url}/v1/calls/${spawned.id}`, authed())).text();
      expect(record).toContain("refused key ***");
      expect(record).not.toContain(VALUE);
    }
    for (const name of ["edgePin", "planePin"]) {
      await expect(fn(name).remote(), name).rejects.toThrow(/^pin \*\*\* refused$/);
      await served.waitFor(new RegExp(`\\[vault\\.${name} [^\\]]*\\] pin \\*\\*\\* took 142 ms`));
    }
    await served.waitFor(/\[vault\.planeLeak [^\]]*\] the key is \*\*\* \{ nested: '\*\*\*' \}/);
    await served.waitFor(/\[vault\.edgeLeak [^\]]*\] the key is \*\*\* \{ nested: '\*\*\*' \}/);
    expect(await fn("planeRawLeak").remote()).toBe("written");
    await served.waitFor(/\[vault\.planeRawLeak [^\]]*\] raw write \*\*\*$/m);
    await served.waitFor(/\[vault\.planeRawLeak [^\]]*\] \(stderr\) raw bytes \*\*\*$/m);
    expect(served.output()).not.toContain(VALUE);
  }, 90_000);

  it("reads local secrets in Node, later ones overriding earlier ones, and writes them into no file under .tandem", async () => {
    expect(await fn("local").remote()).toBe(["overridden", LOCAL_VALUE, DOTENV_VALUE].map(rev).join(","));
    const files = (await readdir(join(dir, ".tandem"), { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
    for (const file of files) {
      // The running gateway's SQLite may remove a file (a -shm, a -journal) between the listing and the read: gone, it holds nothing.
      const text = await readFile(join(file.parentPath, file.name), "latin1").catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return "";
        throw err;
      });
      expect(text, join(file.parentPath, file.name)).not.toContain(LOCAL_VALUE);
      expect(text, join(file.parentPath, file.name)).not.toContain(DOTENV_VALUE);
      expect(text, join(file.parentPath, file.name)).not.toContain(VALUE);
    }
  });

  it("tandem run reads the project's named and local secrets, edge and plane, and fails naming a missing one", async () => {
    const edge = await runCli(["run", "app.ts::local"], { cwd: dir, env: { VAULT_LOCAL: LOCAL_VALUE } });
    expect(edge.stdout.trim()).toBe(["overridden", LOCAL_VALUE, DOTENV_VALUE].map(rev).join(","));
    const plane = await runCli(["run", "app.ts::planeKey"], { cwd: dir, env: { VAULT_LOCAL: LOCAL_VALUE } });
    expect(plane.stdout.trim()).toBe(`plane:${rev(VALUE)}`);
    const unset = await runCli(["run", "app.ts::edgeNone"], { cwd: dir });
    expect(unset.code).not.toBe(0);
    expect(unset.stderr).toContain('app "vault": function "local": Secret.fromDict: the value of LOCAL is undefined');
  }, 120_000);

  it("gives a plane container its secrets as Docker environment, not in its image, warm containers too", async () => {
    const containers = async (fn: string) =>
      (await promisify(execFile)("docker", ["ps", "--filter", `label=tandem.function=${fn}`, "--format", "{{.ID}} {{.Image}}"])).stdout
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((line) => line.split(" ") as [string, string]);
    const inspect = (what: string) => promisify(execFile)("docker", ["inspect", what]).then((r) => r.stdout);
    const [id, image] = (await containers("planeKey"))[0]!;
    expect(await inspect(id)).toContain(`API_KEY=${VALUE}`);
    expect(await inspect(image)).not.toContain(VALUE);
    await eventually(async () => (await containers("warmKey")).length > 0, 30_000); // minContainers: 1, kept by the plane
    expect(await inspect((await containers("warmKey"))[0]![0])).toContain(`API_KEY=${VALUE}`);
    expect(await fn("warmKey").remote()).toBe(rev(VALUE));
    await served.waitFor("fetched the secrets of a warm container of vault.warmKey");
  });

  it("gives an image build step its named secrets, fetched over the signed channel, and leaves them in no layer", async () => {
    expect(await fn("imageKey").remote()).toBe(createHash("sha256").update(VALUE).digest("hex"));
    await served.waitFor(/plane pl-[0-9a-z]+ fetched the secrets of image [0-9a-f]{12} \(api\) to build it/);
    const image = (await promisify(execFile)("docker", ["ps", "--filter", "label=tandem.function=imageKey", "--format", "{{.Image}}"])).stdout.trim();
    expect(image).toMatch(/^tandem-image:/);
    for (const args of [["history", "--no-trunc"], ["inspect"]]) expect((await promisify(execFile)("docker", [...args, image])).stdout).not.toContain(VALUE);
    expect(served.output()).not.toContain(VALUE);
  }, 180_000);

  it("sends a warm container's secrets only over a route signed both ways, for a pool of the plane that asks, never in a heartbeat answer", async () => {
    const secret = (await readFile(join(dir, ".tandem", "plane-secret"), "utf8")).trim();
    const [plane] = ((await (await fetch(`${served.url}/v1/planes`, authed())).json()) as { planes: PlaneInfo[] }).planes;
    const signed = async (path: string, body: string) => ({
      method: "POST",
      body,
      headers: { "content-type": "application/json", ...(await signRequest(secret, { audience: "gateway", method: "POST", path, body })) },
    });
    const { planeId, url, region, runtime, simulated, gpus, cpu, memoryMiB } = plane!;
    const beat = JSON.stringify({ planeId, url, region, runtime, simulated, gpus, cpu, memoryMiB, protocol: PROTOCOL_VERSION } satisfies PlaneHeartbeat);
    const answer = await (await fetch(`${served.url}/v1/planes/heartbeat`, await signed("/v1/planes/heartbeat", beat))).text();
    expect(answer).not.toContain(VALUE);
    const warm = (JSON.parse(answer) as HeartbeatAnswer).warm.find((p) => p.function === "warmKey")!;
    expect(warm).toMatchObject({ app: "vault", withSecrets: true });
    expect(warm).not.toHaveProperty("secrets");
    const ask = (fn: string, id = planeId) => JSON.stringify({ planeId: id, app: "vault", function: fn, bundleHash: warm.bundleHash });
    const res = await fetch(`${served.url}/v1/planes/secrets`, await signed("/v1/planes/secrets", ask("warmKey")));
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ secrets: { API_KEY: VALUE } });
    const headers = { get: (name: string) => res.headers.get(name) };
    const check = (audience: string) => verifyRequest(secret, { audience, ...PLANE_SECRETS_ANSWER, body: text }, headers, new NonceCache());
    expect(await check(planeId)).toEqual({ ok: true });
    expect(await check("pl-another000")).toMatchObject({ ok: false });
    // Not for a pool the plane does not keep warm, not for another plane, and not unsigned.
    const notWarm = await fetch(`${served.url}/v1/planes/secrets`, await signed("/v1/planes/secrets", ask("planeKey")));
    expect(notWarm.status).toBe(404);
    expect(await notWarm.text()).toContain(`plane ${planeId} keeps no warm pool of vault.planeKey`);
    expect((await fetch(`${served.url}/v1/planes/secrets`, await signed("/v1/planes/secrets", ask("warmKey", "pl-another000")))).status).toBe(404);
    const unsigned = await fetch(`${served.url}/v1/planes/secrets`, { method: "POST", body: ask("warmKey") });
    expect(unsigned.status).toBe(401);
    expect(await unsigned.text()).not.toContain(VALUE);
  });

  it("an updated secret reaches edge calls within seconds; warm containers keep their value until tandem app rollover, which lets a running call finish", async () => {
    const NEW = "k-rotated-5d0e-secret-value";
    const slow = lookup<[number], string>("vault", "slowKey", { gateway: served.url });
    expect(await slow.remote(0)).toBe(rev(VALUE)); // its container is up, with the old value
    expect(await fn("planeKey").remote()).toBe(`plane:${rev(VALUE)}`); // and this one's, within its scale-down window
    const replaced = await cli(["secret", "create", "api", `API_KEY=${NEW}`, "--force"]);
    expect(replaced.code).toBe(0);
    // Said where it is done: the warm containers of the apps whose plane functions declare it keep the old value.
    expect(replaced.stdout).toContain(
      'app "vault": any of its containers already running keep the old values until they scale down (60 s idle by default); tandem app rollover vault gives them the new ones now',
    );
    await eventually(async () => (await fn("edgeKey").remote()) === `edge:${rev(NEW)}`, 15_000);
    expect(await fn("planeKey").remote()).toBe(`plane:${rev(VALUE)}`); // its warm container started with the old value
    expect(await fn("warmKey").remote()).toBe(rev(VALUE));
    // A call running when the rollover comes finishes on its container, with the value it started with.
    const running = slow.remote(3_000);
    await served.waitFor(/\[vault\.slowKey [^\]]*\] slowKey sleeping 3000/);
    // Over HTTP: a call token may not; a deploy token (the CLI's here) may.
    const caller = await fetch(`${served.url}/v1/apps/vault/rollover`, { method: "POST", headers: { authorization: `Bearer ${await callToken()}` } });
    expect(caller.status).toBe(403);
    const rolled = await cli(["app", "rollover", "vault"]);
    expect(rolled.stderr).toBe("");
    expect(rolled.stdout).toMatch(/^rolling over \d+ containers of app vault: new calls start new containers; running calls finish first/);
    expect(await fn("planeKey").remote()).toBe(`plane:${rev(NEW)}`); // a new container
    expect(await slow.remote(0)).toBe(rev(NEW)); // not the draining one
    expect(await running).toBe(rev(VALUE)); // finished, not killed
    await eventually(async () => (await fn("warmKey").remote()) === rev(NEW), 30_000); // its pool started a new warm container
    const missing = await fetch(`${served.url}/v1/apps/nope/rollover`, authed({ method: "POST" }));
    expect(missing.status).toBe(404);
  }, 120_000);

  it("fails a load that lacks a required key, naming the key, the secret and the function", async () => {
    // Taken, as asked, and said at once: before, nothing said so until the functions' next runs failed.
    const replaced = await cli(["secret", "create", "api", "OTHER=y", "--force"]);
    expect(replaced.code).toBe(0);
    expect(replaced.stdout).toContain(
      '⚠ app "vault": function "edgeKey", function "planeKey" and 12 others require key API_KEY, which secret api now lacks: their runs fail until it has it (add it with --force, with the other keys)',
    );
    await writeFile(join(dir, "app.ts"), appSource + "\n// reload 2\n");
    await served.waitFor("reload failed", 60_000);
    expect(served.output()).toContain(
      'app "vault": function "edgeKey", function "planeKey" and 12 others require key API_KEY of secret "api", which has OTHER',
    );
    const deleted = await cli(["secret", "delete", "api"]);
    expect(deleted.stdout).toContain("deleted secret api (OTHER)");
    // Deleting and making it again is a way to rotate a key: said, as a replacement is (before: nothing).
    expect(deleted.stdout).toContain(
      'app "vault": any of its containers already running keep the deleted values until they scale down (60 s idle by default); tandem app rollover vault stops them now',
    );
    expect((await cli(["secret", "delete", "api"])).stderr).toContain('no secret named "api"');
  }, 90_000);

  it("tandem deploy sends local secrets with the deployment as a Worker secret, written into no file, and checks named ones first", async () => {
    const out = join(dir, "deploy");
    const local = await runCli(["deploy", "app.ts", "--dry-run", "--outdir", out], { cwd: dir, env: { VAULT_LOCAL: LOCAL_VALUE } });
    expect(local.stderr).not.toContain("error:");
    expect(local.stdout).toContain(
      "would send local secrets of vault.local (API_KEY, LOCAL, FROM_DOTENV), vault.edgePin (PIN), vault.planePin (PIN), vault.edgeOdd (constructor, toString), vault.planeOdd (constructor, toString) as the Worker secret TANDEM_LOCAL_SECRETS",
    );
    expect(local.stdout).toMatch(/env\.TANDEM_LOCAL_SECRETS \("\(hidden\)"\)/); // wrangler read it from its stdin, and hides it
    expect(local.stdout + local.stderr).not.toContain(LOCAL_VALUE);
    const files = (await readdir(out, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const text = await readFile(join(file.parentPath, file.name), "latin1");
      expect(text, join(file.parentPath, file.name)).not.toContain(LOCAL_VALUE);
      expect(text, join(file.parentPath, file.name)).not.toContain(DOTENV_VALUE);
    }
    await writeFile(
      join(dir, "named.ts"),
      `import { App, Secret } from "tandem";\nconst app = new App("named");\nexport const f = app.function({ secrets: [Secret.fromName("missing")] }, () => 1);\nexport default app;\n`,
    );
    const named = await runCli(["deploy", "named.ts", "--dry-run", "--outdir", join(dir, "deploy"), "--gateway", served.url], { cwd: dir });
    expect(named.code).not.toBe(0);
    // The environment deployed into (main, without --env) is named, and the command makes the secret there.
    expect(named.stderr).toContain(
      'app "named": function "f" declares secret "missing", which environment "main" does not have; make it: tandem secret create missing KEY=value --env main',
    );
    // A deploy token of that app alone may not list the gateway's secrets (every app's): the deploy goes on, saying so.
    const made = await fetch(
      `${served.url}/v1/tokens`,
      authed({ method: "POST", body: JSON.stringify({ name: "named-ci", scope: "deploy", apps: ["named"] }) }),
    );
    const { token } = (await made.json()) as { token: string };
    const restricted = await runCli(["deploy", "named.ts", "--dry-run", "--outdir", join(dir, "deploy"), "--gateway", served.url], {
      cwd: dir,
      env: { TANDEM_TOKEN: token },
    });
    expect([restricted.code, restricted.stderr]).toEqual([0, ""]);
    expect(restricted.stdout).toContain("the app's named secrets were not checked: this token reaches only some apps");
  });
});
