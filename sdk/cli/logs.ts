/**
 * `tandem logs APP`: an app's log lines from both tiers (docs/observability.md),
 * filtered by function, call, container, source, time and text; `-f` follows
 * new lines as they come, until Ctrl-C (`-n 0 -f`: only the lines that come),
 * or with `--call`, until the call has ended and its last lines are printed.
 */
import { Command, InvalidArgumentError } from "commander";
import { ENV_HELP, GATEWAY_HELP } from "./config.js";
import type { HttpInvoker } from "../client.js";
import { DELIVERY_DEFAULTS, LOG_LIMITS } from "../defaults.js";
import { InvalidOptionsError, InvalidRequestError } from "../errors.js";
import { didYouMean } from "../nearest-name.js";
import {
  LOG_SOURCES,
  LogQuerySchema,
  SINCE_SPAN,
  logFunctionNames,
  paths,
  sinceDate,
  sinceInSpan,
  type AppManifest,
  type LogLine,
  type LogQueryOptions,
  type LogSource,
} from "../protocol.js";
import { printFailure } from "./failure.js";
import { style, visibleControls } from "./style.js";
import { parseChoice, parseAppName } from "./choice-option.js";
import { refuseAsGatewayWould } from "./query-check.js";

type LogsOpts = {
  gateway?: string;
  token?: string;
  function?: string;
  call?: string;
  container?: string;
  session?: string;
  source?: LogSource;
  since?: string;
  search?: string;
  lines?: number;
  /** `--limit`, an alias of `--lines` under the logs API's name for it. */
  limit?: number;
  follow?: boolean;
  json?: boolean;
};

/** Adds `tandem logs` to `program`; `clientOf` makes a client for the command's `--gateway` and `--token`. */
export function addLogsCommand(program: Command, clientOf: (opts: { gateway?: string; token?: string; env?: string }) => HttpInvoker, tokenHelp: string): void {
  program
    .command("logs")
    .description("an app's log lines, from both tiers: what its functions printed, and Tandem's lines about their calls")
    .argument("<app>", "the app", parseAppName)
    .option("--function <name>", "only this function (or class method, or web label; a class: all its methods and its containers)")
    .option("--call <id>", "only this call's lines")
    .option("--container <id>", "only this plane container's lines")
    .option(
      "--session <fingerprint>",
      "only this agent session's lines (its fingerprint: 12 hex digits, as each of its lines and the dashboard's agents page show it)",
    )
    .option("--source <source>", `only ${LOG_SOURCES.join(", ")}`, parseChoice(LOG_SOURCES))
    .option("--since <when>", 'only lines after this: a duration ("2h", "30m", "7d") or a date')
    .option("--search <text>", "only lines that contain this text (in any case)")
    .option("-n, --lines <n>", `the last n lines (default ${LOG_LIMITS.defaultLimit}, at most ${LOG_LIMITS.maxLimit}; 0 with -f: only new lines)`, parseCount)
    .option("--limit <n>", "alias of -n, --lines (the logs API's name for it: limit)", parseCount)
    .option("-f, --follow", "keep printing new lines as they come (Ctrl-C stops; with --call, it ends once the call has ended and its last lines are printed)")
    .option("--json", "print each line as JSON, its text exact (without it, control characters show as escapes: \\x1b)")
    .option("-g, --gateway <url>", GATEWAY_HELP)
    .option("--token <token>", tokenHelp)
    .option("--env <name>", ENV_HELP)
    .action(async (app: string, opts: LogsOpts) => {
      if (opts.limit !== undefined) {
        if (opts.lines !== undefined && opts.lines !== opts.limit)
          throw new InvalidOptionsError(`--limit is -n/--lines by another name: give one (got -n ${opts.lines} and --limit ${opts.limit})`);
        opts.lines = opts.limit;
      }
      const query: LogQueryOptions = {};
      if (opts.function !== undefined) query.function = opts.function;
      if (opts.call !== undefined) query.call = opts.call;
      if (opts.container !== undefined) query.container = opts.container;
      if (opts.session !== undefined) query.session = opts.session;
      if (opts.source !== undefined) query.source = opts.source;
      if (opts.since !== undefined) query.since = sinceHere(opts.since);
      if (opts.search !== undefined) query.search = opts.search;
      if (opts.lines === 0) {
        if (!opts.follow)
          throw new InvalidOptionsError(`-n 0 prints no line without -f: give -f with it to print only new lines, or -n from 1 to ${LOG_LIMITS.maxLimit}`);
        if (opts.since !== undefined)
          throw new InvalidOptionsError(
            `-n 0 -f prints only the lines that come from now on, so --since has nothing to add: leave it out, or give -n from 1 to ${LOG_LIMITS.maxLimit} with it`,
          );
        query.since = "0s"; // no earlier line: the follow starts from the gateway's now, not this machine's clock's
      } else if (opts.lines !== undefined) query.limit = opts.lines;
      if (opts.follow) query.follow = true;
      const client = clientOf(opts);
      // A call the ledger does not hold has no lines yet, and a follow of it would wait without a word: say why.
      const unrecorded = async () => opts.call !== undefined && (await callIsUnrecorded(client, opts.call));
      if (opts.follow && (await unrecorded())) console.error(style.warn(unrecordedNote(opts.call!, "following its lines anyway (Ctrl-C stops)")));
      // A misspelt --function matches no line: say so, as for a call, rather than print nothing.
      const unnamed = async () => (opts.function === undefined ? undefined : await unknownFunctionNote(client, app, opts.function));
      const followedUnnamed = opts.follow ? await unnamed() : undefined;
      if (followedUnnamed) console.error(style.warn(`${followedUnnamed.note}; following its lines anyway (Ctrl-C stops)${followedUnnamed.hint}`));
      let printed = 0;
      const path = paths.appLogs(app, query);
      refuseAsGatewayWould(LogQuerySchema, Object.fromEntries(new URL(path, "http://gateway").searchParams), optionsOf(opts));
      // A follow outlives a gateway's restart (`tandem serve` stopped and started again): it goes on where it was.
      const lost = () =>
        console.error(
          style.warn(
            `the gateway at ${client.baseUrl} went away; following again once it answers, for up to ${LOG_LIMITS.followReconnectMs / 1000} s (Ctrl-C stops)`,
          ),
        );
      try {
        for await (const line of opts.follow ? client.followLines(path, lost) : client.logLines(path)) {
          console.log(opts.json ? JSON.stringify(line) : formatLogLine(line));
          printed++;
        }
      } catch (err) {
        // Another app's call: this app holds no call of that id, as the README's exit codes say it (1), naming where it is.
        const of = err instanceof InvalidRequestError && opts.call !== undefined ? err.details?.app : undefined;
        if (typeof of !== "string") throw err;
        printFailure(`call ${opts.call} is of app "${of}", not "${app}": \`tandem logs ${of} --call ${opts.call}\` shows its lines`);
        process.exitCode = 1;
        return;
      }
      // Nothing printed for a call or a function there is none of: the command failed, and says so as every one does.
      if (!opts.follow && printed === 0 && (await unrecorded())) {
        printFailure(unrecordedNote(opts.call!, "so it has no lines to show"));
        process.exitCode = 1;
      }
      const printedUnnamed = !opts.follow && printed === 0 ? await unnamed() : undefined;
      if (printedUnnamed) {
        printFailure(`${printedUnnamed.note}, so it has no lines to show${printedUnnamed.hint}`);
        process.exitCode = 1;
      }
      // Nor for a container that never printed a line in this app: a mistyped id, or another app's container.
      if (!opts.follow && printed === 0 && process.exitCode !== 1 && opts.container !== undefined && (await containerIsUnknown(client, app, opts.container))) {
        printFailure(
          `app "${app}" has no line from container ${opts.container} in the time its lines are kept: the id is mistyped or the container is another app's (\`tandem logs ${app}\` shows each line's container)`,
        );
        process.exitCode = 1;
      }
    });
}

/**
 * Why `--function name` finds no line when the app has no function, class or web label of that name (its lines
 * carry one of those); undefined when it has one, or when the app is not found (the log query said so already).
 */
async function unknownFunctionNote(client: HttpInvoker, app: string, name: string): Promise<{ note: string; hint: string } | undefined> {
  let manifest: AppManifest;
  try {
    manifest = (await client.request("GET", paths.app(app))) as AppManifest;
  } catch {
    return undefined;
  }
  // A class method's name is `Class.method`; the class's own name selects its methods' lines and its containers'.
  const { known, listed } = logFunctionNames(
    manifest.functions.map((f) => f.name),
    manifest.endpoints.map((e) => e.label),
  );
  if (known.has(name)) return undefined;
  return { note: `app "${app}" has no function, class or web label "${name}" (${listed})`, hint: didYouMean(name, known) };
}

/** Whether the app's log holds no line at all from container `id` (whatever the other filters). */
async function containerIsUnknown(client: HttpInvoker, app: string, id: string): Promise<boolean> {
  for await (const _line of client.logLines(paths.appLogs(app, { container: id, limit: 1 }))) return false;
  return true;
}

/** Whether the gateway holds no record of call `id` (a 404 for it); any other answer is left to the log query. */
async function callIsUnrecorded(client: HttpInvoker, id: string): Promise<boolean> {
  try {
    await client.request("GET", paths.callRecord(id));
    return false;
  } catch (err) {
    return (err as { code?: string }).code === "not_found";
  }
}

function unrecordedNote(id: string, then: string): string {
  return `the gateway holds no call ${id}: the id is mistyped, the call ended longer ago than calls are kept, or it was made a moment ago without an Idempotency-Key (such a call is recorded once it has run for ${DELIVERY_DEFAULTS.keylessRecordWaitMs} ms, or as it ends); ${then}`;
}

/**
 * One line as the terminal shows it: time, where it came from, and the text (stderr and system lines coloured), its
 * control characters but tab shown as escapes (`visibleControls`), on a terminal or not: a function's text cannot
 * move the cursor, erase, recolour or retitle the terminal, now or when the saved output is shown later.
 * @example formatLogLine(line); // "2026-12-03T07:04:36.120Z shop.resize fc-01… c-9f2e (stdout) resized 3 images"
 */
export function formatLogLine(line: LogLine): string {
  // An agent's line: app/label and its session's fingerprint, as `tandem serve` prints it (with the id there).
  const where = visibleControls(
    line.session
      ? `${line.app}/${line.function} ${line.session}`
      : [line.function ? `${line.app}.${line.function}` : line.app, line.callId, line.containerId].filter(Boolean).join(" "),
  );
  // A line of several (a system line quoting a container's last lines): the rest indented under it, not bare.
  const body = line.text.split(/\r?\n/).map(visibleControls).join("\n    ");
  const text = line.source === "stderr" ? style.warn(body) : line.source === "system" ? style.dim(body) : body;
  return `${style.dim(new Date(line.time).toISOString())} ${where} (${line.tier}, ${line.source}) ${text}`;
}

/** Each field of the log query with its option, and the option's own value (what the user wrote, not what is sent). */
function optionsOf(opts: LogsOpts): Record<string, [string, unknown]> {
  return {
    function: ["--function", opts.function],
    call: ["--call", opts.call],
    container: ["--container", opts.container],
    session: ["--session", opts.session],
    source: ["--source", opts.source],
    since: ["--since", opts.since],
    search: ["--search", opts.search],
    limit: ["-n", opts.lines],
  };
}

/**
 * A `--since`, a date checked against `SINCE_SPAN` here, so the error quotes it as written: the query sends the time
 * it names in this machine's zone (`logQueryString`), as `tandem usage --since` reads it, not in the gateway's (UTC).
 */
function sinceHere(value: string): string {
  const bare = bareSinceProblem(value);
  if (bare) throw new InvalidOptionsError(`--since ${value}: ${bare}`);
  const date = sinceDate(value);
  if (date !== undefined && !sinceInSpan(date, Date.now())) throw new InvalidOptionsError(`--since must be ${SINCE_SPAN} (got "${value}")`);
  return value;
}

/** A bare number read as ms since 1970 names a time before 2001: meant as a duration without its unit, most likely. */
const BARE_SINCE_MIN_MS = 1e12;

/**
 * Why a `--since` that is a bare number too small to be a time anyone means is refused (`--since 90`: 90 ms after
 * 1970, so every line), saying what to write; undefined for any other value.
 * @example bareSinceProblem("90"); // 'a bare number is milliseconds since 1970 (90 is 1970-01-01T00:00:00.090Z): …'
 */
export function bareSinceProblem(value: string): string | undefined {
  if (!/^\d+$/.test(value.trim()) || Number(value) >= BARE_SINCE_MIN_MS) return undefined;
  const n = value.trim();
  const said = `a bare number is milliseconds since 1970 (${n} is ${new Date(Number(n)).toISOString()})`;
  // 0 with a unit is now: leaving --since out is what 0 would mean.
  if (Number(n) === 0) return `${said}: leave --since out for every line kept, or give a time that long ago ("2h", "7d"), or a date`;
  return `${said}: for a time that long ago give its unit ("${n}s", "${n}m", "${n}h", "${n}d"), or a date`;
}

function parseCount(value: string): number {
  // Digits only: Number() would read "" as 0, and "0x10" and "1e3" as numbers.
  const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n > LOG_LIMITS.maxLimit) throw new InvalidArgumentError(`must be a whole number from 0 (with -f) to ${LOG_LIMITS.maxLimit}`);
  return n;
}
