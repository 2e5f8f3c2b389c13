/**
 * `Secret`: values a function reads as `process.env.KEY`, in both tiers,
 * declared with the `secrets` option. A named secret lives encrypted in the
 * gateway (`tandem secret create`); a local one (`fromDict`, `fromDotenv`) is
 * read by the CLI when it loads the app, and sent with it at serve and run,
 * never written into a bundle or image. docs/secrets.md tells the whole model.
 */
import { SECRET_LIMITS } from "./defaults.js";
import { InvalidOptionsError, fromWireError, toWireError, type TandemError } from "./errors.js";
import { NAME_PATTERN, SECRET_KEY_PATTERN, SECRET_PROTO_KEY_REFUSED, reservedEnvName } from "./protocol.js";
import { valueText } from "./value-text.js";

const SECRET_BRAND = Symbol.for("tandem.secret");

/** What a `Secret` refers to. */
export type SecretSource =
  | { kind: "name"; name: string; requiredKeys: string[] }
  /** `values`: as given, where this runtime can see them (in workerd a value read from `process.env` is not). */
  | { kind: "dict"; values: Readonly<Record<string, string | undefined>> }
  /** `path`: as given, relative to the app file's folder; the CLI reads it. */
  | { kind: "dotenv"; path: string };

/**
 * A secret a function declares: `app.function({ secrets: [Secret.fromName("api")] }, …)`.
 * Later secrets in the list override earlier ones.
 */
export class Secret {
  readonly [SECRET_BRAND] = true;
  readonly source: SecretSource;

  private constructor(source: SecretSource) {
    this.source = source;
  }

  /**
   * A secret stored by the gateway under `name` (`tandem secret create api API_KEY=…`). Serve, run and deploy
   * fail when it is missing, or lacks one of `requiredKeys`, naming the function that declares it.
   * @example
   * export const charge = app.function({ secrets: [Secret.fromName("stripe", { requiredKeys: ["STRIPE_KEY"] })] }, () => process.env.STRIPE_KEY!.length);
   */
  static fromName(name: string, options: { requiredKeys?: string[] } = {}): Secret {
    if (typeof name !== "string" || !NAME_PATTERN.test(name))
      throw new InvalidOptionsError(`Secret.fromName(${valueText(name)}): a name is 1-64 letters, digits, '-' or '_', starting with a letter or digit`);
    const requiredKeys = options?.requiredKeys ?? [];
    if (!Array.isArray(requiredKeys) || requiredKeys.some((k) => typeof k !== "string" || !SECRET_KEY_PATTERN.test(k)))
      throw new InvalidOptionsError(`Secret.fromName("${name}"): "requiredKeys" must be a list of environment variable names`);
    return new Secret({ kind: "name", name, requiredKeys: [...requiredKeys] });
  }

  /**
   * A local secret from values in the app file, most often read from the environment of the `tandem` command.
   * @example
   * Secret.fromDict({ HF_TOKEN: process.env.HF_TOKEN })
   */
  static fromDict(values: Record<string, string | undefined>): Secret {
    if (typeof values !== "object" || values === null || Array.isArray(values))
      throw new InvalidOptionsError("Secret.fromDict: give an object of KEY: value strings");
    for (const [key, value] of Object.entries(values)) {
      if (!SECRET_KEY_PATTERN.test(key)) throw new InvalidOptionsError(`Secret.fromDict: "${key}" is not an environment variable name`);
      const reserved = reservedEnvName(key);
      if (reserved) throw new InvalidOptionsError(`Secret.fromDict: ${reserved}`);
      if (value !== undefined && typeof value !== "string") throw new InvalidOptionsError(`Secret.fromDict: the value of "${key}" must be a string`);
    }
    return new Secret({ kind: "dict", values: Object.freeze({ ...values }) });
  }

  /**
   * A local secret read from a dotenv file (default `.env`), relative to the app file's folder.
   * @example
   * app.function({ secrets: [Secret.fromDotenv()] }, () => process.env.DATABASE_URL)
   */
  static fromDotenv(path = ".env"): Secret {
    if (typeof path !== "string" || path === "") throw new InvalidOptionsError('Secret.fromDotenv: the path must be a file name, such as ".env"');
    return new Secret({ kind: "dotenv", path });
  }

  /** How it is named in messages: `secret "api"`, `Secret.fromDict`, `Secret.fromDotenv(".env")`. */
  describe(): string {
    const s = this.source;
    return s.kind === "name" ? `secret "${s.name}"` : s.kind === "dict" ? "Secret.fromDict" : `Secret.fromDotenv(${JSON.stringify(s.path)})`;
  }
}

/** True for a `Secret` (from any copy of the SDK). */
export function isSecret(value: unknown): value is Secret {
  return typeof value === "object" && value !== null && SECRET_BRAND in value;
}

/**
 * `text` with each of `values` (a call's secret values) replaced by `***`, longest first. A value of
 * `SECRET_LIMITS.minMaskedLength` characters or more is masked wherever it appears; a shorter one (1 to 3
 * characters) only where it stands as a whole token, with no letter, digit or `_` just before or after it, so that
 * a secret `"7"` masks `pin 7` but not `17 ms` or `v7`. An empty value masks nothing.
 * @example maskSecretValues("key k-123 refused", ["k-123"]); // "key *** refused"
 * @example maskSecretValues("pin 42, took 142 ms", ["42"]); // "pin ***, took 142 ms"
 */
export function maskSecretValues(text: string, values: readonly string[]): string {
  return secretMask(values)(text);
}

/**
 * {@link maskSecretValues} for many texts with the same `values`: sorted once (and a short value's pattern made the
 * first time it is needed), for every line of a container's output, say. Without a value it is the identity, so text
 * with no secrets pays nothing.
 * @example
 * const mask = secretMask(containerSecretValues);
 * container.onOutput((stream, line) => keep(stream, mask(line)));
 */
export function secretMask(values: readonly string[]): (text: string) => string {
  const steps = [...new Set(values)]
    .filter((v) => v.length > 0)
    .sort((a, b) => b.length - a.length)
    .map((value) => ({ value, short: value.length < SECRET_LIMITS.minMaskedLength, token: undefined as RegExp | undefined }));
  if (steps.length === 0) return (text) => text;
  return (text) => {
    let masked = text;
    for (const step of steps) {
      if (!masked.includes(step.value)) continue;
      masked = step.short ? masked.replace((step.token ??= wholeToken(step.value)), "***") : masked.split(step.value).join("***");
    }
    return masked;
  };
}

/** Matches `value` where no letter, digit or `_` touches it. */
function wholeToken(value: string): RegExp {
  return new RegExp(`(?<![\\p{L}\\p{N}_])${value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?![\\p{L}\\p{N}_])`, "gu");
}

/**
 * `err` with the secret `values` masked in every text of it that leaves: its message, the remote error's name,
 * message and stack, and every string in its details (a container's last log lines, what an app's own `TandemError`
 * carries), keys too. The same class, through its wire form; `err` itself when nothing changed.
 * @example throw maskedError(remoteErrorFrom(err), context.secretValues);
 */
export function maskedError(err: TandemError, values: readonly string[] | undefined): TandemError {
  if (!values?.length) return err;
  const mask = secretMask(values);
  // The code is one of a fixed set, never the app's text: masking it could only make it unknown.
  const { code, ...texts } = toWireError(err);
  const masked = maskedStrings(texts, mask, new Set());
  // An app's TandemError may carry a name of its own; its wire form does not, and the revived one has its class's.
  if (masked === texts && mask(err.name) === err.name) return err;
  return fromWireError({ code, ...(masked as typeof texts) });
}

/**
 * `value` with `mask` applied to every string in it, walking arrays and plain objects (their keys too); `value`
 * itself where nothing changed. Anything else (a class instance, a cycle met again) is left as it is.
 */
function maskedStrings(value: unknown, mask: (text: string) => string, walking: Set<object>): unknown {
  if (typeof value === "string") return mask(value);
  if (typeof value !== "object" || value === null || walking.has(value)) return value;
  const proto = Object.getPrototypeOf(value) as unknown;
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) return value;
  walking.add(value);
  let changed = false;
  const entries = Object.entries(value).map(([key, item]) => {
    const entry = [mask(key), maskedStrings(item, mask, walking)] as const;
    changed ||= entry[0] !== key || entry[1] !== item;
    return entry;
  });
  walking.delete(value);
  if (!changed) return value;
  return Array.isArray(value) ? entries.map(([, item]) => item) : Object.fromEntries(entries);
}

/**
 * A dotenv file's variables: `KEY=value` lines, `export ` before a key allowed, `#` comments (after a space, in an
 * unquoted value), values in single quotes as they are, in double quotes with `\n`, `\t`, `\"` and `\\` escapes
 * (and over several lines). Throws naming the line of anything else.
 * @example
 * parseDotenv('API_KEY=abc # the key\nexport MODE="demo"'); // { API_KEY: "abc", MODE: "demo" }
 */
export function parseDotenv(text: string, file = ".env"): Record<string, string> {
  const values: Record<string, string> = {};
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) throw new InvalidOptionsError(`${file}:${i + 1}: expected KEY=value`);
    const key = match[1]!;
    if (key === "__proto__") throw new InvalidOptionsError(`${file}:${i + 1}: ${SECRET_PROTO_KEY_REFUSED}`);
    let rest = match[2]!;
    const quote = rest[0];
    if (quote === '"' || quote === "'") {
      const start = i;
      // A quoted value may run over several lines, to its closing quote.
      let body = rest.slice(1);
      let end = closingQuote(body, quote);
      while (end < 0 && i + 1 < lines.length) {
        body += "\n" + lines[++i]!;
        end = closingQuote(body, quote);
      }
      if (end < 0) throw new InvalidOptionsError(`${file}:${start + 1}: the value of ${key} has no closing ${quote}`);
      const after = body.slice(end + 1).trim();
      if (after !== "" && !after.startsWith("#")) throw new InvalidOptionsError(`${file}:${i + 1}: unexpected text after the quoted value of ${key}`);
      const raw = body.slice(0, end);
      values[key] = quote === "'" ? raw : raw.replace(/\\([nrt"\\])/g, (_, c: string) => ({ n: "\n", r: "\r", t: "\t", '"': '"', "\\": "\\" })[c]!);
      continue;
    }
    const comment = rest.search(/\s#/);
    if (comment >= 0) rest = rest.slice(0, comment);
    values[key] = rest.trim();
  }
  return values;
}

function closingQuote(body: string, quote: string): number {
  for (let j = 0; j < body.length; j++) {
    if (quote === '"' && body[j] === "\\") j++;
    else if (body[j] === quote) return j;
  }
  return -1;
}
