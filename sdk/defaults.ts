/**
 * Every default and limit of Tandem, in one table: what a function gets when
 * its options do not say, what a gateway, a plane and an agent allow. Options,
 * configuration schemas, the tiers and the docs read them from here, so a
 * default changes in one place. Settings a deployment may change (`TANDEM_*`)
 * say so; they are parsed once, at each tier's entry (`gateway/config.ts`,
 * `gpu-plane/plane.ts`, `sdk/cli/main.ts`).
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const DAY_SECONDS = 86_400;

/** A function's options, when they do not say. */
export const FUNCTION_DEFAULTS = {
  /** Seconds one attempt may run. */
  timeoutSeconds: 300,
  /** The retry policy: none, and when `retries` is a number, this backoff. */
  retries: { maxRetries: 0, backoffCoefficient: 2, initialDelayMs: 1000, maxDelayMs: 60_000 },
  /** Plane containers: kept warm, most at once, idle spares while busy, inputs per container. */
  autoscaler: { minContainers: 0, maxContainers: 100, bufferContainers: 0, maxInputs: 1, targetInputs: 1 },
  /** A plane container's resources. */
  cpu: 1,
  memoryMiB: 512,
  /** Seconds a plane container sits idle before it is stopped; a plane may be started with another (`--scaledown-window`). */
  scaledownWindowSeconds: 60,
} as const;

/** What a function's options may ask for at most (and at least). */
export const FUNCTION_LIMITS = {
  maxTimeoutSeconds: DAY_SECONDS,
  maxRetries: 10,
  maxRetryDelayMs: 60_000,
  maxBackoffCoefficient: 10,
  maxCpu: 64,
  /** The least memory a container can start with. */
  minMemoryMiB: 6,
  maxMemoryMiB: 336 * 1024,
  /** `minContainers`, `maxContainers`, `bufferContainers` and `concurrency.maxInputs`. */
  maxContainers: 1000,
  maxInputsPerContainer: 1000,
} as const;

/**
 * A call stopped before its function returned: cancelled, or past its timeout (docs/api.md, "A call's signal"). Its
 * `currentCall().signal` aborts, and its caller is answered at once.
 */
export const STOP_DEFAULTS = {
  /**
   * How long the edge keeps working on a stopped call's function, so the code it runs once its signal aborts (a
   * `finally`, a last log line, a dict write) runs: as long as the plane gives a stopping container's `exit()` hooks.
   * Past it nothing waits for the function, and workerd stops the request's work once nothing else does.
   */
  edgeGraceMs: 10_000,
  /** How often an edge function that has read its signal looks for a cancel that reached its isolate. */
  edgeCancelCheckMs: 200,
} as const;

/** A WebAssembly function's limits per call, by default and at most. Its wall-time limit is its timeout. */
export const WASM_DEFAULTS = {
  maxMemoryPages: 4096,
  maxMemoryPagesLimit: 65_536,
  maxOutputBytes: 10 * MiB,
  maxOutputBytesLimit: 1024 * MiB,
  /**
   * The directories one function bundles (`files`), all together: bytes and files (directories count as files).
   * They travel inside the Worker, which Cloudflare limits to 10 MiB compressed, beside the gateway and the app.
   */
  maxFilesBytes: 8 * MiB,
  maxFiles: 1000,
} as const;

/** A WebSocket agent's limits (`app.websocket` options), by default and at most. */
export const AGENT_DEFAULTS = {
  maxMessageBytes: 1 * MiB,
  maxMessageBytesLimit: 1 * MiB,
  maxMessagesPerSecond: 20,
  maxMessagesPerSecondLimit: 10_000,
  sessionTtlSeconds: 7 * DAY_SECONDS,
  sessionTtlSecondsLimit: 365 * DAY_SECONDS,
  shards: 1,
  shardsLimit: 64,
} as const;

/** The gateway's settings (`TANDEM_*` Worker variables), when they are not set. */
export const GATEWAY_DEFAULTS = {
  /** `TANDEM_MAX_BODY_BYTES`: the largest request body the gateway reads. */
  maxBodyBytes: 10 * MiB,
  /** `TANDEM_RESULT_TTL_SECONDS`: how long an ended call's record and result are kept. */
  resultTtlSeconds: 7 * DAY_SECONDS,
  /** `TANDEM_CALL_LEASE_SECONDS`: a spawned call whose runner has not renewed its lease for this long is resumed. */
  callLeaseSeconds: 30,
  /** `TANDEM_LOG_RETENTION_DAYS`: how long log lines are kept at the edge. */
  logRetentionDays: 7,
  /**
   * `TANDEM_LOG_RECENT_HOURS`: how long a line stays in its app's `LogStore` (Durable Object SQLite) before the
   * store's alarm moves it to R2, where it is kept for the rest of its retention.
   */
  logRecentHours: 24,
  /** `TANDEM_REGION`: the region the gateway's own log lines (edge functions, edge system lines) name. */
  region: "local",
} as const;

/**
 * Logs (docs/observability.md): every line a function prints in either tier, and Tandem's own lines about its
 * calls, kept per app at the edge.
 */
export const LOG_LIMITS = {
  /** The longest line kept, in characters; a longer one is cut, and says so. */
  maxLineChars: 16 * KiB,
  /** Lines `GET /v1/apps/:app/logs` answers when `limit` does not say, and the most it answers. */
  defaultLimit: 100,
  maxLimit: 10_000,
  /** How long `tandem logs -f` that lost its gateway (a restart of `tandem serve`) tries to follow again, and how often. */
  followReconnectMs: 60_000,
  followRetryMs: 1_000,
  /** How far before its newest line a follow that lost its gateway follows again from (its repeats not printed). */
  followOverlapMs: 5_000,
  /** The longest `search` text. */
  maxSearchChars: 256,
  /** How often a follow asks its app's log store for new lines. */
  followPollMs: 200,
  /**
   * How long a follow holds a line back before it sends it, so a plane's line that arrives a little late (its
   * batches are up to `planeFlushMs` late) still comes out in time order with the edge's.
   */
  followHoldMs: 400,
  /** A follow with no new line for this long sends an empty line, so no proxy on the way closes it as idle (readers skip it). */
  followKeepAliveMs: 5_000,
  /** How long a gateway isolate gathers the log lines of its requests before one write per app. */
  edgeBatchMs: 50,
  /** How long a gateway isolate gathers the console lines of running code before it prints them in one write. */
  edgePrintMs: 10,
  /** How long a plane gathers its containers' lines before it sends them to the gateway. */
  planeFlushMs: 200,
  /**
   * How long after a plane call ends its lines may still be on their way to the log store: the plane's next batch
   * (`planeFlushMs`), the gateway's (`edgeBatchMs`), and the time to send and write them on a busy machine. A read
   * of that call's lines (`GET /v1/calls/:id/logs`) made sooner waits until then.
   */
  planeLinesLateMs: 600,
  /**
   * The same for an edge call: the isolate that ran it writes its last lines, and the gateway's line about its
   * failure, in a batch `edgeBatchMs` after they were printed, after the response. A read sooner waits until then.
   */
  edgeLinesLateMs: 300,
  /**
   * How long a container's runner gathers the lines its function writes (process.stdout / process.stderr) before it
   * sends them to its plane on the control channel: a line held a whole window of this goes as the window ends (at most
   * twice this late); a call's lines go with its result at the latest, and the first line after a window with none
   * goes at once (a container killed just after it, by the OOM killer, still told it).
   */
  runnerFlushMs: 10,
  /** The most characters of lines a runner gathers before it sends them, whatever the time. */
  runnerMaxFrameChars: 256 * KiB,
  /** The most lines a runner sends its plane in one second; past that it drops them and says how many. */
  runnerMaxLinesPerSecond: 10_000,
  /** The most lines a plane holds while its gateway cannot be reached; past that, lines are dropped and counted. */
  planeMaxBufferedLines: 20_000,
  /** And the most characters of text it holds meanwhile (lines are up to `maxLineChars` each). */
  planeMaxBufferedChars: 8 * MiB,
  /** The largest body of one batch of lines a plane sends. */
  maxPlaneBatchBytes: 1 * MiB,
  /**
   * The most characters of JSON one write to an app's log store carries: a Durable Object's SQLite takes a string of
   * at most 2 MB (`SQLITE_TOOBIG` past it) and a character may take 3 bytes, so more lines go in several writes.
   */
  maxAppendChars: 512 * KiB,
  /** How often an app's log store moves lines past `TANDEM_LOG_RECENT_HOURS` to R2 and deletes those past their retention. */
  retentionSweepMs: 60 * 60_000,
  /** The most lines, and characters of text, in one R2 object of older lines (one object holds one hour's lines, or part of it). */
  archiveObjectLines: 10_000,
  archiveObjectChars: 8 * MiB,
  /**
   * A call's lines are read from at most this long before its id was made (a plane's clock may be a little
   * behind the gateway's), so a read of one call's lines opens only the R2 objects of its time.
   */
  callLinesLeadMs: 60_000,
  /** The most lines one sweep moves to R2; a store with more left sweeps again a second later. */
  archiveSweepLines: 200_000,
} as const;

/**
 * Metrics and OTLP export (docs/observability.md, "Metrics" and "OTLP"): a plane's Prometheus series and what it
 * sends to an OpenTelemetry collector when `TANDEM_OTLP_ENDPOINT` is set.
 */
export const METRICS_DEFAULTS = {
  /** Buckets (seconds) of `tandem_function_queue_wait_seconds`: from a warm container's sub-millisecond wait to a full GPU queue. */
  queueWaitBuckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  /** Buckets (seconds) of `tandem_function_cold_start_seconds`: a container's start, image builds included. */
  coldStartBuckets: [0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300],
  /** Buckets (seconds) of `tandem_function_run_seconds`. */
  runBuckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
  /** How often a plane sends its log records to the OTLP endpoint. */
  otlpLogsFlushMs: 1_000,
  /** How often a plane sends its metrics to the OTLP endpoint. */
  otlpMetricsIntervalMs: 15_000,
  /** The most log records a plane holds for the OTLP endpoint; past that, new ones are dropped and counted. */
  otlpMaxBufferedRecords: 10_000,
  /** The most log records in one OTLP request. */
  otlpMaxBatchRecords: 1_000,
  /** How long a plane waits for the OTLP endpoint to answer one request. */
  otlpTimeoutMs: 10_000,
} as const;

/**
 * The most of a failed call's error that is kept and sent on, in characters (details: as JSON), in both tiers: past
 * them a message or stack is cut, saying how much was, and details too large are replaced by a note. A call's error
 * is recorded with the call, and one of a million characters could not be (sdk/errors.ts `boundedWireError`).
 */
export const ERROR_LIMITS = {
  nameChars: 256,
  messageChars: 32 * 1024,
  stackChars: 64 * 1024,
  detailsChars: 64 * 1024,
} as const;

/** Limits of the `/v1` API that no setting changes. */
export const API_LIMITS = {
  /** The longest one `GET /v1/calls/:id?wait=` holds the request open. */
  maxWaitMs: 50_000,
  /** The most inputs one `map` request may carry; the SDK sends larger maps in batches. */
  maxMapInputs: 1_000,
  /** Values larger than this are kept in blob storage, the ledger row holding a reference. */
  maxInlineValueBytes: 512 * KiB,
  /**
   * The deepest nesting of arrays and objects a request body may have, and a
   * value its `meta` rebuilds. Decoding and encoding values recurse once a
   * level, and overflowed the stack at about 3,800 levels; well under that,
   * so a value that is read can also be sent on and stored.
   */
  maxJsonDepth: 512,
  /**
   * The longest a function's result may be as JSON, in characters (`encodeResult`, sdk/result-value.ts), as long as
   * a request's body may be by default: a call's record crosses to its ledger in one message, which a Durable Object
   * takes up to 32 MiB of (a character is at most two bytes there).
   */
  maxResultChars: 10 * MiB,
} as const;

/** API tokens (docs/security.md). */
export const TOKEN_DEFAULTS = {
  /** How long a gateway isolate trusts a token it checked: a revoked token stops working within this. */
  cacheMs: 10_000,
  /** A connect token's life, by default and at most (seconds). */
  connectTokenTtlSeconds: 300,
  maxConnectTokenTtlSeconds: 3600,
  /** Tokens one gateway keeps (revoked ones included). */
  maxTokens: 10_000,
  /** The longest life an API token may be given (`expiresIn`, `--expires`); by default a token never expires. */
  maxLifetimeMs: 3650 * 86_400_000,
} as const;

/** The dashboard (docs/observability.md, "Dashboard"). */
export const DASHBOARD_DEFAULTS = {
  /** A login code's life: `tandem dashboard` prints it, the browser uses it at once. */
  loginCodeTtlSeconds: 120,
  /** A browser's session (its HttpOnly cookie) lasts this long, or until its token is revoked. */
  sessionTtlSeconds: 12 * 3600,
  /** Calls a calls page lists. */
  callsShown: 50,
  /** Lines the app's logs page shows when it is drawn, unless its `limit` says (new ones are added as they come). */
  logLinesShown: 200,
  /** Characters of a call's error a calls table shows (its first line); the call's page shows all of it. */
  errorChars: 300,
  /** How often a page's live stream asks the ledger for changed calls. */
  livePollMs: 250,
  /** The charts' window and the number of points in it. */
  chartWindowMs: 3600_000,
  chartBuckets: 60,
  /** The usage page's window. */
  usageWindowMs: 24 * 3600_000,
} as const;

/** Deployments and their artifacts (docs/deploy.md, "Versions and rollback"). */
export const DEPLOY_LIMITS = {
  /** Bytes of one file of a deployment's artifact (a Worker is at most 10 MiB compressed; a plane bundle may be larger). */
  maxFileBytes: 64 * MiB,
  /** Files in one deployment's artifact: the Worker, its configuration and modules, plane bundles and image specs. */
  maxFiles: 500,
  /** Characters of a file's path within the artifact. */
  maxPathChars: 200,
  /** Deployments `GET /v1/apps/:app/deployments` answers at most (newest first). */
  maxListed: 1_000,
} as const;

/** Schedules (docs/schedules.md). */
export const SCHEDULE_LIMITS = {
  /** The shortest `Period`. */
  minPeriodMs: 1_000,
  /**
   * The longest `Period`, a year and a day: longer, its run times soon pass the last date a JavaScript `Date` holds,
   * and the Scheduler's ticks failed on them. A yearly job is `Cron("@yearly")`.
   */
  maxPeriodMs: 366 * DAY_SECONDS * 1000,
} as const;

/** Named secrets (docs/secrets.md). */
export const SECRET_LIMITS = {
  /** Secrets one gateway keeps. */
  maxSecrets: 1_000,
  /** The most bytes of local secrets `tandem deploy` sends (as JSON): a Cloudflare Worker secret holds 5 KiB. */
  maxDeployedLocalBytes: 5 * 1024,
  /** Keys in one secret. */
  maxKeys: 100,
  /** Characters in one value. */
  maxValueBytes: 32 * KiB,
  /** How long a gateway isolate keeps a secret's values it read: an update reaches calls at the edge within this. */
  cacheMs: 5_000,
  /**
   * Values at least this long are masked in logs and errors wherever they appear; shorter ones (1 to 3 characters)
   * only where they stand alone, not touching a letter, digit or `_`: masking a one-letter value inside words would
   * blank every such letter.
   */
  minMaskedLength: 4,
} as const;

/** How gateways and planes keep in touch. */
export const PLANE_DEFAULTS = {
  /** How often a plane reports. */
  heartbeatMs: 3_000,
  /** A plane that has not reported for this long is not sent calls, and is listed `stale`. */
  staleMs: 15_000,
  /**
   * A plane silent for this long (it vanished without a word: killed, its machine gone, cut off) is dropped from the
   * gateway's list; it registers again with its next heartbeat, should it come back.
   */
  staleDropMs: 60 * 60_000,
  /** A plane that said it stopped (its last heartbeat, as it closed) is listed `stopped` this long, then dropped. */
  stoppedDropMs: 10 * 60_000,
  /** The first wait before a plane tries again to remove the containers its previous run left behind; doubled each time, up to the most. */
  leftoversRetryMs: 1_000,
  leftoversRetryMaxMs: 30_000,
  /**
   * The longest an input that reaches a plane still starting (listening, and waiting for its gateway's URL) waits for
   * it, at most its own timeout; then it is answered `no_capacity`, which the gateway tries again.
   */
  startWaitMs: 15_000,
  /**
   * How often a plane writes that its containers are still up, in its usage ledger: where their time ends if the plane
   * dies and its next run no longer finds them in the engine (usage-ledger.ts).
   */
  usageSeenMs: 30_000,
  /** How far a signed request's timestamp may be from the verifier's clock. */
  signatureWindowMs: 30_000,
  /**
   * The largest body of a signed run or stream request to a plane. It carries a call's arguments as the gateway
   * received them (at most `GATEWAY_DEFAULTS.maxBodyBytes`), with room for the function's spec and for arguments
   * that encode larger than they came (`1e20` is written out in full).
   */
  maxRunRequestBytes: 2 * GATEWAY_DEFAULTS.maxBodyBytes,
  /**
   * The most inputs one run-many request carries (a `.map`'s inputs ready together, sent to one plane in one
   * request); its body is held to `maxRunRequestBytes` as a run request's is.
   */
  maxRunsPerRequest: 64,
  /** The largest body of every other signed request, either way: heartbeats, stops, cancels (fetches and status have none). */
  maxSignedRequestBytes: 64 * KiB,
  /**
   * How deep JSON in a signed request may nest. Deeper is refused before it is parsed: JSON.stringify, superjson
   * and structured clone recurse, and run out of stack a few thousand levels down.
   */
  maxJsonDepth: 1_000,
  /**
   * How long a plane drops the rest of a body it answered early (refused, or over its limit) before it closes the
   * connection: long enough for the client to read the answer, which a reset at once would lose.
   */
  lingerMs: 1_000,
  /**
   * How long, and for how many calls, a plane remembers a cancel naming a call it has not seen: a map's input still
   * on its way when its map was cancelled is answered as cancelled when it comes, and never runs.
   */
  cancelAheadMs: 5 * 60_000,
  cancelAheadMax: 10_000,
  /** The longest control frame between a plane and a container's runner. */
  maxControlFrameBytes: 64 * MiB,
  /** Processes and threads one container may have. */
  pidsLimit: 256,
  /** The port `tandem plane` listens on. */
  port: 8790,
  /**
   * How long a plane told to stop (SIGTERM) waits for the inputs it has to end before it stops their containers:
   * the default function timeout. An orchestrator's grace period (Kubernetes' `terminationGracePeriodSeconds`,
   * systemd's `TimeoutStopSec`) should be longer.
   */
  drainTimeoutSeconds: 300,
  /** Most prepared containers a plane keeps per function (`--prepared`; 0: none): docs/plane.md, "Prepared containers". */
  preparedPerFunction: 2,
  /** How long a cold start counts as demand for prepared containers, and how long one waits unused before it is stopped. */
  preparedWindowSeconds: 600,
  /** The share of a plane's memory its prepared containers may hold together. */
  preparedMemoryShare: 0.25,
  /** Memory snapshots a plane keeps on its disk (`--snapshot-max`); beyond it, the least recently used goes. */
  snapshotMax: 16,
  /** Bytes of memory snapshots a plane keeps on its disk (`--snapshot-max-bytes`); beyond it, the least recently used go. */
  snapshotMaxBytes: 8 * 1024 * MiB,
  /** How long a runner asked to let go before a snapshot has to close its control connection. */
  snapshotHandOffMs: 10_000,
  /**
   * When a new version of a function goes live (a deploy, a `tandem serve` reload), how long its old version's
   * containers may take to finish the inputs they run before they are stopped all the same (`--version-drain-timeout`):
   * the default function timeout, so an input within its own timeout is never cut short.
   */
  versionDrainTimeoutSeconds: 300,
} as const;

/**
 * Volumes (docs/volumes.md): files split into content-addressed blocks in the gateway's blob store, each
 * volume's manifest in a Durable Object. None of these is a setting: a block's size names its key's content.
 */
export const VOLUME_LIMITS = {
  /** A file's bytes are stored in blocks of this size (the last one shorter), each named by its SHA-256. */
  blockBytes: 8 * MiB,
  /** The largest file a volume holds. */
  maxFileBytes: 64 * 1024 * MiB,
  /** The most files one volume holds (directories are not counted: they are the paths' prefixes). */
  maxFiles: 100_000,
  /** The most volumes one gateway keeps. */
  maxVolumes: 1_000,
  /** The most changes (puts, removals, copies) one commit carries. */
  maxChangesPerCommit: 10_000,
  /** A path's longest form, in UTF-8 bytes, and one name in it. */
  maxPathBytes: 1024,
  maxNameBytes: 255,
  /** The most blocks one `blocks/missing` request asks about. */
  maxBlocksPerQuery: 10_000,
  /** Blocks a client uploads at once, and block existence checks the gateway makes at once. */
  uploadConcurrency: 4,
  /** A file's mode when a write does not give one. */
  defaultMode: 0o644,
  /** `tandem volume put|get` draw a progress bar for files larger than this (on a terminal). */
  progressBarBytes: 4 * MiB,
  /** How often a plane commits the changes in a container's writable mounts (and once more when the container stops). */
  backgroundCommitMs: 5_000,
  /**
   * How long a plane keeps the writable mount folders a killed run of it left (what their containers wrote after their
   * last commit), said in its log as it starts; then they go.
   */
  leftoverKeepMs: 7 * 24 * 3600 * 1000,
  /** Files up to this size are copied into a writable mount (writable in place); larger ones are cloned or hard-linked. */
  copyBelowBytes: 1 * MiB,
  /** Blocks a plane downloads into its cache at once. */
  downloadConcurrency: 4,
  /** The largest request body a container sends its plane (a block, or a commit), and the plane carries to the gateway. */
  maxContainerRequestBytes: 10 * MiB,
} as const;

/**
 * Dicts (docs/dict-queue.md): one Durable Object per dict, its entries in SQLite. None of these is a setting.
 */
export const DICT_LIMITS = {
  /** The largest value, as the call codec encodes it (JSON text, UTF-8): over it a put is `value_too_large`. */
  maxValueBytes: 1 * MiB,
  /** The longest key, as canonical JSON text in UTF-8. */
  maxKeyBytes: 2 * KiB,
  /** An entry is dropped this long after its last write, unless the write gave a `ttlSeconds`. */
  defaultTtlSeconds: 7 * DAY_SECONDS,
  /** The longest `ttlSeconds` a write may give. */
  maxTtlSeconds: 365 * DAY_SECONDS,
  /** The most entries one `update` carries (and one request, in bytes, stays under the gateway's body limit). */
  maxEntriesPerUpdate: 1_000,
  /** Entries per page of `keys`/`values`/`items`: the default, and the most one page holds. */
  pageSize: 100,
  maxPageSize: 1_000,
  /**
   * The most characters of keys and values one page carries (a page crosses from the dict's Durable Object in one
   * message, which takes up to 32 MiB, a character at most two bytes there): past it the page ends early, with `next`.
   */
  maxAnswerChars: 8 * MiB,
  /** The most dicts one gateway keeps. */
  maxDicts: 10_000,
} as const;

/**
 * Queues (docs/dict-queue.md): one Durable Object per queue, its items in SQLite, FIFO per partition.
 */
export const QUEUE_LIMITS = {
  /** The largest item, as the call codec encodes it: over it a put is `value_too_large`. */
  maxItemBytes: 1 * MiB,
  /** The most items one partition holds (leased ones too): a put past it is `queue_full`. */
  maxItemsPerPartition: 5_000,
  /** The most partitions one queue holds at once (an emptied partition no longer counts). */
  maxPartitions: 1_000,
  /** A partition's longest name, in UTF-8 bytes. */
  maxPartitionBytes: 64,
  /** The most items one `putMany` carries, and one `getMany` asks for. */
  maxItemsPerRequest: 1_000,
  /** The longest one get request waits in the queue's object; a client waiting longer asks again. */
  maxWaitMs: 50_000,
  /** A lease's shortest and longest seconds. */
  minLeaseSeconds: 0.1,
  maxLeaseSeconds: 12 * 3_600,
  /** Items per page of `iterate()`: the default, and the most one page holds. */
  pageSize: 100,
  maxPageSize: 1_000,
  /**
   * The most characters of items one get or peek answers with (as `DICT_LIMITS.maxAnswerChars`): a get takes fewer
   * items than it asked for rather than more than this, and a peek's page ends early, with `next`.
   */
  maxAnswerChars: 8 * MiB,
  /** The most queues one gateway keeps. */
  maxQueues: 10_000,
} as const;

/** The local development stack (`tandem serve`). */
export const LOCAL_DEFAULTS = {
  /** Where the SDK and CLI find a gateway when neither an option nor `TANDEM_GATEWAY` says. */
  gateway: "http://127.0.0.1:8787",
  port: 8787,
  host: "127.0.0.1",
} as const;

/**
 * Delivery: how a call survives losing the gateway, a plane or a connection
 * (docs/api.md, "Delivery"). A plane remembers the attempts it ran, so that a
 * gateway that lost their answers gets them instead of a second run; clients
 * send an `Idempotency-Key` and retry what never got an answer.
 */
export const DELIVERY_DEFAULTS = {
  /** How long a plane remembers an attempt it ran (call id and attempt), and keeps its outcome. */
  planeAttemptTtlMs: 10 * 60_000,
  /** The most attempts a plane remembers, and the most outcomes (and their bytes, as JSON) it keeps; the oldest go first. */
  planeAttemptsRemembered: 200_000,
  planeOutcomesKept: 10_000,
  planeOutcomeBytesKept: 64 * MiB,
  /** Extra attempts a call may take because one was lost with its gateway or plane (not failures: they use no retry). */
  maxLostAttempts: 3,
  /**
   * A runner the ledger sees in its own isolate (gateway/live-runners.ts) keeps its call, lease lapsed or not, until
   * it has not renewed for this many leases, and at least `runnerSilenceMinMs`: a loaded process runs timers late.
   */
  runnerSilenceLeases: 3,
  runnerSilenceMinMs: 2_000,
  /**
   * How long a fresh keyed call runs before its running record is written (docs/api.md, "Delivery"). An edge call that
   * ends sooner is written once, as it ended, with the next batch of ended calls; a plane call is written as its first
   * plane is chosen, with that plane, or after this long without one.
   */
  freshRecordWaitMs: 20,
  /**
   * How long a call made without an idempotency key (curl's `POST .../call`, a `.remote()` from code in the gateway)
   * runs before it is recorded as running (docs/api.md, "Delivery"), so the dashboard, `GET /v1/calls/:id` and `tandem
   * logs --call` know of it while it runs. One that ends sooner is written once, as it ended, in the next batch of ended
   * calls: no Durable Object call on its path.
   */
  keylessRecordWaitMs: 500,
  /**
   * How long the ledger waits for the row of a call id it does not hold, while the id is younger than this: a fresh
   * keyed edge call's row comes in the batch after it ended (`freshRecordWaitMs`, then up to 50 ms).
   */
  youngCallWaitMs: 1_000,
  /** The SDK's retries of a request that got no answer (connection refused or reset, the front door's 502), and their backoff. */
  clientRetries: 4,
  clientRetryDelayMs: 200,
  clientRetryMaxDelayMs: 2_000,
  /**
   * How long the SDK goes on sending such a request again, past `clientRetries`, to a gateway that answered this
   * process before: one that stops answering is most likely starting again (`tandem serve` stopped and started takes
   * 5-20 s), and a call, spawn or map sent with its key then finds its calls, which the ledger took over.
   */
  clientRestartWaitMs: 30_000,
  /**
   * How often a web request whose handler waits on a call looks whether `tandem serve`'s front door said its client
   * went (gateway/client-gone.ts), and how long and how many of the ids it names the gateway keeps.
   */
  clientGoneCheckMs: 100,
  clientGoneKeepMs: 60_000,
  clientGoneKeepMax: 10_000,
  /**
   * How long the SDK's `.map`, left early, waits at most for the gateway to cancel the batches it had in flight
   * (`POST .../map/cancel`) before it returns to the code that left it.
   */
  mapCancelWaitMs: 2_000,
  /**
   * How often a keyed map request whose inputs were recorded as started asks the ledger whether it was cancelled from
   * another isolate (a cancel that reaches its own isolate stops it at once): its inputs not started then start none.
   */
  mapCancelPollMs: 1_000,
  /**
   * workerd closes a connection that has been idle for 5 s, and so do Node's HTTP servers: a client that keeps idle
   * connections must close them first, or a request it sends on one as it closes fails.
   */
  serverIdleCloseMs: 5_000,
  /** How long the `tandem serve` front door keeps an idle connection to workerd: less than `serverIdleCloseMs`. */
  frontDoorIdleSocketMs: 4_000,
  /**
   * How long, at most, a reload's old workerd keeps running after its last request ended, before it is stopped: the
   * work a request leaves behind it (`waitUntil`: the call ledger's record of the call's end, log lines, a spawned
   * call's run) finishes first. It is stopped as soon as that work is done (gateway/background.ts), while the new one
   * waits to start. Stopped sooner, a call whose end was not recorded is taken for lost and run once more.
   */
  frontDoorRetireGraceMs: 5_000,
  /**
   * How long a reload waits for a call in flight that its client sends again once cut (a call, spawn or map with its
   * Idempotency-Key) before it cuts it; new requests wait meanwhile. A read (a long poll, a log follow, a dashboard
   * page's live stream) is cut at once; a stream or a web request is waited for to its end.
   */
  frontDoorResumableWaitMs: 5_000,
  /**
   * How long the front door waits for the next byte of a request's body before it answers 408 and closes: a client
   * that stopped sending would otherwise hold its request, and a reload waiting for it, until the client gave up. Nor
   * does a reload wait longer than this for a request whose body stopped coming.
   */
  frontDoorBodyIdleMs: 15_000,
  /**
   * How long the front door waits for a request's headers (Node's `headersTimeout`). The whole request has no limit
   * (Node's `requestTimeout`, 300 s by default, would cut a large upload on a slow link): its body has
   * `frontDoorBodyIdleMs` between two bytes instead.
   */
  frontDoorHeadersMs: 60_000,
  /**
   * How long a stopping `tandem serve` (Ctrl-C) waits for its requests in flight and the local plane's inputs to end
   * before it answers the requests left 503 and stops the plane's containers; a second Ctrl-C stops at once.
   */
  serveStopGraceMs: 10_000,
  /**
   * How long a stopping `tandem serve` then gives its parts (the local plane's containers, the gateway) to stop before
   * it says which did not and quits without it, rather than hang on it (a container engine that no longer answers).
   */
  serveCloseMs: 30_000,
  /**
   * How long `tandem serve`'s gateway may answer nothing (its health check, asked every 2 s) before serve says why that
   * may be: an edge function's code that does not await holds the isolate's one thread, where its timeout cannot stop it.
   */
  serveHeldWarnMs: 5_000,
  /** How long a plane's API keeps an idle connection: more than `serverIdleCloseMs`, so the gateway (the client) closes first. */
  planeKeepAliveMs: 30_000,
  /**
   * How long a plane's API waits for a request's headers, and for the whole request with its body (Node's
   * `headersTimeout` and `requestTimeout`, at Node's own values): a gateway sends a call's arguments in one go, in
   * well under that. They bound receiving the request only: a call's answer, however long it runs, is not cut.
   */
  planeHeadersMs: 60_000,
  planeRequestMs: 300_000,
} as const;
