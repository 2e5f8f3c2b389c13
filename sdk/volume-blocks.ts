/**
 * A file's bytes as volume blocks, the same on both sides of an upload: the
 * SDK splits what it sends, the gateway what it receives, into blocks of
 * `VOLUME_LIMITS.blockBytes` (the last one shorter), each named by the
 * SHA-256 of its bytes. One block is in memory at a time.
 */
import { VOLUME_LIMITS } from "./defaults.js";

/** What a file's bytes may come as: all at once, or in pieces as they are read. */
export type ByteSource = Uint8Array | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

/**
 * The blocks of `source`, in order. An empty source has none.
 * @example for await (const block of blocksOf(request.body)) await store(await sha256Hex(block), block);
 */
export async function* blocksOf(source: ByteSource, blockBytes: number = VOLUME_LIMITS.blockBytes): AsyncGenerator<Uint8Array> {
  // A block's pieces are kept until it is whole, then copied into one array of its own size: a small file's one block
  // takes its size, not a whole block's (an 8 MiB array for each of 2,000 small files was most of a put's time).
  let pieces: Uint8Array[] = [];
  let filled = 0;
  const whole = (): Uint8Array => {
    const block = new Uint8Array(filled);
    let at = 0;
    for (const piece of pieces) {
      block.set(piece, at);
      at += piece.byteLength;
    }
    pieces = [];
    filled = 0;
    return block;
  };
  for await (const piece of piecesOf(source)) {
    let offset = 0;
    while (offset < piece.byteLength) {
      const take = Math.min(blockBytes - filled, piece.byteLength - offset);
      pieces.push(piece.subarray(offset, offset + take));
      filled += take;
      offset += take;
      if (filled === blockBytes) yield whole();
    }
  }
  if (filled > 0) yield whole();
}

async function* piecesOf(source: ByteSource): AsyncGenerator<Uint8Array> {
  if (source instanceof Uint8Array) {
    yield source;
    return;
  }
  if (source instanceof ReadableStream) {
    const reader = source.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        yield value;
      }
    } finally {
      reader.releaseLock();
    }
  }
  yield* source as AsyncIterable<Uint8Array>;
}

/** The SHA-256 of `bytes` in lowercase hex: a block's name. */
export { sha256Hex } from "./hex.js";
