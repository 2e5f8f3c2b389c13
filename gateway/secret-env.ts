/**
 * The environment a function (or web handler, or agent) runs with: its `env`
 * option, then its secrets in the order it declares them, later ones
 * overriding earlier ones. Named secrets come from the `SecretStore`, kept in
 * this isolate for `SECRET_LIMITS.cacheMs`; local ones from what the CLI sent
 * with the app (`TANDEM_LOCAL_SECRETS`). At the edge it is the call's
 * `process.env` (run-context.ts); a plane gives it to the container it starts.
 */
import { SECRET_LIMITS } from "../sdk/defaults.js";
import { NotConfiguredError, NotFoundError } from "../sdk/errors.js";
import type { Secret } from "../sdk/secret.js";
import type { Env } from "./env.js";
import { inEnvironment, lookedIn } from "./environments.js";
import type { RunContext } from "./run-context.js";

/** The secret store's stub (one object for each environment). */
export function secretStore(env: Env) {
  return env.SECRETS.get(env.SECRETS.idFromName(inEnvironment(env, "secrets")));
}

/** Named secrets' values read lately in this isolate, and until when they are trusted. */
const cached = new Map<string, { values: Record<string, string>; until: number }>();

/**
 * Values a named secret held earlier in this isolate, by secret, oldest first: still masked in the logs and errors
 * of the functions that declare it, since their code may keep a value it read (a client made at module scope) after
 * the secret is replaced. At most `SECRET_LIMITS.maxKeys` values a secret, the oldest dropped first.
 */
const former = new Map<string, Set<string>>();

/** Forgets what this isolate knows of a secret's current values (after a write here; other isolates within `cacheMs`). */
export function forgetSecret(env: Env, name: string): void {
  const key = inEnvironment(env, name);
  const hit = cached.get(key);
  if (hit) remember(key, Object.values(hit.values));
  cached.delete(key);
}

/** Keeps `values` among a secret's former ones (bounded; see `former`). */
function remember(key: string, values: string[]): void {
  if (!former.has(key) && former.size >= 1_000) former.delete(former.keys().next().value!); // bounded
  const seen = former.get(key) ?? new Set<string>();
  for (const value of values) {
    seen.delete(value); // moved to the newest
    seen.add(value);
    if (seen.size > SECRET_LIMITS.maxKeys) seen.delete(seen.values().next().value!);
  }
  former.set(key, seen);
}

/** Who declares the secrets: the app, the holder (`App.secretHolders`), and how messages name it (`demo.charge`). */
export interface SecretsOf {
  app: string;
  holder: string;
  where: string;
  secrets: readonly Secret[];
}

/**
 * A call's environment, and the values in it that came from secrets, with the values its named secrets held earlier
 * in this isolate (all masked as `***` in its logs and errors).
 */
export interface CallEnv {
  env: Record<string, string>;
  /** The variables the secrets set, later ones overriding earlier ones. */
  secrets: Record<string, string>;
  secretValues: string[];
}

/**
 * The environment `of` runs with, over `base` (its `env` option). Throws
 * `not_found` naming a missing secret or key, and the function.
 * @example const { env } = await secretEnv(rc, { app: "demo", holder: "charge", where: "demo.charge", secrets }, fn.spec.env);
 */
export async function secretEnv(rc: Pick<RunContext, "env" | "config">, of: SecretsOf, base: Readonly<Record<string, string>> = {}): Promise<CallEnv> {
  if (of.secrets.length === 0) return { env: { ...base }, secrets: {}, secretValues: [] };
  const names = of.secrets.flatMap((s) => (s.source.kind === "name" ? [s.source.name] : []));
  const named = await namedValues(rc.env, names, of.where);
  const local = rc.config.localSecrets[of.app]?.[of.holder] ?? [];
  const secrets: Record<string, string> = {};
  const secretValues: string[] = [];
  of.secrets.forEach((secret, i) => {
    const source = secret.source;
    if (source.kind === "name") {
      const values = named[source.name]!;
      const lacking = source.requiredKeys.filter((k) => !Object.hasOwn(values, k));
      if (lacking.length)
        throw new NotFoundError(`${of.where}: secret "${source.name}" has no key ${lacking.join(", ")} (it has ${Object.keys(values).join(", ")})`, {
          secret: source.name,
          keys: lacking,
        });
      Object.assign(secrets, values);
      secretValues.push(...Object.values(values), ...(former.get(inEnvironment(rc.env, source.name)) ?? []));
      return;
    }
    const values = local[i];
    if (!values) throw new NotFoundError(`${of.where}: the values of ${secret.describe()} were not sent with the app; serve or run it with the tandem CLI`);
    Object.assign(secrets, values);
    secretValues.push(...Object.values(values));
  });
  return { env: { ...base, ...secrets }, secrets, secretValues };
}

/**
 * Named secrets' values, by name (cached in this isolate for `SECRET_LIMITS.cacheMs`); throws `not_found` naming a
 * missing one and `where`, `not_configured` on a gateway without a secrets key.
 * @example const { npm } = await namedValues(c.env, ["npm"], "image 5d41402abc4b");
 */
export async function namedValues(env: Env, names: string[], where: string): Promise<Record<string, Record<string, string>>> {
  const now = Date.now();
  const found: Record<string, Record<string, string>> = {};
  const wanted = names.filter((name) => {
    const hit = cached.get(inEnvironment(env, name));
    if (hit && hit.until > now) found[name] = hit.values;
    return !(name in found);
  });
  if (wanted.length === 0) return found;
  const outcome = await secretStore(env).values(wanted);
  if ("refused" in outcome)
    throw new NotConfiguredError(`${where} declares secrets, and this gateway has no TANDEM_SECRETS_KEY to open them with (docs/secrets.md)`);
  if (outcome.missing.length) {
    // Every one that is missing at once: made one at a time, each would otherwise be told only after the one before.
    const { words, flag } = lookedIn(env);
    const [first, ...more] = outcome.missing;
    const named = more.length === 0 ? `no secret named "${first}"` : `no secrets named ${outcome.missing.map((n) => `"${n}"`).join(", ")}`;
    const make = outcome.missing.map((n) => `tandem secret create ${n} KEY=value${flag}`).join("; ");
    throw new NotFoundError(`${where}: ${named}${words} (${make} makes ${more.length === 0 ? "it" : "them"})`, {
      secret: first,
      secrets: outcome.missing,
    });
  }
  if (cached.size > 1_000) cached.clear(); // bounded
  for (const [name, values] of Object.entries(outcome.values)) {
    const key = inEnvironment(env, name);
    const earlier = cached.get(key);
    if (earlier) remember(key, Object.values(earlier.values));
    cached.set(key, { values, until: now + SECRET_LIMITS.cacheMs });
    found[name] = values;
  }
  return found;
}
