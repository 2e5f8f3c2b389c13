/**
 * Environments, against real workerd: one gateway's state seen from two environments. The gateway serves its
 * apps in its own environment (`TANDEM_ENV`); `Tandem-Env` (the CLI's `--env`, the SDK's `env` option) addresses
 * another's secrets, volumes, dicts and queues, which stay apart from its own; its apps are not served in any
 * other environment. Then the same state served as environment `dev`: the app of the same name sees dev's
 * secrets, dict, queue, volumes and schedules, none of main's.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Dict, NotFoundError, Queue, Volume, lookup, type ScheduleInfo, type SecretInfo } from "../sdk/index.js";
import { buildApps } from "../sdk/cli/local-stack.js";
import { startWorkerd, type RunningWorkerd } from "../sdk/cli/workerd.js";
import { runCli } from "./helpers/cli.js";
import { ADMIN_TOKEN, authed } from "./helpers/gateway.js";

const APP = new URL("./fixtures/env-app.ts", import.meta.url).pathname;
const KEY = "a".repeat(64);

describe("environments main and dev on one gateway's state", () => {
  let dir: string;
  let worker: Awaited<ReturnType<typeof buildApps>>["worker"];
  let gateway: RunningWorkerd;
  let url: string;
  const start = async (env?: string) => {
    gateway = await startWorkerd({
      port: 0,
      worker,
      persistDir: join(dir, "state"),
      bindings: { TANDEM_ADMIN_TOKEN: ADMIN_TOKEN, TANDEM_SECRETS_KEY: KEY, ...(env ? { TANDEM_ENV: env } : {}) },
      onOutput: () => {},
    });
    url = gateway.url.href.replace(/\/$/, "");
  };
  const cli = (...args: string[]) => runCli([...args, "--gateway", url]);
  const call = (fn: string, env?: string) => lookup("shop", fn, { gateway: url, ...(env ? { env } : {}) }).remote();
  /** A new token's secret, made with the admin token: `{ scope, env }` as `POST /v1/tokens` takes them. */
  const tokenFor = async (body: { scope: string; env?: string }) =>
    ((await (await fetch(`${url}/v1/tokens`, authed({ method: "POST", body: JSON.stringify(body) }))).json()) as { token: string }).token;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tandem-envs-"));
    worker = (await buildApps([APP], join(dir, "build"))).worker;
    await start(); // environment main, by default
  });
  afterAll(async () => {
    await gateway?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps each environment's secrets apart: the CLI's --env makes and lists dev's", async () => {
    expect((await cli("secret", "create", "api", "KEY=main-key")).code).toBe(0);
    expect((await cli("secret", "create", "api", "KEY=dev-key", "--env", "dev")).code).toBe(0);
    expect((await cli("secret", "create", "devonly", "X=1", "--env", "dev")).code).toBe(0);
    const names = async (...env: string[]) =>
      ((JSON.parse((await cli("secret", "list", "--json", ...env)).stdout) as SecretInfo[]) ?? []).map((s) => s.name).sort();
    expect(await names()).toEqual(["api"]);
    expect(await names("--env", "dev")).toEqual(["api", "devonly"]);
    expect(await names("--env", "main")).toEqual(["api"]);
    expect(await call("secretKey")).toBe("main-key");
  });

  it("keeps each environment's dicts, queues and volumes apart", async () => {
    await Dict.fromName("settings", { gateway: url, createIfMissing: true }).put("who", "main");
    await Dict.fromName("settings", { gateway: url, env: "dev", createIfMissing: true }).put("who", "dev");
    await Queue.fromName("jobs", { gateway: url, env: "dev", createIfMissing: true }).putMany([1, 2, 3]);
    await Volume.create("dev-files", { gateway: url, env: "dev" });
    expect(await call("dictWho")).toBe("main");
    expect(await call("queueLen")).toBe(0);
    expect(await call("volumes")).toEqual([]);
    expect((await Volume.list({ gateway: url, env: "dev" })).map((v) => v.name)).toEqual(["dev-files"]);
    expect((await Dict.list({ gateway: url, env: "dev" })).map((d) => d.name)).toEqual(["settings"]);
    const devQueue = await cli("queue", "len", "jobs", "--env", "dev");
    expect(devQueue.stdout.trim()).toBe("3");
    // A volume that is only dev's: looked for in main, its 404 names where it was looked for, and the --env to reach dev's.
    const fromMain = await cli("volume", "ls", "dev-files");
    expect(fromMain.stderr).toContain('error: no volume named "dev-files" in environment "main" (tandem volume create dev-files makes it');
    const fromStaging = await Volume.fromName("dev-files", { gateway: url, env: "staging" })
      .listdir("/")
      .catch((e: unknown) => e);
    expect((fromStaging as Error).message).toMatch(
      /^no volume named "dev-files" in environment "staging" \(tandem volume create dev-files --env staging makes it/,
    );
  });

  it("serves its apps in its own environment only: another's gets 404 naming both", async () => {
    const err = await call("secretKey", "dev").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toBe(
      'no app named "shop" in environment "dev" here: this gateway serves environment "main" (deploy or serve the app with --env dev)',
    );
    const listed = async (env?: string) =>
      ((await (await fetch(`${url}/v1/apps`, authed({ headers: env ? { "tandem-env": env } : {} }))).json()) as { apps: { name: string }[] }).apps;
    expect((await listed()).map((a) => a.name)).toEqual(["shop"]);
    expect(await listed("dev")).toEqual([]);
    const schedules = async (env?: string) =>
      ((await (await fetch(`${url}/v1/schedules`, authed({ headers: env ? { "tandem-env": env } : {} }))).json()) as { schedules: ScheduleInfo[] }).schedules;
    expect((await schedules()).map((s) => s.function)).toEqual(["nightly"]);
    expect(await schedules("dev")).toEqual([]);
  });

  it("checks who asks before answering for another environment's app: 401 without a token, 403 for a token of main only", async () => {
    const route = `${url}/v1/apps/shop/functions/secretKey/call`;
    const post = (headers: Record<string, string>) =>
      fetch(route, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: '{"args":[]}' });
    const anonymous = await post({ "tandem-env": "dev" });
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { message: string } }).error.message).not.toMatch(/serves environment/);
    const mainOnly = await post({ "tandem-env": "dev", authorization: `Bearer ${await tokenFor({ scope: "call", env: "main" })}` });
    expect(mainOnly.status).toBe(403);
    expect(((await mainOnly.json()) as { error: { message: string } }).error.message).toMatch(/environment "main"/);
  });

  it("refuses a malformed environment name with a 400 naming it", async () => {
    const res = await fetch(`${url}/v1/secrets`, authed({ headers: { "tandem-env": "Dev Env" } }));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/header Tandem-Env: "Dev Env" is not an environment name/);
    const bad = await cli("secret", "list", "--env", "Dev Env");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr + bad.stdout).toMatch(/environment "Dev Env" .* must be lowercase letters/);
  });

  it("limits a token made with an environment to that environment", async () => {
    const made = await cli("token", "create", "--scope", "deploy", "--env", "dev", "--name", "dev-deployer");
    expect(made.code).toBe(0);
    expect(made.stdout).toContain("environment dev only");
    const res = await fetch(`${url}/v1/tokens`, authed({ method: "POST", body: JSON.stringify({ scope: "deploy", env: "dev" }) }));
    const { token, env } = (await res.json()) as { token: string; env: string };
    expect(env).toBe("dev");
    const secrets = (headers: Record<string, string>) => fetch(`${url}/v1/secrets`, { headers: { authorization: `Bearer ${token}`, ...headers } });
    expect((await secrets({ "tandem-env": "dev" })).status).toBe(200);
    const refused = await secrets({});
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(/may reach only environment "dev", not "main"/);
    const badEnv = await fetch(`${url}/v1/tokens`, authed({ method: "POST", body: JSON.stringify({ env: "Dev" }) }));
    expect(badEnv.status).toBe(400);
  });

  it("keeps this environment's calls from a token limited to another: 404, as a call that never was", async () => {
    const spawned = await fetch(`${url}/v1/apps/shop/functions/queueLen/spawn`, authed({ method: "POST" }));
    const { callId } = (await spawned.json()) as { callId: string };
    const dev = await tokenFor({ scope: "call", env: "dev" });
    const asDev = (path: string, init: RequestInit = {}) =>
      fetch(`${url}${path}`, { ...init, headers: { authorization: `Bearer ${dev}`, "tandem-env": "dev" } });
    expect((await asDev(`/v1/calls/${callId}`)).status).toBe(404);
    expect((await asDev(`/v1/calls/${callId}/logs`)).status).toBe(404);
    const cancel = await asDev(`/v1/calls/${callId}/cancel`, { method: "POST" });
    expect(cancel.status).toBe(404);
    expect(((await cancel.json()) as { error: { message: string } }).error.message).toMatch(/^no call fc-/);
    // A token for every environment finds a call by id, whichever environment it addresses; the call ran, uncancelled.
    const record = await fetch(`${url}/v1/calls/${callId}?wait=5000`, authed({ headers: { "tandem-env": "dev" } }));
    expect(record.status).toBe(200);
    expect(((await record.json()) as { status: string }).status).toBe("succeeded");
  });

  it("shows its dashboard to no token limited to another environment: no login code, no session, no page", async () => {
    const dev = await tokenFor({ scope: "call", env: "dev" });
    const code = await fetch(`${url}/v1/dashboard/login-code`, { method: "POST", headers: { authorization: `Bearer ${dev}`, "tandem-env": "dev" } });
    expect(code.status).toBe(403);
    expect(((await code.json()) as { error: { message: string } }).error.message).toMatch(/may reach only environment "dev", not "main"/);
    const login = await fetch(`${url}/_tandem/login`, { method: "POST", body: new URLSearchParams({ token: dev }), redirect: "manual" });
    expect(login.status).toBe(401);
    expect(login.headers.get("set-cookie")).toBeNull();
    expect(await login.text()).toMatch(/may reach only environment &quot;dev&quot;, not &quot;main&quot;/);
    const page = await fetch(`${url}/_tandem/apps/shop`, { headers: { authorization: `Bearer ${dev}` } });
    expect(page.status).toBe(403);
    expect(await page.text()).not.toContain("queueLen");
    expect((await fetch(`${url}/_tandem/apps/shop`, authed())).status).toBe(200);
  });

  it("lets an admin token limited to an environment make, list and revoke only that environment's tokens", async () => {
    const devAdmin = await tokenFor({ scope: "admin", env: "dev" });
    const asDevAdmin = (method: string, path: string, body?: object) =>
      fetch(`${url}${path}`, {
        method,
        headers: { authorization: `Bearer ${devAdmin}`, "tandem-env": "dev" },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    const escalation = await asDevAdmin("POST", "/v1/tokens", { scope: "admin" });
    expect(escalation.status).toBe(403);
    expect(((await escalation.json()) as { error: { message: string } }).error.message).toMatch(
      /may reach only environment "dev": a token it makes is limited to it too \(send "env": "dev", or --env dev\)$/,
    );
    const made = await asDevAdmin("POST", "/v1/tokens", { scope: "call", env: "dev" });
    expect(made.status).toBe(201);
    const { id } = (await made.json()) as { id: string };
    const { tokens } = (await (await asDevAdmin("GET", "/v1/tokens")).json()) as { tokens: { id: string; env?: string }[] };
    expect(tokens.map((t) => t.id)).toContain(id);
    expect(tokens.filter((t) => t.env !== "dev")).toEqual([]);
    const mainId = (await tokenFor({ scope: "call" })).split(".")[0]!;
    const refusal = async (res: Response) => [res.status, ((await res.json()) as { error: { message: string } }).error.message.replace(/tk-\w+/g, "<id>")];
    const refusedMain = await refusal(await asDevAdmin("DELETE", `/v1/tokens/${mainId}`));
    expect(refusedMain[0]).toBe(403);
    // The bootstrap token is limited to no environment: refused alike, not told apart from another such token.
    expect(await refusal(await asDevAdmin("DELETE", `/v1/tokens/${ADMIN_TOKEN.split(".")[0]!}`))).toEqual(refusedMain);
    expect((await asDevAdmin("DELETE", `/v1/tokens/${id}`)).status).toBe(200);
  });

  it("lets tandem token create, list and revoke work with an admin token limited to dev, given --env dev (before: create's refusal asked for --env, which list and revoke lacked)", async () => {
    const devAdmin = await tokenFor({ scope: "admin", env: "dev" });
    const asDevAdmin = (...args: string[]) => cli(...args, "--token", devAdmin);
    const made = await asDevAdmin("token", "create", "--env", "dev", "--scope", "call", "--name", "dev-caller");
    expect(made.stderr).toBe("");
    expect(made.code).toBe(0);
    const id = /created token (tk-\S+) "dev-caller"/.exec(made.stdout)![1]!;
    const listed = await asDevAdmin("token", "list", "--env", "dev", "--json");
    expect(listed.code).toBe(0);
    expect((JSON.parse(listed.stdout) as { id: string }[]).map((t) => t.id)).toContain(id);
    const revoked = await asDevAdmin("token", "revoke", id, "--env", "dev");
    expect([revoked.code, revoked.stdout]).toEqual([0, `revoked token ${id} "dev-caller"\n`]);
    // Without it, the refusal names the flag, which every token command now takes.
    const unaddressed = await asDevAdmin("token", "list");
    expect(unaddressed.code).toBe(2);
    expect(unaddressed.stderr).toContain("address that one (--env dev, TANDEM_ENV=dev, or the Tandem-Env header)");
  });

  it("refuses an admin token limited to dev on every route of a gateway serving main, the plane list included", async () => {
    const devAdmin = await tokenFor({ scope: "admin", env: "dev" });
    const asDevAdmin = (method: string, path: string, headers: Record<string, string> = {}) =>
      fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${devAdmin}`, ...headers } });
    for (const [method, path] of [
      ["GET", "/v1/planes"],
      ["GET", "/v1/metrics"],
      ["GET", "/v1/whoami"],
      ["GET", "/v1/apps"],
      ["GET", "/v1/usage"],
      ["GET", "/v1/tokens"],
      ["GET", "/v1/secrets"],
      ["GET", "/v1/volumes"],
      ["GET", "/v1/dicts"],
      ["GET", "/v1/queues"],
      ["GET", "/v1/schedules"],
    ] as const) {
      const res = await asDevAdmin(method, path);
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(((await res.json()) as { error: { message: string } }).error.message, `${method} ${path}`).toMatch(
        // Before: no way on was said.
        /may reach only environment "dev", not "main": address that one \(--env dev, TANDEM_ENV=dev, or the Tandem-Env header\)$/,
      );
    }
    // The planes run main's apps, and the edge metrics count main's calls: addressing dev does not make them dev's.
    for (const path of ["/v1/planes", "/v1/metrics"]) {
      const addressingDev = await asDevAdmin("GET", path, { "tandem-env": "dev" });
      expect(addressingDev.status, path).toBe(403);
      expect(((await addressingDev.json()) as { error: { message: string } }).error.message).toMatch(
        /may reach only environment "dev", not "main": this is the gateway's own environment's, whichever a request addresses$/,
      );
    }
    // The dashboard shows main's apps whatever a request addresses: it says which dashboard such a token opens (before:
    // "address that one (--env dev …)", a flag tandem dashboard does not take, and which changed nothing).
    for (const headers of [{}, { "tandem-env": "dev" }] as Record<string, string>[]) {
      const login = await asDevAdmin("POST", "/v1/dashboard/login-code", headers);
      expect(login.status).toBe(403);
      expect(((await login.json()) as { error: { message: string } }).error.message).toMatch(
        /may reach only environment "dev", not "main": the dashboard shows its gateway's own environment only; open that of the gateway serving "dev" \(tandem dashboard --gateway <its URL>\)$/,
      );
    }
    expect((await fetch(`${url}/v1/planes`, authed())).status).toBe(200);
    const mainAdmin = await tokenFor({ scope: "admin", env: "main" });
    expect((await fetch(`${url}/v1/planes`, { headers: { authorization: `Bearer ${mainAdmin}` } })).status).toBe(200);
  });

  it("runs the same app served as environment dev with dev's state, none of main's", async () => {
    const trigger = await fetch(`${url}/v1/apps/shop/functions/nightly/trigger`, authed({ method: "POST" }));
    expect(trigger.status).toBe(202);
    await gateway.dispose();
    await start("dev");
    expect(await call("secretKey")).toBe("dev-key");
    expect(await call("dictWho")).toBe("dev");
    expect(await call("queueLen")).toBe(3);
    expect(await call("volumes")).toEqual(["dev-files"]);
    const { schedules } = (await (await fetch(`${url}/v1/schedules`, authed())).json()) as { schedules: ScheduleInfo[] };
    expect(schedules.map((s) => [s.function, s.lastRun])).toEqual([["nightly", undefined]]); // main's run is main's
    // main's secrets, from dev's gateway, with --env main.
    expect(JSON.parse((await cli("secret", "list", "--json", "--env", "main")).stdout).map((s: SecretInfo) => s.name)).toEqual(["api"]);
    expect(await call("secretKey", "main").catch((e: unknown) => (e as Error).message)).toMatch(/this gateway serves environment "dev"/);
  });
});
