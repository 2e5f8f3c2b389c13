/**
 * Schedules: `Cron(expression, { timezone })` and `Period({ hours: 1 })`, a
 * function's `schedule` option. Cron expressions have five fields (minute,
 * hour, day of month, month, day of week) with standard cron semantics: names
 * for months and days, ranges, steps, lists, 0 and 7 both Sunday, and day of
 * month OR day of week when both are restricted. Parsing and iteration are
 * cron-parser's; this module checks each field first so that an error names
 * the field and the reason. A schedule it refuses is kept, with its reason,
 * until the function it is given to is checked: the error then names the app
 * and the function too. The edge fires schedules (gateway/scheduler.ts).
 */
import { CronExpressionParser } from "cron-parser";
import { InvalidOptionsError } from "./errors.js";

const SCHEDULE_BRAND = Symbol.for("tandem.schedule");

/** What to do when a run is due while the previous one is still running. */
export type OverlapPolicy = "skip" | "allow";

export interface ScheduleOptions {
  /** `"skip"` (default): a run due while the previous one still runs is skipped and noted; `"allow"`: it runs too. */
  overlap?: OverlapPolicy;
}

/** A schedule made by `Cron(...)` or `Period(...)`. */
export interface Schedule {
  readonly [SCHEDULE_BRAND]: true;
  readonly kind: "cron" | "period";
  /** `cron "0 2 * * *" (UTC)`, `every 1h30m`: how lists and logs show it. */
  readonly description: string;
  /** The cron expression (cron schedules). */
  readonly expression: string | undefined;
  /** The IANA timezone a cron expression is read in (default `"UTC"`). */
  readonly timezone: string;
  /** A period's length in milliseconds (period schedules). */
  readonly periodMs: number | undefined;
  readonly overlap: OverlapPolicy;
  /**
   * Why this schedule cannot run (`Cron("0 24 * * *"): the hour field "24": …`), or undefined. A function given
   * it fails to load, naming the app, the function and this reason; asking it for run times throws the reason.
   */
  readonly refused: string | undefined;
  /**
   * The next `count` run times after `from` (default now). A period counts from
   * `from`; on the edge it counts from when the schedule was first deployed.
   */
  nextRuns(count: number, options?: { from?: Date | number }): Date[];
  /** @internal The first run time strictly after `after` (ms); `anchor`: where a period counts from. */
  nextAfter(after: number, anchor: number): number;
  /** @internal The last run time at or before `at` (ms). */
  latestAtOrBefore(at: number, anchor: number): number;
}

/** Fields of a five-field expression, with their ranges and names. */
const FIELDS = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day-of-month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12, names: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], first: 1 },
  { name: "day-of-week", min: 0, max: 7, names: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"], first: 0 },
] as const;

/** The shorthands Vixie cron knows, as five fields. */
const SHORTHANDS: Record<string, string> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};

/**
 * A cron schedule: five fields, read in `timezone` (an IANA name, default UTC).
 * @example
 * app.function({ schedule: Cron("0 2 * * *", { timezone: "Europe/Paris" }) }, refreshCache)
 * Cron("*\/15 9-17 * * MON-FRI").nextRuns(3)
 */
export function Cron(expression: string, options: ScheduleOptions & { timezone?: string } = {}): Schedule {
  return refusedWhenInvalid("cron", `Cron(${JSON.stringify(expression)})`, () => cron(expression, options));
}

function cron(expression: string, options: ScheduleOptions & { timezone?: string }): Schedule {
  const where = `Cron(${JSON.stringify(expression)})`;
  if (typeof expression !== "string") throw new InvalidOptionsError(`Cron: the expression must be a string such as "0 2 * * *"`);
  const { timezone = "UTC", overlap } = checkOptions(where, options, ["timezone", "overlap"]);
  if (typeof timezone !== "string" || !isTimezone(timezone)) {
    throw new InvalidOptionsError(
      `${where}: unknown timezone ${JSON.stringify(timezone)}; use an IANA name such as "UTC", "Europe/Paris" or "America/New_York"`,
    );
  }
  const trimmed = expression.trim();
  const fields = (SHORTHANDS[trimmed.toLowerCase()] ?? trimmed).split(/\s+/).filter(Boolean);
  if (trimmed.startsWith("@") && !SHORTHANDS[trimmed.toLowerCase()]) {
    throw new InvalidOptionsError(`${where}: unknown shorthand ${trimmed}; known: ${Object.keys(SHORTHANDS).join(", ")}`);
  }
  if (fields.length !== 5) {
    throw new InvalidOptionsError(
      `${where}: has ${fields.length} field${fields.length === 1 ? "" : "s"}; a cron expression has five: minute hour day-of-month month day-of-week${fields.length === 6 ? " (seconds are not supported)" : ""}`,
    );
  }
  fields.forEach((field, i) => checkField(where, FIELDS[i]!, field));
  const normalized = fields.join(" ");
  const parse = (from: number) => CronExpressionParser.parse(normalized, { currentDate: new Date(from), tz: timezone });
  try {
    parse(Date.now()).next();
  } catch (err) {
    const message = (err as Error).message;
    if (/day of month/i.test(message)) {
      // The fields each check out, but no day of month given exists in the months given (the 30th of February).
      throw new InvalidOptionsError(
        `${where}: the day-of-month field "${fields[2]}" has no day in the month field "${fields[3]}", so it would never run (February has 29 days at most; April, June, September and November 30)`,
      );
    }
    throw new InvalidOptionsError(`${where}: ${message}`);
  }
  const nextAfter = (after: number) => parse(after).next().getTime();
  const latestAtOrBefore = (at: number) =>
    parse(at + 1)
      .prev()
      .getTime();
  return schedule({
    kind: "cron",
    description: `cron "${normalized}" (${timezone})`,
    expression: normalized,
    timezone,
    periodMs: undefined,
    overlap,
    nextAfter,
    latestAtOrBefore,
    nextRuns: (count, from) =>
      parse(from)
        .take(count)
        .map((d) => d.toDate()),
  });
}

/**
 * A schedule that runs every `days + hours + minutes + seconds`, counted from
 * when it is first deployed.
 * @example
 * app.function({ schedule: Period({ hours: 1 }) }, syncFeeds)
 */
export function Period(length: { days?: number; hours?: number; minutes?: number; seconds?: number }, options: ScheduleOptions = {}): Schedule {
  return refusedWhenInvalid("period", `Period(${JSON.stringify(length)})`, () => period(length, options));
}

function period(length: { days?: number; hours?: number; minutes?: number; seconds?: number }, options: ScheduleOptions): Schedule {
  const where = `Period(${JSON.stringify(length)})`;
  const { overlap } = checkOptions(where, options, ["overlap"]);
  if (typeof length !== "object" || length === null) throw new InvalidOptionsError(`Period: give a length such as { hours: 1 }`);
  const units = { days: 86_400_000, hours: 3_600_000, minutes: 60_000, seconds: 1000 } as const;
  let ms = 0;
  for (const [key, value] of Object.entries(length)) {
    if (!(key in units)) throw new InvalidOptionsError(`${where}: unknown unit "${key}"; use days, hours, minutes and seconds`);
    if (typeof value !== "number" || !Number.isFinite(value)) throw new InvalidOptionsError(`${where}: ${key} must be a finite number (got ${String(value)})`);
    if (value < 0) throw new InvalidOptionsError(`${where}: ${key} must not be negative`);
    ms += value * units[key as keyof typeof units];
  }
  ms = Math.round(ms);
  if (ms < 1000) throw new InvalidOptionsError(`${where}: a period must be at least 1 second long (this one is ${ms} ms)`);
  const nextAfter = (after: number, anchor: number) => (after < anchor ? anchor : anchor + (Math.floor((after - anchor) / ms) + 1) * ms);
  const latestAtOrBefore = (at: number, anchor: number) => anchor + Math.floor((at - anchor) / ms) * ms;
  return schedule({
    kind: "period",
    description: `every ${formatDuration(ms)}`,
    expression: undefined,
    timezone: "UTC",
    periodMs: ms,
    overlap,
    nextAfter,
    latestAtOrBefore,
    nextRuns: (count, from) => Array.from({ length: count }, (_, i) => new Date(from + (i + 1) * ms)),
  });
}

/**
 * The schedule `make` builds, or, when it refuses the arguments, one that carries the reason: Cron and Period are
 * called before the function they are given to, so only its check can name the app and the function.
 */
function refusedWhenInvalid(kind: Schedule["kind"], written: string, make: () => Schedule): Schedule {
  try {
    return make();
  } catch (err) {
    if (!(err instanceof InvalidOptionsError)) throw err;
    const reason = err.message;
    const refuse = (): never => {
      throw new InvalidOptionsError(reason);
    };
    return schedule({
      kind,
      description: `${written} (refused)`,
      expression: undefined,
      timezone: "UTC",
      periodMs: undefined,
      overlap: "skip",
      refused: reason,
      nextAfter: refuse,
      latestAtOrBefore: refuse,
      nextRuns: refuse,
    });
  }
}

export function isSchedule(value: unknown): value is Schedule {
  return typeof value === "object" && value !== null && SCHEDULE_BRAND in value;
}

function schedule(s: {
  kind: "cron" | "period";
  description: string;
  expression: string | undefined;
  timezone: string;
  periodMs: number | undefined;
  overlap: OverlapPolicy;
  refused?: string;
  nextAfter: (after: number, anchor: number) => number;
  latestAtOrBefore: (at: number, anchor: number) => number;
  nextRuns: (count: number, from: number) => Date[];
}): Schedule {
  return Object.freeze({
    [SCHEDULE_BRAND]: true as const,
    kind: s.kind,
    description: s.description,
    expression: s.expression,
    timezone: s.timezone,
    periodMs: s.periodMs,
    overlap: s.overlap,
    refused: s.refused,
    nextAfter: s.nextAfter,
    latestAtOrBefore: s.latestAtOrBefore,
    nextRuns(count: number, options: { from?: Date | number } = {}) {
      if (!Number.isInteger(count) || count < 0 || count > 1000) throw new InvalidOptionsError(`nextRuns: count must be a whole number from 0 to 1000`);
      const from = options.from === undefined ? Date.now() : new Date(options.from).getTime();
      if (Number.isNaN(from)) throw new InvalidOptionsError(`nextRuns: "from" must be a Date or milliseconds since the epoch`);
      return s.nextRuns(count, from);
    },
  });
}

function checkOptions<K extends string>(where: string, options: unknown, known: K[]): { overlap: OverlapPolicy; timezone?: string } {
  if (typeof options !== "object" || options === null) throw new InvalidOptionsError(`${where}: options must be an object`);
  for (const key of Object.keys(options)) if (!(known as string[]).includes(key)) throw new InvalidOptionsError(`${where}: unknown option "${key}"`);
  const o = options as { overlap?: unknown; timezone?: string };
  if (o.overlap !== undefined && o.overlap !== "skip" && o.overlap !== "allow")
    throw new InvalidOptionsError(`${where}: option "overlap" must be "skip" or "allow"`);
  return { overlap: (o.overlap as OverlapPolicy | undefined) ?? "skip", ...(o.timezone !== undefined ? { timezone: o.timezone } : {}) };
}

function isTimezone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/** Checks one field: lists of `*`, values, names, ranges and steps, each value in range. */
function checkField(where: string, field: (typeof FIELDS)[number], text: string): void {
  const fail = (why: string) => {
    throw new InvalidOptionsError(`${where}: the ${field.name} field ${JSON.stringify(text)}: ${why}`);
  };
  const value = (token: string): number => {
    if (/^\d+$/.test(token)) {
      const n = Number(token);
      if (n < field.min || n > field.max) fail(`${n} is out of range (${field.min}-${field.max}${field.name === "day-of-week" ? ", 0 and 7 are Sunday" : ""})`);
      return n;
    }
    const names: readonly string[] | undefined = "names" in field ? field.names : undefined;
    const at = names?.indexOf(token.toLowerCase()) ?? -1;
    if (at < 0) {
      fail(names ? `unknown name "${token}" (names: ${names.map((n) => n.toUpperCase()).join(", ")})` : `"${token}" is not a number`);
    }
    return at + ("first" in field ? field.first : 0);
  };
  for (const part of text.split(",")) {
    const [range, step, extra] = part.split("/");
    if (extra !== undefined) fail(`"${part}" has more than one step`);
    if (step !== undefined && !(/^\d+$/.test(step) && Number(step) > 0)) fail(`the step "${step}" must be a whole number above 0`);
    if (range === "*") continue;
    const [start, end, more] = (range ?? "").split("-");
    if (more !== undefined || !start) fail(`"${part}" is not a value, a name, a range or *`);
    const a = value(start!);
    if (end !== undefined) {
      const b = value(end);
      if (b < a) fail(`the range ${range} runs backwards`);
    }
  }
}

function formatDuration(ms: number): string {
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  if (rest) parts.push(`${rest}ms`);
  return parts.join("");
}
