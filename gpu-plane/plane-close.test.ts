/**
 * A plane closing (the end of `tandem run`, whose gateway stops beside it) says nothing of a heartbeat the stopping
 * gateway dropped: the run's output ended with "could not report to the gateway … UND_ERR_SOCKET" after its result.
 */
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { Plane } from "./plane.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

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
  const plane = await Plane.start({
    gatewayUrl: `http://127.0.0.1:${(gateway.address() as { port: number }).port}`,
    secret: "plane-close-test-secret-0123456789",
    host: "127.0.0.1",
    port: 0,
    region: "test",
    runtime: "process",
    stateDir: join(dir, "plane"),
    log: (line) => lines.push(line),
  });
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
