/**
 * The wire protocol of Tandem: every route, header, body shape, limit and the
 * value codec that both tiers and every client speak. Nothing else in the
 * project defines a wire shape; `docs/api.md` documents this module.
 *
 * Values travel as JSON. Plain JSON needs nothing more (so `curl` works);
 * values JSON cannot carry (`undefined`, `Date`, `Map`, `Set`, `Uint8Array`,
 * `BigInt`) are described in a sibling `meta` field in superjson's format.
 */
import { SuperJSON } from "superjson";
import { z } from "zod";
import type { WireError } from "./errors.js";

/** Bumped when a wire shape changes incompatibly. Sent as the `tandem-protocol` header. */
export const PROTOCOL_VERSION = "1";

export const HEADERS = {
  protocol: "tandem-protocol",
  callId: "tandem-call-id",
} as const;

/** Route patterns (hono syntax) for the gateway's `/v1` API. */
export const ROUTES = {
  health: "/v1/health",
  apps: "/v1/apps",
  app: "/v1/apps/:app",
  call: "/v1/apps/:app/functions/:fn/call",
  spawn: "/v1/apps/:app/functions/:fn/spawn",
  map: "/v1/apps/:app/functions/:fn/map",
  callRecord: "/v1/calls/:id",
  cancel: "/v1/calls/:id/cancel",
} as const;

const seg = encodeURIComponent;

/** Concrete paths for the routes above. */
export const paths = {
  health: () => ROUTES.health,
  apps: () => ROUTES.apps,
  app: (app: string) => `/v1/apps/${seg(app)}`,
  call: (app: string, fn: string) => `/v1/apps/${seg(app)}/functions/${seg(fn)}/call`,
  spawn: (app: string, fn: string) => `/v1/apps/${seg(app)}/functions/${seg(fn)}/spawn`,
  map: (app: string, fn: string) => `/v1/apps/${seg(app)}/functions/${seg(fn)}/map`,
  callRecord: (id: string, waitMs?: number) => `/v1/calls/${seg(id)}${waitMs === undefined ? "" : `?wait=${waitMs}`}`,
  cancel: (id: string) => `/v1/calls/${seg(id)}/cancel`,
  /** A web endpoint: `/<app>/<label><path>`. */
  web: (app: string, label: string, path = "/") => `/${seg(app)}/${seg(label)}${path === "/" ? "" : path}`,
};

export const LIMITS = {
  /** Default largest request body the gateway reads; `TANDEM_MAX_BODY_BYTES` changes it. */
  maxBodyBytes: 10 * 1024 * 1024,
  /** The longest one `GET /v1/calls/:id?wait=` holds the request open. */
  maxWaitMs: 50_000,
  /** The most inputs one `map` request may carry; the SDK sends larger maps in batches. */
  maxMapInputs: 1_000,
  /** Results are kept at least this long after a call ends. */
  resultTtlSeconds: 7 * 24 * 3600,
} as const;

/** App names, function names and web labels: letters, digits, `-` and `_`, up to 64. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
/** Names an app may not take, because the gateway's own routes live there. */
export const RESERVED_APP_NAMES = new Set(["v1", "_tandem", "cdn-cgi", "favicon.ico"]);

// ---------------------------------------------------------------------------
// Calls

export const CALL_STATUSES = ["pending", "running", "succeeded", "failed", "timed_out", "cancelled"] as const;
export type CallStatus = (typeof CALL_STATUSES)[number];
export const TERMINAL_STATUSES: ReadonlySet<CallStatus> = new Set(["succeeded", "failed", "timed_out", "cancelled"]);

/** How a call was started. */
export type CallKind = "remote" | "spawn" | "map";

/** Call ids: `fc-` then 26 lowercase base-32 characters, time-ordered. */
export const CALL_ID_PATTERN = /^fc-[0-9a-z]{26}$/;

const B32 = "0123456789abcdefghjkmnpqrstvwxyz";

/** A new call id: 10 characters of milliseconds, 16 of randomness. */
export function newCallId(now = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = B32[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const random = crypto.getRandomValues(new Uint8Array(16));
  let rand = "";
  for (const byte of random) rand += B32[byte % 32];
  return `fc-${time}${rand}`;
}

// ---------------------------------------------------------------------------
// Bodies

const jsonValue: z.ZodType<unknown> = z.unknown();
/** superjson's description of the values JSON cannot carry. */
const metaValue = z.looseObject({}, "must be an object in superjson's meta format");

export const CallRequestSchema = z.strictObject({
  args: z.array(jsonValue, "must be an array of arguments").optional(),
  meta: metaValue.optional(),
});
export type CallRequest = z.infer<typeof CallRequestSchema>;

export const MapRequestSchema = z.strictObject({
  inputs: z.array(z.array(jsonValue, "each input must be an array of arguments"), "must be an array of argument arrays").max(LIMITS.maxMapInputs, `at most ${LIMITS.maxMapInputs} inputs per request`),
  meta: metaValue.optional(),
});
export type MapRequest = z.infer<typeof MapRequestSchema>;

/** The record of one call, as `GET /v1/calls/:id` and `POST .../call` return it. */
export interface CallRecord {
  callId: string;
  app: string;
  function: string;
  kind: CallKind;
  status: CallStatus;
  attempts: number;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** Present when `status` is `succeeded`; `undefined` travels as `null` with `meta` saying so. */
  result?: unknown;
  meta?: unknown;
  /** Present when `status` is `failed`, `timed_out` or `cancelled`. */
  error?: WireError;
}

/** One line of the NDJSON stream `POST .../map` answers with. */
export interface MapResultLine {
  index: number;
  callId: string;
  status: CallStatus;
  result?: unknown;
  meta?: unknown;
  error?: WireError;
}

export interface SpawnResponse {
  callId: string;
  status: CallStatus;
}

/** What `GET /v1/apps` lists for one app. */
export interface AppManifest {
  name: string;
  functions: FunctionManifest[];
  endpoints: EndpointManifest[];
}

export interface FunctionManifest {
  name: string;
  tier: "edge" | "plane";
  timeoutSeconds: number;
  retries: RetryPolicy;
}

export interface EndpointManifest {
  label: string;
  kind: "web" | "endpoint";
  method?: string;
  path: string;
}

export interface RetryPolicy {
  maxRetries: number;
  backoffCoefficient: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

// ---------------------------------------------------------------------------
// Value codec

const codec = new SuperJSON();
codec.registerCustom<Uint8Array, string>(
  {
    isApplicable: (v): v is Uint8Array => v instanceof Uint8Array,
    serialize: (v) => bytesToBase64(v),
    deserialize: (v) => base64ToBytes(v),
  },
  "bytes",
);

/** A value as it travels: plain JSON, plus superjson's `meta` when JSON alone cannot say it. */
export interface EncodedValue {
  json: unknown;
  meta?: unknown;
}

/** Encodes any supported value for the wire. */
export function encodeValue(value: unknown): EncodedValue {
  const { json, meta } = codec.serialize(value);
  return meta === undefined ? { json } : { json, meta };
}

/** Decodes a value from the wire. Throws on a `meta` that does not fit `json`. */
export function decodeValue(json: unknown, meta?: unknown): unknown {
  if (meta === undefined || meta === null) return json;
  return codec.deserialize({ json: json as never, meta: meta as never });
}

function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
