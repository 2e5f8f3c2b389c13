/**
 * Gateway configuration: one schema, one table of defaults, the `TANDEM_`
 * prefix. Parsed once per isolate from the Worker's bindings, at the tier's
 * entries (the Worker's fetch middleware, each Durable Object's constructor),
 * and passed inward: routes read `c.var.config`, running code `RunContext.config`.
 */
import { z } from "zod";
import { LIMITS } from "../sdk/protocol.js";
import type { Env } from "./env.js";

export interface GatewayConfig {
  /** Largest request body read, in bytes. */
  maxBodyBytes: number;
  /** How long ended calls stay in the ledger, in seconds (at least 7 days by default). */
  resultTtlSeconds: number;
  /** A spawned call whose runner has not renewed its lease for this long is resumed elsewhere. */
  callLeaseMs: number;
  /** The secret shared with planes; undefined: planes are off. */
  planeSecret: string | undefined;
}

const ConfigSchema = z.object({
  TANDEM_MAX_BODY_BYTES: z.coerce.number().int().positive().default(LIMITS.maxBodyBytes),
  TANDEM_RESULT_TTL_SECONDS: z.coerce.number().int().positive().default(LIMITS.resultTtlSeconds),
  TANDEM_CALL_LEASE_SECONDS: z.coerce.number().positive().default(30),
  TANDEM_PLANE_SECRET: z.string().min(16, "must be at least 16 characters").optional(),
});

let cached: { env: Env; config: GatewayConfig } | undefined;

/**
 * The configuration in `env`, parsed once per bindings object (an isolate's
 * entries all see the same one). Throws naming every bad setting.
 *
 * @example const { callLeaseMs } = gatewayConfig(env); // in a Durable Object's constructor
 */
export function gatewayConfig(env: Env): GatewayConfig {
  if (cached?.env === env) return cached.config;
  const parsed = ConfigSchema.safeParse(env);
  if (!parsed.success) throw new Error(`invalid gateway configuration: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  const config = {
    maxBodyBytes: parsed.data.TANDEM_MAX_BODY_BYTES,
    resultTtlSeconds: parsed.data.TANDEM_RESULT_TTL_SECONDS,
    callLeaseMs: parsed.data.TANDEM_CALL_LEASE_SECONDS * 1000,
    planeSecret: parsed.data.TANDEM_PLANE_SECRET,
  };
  cached = { env, config };
  return config;
}
