/**
 * `tandem dict create|list|get|items|clear|delete` and `tandem queue
 * create|list|len|peek|clear|delete`: a gateway's dicts and queues from the shell
 * (docs/dict-queue.md), through the SDK's `Dict` and `Queue` over
 * `/v1/dicts` and `/v1/queues`. Values print as JSON when JSON says them,
 * else as Node shows them (a `Date`, a `Map`, bytes).
 */
import { inspect } from "node:util";
import { withGatewayOptions } from "./config.js";
import { Command } from "commander";
import { Dict } from "../dict.js";
import { DICT_LIMITS, QUEUE_LIMITS } from "../defaults.js";
import { InvalidOptionsError, NotFoundError } from "../errors.js";
import { encodeValue } from "../protocol.js";
import { Queue } from "../queue.js";
import type { StoreOptions } from "../store-client.js";
import { addCreateCommand } from "./create-command.js";
import { printFailure } from "./failure.js";
import { listTime, style } from "./style.js";

type GatewayOpts = { gateway?: string; token?: string; env?: string };

/** Adds `tandem dict …` and `tandem queue …` to `program`; `optionsOf` gives the SDK options for a command's `--gateway` and `--token`. */
export function addDictQueueCommands(program: Command, optionsOf: (opts: GatewayOpts) => StoreOptions, tokenHelp: string): void {
  const withGateway = (cmd: Command) => withGatewayOptions(cmd, tokenHelp);

  const dict = program.command("dict").description("dicts: small shared state kept by the gateway (docs/dict-queue.md)");

  addCreateCommand(
    dict,
    "dict",
    withGateway,
    (name, existOk, opts: GatewayOpts) => Dict.create(name, { ...optionsOf(opts), existOk }),
    (info) => entries(info.len),
  );

  withGateway(dict.command("list").description("the gateway's dicts and their sizes").option("--json", "print JSON")).action(
    async (opts: GatewayOpts & { json?: boolean }) => {
      const dicts = await Dict.list(optionsOf(opts));
      if (opts.json) return console.log(JSON.stringify(dicts, null, 2));
      if (dicts.length === 0) return console.log("no dicts yet; tandem dict create NAME makes one");
      console.log(`${"name".padEnd(24)} ${"entries".padStart(8)}  created`);
      for (const d of dicts) console.log(`${d.name.padEnd(24)} ${String(d.len).padStart(8)}  ${listTime(d.createdAt)}`);
    },
  );

  withGateway(
    dict
      .command("get")
      .description("one key's value")
      .argument("<name>", "the dict")
      .argument("<key>", "the key (a string; with --json-key, JSON)")
      .option("--json-key", "read the key as JSON (a number, an array, an object)"),
  ).action(async (name: string, key: string, opts: GatewayOpts & { jsonKey?: boolean }) => {
    const parsed = opts.jsonKey ? parseKey(key) : key;
    const d = Dict.fromName(name, optionsOf(opts));
    const entry = await d.getEntry(parsed);
    // A key it does not hold is an answer, not a failed command: 1, as `tandem logs` naming nothing is, so a script
    // can tell it from a dict or gateway that is not there (2).
    if (!entry) {
      printFailure(new NotFoundError(`dict "${name}" has no key ${JSON.stringify(key)}`, { dict: name }));
      process.exitCode = 1;
      return;
    }
    console.log(formatValue(entry.value));
  });

  withGateway(
    dict
      .command("items")
      .description("its entries, in key order")
      .argument("<name>", "the dict")
      .option("-n, --limit <n>", "at most this many", (v) => positive(v, "--limit"))
      .option("--json", "print JSON lines: { key, value } (value as the call codec encodes it)"),
  ).action(async (name: string, opts: GatewayOpts & { limit?: number; json?: boolean }) => {
    let shown = 0;
    const pageSize = opts.limit === undefined ? undefined : Math.min(opts.limit, DICT_LIMITS.maxPageSize); // no more fetched than shown
    for await (const [key, value] of Dict.fromName(name, optionsOf(opts)).items(pageSize === undefined ? {} : { pageSize })) {
      if (opts.limit !== undefined && shown >= opts.limit) break;
      shown++;
      if (opts.json) console.log(JSON.stringify({ key, value: encodeValue(value) }));
      else {
        const get =
          typeof key === "string" ? `tandem dict get ${name} ${shellWord(key)}` : `tandem dict get ${name} --json-key ${shellWord(JSON.stringify(key))}`;
        console.log(`${style.bold(JSON.stringify(key))}  ${cutValue(formatValue(value), get)}`);
      }
    }
    if (shown === 0 && !opts.json) console.log(`dict "${name}" is empty`);
  });

  withGateway(dict.command("clear").description("remove every entry").argument("<name>", "the dict")).action(async (name: string, opts: GatewayOpts) => {
    const removed = await Dict.fromName(name, optionsOf(opts)).clear();
    console.log(`${style.ok("✓")} removed ${entries(removed)} from dict ${name}`);
  });

  withGateway(dict.command("delete").description("delete a dict and its entries (needs a token of scope deploy)").argument("<name>", "the dict")).action(
    async (name: string, opts: GatewayOpts) => {
      const info = await Dict.delete(name, optionsOf(opts));
      console.log(`${style.ok("✓")} deleted dict ${info.name} (${entries(info.len)})`);
    },
  );

  const queue = program.command("queue").description("queues: work handed between functions and tiers (docs/dict-queue.md)");

  addCreateCommand(
    queue,
    "queue",
    withGateway,
    (name, existOk, opts: GatewayOpts) => Queue.create(name, { ...optionsOf(opts), existOk }),
    (info) => items(info.len + info.leased),
  );

  withGateway(queue.command("list").description("the gateway's queues and their lengths").option("--json", "print JSON")).action(
    async (opts: GatewayOpts & { json?: boolean }) => {
      const queues = await Queue.list(optionsOf(opts));
      if (opts.json) return console.log(JSON.stringify(queues, null, 2));
      if (queues.length === 0) return console.log("no queues yet; tandem queue create NAME makes one");
      console.log(`${"name".padEnd(24)} ${"waiting".padStart(8)} ${"leased".padStart(8)} ${"partitions".padStart(10)}  created`);
      for (const q of queues) {
        console.log(
          `${q.name.padEnd(24)} ${String(q.len).padStart(8)} ${String(q.leased).padStart(8)} ${String(q.partitions).padStart(10)}  ${listTime(q.createdAt)}`,
        );
      }
    },
  );

  withGateway(
    queue
      .command("len")
      .description("items waiting in a partition (leased ones not counted)")
      .argument("<name>", "the queue")
      .option("-p, --partition <partition>", "this partition (default: the default one)")
      .option("--total", "every partition"),
  ).action(async (name: string, opts: GatewayOpts & { partition?: string; total?: boolean }) => {
    console.log(await Queue.fromName(name, optionsOf(opts)).len(partitionOf(opts, opts.total ? { total: true } : {})));
  });

  withGateway(
    queue
      .command("peek")
      .description("the oldest items waiting, without taking them")
      .argument("<name>", "the queue")
      .option("-p, --partition <partition>", "this partition (default: the default one)")
      // Commander adds "(default: 10)" to the help itself.
      .option("-n, --limit <n>", "at most this many", (v) => positive(v, "--limit"), 10)
      .option("--json", "print JSON lines: each value as the call codec encodes it, whole"),
  ).action(async (name: string, opts: GatewayOpts & { partition?: string; limit: number; json?: boolean }) => {
    let shown = 0;
    for await (const value of Queue.fromName(name, optionsOf(opts)).iterate(partitionOf(opts, { pageSize: Math.min(opts.limit, QUEUE_LIMITS.maxPageSize) }))) {
      if (shown++ >= opts.limit) break;
      const partition = opts.partition === undefined ? "" : ` -p ${shellWord(opts.partition)}`;
      console.log(opts.json ? JSON.stringify(encodeValue(value)) : cutValue(formatValue(value), `tandem queue peek ${name}${partition} --json`));
    }
    // As `dict items` says so of an empty dict: nothing printed could be a queue that is not there.
    if (shown === 0 && !opts.json) console.log(`queue "${name}"${opts.partition === undefined ? "" : ` partition "${opts.partition}"`} is empty`);
  });

  withGateway(
    queue
      .command("clear")
      .description("remove the items of a partition, or of all")
      .argument("<name>", "the queue")
      .option("-p, --partition <partition>", "this partition (default: the default one)")
      .option("--all", "every partition"),
  ).action(async (name: string, opts: GatewayOpts & { partition?: string; all?: boolean }) => {
    const removed = await Queue.fromName(name, optionsOf(opts)).clear(partitionOf(opts, opts.all ? { all: true } : {}));
    console.log(`${style.ok("✓")} removed ${items(removed)} from queue ${name}`);
  });

  withGateway(queue.command("delete").description("delete a queue and its items (needs a token of scope deploy)").argument("<name>", "the queue")).action(
    async (name: string, opts: GatewayOpts) => {
      const info = await Queue.delete(name, optionsOf(opts));
      console.log(`${style.ok("✓")} deleted queue ${info.name} (${items(info.len + info.leased)})`);
    },
  );
}

function partitionOf<T extends object>(opts: { partition?: string }, rest: T): T & { partition?: string } {
  return opts.partition === undefined ? rest : { ...rest, partition: opts.partition };
}

function parseKey(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidOptionsError(`--json-key: ${JSON.stringify(text)} is not JSON (${(err as Error).message})`);
  }
}

function positive(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidOptionsError(`${flag} must be a whole number, 1 or more (got "${value}")`);
  return n;
}

/** JSON when JSON says the value whole; else as Node shows it. */
function formatValue(value: unknown): string {
  if (encodeValue(value).meta === undefined) return JSON.stringify(value);
  return inspect(value, { depth: 6, breakLength: Infinity, colors: false });
}

/** The most characters of a value `dict items` and `queue peek` show on its line: one of 1 MiB would fill the terminal. */
const SHOWN_VALUE_CHARS = 200;

/**
 * A value's text cut to `SHOWN_VALUE_CHARS`, saying how long it is and the command that shows it whole (`whole`).
 * @example cutValue(JSON.stringify("x".repeat(5000)), "tandem dict get cache big");
 * // its first 200 characters, then "… (5002 characters; tandem dict get cache big shows it whole)"
 */
export function cutValue(text: string, whole: string): string {
  if (text.length <= SHOWN_VALUE_CHARS) return text;
  // Not between the two halves of a surrogate pair: a lone half is no character.
  const end = /[\uD800-\uDBFF]/.test(text.charAt(SHOWN_VALUE_CHARS - 1)) ? SHOWN_VALUE_CHARS - 1 : SHOWN_VALUE_CHARS;
  return `${text.slice(0, end)}… ${style.dim(`(${text.length} characters; ${whole} shows it whole)`)}`;
}

/** `text` as one word of a shell command: as it is when it is plain, else in single quotes. */
function shellWord(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

/** "1 entry", "2 entries": a dict's count as its lines say it. */
function entries(n: number): string {
  return `${n} entr${n === 1 ? "y" : "ies"}`;
}

/** "1 item", "0 items": a queue's count as its lines say it. */
function items(n: number): string {
  return `${n} item${n === 1 ? "" : "s"}`;
}
