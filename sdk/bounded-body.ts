/**
 * A request's body read no further than a limit, on either side of the wire (the gateway's `/v1` bodies, the signed
 * requests between the gateway and a plane): a declared length over it is refused before a byte is read, a chunked
 * body (or one whose length header is not what frames it) as soon as it passes it; the rest is cancelled, never
 * buffered. A body that has come to its declared length is whole: reading stops there, without the read that would
 * only say the stream has ended (0.015 ms of each edge call in workerd; bench/README.md, "Reading a body to its length").
 */
import type { PayloadTooLargeError } from "./errors.js";

/**
 * The body's bytes, at most `maxBytes`; past that, `tooLarge(maxBytes, received)` is thrown (a 413 that names the
 * limit).
 * @example const bytes = await readBodyUpTo(request, 1 << 20, bodyTooLarge);
 */
export async function readBodyUpTo(
  request: Request,
  maxBytes: number,
  tooLarge: (maxBytes: number, received: number) => PayloadTooLargeError,
): Promise<Uint8Array> {
  const header = request.headers.get("content-length");
  const declared = Number(header ?? "NaN");
  if (declared > maxBytes) throw tooLarge(maxBytes, declared);
  if (!request.body) return new Uint8Array();
  // The length that frames the body, where one does: a chunked transfer-encoding beside it is what frames it instead.
  const length = header !== null && /^\d{1,15}$/.test(header) && !request.headers.has("transfer-encoding") ? declared : undefined;
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    if (total === length) break; // whole: the read that would say so is not made (nor the lock let go: each costs as much)
    const { value, done } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(maxBytes, total);
    }
    chunks.push(value);
  }
  return joinChunks(chunks, total);
}

/**
 * Chunks read from a stream as one array of `total` bytes (the sum of their lengths); one chunk is itself.
 * @example joinChunks([new Uint8Array([1]), new Uint8Array([2, 3])], 3) // Uint8Array [1, 2, 3]
 */
export function joinChunks(chunks: readonly Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
