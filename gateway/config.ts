/**
 * Gateway configuration: the `TANDEM_*` settings' one schema
 * (`sdk/settings.ts`, defaults from `sdk/defaults.ts`). Parsed once per isolate from the Worker's bindings, at the tier's
 * entries (the Worker's fetch middleware, each Durable Object's constructor),
 * and passed inward: routes read `c.var.config`, running code `RunContext.config`.
 */
import { parseGatewaySettings, type GatewayConfig } from "../sdk/settings.js";
import type { Env } from "./env.js";

export type { GatewayConfig };

let cached: { env: Env; config: GatewayConfig } | undefined;

/**
 * The configuration in `env`, parsed once per bindings object (an isolate's
 * entries all see the same one). Throws naming every bad setting.
 *
 * @example const { callLeaseMs } = gatewayConfig(env); // in a Durable Object's constructor
 */
export function gatewayConfig(env: Env): GatewayConfig {
  if (cached?.env === env) return cached.config;
  const config = parseGatewaySettings(env as unknown as Record<string, unknown>);
  cached = { env, config };
  return config;
}
