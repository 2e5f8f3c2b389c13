/**
 * The NDJSON body of a streamed call, in both tiers (the gateway's
 * `POST .../stream`, the plane's `/v1/plane/stream`): one `StreamLine` a
 * chunk, pulled only as the reader reads (a slow reader slows the generator),
 * then `done`, or `error` after the chunks sent so far. A reader that goes away
 * returns the generator.
 */
import { toWireError } from "./errors.js";
import type { EncodedValue, StreamLine } from "./protocol.js";

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
