import net from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, expect, it } from "vitest";
import { PLANE_KEEP_ALIVE_MS, keepConnectionsShort } from "./keep-alive.js";

// A server that answers each request and keeps the connection, without a Keep-Alive hint, as workerd does (it closes
// one idle 5 s): the client lets it go on its own clock, and its end (FIN) is what the server sees first.
const ended: number[] = [];
const server = net.createServer((socket) => {
  socket.on("data", () => socket.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
  socket.on("end", () => {
    ended.push(performance.now());
    socket.end();
  });
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

it("lets fetch's idle connections go well before workerd's 5 s, once a plane has started", async () => {
  keepConnectionsShort();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  expect(await (await fetch(url, { method: "POST", body: "x" })).text()).toBe("ok");
  const answered = performance.now();
  while (ended.length === 0 && performance.now() - answered < 6_000) await new Promise((r) => setTimeout(r, 50));
  const idleMs = ended[0]! - answered;
  expect(idleMs).toBeGreaterThanOrEqual(PLANE_KEEP_ALIVE_MS - 100);
  expect(idleMs).toBeLessThan(3_500);
}, 10_000);
