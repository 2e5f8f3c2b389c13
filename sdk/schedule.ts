/**
 * Schedules: `Cron(expression, { timezone })` and `Period({ hours: 1 })`, a
 * function's `schedule` option. Cron expressions have five fields (minute,
 * hour, day of month, month, day of week) with standard cron semantics: names
 * for months and days, ranges (wrapping ones too), steps, lists, 0 and 7 both
 * Sunday, and day of month OR day of week when both are restricted. Each field
 * is read and checked here (cron-expression.ts), so that an error names the
 * field and the reason; cron-parser finds the wall-clock times that match, and
 * this module places them in the timezone, with a daylight-saving policy of its
 * own (`cronRuns`, docs/schedules.md). A schedule it refuses is kept, with its
 * reason, until the function it is given to is checked: the error then names
 * the app and the function too. The edge fires schedules (gateway/scheduler.ts);
 * `tandem schedule list` shows the runs the edge computed with this module.
 */
import { CronExpressionParser, type CronExpression } from "cron-parser";
import { readCronExpression } from "./cron-expression.js";
import { SCHEDULE_LIMITS } from "./defaults.js";
import { InvalidOptionsError } from "./errors.js";
import { didYouMean, nearestName } from "./nearest-name.js";
import { gapEnd, instantsAt, isTimezone, offsetAt } from "./zoned-time.js";
import { valueText } from "./value-text.js";

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

/**
 * A cron schedule: five fields, read in `timezone` (an IANA name, default UTC).
 * @example
 * app.function({ schedule: Cron("0 2 * * *", { timezone: "Europe/Paris" }) }, refreshCache)
 * Cron("*\/15 9-17 * * MON-FRI").nextRuns(3)
 * Cron("30 2 * * Friday-Monday", { timezone: "America/New_York" }) // Fri, Sat, Sun, Mon; at 03:00 the day 02:30 is skipped
 */
export function Cron(expression: string, options: ScheduleOptions & { timezone?: string } = {}): Schedule {
  return refusedWhenInvalid("cron", `Cron(${valueText(expression)})`, () => cron(expression, options));
}

function cron(expression: string, options: ScheduleOptions & { timezone?: string }): Schedule {
  const where = `Cron(${valueText(expression)})`;
  if (typeof expression !== "string") throw new InvalidOptionsError(`Cron: the expression must be a string such as "0 2 * * *"`);
  const { timezone = "UTC", overlap } = checkOptions(where, options, ["timezone", "overlap"]);
  if (typeof timezone !== "string" || !isTimezone(timezone)) {
    // A misspelt one is told the nearest, as a misspelt day or month name is.
    const near =
      typeof timezone === "string" && typeof Intl.supportedValuesOf === "function" ? nearestName(timezone, Intl.supportedValuesOf("timeZone")) : undefined;
    const hint = near === undefined ? `use an IANA name such as "UTC", "Europe/Paris" or "America/New_York"` : `did you mean "${near}"?`;
    throw new InvalidOptionsError(`${where}: unknown timezone ${valueText(timezone)}; ${hint}`);
  }
  const read = readCronExpression(expression, where);
  const written = read.fields.join(" ");
  let walls: CronExpression;
  try {
    // Wall-clock times, on a timeline without daylight saving; `cronRuns` places them in the timezone.
    walls = CronExpressionParser.parse(read.plain, { tz: "UTC" });
    walls.next();
  } catch (err) {
    const message = (err as Error).message;
    if (/day of month/i.test(message)) {
      // The fields each check out, but no day of month given exists in the months given (the 30th of February).
      throw new InvalidOptionsError(
        `${where}: the day-of-month field "${read.fields[2]}" has no day in the month field "${read.fields[3]}", so it would never run (February has 29 days at most; April, June, September and November 30)`,
      );
    }
    throw new InvalidOptionsError(`${where}: ${message}`);
  }
  const runs = cronRuns(walls, timezone, read.interval);
  return schedule({
    kind: "cron",
    description: `cron "${written}" (${timezone})`,
    expression: written,
    timezone,
    periodMs: undefined,
    overlap,
    nextAfter: runs.nextAfter,
    latestAtOrBefore: runs.latestAtOrBefore,
    nextRuns: (count, from) => {
      const out: Date[] = [];
      for (let t = from; out.length < count;) out.push(new Date((t = runs.nextAfter(t))));
      return out;
    },
  });
}

/** The most wall-clock times one search looks at (a skipped day of minutes is 1440). */
const MAX_WALLS = 10_000;
const MINUTE = 60_000;
const DAY = 86_400_000;

/**
 * When a cron schedule runs in real time. Each wall-clock time it matches runs once, at the instant the clock in
 * `timezone` shows it, except across daylight-saving changes (docs/schedules.md, cron(8)'s rule):
 * - a time the clocks skip: a job at a time of day runs when they jump (02:30 runs at 03:00), once however many of
 *   its times were skipped; an interval job (`interval`) does not run for it, so it keeps its pace;
 * - a time the clocks repeat: a job at a time of day runs the first time only; an interval job runs both times.
 * `walls` iterates the matching wall-clock times (cron-parser, on a UTC timeline).
 */
function cronRuns(walls: CronExpression, timezone: string, interval: boolean) {
  const runsAt = (wall: number): number[] => {
    const instants = instantsAt(timezone, wall);
    if (instants.length === 0) return interval ? [] : [gapEnd(timezone, wall)];
    return interval ? instants : instants.slice(0, 1);
  };
  const offset = (instant: number) => offsetAt(timezone, instant);
  return {
    /** The first run strictly after `after`. */
    nextAfter(after: number): number {
      // Runs come in the order of their wall-clock times, but for a repeated hour's second pass and a gap's jump:
      // look from the earliest wall clock near `after`, and on until no later wall-clock time can run sooner.
      let best = Infinity;
      let highest = offset(after); // the largest offset between `after` and `best` (one change at most)
      walls.reset(new Date(after + Math.min(highest, offset(after + 2 * DAY))));
      for (let i = 0; i < MAX_WALLS; i++) {
        const wall = walls.next().getTime();
        for (const t of runsAt(wall)) {
          if (t > after && t < best) {
            best = t;
            highest = Math.max(offset(after), offset(best));
          }
        }
        // The next wall-clock time is a minute later at least, so none of its runs comes before `wall + MINUTE - highest`.
        if (wall + MINUTE - highest >= best) break;
      }
      if (best === Infinity) throw new Error(`no run found after ${new Date(after).toISOString()}`);
      return best;
    },
    /** The last run at or before `at`. */
    latestAtOrBefore(at: number): number {
      let best = -Infinity;
      let lowest = offset(at); // the smallest offset between `best` and `at`
      walls.reset(new Date(at + Math.max(lowest, offset(at - 2 * DAY)) + 1));
      for (let i = 0; i < MAX_WALLS; i++) {
        const wall = walls.prev().getTime();
        for (const t of runsAt(wall)) {
          if (t <= at && t > best) {
            best = t;
            lowest = Math.min(offset(at), offset(best));
          }
        }
        if (wall - MINUTE - lowest <= best) break;
      }
      if (best === -Infinity) throw new Error(`no run found at or before ${new Date(at).toISOString()}`);
      return best;
    },
  };
}

/**
 * A schedule that runs every `days + hours + minutes + seconds`, counted from
 * when it is first deployed.
 * @example
 * app.function({ schedule: Period({ hours: 1 }) }, syncFeeds)
 */
export function Period(length: { days?: number; hours?: number; minutes?: number; seconds?: number }, options: ScheduleOptions = {}): Schedule {
  return refusedWhenInvalid("period", `Period(${valueText(length)})`, () => period(length, options));
}

function period(length: { days?: number; hours?: number; minutes?: number; seconds?: number }, options: ScheduleOptions): Schedule {
  const where = `Period(${valueText(length)})`;
  const { overlap } = checkOptions(where, options, ["overlap"]);
  if (typeof length !== "object" || length === null) throw new InvalidOptionsError(`Period: give a length such as { hours: 1 }`);
  const units = { days: 86_400_000, hours: 3_600_000, minutes: 60_000, seconds: 1000 } as const;
  let ms = 0;
  for (const [key, value] of Object.entries(length)) {
    if (!(key in units)) throw new InvalidOptionsError(`${where}: unknown unit "${key}"; use days, hours, minutes and seconds`);
    if (typeof value !== "number" || !Number.isFinite(value))
      throw new InvalidOptionsError(`${where}: ${key} must be a finite number (got ${valueText(value)})`);
    if (value < 0) throw new InvalidOptionsError(`${where}: ${key} must not be negative`);
    ms += value * units[key as keyof typeof units];
  }
  ms = Math.round(ms);
  if (ms < SCHEDULE_LIMITS.minPeriodMs) throw new InvalidOptionsError(`${where}: a period must be at least 1 second long (this one is ${ms} ms)`);
  if (ms > SCHEDULE_LIMITS.maxPeriodMs)
    throw new InvalidOptionsError(`${where}: a period must be at most 366 days long (this one is ${formatDuration(ms)}); a yearly job is Cron("@yearly")`);
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
  for (const key of Object.keys(options))
    if (!(known as string[]).includes(key)) throw new InvalidOptionsError(`${where}: unknown option "${key}"${didYouMean(key, known)}`);
  const o = options as { overlap?: unknown; timezone?: string };
  if (o.overlap !== undefined && o.overlap !== "skip" && o.overlap !== "allow")
    throw new InvalidOptionsError(`${where}: option "overlap" must be "skip" or "allow" (got ${valueText(o.overlap)})`);
  return { overlap: (o.overlap as OverlapPolicy | undefined) ?? "skip", ...(o.timezone !== undefined ? { timezone: o.timezone } : {}) };
}

/**
 * A duration in the units a period is written in, largest first.
 * @example formatDuration(3_725_000) // "1h2m5s"
 */
export function formatDuration(ms: number): string {
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
