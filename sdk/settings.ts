/**
 * The `TANDEM_*` settings a gateway reads, as one schema with its defaults
 * (`sdk/defaults.ts`). Parsed once where a gateway starts: in workerd from the
 * Worker's bindings (`gateway/config.ts`), and by the CLI for the local
 * gateway it runs (its front door needs the body limit too).
 */
import { z } from "zod";
import { GATEWAY_DEFAULTS, METRICS_DEFAULTS } from "./defaults.js";
import { InvalidOptionsError } from "./errors.js";
import { DEFAULT_ENV, ENV_NAME_PATTERN, REGION_PATTERN } from "./protocol.js";
import { describeIssues } from "./zod-issues.js";
import { userRecord } from "./zod-record.js";

/** A gateway's settings, parsed, with defaults filled in. */
export interface GatewayConfig {
  /** Largest request body read, in bytes. */
  maxBodyBytes: number;
  /** How long ended calls stay in the ledger, in seconds (at least 7 days by default). */
  resultTtlSeconds: number;
  /** A spawned call whose runner has not renewed its lease for this long is resumed elsewhere. */
  callLeaseMs: number;
  /** The secret shared with planes; undefined: planes are off. */
  planeSecret: string | undefined;
  /** The key secrets are encrypted with (32 bytes, as 64 hex digits); undefined: the secret store is off. */
  secretsKey: string | undefined;
  /**
   * Local only: the values of the apps' local secrets (`Secret.fromDict`, `Secret.fromDotenv`), as the CLI read
   * them when it loaded the app: by app, then holder (`App.secretHolders`), one entry per declared secret (null
   * for a named one).
   */
  localSecrets: LocalSecrets;
  /** How long log lines are kept at the edge, in ms (`TANDEM_LOG_RETENTION_DAYS`, 7 days by default). */
  logRetentionMs: number;
  /** How long a line stays in its app's log store before it is moved to R2, in ms (`TANDEM_LOG_RECENT_HOURS`, 24 h by default). */
  logRecentMs: number;
  /** The region this gateway's own log lines name (`TANDEM_REGION`, "local" by default). */
  region: string;
  /** Where edge log lines go over OTLP/HTTP as well (`TANDEM_OTLP_ENDPOINT`, `TANDEM_OTLP_HEADERS`); undefined: nowhere. */
  otlp: OtlpSettings | undefined;
  /** How often the gateway sends its edge functions' metrics to the OTLP endpoint, in ms (`TANDEM_OTLP_METRICS_INTERVAL_SECONDS`, 15 s by default). */
  otlpMetricsIntervalMs: number;
  /**
   * The bearer token a Prometheus scrape of `GET /v1/metrics` may carry instead of an admin token
   * (`TANDEM_METRICS_TOKEN`, as a plane's `/metrics` takes it); undefined: admin tokens only.
   */
  metricsToken: string | undefined;
  /**
   * Which regions' planes a plane call prefers, nearest first, by where the request came from
   * (`TANDEM_REGION_PREFERENCE`): by Cloudflare colo (`FRA`), by continent (`EU`), and `*` for requests from
   * elsewhere and for scheduled runs. Empty: the built-in continent mapping (docs/deploy.md, "Regions").
   */
  regionPreference: RegionPreference;
  /** The environment of the apps this gateway serves (`TANDEM_ENV`, `main` by default); docs/deploy.md, "Environments". */
  environment: string;
}

/** Preferred regions (names, or name prefixes before a `-`), nearest first, by colo, continent or `*`. */
export type RegionPreference = Record<string, string[]>;

const PLACE = /^(\*|[A-Z]{2}|[A-Z]{3})$/;

/** `EU=eu-west,eu-central;NA=us-east;*=us-east`: places (colo, continent, `*`) and their regions, nearest first. */
const RegionPreferenceSchema = z.string().transform((text, ctx): RegionPreference => {
  const preference: RegionPreference = {};
  for (const part of text
    .split(";")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [place = "", regions = ""] = part.split("=").map((x) => x.trim());
    const list = regions
      .split(",")
      .map((r) => r.trim())
      .filter(Boolean);
    if (!PLACE.test(place) || list.length === 0 || !list.every((r) => REGION_PATTERN.test(r))) {
      ctx.addIssue({
        code: "custom",
        message: `"${part}" must be PLACE=region,region (PLACE a continent code like EU, a colo like FRA, or *; regions lowercase, such as eu-west)`,
      });
      return z.NEVER;
    }
    preference[place] = list;
  }
  return preference;
});

/** The values of local secrets, by app and holder (`TANDEM_LOCAL_SECRETS`). */
export type LocalSecrets = Record<string, Record<string, (Record<string, string> | null)[]>>;

const LocalSecretsSchema = z.record(z.string(), z.record(z.string(), z.array(userRecord(z.string()).nullable())));

const whole = "must be a whole number above 0";

/** `TANDEM_PLANE_SECRET`, the secret gateways and planes share: a gateway's and a plane's configuration check it alike. */
const PlaneSecretSchema = z.string().min(16, "must be at least 16 characters");

/**
 * Checks the settings a plane shares with the gateway (`TANDEM_PLANE_SECRET`); throws naming the plane's
 * configuration, so `tandem plane` does not blame a gateway it does not run.
 * @example
 * checkPlaneSettings({ TANDEM_PLANE_SECRET: "short" }); // throws: invalid plane configuration: setting "TANDEM_PLANE_SECRET" …
 */
export function checkPlaneSettings(vars: Record<string, unknown>): void {
  const parsed = z.object({ TANDEM_PLANE_SECRET: PlaneSecretSchema.optional() }).safeParse(vars);
  if (!parsed.success) throw new InvalidOptionsError(`invalid plane configuration: ${describeIssues(parsed.error, "setting")}`);
}

/** The Worker variables (and secret) a gateway reads; unknown `TANDEM_*` names are ignored. */
const GatewaySettingsSchema = z.object({
  TANDEM_MAX_BODY_BYTES: z.coerce.number(whole).int(whole).positive(whole).default(GATEWAY_DEFAULTS.maxBodyBytes),
  TANDEM_RESULT_TTL_SECONDS: z.coerce.number(whole).int(whole).positive(whole).default(GATEWAY_DEFAULTS.resultTtlSeconds),
  TANDEM_CALL_LEASE_SECONDS: z.coerce
    .number("must be a number of seconds above 0")
    .positive("must be a number of seconds above 0")
    .default(GATEWAY_DEFAULTS.callLeaseSeconds),
  TANDEM_LOG_RETENTION_DAYS: z.coerce
    .number("must be a number of days above 0")
    .positive("must be a number of days above 0")
    .default(GATEWAY_DEFAULTS.logRetentionDays),
  TANDEM_LOG_RECENT_HOURS: z.coerce
    .number("must be a number of hours above 0")
    .positive("must be a number of hours above 0")
    .default(GATEWAY_DEFAULTS.logRecentHours),
  TANDEM_REGION: z.string().trim().min(1, "must name a region").max(64, "must be at most 64 characters").default(GATEWAY_DEFAULTS.region),
  TANDEM_REGION_PREFERENCE: RegionPreferenceSchema.optional(),
  TANDEM_ENV: z
    .string()
    .trim()
    .regex(ENV_NAME_PATTERN, "must be an environment name: lowercase letters, digits and '-', up to 32, such as dev")
    .default(DEFAULT_ENV),
  TANDEM_OTLP_METRICS_INTERVAL_SECONDS: z.coerce
    .number(whole)
    .int(whole)
    .positive(whole)
    .default(METRICS_DEFAULTS.otlpMetricsIntervalMs / 1000),
  // As a plane reads it: empty is unset.
  TANDEM_METRICS_TOKEN: z
    .string()
    .trim()
    .transform((token) => token || undefined)
    .optional(),
  TANDEM_PLANE_SECRET: PlaneSecretSchema.optional(),
  TANDEM_SECRETS_KEY: z
    .string()
    .trim()
    .regex(/^[0-9a-fA-F]{64}$/, "must be 32 bytes as 64 hex digits (openssl rand -hex 32)")
    .optional(),
  TANDEM_LOCAL_SECRETS: z
    .string()
    .transform((text, ctx) => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        ctx.addIssue({ code: "custom", message: "must be JSON" });
        return z.NEVER;
      }
    })
    .pipe(LocalSecretsSchema)
    .optional(),
});

/**
 * Parses a gateway's settings from its variables (a Worker's `env`, or an
 * environment); throws naming the setting that is wrong.
 * @example
 * parseGatewaySettings({ TANDEM_MAX_BODY_BYTES: "1048576" }).maxBodyBytes; // 1048576
 */
export function parseGatewaySettings(vars: Record<string, unknown>): GatewayConfig {
  const parsed = GatewaySettingsSchema.safeParse(vars);
  if (!parsed.success) throw new InvalidOptionsError(`invalid gateway configuration: ${describeIssues(parsed.error, "setting")}`);
  return {
    maxBodyBytes: parsed.data.TANDEM_MAX_BODY_BYTES,
    resultTtlSeconds: parsed.data.TANDEM_RESULT_TTL_SECONDS,
    callLeaseMs: parsed.data.TANDEM_CALL_LEASE_SECONDS * 1000,
    planeSecret: parsed.data.TANDEM_PLANE_SECRET,
    secretsKey: parsed.data.TANDEM_SECRETS_KEY,
    localSecrets: parsed.data.TANDEM_LOCAL_SECRETS ?? {},
    logRetentionMs: parsed.data.TANDEM_LOG_RETENTION_DAYS * 86_400_000,
    logRecentMs: parsed.data.TANDEM_LOG_RECENT_HOURS * 3_600_000,
    region: parsed.data.TANDEM_REGION,
    otlp: parseOtlpSettings({ TANDEM_OTLP_ENDPOINT: stringOf(vars.TANDEM_OTLP_ENDPOINT), TANDEM_OTLP_HEADERS: stringOf(vars.TANDEM_OTLP_HEADERS) }),
    otlpMetricsIntervalMs: parsed.data.TANDEM_OTLP_METRICS_INTERVAL_SECONDS * 1000,
    metricsToken: parsed.data.TANDEM_METRICS_TOKEN,
    regionPreference: parsed.data.TANDEM_REGION_PREFERENCE ?? {},
    environment: parsed.data.TANDEM_ENV,
  };
}

/** Where a process sends OTLP/HTTP (`TANDEM_OTLP_ENDPOINT`), and the headers it sends with it (`TANDEM_OTLP_HEADERS`). */
export interface OtlpSettings {
  /** The collector's base URL, without a trailing slash: records go to `<endpoint>/v1/logs` and `<endpoint>/v1/metrics`. */
  endpoint: string;
  headers: Record<string, string>;
}

/**
 * `TANDEM_OTLP_ENDPOINT` and `TANDEM_OTLP_HEADERS`, read as OpenTelemetry reads `OTEL_EXPORTER_OTLP_ENDPOINT` and
 * `OTEL_EXPORTER_OTLP_HEADERS`: an http(s) base URL, and `key=value` pairs split by commas, each part
 * percent-decoded. Undefined without an endpoint; throws naming the setting when either is malformed.
 * @example
 * parseOtlpSettings({ TANDEM_OTLP_ENDPOINT: "http://127.0.0.1:4318/", TANDEM_OTLP_HEADERS: "x-api-key=abc%3D" });
 * // { endpoint: "http://127.0.0.1:4318", headers: { "x-api-key": "abc=" } }
 */
export function parseOtlpSettings(vars: { TANDEM_OTLP_ENDPOINT?: string | undefined; TANDEM_OTLP_HEADERS?: string | undefined }): OtlpSettings | undefined {
  const raw = vars.TANDEM_OTLP_ENDPOINT?.trim();
  if (!raw) {
    if (vars.TANDEM_OTLP_HEADERS?.trim()) throw new InvalidOptionsError("TANDEM_OTLP_HEADERS is set without TANDEM_OTLP_ENDPOINT: set the collector's URL too");
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InvalidOptionsError(`TANDEM_OTLP_ENDPOINT must be an http(s) URL such as http://127.0.0.1:4318, not "${raw}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidOptionsError(`TANDEM_OTLP_ENDPOINT must be an http(s) URL (OTLP/HTTP), not ${url.protocol} ("${raw}")`);
  }
  // A base URL, as OTEL_EXPORTER_OTLP_ENDPOINT: the signal's path goes after it, so a signal's own URL would get it twice.
  const signal = /\/v1\/(logs|metrics|traces)\/*$/.exec(url.pathname);
  if (signal || url.search || url.hash) {
    const base = `${url.origin}${signal ? url.pathname.slice(0, signal.index) : url.pathname.replace(/\/+$/, "")}`;
    throw new InvalidOptionsError(
      `TANDEM_OTLP_ENDPOINT is the collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT: Tandem adds /v1/logs and /v1/metrics to it itself; ` +
        `set it to ${base}, not "${raw}"`,
    );
  }
  const headers: Record<string, string> = {};
  for (const part of (vars.TANDEM_OTLP_HEADERS ?? "").split(",")) {
    if (!part.trim()) continue;
    const at = part.indexOf("=");
    const key = at > 0 ? safeDecode(part.slice(0, at).trim()) : undefined;
    const value = at > 0 ? safeDecode(part.slice(at + 1).trim()) : undefined;
    if (!key || value === undefined || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(key)) {
      throw new InvalidOptionsError(`TANDEM_OTLP_HEADERS must be key=value pairs split by commas (as OTEL_EXPORTER_OTLP_HEADERS); "${part.trim()}" is not one`);
    }
    headers[key.toLowerCase()] = value;
  }
  return { endpoint: url.href.replace(/\/+$/, ""), headers };
}

function safeDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

function stringOf(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}
