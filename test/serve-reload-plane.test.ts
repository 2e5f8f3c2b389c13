/**
 * A `tandem serve` reload while a plane generator streams: the reload holds
 * new requests until the stream ends (the old gateway must stop before the new
 * one opens the same Durable Objects), but the local plane's own requests
 * (heartbeats, log lines) reach the gateway still running meanwhile, so the
 * plane never counts its gateway as gone, nor keeps its log lines back.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { lookup } from "../sdk/index.js";
import { GATEWAY_AUDIENCE, paths, type PlaneInfo } from "../sdk/protocol.js";
import { signRequest } from "../sdk/signing.js";
import { startServe, type Served } from "./helpers/cli.js";
import { authed } from "./helpers/gateway.js";
import { SECRET } from "./helpers/stack.js";

const TICKS = 14;
const APP = `import { App } from "tandem";

const app = new App("ticker");

// One chunk a second, each said in the function's log.
export const ticks = app.function({ tier: "plane", cpu: 0.5, memory: 256, timeout: 120 }, async function* (n: number) {
  for (let i = 0; i < n; i++) {
    console.log("tick " + i);
    yield i;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
});

export const version = 1;

export default app;
`;

let dir: string;
let served: Served;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tandem-reload-stream-"));
  await writeFile(join(dir, "app.ts"), APP);
  served = await startServe(["app.ts", "--runtime", "process"], dir, { TANDEM_PLANE_SECRET: SECRET });
});
afterAll(async () => {
  await served?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** `GET /v1/planes` as the local plane sends its requests: signed with the plane secret. */
async function planesAsThePlane(): Promise<PlaneInfo[]> {
  const route = paths.planes();
  const headers = await signRequest(SECRET, { audience: GATEWAY_AUDIENCE, method: "GET", path: route });
  return ((await (await fetch(served.url + route, { headers })).json()) as { planes: PlaneInfo[] }).planes;
}

it("answers the local plane's requests while a reload waits for a stream: its heartbeats land, and its log lines go without a timeout", async () => {
  const chunks: number[] = [];
  const streaming = (async () => {
    for await (const chunk of lookup<[number], AsyncGenerator<number>>("ticker", "ticks", { gateway: served.url }).remoteGen(TICKS)) chunks.push(chunk);
  })();
  while (chunks.length < 3) await new Promise((resolve) => setTimeout(resolve, 50));
  await writeFile(join(dir, "app.ts"), APP.replace("version = 1", "version = 2"));
  await new Promise((resolve) => setTimeout(resolve, 3_000)); // built: the reload holds new requests now

  // A client's request waits for the new gateway...
  const client = fetch(`${served.url}/v1/apps`, authed());
  const late = await Promise.race([client.then(() => "answered"), new Promise((resolve) => setTimeout(() => resolve("held"), 1_000))]);
  expect(late).toBe("held");
  expect(chunks.length).toBeLessThan(TICKS);
  // ...the plane's are answered by the one still running, which has had its heartbeats all along.
  const asked = performance.now();
  const [plane] = await planesAsThePlane();
  expect(performance.now() - asked).toBeLessThan(2_000);
  expect(Date.now() - plane!.lastSeen).toBeLessThan(4_000);
  expect(plane!.healthy).toBe(true);

  await streaming;
  expect(chunks).toEqual([...Array(TICKS).keys()]);
  await served.waitFor("reloaded in");
  expect((await client).status).toBe(200);
  expect(served.output()).not.toContain("could not send its log lines");
  expect(served.output()).not.toContain("could not report to the gateway");
}, 90_000);
