import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { GATEWAY_AUDIENCE, paths, type PlaneLogBatch } from "../sdk/protocol.js";
import { NonceCache, useHmacEngine, verifyRequest } from "../sdk/signing.js";
import { LogShipper } from "./log-shipper.js";
import { nodeHmacEngine } from "./node-hmac.js";

const SECRET = "0123456789abcdef0123456789abcdef";
const PLANE = "pl-0123456789abcdef";
useHmacEngine(nodeHmacEngine);

/** A gateway's log route on a real socket: checks each batch's signature, keeps the batches, or answers 503 while `down`. */
async function fakeGateway(port = 0): Promise<{ url: string; batches: PlaneLogBatch[]; down: boolean; server: Server }> {
  const nonces = new NonceCache();
  const state = { url: "", batches: [] as PlaneLogBatch[], down: false, server: undefined as unknown as Server };
  state.server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      void (async () => {
        const headers = new Headers(req.headers as Record<string, string>);
        const signed = await verifyRequest(SECRET, { audience: GATEWAY_AUDIENCE, method: "POST", path: req.url!, body }, headers, nonces);
        if (state.down || !signed.ok || req.url !== paths.planeLogs()) return res.writeHead(state.down ? 503 : 401).end();
        state.batches.push(JSON.parse(body) as PlaneLogBatch);
        res.writeHead(204).end();
      })();
    });
  });
  await new Promise<void>((resolve) => state.server.listen(port, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
  return state;
}

const line = (text: string) => ({ app: "shop", function: "resize", callId: null, containerId: "ctr-1", source: "stdout" as const, text });
let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup) await c();
  cleanup = [];
});

describe("LogShipper", () => {
  it("sends the lines of a moment as one signed batch, stamped with the plane's tier and region", async () => {
    const gateway = await fakeGateway();
    const shipper = new LogShipper({ gatewayUrl: gateway.url, secret: SECRET, planeId: PLANE, region: "eu", log: () => {}, flushMs: 50 });
    cleanup.push(
      async () => void (await shipper.close()),
      async () => void gateway.server.close(),
    );
    const before = Date.now();
    shipper.add(line("one"));
    shipper.add({ ...line("two"), time: before - 7 }); // read from its container earlier: its time is kept
    await expect.poll(() => gateway.batches.length, { timeout: 2_000, interval: 10 }).toBe(1);
    expect(Date.now() - before).toBeLessThan(500);
    expect(gateway.batches[0]!.lines.map((l) => l.time - before)).toEqual([expect.any(Number), -7]);
    expect(gateway.batches[0]!.lines[0]!.time).toBeGreaterThanOrEqual(before);
    expect(gateway.batches[0]!.planeId).toBe(PLANE);
    expect(gateway.batches[0]!.lines.map((l) => [l.text, l.tier, l.region, l.app])).toEqual([
      ["one", "plane", "eu", "shop"],
      ["two", "plane", "eu", "shop"],
    ]);
    await expect.poll(() => shipper.buffered, { timeout: 1_000, interval: 10 }).toBe(0); // taken once the answer came
  });

  it("sends a line that comes after a quiet spell at once, and the lines after it together, at most one batch a spell", async () => {
    const gateway = await fakeGateway();
    const shipper = new LogShipper({ gatewayUrl: gateway.url, secret: SECRET, planeId: PLANE, region: "eu", log: () => {}, flushMs: 1_500 });
    cleanup.push(
      async () => void (await shipper.close()),
      async () => void gateway.server.close(),
    );
    const sentAt: number[] = [];
    const before = Date.now();
    shipper.add(line("alone"));
    await expect.poll(() => gateway.batches.length, { timeout: 2_000, interval: 5 }).toBe(1);
    sentAt.push(Date.now());
    expect(sentAt[0]! - before).toBeLessThan(1_000); // not held for the spell
    shipper.add(line("then one"));
    shipper.add(line("then two"));
    await expect.poll(() => gateway.batches.length, { timeout: 4_000, interval: 5 }).toBe(2);
    sentAt.push(Date.now());
    expect(sentAt[1]! - before).toBeGreaterThanOrEqual(1_500); // the next batch waited for the spell
    expect(gateway.batches.map((b) => b.lines.map((l) => l.text))).toEqual([["alone"], ["then one", "then two"]]);
  });

  it("holds lines while the gateway is down, drops and counts past its bound, and says how many once it is back", async () => {
    const gateway = await fakeGateway();
    gateway.down = true;
    const said: string[] = [];
    const shipper = new LogShipper({
      gatewayUrl: gateway.url,
      secret: SECRET,
      planeId: PLANE,
      region: "eu",
      log: (l) => said.push(l),
      flushMs: 20,
      maxBufferedLines: 5,
    });
    cleanup.push(
      async () => void (await shipper.close()),
      async () => void gateway.server.close(),
    );
    for (let i = 0; i < 8; i++) shipper.add(line(`line ${i}`));
    expect(shipper.buffered).toBe(5); // bounded: three dropped
    // The plane's own line of what happened is kept past the bound (before: dropped with the lines it told of).
    const notice = { ...line("40000 lines dropped: more than 10000 lines a second"), source: "system" as const };
    shipper.add(notice);
    expect(shipper.buffered).toBe(6);
    await expect.poll(() => said.length, { timeout: 2_000, interval: 10 }).toBe(1);
    expect(said[0]).toMatch(/could not send its log lines to the gateway \(the gateway answered HTTP 503\); keeping them for now/);
    gateway.down = false;
    await expect.poll(() => gateway.batches.flatMap((b) => b.lines).length, { timeout: 3_000, interval: 20 }).toBe(7);
    const lines = gateway.batches.flatMap((b) => b.lines);
    // Said of the function that lost them (before: of the app alone, so --function showed no loss).
    expect(lines[0]).toMatchObject({
      app: "shop",
      function: "resize",
      source: "system",
      text: `3 lines dropped: plane ${PLANE} could not send them to the gateway in time`,
    });
    expect(lines.slice(1).map((l) => l.text)).toEqual(["line 0", "line 1", "line 2", "line 3", "line 4", notice.text]);
    await expect.poll(() => said.at(-1), { timeout: 1_000, interval: 10 }).toMatch(/is sending its log lines to the gateway again/);
    expect(shipper.buffered).toBe(0);
  });

  it("cuts a line longer than the longest kept, saying so", async () => {
    const gateway = await fakeGateway();
    const shipper = new LogShipper({ gatewayUrl: gateway.url, secret: SECRET, planeId: PLANE, region: "eu", log: () => {}, flushMs: 10 });
    cleanup.push(
      async () => void (await shipper.close()),
      async () => void gateway.server.close(),
    );
    shipper.add(line("x".repeat(20_000)));
    await expect.poll(() => gateway.batches.length, { timeout: 2_000, interval: 10 }).toBe(1);
    const text = gateway.batches[0]!.lines[0]!.text;
    expect(text).toBe("x".repeat(16 * 1024 - 25) + "… (cut: 20000 characters)");
  });
});
