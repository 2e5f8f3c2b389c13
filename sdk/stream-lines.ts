/**
 * Lines, both ways. Writing: the NDJSON body of a streamed call, in both tiers
 * (`streamLines`). Reading: one splitter for text that arrives in pieces (a
 * socket, a pipe, a container's output, a fetch body), and the NDJSON reader
 * built on it (`ndjsonLines`). Web-standard, so every tier and the SDK share it.
 */
import { toWireError } from "./errors.js";
import type { EncodedValue, StreamLine } from "./protocol.js";

/**
 * Splits text that arrives in pieces into lines (`\n`; a `\r` before it is
 * dropped). A line longer than `maxLineChars` comes out in pieces of that
 * size, so input without newlines cannot grow the buffer without end; or,
 * with `overlong`, whole when it ends, as `overlong` makes it of its first
 * `maxLineChars` characters and the length it had (the rest are counted, not kept).
 * @example
 * const lines = new LineSplitter();
 * socket.on("data", (text) => lines.push(text).forEach(onLine));
 * socket.on("end", () => lines.end().forEach(onLine));
 * new LineSplitter({ maxLineChars: LOG_LIMITS.maxLineChars, overlong: cutLogLine }); // a long line cut once, saying so
 */
export class LineSplitter {
  /**
   * The line under way, in the pieces it came in: each piece is searched for a newline once, as it comes, and joined
   * only when its line ends (before: all of it searched again at every piece, so a line of N pieces cost N² — an 8 MB
   * chunk of a plane generator held the gateway 18 s).
   */
  #pending: string[] = [];
  #pendingLength = 0;
  /** Characters of the line under way past `maxLineChars`, dropped (with `overlong`). */
  #dropped = 0;
  readonly #maxLineChars: number;
  readonly #overlong: ((kept: string, length: number) => string) | undefined;

  constructor(options: { maxLineChars?: number; overlong?: (kept: string, length: number) => string } = {}) {
    this.#maxLineChars = options.maxLineChars ?? Infinity;
    this.#overlong = options.overlong;
  }

  /** The lines `text` completes, in order. */
  push(text: string): string[] {
    const lines: string[] = [];
    let start = 0;
    let newline: number;
    while ((newline = text.indexOf("\n", start)) >= 0) {
      const line = this.#take(text.slice(start, newline));
      lines.push(this.#ended(line.endsWith("\r") ? line.slice(0, -1) : line));
      start = newline + 1;
    }
    if (start < text.length) {
      this.#pending.push(start === 0 ? text : text.slice(start));
      this.#pendingLength += text.length - start;
    }
    if (this.#pendingLength > this.#maxLineChars) {
      let rest = this.#take("");
      if (this.#overlong) {
        this.#dropped += rest.length - this.#maxLineChars;
        rest = rest.slice(0, this.#maxLineChars);
      }
      for (; rest.length > this.#maxLineChars; rest = rest.slice(this.#maxLineChars)) lines.push(rest.slice(0, this.#maxLineChars));
      if (rest) this.#pending.push(rest);
      this.#pendingLength = rest.length;
    }
    return lines;
  }

  /** The last line, when the input ended without a newline after it. */
  end(): string[] {
    const rest = this.#take("");
    return rest || this.#dropped ? [this.#ended(rest)] : [];
  }

  /** Characters held that no newline has ended yet. */
  get pendingLength(): number {
    return this.#pendingLength;
  }

  /** The line under way with `last` after it, as one string; nothing is held after. */
  #take(last: string): string {
    const line = this.#pending.length === 0 ? last : this.#pending.join("") + last;
    this.#pending = [];
    this.#pendingLength = 0;
    return line;
  }

  #ended(line: string): string {
    if (!this.#overlong || line.length + this.#dropped <= this.#maxLineChars) return line;
    const length = line.length + this.#dropped;
    this.#dropped = 0;
    return this.#overlong(line.slice(0, this.#maxLineChars), length);
  }
}

/** Parses a stream of newline-delimited JSON, one value a line (blank lines skipped). Stopping early cancels the stream. */
export async function* ndjsonLines(body: ReadableStream<Uint8Array>): AsyncIterable<unknown> {
  const decoder = new TextDecoder();
  const lines = new LineSplitter();
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
      for (const line of done ? [...lines.push(text), ...lines.end()] : lines.push(text)) {
        if (line.trim()) yield JSON.parse(line);
      }
      if (done) break;
    }
  } finally {
    // Reached when the consumer stops early too: cancelling tells the server to stop producing.
    await reader.cancel().catch(() => {});
  }
}

/**
 * The NDJSON body of a streamed call, in both tiers (the gateway's
 * `POST .../stream`, the plane's `/v1/plane/stream`): one `StreamLine` a
 * chunk, pulled only as the reader reads (a slow reader slows the generator),
 * then `done`, or `error` after the chunks sent so far. A reader that goes away
 * returns the generator.
 */
export function streamLines<T>(
  chunks: AsyncGenerator<T, void, undefined>,
  callId: string,
  encode: (chunk: T) => EncodedValue,
  /** The first step, when the caller pulled it already (to answer a failure to start with its status). */
  first?: IteratorResult<T, void>,
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  const line = (l: StreamLine) => encoder.encode(JSON.stringify(l) + "\n");
  let sent = 0;
  let pending = first;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const step = pending ?? (await chunks.next());
          pending = undefined;
          if (step.done) {
            controller.enqueue(line({ done: true, callId, chunks: sent }));
            controller.close();
            return;
          }
          sent++;
          const { json, meta } = encode(step.value);
          controller.enqueue(line(meta === undefined ? { chunk: json } : { chunk: json, meta }));
        } catch (err) {
          controller.enqueue(line({ error: toWireError(err), callId, chunks: sent }));
          controller.close();
        }
      },
      async cancel() {
        await chunks.return(undefined);
      },
    },
    { highWaterMark: 0 },
  );
}
