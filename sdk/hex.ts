/**
 * Bytes as lower-case hex, and SHA-256 digests in that form (Web Crypto, so
 * the gateway, the SDK and pages share them). A table lookup per byte: the
 * gateway hashes a token and signs a request on every call it sends a plane.
 */
const HEX_BYTES = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));
const encoder = new TextEncoder();

/** @example toHex(new Uint8Array([1, 255])) // "01ff" */
export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  let out = "";
  for (const b of bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)) out += HEX_BYTES[b];
  return out;
}

/** @example await sha256Hex("abc") // "ba7816bf…" */
export async function sha256Hex(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  return toHex(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}
