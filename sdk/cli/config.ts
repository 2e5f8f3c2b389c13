/**
 * The CLI's configuration: every `TANDEM_*` variable it uses, read from the
 * environment once, when a command starts (`main.ts`), and passed to the
 * command. Nothing else in the CLI, the local gateway or the plane reads the
 * environment for settings.
 */
import { InvalidArgumentError, type Command } from "commander";
import { ENV_NAME_PATTERN } from "../protocol.js";
import { checkPlaneSettings, parseGatewaySettings, parseOtlpSettings, type GatewayConfig, type OtlpSettings } from "../settings.js";

export interface CliConfig {
  /** `TANDEM_GATEWAY`: the gateway commands talk to, unless `--gateway` says. */
  gateway: string | undefined;
  /** `TANDEM_PLANE_SECRET`: the secret gateways and planes share; else one kept in `.tandem/plane-secret`. */
  planeSecret: string | undefined;
  /** `TANDEM_ENV`: the environment commands address (and `serve`, `run` and `deploy` put apps in), unless `--env` says. */
  env: string | undefined;
  /** `TANDEM_FORCE_BUILD=1`: planes started here rebuild every image step, cache or not. */
  forceBuild: boolean;
  /**
   * `TANDEM_METRICS_TOKEN`: the bearer token a scrape of a plane started here must carry (docs/observability.md,
   * "Metrics"); a local gateway takes it too, for `GET /v1/metrics` (it is among its variables).
   */
  metricsToken: string | undefined;
  /**
   * `TANDEM_OTLP_ENDPOINT` and `TANDEM_OTLP_HEADERS`: where planes started here send their logs and metrics over OTLP
   * (and the local gateway its edge lines: they are among its variables too).
   */
  otlp: OtlpSettings | undefined;
  /** `TANDEM_TRACE=1`: each step's time since the process started, on stderr (sdk/trace.ts). */
  trace: boolean;
  /** `TANDEM_WRANGLER`: a program `deploy`, `app rollback` and `token bootstrap --put` run in wrangler's place, with its arguments (a test and CI hook). */
  wrangler: string | undefined;
  /** The local gateway's `TANDEM_*` variables (`TANDEM_MAX_BODY_BYTES`, …), as its Worker bindings. */
  gatewayVars: Record<string, string>;
  /** The same, parsed: the local front door applies the body limit before the gateway does. */
  gatewayConfig: GatewayConfig;
}

/** `--env`, on every command that addresses apps or their stores (secrets, volumes, dicts, queues, logs, schedules). */
/** `--gateway`'s help, the same for every command that talks to one. */
export const GATEWAY_HELP = "gateway URL (default: TANDEM_GATEWAY, then a tandem serve running in this folder, then http://127.0.0.1:8787)";
export const ENV_HELP = "the environment (default: TANDEM_ENV, then the gateway's own, main unless it was served or deployed with --env)";

/** `--gateway`, `--token` and `--env`, as every command of a gateway's volumes, dicts, queues and secrets takes them. */
export function withGatewayOptions(command: Command, tokenHelp: string): Command {
  return command.option("-g, --gateway <url>", GATEWAY_HELP).option("--token <token>", tokenHelp).option("--env <name>", ENV_HELP);
}

/** Variables that are the CLI's own, not the gateway's. */
const CLI_ONLY = new Set(["TANDEM_GATEWAY", "TANDEM_FORCE_BUILD", "TANDEM_TOKEN", "TANDEM_PROFILE", "TANDEM_TRACE", "TANDEM_WRANGLER"]);

/**
 * Reads the configuration from `env` (the process's environment); throws naming a setting that is wrong, and the
 * configuration it is of: the plane's for `command` `plane`, else the gateway's.
 */
export function readCliConfig(env: NodeJS.ProcessEnv = process.env, command?: string): CliConfig {
  if (command === "plane") checkPlaneSettings(env);
  const gatewayVars = Object.fromEntries(
    Object.entries(env).filter((e): e is [string, string] => e[0].startsWith("TANDEM_") && !CLI_ONLY.has(e[0]) && e[1] !== undefined),
  );
  return {
    gateway: env.TANDEM_GATEWAY || undefined,
    planeSecret: env.TANDEM_PLANE_SECRET || undefined,
    env: env.TANDEM_ENV || undefined,
    forceBuild: env.TANDEM_FORCE_BUILD === "1",
    metricsToken: env.TANDEM_METRICS_TOKEN || undefined,
    otlp: parseOtlpSettings(env),
    trace: env.TANDEM_TRACE === "1",
    wrangler: env.TANDEM_WRANGLER || undefined,
    gatewayVars,
    gatewayConfig: parseGatewaySettings(gatewayVars),
  };
}

/**
 * An `--env` that names an environment, checked as commander parses it (a malformed one is refused naming the option,
 * before any request).
 * @example command.option("--env <name>", "the environment", parseEnvName)
 */
export function parseEnvName(value: string): string {
  if (!ENV_NAME_PATTERN.test(value)) throw new InvalidArgumentError('must be an environment name: lowercase letters, digits and "-", up to 32, such as dev');
  return value;
}
