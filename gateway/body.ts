/**
 * Reading request bodies at the boundary: size limit first (413), then JSON
 * (400 naming the parse error), then the shape (400 naming the field).
 */
import type { z } from "zod";
import { InvalidRequestError, bodyTooLarge } from "../sdk/errors.js";
import { decodeValue } from "../sdk/protocol.js";
import { describeIssues } from "../sdk/zod-issues.js";

export async function readJsonBody<S extends z.ZodType>(request: Request, schema: S, maxBytes: number): Promise<z.infer<S>> {
  const declared = Number(request.headers.get("content-length") ?? "NaN");
  if (declared > maxBytes) throw bodyTooLarge(maxBytes, declared);
  // A declared length within the limit can be read in one go; only a body of unknown length is counted as it streams.
  if (Number.isFinite(declared)) return parseJsonBody(await request.text(), schema);
  const bytes = await readLimited(request, maxBytes);
  return parseJsonBody(new TextDecoder().decode(bytes), schema);
}

/** Parses a body already read: JSON first (400 naming the parse error), then the shape. An empty body is `{}`. */
export function parseJsonBody<S extends z.ZodType>(text: string, schema: S): z.infer<S> {
  if (text.trim() === "") return parseShape(schema, {});
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InvalidRequestError(`request body is not valid JSON: ${(err as Error).message}`);
  }
  return parseShape(schema, json);
}

/** Decodes `json` + superjson `meta`, turning a bad `meta` into a 400. */
export function decodeBodyValue(json: unknown, meta: unknown, field: string): unknown {
  try {
    return decodeValue(json, meta);
  } catch (err) {
    throw new InvalidRequestError(`"meta" does not describe "${field}": ${(err as Error).message}`);
  }
}

function parseShape<S extends z.ZodType>(schema: S, json: unknown): z.infer<S> {
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  throw new InvalidRequestError(`request body has the wrong shape: ${describeIssues(parsed.error, "field")}`);
}

async function readLimited(request: Request, maxBytes: number): Promise<Uint8Array> {
  if (!request.body) return new Uint8Array();
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw bodyTooLarge(maxBytes, total);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
