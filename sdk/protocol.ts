/**
 * The wire protocol of Tandem: every route, header, body shape, limit and the
 * value codec that both tiers and every client speak. Nothing else in the
 * project defines a wire shape; `docs/api.md` documents this module.
 *
 * Values travel as JSON. Plain JSON needs nothing more (so `curl` works);
 * values JSON cannot carry (`undefined`, `Date`, `Map`, `Set`, `Uint8Array`, `Buffer`,
 * `BigInt`) are described in a sibling `meta` field in superjson's format.
 */
import { SuperJSON } from "superjson";
import { z } from "zod";
import { userRecord } from "./zod-record.js";
import { API_LIMITS, DEPLOY_LIMITS, DICT_LIMITS, LOG_LIMITS, PLANE_DEFAULTS, QUEUE_LIMITS, SECRET_LIMITS, TOKEN_DEFAULTS, VOLUME_LIMITS } from "./defaults.js";
import type { WireError } from "./errors.js";
import { GPU_TYPES, MAX_GPUS_PER_CONTAINER, type GpuType } from "./gpu.js";

/** Bumped when a wire shape changes incompatibly. Sent as the `tandem-protocol` header. */
export const PROTOCOL_VERSION = "1";

/**
 * The status of a request whose client went away before its answer was sent (an upload killed midway, a stream
 * left early): nginx's "client closed request". The gateway answers it so (no one reads it), and `tandem serve`
 * logs it so.
 */
export const CLIENT_CLOSED_REQUEST = 499;

export const HEADERS = {
  protocol: "tandem-protocol",
  /** `Bearer <token>`: an API token on `/v1`, and on web endpoints and agents that ask for one. */
  authorization: "authorization",
  callId: "tandem-call-id",
  /**
   * A client's name for one logical call on `POST .../call`, `.../spawn` and `.../map`: the same key (per app and
   * function, kept as long as the call's record) answers with the same call instead of starting another, so a
   * request whose answer was lost can be sent again. See `IDEMPOTENCY_KEY_PATTERN`.
   */
  idempotencyKey: "idempotency-key",
  /**
   * `1` beside an `Idempotency-Key` the client made for this request and sends for the first time: no earlier
   * call can hold the key, so the gateway may send a plane call on while it records it (docs/api.md, "Delivery").
   * The SDK sets it on a key's first send, never on a send again.
   */
  freshKey: "tandem-fresh-key",
  /**
   * From `tandem serve`'s front door to its gateway, on a web request: a random id it names the request by if its
   * client goes before the answer ends (`LOCAL_CLIENT_GONE_ROUTE`). The front door drops one a client sends.
   */
  clientWatch: "tandem-client-watch",
  /** Signed requests between the gateway and planes (sdk/signing.ts). */
  timestamp: "tandem-timestamp",
  nonce: "tandem-nonce",
  signature: "tandem-signature",
  /** Who a signed request is for: the plane's id, or `GATEWAY_AUDIENCE`. */
  audience: "tandem-audience",
  /** From the gateway's web routes to the WebSocket agent hub: which app, agent and session. */
  agentApp: "tandem-agent-app",
  agentLabel: "tandem-agent-label",
  agentSession: "tandem-agent-session",
  agentShard: "tandem-agent-shard",
  /** The same, for an agent that asks for a token: the API token that let the socket in (or minted its connect token). */
  agentToken: "tandem-agent-token",
  /** On volume answers: the volume's version the answer reflects (a read), or that the write committed. */
  volumeVersion: "tandem-volume-version",
  /**
   * On a plane-signed request that carries a container's `/v1` request to the gateway (docs/security.md): the app
   * whose container sent it, set by the plane (never by the container) and covered by the signature.
   */
  containerApp: "tandem-container-app",
  /**
   * The regions a client would rather its plane calls ran in, nearest first, comma-separated (`eu-west,us-east`):
   * what a local or self-placed client says in place of its Cloudflare location (docs/deploy.md, "Regions"). Each
   * entry names a region or a prefix of region names before a `-` (`eu` is `eu-west` and `eu-central`).
   */
  region: "tandem-region",
  /**
   * The environment a `/v1` request addresses (`ENV_NAME_PATTERN`): its secrets, volumes, dicts and queues, and
   * its apps, schedules and logs. Absent: the gateway's own (`TANDEM_ENV`, by default `main`). docs/deploy.md,
   * "Environments".
   */
  env: "tandem-env",
  /**
   * `1` on a `/v1` request with no body that asks only whether the request it stands for (same method, path and
   * headers) would be let in: a route's guard answers 204 where it would, and runs nothing else; otherwise the same
   * 401 or 403 (gateway/auth.ts). The `tandem serve` front door asks before it sends a large body on.
   */
  preflight: "tandem-preflight",
} as const;

/** WebSocket agents: `?session=<id>` resumes a session; ids are 8-128 letters, digits, '-' or '_'. */
export const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{8,128}$/;
/** Keep-alive frames a client may send at any time; the edge answers without waking the session's object. */
export const AGENT_PING = '{"tandem":"ping"}';
export const AGENT_PONG = '{"tandem":"pong"}';

/**
 * The close codes of an agent's sockets, shared by the gateway and the
 * client: RFC 6455 section 7.4's, and Tandem's own in the 4000s.
 * docs/agents.md says when each is sent.
 */
export const AGENT_CLOSE = {
  /** The session or the client closed it. */
  normal: 1000,
  /** The agent is no longer deployed (a redeploy removed it). */
  goingAway: 1001,
  /** The client's close frame broke RFC 6455: a code that may not be sent, or a reason over 123 bytes. */
  protocolError: 1002,
  unsupportedData: 1003,
  /** Reserved: a close frame without a code. Never sent. */
  noStatus: 1005,
  /** Reserved: the connection dropped without a close frame. Never sent; a client reports it locally. */
  abnormal: 1006,
  invalidData: 1007,
  /** More frames than the agent's `maxMessagesPerSecond` allows. */
  policyViolation: 1008,
  /** A frame over the agent's `maxMessageBytes`. */
  tooBig: 1009,
  /** A handler threw, or left state that cannot be saved. */
  handlerFailed: 1011,
  /**
   * The gateway behind the socket is restarting (a `tandem serve` reload, a redeploy): the session is intact, and the
   * client reconnects to the new version and resumes it.
   */
  serviceRestart: 1012,
  /** Reserved: a TLS handshake failure. Never sent. */
  tlsFailed: 1015,
  /** The client's keep-alive ping went unanswered; it reconnects. */
  pingUnanswered: 4000,
} as const;

/** The longest close reason, in UTF-8 bytes: a close frame's payload is at most 125 bytes, two of them the code. */
export const MAX_CLOSE_REASON_BYTES = 123;

/**
 * Whether a close frame may carry `code` (RFC 6455 section 7.4): 1000-1003,
 * 1007-1014 and 3000-4999. The rest are reserved (1004, 1016-2999), only
 * reported locally and never sent (1005, 1006, 1015), or undefined (below 1000,
 * 5000 and above).
 */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/** Codes a client does not reconnect after: the session ended on purpose, or reconnecting would fail the same way. */
export const AGENT_FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  AGENT_CLOSE.normal,
  AGENT_CLOSE.unsupportedData,
  AGENT_CLOSE.invalidData,
  AGENT_CLOSE.policyViolation,
  AGENT_CLOSE.tooBig,
]);

/** Route patterns (hono syntax) for the gateway's `/v1` API. */
export const ROUTES = {
  health: "/v1/health",
  apps: "/v1/apps",
  app: "/v1/apps/:app",
  /** Stops every plane container of an app (`tandem app stop`). */
  appStop: "/v1/apps/:app/stop",
  /** Restarts an app's plane containers, each once its calls end (`tandem app rollover`): new ones read secrets afresh. */
  appRollover: "/v1/apps/:app/rollover",
  /** Container time and cost across planes: `?app=&since=` (a duration back from now, ms since the epoch, or a date). */
  usage: "/v1/usage",
  call: "/v1/apps/:app/functions/:fn/call",
  spawn: "/v1/apps/:app/functions/:fn/spawn",
  map: "/v1/apps/:app/functions/:fn/map",
  /**
   * Cancels the inputs of a map request that have not ended, named by the request's `Idempotency-Key` (the SDK's
   * `.map` left early): `MapCancelAnswer`.
   */
  mapCancel: "/v1/apps/:app/functions/:fn/map/cancel",
  stream: "/v1/apps/:app/functions/:fn/stream",
  callRecord: "/v1/calls/:id",
  cancel: "/v1/calls/:id/cancel",
  /** An app's calls, latest first (`CallListQuerySchema`): `CallList`. */
  appCalls: "/v1/apps/:app/calls",
  /** An app's log lines (`LogQuery`), NDJSON `LogLine`s; `follow=1` keeps the stream open for new ones. */
  appLogs: "/v1/apps/:app/logs",
  /** One call's log lines: the same query, the call's app found in the ledger. */
  callLogs: "/v1/calls/:id/logs",
  /** Every scheduled function, its next runs and last run: `?app=`. */
  schedules: "/v1/schedules",
  /** Fires one scheduled run of a function now (`tandem schedule trigger`). */
  trigger: "/v1/apps/:app/functions/:fn/trigger",
  /** Who the request's token is: its id, name, scope and apps. */
  whoami: "/v1/whoami",
  /**
   * The gateway's edge functions' metrics in Prometheus's text format (docs/observability.md, "Metrics"): an admin
   * token, or the gateway's `TANDEM_METRICS_TOKEN`, as a bearer token.
   */
  metrics: "/v1/metrics",
  /** Mints a short-lived, single-use code that logs a browser in to the dashboard (`tandem dashboard`): `DashboardLoginAnswer`. */
  dashboardLogin: "/v1/dashboard/login-code",
  /** API tokens: list (`GET`) and create (`POST`); admin scope. */
  tokens: "/v1/tokens",
  /** Revokes a token (`DELETE`); admin scope. */
  token: "/v1/tokens/:id",
  /** Named secrets: list (`GET`: names, keys, times, never values) and create or replace (`POST`); deploy scope, every app. */
  secrets: "/v1/secrets",
  /** Deletes a secret (`DELETE`). */
  secret: "/v1/secrets/:name",
  /** Mints a short-lived connect token for a browser to open an app's web endpoint or agent that asks for a token. */
  connectToken: "/v1/apps/:app/connect-token",
  /** An app's deployments in the request's environment (docs/deploy.md, "Versions and rollback"): list (`GET`, newest first), record one (`POST`, `DeploymentRecordRequest`); deploy scope. */
  deployments: "/v1/apps/:app/deployments",
  /** One deployment of an app, by version number (`GET`). */
  deployment: "/v1/apps/:app/deployments/:version",
  /** A file of a deployment's artifact, by the SHA-256 of its bytes: upload (`PUT`, before the record names it), download (`GET`, for a rollback). */
  deploymentFile: "/v1/apps/:app/deployments/files/:hash",
  /** Volumes (docs/volumes.md): list (`GET`), create (`POST`). */
  volumes: "/v1/volumes",
  /** One volume: its version, files and bytes (`GET`), or delete it (`DELETE`). */
  volume: "/v1/volumes/:volume",
  /** A volume's files under `?path=` (`GET`, `&recursive=true`), or remove them (`DELETE`, `&recursive=true` for a directory). */
  volumeFiles: "/v1/volumes/:volume/files",
  /** One file at `?path=`: download (`GET`), or upload the request's body as it (`PUT`: one commit). */
  volumeFile: "/v1/volumes/:volume/file",
  /** Copies files within a volume (`VolumeCopyRequest`): one commit. */
  volumeCopy: "/v1/volumes/:volume/copy",
  /** Which of these blocks the gateway lacks (`BlocksMissingRequest`): a client uploads only those. */
  volumeBlocksMissing: "/v1/volumes/:volume/blocks/missing",
  /** Uploads one block, its body's SHA-256 being `:hash`. */
  volumeBlock: "/v1/volumes/:volume/blocks/:hash",
  /** Publishes changes whose blocks are uploaded (`VolumeCommitRequest`): a compare-and-swap of the volume's version. */
  volumeCommit: "/v1/volumes/:volume/commit",
  /** Dicts (docs/dict-queue.md): list (`GET`), create (`POST`). */
  dicts: "/v1/dicts",
  /** One dict: its size (`GET`), or delete it and its entries (`DELETE`). */
  dict: "/v1/dicts/:dict",
  /** One operation on a dict's entries (`DICT_OPS`): its body is `DictRequestSchemas[op]`, its answer `DictAnswers[op]`. */
  dictOp: "/v1/dicts/:dict/:op",
  /** Queues (docs/dict-queue.md): list (`GET`), create (`POST`). */
  queues: "/v1/queues",
  /** One queue: its length by partition (`GET`), or delete it and its items (`DELETE`). */
  queue: "/v1/queues/:queue",
  /** One operation on a queue's items (`QUEUE_OPS`): its body is `QueueRequestSchemas[op]`, its answer `QueueAnswers[op]`. */
  queueOp: "/v1/queues/:queue/:op",
  /** Every file of a volume with its blocks, at its latest version (`VolumeManifest`): what a plane mounts. */
  volumeManifest: "/v1/volumes/:volume/manifest",
  /** Planes register and report their state here (signed). */
  planeHeartbeat: "/v1/planes/heartbeat",
  /** The planes the gateway knows, with their inventories. */
  planes: "/v1/planes",
  /** A plane sends its containers' log lines and its own lines about calls (`PlaneLogBatch`, signed). */
  planeLogs: "/v1/planes/logs",
  /** A plane fetches an app's plane bundle by content hash (signed). */
  planeBundle: "/v1/planes/bundles/:hash",
  /** A plane fetches a bundle's source map, to map a failed call's stack (signed). */
  planeBundleMap: "/v1/planes/bundles/:hash/source-map",
  /** A plane fetches an image spec by content hash (signed). */
  planeImage: "/v1/planes/images/:hash",
  /**
   * A plane fetches the secrets of one warm container it starts (signed, `PlaneSecretsRequest`); the answer is signed
   * for that plane (`PLANE_SECRETS_ANSWER`), and the plane verifies it before it uses a value.
   */
  planeSecrets: "/v1/planes/secrets",
  /** A plane fetches the named secrets an image's build steps declare (signed both ways, as `planeSecrets`). */
  planeImageSecrets: "/v1/planes/image-secrets",
} as const;

/**
 * The methods each `/v1` route takes; a route asked with another gets `405`
 * with an `allow` header built from this (GET routes answer HEAD too). Every
 * route in `ROUTES` must be here: the type says so.
 */
export const ROUTE_METHODS = {
  health: ["GET"],
  apps: ["GET"],
  app: ["GET"],
  appStop: ["POST"],
  appRollover: ["POST"],
  usage: ["GET"],
  call: ["POST"],
  spawn: ["POST"],
  map: ["POST"],
  mapCancel: ["POST"],
  stream: ["POST"],
  callRecord: ["GET"],
  cancel: ["POST"],
  appCalls: ["GET"],
  appLogs: ["GET"],
  callLogs: ["GET"],
  schedules: ["GET"],
  trigger: ["POST"],
  whoami: ["GET"],
  metrics: ["GET"],
  dashboardLogin: ["POST"],
  tokens: ["GET", "POST"],
  token: ["DELETE"],
  connectToken: ["POST"],
  deployments: ["GET", "POST"],
  deployment: ["GET"],
  deploymentFile: ["GET", "PUT"],
  secrets: ["GET", "POST"],
  secret: ["DELETE"],
  volumes: ["GET", "POST"],
  volume: ["GET", "DELETE"],
  volumeFiles: ["GET", "DELETE"],
  volumeFile: ["GET", "PUT"],
  volumeCopy: ["POST"],
  volumeBlocksMissing: ["POST"],
  volumeBlock: ["GET", "PUT"],
  volumeCommit: ["POST"],
  dicts: ["GET", "POST"],
  dict: ["GET", "DELETE"],
  dictOp: ["POST"],
  queues: ["GET", "POST"],
  queue: ["GET", "DELETE"],
  queueOp: ["POST"],
  volumeManifest: ["GET"],
  planeHeartbeat: ["POST"],
  planes: ["GET"],
  planeLogs: ["POST"],
  planeBundle: ["GET"],
  planeBundleMap: ["GET"],
  planeImage: ["GET"],
  planeSecrets: ["POST"],
  planeImageSecrets: ["POST"],
} as const satisfies { readonly [K in keyof typeof ROUTES]: readonly ("GET" | "POST" | "PUT" | "PATCH" | "DELETE")[] };

/** Routes a plane serves (all signed by the gateway). */
export const PLANE_ROUTES = {
  run: "/v1/plane/run",
  /**
   * Several inputs of one function in one request (a `.map`'s inputs that are ready together): a
   * `PlaneRunManyRequest`, answered with NDJSON `PlaneRunManyLine`s, one per input as it ends, in any order. Each
   * input is an attempt as on `run`: run once, and answered from the outcome cache when it is sent again.
   */
  runMany: "/v1/plane/run-many",
  /** Like run, for a generator: answers NDJSON `StreamLine`s as the generator yields. */
  stream: "/v1/plane/stream",
  /** Stops every container of an app: `{ "app": name }`. */
  stop: "/v1/plane/stop",
  /** Rolls over every container of an app, each once its inputs end: `{ "app": name }`. */
  rollover: "/v1/plane/rollover",
  /** Container time and cost: `?app=&since=` (as `GET /v1/usage` reads it; the gateway sends ms). */
  usage: "/v1/plane/usage",
  /** Stops a call's input: `{ "callId", "terminateContainer" }`. */
  cancel: "/v1/plane/cancel",
  /**
   * The plane's status, for the gateway (signed). Unsigned with `?probe=ready` or `?probe=live`, it answers a
   * `PlaneProbeAnswer` for an orchestrator's health checks: 200 when ready (or alive), 503 when not.
   */
  status: "/v1/plane/status",
} as const;

/** The methods each plane route takes: the plane answers any other with 405 and an `allow` header, as the gateway does. */
export const PLANE_ROUTE_METHODS = {
  run: ["POST"],
  runMany: ["POST"],
  stream: ["POST"],
  stop: ["POST"],
  rollover: ["POST"],
  usage: ["GET"],
  cancel: ["POST"],
  status: ["GET"],
} as const satisfies { readonly [K in keyof typeof PLANE_ROUTES]: readonly ("GET" | "POST")[] };

/** The health checks the plane's status route answers unsigned (`?probe=`): liveness and readiness. */
export const PLANE_PROBES = ["live", "ready"] as const;
export type PlaneProbe = (typeof PLANE_PROBES)[number];

/**
 * A plane's answer to a probe. `ready`: it takes new inputs; `draining`: it finishes the ones it has, then stops;
 * `unavailable`: it cannot start containers (no Docker engine, say), or not yet (its `notReady`). A `ready` probe is answered 200 only in
 * `ready`; a `live` probe 200 in every state.
 */
export interface PlaneProbeAnswer {
  planeId: string;
  state: "ready" | "draining" | "unavailable";
  /** Inputs the plane is running or holding now. */
  inFlight: number;
}

/**
 * A plane's Prometheus scrape route (docs/observability.md, "Metrics"): unsigned, so a scraper can read it; on the
 * plane's API port only with the metrics token as a bearer token, on its metrics listener (`--metrics-port`) as well
 * without one when none is set.
 */
export const PLANE_METRICS_ROUTE = "/metrics";

/** The OTLP/HTTP paths under `TANDEM_OTLP_ENDPOINT` that a plane posts JSON to (the OpenTelemetry protocol's own). */
export const OTLP_PATHS = { logs: "/v1/logs", metrics: "/v1/metrics" } as const;

/**
 * Where the CLI that started a local gateway puts the plane bundles and image specs it built into the gateway's R2
 * bucket (`PUT <route>/<BLOB_KEYS key>`, with the key it bound as `LOCAL_BLOBS_KEY`): gateway/local-blobs.ts. A
 * deployed gateway has no such route.
 */
export const LOCAL_BLOBS_ROUTE = "/_local/blobs";
/** How much work the local gateway's requests left behind them is under way (gateway/background.ts). */
export const LOCAL_BACKGROUND_ROUTE = "/_local/background";
/**
 * `POST /_local/client-gone/<watch>`: `tandem serve`'s front door telling its gateway that the client of the web
 * request it sent with `HEADERS.clientWatch: <watch>` went before its answer ended (gateway/client-gone.ts).
 */
export const LOCAL_CLIENT_GONE_ROUTE = "/_local/client-gone";
/** A `HEADERS.clientWatch` id, as the front door makes them (`randomUUID`). */
export const CLIENT_WATCH_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Routes of the CLI that started a local gateway, which the gateway reaches
 * through its `LOCAL_PLANE` binding (`tandem run` only; never in a deployment).
 */
export const LOCAL_PLANE_ROUTES = {
  /**
   * Start the local plane, unless it has started: answers once it takes calls, with its report
   * ({@link LocalPlaneStarted}; the gateway may send it a call before its first heartbeat lands), or an error body.
   */
  start: "/v1/local-plane/start",
  /**
   * The plane bundles of the apps, bundled when first asked for: `tandem run` of an edge function starts its gateway
   * before it bundles them, and bundles them only if a call needs a plane ({@link LocalPlaneBundles}, or an error body).
   */
  bundles: "/v1/local-plane/bundles",
} as const;

/** The answer to `LOCAL_PLANE_ROUTES.start`: the plane's report, as its heartbeat carries it. */
export interface LocalPlaneStarted {
  plane: PlaneHeartbeat;
}

/** The answer to `LOCAL_PLANE_ROUTES.bundles`: each app's plane bundle, by app name. */
export interface LocalPlaneBundles {
  bundles: Record<string, PlaneBundleRef>;
}

const seg = encodeURIComponent;

/** Concrete paths for the routes above. */
export const paths = {
  health: () => ROUTES.health,
  apps: () => ROUTES.apps,
  app: (app: string) => `/v1/apps/${seg(app)}`,
  appStop: (app: string) => `/v1/apps/${seg(app)}/stop`,
  appRollover: (app: string) => `/v1/apps/${seg(app)}/rollover`,
  usage: (query: UsageQuery = {}) => `${ROUTES.usage}${usageQueryString(query)}`,
  /** A plane's usage route, as the gateway signs and sends it. */
  planeUsage: (query: UsageQuery = {}) => `${PLANE_ROUTES.usage}${usageQueryString(query)}`,
  call: (app: string, fn: string) => `/v1/apps/${seg(app)}/functions/${seg(fn)}/call`,
  spawn: (app: string, fn: string) => `/v1/apps/${seg(app)}/functions/${seg(fn)}/spawn`,
  map: (app: string, fn: string) => `/v1/apps/${seg(app)}/functions/${seg(fn)}/map`,
  mapCancel: (app: string, fn: string) => `/v1/apps/${seg(app)}/functions/${seg(fn)}/map/cancel`,
  stream: (app: string, fn: string) => `/v1/apps/${seg(app)}/functions/${seg(fn)}/stream`,
  callRecord: (id: string, waitMs?: number) => `/v1/calls/${seg(id)}${waitMs === undefined ? "" : `?wait=${waitMs}`}`,
  cancel: (id: string) => `/v1/calls/${seg(id)}/cancel`,
  appCalls: (app: string, query: CallListOptions = {}) => `/v1/apps/${seg(app)}/calls${callListQueryString(query)}`,
  appLogs: (app: string, query: LogQueryOptions = {}) => `/v1/apps/${seg(app)}/logs${logQueryString(query)}`,
  callLogs: (id: string, query: LogQueryOptions = {}) => `/v1/calls/${seg(id)}/logs${logQueryString(query)}`,
  schedules: (app?: string) => `/v1/schedules${app ? `?app=${seg(app)}` : ""}`,
  trigger: (app: string, fn: string) => `/v1/apps/${seg(app)}/functions/${seg(fn)}/trigger`,
  whoami: () => ROUTES.whoami,
  dashboardLogin: () => ROUTES.dashboardLogin,
  tokens: () => ROUTES.tokens,
  token: (id: string) => `/v1/tokens/${seg(id)}`,
  connectToken: (app: string) => `/v1/apps/${seg(app)}/connect-token`,
  deployments: (app: string) => `/v1/apps/${seg(app)}/deployments`,
  deployment: (app: string, version: number) => `/v1/apps/${seg(app)}/deployments/${version}`,
  deploymentFile: (app: string, hash: string) => `/v1/apps/${seg(app)}/deployments/files/${seg(hash)}`,
  secrets: () => ROUTES.secrets,
  secret: (name: string) => `/v1/secrets/${seg(name)}`,
  volumes: () => ROUTES.volumes,
  volume: (volume: string) => `/v1/volumes/${seg(volume)}`,
  volumeFiles: (volume: string, path: string, recursive = false) => `/v1/volumes/${seg(volume)}/files?path=${seg(path)}${recursive ? "&recursive=true" : ""}`,
  volumeFile: (volume: string, path: string, query: VolumeWriteQuery = {}) => `/v1/volumes/${seg(volume)}/file?${volumeFileQuery(path, query)}`,
  volumeCopy: (volume: string) => `/v1/volumes/${seg(volume)}/copy`,
  volumeBlocksMissing: (volume: string) => `/v1/volumes/${seg(volume)}/blocks/missing`,
  volumeBlock: (volume: string, hash: string) => `/v1/volumes/${seg(volume)}/blocks/${seg(hash)}`,
  volumeCommit: (volume: string) => `/v1/volumes/${seg(volume)}/commit`,
  dicts: () => ROUTES.dicts,
  dict: (dict: string) => `/v1/dicts/${seg(dict)}`,
  dictOp: (dict: string, op: DictOp) => `/v1/dicts/${seg(dict)}/${op}`,
  queues: () => ROUTES.queues,
  queue: (queue: string) => `/v1/queues/${seg(queue)}`,
  queueOp: (queue: string, op: QueueOp) => `/v1/queues/${seg(queue)}/${op}`,
  volumeManifest: (volume: string) => `/v1/volumes/${seg(volume)}/manifest`,
  planeHeartbeat: () => ROUTES.planeHeartbeat,
  planes: () => ROUTES.planes,
  planeLogs: () => ROUTES.planeLogs,
  planeBundle: (hash: string) => `/v1/planes/bundles/${seg(hash)}`,
  planeBundleMap: (hash: string) => `/v1/planes/bundles/${seg(hash)}/source-map`,
  planeImage: (hash: string) => `/v1/planes/images/${seg(hash)}`,
  planeSecrets: () => ROUTES.planeSecrets,
  planeImageSecrets: () => ROUTES.planeImageSecrets,
  /** A WebSocket agent: `/<app>/<label>`, with `?session=<id>` to resume a session. */
  agent: (app: string, label: string, sessionId?: string) => `/${seg(app)}/${seg(label)}${sessionId === undefined ? "" : `?session=${seg(sessionId)}`}`,
  /** A web endpoint: `/<app>/<label><path>`. */
  web: (app: string, label: string, path = "/") => `/${seg(app)}/${seg(label)}${path === "/" ? "" : path}`,
};

/** App names, function names and web labels: letters, digits, `-` and `_`, up to 64. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
/** Environment names (`--env`, `TANDEM_ENV`, `Tandem-Env`): lowercase letters, digits and `-`, up to 32. */
export const ENV_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,31}$/;
/** The environment of a gateway, a command or a client that names none. */
export const DEFAULT_ENV = "main";

/**
 * Region names, as planes report them (`tandem plane --region eu-west`) and functions ask for them
 * (`region: "eu-west"`): lowercase letters, digits and `-`, up to 64, starting with a letter or digit.
 */
export const REGION_PATTERN = /^[a-z0-9][a-z0-9-]{0,63}$/;
/** Function names: a name, or `Class.method` for a method of a class (`app.cls`). */
export const FUNCTION_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63})?$/;

/**
 * What a function's containers go by: its name, or for a class method (`Class.method`) its class's, whose containers
 * serve every method of an instance. A plane's heartbeat, status, gauges and usage name containers so.
 * @example containerGroup("Model.generate") // "Model"; containerGroup("embed") // "embed"
 */
export function containerGroup(fn: string): string {
  return fn.split(".")[0]!;
}

/** Names an app may not take, because the gateway's own routes live there. */
export const RESERVED_APP_NAMES = new Set(["v1", "_tandem", "cdn-cgi", "favicon.ico"]);

/**
 * Ends the first line of a plane bundle that joins the runtime (the runner and the SDK) with an app's module, as
 * `tandem run` and `tandem serve` build it, followed by how many lines of the runtime come next: a plane keeps those
 * apart and loads them from V8's code cache (gpu-plane/runtime-code.ts). A comment: the bundle runs as it is too.
 */
export const PLANE_RUNTIME_MARKER = "//tandem-plane-runtime-lines=";
/** The global symbol's key (`Symbol.for`) under which such a bundle says how its runtime was loaded: `"cached"` or `"compiled"`. */
export const PLANE_RUNTIME_CODE_KEY = "tandem.runtimeCode";

/** Where things live in the gateway's blob storage (R2). */
export const BLOB_KEYS = {
  /** An app's plane bundle, by content hash, and its source map beside it. */
  planeBundle: (hash: string) => `bundles/${hash}.mjs`,
  planeBundleMap: (hash: string) => `bundles/${hash}.mjs.map`,
  /** An image spec (`ImageBuildSpec` JSON), by content hash. */
  image: (hash: string) => `images/${hash}.json`,
  /** A spawned call's input, and a call's result, when too large for a ledger row. */
  input: (callId: string) => `inputs/${callId}`,
  result: (callId: string) => `results/${callId}`,
  /** A volume block (at most `VOLUME_LIMITS.blockBytes`), by the SHA-256 of its bytes: shared by every file, version and volume that holds it. */
  volumeBlock: (hash: string) => `blocks/sha256/${hash}`,
  /** A file of a deployment's artifact (`DeploymentFile`), by the SHA-256 of its bytes: kept while a record names it, which is always. */
  deploymentFile: (hash: string) => `deployments/sha256/${hash}`,
  /**
   * An app's older log lines (gzipped NDJSON), moved out of its `LogStore`: under the store's Durable Object id
   * (so each environment's are apart), then the UTC hour they were printed in (so an hour's objects list
   * together, in time order), then the first line's place in the store.
   */
  logArchive: (storeId: string, time: number, firstSeq: number) =>
    `logs/${storeId}/${new Date(time).toISOString().slice(0, 13)}/${String(firstSeq).padStart(12, "0")}.ndjson.gz`,
} as const;

/**
 * The rule for a class's parameters (`Model({ size: "small" })`), the same in
 * the SDK and at the gateway: an object whose values are strings, numbers,
 * booleans or null, since each set picks an instance (and a plane pool).
 * Returns what is wrong, as the end of a sentence, or undefined.
 */
export function clsParamsProblem(params: unknown): { parameter?: string; problem: string } | undefined {
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    return { problem: `parameters must be an object ({} for none; got ${describeType(params)})` };
  }
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && !["string", "number", "boolean"].includes(typeof value)) {
      return { parameter: key, problem: `parameter "${key}" must be a string, number, boolean or null (got ${describeType(value)})` };
    }
  }
  return undefined;
}

function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : typeof value;
}

// ---------------------------------------------------------------------------
// Calls

export const CALL_STATUSES = ["pending", "running", "succeeded", "failed", "timed_out", "cancelled"] as const;
export type CallStatus = (typeof CALL_STATUSES)[number];
export const TERMINAL_STATUSES: ReadonlySet<CallStatus> = new Set(["succeeded", "failed", "timed_out", "cancelled"]);

/** How a call was started. */
export const CALL_KINDS = ["remote", "spawn", "map", "stream", "scheduled"] as const;
export type CallKind = (typeof CALL_KINDS)[number];

/** How many calls `GET /v1/apps/:app/calls` lists by default, and at most. */
export const CALL_LIST_LIMITS = { defaultLimit: 50, maxLimit: 1_000 } as const;

/**
 * The query of `GET /v1/apps/:app/calls`, each filter optional: `?function=&status=&kind=&before=&cursor=&limit=`.
 * `before` (ms since the epoch) lists the calls made before it; `cursor`, the answer's `next`, the page after it.
 */
export const CallListQuerySchema = z.lazy(() =>
  z.strictObject({
    /** A function, or a class method (`Cls.method`). */
    function: z.string().min(1, "must be a function name").max(200, "must be a function name").optional(),
    /** One status, or several with commas (`failed,timed_out`). */
    status: z
      .string()
      .transform((value, ctx) => {
        const statuses = value.split(",");
        const unknown = statuses.find((s) => !(CALL_STATUSES as readonly string[]).includes(s));
        if (unknown === undefined) return [...new Set(statuses)] as CallStatus[];
        ctx.addIssue({ code: "custom", message: `must be one or more of ${CALL_STATUSES.join(", ")}, with commas between`, input: value });
        return z.NEVER;
      })
      .optional(),
    /** Calls made since then: a duration back from now, ms since the epoch, or a date, as the log query's `since`. */
    since: sinceQueryField().optional(),
    kind: z.enum(CALL_KINDS, `must be one of ${CALL_KINDS.join(", ")}`).optional(),
    before: z
      .string()
      .regex(/^\d{1,15}$/, "must be a time in ms since the epoch")
      .transform(Number)
      .optional(),
    cursor: z
      .string()
      .regex(CALL_CURSOR_PATTERN, "must be a listing's next, as it gave it")
      .transform((cursor) => {
        const [createdAt, callId] = cursor.split("~") as [string, string];
        return { createdAt: Number(createdAt), callId };
      })
      .optional(),
    limit: z
      .string()
      .regex(/^\d{1,5}$/, `must be a whole number from 1 to ${CALL_LIST_LIMITS.maxLimit}`)
      .transform(Number)
      .pipe(
        z
          .number()
          .min(1, `must be a whole number from 1 to ${CALL_LIST_LIMITS.maxLimit}`)
          .max(CALL_LIST_LIMITS.maxLimit, `must be a whole number from 1 to ${CALL_LIST_LIMITS.maxLimit}`),
      )
      .optional(),
  }),
);

/** A page's cursor (`CallList.next`): the last call listed, as `<createdAt>~<callId>`. */
export const CALL_CURSOR_PATTERN = /^\d{1,15}~fc-[0-9a-z]{26}$/;

/** What `paths.appCalls` and `tandem calls` ask for: `CallListQuerySchema`'s fields. */
export interface CallListOptions {
  function?: string;
  /** One status, or several with commas: `failed,timed_out`. */
  status?: string;
  /** As the log query's `since`: a date without a zone is the sender's local time. */
  since?: string;
  kind?: CallKind;
  before?: number;
  cursor?: string;
  limit?: number;
}

function callListQueryString(query: CallListOptions): string {
  const q = new URLSearchParams();
  for (const key of ["function", "status", "since", "kind", "before", "cursor", "limit"] as const) if (query[key] !== undefined) q.set(key, String(query[key]));
  // A date without a zone is the sender's local time; the gateway, which runs in UTC, would read it otherwise.
  const date = query.since === undefined ? undefined : sinceDate(query.since);
  if (date !== undefined) q.set("since", String(date));
  return q.size ? `?${q}` : "";
}

/** One call as `GET /v1/apps/:app/calls` lists it: its record without its result (`GET /v1/calls/:id` has that). */
export type CallSummary = DashboardCallRow;

/** `GET /v1/apps/:app/calls`: the calls, latest first, and `next`, the `cursor` of the page after (null: none). */
export interface CallList {
  calls: CallSummary[];
  next: string | null;
}

/** An `Idempotency-Key` header: 1 to 255 visible ASCII characters (a UUID, say). */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/** Call ids: `fc-` then 26 lowercase base-32 characters, time-ordered. */
export const CALL_ID_PATTERN = /^fc-[0-9a-z]{26}$/;

/** What a call id looks like, as every message about one that is not says it. */
export const CALL_ID_FORM = "fc- and 26 lowercase letters and digits, 29 characters in all";

/** The characters of a call id after `fc-` (base 32, without i, l, o, u). */
export const CALL_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const B32 = CALL_ID_ALPHABET;

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

/**
 * When a call id was made (ms since the epoch), from its first 10 characters; undefined for a string that is not one.
 * @example callIdTime(newCallId(1_700_000_000_000)); // 1_700_000_000_000
 */
export function callIdTime(callId: string): number | undefined {
  if (!CALL_ID_PATTERN.test(callId)) return undefined;
  let time = 0;
  for (const c of callId.slice(3, 13)) time = time * 32 + B32.indexOf(c);
  return time;
}

// ---------------------------------------------------------------------------
// Bodies
//
// Each exported schema is made when first used (`z.lazy`): made at once, this file's 200 zod constructors took
// 35 ms of every process that loads it (the CLI, each container's runner, each gateway isolate), measured in Node
// on this repository's 2-core machine, where most of them are never used.

const jsonValue: z.ZodType<unknown> = z.unknown();
/** superjson's description of the values JSON cannot carry. */
const metaValue = z.looseObject({}, "must be an object in superjson's meta format");

export const CallRequestSchema = z.lazy(() =>
  z.strictObject({
    args: z.array(jsonValue, "must be an array of arguments").optional(),
    meta: metaValue.optional(),
  }),
);
export type CallRequest = z.infer<typeof CallRequestSchema>;

/** The body of a request that takes none but may carry `{}` (`POST /v1/apps/:app/stop`, `/rollover`, a function's `/trigger`): empty, or an object with no field. */
export const NoFieldsRequestSchema = z.lazy(() => z.strictObject({}));

export const CancelRequestSchema = z.lazy(() =>
  z.strictObject({
    /** Also stop the container the call runs in (for a function that does not watch `currentCall().signal`). */
    terminateContainer: z.boolean("must be true or false").optional(),
  }),
);

export const MapRequestSchema = z.lazy(() =>
  z.strictObject({
    inputs: z
      .array(z.array(jsonValue, "each input must be an array of arguments"), "must be an array of argument arrays")
      .max(API_LIMITS.maxMapInputs, `at most ${API_LIMITS.maxMapInputs} inputs per request`),
    meta: metaValue.optional(),
  }),
);
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
  /** A scheduled run (`kind: "scheduled"`): the time it was due, ms since the epoch. */
  scheduledAt?: number;
  /**
   * A plane call's last attempt, once it ended: where its time went on the plane that ran it (its wait for a container,
   * the container's cold start, its run), in ms. `startedAt` to `finishedAt` is the gateway's view, which holds them.
   */
  plane?: PlaneRunTimings;
}

/** One scheduled function, as `GET /v1/schedules` lists it. */
export interface ScheduleInfo {
  app: string;
  function: string;
  /** `cron "0 2 * * *" (UTC)`, `every 1h`. */
  schedule: string;
  kind: "cron" | "period";
  expression?: string;
  timezone: string;
  periodMs?: number;
  overlap: "skip" | "allow";
  /** The next three run times, ms since the epoch. */
  nextRuns: number[];
  /** The last run fired, with its outcome once the ledger has it. */
  lastRun?: {
    callId: string;
    scheduledAt: number;
    /** `expired`: the call ended longer ago than the ledger keeps records. */
    status: CallStatus | "expired";
    /** Its attempts so far (more than one: it was retried, or run again after its runner was lost); none once expired. */
    attempts?: number;
    durationMs?: number;
    error?: WireError;
  };
  /** Runs skipped because the previous one was still running (overlap "skip"). */
  skipped: number;
  /** Runs missed while nothing fired (the edge was down); each such gap is caught up once. */
  missed: number;
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

/**
 * One line of the NDJSON stream `POST .../stream` answers with: a chunk the
 * generator yielded, then exactly one last line, `done` or `error`.
 */
export type StreamLine =
  { chunk: unknown; meta?: unknown } | { done: true; callId: string; chunks: number } | { error: WireError; callId: string; chunks: number };

/**
 * What `POST .../map/cancel` answers: how many of the map request's inputs it cancelled (those that had not ended;
 * 0 for a map that had ended, or a key no map request carried).
 * @example { "cancelled": 168 }
 */
export interface MapCancelAnswer {
  cancelled: number;
}

export interface SpawnResponse {
  callId: string;
  status: CallStatus;
}

/** `GET /v1/apps`: the apps the token reaches, and, for a token limited to some, how many more the gateway serves. */
export interface AppsAnswer {
  apps: AppManifest[];
  /** Apps served that the token does not reach (their names are not given); absent when there are none. */
  othersServed?: number;
  /** The environment this gateway serves, when the request asked for another (`Tandem-Env`), which has no apps here. */
  servedEnvironment?: string;
}

/** What `GET /v1/apps` lists for one app. */
export interface AppManifest {
  name: string;
  functions: FunctionManifest[];
  endpoints: EndpointManifest[];
}

export interface FunctionManifest {
  name: string;
  /** A function, a class's method (`Class.method`) or a WebAssembly function; absent from a gateway of an earlier release. */
  kind?: "function" | "method" | "wasm";
  tier: "edge" | "plane";
  timeoutSeconds: number;
  retries: RetryPolicy;
  /** Declared as a generator (`async function*`): stream it (`.remoteGen()`, `POST .../stream`). */
  generator: boolean;
  /** The regions its plane calls may run in (`region` option); absent: any region. */
  regions?: string[];
  /** The GPUs it asks for, in order of preference (`gpu` option: `"H100:2"`, `"A100"`); absent: none. */
  gpu?: string[];
}

export interface EndpointManifest {
  label: string;
  kind: "web" | "endpoint" | "websocket";
  method?: string;
  path: string;
  /** `token`: callers need an API token or a connect token (`auth: "token"`). */
  auth: "public" | "token";
}

export interface RetryPolicy {
  maxRetries: number;
  backoffCoefficient: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

// ---------------------------------------------------------------------------
// Tokens: who may call what (docs/security.md)

/** What a token may do, each including the ones before it: call functions; deploy and stop apps; manage tokens and planes. */
export const TOKEN_SCOPES = ["call", "deploy", "admin"] as const;
export type TokenScope = (typeof TOKEN_SCOPES)[number];

/** True when a token of scope `has` may do what needs `needs`. */
export function scopeAllows(has: TokenScope, needs: TokenScope): boolean {
  return TOKEN_SCOPES.indexOf(has) >= TOKEN_SCOPES.indexOf(needs);
}

/** Token ids: `tk-` and 16 lowercase letters or digits. Shown in lists; not a secret. */
export const TOKEN_ID_PATTERN = /^tk-[0-9a-z]{16}$/;
/** A whole token, as `TANDEM_TOKEN` and `Authorization: Bearer` carry it: its id, a dot, its secret (`ts-` and 32 characters). */
export const TOKEN_PATTERN = /^(tk-[0-9a-z]{16})\.(ts-[0-9a-z]{32})$/;
/** A connect token: short-lived, for one app (and one label), signed by the gateway; `?token=` on a web endpoint or agent. */
export const CONNECT_TOKEN_PATTERN = /^ct-[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * Why `text` is not an API token, said after where it came from; a connect token is told where those go.
 * @example `the Authorization header ${notAnApiToken("hunter2")}` // "… does not hold a Tandem token (they look like …)"
 */
export function notAnApiToken(text: string): string {
  return CONNECT_TOKEN_PATTERN.test(text.trim())
    ? "holds a connect token (ct-…), which opens only a web endpoint or agent that asks for a token, as ?token=; send an API token here (tk-<16 characters>.ts-<32 characters>)"
    : "does not hold a Tandem token (they look like tk-<16 characters>.ts-<32 characters>)";
}

/** A new token's id and secret, and the whole token to send (`<id>.<secret>`). */
export function newToken(): { id: string; secret: string; token: string } {
  const random = (length: number) => [...crypto.getRandomValues(new Uint8Array(length))].map((byte) => B32[byte % 32]).join("");
  const id = `tk-${random(16)}`;
  const secret = `ts-${random(32)}`;
  return { id, secret, token: `${id}.${secret}` };
}

/** `POST /v1/tokens`. */
export const TokenCreateRequestSchema = z.lazy(() =>
  z.strictObject({
    // Printed as it is by `tandem token list` and the dashboard: no line breaks or terminal escapes.
    name: z
      .string("must be a string")
      .min(1, "must not be empty")
      .max(64, "must be at most 64 characters")
      .regex(/^\P{Cc}*$/u, "must not hold control characters (line breaks, tabs, escapes)")
      .optional(),
    scope: z.enum(TOKEN_SCOPES, 'must be "call", "deploy" or "admin"').optional(),
    /** Only these apps; none: every app. An admin token reaches every app. */
    apps: z
      .array(
        z
          .string("must be app names")
          .regex(NAME_PATTERN, "must be app names")
          .refine(
            (name) => !RESERVED_APP_NAMES.has(name),
            `must be app names; ${[...RESERVED_APP_NAMES].join(", ")} are the gateway's own routes, never an app's`,
          ),
        "must be a list of app names",
      )
      .min(1, "must name at least one app")
      .max(100, "must name at most 100 apps")
      .optional(),
    /** Only this environment (docs/deploy.md, "Environments"); none: every environment. */
    env: z
      .string("must be an environment name: lowercase letters, digits and '-', up to 32")
      .regex(ENV_NAME_PATTERN, "must be an environment name: lowercase letters, digits and '-', up to 32")
      .optional(),
    /** It stops working this long after it is made (`durationMs`: "30d", "12h"); neither this nor `expiresAt`: never. */
    expiresIn: z
      .string(`must be ${DURATION_FORMS}`)
      .superRefine((value, ctx) => {
        const problem = tokenLifeProblem(value);
        if (problem) ctx.addIssue({ code: "custom", message: problem, input: value });
      })
      .optional(),
    /** It stops working at this time (ms since the epoch), in place of `expiresIn`. */
    expiresAt: z
      .number("must be a time in ms since the epoch")
      .int("must be a time in ms since the epoch")
      .superRefine((at, ctx) => {
        const now = Date.now();
        const problem =
          at <= now ? "must be a time to come" : at - now > TOKEN_DEFAULTS.maxLifetimeMs ? `must be at most ${MAX_TOKEN_DAYS} days from now` : undefined;
        if (problem) ctx.addIssue({ code: "custom", message: problem, input: at });
      })
      .optional(),
  }),
);
export type TokenCreateRequest = z.infer<typeof TokenCreateRequestSchema>;

const MAX_TOKEN_DAYS = TOKEN_DEFAULTS.maxLifetimeMs / 86_400_000;

/**
 * What is wrong with `value` as a token's life (`expiresIn`, `tandem token create --expires`), in the words after the
 * field's or flag's name; undefined when it is a duration, more than 0 and at most `TOKEN_DEFAULTS.maxLifetimeMs`.
 * @example tokenLifeProblem("30"); // "must be a duration: a number and its unit, …"
 */
export function tokenLifeProblem(value: string): string | undefined {
  const ms = durationMs(value);
  if (ms === undefined) return `must be ${DURATION_FORMS}`;
  if (ms <= 0) return "must be more than 0";
  if (ms > TOKEN_DEFAULTS.maxLifetimeMs) return `must be at most ${MAX_TOKEN_DAYS}d`;
  return undefined;
}

/**
 * When a token made by `request` stops working (ms since the epoch): `expiresAt`, or `expiresIn` from `now`;
 * undefined when it never does. The request was checked (`TokenCreateRequestSchema`), and names one of them at most.
 * @example tokenExpiry({ expiresIn: "12h" }, now); // now + 43_200_000
 */
export function tokenExpiry(request: Pick<TokenCreateRequest, "expiresIn" | "expiresAt">, now: number): number | undefined {
  return request.expiresAt ?? (request.expiresIn === undefined ? undefined : now + durationMs(request.expiresIn)!);
}

/** A token as `GET /v1/tokens` and `GET /v1/whoami` show it: never its secret. */
export interface TokenInfo {
  id: string;
  name: string;
  scope: TokenScope;
  /** The apps it may reach; null: every app. */
  apps: string[] | null;
  /** The one environment it may reach; absent: every environment. */
  env?: string;
  createdAt: number;
  /** The token that created it (`bootstrap` for the gateway's `TANDEM_ADMIN_TOKEN`). */
  createdBy: string;
  /** When it was last used, to the minute; null: never. */
  lastUsedAt: number | null;
  /** When it stops working (ms since the epoch); absent: never. */
  expiresAt?: number;
}

/** `POST /v1/tokens` answers the new token once, secret included. */
export interface TokenCreateAnswer extends TokenInfo {
  /** The whole token to send: `<id>.<secret>`. Shown once; the gateway keeps only its hash. */
  token: string;
}

// ---------------------------------------------------------------------------
// Secrets (docs/secrets.md)

/** A secret's keys: environment variable names. */
export const SECRET_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/**
 * Why `__proto__` is refused as a secret's key, though it is an environment variable name: set on an object, it
 * names the object's prototype, so the key was dropped on the way without a word.
 */
export const SECRET_PROTO_KEY_REFUSED = '"__proto__" cannot be a key: on an object it names the prototype, and the key would be lost; choose another name';

/** `POST /v1/secrets`: a secret's values, all at once; `force` replaces one that exists (else `409 already_exists`). */
export const SecretCreateRequestSchema = z.lazy(() =>
  z.strictObject({
    name: z
      .string("must be a secret name: 1-64 letters, digits, '-' or '_', starting with a letter or digit")
      .regex(NAME_PATTERN, "must be 1-64 letters, digits, '-' or '_', starting with a letter or digit"),
    // Seen before the record is made: made, it has lost a `__proto__` key.
    values: z.preprocess(
      (raw, ctx) => {
        if (typeof raw === "object" && raw !== null && Object.hasOwn(raw, "__proto__")) ctx.addIssue({ code: "custom", message: SECRET_PROTO_KEY_REFUSED });
        return raw;
      },
      userRecord(
        z
          .string("must be a string")
          .max(SECRET_LIMITS.maxValueBytes, `must be at most ${SECRET_LIMITS.maxValueBytes} characters`)
          // An environment variable cannot carry one: a plane function saw the value cut there.
          .refine((value) => !value.includes("\u0000"), "must not hold a NUL character (an environment variable cannot carry one)")
          // A lone surrogate ("\ud800" in JSON) is no character: the edge would read it as sent, a plane container as U+FFFD.
          .refine((value) => !/\p{Cs}/u.test(value), "must be Unicode text: it holds a lone surrogate (a \\ud800-\\udfff escape not in a pair)"),
        'must be an object of KEY: "value" pairs',
      )
        .refine((values) => Object.keys(values).length > 0, "must hold at least one KEY=VALUE")
        .superRefine((values, ctx) => {
          const bad = Object.keys(values).find((key) => !SECRET_KEY_PATTERN.test(key));
          if (bad !== undefined)
            ctx.addIssue({
              code: "custom",
              message: `"${bad}" is not a key: keys are environment variable names (letters, digits and '_', not starting with a digit)`,
            });
          const reserved = Object.keys(values)
            .map(reservedEnvName)
            .find((why) => why !== undefined);
          if (reserved !== undefined) ctx.addIssue({ code: "custom", message: reserved });
        })
        .refine((values) => Object.keys(values).length <= SECRET_LIMITS.maxKeys, `must hold at most ${SECRET_LIMITS.maxKeys} keys`),
    ),
    force: z.boolean("must be true or false").optional(),
  }),
);
export type SecretCreateRequest = z.infer<typeof SecretCreateRequestSchema>;

// ---------------------------------------------------------------------------
// Deployments (docs/deploy.md, "Versions and rollback")

/** A SHA-256, as lowercase hex. */
export const SHA256_PATTERN = /^[0-9a-f]{64}$/;

/** A path within a deployment's artifact: relative, `/`-separated, each segment starting with a letter, digit or `_` (so no `..`). */
export const DEPLOYMENT_PATH_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]*(?:\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/;

/**
 * One file of a deployment's artifact: its path in the deploy folder (`worker.mjs`, `wrangler.toml`, `wasm/…`,
 * `plane/…`), the SHA-256 and length of its bytes, and, for a file that also goes into the gateway's blob bucket
 * (a plane bundle, its source map, an image spec), its key there.
 */
export const DeploymentFileSchema = z.lazy(() =>
  z.strictObject({
    path: z
      .string()
      .max(DEPLOY_LIMITS.maxPathChars, `must be at most ${DEPLOY_LIMITS.maxPathChars} characters`)
      .regex(DEPLOYMENT_PATH_PATTERN, "must be a relative path of letters, digits, '.', '-' and '_', each part starting with a letter, digit or '_'"),
    sha256: z.string().regex(SHA256_PATTERN, "must be a SHA-256 in lowercase hex (64 characters)"),
    bytes: z.number().int().min(0).max(DEPLOY_LIMITS.maxFileBytes),
    blobKey: z.string().max(DEPLOY_LIMITS.maxPathChars).regex(DEPLOYMENT_PATH_PATTERN, "must be a key of the blob bucket").optional(),
  }),
);
export type DeploymentFile = z.infer<typeof DeploymentFileSchema>;

/** Where a deployment's code came from, when its folder is a git checkout: the short commit, and whether files differed from it. */
export const DeploymentGitSchema = z.lazy(() =>
  z.strictObject({
    commit: z.string().regex(/^[0-9a-f]{4,40}$/, "must be a commit id in hex"),
    dirty: z.boolean(),
  }),
);
export type DeploymentGit = z.infer<typeof DeploymentGitSchema>;

/**
 * `POST /v1/apps/:app/deployments`: what `tandem deploy` (or `tandem app rollback`) uploaded, recorded as the app's
 * next version once wrangler has deployed it. Every file must be uploaded first (`PUT …/deployments/files/:hash`).
 * `rollbackOf`: the version whose artifact this one is, for a rollback.
 */
export const DeploymentRecordRequestSchema = z.lazy(() =>
  z
    .strictObject({
      codeHash: z.string().regex(SHA256_PATTERN, "must be a SHA-256 in lowercase hex (64 characters)"),
      git: DeploymentGitSchema.optional(),
      files: z
        .array(DeploymentFileSchema)
        .max(DEPLOY_LIMITS.maxFiles, `must name at most ${DEPLOY_LIMITS.maxFiles} files`)
        .refine((files) => files.some((f) => f.path === "worker.mjs"), "must name the Worker, worker.mjs")
        .refine((files) => new Set(files.map((f) => f.path)).size === files.length, "must name each path once"),
      rollbackOf: z.number().int().positive().optional(),
      /** Every app the Worker holds (one `tandem deploy` of several app files deploys them together). */
      apps: z.array(z.string().regex(NAME_PATTERN, "must be app names")).max(DEPLOY_LIMITS.maxFiles).optional(),
    })
    // History's `code` column and a rollback's check of what it fetched both read `codeHash` as the Worker's hash.
    .refine((r) => r.files.every((f) => f.path !== "worker.mjs" || f.sha256 === r.codeHash), {
      message: "must be the SHA-256 of the Worker, worker.mjs, as files names it",
      path: ["codeHash"],
    }),
);
export type DeploymentRecordRequest = z.infer<typeof DeploymentRecordRequestSchema>;

/** One deployment of an app, as the gateway recorded it: `GET /v1/apps/:app/deployments` lists them, newest (live) first. */
export interface DeploymentRecord {
  app: string;
  /** The environment it was deployed into. */
  env: string;
  /** 1, 2, …: one more than the app's last in this environment. */
  version: number;
  /** When it was recorded, ms since the epoch. */
  createdAt: number;
  /** The SHA-256 of the Worker it deployed (`worker.mjs`). */
  codeHash: string;
  git?: DeploymentGit;
  /** The token that recorded it. */
  by: { id: string; name: string };
  files: DeploymentFile[];
  /** The version this one restored (`tandem app rollback`). */
  rollbackOf?: number;
  /** Every app its Worker holds: a rollback of one takes them all back. To a token limited to apps, those it reaches. */
  apps?: string[];
  /** To a token limited to apps: how many other apps its Worker holds, which the token does not reach. */
  othersServed?: number;
}

/** `GET /v1/apps/:app/deployments`. */
export interface DeploymentList {
  deployments: DeploymentRecord[];
}

/** A secret as `GET /v1/secrets` shows it: its name and keys, never its values. */
export interface SecretInfo {
  name: string;
  /** Its keys, sorted. */
  keys: string[];
  createdAt: number;
  updatedAt: number;
  /**
   * On `POST /v1/secrets`: by app served, what declares this secret with `requiredKeys` it now lacks (each named as
   * an error names it: `function "charge"`), and the keys they lack: their runs fail until it has them.
   */
  lacking?: { app: string; holders: string[]; keys: string[] }[];
  /**
   * On `POST /v1/secrets` that replaced a secret, and on `DELETE /v1/secrets/:name`: the apps served whose plane
   * functions declare it. Their warm containers keep the values they started with until they scale down, or
   * `tandem app rollover` restarts them.
   */
  warmContainersKeepOld?: string[];
}

/** `POST /v1/apps/:app/connect-token`. */
export const ConnectTokenRequestSchema = z.lazy(() =>
  z.strictObject({
    /** Only this web endpoint or agent of the app; none: any of the app's that ask for a token. */
    label: z.string("must be a label").regex(NAME_PATTERN, "must be a label").optional(),
    ttlSeconds: z
      .number("must be a number of seconds, 10 to 3600")
      .int("must be whole seconds")
      .min(10, "must be at least 10")
      .max(3600, "must be at most 3600")
      .optional(),
  }),
);

/** A connect token, and until when it opens connections (ms since the epoch). */
export interface ConnectTokenAnswer {
  token: string;
  expiresAt: number;
}

// ---------------------------------------------------------------------------
// Volumes (docs/volumes.md)

/** Volume names: like app names, letters, digits, `-` and `_`, up to 64. */
export const VOLUME_NAME_PATTERN = NAME_PATTERN;
/** A block's name: the SHA-256 of its bytes, in lowercase hex. */
export const BLOCK_HASH_PATTERN = /^[0-9a-f]{64}$/;

const volumePathField = z.string("must be a path in the volume").max(VOLUME_LIMITS.maxPathBytes * 4, `must be at most ${VOLUME_LIMITS.maxPathBytes} bytes`);
const blockHash = z.string().regex(BLOCK_HASH_PATTERN, "must be block hashes (SHA-256, 64 lowercase hex digits)");
/** A commit's base and whether it overrides conflicts, as a write names them. */
const commitTerms = {
  /** The volume's version the writer saw; a file changed since then by another commit is a `volume_conflict`. None: the current version. */
  baseVersion: z.number("must be a version number").int("must be a version number").min(0, "must be a version number").optional(),
  /** Write even over files changed since `baseVersion`. */
  force: z.boolean("must be true or false").optional(),
};

/** `POST /v1/volumes`. */
export const VolumeCreateRequestSchema = z.lazy(() =>
  z.strictObject({
    name: z
      .string("must be a volume name")
      .regex(NAME_PATTERN, "must be a volume name: letters, digits, '-' and '_', up to 64, starting with a letter or digit"),
    /** An existing volume is answered as it is, instead of refused. */
    existOk: z.boolean("must be true or false").optional(),
  }),
);
export type VolumeCreateRequest = z.infer<typeof VolumeCreateRequestSchema>;

/** One change of a commit: a file put (its blocks already uploaded), a file or directory removed, files copied. */
export const VolumeChangeSchema = z.lazy(() =>
  z.discriminatedUnion(
    "op",
    [
      z.strictObject({
        op: z.literal("put"),
        path: volumePathField,
        /** The file's blocks in order: each `VOLUME_LIMITS.blockBytes` long but the last. */
        blocks: z.array(blockHash).max(Math.ceil(VOLUME_LIMITS.maxFileBytes / VOLUME_LIMITS.blockBytes), "holds more blocks than the largest file has"),
        size: z
          .number("must be a size in bytes")
          .int("must be whole bytes")
          .min(0, "must be 0 or more")
          .max(VOLUME_LIMITS.maxFileBytes, `must be at most ${VOLUME_LIMITS.maxFileBytes} bytes, the largest file a volume holds`),
        mode: z
          .number("must be a file mode")
          .int("must be a file mode")
          .min(0, "must be a file mode")
          .max(0o777, "must be a file's permission bits, at most 0o777 (511): a volume keeps no setuid, setgid or sticky bit")
          .optional(),
      }),
      z.strictObject({ op: z.literal("remove"), path: volumePathField, recursive: z.boolean("must be true or false").optional() }),
      z.strictObject({
        op: z.literal("copy"),
        sources: z.array(volumePathField, "must be a list of paths").min(1, "must name at least one path").max(VOLUME_LIMITS.maxChangesPerCommit),
        destination: volumePathField,
      }),
    ],
    'must be a change: { "op": "put" | "remove" | "copy", … }',
  ),
);
export type VolumeChange = z.infer<typeof VolumeChangeSchema>;

/** `POST /v1/volumes/:volume/commit`: every change, or none, in one new version. */
export const VolumeCommitRequestSchema = z.lazy(() =>
  z.strictObject({
    changes: z
      .array(VolumeChangeSchema, "must be a list of changes")
      .min(1, "must hold at least one change")
      .max(VOLUME_LIMITS.maxChangesPerCommit, `must hold at most ${VOLUME_LIMITS.maxChangesPerCommit} changes`),
    ...commitTerms,
  }),
);
export type VolumeCommitRequest = z.infer<typeof VolumeCommitRequestSchema>;

/** `POST /v1/volumes/:volume/copy`. */
export const VolumeCopyRequestSchema = z.lazy(() =>
  z.strictObject({
    sources: z.array(volumePathField, "must be a list of paths").min(1, "must name at least one path").max(VOLUME_LIMITS.maxChangesPerCommit),
    destination: volumePathField,
    ...commitTerms,
  }),
);

/** `POST /v1/volumes/:volume/blocks/missing`. */
export const BlocksMissingRequestSchema = z.lazy(() =>
  z.strictObject({
    hashes: z
      .array(blockHash, "must be a list of block hashes")
      .max(VOLUME_LIMITS.maxBlocksPerQuery, `must hold at most ${VOLUME_LIMITS.maxBlocksPerQuery} hashes`),
  }),
);

/** The query of `PUT .../file` and `DELETE .../files`: the commit's terms, and the new file's mode. */
export interface VolumeWriteQuery {
  baseVersion?: number;
  force?: boolean;
  mode?: number;
  recursive?: boolean;
}

function volumeFileQuery(path: string, query: VolumeWriteQuery): string {
  const parts = [`path=${seg(path)}`];
  if (query.baseVersion !== undefined) parts.push(`baseVersion=${query.baseVersion}`);
  if (query.force) parts.push("force=true");
  if (query.mode !== undefined) parts.push(`mode=${query.mode.toString(8)}`);
  if (query.recursive) parts.push("recursive=true");
  return parts.join("&");
}

/** A volume as `GET /v1/volumes` and `GET /v1/volumes/:volume` show it. */
export interface VolumeInfo {
  name: string;
  /** Bumped by every commit; 0 for a new volume. */
  version: number;
  files: number;
  bytes: number;
  createdAt: number;
}

/** One entry of a listing: a file, or a directory (the prefix of files' paths). */
export interface VolumeEntry {
  /** From the volume's root, without a leading `/`. */
  path: string;
  type: "file" | "directory";
  /** A file's size; a directory's is 0. */
  size: number;
  /** A file's mode (`0o644`); a directory's is `0o755`. */
  mode: number;
  /** When a file was last written, ms since the epoch; a directory's is its newest file's. */
  mtime: number;
  /** The volume version that last wrote a file. */
  version?: number;
}

/** `GET /v1/volumes/:volume/files`. */
export interface VolumeListing {
  volume: string;
  version: number;
  path: string;
  entries: VolumeEntry[];
}

/** What a commit answers (and `PUT .../file`, `DELETE .../files`, `POST .../copy`). */
export interface VolumeCommitAnswer {
  volume: string;
  /** The version this commit made. */
  version: number;
}

/** `POST .../blocks/missing` answers the hashes the gateway lacks; `PUT .../blocks/:hash` whether it stored one. */
export interface BlocksMissingAnswer {
  missing: string[];
}
/** One file of a `VolumeManifest`: its blocks in order, size, mode, the version that last wrote it. */
export interface VolumeManifestFile {
  path: string;
  blocks: string[];
  size: number;
  mode: number;
  version: number;
  mtime: number;
}

/** `GET /v1/volumes/:volume/manifest`: every file of the volume at `version`. */
export interface VolumeManifest {
  volume: string;
  version: number;
  files: VolumeManifestFile[];
}

export interface BlockPutAnswer {
  hash: string;
  size: number;
  /** False: the gateway had it already. */
  stored: boolean;
}

/**
 * A path in a volume in its one form: from the root, no leading or trailing
 * `/`, no empty, `.` or `..` names; `""` is the root. Returns the problem,
 * as the end of a sentence, when there is one. `/models/a.bin`,
 * `models/a.bin` and `models/a.bin/` are the same path.
 */
export function volumePath(given: string): { path: string } | { problem: string } {
  if (given.includes("\0")) return { problem: "must not hold a NUL character" };
  const trimmed = given.replace(/^\/+/, "").replace(/\/+$/, "");
  if (trimmed === "") return { path: "" };
  if (new TextEncoder().encode(trimmed).byteLength > VOLUME_LIMITS.maxPathBytes) return { problem: `must be at most ${VOLUME_LIMITS.maxPathBytes} bytes long` };
  for (const name of trimmed.split("/")) {
    if (name === "") return { problem: "must not hold an empty name (`//`)" };
    if (name === "." || name === "..") return { problem: "must not hold `.` or `..`: paths start at the volume's root" };
    if (new TextEncoder().encode(name).byteLength > VOLUME_LIMITS.maxNameBytes)
      return { problem: `must not hold a name longer than ${VOLUME_LIMITS.maxNameBytes} bytes` };
  }
  return { path: trimmed };
}

/**
 * Names starting with this are the plane's own in a mount (a file being replaced, `.tandem-<random>`): a mount's
 * commit never sends them, so a volume may not hold them either (a write of one is refused).
 */
export const RESERVED_VOLUME_NAME_PREFIX = ".tandem-";

/** The first name in `path` that is the plane's own (`RESERVED_VOLUME_NAME_PREFIX`), if any. */
export function reservedVolumeName(path: string): string | undefined {
  return path.split("/").find((name) => name.startsWith(RESERVED_VOLUME_NAME_PREFIX));
}

/** Why a write to `path` is refused for a reserved name, as the end of a sentence; undefined when it is not. */
export function reservedVolumeNameProblem(path: string): string | undefined {
  const name = reservedVolumeName(path);
  return name === undefined
    ? undefined
    : `holds the name "${name}": names starting with "${RESERVED_VOLUME_NAME_PREFIX}" are reserved for the plane (its files being replaced in a mount), which never commits them; choose another name`;
}

// ---------------------------------------------------------------------------
// Dicts and queues (docs/dict-queue.md)

/** Dict and queue names: like app names, letters, digits, `-` and `_`, up to 64. */
export const DICT_NAME_PATTERN = NAME_PATTERN;
export const QUEUE_NAME_PATTERN = NAME_PATTERN;

/** `POST /v1/dicts` and `POST /v1/queues`. */
export const StoreCreateRequestSchema = z.lazy(() =>
  z.strictObject({
    name: z.string("must be a name").regex(NAME_PATTERN, "must be a name: letters, digits, '-' and '_', up to 64, starting with a letter or digit"),
    /** An existing one is answered as it is, instead of refused. */
    existOk: z.boolean("must be true or false").optional(),
  }),
);

/** A value as the call codec encodes it (`encodeValue`): `json`, and superjson's `meta` when JSON alone cannot say it. */
const encodedValueField = z.strictObject(
  // `json` must be there (undefined is no JSON: stored, such a value reads back as `{}`, no value at all); `meta` is
  // checked as a call's `meta` is, and typed as `EncodedValue` holds it.
  {
    json: z.custom<unknown>((json) => json !== undefined, 'must be there: an encoded value is { "json": …, "meta"?: … }'),
    meta: z.custom<unknown>((meta) => metaValue.safeParse(meta).success, "must be an object in superjson's meta format").optional(),
  },
  'must be an encoded value: { "json": …, "meta"?: … }',
);
/** A dict key: a string or any JSON value, compared as its canonical JSON (`canonicalKey`). */
const dictKeyField = z.unknown();
const ttlField = z
  .number("must be seconds")
  .positive("must be more than 0 seconds")
  .max(DICT_LIMITS.maxTtlSeconds, `must be at most ${DICT_LIMITS.maxTtlSeconds} seconds`);
const pageLimit = (max: number) => z.number("must be a count").int("must be a whole count").min(1, "must be at least 1").max(max, `must be at most ${max}`);

/**
 * The refusal of two options that contradict each other, for a `.refine()` of a request's shape: the same words
 * over HTTP (a 400) and from the SDK (an `InvalidOptionsError`, before it sends), which cannot tell which one was meant.
 */
const notTogether = (a: string, b: string, why: string) => ({ message: `"${a}" and "${b}" cannot go together: ${why}; give one` });

/** The operations `POST /v1/dicts/:dict/:op` takes. */
export const DICT_OPS = ["get", "contains", "put", "update", "pop", "delete", "len", "entries", "clear"] as const;
export type DictOp = (typeof DICT_OPS)[number];

/** Each dict operation's body. */
export const DictRequestSchemas = {
  get: z.strictObject({ key: dictKeyField }),
  contains: z.strictObject({ key: dictKeyField }),
  put: z
    .strictObject({
      key: dictKeyField,
      value: encodedValueField,
      /** Seconds the entry lives from this write (default `DICT_LIMITS.defaultTtlSeconds`). */
      ttlSeconds: ttlField.optional(),
      /** Write only when the key holds no entry: a lock (one of many racing writers wins). */
      ifAbsent: z.boolean("must be true or false").optional(),
      /** Write only when the key's entry has this version (from `get`'s answer): a compare-and-swap. */
      ifVersion: z.number("must be a version number").int("must be a version number").min(1, "must be a version number").optional(),
    })
    .refine(
      (put) => !(put.ifAbsent && put.ifVersion !== undefined),
      notTogether("ifAbsent", "ifVersion", "the one writes only when the key holds no entry, the other only when it holds one of that version"),
    ),
  update: z.strictObject({
    entries: z
      .array(z.strictObject({ key: dictKeyField, value: encodedValueField }), "must be a list of { key, value }")
      .max(DICT_LIMITS.maxEntriesPerUpdate, `must hold at most ${DICT_LIMITS.maxEntriesPerUpdate} entries`),
    ttlSeconds: ttlField.optional(),
  }),
  pop: z.strictObject({ key: dictKeyField }),
  delete: z.strictObject({ key: dictKeyField }),
  len: z.strictObject({}),
  entries: z.strictObject({
    /** The canonical key of the last entry of the page before (its `next`). */
    after: z.string("must be the previous page's next").optional(),
    limit: pageLimit(DICT_LIMITS.maxPageSize).optional(),
    /** Leave values out (keys only). */
    keysOnly: z.boolean("must be true or false").optional(),
  }),
  clear: z.strictObject({}),
} as const satisfies { [O in DictOp]: z.ZodType };
export type DictRequest<O extends DictOp> = z.infer<(typeof DictRequestSchemas)[O]>;

/** An entry as `get`, `pop` and `entries` answer it. */
export interface DictEntry {
  /** The key as JSON (a string key is a string). */
  key: unknown;
  value?: EncodedValue;
  /** Bumped by every write to the dict; `put`'s `ifVersion` compares it. */
  version: number;
  /** When it will be dropped, ms since the epoch. */
  expiresAt: number;
}

/** Each dict operation's answer. */
export interface DictAnswers {
  get: { found: boolean; entry?: DictEntry };
  contains: { found: boolean };
  /** `version`: the entry's version after the put (whether this put wrote it or not); absent when no entry is there. */
  put: { written: boolean; version?: number };
  update: { written: number };
  pop: { found: boolean; entry?: DictEntry };
  delete: { found: boolean };
  len: { len: number };
  /** `next`: pass as `after` for the next page; absent on the last. */
  entries: { entries: DictEntry[]; next?: string };
  clear: { removed: number };
}

/** A dict as `GET /v1/dicts` and `GET /v1/dicts/:dict` show it. */
export interface DictInfo {
  name: string;
  /** Entries not expired. */
  len: number;
  createdAt: number;
}

const utf8 = new TextEncoder();

/**
 * A dict key in its one form: canonical JSON (object keys sorted, no
 * spaces), so `{ a: 1, b: 2 }` and `{ b: 2, a: 1 }` are the same key. Keys
 * are strings or JSON values; the problem, as the end of a sentence, when a
 * key is neither.
 */
export function canonicalKey(key: unknown): { key: string } | { problem: string } {
  try {
    const text = canonicalJson(key, 0);
    // Each UTF-16 unit is at most 3 bytes of UTF-8: most keys need no encoding to be measured.
    if (text.length * 3 > DICT_LIMITS.maxKeyBytes && utf8.encode(text).byteLength > DICT_LIMITS.maxKeyBytes) {
      return { problem: `must be at most ${DICT_LIMITS.maxKeyBytes} bytes as JSON` };
    }
    return { key: text };
  } catch (err) {
    return { problem: (err as Error).message };
  }
}

function canonicalJson(value: unknown, depth: number): string {
  if (depth > 32) throw new Error("must nest at most 32 levels");
  if (value === null || typeof value === "string" || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`must be JSON: ${value} is not a JSON number`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v, depth + 1)).join(",")}]`;
  if (typeof value === "object") {
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      throw new Error(`must be a string or a JSON value (got a ${(value as object).constructor?.name ?? "non-plain object"})`);
    }
    const fields = Object.keys(value).sort();
    return `{${fields.map((f) => `${JSON.stringify(f)}:${canonicalJson((value as Record<string, unknown>)[f], depth + 1)}`).join(",")}}`;
  }
  throw new Error(`must be a string or a JSON value (got ${value === undefined ? "undefined" : `a ${typeof value}`})`);
}

/** The operations `POST /v1/queues/:queue/:op` takes. */
export const QUEUE_OPS = ["put", "get", "ack", "extend", "len", "peek", "clear"] as const;
export type QueueOp = (typeof QUEUE_OPS)[number];

const partitionField = z
  .string("must be a partition name")
  .min(1, "must not be empty (leave it out for the default partition)")
  .refine((p) => new TextEncoder().encode(p).byteLength <= QUEUE_LIMITS.maxPartitionBytes, `must be at most ${QUEUE_LIMITS.maxPartitionBytes} bytes`);

/** Each queue operation's body. */
export const QueueRequestSchemas = {
  put: z.strictObject({
    values: z
      .array(encodedValueField, "must be a list of encoded values")
      .min(1, "must hold at least one value")
      .max(QUEUE_LIMITS.maxItemsPerRequest, `must hold at most ${QUEUE_LIMITS.maxItemsPerRequest} values`),
    partition: partitionField.optional(),
  }),
  get: z.strictObject({
    /** The most items to take (default 1); the answer holds at least one unless the wait ran out. */
    n: z
      .number("must be a count")
      .int("must be a whole count")
      .min(1, "must be at least 1")
      .max(QUEUE_LIMITS.maxItemsPerRequest, `must be at most ${QUEUE_LIMITS.maxItemsPerRequest}`)
      .optional(),
    partition: partitionField.optional(),
    /** How long to wait for an item, at most `QUEUE_LIMITS.maxWaitMs` (default 0: answer at once). */
    timeoutMs: z
      .number("must be milliseconds")
      .int("must be whole milliseconds")
      .min(0, "must be 0 or more")
      .max(QUEUE_LIMITS.maxWaitMs, `must be at most ${QUEUE_LIMITS.maxWaitMs} (one request waits at most that long; ask again to wait longer)`)
      .optional(),
    /** Hand the items out on a lease of this many seconds: each comes back unless acked in time. */
    leaseSeconds: z
      .number("must be seconds")
      .min(QUEUE_LIMITS.minLeaseSeconds, `must be at least ${QUEUE_LIMITS.minLeaseSeconds} seconds`)
      .max(QUEUE_LIMITS.maxLeaseSeconds, `must be at most ${QUEUE_LIMITS.maxLeaseSeconds} seconds`)
      .optional(),
  }),
  ack: z.strictObject({
    leases: z
      .array(z.string("must be lease ids"), "must be a list of lease ids")
      .min(1, "must name at least one lease")
      .max(QUEUE_LIMITS.maxItemsPerRequest, `must name at most ${QUEUE_LIMITS.maxItemsPerRequest} leases`),
  }),
  /** Leases still held run for `leaseSeconds` more from now (a worker whose item takes longer than it thought). */
  extend: z.strictObject({
    leases: z
      .array(z.string("must be lease ids"), "must be a list of lease ids")
      .min(1, "must name at least one lease")
      .max(QUEUE_LIMITS.maxItemsPerRequest, `must name at most ${QUEUE_LIMITS.maxItemsPerRequest} leases`),
    leaseSeconds: z
      .number("must be seconds")
      .min(QUEUE_LIMITS.minLeaseSeconds, `must be at least ${QUEUE_LIMITS.minLeaseSeconds} seconds`)
      .max(QUEUE_LIMITS.maxLeaseSeconds, `must be at most ${QUEUE_LIMITS.maxLeaseSeconds} seconds`),
  }),
  len: z
    .strictObject({ partition: partitionField.optional(), total: z.boolean("must be true or false").optional() })
    .refine((len) => !(len.total && len.partition !== undefined), notTogether("partition", "total", "the one counts one partition, the other all of them")),
  peek: z.strictObject({
    partition: partitionField.optional(),
    /** The `next` of the page before. */
    after: z.number("must be the previous page's next").int("must be the previous page's next").min(0, "must be the previous page's next").optional(),
    limit: pageLimit(QUEUE_LIMITS.maxPageSize).optional(),
  }),
  clear: z
    .strictObject({ partition: partitionField.optional(), all: z.boolean("must be true or false").optional() })
    .refine((clear) => !(clear.all && clear.partition !== undefined), notTogether("partition", "all", "the one clears one partition, the other all of them")),
} as const satisfies { [O in QueueOp]: z.ZodType };
export type QueueRequest<O extends QueueOp> = z.infer<(typeof QueueRequestSchemas)[O]>;

/** An item as `get` and `peek` answer it. */
export interface QueueItem {
  /** Its place in the queue: items leave each partition in this order. */
  id: number;
  value: EncodedValue;
  /** With a lease: the id to `ack` it with, and when it comes back to the queue (ms since the epoch). */
  lease?: string;
  leaseUntil?: number;
}

/** Each queue operation's answer. */
export interface QueueAnswers {
  put: { put: number };
  /**
   * `more`: items were left waiting because the answer would have carried more than `QUEUE_LIMITS.maxAnswerChars` of
   * them (a get of large items): ask again. The SDK's `getMany` does, without waiting.
   */
  get: { items: QueueItem[]; more?: true };
  /** `acked`: the leases that were still held (an expired lease's item went back to the queue). */
  ack: { acked: number };
  /** `extended`: the leases that were still held, each now running until `leaseUntil` (an expired one is not revived). */
  extend: { extended: number; leaseUntil: number };
  /** `len`: items waiting (not on a lease); `leased`: items out on a lease. */
  len: { len: number; leased: number };
  peek: { items: QueueItem[]; next?: number };
  clear: { removed: number };
}

/** A queue as `GET /v1/queues` and `GET /v1/queues/:queue` show it. */
export interface QueueInfo {
  name: string;
  /** Items waiting in every partition, and items out on a lease. */
  len: number;
  leased: number;
  partitions: number;
  createdAt: number;
}

// ---------------------------------------------------------------------------
// Planes

/** The audience of signed requests from a plane to the gateway (a request to a plane names the plane's id). */
export const GATEWAY_AUDIENCE = "gateway";

/** Plane ids: `pl-` and 8 to 32 lowercase letters or digits. */
export const PLANE_ID_PATTERN = /^pl-[0-9a-z]{8,32}$/;
/** Bundle hashes: sha256 hex. */
export const BUNDLE_HASH_PATTERN = /^[0-9a-f]{64}$/;

const capacity = z.object({ total: z.number().nonnegative(), free: z.number() });

export const PlaneHeartbeatSchema = z.lazy(() =>
  z.strictObject({
    planeId: z.string().regex(PLANE_ID_PATTERN),
    url: z.url(),
    region: z.string().regex(REGION_PATTERN, "must be lowercase letters, digits and '-', up to 64"),
    runtime: z.enum(["docker", "process"]),
    /** GPUs are declared, not detected: shown as simulated everywhere. */
    simulated: z.boolean(),
    gpus: z.record(z.string(), capacity),
    cpu: capacity,
    memoryMiB: capacity,
    /** Why this plane cannot start containers, if it cannot (no Docker engine, say). */
    unavailable: z.string().optional(),
    /**
     * Why this plane takes no calls yet, for a while only: the containers its previous run left behind are not all
     * removed, and it tries again until they are. It is sent nothing meanwhile, but unlike `unavailable` a call that
     * no other plane takes waits for it (until the call's timeout) rather than failing at once.
     */
    notReady: z.string().optional(),
    /** The plane is stopping (SIGTERM): it finishes the inputs it has and takes no new one. */
    draining: z.boolean().optional(),
    /**
     * The plane has stopped: its last heartbeat, sent as it closes, once its containers are gone. It runs nothing and
     * takes nothing; the gateway lists it `stopped` for `PLANE_DEFAULTS.stoppedDropMs`, then drops it. Left out by an
     * older plane, which goes stale instead (and a gateway older than this field refuses that last heartbeat: the
     * same).
     */
    stopped: z.literal(true).optional(),
    /**
     * When this plane's process started (ms since the epoch). Two processes reporting one id (a state folder copied
     * to another machine) would take turns in the registry: the one started last is the plane, the other is refused.
     * Left out by an older plane.
     */
    startedAt: z.number().int().positive().optional(),
    /**
     * The containers up on the plane now, per function that has any (a class's by its name, `containerGroup`): `busy`
     * running an input, `idle` warm and waiting (the dashboard's "warm now"). Left out by a plane with none.
     */
    warm: z
      .array(
        z.strictObject({
          app: z.string().min(1).max(64),
          function: z.string().min(1).max(200),
          busy: z.number().int().nonnegative(),
          idle: z.number().int().nonnegative(),
        }),
      )
      .max(10_000)
      .optional(),
    protocol: z.literal(PROTOCOL_VERSION),
  }),
);
export type PlaneHeartbeat = z.infer<typeof PlaneHeartbeatSchema>;

/** A plane as the gateway lists it. */
export interface PlaneInfo extends PlaneHeartbeat {
  lastSeen: number;
  healthy: boolean;
}

/**
 * Where a plane stands, from its last heartbeat and when it came: `stopped` (it said so as it closed), `stale` (silent
 * for `PLANE_DEFAULTS.staleMs`: its containers, as last reported, may be gone), `draining`, `unavailable` (it cannot
 * start containers), `not ready` (still removing what its previous run left), or `healthy`. Only a healthy plane is
 * sent calls.
 *
 * @example planeState(plane, plane.lastSeen, Date.now()) // "healthy"
 */
export function planeState(heartbeat: PlaneHeartbeat, lastSeen: number, now: number): PlaneState {
  if (heartbeat.stopped) return "stopped";
  if (now - lastSeen >= PLANE_DEFAULTS.staleMs) return "stale";
  if (heartbeat.draining) return "draining";
  if (heartbeat.unavailable !== undefined) return "unavailable";
  if (heartbeat.notReady !== undefined) return "not ready";
  return "healthy";
}
export type PlaneState = "healthy" | "draining" | "unavailable" | "not ready" | "stale" | "stopped";

/**
 * Whether the gateway forgets a plane now: one that stopped, `PLANE_DEFAULTS.stoppedDropMs` after it said so; one
 * that went silent without a word, `PLANE_DEFAULTS.staleDropMs` after its last heartbeat.
 *
 * @example planeDropped(plane, plane.lastSeen, Date.now()) // false for a plane that reported a minute ago
 */
export function planeDropped(heartbeat: PlaneHeartbeat, lastSeen: number, now: number): boolean {
  return now - lastSeen > (heartbeat.stopped ? PLANE_DEFAULTS.stoppedDropMs : PLANE_DEFAULTS.staleDropMs);
}

/** An image as a plane builds it: the `Image` steps, with local files read in. Named by the sha256 of its JSON. */
export interface ImageBuildSpec {
  steps: ResolvedImageStep[];
  force: boolean;
}

/**
 * The Docker repositories a plane tags its own images in: the base Node image
 * (`tandem-node:<hash>`) and functions' built images (`tandem-image:<hash>`).
 * A built image holds its app's files, so no `Image.fromRegistry` may name one.
 */
export const IMAGE_REPOSITORIES = {
  base: "tandem-node",
  built: "tandem-image",
} as const;

/**
 * Labels on every image a plane makes (the base image, each built image and
 * each of its intermediate steps), so the plane can refuse one named by id.
 */
export const IMAGE_LABELS = {
  /** `base` or `built`. */
  madeBy: "tandem.image",
  /** On a base image: the paths of the libraries in it, comma-separated, as `ldd` listed them for the host's Node. */
  baseLibraries: "tandem.base-libraries",
} as const;

/** One step of an `Image`, as the SDK records it. */
export type ImageStep =
  | { kind: "node"; version: string | null }
  | { kind: "registry"; ref: string }
  | { kind: "npm"; packages: string[] }
  | { kind: "apt"; packages: string[] }
  | { kind: "env"; vars: Record<string, string> }
  | { kind: "workdir"; path: string }
  | { kind: "file"; src: string; dst: string }
  | { kind: "dir"; src: string; dst: string; ignore: string[] }
  | { kind: "run"; commands: string[] }
  /**
   * Named secrets whose values are the environment of every later `run` step (and of the plane's npm for every later
   * `npm` step) as it builds, in no layer: the plane asks the gateway for them (`POST /v1/planes/image-secrets`).
   */
  | { kind: "secrets"; secrets: { name: string; requiredKeys: string[] }[] };

/** A step as the plane builds it: local files and folders read in (base64), the rest as the SDK recorded it. */
export type ResolvedImageStep =
  Exclude<ImageStep, { kind: "file" } | { kind: "dir" }> | { kind: "files"; dst: string; files: { path: string; content: string; mode: number }[] };

/**
 * How a new version of an app replaces the old one on the planes (`tandem deploy --strategy`, `tandem serve
 * --strategy`): `rolling` (the default) sends new inputs to the new version while the old version's containers
 * finish the inputs they run, up to the plane's version drain timeout, then stop, its idle ones once the new
 * version's `minContainers` are ready; `recreate` stops the old version's containers at once.
 */
export const DEPLOY_STRATEGIES = ["rolling", "recreate"] as const;
export type DeployStrategy = (typeof DEPLOY_STRATEGIES)[number];

/** Which plane bundle an app's plane functions run from. */
export interface PlaneBundleRef {
  hash: string;
  /** How this version replaces the one before it on the planes; left out: `rolling`. */
  strategy?: DeployStrategy;
  /** When it was built (ms): each `tandem serve` start or reload, and each deploy, builds anew. */
  builtAt?: number;
  /** Each function's (or class's) image, by name: the hash of its `ImageBuildSpec`. */
  images?: Record<string, string>;
  /**
   * Where the bundle's native packages are, on the machine that built it: a
   * plane on that machine mounts this node_modules folder read-only.
   */
  nodeModules?: string;
}

/** `LOCAL_PLANE_ROUTES.bundles`'s answer, as the gateway checks it. */
export const LocalPlaneBundlesSchema = z.lazy(
  () =>
    z.object({
      bundles: z.record(
        z.string(),
        z.object({
          hash: z.string().regex(/^[0-9a-f]{64}$/),
          strategy: z.enum(DEPLOY_STRATEGIES).optional(),
          builtAt: z.number().optional(),
          images: z.record(z.string(), z.string()).optional(),
          nodeModules: z.string().optional(),
        }),
      ),
    }) satisfies z.ZodType<LocalPlaneBundles>,
);

/** Shuts a container down: the runner runs its classes' `exit` hooks, then exits. */
export interface ShutdownFrame {
  t: "shutdown";
}

/**
 * Asks a runner to let go of its plane before the plane saves its memory (a memory snapshot): it closes its
 * connections to the control and API sockets (gVisor cannot save a container that holds a host socket), then dials
 * the control socket again until it answers, which is in the container restored from the snapshot, and says `ready`.
 */
export interface SnapshotFrame {
  t: "snapshot";
}

/** One GPU request of a function (`"H100:2"` as the SDK parsed it), in its fallback order. */
export const GpuRequestSchema = z.lazy(() =>
  z.strictObject({
    type: z.enum(Object.keys(GPU_TYPES) as [GpuType, ...GpuType[]]),
    count: z.number().int().min(1).max(MAX_GPUS_PER_CONTAINER),
  }),
);

/** What a plane needs to know of a function to run and scale it (`planeSpecOf` in sdk/options.ts makes it). */
export const PlaneFunctionSpecSchema = z.lazy(() =>
  z.strictObject({
    /** GPU requests in fallback order, parsed by the SDK; null: CPU only. */
    gpu: z.array(GpuRequestSchema).min(1).nullable(),
    cpu: z.number().positive().nullable(),
    memory: z.number().int().positive().nullable(),
    env: userRecord(z.string()),
    /** The app's spend cap in dollars: no new container once it is reached. */
    spendCapUsd: z.number().positive().nullable(),
    /** The hash of the function's `ImageBuildSpec`; null: the plane's base Node image. */
    image: z.string().regex(BUNDLE_HASH_PATTERN).nullable(),
    /** Volumes mounted into its containers, by where (`app.function({ volumes: { "/models": vol } })`); none: none. */
    volumes: z
      .array(
        z.strictObject({
          path: z.string(),
          volume: z.string().regex(NAME_PATTERN),
          readOnly: z.boolean(),
          subPath: z.string(),
          createIfMissing: z.boolean(),
        }),
      )
      .optional(),
    autoscaler: z.strictObject({
      minContainers: z.number().int().min(0),
      maxContainers: z.number().int().min(1),
      bufferContainers: z.number().int().min(0),
      scaledownWindowSeconds: z.number().positive().nullable(),
      maxInputs: z.number().int().min(1),
      targetInputs: z.number().int().min(1),
    }),
    /** Cold starts resume from a memory snapshot taken after `enter()` (`app.function({ snapshot: true })`); absent: fresh starts. */
    snapshot: z.literal(true).optional(),
  }),
);
export type PlaneFunctionSpec = z.infer<typeof PlaneFunctionSpecSchema>;

export const PlaneRunRequestSchema = z.lazy(() =>
  z.strictObject({
    callId: z.string().regex(CALL_ID_PATTERN),
    app: z.string().regex(NAME_PATTERN),
    function: z.string().regex(FUNCTION_NAME_PATTERN),
    /** For a class method: the parameters its instance is built with (its pool is per parameters). */
    clsParams: userRecord(z.unknown()).optional(),
    bundleHash: z.string().regex(BUNDLE_HASH_PATTERN),
    nodeModules: z.string().optional(),
    attempt: z.number().int().min(1),
    timeoutSeconds: z.number().positive(),
    args: z.array(z.unknown()),
    meta: z.unknown().optional(),
    spec: PlaneFunctionSpecSchema,
    /** How this version replaces an older one of the function on the plane (`DEPLOY_STRATEGIES`); left out: rolling. */
    strategy: z.enum(DEPLOY_STRATEGIES).optional(),
    /**
     * The function's environment with its secrets' values (docs/secrets.md), for a container this input starts:
     * given to Docker as environment at create, never written to disk or a log. Not part of the pool's key: a warm
     * container keeps the values it started with.
     */
    secrets: userRecord(z.string()).optional(),
  }),
);
export type PlaneRunRequest = z.infer<typeof PlaneRunRequestSchema>;

/** The fields of a run request that differ from input to input of one function; the rest are a run-many request's `base`. */
const RUN_ITEM_FIELDS = { callId: true, attempt: true, args: true, meta: true, clsParams: true } as const;

/**
 * Several inputs of one function for a plane (`PLANE_ROUTES.runMany`): what they share once (`base`: the app,
 * function, bundle, spec, timeout and secrets), and each input's own fields. Input `i` is the run request
 * `{ ...base, ...runs[i] }`.
 */
export const PlaneRunManyRequestSchema = z.lazy(() =>
  z.strictObject({
    base: PlaneRunRequestSchema.unwrap().omit(RUN_ITEM_FIELDS),
    runs: z.array(PlaneRunRequestSchema.unwrap().pick(RUN_ITEM_FIELDS)).min(1).max(PLANE_DEFAULTS.maxRunsPerRequest),
  }),
);
export type PlaneRunManyRequest = z.infer<typeof PlaneRunManyRequestSchema>;

/** One line of a run-many answer: input `i`'s answer, as `run` would have given it (or its error, as `{ error }`). */
export type PlaneRunManyLine = { i: number } & (PlaneRunResponse | { error: WireError });

/** A pool the gateway asks a plane to keep warm (a function with `minContainers`). */
export interface WarmPoolRef {
  app: string;
  function: string;
  bundleHash: string;
  nodeModules?: string;
  spec: PlaneFunctionSpec;
  /** For a class: the parameters of the instances kept warm (`{}`). */
  clsParams?: Record<string, unknown>;
  /** How this version replaces an older one on the plane (`DEPLOY_STRATEGIES`); left out: rolling. */
  strategy?: DeployStrategy;
  /**
   * The function declares secrets: the plane fetches their values for each warm container it starts, over
   * `POST /v1/planes/secrets` (signed both ways). A heartbeat answer never carries a value.
   */
  withSecrets?: true;
}

/** `POST /v1/planes/secrets`: the plane `planeId` starts a container of this warm pool and asks for its secrets. */
export const PlaneSecretsRequestSchema = z.lazy(() =>
  z.strictObject({
    planeId: z.string().regex(PLANE_ID_PATTERN, "must be a plane id"),
    app: z.string().regex(NAME_PATTERN, "must be an app name"),
    function: z.string().regex(FUNCTION_NAME_PATTERN, "must be a function name"),
    bundleHash: z.string().regex(BUNDLE_HASH_PATTERN, "must be a bundle hash"),
  }),
);
export type PlaneSecretsRequest = z.infer<typeof PlaneSecretsRequestSchema>;

/** The answer to `POST /v1/planes/secrets`: the container's environment with its secrets' values. */
export const PlaneSecretsAnswerSchema = z.lazy(() => z.strictObject({ secrets: userRecord(z.string()) }));
export type PlaneSecretsAnswer = z.infer<typeof PlaneSecretsAnswerSchema>;

/**
 * How the gateway signs its answer to `POST /v1/planes/secrets`: for the asking plane (its id is the audience), with
 * this method and the route as path, so that no signed request can pass for it, nor it for one.
 */
export const PLANE_SECRETS_ANSWER = { method: "ANSWER", path: "/v1/planes/secrets" } as const;

/** `POST /v1/planes/image-secrets`: the plane `planeId` builds image `imageHash` and asks for the secrets its steps declare. */
export const PlaneImageSecretsRequestSchema = z.lazy(() =>
  z.strictObject({
    planeId: z.string().regex(PLANE_ID_PATTERN, "must be a plane id"),
    imageHash: z.string().regex(BUNDLE_HASH_PATTERN, "must be an image hash"),
  }),
);
export type PlaneImageSecretsRequest = z.infer<typeof PlaneImageSecretsRequestSchema>;

/** The answer to `POST /v1/planes/image-secrets`: each named secret's values, by name. */
export const PlaneImageSecretsAnswerSchema = z.lazy(() => z.strictObject({ named: z.record(z.string(), userRecord(z.string())) }));
export type PlaneImageSecretsAnswer = z.infer<typeof PlaneImageSecretsAnswerSchema>;

/** How the gateway signs its answer to `POST /v1/planes/image-secrets` (as `PLANE_SECRETS_ANSWER`). */
export const PLANE_IMAGE_SECRETS_ANSWER = { method: "ANSWER", path: "/v1/planes/image-secrets" } as const;

/**
 * An app's plane functions' live version, as the gateway Worker that answers a heartbeat serves it: every plane is
 * told, so that the old version's containers on a plane that runs no input of the new one retire too
 * (gpu-plane/version-switch.ts).
 */
export interface LiveBundleRef {
  app: string;
  bundleHash: string;
  /** How this version replaces an older one on the plane (`DEPLOY_STRATEGIES`); left out: rolling. */
  strategy?: DeployStrategy;
  /**
   * When this version of the gateway Worker was made (ms): Cloudflare's version timestamp (each `wrangler deploy`,
   * a `tandem app rollback` included, makes a new one), or the start or reload of `tandem serve`'s workerd. It only
   * goes forward: a plane takes a version told with a later `since` than the one it knows, never an earlier one (two
   * Worker versions answer heartbeats during a rollout).
   */
  since: number;
}

/** The gateway's answer to a heartbeat: which warm pools this plane keeps, and each app's live version. */
export interface HeartbeatAnswer {
  ok: true;
  warm: WarmPoolRef[];
  /** Left out by a gateway that does not know when its version was made (no version metadata binding). */
  live?: LiveBundleRef[];
}

/** One line of `tandem usage`: container time and its cost, by app, function and GPU type. */
export interface UsageRow {
  app: string;
  function: string;
  gpu: string | null;
  containers: number;
  seconds: number;
  costUsd: number;
  /**
   * Seconds the plane kept prepared containers of this function (started, then paused until a cold start takes
   * one; docs/plane.md, "Prepared containers"). Not billed: not in `seconds` or `costUsd`. Absent when none.
   */
  preparedSeconds?: number;
}

/**
 * The query of `GET /v1/usage` and a plane's `GET /v1/plane/usage`: `?app=&since=`, `since` read as the log query
 * reads it (a duration back from now, ms since the epoch, or a date; in `SINCE_SPAN`), as ms since the epoch.
 */
export const UsageQuerySchema = z.lazy(() =>
  z.strictObject({
    app: z.string().regex(NAME_PATTERN, "must be an app name").optional(),
    since: sinceQueryField().optional(),
  }),
);
export type UsageQuery = z.infer<typeof UsageQuerySchema>;

/** `?app=&since=` for a usage query, or nothing. */
export function usageQueryString(query: UsageQuery): string {
  const q = new URLSearchParams();
  if (query.app) q.set("app", query.app);
  if (query.since !== undefined) q.set("since", String(query.since));
  return q.size ? `?${q}` : "";
}

/** What a plane answers to a usage query. */
export interface PlaneUsageAnswer {
  rows: UsageRow[];
}

/** `GET /v1/usage`: every healthy plane's rows, each with its plane, and the totals. */
export interface UsageAnswer {
  rows: (UsageRow & { plane: string })[];
  totalUsd: number;
  totalSeconds: number;
  /**
   * The planes the gateway knows whose usage the rows lack: each plane keeps its own ledger, read from it as asked, so
   * one stopped, gone silent or not answering is not counted (its ledger keeps it, counted again once it answers).
   */
  notCounted: PlaneNotCounted[];
}

/** A plane whose usage an answer lacks, and why: `stopped`, `stale since <time>`, or `did not answer: …`. */
export interface PlaneNotCounted {
  planeId: string;
  region: string;
  why: string;
}

/** `POST /v1/plane/stop`: stop every container of an app. */
export const PlaneStopRequestSchema = z.lazy(() => z.strictObject({ app: z.string().regex(NAME_PATTERN, "must be an app name") }));
export type PlaneStopRequest = z.infer<typeof PlaneStopRequestSchema>;

/** What `POST /v1/apps/:app/rollover` and a plane's `POST /v1/plane/rollover` answer: how many containers roll over. */
export interface RolloverAnswer {
  app: string;
  /** Containers that take no new input now, and stop once their inputs end; new ones replace them. */
  rolledOver: number;
}

/** What `POST /v1/apps/:app/stop` and a plane's `POST /v1/plane/stop` answer: how many containers stopped. */
export interface StopAnswer {
  app: string;
  stopped: number;
}

/**
 * `POST /v1/plane/cancel`: stop calls' inputs, or with `terminateContainer` their whole containers. A map's cancel
 * names all its inputs on that plane in one request, so the plane can drop those still queued before it stops those
 * running: a container freed by a stop would otherwise take a queued input whose own cancel had not come yet.
 */
export const PlaneCancelRequestSchema = z.lazy(() =>
  z.strictObject({
    callIds: z
      .array(z.string().regex(CALL_ID_PATTERN, "must be a call id"))
      .min(1, "names no call")
      .max(API_LIMITS.maxMapInputs, `at most ${API_LIMITS.maxMapInputs} calls per request`),
    terminateContainer: z.boolean("must be true or false").optional(),
  }),
);
export type PlaneCancelRequest = z.infer<typeof PlaneCancelRequestSchema>;

/** What a plane answers to a cancel: the calls it named that ran or waited here. */
export interface PlaneCancelAnswer {
  cancelled: string[];
}

/** Where an input's time went on the plane, in ms: what the dashboard shows of a plane call's last attempt. */
export interface PlaneRunTimings {
  /** From the input's arrival until a container took it, less the cold start. */
  queueMs: number;
  /** The start of the container it ran on, when it started one (a cold start). */
  coldStartMs?: number;
  /** From the input's hand-over to its container until its output (absent when it never reached one). */
  runMs?: number;
}

/** What a plane answers to a run request. */
export interface PlaneRunResponse {
  status: "succeeded" | "failed" | "timed_out";
  result?: unknown;
  meta?: unknown;
  error?: WireError;
  containerId?: string;
  coldStart?: boolean;
  /** The GPU type the call ran on, when it had one. */
  gpu?: string;
  /** Where its time went on the plane. */
  timings?: PlaneRunTimings;
  /**
   * Set when the plane had this attempt (call id and attempt) already, so this request did not run it again:
   * `attached`, it was running and this answer waited for it; `replayed`, it had ended and this is its kept
   * outcome; `lost`, it ran here and its outcome is gone (the plane restarted, or no longer keeps it), so the
   * gateway starts the next attempt. See `DELIVERY_DEFAULTS`.
   */
  again?: "attached" | "replayed" | "lost";
  /**
   * Set on an attempt the plane ended as it stopped together with its gateway (`tandem serve` stopping): cut by that
   * stop, not failed. A gateway leaves a call its ledger can take over to the ledger, which runs it again when the
   * gateway runs again, as a runner lost in a restart; any other call ends with `error`, which says why.
   */
  stoppedWithGateway?: true;
}

// ---------------------------------------------------------------------------
// The control channel between a plane and the runner in each of its containers:
// newline-delimited JSON frames over a unix socket in a mounted folder.

/** The environment a plane gives each container's runner (besides the function's own `env`). */
export const CONTAINER_ENV = {
  app: "TANDEM_APP",
  function: "TANDEM_FUNCTION",
  containerId: "TANDEM_CONTAINER_ID",
  /** A class's parameters (JSON): the runner builds its instance and runs `enter()` before it says it is ready. */
  clsParams: "TANDEM_CLS_PARAMS",
  /** Where the control socket is, when not at its place in a container (the unsandboxed process runtime). */
  controlSocket: "TANDEM_CONTROL_SOCKET",
  /** The names (never the values) of the variables that came from secrets: the runner masks their values in logs and errors. */
  secretKeys: "TANDEM_SECRET_KEYS",
  /** The container's volume mounts (JSON `ContainerMount[]`): `vol.commit()` and `vol.reload()` act on them through the plane. */
  volumes: "TANDEM_VOLUMES",
  /** Where the plane answers the container's `/v1` requests (a unix socket), when not at its place in a container. */
  apiSocket: "TANDEM_API_SOCKET",
  /** The region of the plane the container runs on (`tandem plane --region`). */
  region: "TANDEM_REGION",
} as const;

/**
 * Why a name the plane sets in each container itself (`CONTAINER_ENV`) is refused as a secret's key or an `env` name:
 * the plane's value would stand in its place there, or its value in the plane's. Undefined for any other name.
 * @example reservedEnvName("TANDEM_APP"); // '"TANDEM_APP" is a name the plane sets itself …'
 */
export function reservedEnvName(name: string): string | undefined {
  const names: readonly string[] = Object.values(CONTAINER_ENV);
  if (!names.includes(name)) return undefined;
  return `"${name}" is a name the plane sets itself in each container (${names.join(", ")}): choose another`;
}

/** A volume mount as the runner is told of it (`CONTAINER_ENV.volumes`). */
export interface ContainerMount {
  /** Where it is in the container: `/models`. */
  path: string;
  volume: string;
  readOnly: boolean;
  /** The directory of the volume mounted (`""`: its root). */
  subPath: string;
  /** The volume's version the mount shows. */
  version: number;
}

/**
 * The route families a container's `/v1` requests may reach, carried by its plane to the gateway (a path equal to
 * one, or under it; docs/security.md); `{app}` is the container's own app. Both the plane and the gateway hold to
 * it. One line each.
 */
export const CONTAINER_ROUTE_FAMILIES: readonly string[] = [
  "/v1/volumes", // docs/volumes.md
  "/v1/dicts", // docs/dict-queue.md
  "/v1/queues", // docs/dict-queue.md
  "/v1/apps/{app}/functions", // its own app's functions: .remote(), .spawn(), .map(), .remoteGen() (docs/plane.md)
  "/v1/calls", // the calls it made: get(), cancel(), logs(); a call of another app is 404 (the gateway's guard)
];

/** The families a container of `app` may reach, as paths. */
export function containerRouteFamilies(app: string): string[] {
  return CONTAINER_ROUTE_FAMILIES.map((family) => family.replace("{app}", app));
}

/** True when `path` is in a family a container of `app` may reach. */
export function containerMayReach(path: string, app: string): boolean {
  return containerRouteFamilies(app).some((family) => path === family || path.startsWith(`${family}/`));
}

/**
 * The plane's own routes on a container's API socket, beside the `/v1` routes it forwards to the gateway
 * (docs/volumes.md): publish a mount's changes, or bring in others' commits; each answers `{ volume, version }`.
 */
export const CONTAINER_ROUTES = {
  commit: (volume: string) => `/v1/container/volumes/${encodeURIComponent(volume)}/commit`,
  reload: (volume: string) => `/v1/container/volumes/${encodeURIComponent(volume)}/reload`,
} as const;

/**
 * Labels a plane puts on its containers, to find them again (`cleanup` after a crash) and to show them. The resources
 * price a container its next run finds left behind with no row in its usage ledger (a plane killed as it started it).
 */
export const CONTAINER_LABELS = {
  plane: "tandem.plane",
  app: "tandem.app",
  /** Its function as the usage ledger names it (a class's by its class). */
  function: "tandem.function",
  /** The plane's id for the container (`ctr-…`). */
  container: "tandem.container",
  /** Its GPUs as a spec writes them (`A100`, `A100:2`); none on a container without. */
  gpu: "tandem.gpu",
  /** Its CPU cores. */
  cpu: "tandem.cpu",
  /** Its memory limit in MiB. */
  memoryMiB: "tandem.memory-mib",
} as const;

const encodedValueShape = z.strictObject({ json: z.unknown(), meta: z.unknown().optional() });

const remoteErrorShape = z.strictObject({ name: z.string(), message: z.string(), stack: z.string().optional() });

/**
 * Frames a runner sends, told apart by `t` (and an output by `status`): parsing one looks at the one shape its tag
 * names, where a plain union tried each in turn and built the errors of those that did not fit (10-18 µs a frame
 * against under 1 µs, measured in Node).
 */
export const RunnerFrameSchema = z.lazy(() =>
  z.discriminatedUnion("t", [
    z.strictObject({
      t: z.literal("ready"),
      pid: z.number().int(),
      functions: z.array(z.string()),
      /**
       * Whether stopping this container runs code of the app's (a class's `exit()` hooks): only then does a stop that
       * may be quick (the end of `tandem run`) give it time to. Absent (an older runner): taken as true.
       */
      exitHooks: z.boolean().optional(),
      /**
       * How the runtime of a bundle that joins it was loaded (gpu-plane/runtime-code.ts): from V8's code cache
       * (`cached`) or parsed (`compiled`). Absent: a bundle that carries its runtime, or an older runner.
       */
      runtimeCode: z.enum(["cached", "compiled"]).optional(),
      /** A class's `enter()` threw while the container started: its error. */
      enterFailed: z
        .strictObject({
          code: z.string(),
          message: z.string(),
          remote: remoteErrorShape.optional(),
        })
        .optional(),
    }),
    /** A value a generator yielded; the runner waits for `next` before it pulls another. */
    z.strictObject({ t: z.literal("chunk"), callId: z.string().regex(CALL_ID_PATTERN), value: encodedValueShape }),
    /**
     * Lines the function wrote to `process.stdout` / `process.stderr` (console.* included), each with the call that
     * wrote it (null: outside any call), in the order written; sent before the output of their call, and at most
     * `LOG_LIMITS.runnerFlushMs` after they were written otherwise. `dropped`: lines the runner left out since its last
     * frame, past `LOG_LIMITS.runnerMaxLinesPerSecond`. Output that does not pass through those streams (a child
     * process, native code, fd 1 itself) still comes through the container's stdout and stderr.
     */
    z.strictObject({
      t: z.literal("log"),
      lines: z.array(z.strictObject({ callId: z.string().regex(CALL_ID_PATTERN).nullable(), source: z.enum(["stdout", "stderr"]), text: z.string() })),
      dropped: z.number().int().positive().optional(),
    }),
    /**
     * The app's code threw outside any call's handler (a timer, a loop a class's `enter()` started: `exception`) or
     * rejected a promise nobody handled (`rejection`): what it threw, its message and stack each cut at
     * `LOG_LIMITS.maxLineChars`, sent just before the runner exits with 1. The stack names the bundle: the plane maps it.
     */
    z.strictObject({ t: z.literal("uncaught"), origin: z.enum(["exception", "rejection"]), error: remoteErrorShape }),
    z.discriminatedUnion("status", [
      z.strictObject({ t: z.literal("output"), callId: z.string().regex(CALL_ID_PATTERN), status: z.literal("succeeded"), result: encodedValueShape }),
      z.strictObject({
        t: z.literal("output"),
        callId: z.string().regex(CALL_ID_PATTERN),
        status: z.literal("failed"),
        error: z.strictObject({
          code: z.string(),
          message: z.string(),
          remote: remoteErrorShape.optional(),
          details: z.record(z.string(), z.unknown()).optional(),
        }),
      }),
    ]),
  ]),
);
export type RunnerFrame = z.infer<typeof RunnerFrameSchema>;
export type LogFrame = Extract<RunnerFrame, { t: "log" }>;
export type UncaughtFrame = Extract<RunnerFrame, { t: "uncaught" }>;

/** The frames a plane sends: an input to run (`stream` for a generator), and, while one streams, `next` or `cancel`. */
export type PlaneFrame =
  | { t: "input"; callId: string; function: string; attempt: number; args: EncodedValue; stream?: boolean; clsParams?: Record<string, unknown> }
  | { t: "next"; callId: string }
  | { t: "cancel"; callId: string }
  | ShutdownFrame
  | SnapshotFrame;
export type InputFrame = Extract<PlaneFrame, { t: "input" }>;

// ---------------------------------------------------------------------------
// Value codec

/** Node's `Buffer` where the runtime has one (Node, workerd with `nodejs_compat`); a browser has none. */
const NodeBuffer = (globalThis as { Buffer?: { isBuffer(v: unknown): boolean; from(b: ArrayBuffer, offset: number, length: number): Uint8Array } }).Buffer;

const codec = new SuperJSON();
// Checked in this order, before superjson's own rules, on each part of a value that is not plain JSON (a value that
// is goes as it is, without the codec). A Buffer is tagged apart from other bytes so that it arrives as a Buffer
// where the receiver has one, not as a Uint8Array whose `toString()` is its numbers.
codec.registerCustom<Uint8Array, string>(
  {
    isApplicable: (v): v is Uint8Array => v instanceof Uint8Array && NodeBuffer !== undefined && NodeBuffer.isBuffer(v),
    serialize: (v) => bytesToBase64(v),
    deserialize: (v) => {
      const bytes = base64ToBytes(v);
      return NodeBuffer ? NodeBuffer.from(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength) : bytes;
    },
  },
  "buffer",
);
codec.registerCustom<Uint8Array, string>(
  {
    isApplicable: (v): v is Uint8Array => v instanceof Uint8Array,
    serialize: (v) => bytesToBase64(v),
    deserialize: (v) => base64ToBytes(v),
  },
  "bytes",
);
// superjson's Date rule takes only a valid Date; an invalid one (`new Date(NaN)`) would be written null, with no type,
// and arrive as null.
codec.registerCustom<Date, null>(
  {
    isApplicable: (v): v is Date => v instanceof Date && Number.isNaN(v.getTime()),
    serialize: () => null,
    deserialize: () => new Date(Number.NaN),
  },
  "invalid-date",
);

/** A value as it travels: plain JSON, plus superjson's `meta` when JSON alone cannot say it. */
export interface EncodedValue {
  json: unknown;
  meta?: unknown;
}

/**
 * Encodes any supported value for the wire. A value that is plain JSON already travels as it is; any other is handed
 * to `beforeCodec` first (a call's arguments: `checkSendable`), so that plain values are walked once.
 */
export function encodeValue(value: unknown, beforeCodec?: (value: unknown) => void): EncodedValue {
  if (isPlainJson(value, 0, undefined)) return { json: value };
  beforeCodec?.(value);
  const serialized = codec.serialize(withoutHoles(value));
  const json = ownFields(serialized.json);
  return serialized.meta === undefined ? { json } : { json, meta: serialized.meta };
}

/**
 * `json` with each object the codec left as it found it (an instance of a class of the caller's: superjson walks only
 * plain objects) as JSON writes it, its own fields: what the value arrives as (docs/api.md), and what a Durable
 * Object's storage can keep, which refuses such an instance ("Could not serialize object of type"). Containers are
 * copied only where something in them changed.
 */
function ownFields(json: unknown): unknown {
  if (typeof json !== "object" || json === null) return json;
  if (Array.isArray(json)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < json.length; i++) {
      const field = ownFields(json[i]);
      if (field !== json[i]) (copy ??= json.slice())[i] = field;
    }
    return copy ?? json;
  }
  const proto = Object.getPrototypeOf(json) as unknown;
  if (proto !== Object.prototype && proto !== null) return JSON.parse(JSON.stringify(json)) as unknown;
  let copy: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(json)) {
    const field = ownFields(value);
    if (field !== value) (copy ??= { ...json })[key] = field;
  }
  return copy ?? json;
}

/** The containers superjson walks into, whose holes it would lose: arrays, plain objects, `Map`s and `Set`s. */
function isWalked(value: unknown): value is object {
  if (typeof value !== "object" || value === null) return false;
  if (Array.isArray(value) || value instanceof Map || value instanceof Set) return true;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** The values a walked container holds (a `Map`'s keys too), holes left out. */
function childrenOf(value: object): Iterable<unknown> {
  if (value instanceof Map) return [...value].flat();
  if (value instanceof Set) return value;
  return Object.values(value);
}

/** Whether an array has no hole. */
function isDense(array: unknown[]): boolean {
  for (let i = 0; i < array.length; i++) if (!(i in array)) return false;
  return true;
}

/**
 * Whether an array inside `value` (or `value` itself) has a hole: looked for first, as few values have one, and
 * without allocating for each container, as this walk comes before the codec's on every value that is not plain JSON.
 */
function hasHole(value: unknown): boolean {
  if (!isWalked(value)) return false;
  const seen = new Set<object>([value]);
  const stack = [value];
  const visit = (child: unknown) => {
    if (isWalked(child) && !seen.has(child)) {
      seen.add(child);
      stack.push(child);
    }
  };
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        if (!(i in node)) return true;
        visit(node[i]);
      }
    } else if (node instanceof Map)
      for (const [k, v] of node) {
        visit(k);
        visit(v);
      }
    else if (node instanceof Set) for (const v of node) visit(v);
    else for (const key in node) if (Object.hasOwn(node, key)) visit((node as Record<string, unknown>)[key]);
  }
  return false;
}

/**
 * `value` with each hole of its arrays (`[1, , 3]`, `new Array(2)`) made `undefined`, which travels as such: superjson
 * writes a hole as `null` with no type, and leaves trailing ones out (`new Array(3)` would arrive as `[]`). `value`
 * itself when it has none, as most have; otherwise the containers on the way to a hole are copied (each once, so an
 * object met twice, or a cycle, stays one), and the caller's value is left as it was.
 */
function withoutHoles(value: unknown): unknown {
  if (!hasHole(value)) return value;
  // Who holds whom, for the copies: walked iteratively, as a value may nest deeper than the stack goes.
  const holders = new Map<object, object[]>([[value as object, []]]);
  const holey: object[] = [];
  const stack = [value as object];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (Array.isArray(node) && !isDense(node)) holey.push(node);
    for (const child of childrenOf(node)) {
      if (!isWalked(child)) continue;
      const held = holders.get(child);
      if (held) held.push(node);
      else {
        holders.set(child, [node]);
        stack.push(child);
      }
    }
  }
  // Each container that holds one with a hole, however far down, is copied: first empty, so a cycle finds its copy.
  const copies = new Map<object, object>();
  const toCopy = [...holey];
  while (toCopy.length > 0) {
    const node = toCopy.pop()!;
    if (copies.has(node)) continue;
    copies.set(
      node,
      Array.isArray(node)
        ? []
        : node instanceof Map
          ? new Map()
          : node instanceof Set
            ? new Set()
            : Object.create(Object.getPrototypeOf(node) as object | null),
    );
    toCopy.push(...holders.get(node)!);
  }
  const copyOf = (v: unknown) => (typeof v === "object" && v !== null ? (copies.get(v) ?? v) : v);
  for (const [node, copy] of copies) {
    if (Array.isArray(node)) for (let i = 0; i < node.length; i++) (copy as unknown[]).push(copyOf(node[i]));
    else if (node instanceof Map) for (const [k, v] of node) (copy as Map<unknown, unknown>).set(copyOf(k), copyOf(v));
    else if (node instanceof Set) for (const v of node) (copy as Set<unknown>).add(copyOf(v));
    // Defined, not assigned: an own "__proto__" stays a key, which the codec refuses as it would have.
    else for (const [k, v] of Object.entries(node)) Object.defineProperty(copy, k, { value: copyOf(v), enumerable: true, writable: true, configurable: true });
  }
  return copyOf(value);
}

/** Whether `err` is the codec (or JSON) running out of stack: a value nested thousands of levels deep. */
export function isStackOverflow(err: unknown): boolean {
  return err instanceof RangeError && /call stack/i.test(err.message);
}

/** How deep `isPlainJson` looks before it leaves a value to the codec (which has its own rules for deep values). */
const PLAIN_JSON_DEPTH = 64;

/**
 * Whether the codec would write `value` as it is, with no `meta`: strings, finite numbers other than -0, booleans,
 * null, and arrays (without holes) and plain objects of them, no object twice. Checking is several times cheaper
 * than the codec's walk, and most arguments, results and dict values are such values.
 */
function isPlainJson(value: unknown, depth: number, seen: Set<object> | undefined): boolean {
  switch (typeof value) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(value) && !Object.is(value, -0);
    case "object": {
      if (value === null) return true;
      if (depth >= PLAIN_JSON_DEPTH) return false;
      if (seen?.has(value)) return false;
      (seen ??= new Set()).add(value);
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) if (!(i in value) || !isPlainJson(value[i], depth + 1, seen)) return false;
        return true;
      }
      if (Object.getPrototypeOf(value) !== Object.prototype) return false;
      for (const key in value) {
        if (!Object.hasOwn(value, key) || key === "__proto__" || !isPlainJson((value as Record<string, unknown>)[key], depth + 1, seen)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/** Decodes a value from the wire. Throws on a `meta` that does not fit `json`. */
export function decodeValue(json: unknown, meta?: unknown): unknown {
  if (meta === undefined || meta === null) return json;
  const values = typeof meta === "object" ? (meta as { values?: unknown }).values : undefined;
  if (values !== undefined && !isAnnotationTree(values, 0)) throw new TypeError("meta.values is not a tree of type annotations");
  return codec.deserialize({ json: json as never, meta: meta as never });
}

/**
 * superjson's `meta.values`: `[annotation]`, `[annotation, {key: tree}]` or `{key: tree}`, an annotation a type's name
 * or `[kind, name]` (`["custom", "bytes"]`). Checked before superjson walks it: it takes any other value for children
 * to walk, and a string for one whose every character is its own child, without end ("Maximum call stack size").
 */
function isAnnotationTree(tree: unknown, depth: number): boolean {
  if (depth > 1000 || tree === null || typeof tree !== "object") return false;
  const isChildren = (c: unknown) => c !== null && typeof c === "object" && !Array.isArray(c) && Object.values(c).every((t) => isAnnotationTree(t, depth + 1));
  if (!Array.isArray(tree)) return isChildren(tree);
  const [annotation, children] = tree as unknown[];
  const named = typeof annotation === "string" || (Array.isArray(annotation) && annotation.length === 2 && annotation.every((a) => typeof a === "string"));
  return named && (tree.length === 1 || (tree.length === 2 && isChildren(children)));
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

// ---------------------------------------------------------------------------
// Logs (docs/observability.md)

/** Where a log line came from: what a function wrote to stdout or stderr, or Tandem itself (cold starts, retries, timeouts, OOM kills). */
export const LOG_SOURCES = ["stdout", "stderr", "system"] as const;
export type LogSource = (typeof LOG_SOURCES)[number];

/**
 * One log line, as stored at the edge and as `GET /v1/apps/:app/logs` answers it (one per NDJSON line). At the
 * edge, `console.log`, `info` and `debug` are stdout, `warn` and `error` stderr.
 */
export const LogLineSchema = z.lazy(() =>
  z.strictObject({
    /** When it was printed, in ms since the epoch (the clock of the tier that printed it). */
    time: z.number().int().nonnegative(),
    app: z.string().regex(NAME_PATTERN, "must be an app name"),
    /** The function, class method or web label that printed it; null for an app's own lines. */
    function: z.string().max(200).nullable(),
    callId: z.string().regex(CALL_ID_PATTERN, "must be a call id").nullable(),
    /** The plane container that printed it; null at the edge. */
    containerId: z.string().max(128).nullable(),
    tier: z.enum(["edge", "plane"]),
    region: z.string().min(1).max(64),
    source: z.enum(LOG_SOURCES),
    /** The line, secret values masked as `***`, cut at `LOG_LIMITS.maxLineChars`. */
    text: z.string(),
    /**
     * An agent's line: its session's fingerprint (the first 12 hex digits of the SHA-256 of its id, as the dashboard's
     * agents page lists it; the id itself would let whoever reads the log resume the session). Absent on other lines.
     */
    session: z.string().regex(SESSION_FINGERPRINT_PATTERN, "must be a session's fingerprint").optional(),
  }),
);
export type LogLine = z.infer<typeof LogLineSchema>;

/** An agent session's fingerprint, as its log lines and the dashboard name it: 12 lowercase hex digits. */
export const SESSION_FINGERPRINT_PATTERN = /^[0-9a-f]{12}$/;

/**
 * The last line of a log follow that the gateway ends (the token that opened it was revoked), in place of a `LogLine`;
 * the client raises it as the error it holds.
 */
export type LogStreamEnd = { error: WireError };

/**
 * A line no longer than `LOG_LIMITS.maxLineChars`, its note included, saying so when it was cut; both tiers cut
 * where they capture. A cut line fits, so a plane line cut by its runner passes the plane's and the gateway's cuts
 * unchanged, still naming the length that was printed. `length`: the line's, when only its start is at hand.
 * @example cutLogLine("x".repeat(20_000)); // 16 KiB: the first 16,359 characters, then "… (cut: 20000 characters)"
 */
export function cutLogLine(text: string, length = text.length): string {
  if (length <= LOG_LIMITS.maxLineChars && text.length <= LOG_LIMITS.maxLineChars) return text;
  const note = `… (cut: ${length} characters)`;
  let end = LOG_LIMITS.maxLineChars - note.length;
  // Not between the two halves of a surrogate pair: a lone half is no character.
  if (/[\uD800-\uDBFF]/.test(text.charAt(end - 1))) end--;
  return text.slice(0, end) + note;
}

/** `POST /v1/planes/logs`: lines from a plane's containers and the plane itself, oldest first. */
export const PlaneLogBatchSchema = z.lazy(() =>
  z.strictObject({
    planeId: z.string().regex(PLANE_ID_PATTERN),
    lines: z.array(LogLineSchema).max(10_000),
  }),
);
export type PlaneLogBatch = z.infer<typeof PlaneLogBatchSchema>;

const DURATION_MS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 } as const;

/** What a duration may be, in the words its errors use. */
export const DURATION_FORMS = "a duration: a number and its unit, s, m, h or d (90s, 30m, 12h, 30d)";

/**
 * A duration in ms: a number and its unit (`"90s"`, `"30m"`, `"12h"`, `"30d"`); undefined when it is not one.
 * `since` reads a time back from now with it, a token's `expiresIn` its life.
 * @example durationMs("2h"); // 7_200_000
 */
export function durationMs(value: string): number | undefined {
  const duration = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)$/.exec(value.trim());
  return duration ? Number(duration[1]) * DURATION_MS[duration[2] as keyof typeof DURATION_MS] : undefined;
}

/**
 * A `since` as a time in ms since the epoch: a duration back from `now` (`"90s"`, `"30m"`, `"2h"`, `"7d"`), ms
 * since the epoch, or a date `Date.parse` reads. Undefined when it is none of them.
 * @example sinceTime("2h", Date.now()); // two hours ago
 */
export function sinceTime(value: string, now: number): number | undefined {
  const text = value.trim();
  const duration = durationMs(text);
  if (duration !== undefined) return now - duration;
  if (/^\d+$/.test(text)) return Number(text);
  return sinceDate(text);
}

/**
 * A `since` written as a date, as ms since the epoch; undefined for a duration, ms, or no date. A date and time
 * without a zone is read in the zone of the process that reads it (UTC in the gateway), so a client reads it first.
 * @example sinceDate("2026-12-05 09:00"); // 09:00 in this machine's zone
 */
export function sinceDate(value: string): number | undefined {
  const text = value.trim();
  if (/^[+-]?\d+(?:\.\d+)?\s*[smhd]?$/.test(text)) return undefined; // Date.parse reads "-5" as May 2001
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : date;
}

/** How far ahead of the gateway's clock a `since` may be: a client's clock that runs ahead, a follow from a moment to come. */
const SINCE_AHEAD_MS = 86_400_000;
/** The span a `since` may name, in the words its errors use. */
export const SINCE_SPAN = "a time from 1970-01-01T00:00:00Z to a day from now";

/**
 * Whether `time` (a `sinceTime`) is in `SINCE_SPAN`: a value past it (`99999999999d`, twenty digits) is a typo, which
 * would read every line or none, silently; one that overflows a date is not a time at all.
 * @example sinceInSpan(sinceTime("99999999999d", Date.now())!, Date.now()); // false
 */
export function sinceInSpan(time: number, now: number): boolean {
  return Number.isFinite(time) && time >= 0 && time <= now + SINCE_AHEAD_MS;
}

/** What a `since` may be, in the words its errors use. */
export const SINCE_FORMS = "a duration back from now (90s, 30m, 2h, 7d), ms since the epoch, or a date";

/**
 * A query's `since` field, as ms since the epoch (`sinceTime`), refused with the text it came as when it is no time or
 * out of `SINCE_SPAN`. The log and usage queries both read it, so both take the same forms with the same errors.
 */
function sinceQueryField() {
  return z.string().transform((value, ctx) => {
    const now = Date.now();
    const time = sinceTime(value, now);
    if (time === undefined || !sinceInSpan(time, now)) {
      ctx.addIssue({ code: "custom", message: time === undefined ? `must be ${SINCE_FORMS}` : `must be ${SINCE_SPAN}`, input: value });
      return z.NEVER;
    }
    return time;
  });
}
const limitMessage = `must be a whole number from 1 to ${LOG_LIMITS.maxLimit}`;

/**
 * The query of `GET /v1/apps/:app/logs` (and `/v1/calls/:id/logs`), each filter optional:
 * `?function=&call=&container=&source=&since=&search=&limit=&follow=1`. `since` must be in `SINCE_SPAN`; `follow`
 * is `1` or `true` (follow), `0` or `false`.
 */
export const LogQuerySchema = z.lazy(() =>
  z.strictObject({
    /** A function, class method (`Cls.method`) or web label; a class's name selects all its methods' lines and its containers'. */
    function: z.string().min(1, "must be a function name").max(200, "must be a function name").optional(),
    call: z.string().regex(CALL_ID_PATTERN, `must be a call id (${CALL_ID_FORM})`).optional(),
    container: z.string().min(1, "must be a container id").max(128, "must be a container id").optional(),
    /** An agent session's lines, by its fingerprint (`LogLine.session`). */
    session: z
      .string()
      .regex(SESSION_FINGERPRINT_PATTERN, "must be an agent session's fingerprint (12 hex digits, as the dashboard's agents page lists it)")
      .optional(),
    source: z.enum(LOG_SOURCES, `must be one of ${LOG_SOURCES.join(", ")}`).optional(),
    since: sinceQueryField().optional(),
    /** Lines that contain this text, in any case. */
    search: z
      .string()
      .min(1, `must be 1 to ${LOG_LIMITS.maxSearchChars} characters`)
      .max(LOG_LIMITS.maxSearchChars, `must be at most ${LOG_LIMITS.maxSearchChars} characters`)
      .optional(),
    /**
     * The last this many lines (of those that match); then, with `follow`, every new one. Digits only, checked as
     * sent: a number coerced from the text would echo `abc` as null and `""` as 0, and let `1e3` and `0x10` through.
     */
    limit: z
      .string()
      .regex(/^\d{1,5}$/, limitMessage)
      .transform(Number)
      .pipe(z.number().min(1, limitMessage).max(LOG_LIMITS.maxLimit, limitMessage))
      .optional(),
    follow: z
      .enum(["1", "true", "0", "false"], "must be 1 or true, 0 or false")
      .transform((value) => value === "1" || value === "true")
      .optional(),
  }),
);
/**
 * The names a log query's `function` may give for an app, and how a note about a name it lacks lists them: its
 * functions (a class's methods as `Class.method`), its classes (a class's name selects the lines of all its methods
 * and its containers' own, such as `enter()`'s) and its web labels.
 * @example
 * logFunctionNames(["square", "LLM.infer"], ["api"]).listed; // "functions: square, LLM.infer; classes: LLM; web labels: api"
 */
export function logFunctionNames(functions: readonly string[], labels: readonly string[]): { known: Set<string>; listed: string } {
  const classes = [...new Set(functions.filter((f) => f.includes(".")).map(containerGroup))];
  const listed = [`functions: ${functions.join(", ") || "none"}`];
  if (classes.length) listed.push(`classes: ${classes.join(", ")}`);
  if (labels.length) listed.push(`web labels: ${[...new Set(labels)].join(", ")}`);
  return { known: new Set([...functions, ...classes, ...labels]), listed: listed.join("; ") };
}

/**
 * Whether a line of function `lineFunction` is one a log query's `function` selects: that function's, method's or
 * web label's, or, for a class's name, one of its methods' (`LLM.infer`) or its containers' own (`LLM`).
 * @example
 * logLineOfFunction("LLM.infer", "LLM"); // true
 */
export function logLineOfFunction(lineFunction: string | null, selected: string): boolean {
  return lineFunction === selected || (lineFunction !== null && lineFunction.startsWith(`${selected}.`));
}

/** A log query as the client builds it. */
export interface LogQueryOptions {
  function?: string;
  call?: string;
  container?: string;
  /** An agent session's lines, by its fingerprint. */
  session?: string;
  source?: LogSource;
  /** A duration back from the gateway's now (`"2h"`), ms since the epoch, or a date (one without a zone: local time here). */
  since?: string | number;
  search?: string;
  limit?: number;
  follow?: boolean;
}

/** The query string of a log query, or nothing; a `since` written as a date goes as the time it names here. */
export function logQueryString(query: LogQueryOptions): string {
  const q = new URLSearchParams();
  for (const key of ["function", "call", "container", "session", "source", "since", "search", "limit"] as const) {
    if (query[key] !== undefined) q.set(key, String(query[key]));
  }
  // A date without a zone is the sender's local time; the gateway, which runs in UTC, would read it otherwise.
  const date = typeof query.since === "string" ? sinceDate(query.since) : undefined;
  if (date !== undefined) q.set("since", String(date));
  if (query.follow) q.set("follow", "1");
  return q.size ? `?${q}` : "";
}

/**
 * The dashboard the gateway serves (docs/observability.md, "Dashboard"): its
 * pages under `base`, the login page that takes a login code (`?code=`) or a
 * pasted token, and the HttpOnly cookie that holds a browser's session.
 */
export const DASHBOARD = {
  base: "/_tandem",
  login: "/_tandem/login",
  cookie: "tandem_session",
} as const;

/** `POST /v1/dashboard/login-code`: a URL that logs a browser in once, within `expiresAt` (ms since the epoch). */
export interface DashboardLoginAnswer {
  url: string;
  expiresAt: number;
}

/** A login code: `lc-` and 32 hex digits, single-use. */
export const LOGIN_CODE_PATTERN = /^lc-[0-9a-f]{32}$/;

/** One call as the dashboard lists it, and as its live stream sends it (`event: call`). */
export interface DashboardCallRow {
  callId: string;
  app: string;
  function: string;
  kind: CallKind;
  status: CallStatus;
  attempts: number;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** The error's code and message, for a call that ended with one. */
  error: { code: string; message: string } | null;
  /** Where a plane call's last attempt spent its time on its plane (its wait for a container, cold start, run), once it ended. */
  plane: PlaneRunTimings | null;
}

/** Calls of one function (or every function of an app) in one time bucket: what the dashboard's charts draw. */
export interface DashboardSeriesPoint {
  function: string;
  /** The bucket's start, ms since the epoch. */
  t: number;
  calls: number;
  errors: number;
  retries: number;
  /** Of the calls that ended: how many, their time from start to end summed and the longest (ms). */
  ended: number;
  runMsSum: number;
  runMsMax: number;
  /**
   * Of the calls that ended, their time running summed (ms): a plane call's from its hand-over to its container to its
   * output (its last attempt's, without its wait for a container or its cold start), an edge call's from start to end.
   * What the usage charts price.
   */
  workMsSum: number;
}

/**
 * How many of one function's ended calls in one time bucket took `ms` from start to end, that time kept to four
 * significant figures (exact under 10 s, as the dashboard writes a time): what its percentiles are read from, merged
 * over the ledger's shards.
 */
export interface DashboardDurationCount {
  /** The bucket's start, ms since the epoch. */
  t: number;
  ms: number;
  calls: number;
}
