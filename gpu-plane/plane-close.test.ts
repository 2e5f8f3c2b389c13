/**
 * A plane closing (the end of `tandem run`, whose gateway stops beside it) says nothing of a heartbeat the stopping
 * gateway dropped: the run's output ended with "could not report to the gateway … UND_ERR_SOCKET" after its result.
 * Nor does it wait on its clients' connections to end.
 */
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import net, { type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { Plane } from "./plane.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** A plane of the process runtime in `dir`, reporting to `gateway`. */
function startPlane(gateway: http.Server, dir: string, log: (line: string) => void): Promise<Plane> {
  return Plane.start({
    gatewayUrl: `http://127.0.0.1:${(gateway.address() as { port: number }).port}`,
    secret: "plane-close-test-secret-0123456789",
    host: "127.0.0.1",
    port: 0,
    region: "test",
    runtime: "process",
    stateDir: join(dir, "plane"),
    log,
  });
}

it("says nothing of a heartbeat its gateway dropped while the plane closes", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tandem-plane-close-"));
  dirs.push(dir);
  // A gateway that takes the first heartbeat, then holds the next ones unanswered, as one stopping would.
  let beats = 0;
  const held: Socket[] = [];
  let second: () => void = () => {};
  const secondBeat = new Promise<void>((resolve) => (second = resolve));
  const gateway = http.createServer((req, res) => {
    beats++;
    if (beats === 1) return void res.writeHead(200, { "content-type": "application/json" }).end("{}");
    held.push(req.socket);
    second();
  });
  await new Promise<void>((resolve) => gateway.listen(0, "127.0.0.1", resolve));
  const lines: string[] = [];
  const plane = await startPlane(gateway, dir, (line) => lines.push(line));
  try {
    await secondBeat;
    const closing = plane.close({ quick: true });
    for (const socket of held) socket.destroy(); // the gateway stops: the heartbeat in flight fails
    await closing;
    await new Promise((r) => setTimeout(r, 200));
    expect(lines.filter((l) => l.includes("could not report"))).toEqual([]);
  } finally {
    await new Promise<void>((resolve) => gateway.close(() => resolve()));
  }
}, 30_000);

it("closes at once whatever connections its clients hold open: one not yet used, one whose answer came as it closed", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tandem-plane-close-"));
  dirs.push(dir);
  const gateway = http.createServer((_req, res) => void res.writeHead(200, { "content-type": "application/json" }).end("{}"));
  await new Promise<void>((resolve) => gateway.listen(0, "127.0.0.1", resolve));
  const plane = await startPlane(gateway, dir, () => {});
  const { port } = new URL(plane.url);
  const connect = () =>
    new Promise<Socket>((resolve, reject) => {
      const socket = net.connect(Number(port), "127.0.0.1", () => resolve(socket)).on("error", reject);
    });
  // Made and never used (a client's pool opens ahead), and one whose request is sent as the plane closes: kept alive
  // after its answer. Before, the close waited on both for as long as their clients held them (the first for ever).
  const unused = await connect();
  const asking = await connect();
  try {
    const closing = plane.close({ quick: true });
    asking.write(`GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    const started = Date.now();
    const outcome = await Promise.race([closing.then(() => "closed"), new Promise((r) => setTimeout(() => r("still open"), 10_000))]);
    expect(outcome).toBe("closed");
    expect(Date.now() - started).toBeLessThan(5_000);
  } finally {
    unused.destroy();
    asking.destroy();
    await new Promise<void>((resolve) => gateway.close(() => resolve()));
  }
}, 30_000);
