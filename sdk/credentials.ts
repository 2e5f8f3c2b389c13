/**
 * Which API token a client sends to a gateway, found the way every SDK, the
 * CLI and `connect()` find it: the option given in code, then `TANDEM_TOKEN`,
 * then the profile file that `tandem token create --save` writes (by default
 * `~/.tandem.toml`, tokens by gateway), then, for a gateway on this machine
 * only, the local admin token `tandem serve` keeps in `.tandem/token`. Files are
 * read in Node only (through `process.getBuiltinModule`, so this module stays
 * Web-standard and bundles for workerd and browsers, where only the option and
 * the environment count).
 */
import { parse, stringify } from "smol-toml";
import { InvalidOptionsError } from "./errors.js";
import { TOKEN_PATTERN, notAnApiToken } from "./protocol.js";

/** Where `tandem serve` keeps the local gateway's admin token, relative to the folder it runs in. */
export const LOCAL_TOKEN_FILE = ".tandem/token";

/** Where a running `tandem serve` says where it serves (`{"url", "pid"}`), relative to the folder it runs in. */
export const LOCAL_GATEWAY_FILE = ".tandem/gateway.json";

/** The profile file's default name, in the home folder; `TANDEM_PROFILE` names another. */
export const PROFILE_FILE = ".tandem.toml";

interface NodeBits {
  env: Record<string, string | undefined>;
  cwd(): string;
  fs: {
    readFileSync(path: string, encoding: "utf8"): string;
    writeFileSync(path: string, text: string, options?: { mode?: number }): void;
    existsSync(path: string): boolean;
  };
  home: string;
}

/** What Node offers this process, or undefined in workerd and browsers. */
function node(): NodeBits | undefined {
  const proc = (
    globalThis as {
      process?: { env?: Record<string, string | undefined>; cwd?: () => string; getBuiltinModule?: (name: string) => unknown; versions?: { node?: string } };
    }
  ).process;
  if (!proc?.versions?.node || !proc.getBuiltinModule || !proc.cwd) return undefined;
  const fs = proc.getBuiltinModule("node:fs") as NodeBits["fs"];
  const os = proc.getBuiltinModule("node:os") as { homedir(): string };
  return { env: proc.env ?? {}, cwd: proc.cwd, fs, home: os.homedir() };
}

/** The profile file this process uses: `TANDEM_PROFILE`, else `~/.tandem.toml`; undefined outside Node. */
export function profilePath(): string | undefined {
  const n = node();
  if (!n) return undefined;
  return n.env.TANDEM_PROFILE || `${n.home}/${PROFILE_FILE}`;
}

/**
 * The token to send to `gatewayUrl`, or undefined when none is found.
 * @example
 * const token = tokenFor("http://127.0.0.1:8787"); // TANDEM_TOKEN, the profile's, or .tandem/token
 */
export function tokenFor(gatewayUrl: string, explicit?: string): string | undefined {
  return findToken(gatewayUrl, explicit)?.token;
}

/** Where a token sent to a gateway came from, as `findToken` found it. */
export type TokenSource = "option" | "TANDEM_TOKEN" | "profile" | "local";

/** A token `findToken` found, where, and (from a file) which file. */
export interface FoundToken {
  token: string;
  source: TokenSource;
  file?: string;
}

/**
 * The token to send to `gatewayUrl` and where it was found (`tokenFor`'s order), or undefined when none is.
 * @example
 * findToken("http://127.0.0.1:8787") // { token: "tk-….ts-…", source: "profile", file: "/home/ada/.tandem.toml" }
 */
export function findToken(gatewayUrl: string, explicit?: string): FoundToken | undefined {
  if (explicit !== undefined) return { token: checkToken(explicit, "the token option"), source: "option" };
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  if (env?.TANDEM_TOKEN) return { token: checkToken(env.TANDEM_TOKEN, "TANDEM_TOKEN"), source: "TANDEM_TOKEN" };
  const n = node();
  if (!n) return undefined;
  const saved = readProfile(n)[normalise(gatewayUrl)]?.token;
  if (saved) {
    const profile = profilePath()!;
    return { token: checkToken(saved, `${profile} (gateway ${normalise(gatewayUrl)})`), source: "profile", file: profile };
  }
  const file = localTokenFile(gatewayUrl);
  if (file) return { token: checkToken(n.fs.readFileSync(file, "utf8").trim(), file), source: "local", file };
  return undefined;
}

let servedHere: { at: number; cwd: string; url: string | undefined } | undefined;

/**
 * The URL a `tandem serve` running in this folder serves at (`.tandem/gateway.json`), so that the CLI and the SDK
 * find one started with `--port`; undefined outside Node, without the file, or when the serve that wrote it is gone
 * (killed before it could remove it). Read at most once a second.
 * @example resolveGatewayUrl() // --gateway, else TANDEM_GATEWAY, else localGatewayUrl(), else http://127.0.0.1:8787
 */
export function localGatewayUrl(): string | undefined {
  const n = node();
  if (!n) return undefined;
  const cwd = n.cwd();
  if (servedHere && servedHere.cwd === cwd && Date.now() - servedHere.at < 1000) return servedHere.url;
  let url: string | undefined;
  try {
    const file = `${cwd}/${LOCAL_GATEWAY_FILE}`;
    if (n.fs.existsSync(file)) {
      const said = JSON.parse(n.fs.readFileSync(file, "utf8")) as { url?: unknown; pid?: unknown };
      if (typeof said.url === "string" && typeof said.pid === "number" && processAlive(said.pid)) url = said.url;
    }
  } catch {
    url = undefined; // half written, or not ours: as if there were none
  }
  servedHere = { at: Date.now(), cwd, url };
  return url;
}

/** Whether process `pid` runs on this machine (one of another user's counts: it is alive). */
export function processAlive(pid: number): boolean {
  try {
    (globalThis as unknown as { process: { kill(pid: number, signal: number): void } }).process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM"; // alive, another user's
  }
}

/**
 * The local admin token's file (`.tandem/token` in this folder) when `gatewayUrl` is on this machine and the file
 * exists: the local admin token goes only to a gateway on this machine, never to one elsewhere.
 */
export function localTokenFile(gatewayUrl: string): string | undefined {
  const n = node();
  if (!n || !isLoopback(gatewayUrl)) return undefined;
  const file = `${n.cwd()}/${LOCAL_TOKEN_FILE}`;
  return n.fs.existsSync(file) ? file : undefined;
}

/**
 * What to add to a 401 or 403 answered to a token from the profile file: which token that was, and how to send
 * another (a saved token is sent before this folder's admin token, so one saved with less scope hides it).
 * @example refusedTokenHint(found, "http://127.0.0.1:8787") // "; the token sent is the one saved for … in …"
 */
export function refusedTokenHint(found: FoundToken | undefined, gatewayUrl: string): string {
  // This folder's admin token, made by the serve started here: another serve's gateway (another folder's, or this
  // one's started again elsewhere) knows another.
  if (found?.source === "local")
    return (
      `; the token sent is this folder's ${LOCAL_TOKEN_FILE}, the admin token of the tandem serve started here:` +
      ` a gateway started elsewhere has its own (in its folder's ${LOCAL_TOKEN_FILE}): send it with --token (the SDK's token option) or TANDEM_TOKEN`
    );
  if (found?.source !== "profile") return "";
  const sent = `; the token sent is the one saved for ${normalise(gatewayUrl)} in ${found.file}`;
  // Only where this folder has an admin token is there one the saved token hid.
  if (!localTokenFile(gatewayUrl)) return `${sent}: send another with --token or TANDEM_TOKEN`;
  return (
    `${sent}, which comes before this folder's ${LOCAL_TOKEN_FILE}: send another with --token or TANDEM_TOKEN` +
    ` (this folder's admin token: TANDEM_TOKEN=$(cat ${LOCAL_TOKEN_FILE}))`
  );
}

/** Saves `token` for `gatewayUrl` in the profile file (created with mode 600), replacing one saved before; returns the file. */
export function saveToken(gatewayUrl: string, token: string, name: string): string {
  const n = node();
  const path = profilePath();
  if (!n || !path) throw new InvalidOptionsError("a token can be saved to the profile file only from Node");
  const profile = readProfile(n);
  profile[normalise(gatewayUrl)] = { token, name };
  const text = `# Tandem API tokens by gateway, written by \`tandem token create --save\`. Keep this file private.\n${stringify({ gateways: profile })}\n`;
  n.fs.writeFileSync(path, text, { mode: 0o600 });
  return path;
}

function readProfile(n: NodeBits): Record<string, { token?: string; name?: string }> {
  const path = n.env.TANDEM_PROFILE || `${n.home}/${PROFILE_FILE}`;
  if (!n.fs.existsSync(path)) return {};
  let parsed: { gateways?: Record<string, { token?: string; name?: string }> };
  try {
    parsed = parse(n.fs.readFileSync(path, "utf8")) as typeof parsed;
  } catch (err) {
    if ((err as { code?: string }).code === "EISDIR") throw new InvalidOptionsError(`the profile file ${path} is a directory: set TANDEM_PROFILE to a file`);
    throw new InvalidOptionsError(`the profile file ${path} is not valid TOML: ${(err as Error).message.split("\n")[0]}`);
  }
  return parsed.gateways ?? {};
}

function checkToken(token: unknown, from: string): string {
  const trimmed = typeof token === "string" ? token.trim() : undefined;
  if (trimmed === undefined || !TOKEN_PATTERN.test(trimmed)) {
    throw new InvalidOptionsError(`${from} ${notAnApiToken(trimmed ?? "")}; create one with \`tandem token create\``);
  }
  return trimmed;
}

/** A gateway URL as profiles key it: origin and path, no trailing slash. */
function normalise(url: string): string {
  return url.replace(/\/+$/, "");
}

function isLoopback(url: string): boolean {
  try {
    const host = new URL(url).hostname;
    return host === "localhost" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
  } catch {
    return false;
  }
}
