import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GATEWAY_AUDIENCE, PLANE_SECRETS_ANSWER, paths } from "../sdk/protocol.js";
import { NonceCache, signRequest, verifyRequest } from "../sdk/signing.js";
import { fetchWarmSecrets } from "./warm-secrets.js";

const SECRET = "test-plane-secret-0123456789abcdef";
const PLANE = "pl-warm0001";
const pool = { planeId: PLANE, app: "vault", function: "warmKey", bundleHash: "a".repeat(64) };

/** How the fake gateway answers the next request: signed for `audience` (or not at all), with `body`. */
let answer: { audience?: string; body: string; replay?: boolean } = { audience: PLANE, body: '{"secrets":{"API_KEY":"k-1"}}' };
let asked: { ok: boolean; body: string } | undefined;
let lastHeaders: Record<string, string> | undefined;
let server: Server;
let url: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", async () => {
      const headers = { get: (name: string) => (req.headers[name] as string | undefined) ?? null };
      const checked = await verifyRequest(SECRET, { audience: GATEWAY_AUDIENCE, method: "POST", path: req.url!, body }, headers, new NonceCache());
      asked = { ok: checked.ok && req.url === paths.planeSecrets(), body };
      const signed =
        answer.replay && lastHeaders
          ? lastHeaders
          : answer.audience
            ? await signRequest(SECRET, { audience: answer.audience, ...PLANE_SECRETS_ANSWER, body: answer.body })
            : {};
      lastHeaders = signed;
      res.writeHead(200, { "content-type": "application/json", ...signed }).end(answer.body);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => server.close());

describe("a warm container's secrets", () => {
  it("are asked for with a signed request naming the plane and the pool, and taken from an answer signed for this plane", async () => {
    answer = { audience: PLANE, body: '{"secrets":{"API_KEY":"k-1"}}' };
    expect(await fetchWarmSecrets({ gatewayUrl: url, secret: SECRET }, pool)).toEqual({ API_KEY: "k-1" });
    expect(asked).toEqual({ ok: true, body: JSON.stringify(pool) });
  });

  it("refuses an unsigned answer, one signed for another plane or with another secret, and one replayed", async () => {
    const source = { gatewayUrl: url, secret: SECRET, nonces: new NonceCache() };
    answer = { body: '{"secrets":{"API_KEY":"forged"}}' };
    await expect(fetchWarmSecrets(source, pool)).rejects.toThrow("refused the answer with the secrets of vault.warmKey: unsigned request");
    answer = { audience: "pl-other0001", body: '{"secrets":{"API_KEY":"k-1"}}' };
    await expect(fetchWarmSecrets(source, pool)).rejects.toThrow('request signed for "pl-other0001", not "pl-warm0001"');
    answer = { audience: PLANE, body: '{"secrets":{"API_KEY":"k-1"}}' };
    await expect(fetchWarmSecrets({ ...source, secret: "another-secret-0123456789abcdef" }, pool)).rejects.toThrow("bad signature");
    expect(await fetchWarmSecrets(source, pool)).toEqual({ API_KEY: "k-1" });
    answer = { ...answer, replay: true };
    await expect(fetchWarmSecrets(source, pool)).rejects.toThrow("replayed nonce");
  });
});
