/**
 * `/v1/secrets` in real workerd: who may list and write secrets, the answers
 * to bad input, a gateway without `TANDEM_SECRETS_KEY`, and the store's rows
 * on disk holding no value in the clear.
 */
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TokenCreateAnswer } from "../sdk/protocol.js";
import { ADMIN_TOKEN, eventually, startTestGateway, type TestGateway } from "./helpers/gateway.js";

const KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const VALUE = "v-routes-31c7-secret-value";
const fixture = new URL("./fixtures/edge-app.ts", import.meta.url).pathname;
let gw: TestGateway;
let keyless: TestGateway;

const api = (g: TestGateway, path: string, token: string, init: RequestInit = {}) =>
  fetch(g.url + path, { ...init, headers: { "content-type": "application/json", authorization: `Bearer ${token}` } });
const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;
const create = (g: TestGateway, token: string, body: unknown) => api(g, "/v1/secrets", token, { method: "POST", body: JSON.stringify(body) });

async function token(body: Record<string, unknown>): Promise<string> {
  const res = await api(gw, "/v1/tokens", ADMIN_TOKEN, { method: "POST", body: JSON.stringify(body) });
  return ((await res.json()) as TokenCreateAnswer).token;
}

beforeAll(async () => {
  [gw, keyless] = await Promise.all([startTestGateway(fixture, { bindings: { TANDEM_SECRETS_KEY: KEY } }), startTestGateway(fixture)]);
});
afterAll(async () => {
  await Promise.all([gw?.dispose(), keyless?.dispose()]);
});

describe("/v1/secrets", () => {
  it("creates, lists without values, refuses a second create without force (409), replaces with force, deletes", async () => {
    const created = await create(gw, ADMIN_TOKEN, { name: "db", values: { DB_URL: VALUE, DB_USER: "app" } });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ name: "db", keys: ["DB_URL", "DB_USER"] });
    const again = await create(gw, ADMIN_TOKEN, { name: "db", values: { DB_URL: "x" } });
    expect(again.status).toBe(409);
    expect(await errorOf(again)).toMatchObject({ code: "already_exists", message: expect.stringContaining('a secret named "db" exists') });
    const replaced = await create(gw, ADMIN_TOKEN, { name: "db", values: { DB_URL: VALUE }, force: true });
    expect(replaced.status).toBe(201);
    const listed = await (await api(gw, "/v1/secrets", ADMIN_TOKEN)).text();
    expect(JSON.parse(listed).secrets).toMatchObject([{ name: "db", keys: ["DB_URL"] }]);
    expect(listed).not.toContain(VALUE);
    expect(gw.output.join("\n")).not.toContain(VALUE);
    expect((await api(gw, "/v1/secrets/db", ADMIN_TOKEN, { method: "DELETE" })).status).toBe(200);
    const gone = await api(gw, "/v1/secrets/db", ADMIN_TOKEN, { method: "DELETE" });
    expect(gone.status).toBe(404);
    expect((await errorOf(gone)).message).toBe('no secret named "db" in environment "main" (tandem secret list shows them)');
    // Another environment's secrets are its own: its 404 names it, and the flag that lists them.
    const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, "tandem-env": "dev" };
    const elsewhere = await fetch(`${gw.url}/v1/secrets/db`, { method: "DELETE", headers });
    expect(elsewhere.status).toBe(404);
    expect((await errorOf(elsewhere)).message).toBe('no secret named "db" in environment "dev" (tandem secret list --env dev shows them)');
  });

  it("keeps values sealed on disk", async () => {
    expect((await create(gw, ADMIN_TOKEN, { name: "kept", values: { K: VALUE } })).status).toBe(201);
    const dir = join(gw.dir, "state", "do", "tandem-gateway-SecretStore");
    const files = await readdir(dir);
    expect(files.some((f) => f.endsWith(".sqlite"))).toBe(true);
    for (const file of files) expect(await readFile(join(dir, file), "latin1")).not.toContain(VALUE);
  });

  it("needs a deploy token that reaches every app: not a call token, not one restricted to an app", async () => {
    const caller = await api(gw, "/v1/secrets", await token({ scope: "call" }));
    expect(caller.status).toBe(403);
    expect((await errorOf(caller)).message).toContain('needs "deploy"');
    const restricted = await create(gw, await token({ scope: "deploy", apps: ["edge"] }), { name: "x", values: { A: "b" } });
    expect(restricted.status).toBe(403);
    expect((await errorOf(restricted)).message).toContain("secrets are the gateway's, for every app");
    expect((await create(gw, await token({ scope: "deploy" }), { name: "deployer", values: { A: "b" } })).status).toBe(201);
  });

  it("answers bad input with 400 naming the field", async () => {
    const cases: [unknown, string][] = [
      [{ name: "bad name", values: { A: "b" } }, '"name"'],
      [{ name: "ok", values: {} }, "at least one KEY=VALUE"],
      [{ name: "ok", values: { "1A": "b" } }, "environment variable names"],
      [{ name: "ok", values: { A: 1 } }, 'field "values.A" must be a string'],
      [{ name: "ok", values: { A: "b\u0000c" } }, 'field "values.A" must not hold a NUL character'],
      [{ name: "ok", values: { A: "b\ud800c" } }, 'field "values.A" must be Unicode text: it holds a lone surrogate'],
      [JSON.parse('{"name":"ok","values":{"__proto__":"x","B":"y"}}'), '"__proto__" cannot be a key'],
      // The plane's own names in a container (before: taken, and one it sets later stood in its place there).
      [{ name: "ok", values: { TANDEM_APP: "other" } }, '"TANDEM_APP" is a name the plane sets itself in each container (TANDEM_APP, TANDEM_FUNCTION,'],
      [{ name: "ok", values: { A: "b" }, extra: true }, "extra"],
      [{ values: { A: "b" } }, 'field "name" must be a secret name: 1-64 letters'],
      [{ name: "ok", values: ["A=b"] }, 'field "values" must be an object of KEY: "value"'],
      [{ name: "ok" }, 'field "values" must be an object of KEY: "value"'],
      [{ name: "ok", values: { A: "b" }, force: "yes" }, 'field "force" must be true or false'],
    ];
    for (const [body, says] of cases) {
      const res = await create(gw, ADMIN_TOKEN, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect((await errorOf(res)).message).toContain(says);
    }
    expect((await api(gw, "/v1/secrets", ADMIN_TOKEN, { method: "PUT" })).status).toBe(405);
  });

  it("refuses a body that is not UTF-8 with 400, rather than storing U+FFFD in place of its bytes", async () => {
    const body = new Uint8Array([...new TextEncoder().encode('{"name":"latin1","values":{"A":"caf'), 0xe9, ...new TextEncoder().encode('"}}')]);
    const res = await api(gw, "/v1/secrets", ADMIN_TOKEN, { method: "POST", body });
    expect(res.status).toBe(400);
    expect(await errorOf(res)).toMatchObject({ code: "invalid_request", message: "request body is not UTF-8 text: send JSON encoded as UTF-8" });
    const listed = (await (await api(gw, "/v1/secrets", ADMIN_TOKEN)).json()) as { secrets: { name: string }[] };
    expect(listed.secrets.map((s) => s.name)).not.toContain("latin1");
  });

  it("answers 503 not_configured on a gateway without TANDEM_SECRETS_KEY, saying how to set it", async () => {
    const res = await create(keyless, ADMIN_TOKEN, { name: "db", values: { A: "b" } });
    expect(res.status).toBe(503);
    expect(await errorOf(res)).toMatchObject({ code: "not_configured", message: expect.stringContaining("wrangler secret put TANDEM_SECRETS_KEY") });
  });
});

describe("a secret replaced while an isolate keeps its earlier value", () => {
  let keeper: TestGateway;
  const OLD = "postgres://first-4a1e-secret@db/prod";
  const NEW = "postgres://second-77c2-secret@db/prod";
  beforeAll(async () => {
    keeper = await startTestGateway(new URL("./fixtures/secret-keeper-app.ts", import.meta.url).pathname, { bindings: { TANDEM_SECRETS_KEY: KEY } });
  });
  afterAll(async () => {
    await keeper?.dispose();
  });
  const keep = async () => {
    const res = await api(keeper, "/v1/apps/keeper/functions/keep/call", ADMIN_TOKEN, { method: "POST", body: JSON.stringify({ args: [] }) });
    return errorOf(res);
  };

  it("still masks the earlier value in the function's logs and errors at the edge", async () => {
    expect((await create(keeper, ADMIN_TOKEN, { name: "db", values: { DB_URL: OLD } })).status).toBe(201);
    expect((await keep()).message).toBe("refused ***");
    expect((await create(keeper, ADMIN_TOKEN, { name: "db", values: { DB_URL: NEW }, force: true })).status).toBe(201);
    // The write forgot the old values in this isolate: the call reads the new one, and its code still holds the old.
    expect((await keep()).message).toBe("refused ***");
    await eventually(() => keeper.output.filter((l) => /\[keeper\.keep fc-[0-9a-z]{26}\] kept \*\*\*; now \*\*\*$/.test(l)).length === 2);
    expect(keeper.output.join("\n")).not.toContain(OLD);
    expect(keeper.output.join("\n")).not.toContain(NEW);
  });
});
