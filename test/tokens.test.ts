/**
 * API tokens in real workerd: who may call what, over HTTP, through the SDK,
 * the CLI and `connect()`; web endpoints and agents that ask for a token, with
 * API tokens and browsers' connect tokens.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { ForbiddenError, FunctionCall, UnauthorizedError, connect, lookup, type AgentMessageEvent, type TokenInfo } from "../sdk/index.js";
import type { TokenCreateAnswer } from "../sdk/protocol.js";
import { runCli, runCli as runCliIn } from "./helpers/cli.js";
import { ADMIN_TOKEN, authed, eventually, startTestGateway, type TestGateway } from "./helpers/gateway.js";

let gw: TestGateway;
const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

beforeAll(async () => {
  gw = await startTestGateway([fixture("auth-app.ts"), fixture("edge-app.ts")]);
});
afterAll(async () => {
  await gw?.dispose();
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const api = (path: string, token: string | undefined, init: RequestInit = {}) =>
  fetch(gw.url + path, {
    ...init,
    headers: { "content-type": "application/json", ...(token ? bearer(token) : {}), ...(init.headers as Record<string, string>) },
  });
const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

async function createToken(body: Record<string, unknown>): Promise<TokenCreateAnswer> {
  const res = await api("/v1/tokens", ADMIN_TOKEN, { method: "POST", body: JSON.stringify(body) });
  expect(res.status).toBe(201);
  return (await res.json()) as TokenCreateAnswer;
}

describe("tokens over HTTP", () => {
  it("refuses every /v1 route without a token, saying how to send one, but answers /v1/health", async () => {
    for (const [method, path] of [
      ["GET", "/v1/apps"],
      ["POST", "/v1/apps/edge/functions/square/call"],
      ["GET", "/v1/calls/fc-00000000000000000000000000"],
      ["GET", "/v1/usage"],
      ["GET", "/v1/tokens"],
      ["GET", "/v1/planes"],
    ] as const) {
      const res = await api(path, undefined, { method, ...(method === "POST" ? { body: '{"args":[2]}' } : {}) });
      expect(res.status, `${method} ${path}`).toBe(401);
      const error = await errorOf(res);
      expect(error.code).toBe("unauthorized");
      expect(error.message).toContain("Authorization: Bearer");
    }
    expect((await fetch(`${gw.url}/v1/health`)).status).toBe(200);
  });

  it("refuses a token it does not know, and one that is not a token at all", async () => {
    const unknown = await api("/v1/apps", "tk-0000000000000000.ts-00000000000000000000000000000000");
    expect(unknown.status).toBe(401);
    expect((await errorOf(unknown)).message).toContain("token tk-0000000000000000 is not known to this gateway, or was revoked");
    const garbage = await api("/v1/apps", "hunter2");
    expect(garbage.status).toBe(401);
    expect((await errorOf(garbage)).message).toContain("does not hold a Tandem token");
    // A connect token where an API token goes: told where connect tokens go.
    const connect = await api("/v1/apps", "ct-eyJhIjoiZWRnZSJ9.c2lnbmF0dXJl");
    expect(connect.status).toBe(401);
    expect((await errorOf(connect)).message).toContain("the Authorization header holds a connect token (ct-…), which opens only a web endpoint or agent");
  });

  it("creates a token once, lists it without its secret, and says who it is", async () => {
    const created = await createToken({ name: "ci", scope: "call", apps: ["edge"] });
    expect(created).toMatchObject({ name: "ci", scope: "call", apps: ["edge"], createdBy: "tk-testadmin0000000" });
    expect(created.token).toMatch(/^tk-[0-9a-z]{16}\.ts-[0-9a-z]{32}$/);
    const { tokens } = (await (await api("/v1/tokens", ADMIN_TOKEN)).json()) as { tokens: TokenInfo[] };
    const listed = tokens.find((t) => t.id === created.id)!;
    expect(listed).toMatchObject({ name: "ci", scope: "call", apps: ["edge"] });
    expect(JSON.stringify(tokens)).not.toContain(created.token.split(".")[1]!);
    const me = await (await api("/v1/whoami", created.token)).json();
    expect(me).toEqual({ id: created.id, name: "ci", scope: "call", apps: ["edge"] });
  });

  it("lets a token restricted to an app call it, and not see, call, cancel or stop another", async () => {
    const edgeOnly = await createToken({ scope: "call", apps: ["edge"] });
    const called = await api("/v1/apps/edge/functions/square/call", edgeOnly.token, { method: "POST", body: '{"args":[7]}' });
    expect(called.status).toBe(200);
    expect(((await called.json()) as { result: number }).result).toBe(49);

    const other = await api("/v1/apps/guarded/functions/hello/call", edgeOnly.token, { method: "POST", body: '{"args":["x"]}' });
    expect(other.status).toBe(403);
    expect(await errorOf(other)).toMatchObject({ code: "forbidden", message: expect.stringContaining('may reach only app edge, not "guarded"') });

    const { apps } = (await (await api("/v1/apps", edgeOnly.token)).json()) as { apps: { name: string }[] };
    expect(apps.map((a) => a.name)).toEqual(["edge"]);

    // Another app's call is as unknown to it as one that never was.
    const spawned = (await (await api("/v1/apps/guarded/functions/hello/spawn", ADMIN_TOKEN, { method: "POST", body: '{"args":["y"]}' })).json()) as {
      callId: string;
    };
    expect((await api(`/v1/calls/${spawned.callId}`, edgeOnly.token)).status).toBe(404);
    expect((await api(`/v1/calls/${spawned.callId}/cancel`, edgeOnly.token, { method: "POST", body: "{}" })).status).toBe(404);
    expect((await api(`/v1/calls/${spawned.callId}?wait=5000`, ADMIN_TOKEN)).status).toBe(200); // not cancelled: it ran

    const stop = await api("/v1/apps/edge/stop", edgeOnly.token, { method: "POST" });
    expect(stop.status).toBe(403);
    expect((await errorOf(stop)).message).toContain('has scope "call"; POST /v1/apps/edge/stop needs "deploy"');
    expect((await api("/v1/usage", edgeOnly.token)).status).toBe(403);
    expect((await api("/v1/tokens", edgeOnly.token)).status).toBe(403);
    expect((await api("/v1/planes", edgeOnly.token)).status).toBe(403);
  });

  it("says which app a call is of when its lines are asked of another app, only to a token that reaches it", async () => {
    const edgeCall = (await (await api("/v1/apps/edge/functions/chatty/spawn", ADMIN_TOKEN, { method: "POST", body: '{"args":["whose"]}' })).json()) as {
      callId: string;
    };
    expect((await api(`/v1/calls/${edgeCall.callId}?wait=5000`, ADMIN_TOKEN)).status).toBe(200);
    for (const follow of ["", "&follow=1"]) {
      const wrong = await api(`/v1/apps/guarded/logs?call=${edgeCall.callId}${follow}`, ADMIN_TOKEN);
      expect(wrong.status, follow).toBe(400);
      expect((await errorOf(wrong)).message, follow).toBe(`log query: call ${edgeCall.callId} is of app "edge", not "guarded"`);
    }
    // `tandem logs` says so as a call the app does not hold, exit 1 (README), naming the command that shows its lines
    // (before: the gateway's "log query: …", exit 2).
    const cli = await runCli(["logs", "guarded", "--call", edgeCall.callId, "--gateway", gw.url, "--token", ADMIN_TOKEN]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain(
      `error: call ${edgeCall.callId} is of app "edge", not "guarded": \`tandem logs edge --call ${edgeCall.callId}\` shows its lines`,
    );
    // To a token that does not reach the call's app, it is as unknown as one that never was: no lines, no word of it.
    const guardedOnly = await createToken({ scope: "call", apps: ["guarded"] });
    const unknown = await api(`/v1/apps/guarded/logs?call=${edgeCall.callId}`, guardedOnly.token);
    expect(unknown.status).toBe(200);
    expect(await unknown.text()).toBe("");
  });

  it("lets a deploy token stop and read the usage of its apps only", async () => {
    const deployer = await createToken({ scope: "deploy", apps: ["edge"] });
    expect((await api("/v1/apps/edge/stop", deployer.token, { method: "POST" })).status).toBe(200);
    expect((await api("/v1/apps/guarded/stop", deployer.token, { method: "POST" })).status).toBe(403);
    expect((await api("/v1/usage?app=edge", deployer.token)).status).toBe(200);
    expect((await api("/v1/usage?app=guarded", deployer.token)).status).toBe(403);
    expect((await api("/v1/tokens", deployer.token, { method: "POST", body: "{}" })).status).toBe(403);
  });

  it("refuses an admin token restricted to apps, and an app it does not serve", async () => {
    const admin = await api("/v1/tokens", ADMIN_TOKEN, { method: "POST", body: JSON.stringify({ scope: "admin", apps: ["edge"] }) });
    expect(admin.status).toBe(400);
    expect((await errorOf(admin)).message).toContain("an admin token reaches every app");
    const typo = await api("/v1/tokens", ADMIN_TOKEN, { method: "POST", body: JSON.stringify({ apps: ["egde"] }) });
    expect(typo.status).toBe(400);
    const typoMessage = (await errorOf(typo)).message;
    expect(typoMessage).toContain('no app named "egde"');
    expect(typoMessage).toContain('a token to deploy it for the first time has scope "deploy"');
  });

  it("makes a deploy token for an app not deployed yet, reaching that app only", async () => {
    const made = await api("/v1/tokens", ADMIN_TOKEN, { method: "POST", body: JSON.stringify({ scope: "deploy", apps: ["newcomer"], name: "first-deploy" }) });
    expect(made.status).toBe(201);
    const deployer = (await made.json()) as { token: string; apps: string[] };
    expect(deployer.apps).toEqual(["newcomer"]);
    const history = await api("/v1/apps/newcomer/deployments", deployer.token);
    expect(history.status).toBe(404); // let in; nothing deployed under that name yet
    expect((await errorOf(history)).message).toContain('no deployment of app "newcomer" is recorded');
    expect((await api("/v1/apps/edge/deployments", deployer.token)).status).toBe(403);
  });

  it("refuses a name with control characters, and more than 100 apps, naming the field", async () => {
    for (const name of ["two\nlines", "red \u001b[31m", "tab\there"]) {
      const res = await api("/v1/tokens", ADMIN_TOKEN, { method: "POST", body: JSON.stringify({ name }) });
      expect(res.status).toBe(400);
      expect((await errorOf(res)).message).toContain('field "name" must not hold control characters (line breaks, tabs, escapes)');
    }
    expect((await api("/v1/tokens", ADMIN_TOKEN, { method: "POST", body: JSON.stringify({ name: "Ada's laptop (ünïcode ok)" }) })).status).toBe(201);
    const many = await api("/v1/tokens", ADMIN_TOKEN, { method: "POST", body: JSON.stringify({ apps: Array.from({ length: 101 }, (_, i) => `app${i}`) }) });
    expect(many.status).toBe(400);
    expect((await errorOf(many)).message).toContain('field "apps" must name at most 100 apps');
    // A name no app can take (the gateway's own routes) would make a token for nothing.
    const reserved = await api("/v1/tokens", ADMIN_TOKEN, { method: "POST", body: JSON.stringify({ scope: "deploy", apps: ["v1"] }) });
    expect(reserved.status).toBe(400);
    expect((await errorOf(reserved)).message).toContain("v1, _tandem, cdn-cgi, favicon.ico are the gateway's own routes, never an app's");
  });

  it("stops a revoked token at once", async () => {
    const doomed = await createToken({ name: "doomed" });
    expect((await api("/v1/apps", doomed.token)).status).toBe(200);
    expect((await api(`/v1/tokens/${doomed.id}`, ADMIN_TOKEN, { method: "DELETE" })).status).toBe(200);
    expect((await api("/v1/apps", doomed.token)).status).toBe(401);
    const { tokens } = (await (await api("/v1/tokens", ADMIN_TOKEN)).json()) as { tokens: TokenInfo[] };
    expect(tokens.some((t) => t.id === doomed.id)).toBe(false);
    expect((await api(`/v1/tokens/${doomed.id}`, ADMIN_TOKEN, { method: "DELETE" })).status).toBe(404);
  });

  it("stops a token at its expiry, naming it and when it expired, and caps what it mints at that", async () => {
    const made = Date.now();
    const short = await createToken({ name: "short-lived", expiresIn: "3s" });
    expect(short.expiresAt).toBeGreaterThanOrEqual(made + 3_000);
    expect(short.expiresAt).toBeLessThan(Date.now() + 3_000 + 1);
    expect(await (await api("/v1/whoami", short.token)).json()).toMatchObject({ id: short.id, expiresAt: short.expiresAt });
    // A connect token and a dashboard login link it mints last no longer than it does.
    const minted = (await (await api("/v1/apps/guarded/connect-token", short.token, { method: "POST", body: '{"ttlSeconds":300}' })).json()) as {
      expiresAt: number;
    };
    expect(minted.expiresAt).toBe(short.expiresAt);
    const login = (await (await api("/v1/dashboard/login-code", short.token, { method: "POST" })).json()) as { expiresAt: number };
    expect(login.expiresAt).toBe(short.expiresAt);

    await new Promise((r) => setTimeout(r, short.expiresAt! - Date.now() + 50));
    const refused = await api("/v1/whoami", short.token); // trusted by this isolate a moment ago: its expiry is checked still
    expect(refused.status).toBe(401);
    const message = `token ${short.id} ("short-lived") expired at ${new Date(short.expiresAt!).toISOString()}; an admin makes another (tandem token create --expires …)`;
    expect(await errorOf(refused)).toEqual({ code: "unauthorized", message, details: { token: short.id, expiredAt: short.expiresAt } });
    expect(message).not.toContain(short.token.split(".")[1]!);
    // Listed until it is revoked, with when it expired.
    const { tokens } = (await (await api("/v1/tokens", ADMIN_TOKEN)).json()) as { tokens: TokenInfo[] };
    expect(tokens.find((t) => t.id === short.id)).toMatchObject({ name: "short-lived", expiresAt: short.expiresAt });
    // A token made without one never expires, as before.
    expect((await createToken({ name: "for good" })).expiresAt).toBeUndefined();
  });

  it("refuses an expiry that is no duration, none, too far, past, or given twice: 400 naming the field", async () => {
    for (const [body, message] of [
      [{ expiresIn: "30" }, 'field "expiresIn" must be a duration: a number and its unit, s, m, h or d (90s, 30m, 12h, 30d)'],
      [{ expiresIn: "soon" }, 'field "expiresIn" must be a duration: a number and its unit, s, m, h or d (90s, 30m, 12h, 30d)'],
      [{ expiresIn: "0d" }, 'field "expiresIn" must be more than 0'],
      [{ expiresIn: "3651d" }, 'field "expiresIn" must be at most 3650d'],
      [{ expiresAt: Date.now() - 1_000 }, 'field "expiresAt" must be a time to come'],
      [
        { expiresIn: "1d", expiresAt: Date.now() + 60_000 },
        'a token expires once: send "expiresIn" (a duration such as "30d") or "expiresAt" (ms since the epoch), not both',
      ],
    ] as const) {
      const res = await api("/v1/tokens", ADMIN_TOKEN, { method: "POST", body: JSON.stringify(body) });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect((await errorOf(res)).message, JSON.stringify(body)).toContain(message);
    }
    const at = Date.now() + 3_600_000;
    expect((await createToken({ expiresAt: at })).expiresAt).toBe(at);
  });

  it("makes a token with an expiry from the CLI, lists when it expires, and refuses a bad --expires with exit 2", async () => {
    const made = await runCli(["token", "create", "--name", "half-day", "--expires", "12h", "--gateway", gw.url], { env: { TANDEM_TOKEN: ADMIN_TOKEN } });
    expect(made.code, made.stderr).toBe(0);
    const until = /"half-day": scope call, every app, until (\S+)\n/.exec(made.stdout)?.[1];
    expect(Date.parse(until!) - Date.now()).toBeGreaterThan(12 * 3600_000 - 60_000);
    const listed = await runCli(["token", "list", "--gateway", gw.url], { env: { TANDEM_TOKEN: ADMIN_TOKEN } });
    expect(listed.stdout).toMatch(new RegExp(`half-day .* ${until!.slice(0, 16).replace("T", " ")}$`, "m"));
    for (const [value, problem] of [
      ["30", "must be a duration: a number and its unit, s, m, h or d (90s, 30m, 12h, 30d)"],
      ["-1d", "must be a duration"],
      ["0s", "must be more than 0"],
      ["9999d", "must be at most 3650d"],
    ]) {
      const bad = await runCli(["token", "create", "--expires", value!, "--gateway", gw.url], { env: { TANDEM_TOKEN: ADMIN_TOKEN } });
      expect(bad.code, value).toBe(2);
      expect(bad.stderr, value).toMatch(
        new RegExp(`^error: option '--expires <duration>' argument '${value}' is invalid\\. ${problem.replace(/[().,]/g, "\\$&")}`),
      );
    }
  });

  it("says how to replace the bootstrap token rather than that it does not exist", async () => {
    const id = ADMIN_TOKEN.split(".")[0]!;
    const res = await api(`/v1/tokens/${id}`, ADMIN_TOKEN, { method: "DELETE" });
    expect(res.status).toBe(400);
    expect(await errorOf(res)).toMatchObject({
      code: "invalid_request",
      message: `token ${id} is the gateway's bootstrap admin token (TANDEM_ADMIN_TOKEN), which is not revoked here: replace it with \`tandem token bootstrap --put\` (under \`tandem serve\`: delete .tandem/token and start it again)`,
    });
    expect((await api("/v1/whoami", ADMIN_TOKEN)).status).toBe(200);
  });
});

describe("streams a revoked token opened", () => {
  it("ends a log follow, through the SDK and over HTTP, and the dashboard's live stream, once their token is revoked", async () => {
    const doomed = await createToken({ name: "follower", apps: ["edge"] });
    // A call still running: the follow of one that has ended ends on its own, its token or not.
    const call = await lookup<[number], string>("edge", "napping", { gateway: gw.url, token: doomed.token }).spawn(20_000);
    const sdk = (async () => {
      for await (const _ of FunctionCall.fromId(call.id, { gateway: gw.url, token: doomed.token }).followLogs());
    })();
    const http = await api("/v1/apps/edge/logs?follow=1", doomed.token);
    const live = await api("/_tandem/apps/edge/events?logs=1", doomed.token);
    expect([http.status, live.status]).toEqual([200, 200]);
    expect((await api(`/v1/tokens/${doomed.id}`, ADMIN_TOKEN, { method: "DELETE" })).status).toBe(200);
    const started = Date.now();
    await expect(sdk).rejects.toMatchObject({
      name: "UnauthorizedError",
      message: `the token that opened this stream, ${doomed.id}, was revoked; open it again with another`,
    });
    const lines = (await http.text()).split("\n").filter(Boolean);
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ error: { code: "unauthorized", message: expect.stringContaining("was revoked") } });
    await live.text(); // ends
    // A follow with no new line goes on to its keep-alive (5 s) before it asks again.
    expect(Date.now() - started).toBeLessThan(8_000);
  }, 30_000);
});

describe("tokens through the SDK and the CLI", () => {
  it("sends the token option, and raises UnauthorizedError and ForbiddenError", async () => {
    const edgeOnly = await createToken({ apps: ["edge"] });
    expect(await lookup<[number], number>("edge", "square", { gateway: gw.url, token: edgeOnly.token }).remote(5)).toBe(25);
    const call = await lookup<[number], number>("edge", "square", { gateway: gw.url, token: edgeOnly.token }).spawn(6);
    expect(await FunctionCall.fromId(call.id, { gateway: gw.url, token: edgeOnly.token }).get({ timeoutMs: 10_000 })).toBe(36);
    await expect(lookup("guarded", "hello", { gateway: gw.url, token: edgeOnly.token }).remote("x")).rejects.toBeInstanceOf(ForbiddenError);
    const revoked = await createToken({});
    await api(`/v1/tokens/${revoked.id}`, ADMIN_TOKEN, { method: "DELETE" });
    await expect(lookup("edge", "square", { gateway: gw.url, token: revoked.token }).remote(1)).rejects.toBeInstanceOf(UnauthorizedError);
    await expect(lookup("edge", "square", { gateway: gw.url, token: "not a token" }).remote(1)).rejects.toThrow("does not hold a Tandem token");
  });

  it("makes no token with --save where the profile file cannot be written, saying why", async () => {
    const before = (await (await api("/v1/tokens", ADMIN_TOKEN)).json()) as { tokens: unknown[] };
    for (const [profile, why] of [
      ["/nonexistent-tandem-dir/p.toml", "its folder /nonexistent-tandem-dir does not exist"],
      [tmpdir(), "it is a directory"],
      [`${fileURLToPath(import.meta.url)}/p.toml`, `${fileURLToPath(import.meta.url)} is a file, not a folder`],
    ]) {
      const save = await runCliIn(["token", "create", "--name", "unsaved", "--save", "--gateway", gw.url], {
        env: { TANDEM_PROFILE: profile!, TANDEM_TOKEN: ADMIN_TOKEN },
      });
      expect(save.code).toBe(2);
      // Before: the token made and printed, then "error: ENOENT: no such file or directory, open …", a live token left.
      expect(save.stderr).toContain(`error: --save: the profile file ${profile}: ${why}, so no token was made`);
      expect(save.stdout).toBe("");
    }
    // Before: made, as "token <id>", as if no name had been given.
    const unnamed = await runCliIn(["token", "create", "--name", "", "--gateway", gw.url], { env: { TANDEM_TOKEN: ADMIN_TOKEN } });
    expect(unnamed.code).toBe(2);
    expect(unnamed.stderr).toContain("--name must not be empty");
    const after = (await (await api("/v1/tokens", ADMIN_TOKEN)).json()) as { tokens: unknown[] };
    expect(after.tokens.length).toBe(before.tokens.length);
  });

  it("creates a token with --save, then every command and the SDK use it from the profile file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tandem-profile-"));
    const profile = join(dir, "profile.toml");
    const env = { TANDEM_PROFILE: profile, TANDEM_TOKEN: "" };
    // A project folder of `tandem serve`'s, whose admin token the saved one comes before.
    await mkdir(join(dir, ".tandem"));
    await writeFile(join(dir, ".tandem/token"), ADMIN_TOKEN);
    const runCli = (args: string[], options: { env: Record<string, string> }) => runCliIn(args, { ...options, cwd: dir });
    try {
      const created = await runCli(["token", "create", "--name", "laptop", "--app", "edge", "--save", "--gateway", gw.url], {
        env: { ...env, TANDEM_TOKEN: ADMIN_TOKEN },
      });
      expect(created.code, created.stderr).toBe(0);
      expect(created.stdout).toMatch(/created token tk-[0-9a-z]{16} "laptop": scope call, apps edge/);
      expect(created.stdout).toContain(`saved for ${gw.url} in ${profile}`);
      expect(created.stdout).toContain("commands here now send it instead of .tandem/token; for admin commands: TANDEM_TOKEN=$(cat .tandem/token) tandem …");
      expect((await stat(profile)).mode & 0o777).toBe(0o600);
      expect(await readFile(profile, "utf8")).toMatch(new RegExp(`\\[gateways\\."${gw.url.replace(/[.]/g, "\\.")}"\\]\\s+token = "tk-`));

      const apps = await runCli(["apps", "--gateway", gw.url, "--json"], { env });
      expect(apps.code, apps.stderr).toBe(0);
      expect((JSON.parse(apps.stdout) as { name: string }[]).map((a) => a.name)).toEqual(["edge"]);

      const refused = await runCli(["token", "list", "--gateway", gw.url], { env });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('has scope "call"; GET /v1/tokens needs "admin"');
      // Which token that was, and how to send this folder's admin token instead.
      expect(refused.stderr).toContain(
        `; the token sent is the one saved for ${gw.url} in ${profile}, which comes before this folder's .tandem/token: send another with --token or TANDEM_TOKEN (this folder's admin token: TANDEM_TOKEN=$(cat .tandem/token))`,
      );

      const limited = await createToken({ name: "dev laptop", env: "dev" });
      const listed = await runCli(["token", "list", "--gateway", gw.url], { env: { ...env, TANDEM_TOKEN: ADMIN_TOKEN } });
      expect(listed.stdout).toMatch(/^id\s+name\s+scope\s+apps\s+env\s+created\s+last used\s+expires$/m);
      expect(listed.stdout).toMatch(/tk-[0-9a-z]{16}\s+laptop\s+call\s+edge\s+all\s/);
      // A token limited to an environment says which.
      expect(listed.stdout).toMatch(new RegExp(`${limited.id}\\s+dev laptop\\s+call\\s+all\\s+dev\\s`));
      const id = /tk-[0-9a-z]{16}(?=\s+laptop)/.exec(listed.stdout)![0];
      const revoked = await runCli(["token", "revoke", id, "--gateway", gw.url], { env: { ...env, TANDEM_TOKEN: ADMIN_TOKEN } });
      expect(revoked.stdout).toContain(`revoked token ${id} "laptop"`);
      const after = await runCli(["apps", "--gateway", gw.url], { env });
      expect(after.code).toBe(2);
      expect(after.stderr).toContain(`token ${id} is not known to this gateway, or was revoked`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("names a whole token's id when revoke is given the token, and does not print its secret", async () => {
    const whole = await createToken({ name: "pasted whole" });
    const res = await runCli(["token", "revoke", whole.token, "--gateway", gw.url], { env: { TANDEM_TOKEN: ADMIN_TOKEN } });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(`that is a whole token: revoke takes its id, ${whole.id} (the part before the dot)`);
    expect(res.stderr + res.stdout).not.toContain(whole.token.split(".")[1]);
    expect((await api("/v1/whoami", whole.token)).status).toBe(200);
  });

  it("names TANDEM_TOKEN, not an option, when the token it holds is not one", async () => {
    const res = await runCli(["apps", "--gateway", gw.url], { env: { TANDEM_TOKEN: "not-a-token" } });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("error: TANDEM_TOKEN does not hold a Tandem token");
    const option = await runCli(["apps", "--gateway", gw.url, "--token", "not-a-token"], { env: { TANDEM_TOKEN: ADMIN_TOKEN } });
    expect(option.stderr).toContain("error: the token option does not hold a Tandem token");
  });

  it("says how to get a token when a command has none", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tandem-none-"));
    try {
      const res = await runCli(["apps", "--gateway", gw.url], { cwd: dir, env: { TANDEM_TOKEN: "", TANDEM_PROFILE: join(dir, "none.toml") } });
      expect(res.code).toBe(2);
      expect(res.stderr).toContain("this gateway needs an API token");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("web endpoints and agents that ask for a token", () => {
  it("keeps endpoints public unless they ask", async () => {
    expect(await (await fetch(`${gw.url}/guarded/open`)).json()).toEqual({ open: true });
  });

  it("refuses a guarded endpoint and web app without a token, and serves them with one", async () => {
    for (const path of ["/guarded/secret", "/guarded/admin/"]) {
      const refused = await fetch(gw.url + path);
      expect(refused.status, path).toBe(401);
      expect((await errorOf(refused)).message).toContain("needs a token");
      expect((await fetch(gw.url + path, authed())).status, path).toBe(200);
    }
    const edgeOnly = await createToken({ apps: ["edge"] });
    expect((await fetch(`${gw.url}/guarded/secret`, { headers: bearer(edgeOnly.token) })).status).toBe(403);
  });

  it("lets a browser's CORS preflight to a guarded web app reach the app's own CORS handling; the request it clears is checked", async () => {
    const preflight = { origin: "https://app.example", "access-control-request-method": "GET", "access-control-request-headers": "authorization" };
    const cleared = await fetch(`${gw.url}/guarded/admin/`, { method: "OPTIONS", headers: preflight });
    expect(cleared.status).toBe(204); // hono's cors(), which the app mounts, answered it
    expect(cleared.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(cleared.headers.get("access-control-allow-headers")).toBe("Authorization");
    // An OPTIONS that is not a preflight, and the cross-origin request itself without its token, are checked as ever.
    expect((await fetch(`${gw.url}/guarded/admin/`, { method: "OPTIONS" })).status).toBe(401);
    expect((await fetch(`${gw.url}/guarded/admin/`, { headers: { origin: "https://app.example" } })).status).toBe(401);
    const allowed = await fetch(`${gw.url}/guarded/admin/`, authed({ headers: { origin: "https://app.example" } }));
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get("access-control-allow-origin")).toBe("https://app.example");
  });

  it("lets an origin a guarded web app's CORS allows read the app's refusal of its request (401, 403), and no other origin", async () => {
    const refusal = async (path: string, origin?: string) => {
      const res = await fetch(gw.url + path, { headers: origin ? { origin } : {} });
      return [res.status, res.headers.get("access-control-allow-origin"), (await errorOf(res)).code];
    };
    // The page could not read these before (no access-control-allow-origin): to the browser, a network error.
    expect(await refusal("/guarded/admin/", "https://app.example")).toEqual([401, "https://app.example", "unauthorized"]);
    expect(await refusal("/guarded/admin/?token=ct-stale", "https://app.example")).toEqual([401, "https://app.example", "unauthorized"]);
    const mint = await api("/v1/apps/guarded/connect-token", ADMIN_TOKEN, { method: "POST", body: JSON.stringify({ label: "secret" }) });
    const otherLabel = ((await mint.json()) as { token: string }).token;
    expect(await refusal(`/guarded/admin/?token=${otherLabel}`, "https://app.example")).toEqual([403, "https://app.example", "forbidden"]);
    // An origin the app's CORS does not allow, and a request with no origin, get the refusal as before.
    expect(await refusal("/guarded/admin/", "https://elsewhere.example")).toEqual([401, null, "unauthorized"]);
    expect(await refusal("/guarded/admin/")).toEqual([401, null, "unauthorized"]);
  });

  it("opens a guarded endpoint with a connect token for it, and not with one for another label or app, or an old one", async () => {
    const mint = async (body: Record<string, unknown>, app = "guarded") =>
      (await (await api(`/v1/apps/${app}/connect-token`, ADMIN_TOKEN, { method: "POST", body: JSON.stringify(body) })).json()) as {
        token: string;
        expiresAt: number;
      };
    const forSecret = await mint({ label: "secret", ttlSeconds: 60 });
    expect(forSecret.token).toMatch(/^ct-/);
    expect(forSecret.expiresAt).toBeGreaterThan(Date.now() + 50_000);
    expect(await (await fetch(`${gw.url}/guarded/secret?token=${forSecret.token}`)).json()).toEqual({ secret: true });
    expect((await fetch(`${gw.url}/guarded/admin/?token=${forSecret.token}`)).status).toBe(403);
    const forEdge = await mint({}, "edge");
    expect((await fetch(`${gw.url}/guarded/secret?token=${forEdge.token}`)).status).toBe(403);
    const forged = forSecret.token.slice(0, -4) + (forSecret.token.endsWith("AAAA") ? "BBBB" : "AAAA");
    expect((await fetch(`${gw.url}/guarded/secret?token=${forged}`)).status).toBe(401);
    const missing = await api("/v1/apps/guarded/connect-token", ADMIN_TOKEN, { method: "POST", body: JSON.stringify({ label: "nope" }) });
    expect(missing.status).toBe(404);
    // A public endpoint opens without one: minting for it is refused, naming those that ask.
    const forPublic = await api("/v1/apps/guarded/connect-token", ADMIN_TOKEN, { method: "POST", body: JSON.stringify({ label: "open" }) });
    expect(forPublic.status).toBe(400);
    expect(((await forPublic.json()) as { error: { message: string } }).error.message).toBe(
      '"open" of app "guarded" is public (it does not ask for a token), so it opens without a connect token; those of the app that ask for one: admin, secret, room, feed',
    );
  });

  it("tells an API token in ?token= to go in Authorization, and does not open the endpoint with it", async () => {
    const inUrl = await fetch(`${gw.url}/guarded/secret?token=${ADMIN_TOKEN}`);
    expect(inUrl.status).toBe(401);
    expect((await errorOf(inUrl)).message).toBe(
      "?token= holds an API token (tk-…), which goes in `Authorization: Bearer …`, never in a URL; ?token= takes a connect token (ct-…) from POST /v1/apps/guarded/connect-token",
    );
  });

  it("ends the connect tokens a token minted when it is revoked", async () => {
    const minter = await createToken({ name: "page backend", apps: ["guarded"] });
    const minted = await api("/v1/apps/guarded/connect-token", minter.token, { method: "POST", body: JSON.stringify({ label: "secret" }) });
    const { token } = (await minted.json()) as { token: string };
    expect(await (await fetch(`${gw.url}/guarded/secret?token=${token}`)).json()).toEqual({ secret: true });
    expect((await api(`/v1/tokens/${minter.id}`, ADMIN_TOKEN, { method: "DELETE" })).status).toBe(200);
    const refused = await fetch(`${gw.url}/guarded/secret?token=${token}`);
    expect(refused.status).toBe(401);
    expect((await errorOf(refused)).message).toBe(
      `the connect token was minted by token ${minter.id}, which was revoked; mint another (POST /v1/apps/guarded/connect-token)`,
    );
    // The bootstrap token's own connect tokens still open the endpoint.
    const mintedByAdmin = await api("/v1/apps/guarded/connect-token", ADMIN_TOKEN, { method: "POST", body: JSON.stringify({ label: "secret" }) });
    const admins = ((await mintedByAdmin.json()) as { token: string }).token;
    expect((await fetch(`${gw.url}/guarded/secret?token=${admins}`)).status).toBe(200);
  });

  it("lets connect() into a guarded agent with an API token in Node, or a connect token, and says why it cannot without", async () => {
    const edgeOnly = await createToken({ apps: ["edge"] });
    const forbidden = connect("guarded", "room", { gateway: gw.url, token: edgeOnly.token });
    const closed = await new Promise<{ reason: string; willReconnect: boolean }>((resolve) => forbidden.addEventListener("close", (e) => resolve(e as never)));
    expect(closed.willReconnect).toBe(false);
    expect(closed.reason).toContain("HTTP 403");

    for (const token of [
      ADMIN_TOKEN,
      async () => (await (await api("/v1/apps/guarded/connect-token", ADMIN_TOKEN, { method: "POST", body: "{}" })).json()).token,
    ]) {
      const socket = connect("guarded", "room", { gateway: gw.url, token: token as string });
      const got: string[] = [];
      socket.addEventListener("message", (e) => got.push(String((e as AgentMessageEvent).data)));
      socket.send("hi");
      const deadline = Date.now() + 5000;
      while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(got).toEqual(["echo hi"]);
      socket.close();
    }
  });

  it("ends connect() with an error and a close when its token is not one, or its token function throws", async () => {
    for (const [token, reason] of [
      ["hunter2", "connect: token must be an API token (tk-….ts-…) or a connect token (ct-…)"],
      // It said "must be … a connect token (ct-…)" of one that begins so.
      ["ct-bogus", "connect: token is no whole connect token (ct-<payload>.<signature>, as POST /v1/apps/:app/connect-token mints it): was it cut short?"],
      [
        () => {
          throw new Error("the backend did not answer");
        },
        "the backend did not answer",
      ],
    ] as const) {
      const socket = connect("guarded", "room", { gateway: gw.url, token });
      const errors: string[] = [];
      socket.addEventListener("error", (e) => errors.push((e as unknown as { message: string }).message));
      const closed = await new Promise<{ code: number; reason: string; willReconnect: boolean }>((resolve, reject) => {
        socket.addEventListener("close", (e) => resolve(e as never));
        setTimeout(() => reject(new Error(`no close event for ${String(token)}`)), 3_000);
      });
      expect(errors).toEqual([reason]);
      expect([closed.code, closed.reason, closed.willReconnect, socket.readyState]).toEqual([1006, reason, false, 3]);
    }
  });

  it("tries a token function that throws while reconnecting again, as the connection is (before: it ended the client for good)", async () => {
    // Its backend down a moment, as when it restarts with the gateway: the first reconnect's token fails, the next works.
    let asked = 0;
    const token = async () => {
      asked++;
      if (asked === 2) throw new Error("fetch failed");
      return ((await (await api("/v1/apps/guarded/connect-token", ADMIN_TOKEN, { method: "POST", body: "{}" })).json()) as { token: string }).token;
    };
    const socket = connect("guarded", "room", { gateway: gw.url, token });
    const events: string[] = [];
    socket.addEventListener("error", (e) => events.push(`error ${(e as unknown as { message: string }).message}`));
    socket.addEventListener("close", (e) =>
      events.push(`close ${(e as unknown as { code: number }).code} ${String((e as unknown as { willReconnect: boolean }).willReconnect)}`),
    );
    socket.addEventListener("open", (e) => events.push(`open ${String((e as unknown as { resumed: boolean }).resumed)}`));
    try {
      await eventually(() => events.includes("open false"));
      socket.send("drop");
      await eventually(() => events.includes("open true"), 10_000);
      expect(events).toEqual(["open false", "close 4000 true", "error connect: the token function threw: fetch failed; trying again", "open true"]);
      expect(asked).toBe(3);
    } finally {
      socket.close();
    }
  });

  it("closes an open agent socket at its next message once the token that opened it, or minted its connect token, is revoked", async () => {
    const wsUrl = `${gw.url.replace(/^http/, "ws")}/guarded/room`;
    const opened = await createToken({ name: "socket opener", apps: ["guarded"] });
    const minter = await createToken({ name: "socket minter", apps: ["guarded"] });
    const minted = await api("/v1/apps/guarded/connect-token", minter.token, { method: "POST", body: JSON.stringify({ label: "room" }) });
    const { token: connectToken } = (await minted.json()) as { token: string };
    const open = (ws: WebSocket) => ({ ws, open: new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject)) });
    const sockets = [
      { ...open(new WebSocket(wsUrl, { headers: bearer(opened.token) })), id: opened.id },
      { ...open(new WebSocket(`${wsUrl}?token=${connectToken}`)), id: minter.id },
    ];
    const echoed = (ws: WebSocket) => new Promise<string>((resolve) => ws.once("message", (m) => resolve(String(m))));
    for (const { ws, open } of sockets) {
      await open;
      const echo = echoed(ws);
      ws.send("before");
      expect(await echo).toBe("echo before");
    }
    for (const { id } of sockets) expect((await api(`/v1/tokens/${id}`, ADMIN_TOKEN, { method: "DELETE" })).status).toBe(200);
    const closes = await Promise.all(
      sockets.map(async ({ ws, id }) => {
        const closed = new Promise<string>((resolve) => ws.once("close", (code, reason) => resolve(`${code} ${String(reason)}`)));
        // Within the 10 s an isolate may trust a checked token: every half second, until the socket closes.
        const poke = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send("after"), 500);
        const outcome = await Promise.race([closed, new Promise<string>((resolve) => setTimeout(() => resolve("still open"), 12_000))]);
        clearInterval(poke);
        ws.terminate();
        return [id, outcome];
      }),
    );
    expect(closes).toEqual(sockets.map(({ id }) => [id, `1008 the token that opened this socket, ${id}, was revoked; connect again with another`]));
  }, 30_000);

  it("closes an open agent socket once the token that opened it expires, saying it expired (not that it was revoked)", async () => {
    const wsUrl = `${gw.url.replace(/^http/, "ws")}/guarded/room`;
    const expiresAt = Date.now() + 2_000;
    const brief = await createToken({ name: "brief opener", apps: ["guarded"], expiresAt });
    const ws = new WebSocket(wsUrl, { headers: bearer(brief.token) });
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    const echo = new Promise<string>((resolve) => ws.once("message", (m) => resolve(String(m))));
    ws.send("before");
    expect(await echo).toBe("echo before");
    const closed = new Promise<string>((resolve) => ws.once("close", (code, reason) => resolve(`${code} ${String(reason)}`)));
    // Past its expiry, and the 10 s an isolate may trust a checked token: every half second, until the socket closes.
    const poke = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send("after"), 500);
    const outcome = await Promise.race([closed, new Promise<string>((resolve) => setTimeout(() => resolve("still open"), 15_000))]);
    clearInterval(poke);
    ws.terminate();
    // It said "was revoked", which sent its owner to look for who revoked it.
    expect(outcome).toBe(`1008 the token that opened this socket, ${brief.id}, expired at ${new Date(expiresAt).toISOString()}; connect again with another`);
  }, 30_000);

  it("closes a socket that only receives once the token that opened it is revoked, and sends it nothing more", async () => {
    const wsUrl = `${gw.url.replace(/^http/, "ws")}/guarded/feed`;
    const listener = await createToken({ name: "listener", apps: ["guarded"] });
    const opened = (ws: WebSocket) => new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    const quiet = new WebSocket(wsUrl, { headers: bearer(listener.token) });
    const speaker = new WebSocket(wsUrl, { headers: bearer(ADMIN_TOKEN) });
    await Promise.all([opened(quiet), opened(speaker)]);
    const heard: string[] = [];
    quiet.on("message", (m) => heard.push(String(m)));
    const first = new Promise((resolve) => quiet.once("message", resolve));
    speaker.send("say before");
    await first;
    expect((await api(`/v1/tokens/${listener.id}`, ADMIN_TOKEN, { method: "DELETE" })).status).toBe(200);
    const closed = new Promise<string>((resolve) => quiet.once("close", (code, reason) => resolve(`${code} ${String(reason)}`)));
    // The hub checks the token again once it has trusted it 10 s: the speaker talks every half second until then.
    let n = 0;
    const talk = setInterval(() => speaker.send(`say after ${++n}`), 500);
    // The hub's close frame is what counts (workerd ends the connection later, closed beside another socket's frame):
    // once it came (CLOSING), the socket is let go here, and its close event gives the frame's code and reason.
    const deadline = Date.now() + 13_000;
    while (quiet.readyState === WebSocket.OPEN && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    clearInterval(talk);
    const state = quiet.readyState;
    quiet.terminate();
    const outcome = state === WebSocket.OPEN ? "still open" : await closed;
    speaker.terminate();
    expect(outcome).toBe(`1008 the token that opened this socket, ${listener.id}, was revoked; connect again with another`);
    // Only the frame beside which the hub checked the token again reached it (this isolate forgot the token as it
    // revoked it; another isolate may trust it up to 10 s more).
    expect(heard.filter((m) => m.startsWith("after")).length).toBeLessThanOrEqual(1);
  }, 30_000);

  it("refuses a raw WebSocket upgrade to a guarded agent without a token", async () => {
    const ws = new WebSocket(`${gw.url.replace(/^http/, "ws")}/guarded/room`);
    const status = await new Promise<number>((resolve) => ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(401);
  });
});
