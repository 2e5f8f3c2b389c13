import { describe, expect, it } from "vitest";
import { NonceCache, signRequest, useHmacEngine, verifyRequest, webCryptoEngine } from "../sdk/signing.js";
import { nodeHmacEngine } from "./node-hmac.js";

const SECRET = "0123456789abcdef0123456789abcdef";
const request = { audience: "pl-test0001", method: "POST", path: "/p", body: "body" };

describe("node:crypto signing", () => {
  it("hashes exactly as Web Crypto does", async () => {
    expect(nodeHmacEngine.hmacHex(SECRET, "data")).toBe(await webCryptoEngine.hmacHex(SECRET, "data"));
    expect(nodeHmacEngine.sha256Hex("data")).toBe(await webCryptoEngine.sha256Hex("data"));
  });

  it("verifies what Web Crypto signed, and the other way round", async () => {
    useHmacEngine(webCryptoEngine);
    const byWeb = new Headers(await signRequest(SECRET, request));
    useHmacEngine(nodeHmacEngine);
    expect(await verifyRequest(SECRET, request, byWeb, new NonceCache())).toEqual({ ok: true });
    const byNode = new Headers(await signRequest(SECRET, request));
    expect(await verifyRequest(SECRET, { ...request, body: "bodY" }, byNode, new NonceCache())).toEqual({ ok: false, reason: "bad signature" });
    useHmacEngine(webCryptoEngine);
    expect(await verifyRequest(SECRET, request, byNode, new NonceCache())).toEqual({ ok: true });
  });
});
