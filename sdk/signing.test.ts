import { describe, expect, it } from "vitest";
import { NonceCache, SIGNATURE_WINDOW_MS, signRequest, verifyRequest } from "./signing.js";

const SECRET = "0123456789abcdef0123456789abcdef";

describe("request signing", () => {
  it("accepts a signed request once, and refuses its replay", async () => {
    const nonces = new NonceCache();
    const headers = new Headers(await signRequest(SECRET, "POST", "/v1/plane/run", '{"a":1}'));
    expect(await verifyRequest(SECRET, "POST", "/v1/plane/run", '{"a":1}', headers, nonces)).toEqual({ ok: true });
    expect(await verifyRequest(SECRET, "POST", "/v1/plane/run", '{"a":1}', headers, nonces)).toEqual({ ok: false, reason: "replayed nonce" });
  });

  it("refuses a changed body, path, method or secret, an old timestamp and missing headers", async () => {
    const headers = new Headers(await signRequest(SECRET, "POST", "/p", "body"));
    const check = (method: string, path: string, body: string, secret = SECRET) => verifyRequest(secret, method, path, body, headers, new NonceCache());
    expect(await check("POST", "/p", "bodY")).toEqual({ ok: false, reason: "bad signature" });
    expect(await check("POST", "/q", "body")).toEqual({ ok: false, reason: "bad signature" });
    expect(await check("PUT", "/p", "body")).toEqual({ ok: false, reason: "bad signature" });
    expect(await check("POST", "/p", "body", "another-secret-another-secret-xx")).toEqual({ ok: false, reason: "bad signature" });
    const old = new Headers(await signRequest(SECRET, "GET", "/p", "", Date.now() - 60_000));
    expect((await verifyRequest(SECRET, "GET", "/p", "", old, new NonceCache())).ok).toBe(false);
    expect(await verifyRequest(SECRET, "GET", "/p", "", new Headers(), new NonceCache())).toEqual({ ok: false, reason: "unsigned request" });
  });

  it("remembers a nonce for twice the window, then forgets it, holding only the recent ones", () => {
    const nonces = new NonceCache();
    expect(nonces.remember("a", 0)).toBe(true);
    expect(nonces.remember("a", 2 * SIGNATURE_WINDOW_MS)).toBe(false);
    expect(nonces.remember("a", 2 * SIGNATURE_WINDOW_MS + 1)).toBe(true); // forgotten: its timestamp is long out of the window
    // A steady stream of requests: what is remembered stays at the last two windows' worth.
    for (let t = 0; t < 10 * SIGNATURE_WINDOW_MS; t += 10) nonces.remember(`n${t}`, 3 * SIGNATURE_WINDOW_MS + t);
    expect(nonces.size).toBeLessThanOrEqual((2 * SIGNATURE_WINDOW_MS) / 10 + 1);
    expect(nonces.size).toBeGreaterThan((2 * SIGNATURE_WINDOW_MS) / 10 - 10);
  });
});
