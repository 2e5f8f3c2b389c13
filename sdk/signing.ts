/**
 * Request signing between the gateway and its planes, both ways: HMAC-SHA256
 * over the method, the path, the body's SHA-256, a timestamp and a nonce, with
 * a shared secret. A verifier refuses a bad signature, a timestamp outside the
 * window, and a nonce it has seen before. Web Crypto only, so it runs in
 * workerd and Node alike.
 */
import { HEADERS } from "./protocol.js";

/** How far a signed request's timestamp may be from the verifier's clock. */
export const SIGNATURE_WINDOW_MS = 30_000;

const encoder = new TextEncoder();
const keys = new Map<string, Promise<CryptoKey>>();

function key(secret: string): Promise<CryptoKey> {
  let k = keys.get(secret);
  if (!k) {
    k = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keys.set(secret, k);
  }
  return k;
}

async function sha256Hex(body: string | Uint8Array): Promise<string> {
  const bytes = typeof body === "string" ? encoder.encode(body) : body;
  return hex(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

function hex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function canonical(method: string, path: string, bodyHash: string, timestamp: string, nonce: string): string {
  return [method.toUpperCase(), path, bodyHash, timestamp, nonce].join("\n");
}

/**
 * The signature headers for a request.
 * @example
 * const headers = await signRequest(secret, "POST", "/v1/plane/run", body);
 * await fetch(url, { method: "POST", body, headers });
 */
export async function signRequest(secret: string, method: string, path: string, body: string | Uint8Array = "", now = Date.now()): Promise<Record<string, string>> {
  const timestamp = String(now);
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)).buffer as ArrayBuffer);
  const signature = hex(await crypto.subtle.sign("HMAC", await key(secret), encoder.encode(canonical(method, path, await sha256Hex(body), timestamp, nonce))));
  return { [HEADERS.timestamp]: timestamp, [HEADERS.nonce]: nonce, [HEADERS.signature]: signature };
}

/** Remembers nonces for the signature window; a nonce seen twice is a replay. */
export class NonceCache implements NonceStore {
  readonly #seen = new Map<string, number>();

  /** True the first time a nonce is seen within the window. */
  remember(nonce: string, now = Date.now()): boolean {
    if (this.#seen.size > 10_000) for (const [n, t] of this.#seen) if (now - t > 2 * SIGNATURE_WINDOW_MS) this.#seen.delete(n);
    if (this.#seen.has(nonce)) return false;
    this.#seen.set(nonce, now);
    return true;
  }
}

export type VerifyResult = { ok: true } | { ok: false; reason: string };

/** Where a verifier remembers nonces: in memory (`NonceCache`), or in a Durable Object shared by every isolate. */
export interface NonceStore {
  remember(nonce: string, now?: number): boolean | Promise<boolean>;
}

/** Checks a request's signature headers; `nonces` refuses replays. */
export async function verifyRequest(
  secret: string,
  method: string,
  path: string,
  body: string | Uint8Array,
  headers: { get(name: string): string | null },
  nonces: NonceStore,
  now = Date.now(),
): Promise<VerifyResult> {
  const timestamp = headers.get(HEADERS.timestamp);
  const nonce = headers.get(HEADERS.nonce);
  const signature = headers.get(HEADERS.signature);
  if (!timestamp || !nonce || !signature) return { ok: false, reason: "unsigned request" };
  if (!/^[0-9a-f]{64}$/.test(signature) || !/^[0-9a-f]{32}$/.test(nonce)) return { ok: false, reason: "malformed signature headers" };
  const skew = Math.abs(now - Number(timestamp));
  if (!Number.isFinite(skew) || skew > SIGNATURE_WINDOW_MS) return { ok: false, reason: `timestamp outside the ${SIGNATURE_WINDOW_MS / 1000} s window` };
  const expected = canonical(method, path, await sha256Hex(body), timestamp, nonce);
  const bytes = new Uint8Array(signature.match(/../g)!.map((h) => parseInt(h, 16)));
  if (!(await crypto.subtle.verify("HMAC", await key(secret), bytes, encoder.encode(expected)))) return { ok: false, reason: "bad signature" };
  if (!(await nonces.remember(nonce, now))) return { ok: false, reason: "replayed nonce" };
  return { ok: true };
}
