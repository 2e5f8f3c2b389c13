/**
 * `tandem calls APP`: an app's calls, latest first, of a function, status or kind (`GET /v1/apps/:app/calls`): a
 * scheduled job's last runs, the calls that failed in the last hour, a page at a time.
 */
import { Command, InvalidArgumentError } from "commander";
import type { HttpInvoker } from "../client.js";
import { NotFoundError } from "../errors.js";
import {
  CALL_CURSOR_PATTERN,
  CALL_KINDS,
  CALL_LIST_LIMITS,
  CALL_STATUSES,
  CallListQuerySchema,
  paths,
  type CallList,
  type CallListOptions,
  type CallSummary,
} from "../protocol.js";
import { parseChoice, parseAppName } from "./choice-option.js";
import { ENV_HELP, GATEWAY_HELP } from "./config.js";
import { printFailure } from "./failure.js";
import { refuseAsGatewayWould } from "./query-check.js";
import { style, visibleControls } from "./style.js";
import { formatMs } from "../value-text.js";

type CallsOpts = {
  gateway?: string;
  token?: string;
  env?: string;
  function?: string;
  status?: string;
  since?: string;
  kind?: CallListOptions["kind"];
  before?: number;
  cursor?: string;
  lines?: number;
  limit?: number;
  json?: boolean;
};

/** Adds `tandem calls` to `program`; `clientOf` makes a client for the command's `--gateway` and `--token`. */
export function addCallsCommand(
  program: Command,
  clientOf: (opts: { gateway?: string; token?: string; env?: string }) => HttpInvoker,
  tokenHelp: string,
): void {
  program
    .command("calls")
    .description("an app's calls, latest first: their status, attempts, timings and errors (tandem logs --call ID shows one's lines)")
    .argument("<app>", "the app", parseAppName)
    .option("--function <name>", "only this function (a class method: Class.method; a class: all its methods)")
    .option("--status <status>", `only ${CALL_STATUSES.join(", ")}; several with commas (failed,timed_out)`, parseStatuses)
    .option("--since <when>", 'only calls made after this: a duration ("2h", "30m", "7d") or a date')
    .option("--kind <kind>", `only calls made so: ${CALL_KINDS.join(", ")} (scheduled: a schedule's runs)`, parseChoice(CALL_KINDS))
    .option("--before <ms>", "only calls made before this time, ms since the epoch", parseTime)
    .option("--cursor <next>", "the page after another (the listing's last line, `more:`, gives it)", parseCursor)
    .option("-n, --lines <n>", `how many (default ${CALL_LIST_LIMITS.defaultLimit}, at most ${CALL_LIST_LIMITS.maxLimit})`, parseLimit)
    .option("--limit <n>", "the same as -n, named as the API names it", parseLimit)
    .option("--json", "print the answer as JSON")
    .option("-g, --gateway <url>", GATEWAY_HELP)
    .option("--token <token>", tokenHelp)
    .option("--env <name>", ENV_HELP)
    .action(async (app: string, opts: CallsOpts) => {
      if (opts.lines !== undefined && opts.limit !== undefined && opts.lines !== opts.limit)
        throw new InvalidArgumentError(`-n ${opts.lines} and --limit ${opts.limit} ask for two counts; give one`);
      const lines = opts.lines ?? opts.limit;
      const query: CallListOptions = {
        ...(opts.function === undefined ? {} : { function: opts.function }),
        ...(opts.status === undefined ? {} : { status: opts.status }),
        ...(opts.since === undefined ? {} : { since: opts.since }),
        ...(opts.kind === undefined ? {} : { kind: opts.kind }),
        ...(opts.before === undefined ? {} : { before: opts.before }),
        ...(opts.cursor === undefined ? {} : { cursor: opts.cursor }),
        ...(lines === undefined ? {} : { limit: lines }),
      };
      const asked = Object.fromEntries(Object.entries(query).map(([key, value]) => [key, String(value)]));
      refuseAsGatewayWould(CallListQuerySchema, asked, Object.fromEntries(Object.entries(asked).map(([key, value]) => [key, [OPTION_OF[key] ?? key, value]])));
      let list: CallList;
      try {
        list = (await clientOf(opts).request("GET", paths.appCalls(app, query))) as CallList;
      } catch (err) {
        // A function the app does not have: nothing to list, as `tandem logs --function` says it (exit 1, README).
        if (!(err instanceof NotFoundError && err.details?.function !== undefined)) throw err;
        printFailure(err);
        process.exitCode = 1;
        return;
      }
      if (opts.json) return console.log(JSON.stringify(list, null, 2));
      if (list.calls.length === 0) return console.log(`no calls of app ${app}${filtersSaid(query)} in the time calls are kept`);
      console.log(
        style.dim(
          `${"made".padEnd(24)} ${"call".padEnd(29)} ${"function".padEnd(20)} ${"kind".padEnd(9)} ${"status".padEnd(9)} tries ${"took".padStart(8)}  error`,
        ),
      );
      for (const call of list.calls) console.log(callLine(call));
      if (list.next !== null) console.log(style.dim(`more: tandem calls ${app}${argsOf(query, opts)} --cursor ${list.next}`));
    });
}

/** One call as `tandem calls` lists it. */
export function callLine(call: CallSummary): string {
  const made = new Date(call.createdAt).toISOString(); // as tandem logs shows a time: UTC, said so
  const took = call.finishedAt === null ? "" : formatMs(call.finishedAt - (call.startedAt ?? call.createdAt));
  const status =
    call.status === "succeeded" ? style.ok(call.status.padEnd(9)) : TERMINAL_FAILED.has(call.status) ? style.err(call.status.padEnd(9)) : call.status.padEnd(9);
  // On one line of its own: a tab would shift the columns, as any control character would.
  const error = call.error ? visibleControls(`${call.error.code}: ${call.error.message.split("\n")[0]!}`.replaceAll("\t", " ")).slice(0, 120) : "";
  return `${made} ${call.callId.padEnd(29)} ${call.function.padEnd(20)} ${call.kind.padEnd(9)} ${status} ${String(call.attempts).padStart(5)} ${took.padStart(8)}  ${error}`;
}

const TERMINAL_FAILED: ReadonlySet<string> = new Set(["failed", "timed_out", "cancelled"]);

function filtersSaid(query: CallListOptions): string {
  const said = [
    query.function === undefined ? "" : `of ${query.function}`,
    query.status === undefined ? "" : query.status.replaceAll(",", " or "),
    query.since === undefined ? "" : `since ${query.since}`,
    query.kind === undefined ? "" : `made by ${query.kind}`,
    query.before === undefined ? "" : `before ${new Date(query.before).toISOString()}`,
  ].filter(Boolean);
  return said.length ? ` (${said.join(", ")})` : "";
}

/** The options of the command that asks for the next page: the same filters, gateway and environment (never the token). */
function argsOf(query: CallListOptions, opts: CallsOpts): string {
  return [
    query.function === undefined ? "" : ` --function ${query.function}`,
    query.status === undefined ? "" : ` --status ${query.status}`,
    query.since === undefined ? "" : ` --since ${JSON.stringify(query.since)}`,
    query.kind === undefined ? "" : ` --kind ${query.kind}`,
    query.before === undefined ? "" : ` --before ${query.before}`,
    query.limit === undefined ? "" : ` -n ${query.limit}`,
    opts.gateway === undefined ? "" : ` -g ${opts.gateway}`,
    opts.env === undefined ? "" : ` --env ${opts.env}`,
  ].join("");
}

/** Each field of the call list query with its option. */
const OPTION_OF: Record<string, string> = {
  function: "--function",
  status: "--status",
  since: "--since",
  kind: "--kind",
  before: "--before",
  cursor: "--cursor",
  limit: "-n",
};

function parseLimit(value: string): number {
  const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= CALL_LIST_LIMITS.maxLimit)) throw new InvalidArgumentError(`must be a whole number from 1 to ${CALL_LIST_LIMITS.maxLimit}`);
  return n;
}

/** One status or several with commas, each checked as `--status` takes one (with the nearest to a misspelt one). */
function parseStatuses(value: string): string {
  return value
    .split(",")
    .map((status) => parseChoice(CALL_STATUSES)(status.trim()))
    .join(",");
}

function parseCursor(value: string): string {
  if (!CALL_CURSOR_PATTERN.test(value)) throw new InvalidArgumentError("must be a listing's next, as its `more:` line gives it");
  return value;
}

function parseTime(value: string): number {
  if (!/^\d{1,15}$/.test(value)) throw new InvalidArgumentError("must be a time in ms since the epoch");
  return Number(value);
}
