/**
 * The bindings the gateway Worker runs with, and what its routes see of them.
 * Miniflare (`tandem serve`, through `sdk/cli/workerd.ts`) and `wrangler.toml`
 * (deploy) both provide exactly these.
 */
import type { AgentHub } from "./agents.js";
import type { CallLedger } from "./call-ledger.js";
import type { GatewayConfig } from "./config.js";
import type { PlaneRegistry } from "./plane-registry.js";
import type { Scheduler } from "./scheduler.js";
import type { SecretStore } from "./secret-store.js";
import type { TokenStore } from "./token-store.js";
import type { VolumeStore } from "./volume-store.js";
import type { DictStore } from "./dict-store.js";
import type { QueueStore } from "./queue-store.js";
import type { LogStore } from "./log-store.js";
import type { DeploymentStore } from "./deployment-store.js";
import type { MetricsExporter } from "./metrics-exporter.js";
import type { Principal } from "./auth.js";

export interface Env {
  /** The call ledger: a SQLite-backed Durable Object, sharded by call id. */
  LEDGER: DurableObjectNamespace<CallLedger>;
  /** The planes this gateway forwards plane-tier calls to. */
  PLANES: DurableObjectNamespace<PlaneRegistry>;
  /** Scheduled functions' state: one Durable Object that decides which runs are due. */
  SCHEDULER: DurableObjectNamespace<Scheduler>;
  /** WebSocket agents: one Durable Object per agent holds its sessions' sockets and state. */
  AGENTS: DurableObjectNamespace<AgentHub>;
  /** API tokens (hashed) and the key connect tokens are signed with. */
  TOKENS: DurableObjectNamespace<TokenStore>;
  /** Named secrets, their values sealed with AES-GCM under `TANDEM_SECRETS_KEY`. */
  SECRETS: DurableObjectNamespace<SecretStore>;
  /** Volumes' manifests: one Durable Object per volume, and one catalog of their names (gateway/volume-store.ts). */
  VOLUMES: DurableObjectNamespace<VolumeStore>;
  /** Dicts: one Durable Object per dict holds its entries, and one the catalog of their names (gateway/dict-store.ts). */
  DICTS: DurableObjectNamespace<DictStore>;
  /** Queues: one Durable Object per queue holds its items, and one the catalog of their names (gateway/queue-store.ts). */
  QUEUES: DurableObjectNamespace<QueueStore>;
  /** Log lines: one SQLite-backed Durable Object per app (gateway/log-store.ts). */
  LOGS: DurableObjectNamespace<LogStore>;
  /** Deployments: one SQLite-backed Durable Object per app and environment, its versions (gateway/deployment-store.ts). */
  DEPLOYMENTS: DurableObjectNamespace<DeploymentStore>;
  /** Sends the edge functions' metrics over OTLP while `TANDEM_OTLP_ENDPOINT` is set: one object, on its alarm (gateway/metrics-exporter.ts). */
  METRICS_EXPORTER: DurableObjectNamespace<MetricsExporter>;
  /** Large inputs and results, the planes' app bundles, volume blocks, deployments' files and apps' older log lines (gateway/log-archive.ts), stored by reference. */
  BLOBS: R2Bucket;
  /**
   * This version of the Worker: its id, and when it was made (Cloudflare's, each `wrangler deploy` a new one; under
   * miniflare, each workerd's start). Heartbeat answers tell planes each app's live bundle as of then (`LiveBundleRef`).
   */
  CF_VERSION_METADATA?: WorkerVersionMetadata;
  /** The bootstrap admin token (a secret: `wrangler secret put TANDEM_ADMIN_TOKEN`; `tandem serve` sets one from .tandem/token). */
  TANDEM_ADMIN_TOKEN?: string;
  /** The key secrets are sealed with, 64 hex digits (`openssl rand -hex 32 | wrangler secret put TANDEM_SECRETS_KEY`; `tandem serve` keeps one in .tandem/secrets-key). */
  TANDEM_SECRETS_KEY?: string;
  /** Local only: the values of the apps' local secrets (`Secret.fromDict`, `fromDotenv`) as the CLI read them, JSON. */
  TANDEM_LOCAL_SECRETS?: string;
  /** The secret shared with planes; without it no plane can register. */
  TANDEM_PLANE_SECRET?: string;
  /**
   * Local only: the `tandem run` that started this gateway, which starts its
   * plane when a call first needs one (`LOCAL_PLANE_ROUTES`). Never bound in a deployment.
   */
  LOCAL_PLANE?: Fetcher;
  /**
   * Local only: the key of `LOCAL_BLOBS_ROUTE`, made by the CLI that started this gateway each time it starts
   * (gateway/local-blobs.ts). Never bound in a deployment.
   */
  LOCAL_BLOBS_KEY?: string;
  /** Optional settings, all strings; see `gateway/config.ts`. */
  TANDEM_MAX_BODY_BYTES?: string;
  TANDEM_RESULT_TTL_SECONDS?: string;
  TANDEM_CALL_LEASE_SECONDS?: string;
  TANDEM_LOG_RETENTION_DAYS?: string;
  TANDEM_LOG_RECENT_HOURS?: string;
  TANDEM_REGION?: string;
  TANDEM_REGION_PREFERENCE?: string;
  TANDEM_ENV?: string;
  /** Where edge log lines and metrics go over OTLP/HTTP, and the headers sent there (docs/observability.md, "OTLP"). */
  TANDEM_OTLP_ENDPOINT?: string;
  TANDEM_OTLP_HEADERS?: string;
  TANDEM_OTLP_METRICS_INTERVAL_SECONDS?: string;
  /** The bearer token a scrape of `GET /v1/metrics` may carry instead of an admin token (a secret, as `TANDEM_ADMIN_TOKEN`). */
  TANDEM_METRICS_TOKEN?: string;
}

/**
 * The hono environment of every gateway route: the bindings, and the
 * configuration the Worker's entry parsed from them once (`c.var.config`).
 *
 * @example new Hono<RouteEnv>().get("/", (c) => c.json({ maxBodyBytes: c.var.config.maxBodyBytes }))
 */
export type RouteEnv = { Bindings: Env; Variables: { config: GatewayConfig; principal?: Principal } };
