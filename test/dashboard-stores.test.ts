/**
 * The dashboard's stores page: the gateway's volumes, dicts and queues, with their sizes and counts, to a token for
 * every app; a token for some apps only is refused it (403, saying why) and its menu leaves it out. Real workerd;
 * pages read over HTTP.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { Dict, Queue, Volume } from "../sdk/index.js";
import { DASHBOARD } from "../sdk/protocol.js";
import { startTestGateway, type TestGateway } from "./helpers/gateway.js";
import { ADMIN_TOKEN } from "./helpers/tokens.js";

let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway(new URL("./fixtures/edge-app.ts", import.meta.url).pathname);
}, 60_000);
afterAll(async () => {
  await gw?.dispose();
});

const page = async (path: string, token = ADMIN_TOKEN) => {
  const res = await fetch(`${gw.url}${DASHBOARD.base}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.text() };
};
/** The text of a table row whose first cell is `name`, its cells joined by " | ". */
const row = (body: string, name: string) => {
  const match = new RegExp(`<tr>\\s*<td class="name">${name}</td>([\\s\\S]*?)</tr>`).exec(body);
  return match ? [name, ...[...match[1]!.matchAll(/<td>([^<]*)<\/td>/g)].map((m) => m[1])].join(" | ") : undefined;
};

it("lists the volumes, dicts and queues with their sizes and counts, and is in the menu", async () => {
  const options = { gateway: gw.url, token: ADMIN_TOKEN, createIfMissing: true };
  await Volume.fromName("weights", options).writeFile("/model.bin", new Uint8Array(1536));
  const cache = Dict.fromName("cache", options);
  await cache.put("a", 1);
  await cache.put("b", 2);
  const jobs = Queue.fromName("jobs", options);
  await jobs.putMany([1, 2, 3]);
  await jobs.get({ lease: 60, timeoutMs: 0 });
  const { status, body } = await page("/stores");
  expect(status).toBe(200);
  expect(body).toContain(`<a href="${DASHBOARD.base}/stores">Stores</a>`);
  expect(row(body, "weights")).toMatch(/^weights \| 1 \| 1\.5 KiB \| 1 \| \d{4}-\d\d-\d\dT/);
  expect(row(body, "cache")).toMatch(/^cache \| 2 \| \d{4}-/);
  expect(row(body, "jobs")).toMatch(/^jobs \| 2 \| 1 \| 1 \| \d{4}-/); // waiting, leased, partitions
});

it("refuses a token for some apps only, saying why, and leaves the page out of its menu", async () => {
  const res = await fetch(`${gw.url}/v1/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "edge-only", scope: "call", apps: ["edge"] }),
  });
  expect(res.status).toBe(201);
  const { token } = (await res.json()) as { token: string };
  const refused = await page("/stores", token);
  expect(refused.status).toBe(403);
  expect(refused.body).toMatch(/The volumes, dicts and queues belong to the whole gateway; this token may reach only edge\./);
  expect((await page("/", token)).body).not.toContain(`${DASHBOARD.base}/stores`);
});
