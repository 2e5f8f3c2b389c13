/**
 * The container's API socket, when the gateway behind the plane does not answer: the container's SDK is told the
 * gateway could not be reached (502 `gateway_unreachable`, as the `tandem serve` front door says it), so it sends a
 * read, or a request with an idempotency key, again, instead of failing with the plane's raw network error.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, getGlobalDispatcher, setGlobalDispatcher } from "undici";
import { afterAll, beforeAll, expect, it } from "vitest";
import { useHmacEngine } from "../sdk/signing.js";
import { API_SOCKET, ContainerGateway, openContainerApi } from "./container-api.js";
import { nodeHmacEngine } from "./node-hmac.js";

let dir: string;
let cutting: Server;
let gatewayUrl: string;
let api: Server;

beforeAll(async () => {
  useHmacEngine(nodeHmacEngine);
  dir = await mkdtemp(join(tmpdir(), "tandem-container-api-"));
  cutting = createServer((req) => req.socket.destroy()); // a gateway whose connections break off unanswered
  await new Promise<void>((resolve) => cutting.listen(0, "127.0.0.1", resolve));
  gatewayUrl = `http://127.0.0.1:${(cutting.address() as AddressInfo).port}`;
  const own = { commit: async () => 1, reload: async () => 1 };
  api = await openContainerApi(dir, "shop", new ContainerGateway(gatewayUrl, randomBytes(32).toString("hex")), own);
});
afterAll(async () => {
  api?.close();
  cutting?.close();
  await rm(dir, { recursive: true, force: true });
});

it("answers 502 gateway_unreachable, naming the gateway, when the gateway's connection broke off", async () => {
  const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ socketPath: join(dir, API_SOCKET), path: "/v1/dicts/prices/items/apple", method: "GET" }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject).end();
  });
  expect(status).toBe(502);
  const error = (JSON.parse(body) as { error: { code: string; message: string } }).error;
  expect(error.code).toBe("gateway_unreachable");
  expect(error.message).toMatch(new RegExp(`^the plane could not reach the gateway at ${gatewayUrl}: .+`));
});

it("waits for a gateway's answer as long as it takes, past the process's own fetch limits (a container's .remote() of a long call)", async () => {
  const slow = createServer((_req, res) => void setTimeout(() => res.writeHead(200, { "content-type": "application/json" }).end("{}"), 2_500));
  await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
  const global = getGlobalDispatcher();
  setGlobalDispatcher(new Agent({ headersTimeout: 200 })); // stands for undici's 300 s, which a long call outlasts
  try {
    const gateway = new ContainerGateway(`http://127.0.0.1:${(slow.address() as AddressInfo).port}`, randomBytes(32).toString("hex"));
    const res = await gateway.request("shop", "POST", "/v1/apps/shop/functions/long/call", new TextEncoder().encode("{}"));
    expect(res.status).toBe(200);
  } finally {
    setGlobalDispatcher(global);
    slow.close();
  }
});
