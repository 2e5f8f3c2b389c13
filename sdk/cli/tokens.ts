/**
 * `tandem token create|list|revoke|bootstrap`: API tokens of a gateway
 * (docs/security.md). A new token is printed once; `--save` keeps it in the
 * profile file for that gateway, where the SDK and CLI find it. A token works
 * for good unless made with `--expires`.
 */
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { GATEWAY_HELP, parseEnvName } from "./config.js";
import { Command, InvalidArgumentError } from "commander";
import type { HttpInvoker } from "../client.js";
import { InvalidOptionsError } from "../errors.js";
import { LOCAL_TOKEN_FILE, localTokenFile, profilePath, saveToken } from "../credentials.js";
import {
  NAME_PATTERN,
  TOKEN_ID_PATTERN,
  TOKEN_PATTERN,
  TOKEN_SCOPES,
  newToken,
  paths,
  tokenLifeProblem,
  type TokenCreateAnswer,
  type TokenInfo,
  type TokenScope,
} from "../protocol.js";
import { WORKER_NAME_PATTERN, wrangler } from "./wrangler.js";
import { listTime, style } from "./style.js";
import { parseChoice } from "./choice-option.js";

type GatewayOpts = { gateway?: string; token?: string; env?: string };

/** `--env` of list and revoke: the tokens are the gateway's, but an admin token limited to an environment addresses it. */
const ADDRESS_HELP = "the environment to address (default: TANDEM_ENV): an admin token limited to one lists and revokes that one's tokens, addressing it";

/**
 * Adds `tandem token …` to `program`; `clientOf` makes a client for a command's `--gateway` and `--token`;
 * `wranglerCommand` runs in wrangler's place for `bootstrap --put` (`TANDEM_WRANGLER`).
 */
export function addTokenCommands(program: Command, clientOf: (opts: GatewayOpts) => HttpInvoker, tokenHelp: string, wranglerCommand: string | undefined): void {
  const token = program.command("token").description("API tokens: who may call what on a gateway (docs/security.md)");
  const withGateway = (cmd: Command) => cmd.option("-g, --gateway <url>", GATEWAY_HELP).option("--token <token>", tokenHelp);

  withGateway(
    token
      .command("create")
      .description("make a token (needs an admin token); it is printed once, and with --save kept for this gateway in ~/.tandem.toml")
      .option("--name <name>", "a name to know it by in `tandem token list`")
      .option("--app <app...>", "only these apps (default: every app)", collectApps)
      .option(
        "--env <name>",
        "only this environment (default: every environment of the gateway); the request addresses it too, as an admin token limited to it must",
        parseEnvName,
      )
      .option("--scope <scope>", "what it may do: call functions, deploy and stop apps, or admin (tokens, planes)", parseChoice(TOKEN_SCOPES), "call")
      .option("--expires <duration>", "it stops working this long from now: 12h, 30d, … (default: never)", parseLife)
      .option("--save", "keep it in the profile file (~/.tandem.toml, or TANDEM_PROFILE) for this gateway"),
  ).action(async (opts: GatewayOpts & { name?: string; app?: string[]; env?: string; scope: TokenScope; expires?: string; save?: boolean }) => {
    // --env here is the environment the new token is limited to, and the one this request addresses: the tokens are
    // the gateway's whichever it addresses, and an admin token limited to that environment must address it.
    if (opts.name !== undefined && opts.name.trim() === "")
      throw new InvalidArgumentError('--name must not be empty (leave it out for a made-up name, "token <id>")');
    const client = clientOf(opts);
    const body = {
      ...(opts.name ? { name: opts.name } : {}),
      ...(opts.app ? { apps: opts.app } : {}),
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.expires ? { expiresIn: opts.expires } : {}),
      scope: opts.scope,
    };
    if (opts.save) checkProfileWritable();
    const created = (await client.request("POST", paths.tokens(), body)) as TokenCreateAnswer;
    console.log(
      `${style.ok("✓")} created token ${created.id} "${created.name}": scope ${created.scope}, ${created.apps ? `apps ${created.apps.join(", ")}` : "every app"}${created.env ? `, environment ${created.env} only` : ""}${
        created.expiresAt === undefined ? "" : `, until ${new Date(created.expiresAt).toISOString()}`
      }`,
    );
    console.log(`  ${style.bold(created.token)}`);
    console.log(style.dim("  shown once: the gateway keeps only its hash"));
    if (opts.save) {
      const file = saveToken(client.baseUrl, created.token, created.name);
      console.log(`  saved for ${client.baseUrl} in ${file}: the SDK and CLI send it there`);
      // A saved token comes before this folder's admin token: say so where it has less than admin scope.
      const local = localTokenFile(client.baseUrl);
      if (local && created.scope !== "admin") {
        console.log(
          style.dim(`  commands here now send it instead of ${LOCAL_TOKEN_FILE}; for admin commands: TANDEM_TOKEN=$(cat ${LOCAL_TOKEN_FILE}) tandem …`),
        );
      }
    } else {
      console.log(style.dim(`  use it: export TANDEM_TOKEN=${created.token}   (or create it with --save)`));
    }
  });

  withGateway(
    token
      .command("list")
      .description("the gateway's tokens (never their secrets); needs an admin token")
      .option("--env <name>", ADDRESS_HELP, parseEnvName)
      .option("--json", "print JSON"),
  ).action(async (opts: GatewayOpts & { json?: boolean }) => {
    const { tokens } = (await clientOf(opts).request("GET", paths.tokens())) as { tokens: TokenInfo[] };
    if (opts.json) return console.log(JSON.stringify(tokens, null, 2));
    if (tokens.length === 0) return console.log("no tokens yet (the gateway's bootstrap admin token is not listed); tandem token create makes one");
    console.log(
      `${"id".padEnd(20)} ${"name".padEnd(20)} ${"scope".padEnd(7)} ${"apps".padEnd(24)} ${"env".padEnd(12)} ${"created".padEnd(20)} ${"last used".padEnd(20)} expires`,
    );
    const now = Date.now();
    for (const t of tokens) {
      const when = (ms: number | null) => (ms === null ? "never" : listTime(ms));
      const expires = t.expiresAt === undefined ? "never" : `${t.expiresAt <= now ? "expired " : ""}${listTime(t.expiresAt)}`;
      // env: the one environment a token is limited to (`--env`), else all of the gateway's.
      console.log(
        `${t.id.padEnd(20)} ${t.name.slice(0, 20).padEnd(20)} ${t.scope.padEnd(7)} ${(t.apps?.join(",") ?? "all").slice(0, 24).padEnd(24)} ${(t.env ?? "all").padEnd(12)} ${when(t.createdAt).padEnd(20)} ${when(t.lastUsedAt).padEnd(20)} ${expires}`,
      );
    }
  });

  withGateway(
    token
      .command("revoke")
      .description("revoke a token: it stops working within 10 seconds; needs an admin token")
      .argument("<id>", "the token's id (tk-…)")
      .option("--env <name>", ADDRESS_HELP, parseEnvName),
  ).action(async (id: string, opts: GatewayOpts) => {
    // A whole token pasted here is named by its id only: its secret is not printed back.
    const whole = TOKEN_PATTERN.exec(id.trim());
    if (whole) throw new InvalidArgumentError(`that is a whole token: revoke takes its id, ${whole[1]} (the part before the dot)`);
    if (!TOKEN_ID_PATTERN.test(id)) throw new InvalidArgumentError(`"${id}" is not a token id (tk- and 16 characters; tandem token list shows them)`);
    const revoked = (await clientOf(opts).request("DELETE", paths.token(id))) as TokenInfo;
    console.log(`revoked token ${revoked.id} "${revoked.name}"`);
  });

  token
    .command("bootstrap")
    .description("make the first admin token of a deployed gateway: it is set as the Worker's TANDEM_ADMIN_TOKEN secret")
    .option("--name <worker>", "the Worker's name", workerName, "tandem-gateway")
    .option("--put", "run `wrangler secret put TANDEM_ADMIN_TOKEN` now, with your Cloudflare credentials")
    .action(async (opts: { name: string; put?: boolean }) => {
      const { token: admin } = newToken();
      console.log(`a new admin token for the Worker ${opts.name} (shown once):`);
      console.log(`  ${style.bold(admin)}`);
      if (!opts.put) {
        console.log(`give it to the Worker: echo '${admin}' | npx wrangler secret put TANDEM_ADMIN_TOKEN --name ${opts.name}`);
        console.log("then: TANDEM_TOKEN=<it> tandem token create --gateway https://… --scope call --app <app> --save");
        return;
      }
      // The value goes on wrangler's stdin, never on a command line; TANDEM_WRANGLER stands in for it as for deploy.
      const code = await wrangler(["secret", "put", "TANDEM_ADMIN_TOKEN", "--name", opts.name], `${admin}\n`, wranglerCommand);
      if (code !== 0) throw new Error(`wrangler secret put exited with ${code}; the Worker has no new admin token`);
      console.log(`${style.ok("✓")} set as TANDEM_ADMIN_TOKEN of ${opts.name}; TANDEM_TOKEN=<it> tandem token create --gateway https://… makes the others`);
    });
}

function workerName(value: string): string {
  if (!WORKER_NAME_PATTERN.test(value)) throw new InvalidArgumentError("must be a Worker's name: lowercase letters, digits and '-', such as tandem-gateway");
  return value;
}

function parseLife(value: string): string {
  const problem = tokenLifeProblem(value);
  if (problem) throw new InvalidArgumentError(problem);
  return value.trim();
}

function collectApps(value: string, previous: string[] | undefined): string[] {
  for (const app of value.split(",")) {
    if (!NAME_PATTERN.test(app)) throw new InvalidArgumentError(`"${app}" is not an app name`);
  }
  return [...(previous ?? []), ...value.split(",")];
}

/**
 * Refuses a `--save` whose profile file cannot be written, before the token is made: one made, then not saved, was
 * left live and printed under an error, where the command said it had failed.
 */
function checkProfileWritable(): void {
  const path = profilePath()!;
  let why: string | undefined;
  try {
    if (!existsSync(path)) {
      if (!statSync(dirname(path)).isDirectory()) why = `${dirname(path)} is a file, not a folder`;
      else accessSync(dirname(path), constants.W_OK);
    } else if (statSync(path).isDirectory()) why = "it is a directory";
    else accessSync(path, constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    why = code === "ENOENT" ? `its folder ${dirname(path)} does not exist` : `it cannot be written (${code})`;
  }
  if (why)
    throw new InvalidOptionsError(
      `--save: the profile file ${path}: ${why}, so no token was made; set TANDEM_PROFILE to a file you can write, or leave out --save`,
    );
}
