/**
 * Request signing between the gateway and its planes, both ways: HMAC-SHA256
 * with a shared secret over the method, the path, the body's SHA-256, a
 * timestamp, a nonce and the audience (the plane a request is for, or the
 * gateway), so a request cannot be replayed to anyone it was not meant for.
 * A verifier checks the headers before it reads any body
 * (`checkSignatureHeaders`: present, well-formed, its own audience, a
 * timestamp inside the window and not before the receiver started), then the
 * signature over the body and the nonce (`verifyRequest`). Web Crypto only, so
 * it runs in workerd and Node alike.
 */
import { sha256Hex, toHex } from "./hex.js";
import { PLANE_DEFAULTS } from "./defaults.js";
import { HEADERS } from "./protocol.js";

/** How far a signed request's timestamp may be from the verifier's clock (`PLANE_DEFAULTS.signatureWindowMs`). */
export const SIGNATURE_WINDOW_MS = PLANE_DEFAULTS.signatureWindowMs;

const encoder = new TextEncoder();

/**
 * The hashing a signer needs. Web Crypto, which every runtime has, is the
 * default; a Node process installs node:crypto's synchronous one
 * (`useHmacEngine`), because Node runs each Web Crypto call through its
 * thread pool: measured here, verifying a request cost 0.46 ms that way and
 * 0.09 ms with node:crypto.
 */
export interface HmacEngine {
  sha256Hex(data: string | Uint8Array): string | Promise<string>;
  hmacHex(secret: string, data: string): string | Promise<string>;
}

const keys = new Map<string, Promise<CryptoKey>>();

function key(secret: string): Promise<CryptoKey> {
  let k = keys.get(secret);
  if (!k) {
    k = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    keys.set(secret, k);
  }
  return k;
}

export const webCryptoEngine: HmacEngine = {
  sha256Hex,
  async hmacHex(secret, data) {
    return toHex(await crypto.subtle.sign("HMAC", await key(secret), encoder.encode(data)));
  },
};

let engine: HmacEngine = webCryptoEngine;

/** Replaces the hashing used to sign and verify in this process. */
export function useHmacEngine(next: HmacEngine): void {
  engine = next;
}

/** Compares two hex strings in time that does not depend on where they differ. */
function sameHex(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** A request as it is signed. */
export interface SignedRequest {
  /** Who it is for: the plane's id (gateway to plane), or `GATEWAY_AUDIENCE` (plane to gateway). */
  audience: string;
  method: string;
  /** The path, with its query when it has one. */
  path: string;
  /** The body; none for a GET. */
  body?: string | Uint8Array;
  /** A container's request the plane carries to the gateway: the container's app (`HEADERS.containerApp`), signed with the rest. */
  containerApp?: string;
}

function canonical(request: SignedRequest, bodyHash: string, timestamp: string, nonce: string): string {
  const parts = [request.method.toUpperCase(), request.path, bodyHash, timestamp, nonce, request.audience];
  if (request.containerApp !== undefined) parts.push(`container-app:${request.containerApp}`);
  return parts.join("\n");
}

async function signatureOf(secret: string, request: SignedRequest, timestamp: string, nonce: string): Promise<string> {
  return engine.hmacHex(secret, canonical(request, await engine.sha256Hex(request.body ?? ""), timestamp, nonce));
}

/**
 * The signature headers for a request to `audience`.
 * @example
 * const headers = await signRequest(secret, { audience: plane.planeId, method: "POST", path: "/v1/plane/run", body });
 * await fetch(url, { method: "POST", body, headers });
 */
export async function signRequest(secret: string, request: SignedRequest, now = Date.now()): Promise<Record<string, string>> {
  const timestamp = String(now);
  const nonce = toHex(crypto.getRandomValues(new Uint8Array(16)));
  return {
    [HEADERS.timestamp]: timestamp,
    [HEADERS.nonce]: nonce,
    [HEADERS.signature]: await signatureOf(secret, request, timestamp, nonce),
    [HEADERS.audience]: request.audience,
  };
}

/**
 * Remembers nonces for the signature window; a nonce seen twice is a replay.
 * Nonces are kept in the order they came, so forgetting the expired ones looks
 * only at those: each call costs the same however many are remembered.
 */
export class NonceCache implements NonceStore {
  readonly #seen = new Map<string, number>();

  /** True the first time a nonce is seen within the window. */
  remember(nonce: string, now = Date.now()): boolean {
    for (const [n, t] of this.#seen) {
      if (now - t <= 2 * SIGNATURE_WINDOW_MS) break;
      this.#seen.delete(n);
    }
    if (this.#seen.has(nonce)) return false;
    this.#seen.set(nonce, now);
    return true;
  }

  /** How many nonces are remembered now. */
  get size(): number {
    return this.#seen.size;
  }
}

export type VerifyResult = { ok: true } | { ok: false; reason: string };

/** Where a verifier remembers nonces: in memory (`NonceCache`), or in a Durable Object shared by every isolate. */
export interface NonceStore {
  remember(nonce: string, now?: number): boolean | Promise<boolean>;
}

/** The side that verifies: what it accepts besides a good signature. */
export interface Receiver {
  /** Its own audience: a plane's id, or `GATEWAY_AUDIENCE`. */
  audience: string;
  /**
   * When it started (ms). A receiver that keeps nonces in memory only (a
   * plane) refuses what was signed before, since it cannot know what it saw then.
   */
  startedAt?: number;
}

/** A request's headers, read by name (a `Headers`, or a function over Node's). */
export interface HeaderSource {
  get(name: string): string | null;
}

/** `checkSignatureHeaders`' reason for a request with none of the signature's headers. */
export const UNSIGNED = "unsigned request";

/**
 * The checks that need no body: every signature header present and
 * well-formed, signed for the receiver's audience, within the window, and not
 * before the receiver started. A receiver runs it before it reads a byte of
 * the body, so a request that fails it costs nothing however large it is.
 * @example
 * const check = checkSignatureHeaders(request.headers, { audience: "gateway" });
 * if (!check.ok) throw new UnauthorizedError(check.reason);
 */
export function checkSignatureHeaders(headers: HeaderSource, receiver: Receiver, now = Date.now()): VerifyResult {
  const timestamp = headers.get(HEADERS.timestamp);
  const nonce = headers.get(HEADERS.nonce);
  const signature = headers.get(HEADERS.signature);
  const audience = headers.get(HEADERS.audience);
  if (!timestamp || !nonce || !signature) {
    // Some signature headers but not all: a signature, malformed, rather than none.
    const missing = Object.entries({ [HEADERS.timestamp]: timestamp, [HEADERS.nonce]: nonce, [HEADERS.signature]: signature }).filter(([, v]) => !v);
    if (missing.length === 3) return { ok: false, reason: UNSIGNED };
    return { ok: false, reason: `malformed signature headers: no ${missing.map(([name]) => name).join(" or ")}` };
  }
  if (!audience) return { ok: false, reason: "request names no audience (signed by an older gateway or plane?)" };
  if (!/^[0-9]{1,16}$/.test(timestamp) || !/^[0-9a-f]{64}$/.test(signature) || !/^[0-9a-f]{32}$/.test(nonce) || !/^[0-9a-z-]{1,64}$/.test(audience)) {
    return { ok: false, reason: "malformed signature headers" };
  }
  if (audience !== receiver.audience) return { ok: false, reason: `request signed for "${audience}", not "${receiver.audience}"` };
  const signedAt = Number(timestamp);
  if (Math.abs(now - signedAt) > SIGNATURE_WINDOW_MS) return { ok: false, reason: `timestamp outside the ${SIGNATURE_WINDOW_MS / 1000} s window` };
  if (receiver.startedAt !== undefined && signedAt < receiver.startedAt) return { ok: false, reason: "signed before this receiver started" };
  return { ok: true };
}

/**
 * Checks a request's signature headers (`checkSignatureHeaders` again, then
 * the signature over `request`, body included), and refuses a nonce `nonces`
 * has seen. `request.audience` is the verifier's own.
 * @example
 * const result = await verifyRequest(secret, { audience: planeId, method: "POST", path, body }, headers, nonces, { startedAt });
 */
export async function verifyRequest(
  secret: string,
  request: SignedRequest,
  headers: HeaderSource,
  nonces: NonceStore,
  options: { startedAt?: number; now?: number } = {},
): Promise<VerifyResult> {
  const now = options.now ?? Date.now();
  const checked = checkSignatureHeaders(headers, { audience: request.audience, startedAt: options.startedAt }, now);
  if (!checked.ok) return checked;
  const expected = await signatureOf(secret, request, headers.get(HEADERS.timestamp)!, headers.get(HEADERS.nonce)!);
  if (!sameHex(expected, headers.get(HEADERS.signature)!)) return { ok: false, reason: "bad signature" };
  if (!(await nonces.remember(headers.get(HEADERS.nonce)!, now))) return { ok: false, reason: "replayed nonce" };
  return { ok: true };
}
