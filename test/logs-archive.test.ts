/**
 * Older log lines in R2, in real workerd (miniflare's R2): the log store's
 * alarm moves lines past `TANDEM_LOG_RECENT_HOURS` into gzipped NDJSON
 * objects keyed by store and hour; `GET /v1/apps/:app/logs`, a call's logs and
 * `tandem logs --since` read them before the store's own lines, in time
 * order, with the same filters; objects past `TANDEM_LOG_RETENTION_DAYS` are
 * deleted.
 */
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lookup } from "../sdk/index.js";
import type { LogLine } from "../sdk/protocol.js";
import { runCli } from "./helpers/cli.js";
import { ADMIN_TOKEN, authed, startTestGateway, type TestGateway } from "./helpers/gateway.js";

const EDGE_APP = new URL("./fixtures/edge-app.ts", import.meta.url).pathname;
const ARCHIVE_KEY = /^logs\/[0-9a-f]{64}\/\d{4}-\d\d-\d\dT\d\d\/\d{12}\.ndjson\.gz$/;

let gateway: TestGateway;

const read = async (path: string): Promise<LogLine[]> => {
  const res = await fetch(`${gateway.url}${path}`, authed());
  expect(res.status).toBe(200);
  return (await res.text())
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LogLine);
};
const texts = (lines: LogLine[]) => lines.map((l) => l.text);

/** Every line in the gateway's R2 objects of older log lines, by key. */
async function archived(): Promise<Map<string, LogLine[]>> {
  const found = new Map<string, LogLine[]>();
  for (const key of (await gateway.blobKeys()).filter((k) => k.startsWith("logs/"))) {
    const bytes = await gateway.blobBytes(key);
    if (!bytes) continue;
    const lines = gunzipSync(bytes)
      .toString("utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as LogLine);
    found.set(key, lines);
  }
  return found;
}

beforeAll(async () => {
  // Lines move to R2 after 1.8 s (0.0005 h) and are gone after 21.6 s (0.00025 days): the store's alarm sweeps every 1.8 s.
  gateway = await startTestGateway(EDGE_APP, { bindings: { TANDEM_LOG_RECENT_HOURS: "0.0005", TANDEM_LOG_RETENTION_DAYS: "0.00025" } });
}, 60_000);
afterAll(async () => {
  await gateway?.dispose();
});

describe("older log lines in R2", () => {
  it("are moved by the store's alarm, read back with the store's in time order and filtered alike, and deleted past the retention", async () => {
    const chatty = lookup<[string], string>("edge", "chatty", { gateway: gateway.url, token: ADMIN_TOKEN });
    await chatty.remote("alpha");
    await chatty.remote("beta");

    // Moved: one gzipped NDJSON object per hour and batch, under the store's id.
    await expect
      .poll(async () => [...(await archived()).values()].flat().map((l) => l.text), { timeout: 15_000, interval: 250 })
      .toEqual(expect.arrayContaining(["saying alpha", "saying beta"]));
    for (const key of (await archived()).keys()) expect(key).toMatch(ARCHIVE_KEY);

    // A line the store still holds, read after the moved ones, in time order.
    await chatty.remote("gamma");
    await expect.poll(async () => texts(await read("/v1/apps/edge/logs?function=chatty&since=1h"))).toEqual(["saying alpha", "saying beta", "saying gamma"]);
    const movedNow = [...(await archived()).values()].flat().map((l) => l.text);
    expect(movedNow).not.toContain("saying gamma"); // it came from the store, not R2

    const all = await read("/v1/apps/edge/logs?function=chatty&since=1h");
    expect(all.map((l) => l.time)).toEqual([...all.map((l) => l.time)].sort((a, b) => a - b));
    // The same filters on R2's lines as on the store's: text, source, the last n, a time, a call.
    expect(texts(await read("/v1/apps/edge/logs?search=BETA"))).toEqual(["saying beta"]);
    expect(texts(await read("/v1/apps/edge/logs?function=chatty&source=stderr"))).toEqual([]);
    expect(texts(await read("/v1/apps/edge/logs?function=chatty&limit=2"))).toEqual(["saying beta", "saying gamma"]);
    expect(texts(await read(`/v1/apps/edge/logs?function=chatty&since=${new Date(all[1]!.time).toISOString()}`))).toEqual(["saying beta", "saying gamma"]);
    expect(texts(await read(`/v1/apps/edge/logs?call=${all[0]!.callId}`))).toEqual(["saying alpha"]);
    expect(texts(await read(`/v1/calls/${all[0]!.callId}/logs`))).toEqual(["saying alpha"]);
    expect(texts(await read("/v1/apps/edge/logs?function=other"))).toEqual([]);

    // tandem logs --since reads both too.
    const cli = await runCli(["logs", "edge", "--since", "3d", "--function", "chatty", "--gateway", gateway.url, "--token", ADMIN_TOKEN]);
    expect(cli.code).toBe(0);
    const printed = ["saying alpha", "saying beta", "saying gamma"].map((t) => cli.stdout.indexOf(t));
    expect(printed.every((i) => i >= 0)).toBe(true);
    expect(printed).toEqual([...printed].sort((a, b) => a - b));

    // Past the retention: the objects are deleted, and the lines with them.
    await expect.poll(async () => (await gateway.blobKeys()).filter((k) => k.startsWith("logs/")), { timeout: 45_000, interval: 500 }).toEqual([]);
    expect(await read("/v1/apps/edge/logs?function=chatty")).toEqual([]);
  }, 90_000);
});
