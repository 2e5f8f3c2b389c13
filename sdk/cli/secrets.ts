/**
 * `tandem secret create|list|delete`: a gateway's named secrets
 * (docs/secrets.md). Values are sent once, over the API, and never shown
 * again: the list has names, keys and times.
 */
import { withGatewayOptions } from "./config.js";
import { Command, InvalidArgumentError } from "commander";
import type { HttpInvoker } from "../client.js";
import { NAME_PATTERN, SECRET_KEY_PATTERN, SECRET_PROTO_KEY_REFUSED, paths, type SecretInfo } from "../protocol.js";
import { parseDotenv } from "../secret.js";
import { andList, readSecretsFile } from "./secret-values.js";
import { listTime, style } from "./style.js";

type GatewayOpts = { gateway?: string; token?: string; env?: string };

/** Adds `tandem secret …` to `program`; `clientOf` makes a client for a command's `--gateway` and `--token`. */
export function addSecretCommands(program: Command, clientOf: (opts: GatewayOpts) => HttpInvoker, tokenHelp: string): void {
  const secret = program.command("secret").description("named secrets, read as process.env.KEY by the functions that declare them (docs/secrets.md)");
  const withGateway = (cmd: Command) => withGatewayOptions(cmd, tokenHelp);

  withGateway(
    secret
      .command("create")
      .description("store a secret (needs a deploy or admin token that reaches every app); its values are never shown again")
      .argument("<name>", "the secret's name, as Secret.fromName(name) declares it")
      .argument("[pairs...]", "KEY=VALUE pairs")
      .option("--from-dotenv <file>", "read KEY=VALUE lines from a dotenv file")
      .option("--from-json <file>", "read a JSON object of string values")
      .option("--force", "replace a secret of that name, if there is one"),
  ).action(async (name: string, pairs: string[], opts: GatewayOpts & { fromDotenv?: string; fromJson?: string; force?: boolean }) => {
    if (!NAME_PATTERN.test(name)) throw new InvalidArgumentError(`"${name}" is not a secret name (1-64 letters, digits, '-' or '_')`);
    const values = { ...(opts.fromDotenv ? parseDotenv(readText(opts.fromDotenv), opts.fromDotenv) : {}), ...(opts.fromJson ? readJson(opts.fromJson) : {}) };
    const given = new Set<string>(); // a pair overrides a file's key, but not another pair: one of the two is a slip
    for (const pair of pairs) {
      const at = pair.indexOf("=");
      const key = at < 0 ? pair : pair.slice(0, at);
      if (at < 0 || !SECRET_KEY_PATTERN.test(key)) throw new InvalidArgumentError(`"${key}" is not KEY=VALUE with KEY an environment variable name`);
      if (key === "__proto__") throw new InvalidArgumentError(SECRET_PROTO_KEY_REFUSED);
      if (given.has(key)) throw new InvalidArgumentError(`${key} is given twice; give each key once`);
      given.add(key);
      values[key] = pair.slice(at + 1);
    }
    if (Object.keys(values).length === 0) throw new InvalidArgumentError(`give the secret at least one KEY=VALUE (or --from-dotenv FILE, --from-json FILE)`);
    const created = (await clientOf(opts).request("POST", paths.secrets(), { name, values, ...(opts.force ? { force: true } : {}) })) as SecretInfo;
    console.log(`${style.ok("✓")} secret ${created.name}: ${created.keys.join(", ")}`);
    // Taken, as asked: but what requires a key it lacks fails from now on, and says so only as it runs.
    for (const { app, holders, keys } of created.lacking ?? []) {
      const one = holders.length === 1;
      const them = keys.length === 1 ? "it" : "them";
      console.log(
        style.warn(
          `⚠ app "${app}": ${andList(holders)} require${one ? "s" : ""} key${keys.length === 1 ? "" : "s"} ${keys.join(", ")}, which secret ${created.name} now lacks: ${one ? "its" : "their"} runs fail until it has ${them} (add ${them} with --force, with the other keys)`,
        ),
      );
    }
    sayWarmContainersKeep(created, "old", "gives them the new ones now", opts.env);
  });

  withGateway(secret.command("list").description("the gateway's secrets: names, keys and times, never values").option("--json", "print JSON")).action(
    async (opts: GatewayOpts & { json?: boolean }) => {
      const { secrets } = (await clientOf(opts).request("GET", paths.secrets())) as { secrets: SecretInfo[] };
      if (opts.json) return console.log(JSON.stringify(secrets, null, 2));
      if (secrets.length === 0) return console.log("no secrets yet; tandem secret create NAME KEY=VALUE makes one");
      console.log(`${"name".padEnd(24)} ${"created".padEnd(17)} ${"updated".padEnd(17)} keys`);
      for (const s of secrets) console.log(`${s.name.padEnd(24)} ${listTime(s.createdAt).padEnd(17)} ${listTime(s.updatedAt).padEnd(17)} ${s.keys.join(", ")}`);
    },
  );

  withGateway(
    secret.command("delete").description("delete a secret; functions that declare it fail to load until it is made again").argument("<name>", "the secret"),
  ).action(async (name: string, opts: GatewayOpts) => {
    if (!NAME_PATTERN.test(name)) throw new InvalidArgumentError(`"${name}" is not a secret name (1-64 letters, digits, '-' or '_')`);
    const removed = (await clientOf(opts).request("DELETE", paths.secret(name))) as SecretInfo;
    console.log(`deleted secret ${removed.name} (${removed.keys.join(", ")})`);
    // Rotating a leaked key by deleting it and making it again leaves running containers with the old one.
    sayWarmContainersKeep(removed, "deleted", "stops them now", opts.env);
  });
}

/** For each app whose plane functions declare the secret (`warmContainersKeepOld`): its running containers keep the values they started with. */
function sayWarmContainersKeep(answer: SecretInfo, values: "old" | "deleted", rollover: string, env: string | undefined): void {
  for (const app of answer.warmContainersKeepOld ?? [])
    console.log(
      `app "${app}": any of its containers already running keep the ${values} values until they scale down (60 s idle by default); tandem app rollover ${app}${env ? ` --env ${env}` : ""} ${rollover}`,
    );
}

function readText(file: string): string {
  try {
    return readSecretsFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new InvalidArgumentError(code ? `cannot read ${file}: ${code}` : (err as Error).message);
  }
}

function readJson(file: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readText(file));
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw err;
    throw new InvalidArgumentError(`${file} is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed) || Object.values(parsed).some((v) => typeof v !== "string"))
    throw new InvalidArgumentError(`${file} must hold a JSON object of string values ({ "KEY": "value" })`);
  if (Object.hasOwn(parsed, "__proto__")) throw new InvalidArgumentError(`${file}: ${SECRET_PROTO_KEY_REFUSED}`);
  return parsed as Record<string, string>;
}
