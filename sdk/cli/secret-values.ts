/**
 * The CLI's side of secrets when it serves, runs or deploys an app: the local
 * key the local gateway seals them with, the values of local secrets
 * (`Secret.fromDict`, `Secret.fromDotenv`) read in Node and handed to workerd
 * in memory, and the check that every named secret a function declares is
 * on the gateway with the keys it requires.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { App } from "../app.js";
import { InvalidOptionsError } from "../errors.js";
import { paths, type SecretInfo } from "../protocol.js";
import { parseDotenv } from "../secret.js";
import type { LocalSecrets } from "../settings.js";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A file of secret values (a dotenv or JSON file), as text. One that is not UTF-8 throws, saying so, instead of
 * handing on U+FFFD in place of its bad bytes as part of a value; a byte-order mark is dropped.
 *
 * @example const values = parseDotenv(readSecretsFile(".env.stripe"), ".env.stripe");
 */
export function readSecretsFile(file: string): string {
  const bytes = readFileSync(file);
  try {
    return utf8.decode(bytes);
  } catch {
    throw new Error(`${file} is not UTF-8 text: save it as UTF-8`);
  }
}

/** The key the local gateway seals secrets with: `given` (TANDEM_SECRETS_KEY), else one kept in `.tandem/secrets-key` (made on first use, readable by its owner only). */
export function localSecretsKey(stateDir: string, given: string | undefined): string {
  if (given) return given;
  const file = join(stateDir, "secrets-key");
  if (existsSync(file)) {
    const saved = readFileSync(file, "utf8").trim();
    if (/^[0-9a-f]{64}$/i.test(saved)) return saved;
  }
  const key = randomBytes(32).toString("hex");
  writeFileSync(file, key + "\n", { mode: 0o600 });
  return key;
}

/**
 * The values of the apps' local secrets, read now: `apps[i]` was loaded from `appFiles[i]`, and a dotenv file is
 * found from its app file's folder. Throws naming the secret, the key and the function when one cannot be read.
 */
export function localSecretValues(apps: App[], appFiles: string[]): LocalSecrets {
  const out: LocalSecrets = {};
  apps.forEach((app, i) => {
    for (const { holder, what, secrets } of app.secretHolders()) {
      if (secrets.every((s) => s.source.kind === "name")) continue;
      out[app.name] ??= {};
      out[app.name]![holder] = secrets.map((secret) => {
        const source = secret.source;
        const where = `app "${app.name}": ${what}: ${secret.describe()}`;
        if (source.kind === "name") return null;
        if (source.kind === "dict") {
          const unset = Object.entries(source.values).find(([, v]) => v === undefined);
          if (unset) throw new InvalidOptionsError(`${where}: the value of ${unset[0]} is undefined (is it set in this shell's environment?)`);
          return source.values as Record<string, string>;
        }
        const file = resolve(dirname(appFiles[i]!), source.path);
        if (!existsSync(file)) throw new InvalidOptionsError(`${where}: ${file} does not exist`);
        let text: string;
        try {
          text = readSecretsFile(file);
        } catch (err) {
          throw new InvalidOptionsError(`${where}: ${(err as Error).message}`);
        }
        return parseDotenv(text, file);
      });
    }
  });
  return out;
}

/**
 * Throws naming every named secret an app declares that is not among `held` (what the gateway keeps), or that lacks
 * a key it requires, each once with everything that declares it and the command that makes it: all in one message,
 * so that one fix and one reload are enough (one a reload, each would be told only after the one before was made).
 * With `holder` (`tandem run`'s function, or its class), only what that declares: the run calls nothing else of its own.
 * With `env` (a deploy's `--env`, whose secrets `held` are), the message names that environment, and its commands make
 * the secret there.
 * @example checkNamedSecrets(apps, (await client.request("GET", paths.secrets())).secrets);
 */
export function checkNamedSecrets(apps: App[], held: SecretInfo[], holder?: string, env?: string): void {
  const holderName = env === undefined ? "the gateway" : `environment "${env}"`;
  const inEnv = env === undefined ? "" : ` --env ${env}`;
  const byName = new Map(held.map((s) => [s.name, s]));
  const problems: string[] = [];
  for (const app of apps) {
    // Each secret's declarers, and the keys they require, in the order the app declares them.
    const wanted = new Map<string, { declarers: string[]; keys: string[] }>();
    for (const { holder: declarer, what, secrets } of app.secretDeclarers()) {
      if (holder !== undefined && declarer !== holder) continue;
      for (const { source } of secrets) {
        if (source.kind !== "name") continue;
        let secret = wanted.get(source.name);
        if (!secret) wanted.set(source.name, (secret = { declarers: [], keys: [] }));
        if (!secret.declarers.includes(what)) secret.declarers.push(what);
        for (const key of source.requiredKeys) if (!secret.keys.includes(key)) secret.keys.push(key);
      }
    }
    for (const [name, { declarers, keys }] of wanted) {
      const who = `app "${app.name}": ${andList(declarers)}`;
      const found = byName.get(name);
      if (!found) {
        const pairs = keys.length > 0 ? keys.map((k) => `${k}=…`).join(" ") : "KEY=value";
        problems.push(
          `${who} declare${declarers.length === 1 ? "s" : ""} secret "${name}", which ${holderName} does not have; make it: tandem secret create ${name} ${pairs}${inEnv}`,
        );
        continue;
      }
      const lacking = keys.filter((k) => !found.keys.includes(k));
      if (lacking.length > 0)
        problems.push(
          `${who} require${declarers.length === 1 ? "s" : ""} key${lacking.length === 1 ? "" : "s"} ${lacking.join(", ")} of secret "${name}", which has ${found.keys.join(", ")}; add ${lacking.length === 1 ? "it" : "them"}: tandem secret create ${name} ${lacking.map((k) => `${k}=…`).join(" ")} --force${inEnv} (with the other keys)`,
        );
    }
  }
  if (problems.length === 1) throw new InvalidOptionsError(problems[0]!);
  if (problems.length > 1) throw new InvalidOptionsError(`${problems.length} secrets are missing or lack keys:\n${problems.map((p) => `  ${p}`).join("\n")}`);
}

/** `a`, `a and b`, `a, b and c`; past three, the first two and how many others (an app's every function may declare one). */
export function andList(items: string[]): string {
  if (items.length > 3) return `${items.slice(0, 2).join(", ")} and ${items.length - 2} others`;
  return items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

/** Whether any app declares a named secret (only then is the gateway asked for its list). */
export function declaresNamedSecrets(apps: App[]): boolean {
  return apps.some((app) => app.secretDeclarers().some((h) => h.secrets.some((s) => s.source.kind === "name")));
}

/** The secrets a gateway keeps (names and keys), asked with `token`. */
export async function heldSecrets(gatewayUrl: string, token: string): Promise<SecretInfo[]> {
  const res = await fetch(`${gatewayUrl.replace(/\/$/, "")}${paths.secrets()}`, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new InvalidOptionsError(`could not list the gateway's secrets to check the app's: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { secrets: SecretInfo[] }).secrets;
}
