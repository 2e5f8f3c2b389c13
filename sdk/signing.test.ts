import { describe, expect, it } from "vitest";
import { NonceCache, SIGNATURE_WINDOW_MS, checkSignatureHeaders, signRequest, verifyRequest, type SignedRequest } from "./signing.js";
import { HEADERS } from "./protocol.js";

const SECRET = "0123456789abcdef0123456789abcdef";
const RUN: SignedRequest = { audience: "pl-plane0001", method: "POST", path: "/v1/plane/run", body: '{"a":1}' };

describe("request signing", () => {
  it("accepts a signed request once, and refuses its replay", async () => {
    const nonces = new NonceCache();
    const headers = new Headers(await signRequest(SECRET, RUN));
    expect(await verifyRequest(SECRET, RUN, headers, nonces)).toEqual({ ok: true });
    expect(await verifyRequest(SECRET, RUN, headers, nonces)).toEqual({ ok: false, reason: "replayed nonce" });
  });

  it("refuses a changed body, path, method, secret or audience header, an old timestamp and missing headers", async () => {
    const headers = new Headers(await signRequest(SECRET, RUN));
    const check = (changed: Partial<SignedRequest>, secret = SECRET) => verifyRequest(secret, { ...RUN, ...changed }, headers, new NonceCache());
    expect(await check({ body: '{"a":2}' })).toEqual({ ok: false, reason: "bad signature" });
    expect(await check({ path: "/v1/plane/stream" })).toEqual({ ok: false, reason: "bad signature" });
    expect(await check({ method: "PUT" })).toEqual({ ok: false, reason: "bad signature" });
    expect(await check({}, "another-secret-another-secret-xx")).toEqual({ ok: false, reason: "bad signature" });
    // The audience header says whom it was signed for; changed to the receiver's, the signature no longer matches.
    const redirected = new Headers(headers);
    redirected.set("tandem-audience", "pl-plane0002");
    expect(await verifyRequest(SECRET, { ...RUN, audience: "pl-plane0002" }, redirected, new NonceCache())).toEqual({ ok: false, reason: "bad signature" });
    const old = new Headers(await signRequest(SECRET, RUN, Date.now() - 2 * SIGNATURE_WINDOW_MS));
    expect(await verifyRequest(SECRET, RUN, old, new NonceCache())).toEqual({ ok: false, reason: "timestamp outside the 30 s window" });
    expect(await verifyRequest(SECRET, RUN, new Headers(), new NonceCache())).toEqual({ ok: false, reason: "unsigned request" });
    // A signature header alone is a signature, malformed: said so, naming what it lacks.
    expect(await verifyRequest(SECRET, RUN, new Headers({ [HEADERS.signature]: "x" }), new NonceCache())).toEqual({
      ok: false,
      reason: `malformed signature headers: no ${HEADERS.timestamp} or ${HEADERS.nonce}`,
    });
  });

  it("refuses from the headers alone a request signed for another audience, naming both", async () => {
    const headers = new Headers(await signRequest(SECRET, RUN));
    expect(checkSignatureHeaders(headers, { audience: "pl-plane0001" })).toEqual({ ok: true });
    expect(checkSignatureHeaders(headers, { audience: "pl-plane0002" })).toEqual({
      ok: false,
      reason: 'request signed for "pl-plane0001", not "pl-plane0002"',
    });
    expect(checkSignatureHeaders(headers, { audience: "gateway" })).toEqual({ ok: false, reason: 'request signed for "pl-plane0001", not "gateway"' });
    expect(await verifyRequest(SECRET, { ...RUN, audience: "pl-plane0002" }, headers, new NonceCache())).toEqual({
      ok: false,
      reason: 'request signed for "pl-plane0001", not "pl-plane0002"',
    });
  });

  it("refuses a request signed before the receiver started, and one with no audience", async () => {
    const startedAt = Date.now();
    const before = new Headers(await signRequest(SECRET, RUN, startedAt - 1));
    expect(checkSignatureHeaders(before, { audience: RUN.audience })).toEqual({ ok: true });
    expect(checkSignatureHeaders(before, { audience: RUN.audience, startedAt })).toEqual({ ok: false, reason: "signed before this receiver started" });
    const after = new Headers(await signRequest(SECRET, RUN, startedAt));
    expect(await verifyRequest(SECRET, RUN, after, new NonceCache(), { startedAt })).toEqual({ ok: true });
    const anonymous = new Headers(after);
    anonymous.delete("tandem-audience");
    expect(checkSignatureHeaders(anonymous, { audience: RUN.audience })).toEqual({
      ok: false,
      reason: "request names no audience (signed by an older gateway or plane?)",
    });
  });

  it("refuses malformed headers before anything is hashed", async () => {
    const good = await signRequest(SECRET, RUN);
    for (const [name, value] of [
      ["tandem-timestamp", "1e12"],
      ["tandem-timestamp", `${Date.now()}.5`],
      ["tandem-nonce", "xyz"],
      ["tandem-signature", "ABC"],
      ["tandem-audience", "PL-Plane0001"],
    ] as const) {
      const headers = new Headers({ ...good, [name]: value });
      expect(checkSignatureHeaders(headers, { audience: RUN.audience })).toEqual({ ok: false, reason: "malformed signature headers" });
    }
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
