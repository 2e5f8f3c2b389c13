/**
 * Reading request bodies at the boundary: size limit first (413), counted as
 * the bytes arrive whatever the headers declare; then UTF-8 (400); then nesting depth (400),
 * checked on the text before it is parsed; then JSON (400 naming the parse
 * error), the shape (400 naming the field), and `meta` (400 when it does not
 * fit, or would rebuild a value deeper or larger than its JSON). Web
 * endpoints' bodies are only limited here (`limitBody`); their handlers parse
 * them, a handler's `c.req.json()` with the same UTF-8 rule (`utf8Text`).
 */
import type { z } from "zod";
import { readBodyUpTo } from "../sdk/bounded-body.js";
import { API_LIMITS } from "../sdk/defaults.js";
import { InvalidRequestError, TandemError, bodyTooLarge, errorBody, type PayloadTooLargeError } from "../sdk/errors.js";
import { HEADERS, decodeValue } from "../sdk/protocol.js";
import { describeIssues } from "../sdk/zod-issues.js";

// Fatal: a body that is not UTF-8 (JSON's only encoding) is refused, not read with U+FFFD in place of its bad bytes,
// which would store a secret's value, or pass an argument, other than the one sent.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/**
 * Reads a `/v1` JSON body of at most `maxBytes`, then parses and checks it. `note`: what counts towards the limit,
 * said in the 413 (`CALL_BODY_NOTE`).
 *
 * @example const body = await readJsonBody(c.req.raw, CallRequestSchema, c.var.config.maxBodyBytes, CALL_BODY_NOTE);
 */
export async function readJsonBody<S extends z.ZodType>(request: Request, schema: S, maxBytes: number, note?: string): Promise<z.infer<S>> {
  passPreflight(request);
  // Counted as it streams even when a length is declared: the header may not be what frames the body (a
  // content-length sent beside a chunked transfer-encoding, say), and reading stops at the limit either way.
  // A read that fails is the client gone mid-body (the front door's cut of a body that stopped coming): no one to
  // answer, and no fault of the gateway's to log with a stack.
  const bytes = await readBodyUpTo(request, maxBytes, (max, seen) => bodyTooLarge(max, seen, undefined, note)).catch((err: unknown) => {
    throw err instanceof TandemError ? err : new ClientWentAway(err);
  });
  return parseJsonBody(utf8Text(bytes), schema);
}

/**
 * A JSON body's bytes as text; bytes that are not UTF-8 are the client's 400, on `/v1` and for a web endpoint's
 * `c.req.json()` alike.
 * @example JSON.parse(utf8Text(await request.arrayBuffer()));
 */
export function utf8Text(bytes: ArrayBuffer | Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new InvalidRequestError("request body is not UTF-8 text: send JSON encoded as UTF-8");
  }
}

/**
 * Thrown where a preflight (`HEADERS.preflight`) that a route let in would have its body read: the route's checks
 * before it passed, and the request would be let in (the gateway answers 204, and has run nothing).
 */
export class PreflightPassed extends Error {
  constructor() {
    super("preflight passed");
    this.name = "PreflightPassed";
  }
}

/**
 * A request's body that could not be read to its end because its client went away mid-upload (workerd's
 * `Network connection lost.`): no fault of the gateway's, and no one to answer. The gateway answers it 499, as
 * nginx names a request its client closed, and logs no error.
 */
export class ClientWentAway extends Error {
  constructor(cause: unknown) {
    super(`the client went away while sending the request's body (${cause instanceof Error ? cause.message : String(cause)})`, { cause });
    this.name = "ClientWentAway";
  }
}

/** `body` as a stream whose failure to read is a `ClientWentAway`: the only reason a request's own body fails. */
function fromClient(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let step: ReadableStreamReadResult<Uint8Array>;
      try {
        step = await reader.read();
      } catch (err) {
        throw new ClientWentAway(err);
      }
      if (step.done) controller.close();
      else controller.enqueue(step.value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/**
 * Ends a preflight where its route would read the body: a route that `guard` lets preflights into
 * (`checksBeforeBody`) calls it, or `readJsonBody` for it, once its own checks are done and before anything changes.
 */
export function passPreflight(request: Request): void {
  if (isPreflight(request)) throw new PreflightPassed();
}

/**
 * Whether `request` is a preflight (`HEADERS.preflight: 1`). A preflight asks whether the same request would get as far
 * as its body, so it carries none: one that carries a body (its length above 0, or streamed) is a 400, as is any other
 * value of the header, so that no request is answered 204 with its body dropped and nothing run.
 * @example if (isPreflight(c.req.raw)) return c.body(null, 204);
 */
export function isPreflight(request: Request): boolean {
  const asked = request.headers.get(HEADERS.preflight);
  if (asked === null) return false;
  if (asked !== "1") {
    throw new InvalidRequestError(`header Tandem-Preflight: "${asked.slice(0, 40)}" is not 1; leave the header out to send the request itself`);
  }
  const length = request.headers.get("content-length");
  if (length !== null ? length !== "0" : request.body !== null) {
    throw new InvalidRequestError(
      "a request with Tandem-Preflight: 1 asks whether the same request would get as far as its body, so it carries none: send the body without the header",
    );
  }
  return true;
}

/** Parses a body already read: depth and JSON first (400 naming the problem), then the shape. An empty body is `{}`. */
export function parseJsonBody<S extends z.ZodType>(text: string, schema: S): z.infer<S> {
  if (text.trim() === "") return parseShape(schema, {});
  let json: unknown;
  try {
    json = parseJsonText(text);
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    throw new InvalidRequestError(`request body is not valid JSON: ${err.message}`);
  }
  return parseShape(schema, json);
}

/**
 * JSON text a client sent, read as `/v1` reads a body, and as a web handler's `c.req.json()` reads one
 * (gateway/web.ts): a 400 for one nested deeper than `API_LIMITS.maxJsonDepth` (before it is parsed) or holding a
 * number JSON.parse reads as ±Infinity; `JSON.parse`'s own `SyntaxError` for text that is not JSON.
 */
export function parseJsonText(text: string): unknown {
  if (nestedDeeperThan(text, API_LIMITS.maxJsonDepth)) {
    throw new InvalidRequestError(
      `request body nests arrays and objects more than ${API_LIMITS.maxJsonDepth} levels deep, the most this gateway reads; send the value flatter`,
      { maxDepth: API_LIMITS.maxJsonDepth },
    );
  }
  const json: unknown = JSON.parse(text);
  // A number JSON.parse reads as ±Infinity (1e999, or 309 digits) would reach the function as Infinity, not the number
  // sent: refused. Looked for only where the text could hold one, so the usual body is not walked twice.
  if (/\d{309}|[eE]\+?0*[1-9]\d{2}/.test(text) && holdsInfinity(json)) {
    throw new InvalidRequestError(
      'request body has a number beyond the range of a 64-bit float (JSON.parse reads it as Infinity): send it as a string, or Infinity itself as the codec writes it ("Infinity", with its meta: docs/api.md)',
    );
  }
  return json;
}

/** Whether `value` holds ±Infinity anywhere (JSON.parse's reading of a number out of range). */
function holdsInfinity(value: unknown): boolean {
  if (typeof value === "number") return !Number.isFinite(value);
  if (typeof value !== "object" || value === null) return false;
  return Object.values(value).some(holdsInfinity);
}

/**
 * Decodes `json` + superjson `meta`, turning a bad `meta` into a 400. A
 * `meta` may restore shared references and cycles (`referentialEqualities`),
 * which could otherwise turn a small body into a value nested thousands of
 * levels deep, or with exponentially many elements (each level holding the
 * next twice): such a value is refused here, before anything walks it.
 */
export function decodeBodyValue(json: unknown, meta: unknown, field: string): unknown {
  let value: unknown;
  try {
    value = decodeValue(json, meta);
  } catch (err) {
    throw new InvalidRequestError(`"meta" does not describe "${field}": ${(err as Error).message}`);
  }
  if (meta !== null && typeof meta === "object" && "referentialEqualities" in meta) {
    const written = shapeOf(json, API_LIMITS.maxJsonDepth, Infinity);
    const rebuilt = typeof written === "object" ? shapeOf(value, API_LIMITS.maxJsonDepth, written.nodes) : written;
    if (rebuilt === "too deep") {
      throw new InvalidRequestError(
        `"meta" rebuilds "${field}" more than ${API_LIMITS.maxJsonDepth} levels deep through its references, the most this gateway reads`,
        { maxDepth: API_LIMITS.maxJsonDepth },
      );
    }
    if (rebuilt === "too large") {
      throw new InvalidRequestError(`"meta" rebuilds "${field}" with more elements than its JSON holds: references may share values, not multiply them`);
    }
  }
  return value;
}

/**
 * A request whose body stops at `maxBytes`: a declared length over it is
 * refused at once (the error is thrown); a streamed body errors with the
 * same 413 once the bytes read pass it, so a handler reading it fails there,
 * having seen at most `maxBytes` bytes. `passed` says whether that happened,
 * so the caller can answer 413 whatever the handler did with the error.
 *
 * @example const limited = limitBody(c.req.raw, 1024); c.req.raw = limited.request;
 */
export function limitBody(request: Request, maxBytes: number, whose?: string): { request: Request; passed(): PayloadTooLargeError | undefined } {
  const declared = Number(request.headers.get("content-length") ?? "NaN");
  if (declared > maxBytes) throw bodyTooLarge(maxBytes, declared, whose);
  // A GET or HEAD may arrive with a body (`content-length: 0` from some clients), but no Request can be made with
  // one: it goes on as it came, its declared length checked above.
  const bodyless = request.method === "GET" || request.method === "HEAD";
  if (request.body === null || maxBytes === Infinity || bodyless) return { request, passed: () => undefined };
  let seen = 0;
  let error: PayloadTooLargeError | undefined;
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      seen += chunk.byteLength;
      if (seen <= maxBytes) return controller.enqueue(chunk);
      error = answeredAs413(bodyTooLarge(maxBytes, seen, whose));
      controller.error(error); // and the client's upload is cancelled: nothing past the limit is read
    },
  });
  // `duplex`: Node's Request wants it for a stream body (the unit tests); workerd reads streams that way anyway.
  const init = { body: fromClient(request.body).pipeThrough(counter), duplex: "half" } as RequestInit;
  return { request: new Request(request, init), passed: () => error };
}

/**
 * A request's whole body as bytes, read only up to `maxBytes` (`limitBody`): a declared or streamed length past it
 * is the 413 naming `whose` limit it is (by default the gateway's own).
 *
 * @example const bytes = await readBodyBytes(c.req.raw, DEPLOY_LIMITS.maxFileBytes, "a deployment's file holds");
 */
export async function readBodyBytes(request: Request, maxBytes: number, whose?: string): Promise<Uint8Array> {
  const limited = limitBody(request, maxBytes, whose);
  try {
    return new Uint8Array(await limited.request.arrayBuffer());
  } catch (err) {
    throw limited.passed() ?? err;
  }
}

/**
 * The error a handler's read of an over-long body throws, answerable as it is: hono (the user's copy or the gateway's)
 * answers an error with a `getResponse` method with that response, where it would log any other with its stack as a
 * server fault and answer 500. The gateway answers 413 either way (`passed`).
 */
function answeredAs413(error: PayloadTooLargeError): PayloadTooLargeError {
  Object.defineProperty(error, "getResponse", { value: () => Response.json(errorBody(error), { status: error.status }) });
  return error;
}

function parseShape<S extends z.ZodType>(schema: S, json: unknown): z.infer<S> {
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  // A body that is not an object where one is wanted: said in words, not as zod's "Invalid input: expected object".
  const [first] = parsed.error.issues;
  if (first?.code === "invalid_type" && first.expected === "object" && first.path.length === 0) {
    throw new InvalidRequestError(`request body must be a JSON object, not ${jsonKind(json)}`);
  }
  throw new InvalidRequestError(`request body has the wrong shape: ${describeIssues(parsed.error, "field", schema)}`);
}

/** What a JSON value is, in words: "an array", "null", "a number", "a string", "true". */
function jsonKind(json: unknown): string {
  if (json === null) return "null";
  if (Array.isArray(json)) return "an array";
  if (typeof json === "boolean") return String(json);
  return `a ${typeof json}`;
}

/**
 * Whether JSON text nests arrays and objects deeper than `max`, found in one
 * pass over the text (brackets inside strings do not count), before
 * `JSON.parse` builds anything. Text shorter than `max` cannot.
 */
export function nestedDeeperThan(text: string, max: number): boolean {
  if (text.length <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c)
        i++; // a backslash: the next character is escaped
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) inString = true;
    else if (ch === 0x5b || ch === 0x7b) {
      if (++depth > max) return true;
    } else if (ch === 0x5d || ch === 0x7d) depth--;
  }
  return false;
}

/**
 * How deep a decoded value nests (arrays, plain objects, `Map`s, `Set`s) and
 * how many elements it has when written out, each shared reference counted
 * each time it appears; a reference back to an enclosing value (a cycle) is
 * not followed, as superjson does not. Walked without recursion, each
 * distinct object once, stopping early at `maxDepth` or `maxNodes`.
 */
function shapeOf(root: unknown, maxDepth: number, maxNodes: number): { depth: number; nodes: number } | "too deep" | "too large" {
  interface Frame {
    value: object;
    children: unknown[];
    next: number;
    depth: number;
    nodes: number;
  }
  if (!isContainer(root)) return { depth: 0, nodes: 1 };
  const done = new Map<object, { depth: number; nodes: number }>();
  const open = new Set<object>([root]);
  const stack: Frame[] = [{ value: root, children: childrenOf(root), next: 0, depth: 0, nodes: 1 }];
  let total = 1;
  for (;;) {
    const top = stack[stack.length - 1]!;
    if (top.next < top.children.length) {
      const child = top.children[top.next++];
      if (!isContainer(child)) {
        top.nodes++;
        if (++total > maxNodes) return "too large";
        continue;
      }
      if (open.has(child)) continue;
      const known = done.get(child);
      if (known) {
        if (stack.length + known.depth > maxDepth) return "too deep";
        top.nodes += known.nodes;
        top.depth = Math.max(top.depth, known.depth);
        if ((total += known.nodes) > maxNodes) return "too large";
        continue;
      }
      if (stack.length >= maxDepth) return "too deep";
      if (++total > maxNodes) return "too large";
      open.add(child);
      stack.push({ value: child, children: childrenOf(child), next: 0, depth: 0, nodes: 1 });
      continue;
    }
    stack.pop();
    open.delete(top.value);
    const shape = { depth: top.depth + 1, nodes: top.nodes };
    done.set(top.value, shape);
    const parent = stack[stack.length - 1];
    if (!parent) return shape;
    parent.nodes += shape.nodes;
    parent.depth = Math.max(parent.depth, shape.depth);
  }
}

function isContainer(value: unknown): value is object {
  if (value === null || typeof value !== "object") return false;
  if (Array.isArray(value) || value instanceof Map || value instanceof Set) return true;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function childrenOf(value: object): unknown[] {
  if (Array.isArray(value)) return value;
  if (value instanceof Map) return [...value.keys(), ...value.values()];
  if (value instanceof Set) return [...value];
  return Object.values(value);
}
