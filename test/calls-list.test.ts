/**
 * `GET /v1/apps/:app/calls` and `tandem calls`, in real workerd: an app's calls, latest first, of a function, status
 * or kind, a page at a time; a bad query is a 400 naming the field, a function the app lacks a 404 with the nearest
 * name, and a token limited to another app sees none of them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lookup } from "../sdk/index.js";
import type { CallList } from "../sdk/protocol.js";
import { runCli } from "./helpers/cli.js";
import { ADMIN_TOKEN, authed, startTestGateway, type TestGateway } from "./helpers/gateway.js";

let gw: TestGateway;
const ids: { squares: string[]; failed: string; spawned: string } = { squares: [], failed: "", spawned: "" };

beforeAll(async () => {
  gw = await startTestGateway([new URL("./fixtures/edge-app.ts", import.meta.url).pathname, new URL("./fixtures/other-app.ts", import.meta.url).pathname]);
  const square = lookup<[number], number>("edge", "square", { gateway: gw.url, token: ADMIN_TOKEN });
  for (let i = 0; i < 5; i++) ids.squares.push((await square.spawn(i)).id);
  const boom = await fetch(
    `${gw.url}/v1/apps/edge/functions/boom/call`,
    authed({ method: "POST", body: JSON.stringify({ args: ["listed"] }), headers: { "idempotency-key": "list-boom-1" } }),
  );
  ids.failed = ((await boom.json()) as { callId: string }).callId;
  ids.spawned = (await lookup<[number], number>("edge", "lengthOf", { gateway: gw.url, token: ADMIN_TOKEN }).spawn(1)).id;
});
afterAll(async () => {
  await gw?.dispose();
});

const list = async (query = "", token: string = ADMIN_TOKEN) => {
  const res = await fetch(`${gw.url}/v1/apps/edge/calls${query}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as CallList & { error?: { code: string; message: string } } };
};

describe("GET /v1/apps/:app/calls", () => {
  it("lists the app's calls latest first, of a function, status or kind, each with its status, attempts and error", async () => {
    await expect.poll(async () => (await list("?function=square")).body.calls.length, { timeout: 10_000 }).toBe(5);
    const squares = (await list("?function=square")).body;
    expect(squares.calls.map((c) => c.callId)).toEqual([...ids.squares].reverse());
    expect(squares.calls[0]).toMatchObject({ app: "edge", function: "square", kind: "spawn", status: "succeeded", attempts: 1, error: null });
    expect(squares.next).toBeNull();
    await expect.poll(async () => (await list("?status=failed")).body.calls.length, { timeout: 5_000 }).toBe(1); // its end is written a moment after its answer
    const failed = (await list("?status=failed")).body.calls;
    expect(failed.map((c) => c.callId)).toEqual([ids.failed]);
    expect(failed[0]).toMatchObject({ function: "boom", kind: "remote", error: { code: "function_failed" } });
    expect((await list("?kind=spawn&function=lengthOf")).body.calls.map((c) => c.callId)).toEqual([ids.spawned]);
    expect((await list("?kind=scheduled")).body.calls).toEqual([]);
    // Several statuses at once (a timeout is not `failed`: an incident's query asks for both), and since a time.
    const either = (await list("?status=failed,timed_out,succeeded&function=boom")).body.calls;
    expect(either.map((c) => c.callId)).toEqual([ids.failed]);
    expect((await list("?status=timed_out")).body.calls).toEqual([]);
    expect((await list("?since=1h&function=square")).body.calls.length).toBe(5);
    expect((await list(`?since=${Date.now() + 60_000}&function=square`)).body.calls).toEqual([]);
  });

  it("pages with next as the cursor, every call once, however many share a millisecond", async () => {
    const first = (await list("?function=square&limit=2")).body;
    expect(first.calls.map((c) => c.callId)).toEqual([ids.squares[4], ids.squares[3]]);
    expect(first.next).toBe(`${first.calls[1]!.createdAt}~${first.calls[1]!.callId}`);
    // A map's inputs are made in a few milliseconds: paging by time alone dropped those of the last one's (before).
    for await (const _ of lookup<[number], number>("edge", "lengthOf", { gateway: gw.url, token: ADMIN_TOKEN }).map(
      ["a", "bb", "ccc"].flatMap((s) => Array(40).fill(s)) as never,
    ))
      void _;
    await expect.poll(async () => (await list("?kind=map&limit=1000")).body.calls.length, { timeout: 5_000 }).toBe(120); // recorded as the map ends
    const all = (await list("?kind=map&limit=1000")).body.calls.map((c) => c.callId);
    const paged: string[] = [];
    let cursor: string | null = "";
    for (let pages = 0; cursor !== null && pages < 40; pages++) {
      const page: CallList = (await list(`?kind=map&limit=7${cursor ? `&cursor=${cursor}` : ""}`)).body;
      paged.push(...page.calls.map((c) => c.callId));
      cursor = page.next;
    }
    expect(paged).toEqual(all);
    expect((await list("?cursor=12~fc-nope")).status).toBe(400);
  });

  it("lists a class's methods' calls by the class's name, as tandem logs --function takes it", async () => {
    const other = (fn: string) => lookup<[Record<string, never>, number], number>("other", fn, { gateway: gw.url, token: ADMIN_TOKEN });
    await other("Counter.bump").remote({}, 1);
    await other("Counter.drop").remote({}, 1);
    await lookup("other", "ping", { gateway: gw.url, token: ADMIN_TOKEN }).remote();
    // Each is recorded as it ended, a moment after its answer.
    const listed = async () => ((await (await fetch(`${gw.url}/v1/apps/other/calls?function=Counter`, authed())).json()) as CallList).calls;
    await expect.poll(async () => (await listed()).map((c) => c.function), { timeout: 5_000 }).toEqual(["Counter.drop", "Counter.bump"]);
  });

  it("refuses a bad query with a 400 naming the field, and a function the app lacks with a 404 naming the nearest", async () => {
    for (const [query, said] of [
      ["?status=broken", 'field "status" must be one or more of pending, running, succeeded, failed, timed_out, cancelled, with commas between'],
      ["?status=failed,broken", 'field "status" must be one or more of'],
      ["?since=yesterday", 'field "since" must be a duration back from now'],
      ["?limit=0", 'field "limit" must be a whole number from 1 to 1000'],
      ["?limit=5000", 'field "limit" must be a whole number from 1 to 1000'],
      ["?before=yesterday", 'field "before" must be a time in ms since the epoch'],
      ["?stauts=failed", "stauts"],
      ["?status=failed&status=succeeded", "status"],
    ] as const) {
      const { status, body } = await list(query);
      expect(status, query).toBe(400);
      expect(body.error?.message, query).toContain(said);
    }
    const missing = await list("?function=sqaure");
    expect(missing.status).toBe(404);
    expect(missing.body.error?.message).toContain('app "edge" has no function or class "sqaure"');
    expect(missing.body.error?.message).toContain('did you mean "square"?');
    expect((await fetch(`${gw.url}/v1/apps/nope/calls`, authed())).status).toBe(404);
  });

  it("answers a token limited to another app 403, and no token 401", async () => {
    const created = await fetch(`${gw.url}/v1/tokens`, authed({ method: "POST", body: JSON.stringify({ name: "others", scope: "call", apps: ["other"] }) }));
    expect(created.status).toBe(201);
    const { token } = (await created.json()) as { token: string };
    const refused = await list("", token);
    expect(refused.status, JSON.stringify(refused.body)).toBe(403);
    expect((await fetch(`${gw.url}/v1/apps/edge/calls`)).status).toBe(401);
  });

  it("refuses a path's app that is no name with a short 400, after the token, its bidi marks shown (before: echoed whole, as it came)", async () => {
    const long = await fetch(`${gw.url}/v1/apps/${"a".repeat(8_000)}/calls`, authed());
    expect(long.status).toBe(400);
    const text = await long.text();
    expect(text.length).toBeLessThan(400);
    expect(JSON.parse(text).error.message).toBe(`"${"a".repeat(80)}…" is not an app name (1-64 letters, digits, '-' or '_', starting with a letter or digit)`);
    const reordered = await fetch(`${gw.url}/v1/apps/in%E2%80%AEvoice/logs`, authed());
    expect(reordered.status).toBe(400);
    const message = ((await reordered.json()) as { error: { message: string } }).error.message;
    expect(message).toContain('"in\\u202evoice" is not an app name');
    expect(message).not.toContain("\u202e");
    expect((await fetch(`${gw.url}/v1/apps/a%2Fb/calls`, authed())).status).toBe(400);
    expect((await fetch(`${gw.url}/v1/apps/${"a".repeat(8_000)}/calls`)).status).toBe(401);
  });
});

describe("the dashboard's calls page", () => {
  it("refuses a filter it would ignore, saying what filters calls (before: ?status=failed listed every call)", async () => {
    const page = await fetch(`${gw.url}/_tandem/apps/edge/calls?status=failed`, authed());
    expect(page.status).toBe(400);
    expect(await page.text()).toContain("the calls page takes no query, not &quot;status&quot;");
    expect((await fetch(`${gw.url}/_tandem/apps/edge/calls`, authed())).status).toBe(200);
  });

  it("repeats no more than 80 characters of a call id it refuses (before: all 5,000)", async () => {
    const events = await fetch(`${gw.url}/_tandem/apps/edge/events?call=${"b".repeat(5_000)}`, authed());
    expect(events.status).toBe(400);
    const text = await events.text();
    expect(text).toContain(`${"b".repeat(80)}…`);
    expect(text).not.toContain("b".repeat(81));
    // One more field of it, strict as the others (before: logs=2 was taken as no logs at all).
    const logs = await fetch(`${gw.url}/_tandem/apps/edge/events?logs=2`, authed());
    expect(logs.status).toBe(400);
    expect(await logs.text()).toContain("&quot;logs&quot;: &quot;2&quot; is not 1");
  });
});

describe("tandem calls", () => {
  const cli = (...args: string[]) => runCli(["calls", "edge", ...args, "--gateway", gw.url, "--token", ADMIN_TOKEN], { env: { NO_COLOR: "1" } });

  it("prints the calls, one a line, and the next page's command when there is more", async () => {
    const failed = await cli("--status", "failed");
    expect(failed.code, failed.stderr).toBe(0);
    expect(failed.stdout).toMatch(new RegExp(`${ids.failed} +boom +remote +failed +1 .* function_failed: `));
    // --limit, as the API names it, is -n (before: "unknown option '--limit'").
    const limited = await cli("--function", "square", "--limit", "2");
    expect(limited.code, limited.stderr).toBe(0);
    expect(limited.stdout.split("\n").filter((l) => /^\d{4}-\d\d-\d\dT\S+Z .* square /.test(l)).length).toBe(2);
    const paged = await cli("--function", "square", "-n", "2");
    expect(paged.stdout.split("\n").filter((l) => /^\d{4}-\d\d-\d\dT\S+Z .* square /.test(l)).length).toBe(2);
    expect(paged.stdout).toMatch(/more: tandem calls edge --function square -n 2 -g \S+ --cursor \d+~fc-[0-9a-z]{26}\n/);
    const json = JSON.parse((await cli("--kind", "spawn", "--function", "lengthOf", "--json")).stdout) as CallList;
    expect(json.calls.map((c) => c.callId)).toEqual([ids.spawned]);
    const none = await cli("--kind", "scheduled");
    expect(none.stdout).toContain("no calls of app edge (made by scheduled) in the time calls are kept");
  });

  it("refuses a bad option as a usage mistake (exit 2), and a function the app lacks naming the nearest", async () => {
    const two = await cli("--status", "failed,timed_out", "--since", "1h");
    expect(two.code, two.stderr).toBe(0);
    expect(two.stdout).toContain(ids.failed);
    const bad = await cli("--status", "faild");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('did you mean "failed"?');
    // A function the app does not have lists nothing, as `tandem logs --function` says it: exit 1 (README).
    const missing = await cli("--function", "sqaure");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: app "edge" has no function or class "sqaure" .*did you mean "square"\?/m);
    // A value the query refuses, said with its option (before: 'call list query: field "function" …').
    const empty = await cli("--function", "");
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('error: --function "": must be a function name');
    // An app that is no name, before any request (before: "no such API route: GET /v1/apps//calls").
    for (const command of ["calls", "logs"]) {
      const noApp = await runCli([command, "", "--gateway", gw.url, "--token", ADMIN_TOKEN], { env: { NO_COLOR: "1" } });
      expect(noApp.code).toBe(2);
      expect(noApp.stderr).toContain(`an app's name is 1-64 letters, digits, '-' or '_', starting with a letter or digit (got "")`);
      expect(noApp.stderr).not.toContain("/v1/apps//");
    }
  });
});
