/** Cron and Period: standard cron semantics checked against cron-parser and by hand, and clear load-time errors. */
import { CronExpressionParser } from "cron-parser";
import { describe, expect, it } from "vitest";
import { App } from "./app.js";
import { readCronExpression } from "./cron-expression.js";
import { Cron, Period } from "./schedule.js";
import { offsetAt } from "./zoned-time.js";

const FROM = new Date("2026-11-01T00:00:00Z"); // a Sunday
const iso = (dates: Date[]) => dates.map((d) => d.toISOString());

describe("Cron", () => {
  // Names, steps, ranges, lists, Sunday as 0 and 7, and day-of-month OR day-of-week when both are restricted.
  const TABLE: [string, string?][] = [
    ["* * * * *"],
    ["*/15 * * * *"],
    ["0 2 * * *"],
    ["0 2 * * *", "Europe/Paris"],
    ["30 9 * * MON-FRI", "America/New_York"],
    ["0 0 1 JAN,JUL *"],
    ["0 12 * feb-apr sat"],
    ["5-20/5 8-10 * * *"],
    ["0 0 * * 0"],
    ["0 0 * * 7"],
    ["0 0 * * SUN"],
    ["0 0 13 * 5"],
    ["0 0 1-7 * 1"],
    ["0 6 1,15 * 2,4"],
    ["0 0 29 2 *"],
    ["@daily"],
    ["@weekly"],
  ];
  it("agrees with cron-parser on a table of expressions", () => {
    for (const [expression, tz = "UTC"] of TABLE) {
      const ours = iso(Cron(expression, { timezone: tz }).nextRuns(6, { from: FROM }));
      const theirs = CronExpressionParser.parse(expression, { currentDate: FROM, tz })
        .take(6)
        .map((d) => d.toDate().toISOString());
      expect({ expression, tz, runs: ours }).toEqual({ expression, tz, runs: theirs });
    }
  });

  it("gives the runs a cron user expects, checked by hand", () => {
    // 0 and 7 are both Sunday: 8, 15 and 22 November 2026.
    expect(iso(Cron("0 0 * * 7").nextRuns(3, { from: FROM }))).toEqual(["2026-11-08T00:00:00.000Z", "2026-11-15T00:00:00.000Z", "2026-11-22T00:00:00.000Z"]);
    expect(iso(Cron("0 0 * * 0").nextRuns(3, { from: FROM }))).toEqual(iso(Cron("0 0 * * 7").nextRuns(3, { from: FROM })));
    // Both restricted: the 1st-3rd of the month OR a Friday.
    expect(iso(Cron("0 0 1-3 * FRI").nextRuns(4, { from: FROM }))).toEqual([
      "2026-11-02T00:00:00.000Z",
      "2026-11-03T00:00:00.000Z",
      "2026-11-06T00:00:00.000Z",
      "2026-11-13T00:00:00.000Z",
    ]);
    // 02:00 in Paris is 01:00 UTC in winter.
    expect(iso(Cron("0 2 * * *", { timezone: "Europe/Paris" }).nextRuns(1, { from: FROM }))).toEqual(["2026-11-01T01:00:00.000Z"]);
    // Strictly after `from`.
    expect(iso(Cron("0 0 * * *").nextRuns(1, { from: FROM }))).toEqual(["2026-11-02T00:00:00.000Z"]);
    expect(Cron("0 0 * * *").nextAfter(FROM.getTime() - 1, 0)).toBe(FROM.getTime());
    // The latest run at or before a time: what a late tick fires.
    expect(Cron("*/5 * * * *").latestAtOrBefore(FROM.getTime() + 7 * 60_000 + 5, 0)).toBe(FROM.getTime() + 5 * 60_000);
    expect(Cron("*/5 * * * *").latestAtOrBefore(FROM.getTime(), 0)).toBe(FROM.getTime());
  });

  it("refuses a bad expression naming the field and the reason", () => {
    const error = (expression: string, options?: object) => Cron(expression, options).refused ?? "no error";
    expect(error("0 0 2 * * *")).toBe(
      'Cron("0 0 2 * * *"): has 6 fields; a cron expression has five: minute hour day-of-month month day-of-week (seconds are not supported)',
    );
    expect(error("0 2 * *")).toMatch(/has 4 fields; a cron expression has five/);
    expect(error("60 * * * *")).toBe('Cron("60 * * * *"): the minute field "60": 60 is out of range (0-59)');
    expect(error("0 24 * * *")).toBe('Cron("0 24 * * *"): the hour field "24": 24 is out of range (0-23)');
    expect(error("0 0 0 * *")).toMatch(/the day-of-month field "0": 0 is out of range \(1-31\)/);
    expect(error("0 0 * 13 *")).toMatch(/the month field "13": 13 is out of range \(1-12\)/);
    expect(error("0 0 * * 8")).toMatch(/the day-of-week field "8": 8 is out of range \(0-7, 0 and 7 are Sunday\)/);
    expect(error("0 0 * FOO *")).toMatch(/the month field "FOO": unknown name "FOO" \(names: JAN, FEB/);
    expect(error("0 0 * * MOO")).toBe('Cron("0 0 * * MOO"): the day-of-week field "MOO": unknown name "MOO"; did you mean "MON"?');
    expect(error("0 9 * * Fridy")).toBe('Cron("0 9 * * Fridy"): the day-of-week field "Fridy": unknown name "Fridy"; did you mean "Friday"?');
    expect(error("0 0 * * fridya")).toMatch(/the day-of-week field "fridya": unknown name "fridya"; did you mean "friday"\?$/);
    expect(error("0 0 * Decembre *")).toMatch(/the month field "Decembre": unknown name "Decembre"; did you mean "December"\?$/);
    expect(error("0 0 * QQQ *")).toMatch(/unknown name "QQQ" \(names: JAN, FEB, MAR, APR, MAY, JUN, JUL, AUG, SEP, OCT, NOV, DEC, in any case, or in full\)$/);
    expect(error("*/0 * * * *")).toMatch(/the minute field "\*\/0": the step "0" must be a whole number above 0/);
    expect(error("0 0 30 2 *")).toMatch(/the day-of-month field "30" has no day in the month field "2", so it would never run/);
    expect(error("0 0 31 4,6 *")).toMatch(/the day-of-month field "31" has no day in the month field "4,6"/);
    expect(error("0 0 31 4,5 *")).toBe("no error"); // May has a 31st
    expect(error("@every5m")).toMatch(/unknown shorthand @every5m/);
    expect(error("0 2 * * *", { timezone: "Mars/Olympus" })).toBe(
      'Cron("0 2 * * *"): unknown timezone "Mars/Olympus"; use an IANA name such as "UTC", "Europe/Paris" or "America/New_York"',
    );
    // A misspelt one: the nearest, as a misspelt day name gets (before: the examples alone).
    expect(error("0 2 * * *", { timezone: "Europe/Pariss" })).toBe('Cron("0 2 * * *"): unknown timezone "Europe/Pariss"; did you mean "Europe/Paris"?');
    expect(error("0 2 * * *", { overlap: "queue" })).toMatch(/option "overlap" must be "skip" or "allow"/);
    expect(error("0 2 * * *", { overlp: "allow" })).toBe('Cron("0 2 * * *"): unknown option "overlp"; did you mean "overlap"?');
    expect(error("0 2 * * *", { timeZone: "UTC" })).toBe('Cron("0 2 * * *"): unknown option "timeZone"; did you mean "timezone"?');
    expect(error("0 0 31 2 *")).toMatch(/^Cron\("0 0 31 2 \*"\): .+/); // never happens: cron-parser's reason
  });
});

describe("Cron: names, wrapping ranges, what standard cron lacks", () => {
  const runs = (expression: string, count: number, from: Date | string = FROM) => iso(Cron(expression).nextRuns(count, { from: new Date(from) }));

  it("reads day and month names in full, in any case, as their three-letter forms", () => {
    for (const [full, short] of [
      ["0 9 * * friday", "0 9 * * FRI"],
      ["0 9 * * Friday", "0 9 * * fri"],
      ["0 9 * * MONDAY-wednesday", "0 9 * * MON-WED"],
      ["0 0 1 January *", "0 0 1 JAN *"],
      ["0 0 1 january,JULY *", "0 0 1 1,7 *"],
      ["0 0 1 june-September *", "0 0 1 jun-sep *"],
      ["0 0 1 may sunday", "0 0 1 5 0"],
    ]) {
      expect({ full, runs: runs(full!, 4) }).toEqual({ full, runs: runs(short!, 4) });
    }
    expect(runs("0 9 * * friday", 2)).toEqual(["2026-11-06T09:00:00.000Z", "2026-11-13T09:00:00.000Z"]);
    expect(runs("0 0 1 January *", 1)).toEqual(["2027-01-01T00:00:00.000Z"]);
    // Shown as written.
    expect(Cron("0 9 * * friday").description).toBe('cron "0 9 * * friday" (UTC)');
  });

  it("reads a range that wraps past the end of its field, steps counted along it", () => {
    // Tuesday through Sunday: every day but Monday (1 November 2026 is a Sunday).
    expect(runs("0 0 * * Tue-Sun", 7)).toEqual(["03", "04", "05", "06", "07", "08", "10"].map((d) => `2026-11-${d}T00:00:00.000Z`));
    expect(runs("0 0 * * tuesday-sunday", 7)).toEqual(runs("0 0 * * 2-0", 7));
    // November through March.
    expect(runs("0 0 1 Nov-Mar *", 5)).toEqual(["2026-12-01", "2027-01-01", "2027-02-01", "2027-03-01", "2027-11-01"].map((d) => `${d}T00:00:00.000Z`));
    // Thursday to Tuesday, every second day: Thursday, Saturday, Monday.
    expect(runs("0 0 * * Thu-Tue/2", 4)).toEqual(["02", "05", "07", "09"].map((d) => `2026-11-${d}T00:00:00.000Z`));
    expect(runs("0 0 * * Thu-Tue/2", 12)).toEqual(runs("0 0 * * THU,SAT,MON", 12));
    // Numbers wrap in every field, as in Quartz: hours 22 to 2, minutes 50 to 10 by 10, days 30 to 2.
    expect(runs("0 22-2 * * *", 6)).toEqual(["01T01", "01T02", "01T22", "01T23", "02T00", "02T01"].map((t) => `2026-11-${t}:00:00.000Z`));
    expect(runs("50-10/10 * * * *", 4)).toEqual(["00:10", "00:50", "01:00", "01:10"].map((t) => `2026-11-01T${t}:00.000Z`));
    expect(runs("0 0 30-2 * *", 5)).toEqual(["2026-11-02", "2026-11-30", "2026-12-01", "2026-12-02", "2026-12-30"].map((d) => `${d}T00:00:00.000Z`));
    expect(runs("0 0 * * Fri-Mon", 8)).toEqual(runs("0 0 * * 5-1", 8));
    expect(runs("0 0 * * Sat-Sun", 4)).toEqual(["07", "08", "14", "15"].map((d) => `2026-11-${d}T00:00:00.000Z`));
    // 7 is Sunday too: 7-2 is Sunday to Tuesday, Mon-Sun every day.
    expect(runs("0 0 * * 7-2", 6)).toEqual(runs("0 0 * * 0,1,2", 6));
    expect(runs("0 0 * * Mon-Sun", 8)).toEqual(runs("0 0 * * *", 8));
  });

  it("refuses L, W, #, ? and H, naming the token and the field", () => {
    const error = (expression: string) => Cron(expression).refused ?? "no error";
    expect(error("0 0 L * *")).toBe('Cron("0 0 L * *"): the day-of-month field "L": "L" (last) is not supported');
    expect(error("0 0 * * 5L")).toBe('Cron("0 0 * * 5L"): the day-of-week field "5L": "L" (last) is not supported');
    expect(error("0 0 L-3 * *")).toMatch(/the day-of-month field "L-3": "L" \(last\) is not supported$/);
    expect(error("0 0 LW * *")).toMatch(/the day-of-month field "LW": "LW" \(the last weekday of the month\) is not supported$/);
    expect(error("0 0 15W * *")).toMatch(/the day-of-month field "15W": "W" \(the nearest weekday\) is not supported$/);
    expect(error("0 0 * * 5#3")).toMatch(/the day-of-week field "5#3": "#" \(the nth weekday of the month\) is not supported$/);
    expect(error("0 0 ? * MON")).toMatch(/the day-of-month field "\?": "\?" is not supported; write \*$/);
    expect(error("0 0 1 * ?")).toMatch(/the day-of-week field "\?": "\?" is not supported/);
    expect(error("H * * * *")).toBe('Cron("H * * * *"): the minute field "H": "H" (a hashed value) is not supported; write the value itself');
    expect(error("H/15 * * * *")).toMatch(/the minute field "H\/15": "H" \(a hashed value\) is not supported/);
    expect(error("0 H(0-5) * * *")).toMatch(/the hour field "H\(0-5\)": "H" \(a hashed value\) is not supported/);
    expect(error("0 0 1,L * *")).toMatch(/the day-of-month field "1,L": "L" \(last\) is not supported/);
    // Names that hold those letters are names.
    expect(error("0 0 * * thu,wed")).toBe("no error");
    expect(error("0 0 * march,july *")).toBe("no error");
  });

  it("refuses a step so long that only the first value of its range would match", () => {
    const error = (expression: string) => Cron(expression).refused ?? "no error";
    expect(error("*/60 * * * *")).toBe(
      'Cron("*/60 * * * *"): the minute field "*/60": the step 60 is too large for the range 0-59: only 0 would match (write 0 if you mean that)',
    );
    expect(error("0-59/60 * * * *")).toMatch(/the minute field "0-59\/60": the step 60 is too large for the range 0-59: only 0 would match/);
    expect(error("10/50 * * * *")).toMatch(/the minute field "10\/50": the step 50 is too large for the range 10-59: only 10 would match/);
    expect(error("0 */24 * * *")).toMatch(/the hour field "\*\/24": the step 24 is too large for the range 0-23: only 0 would match/);
    expect(error("0 */25 * * *")).toMatch(/the hour field "\*\/25": the step 25 is too large/);
    expect(error("0 22-2/5 * * *")).toMatch(/the hour field "22-2\/5": the step 5 is too large for the range 22-2: only 22 would match/);
    expect(error("0 0 */31 * *")).toMatch(/the day-of-month field "\*\/31": the step 31 is too large for the range 1-31: only 1 would match/);
    expect(error("0 0 */32 * *")).toMatch(/the day-of-month field "\*\/32": the step 32 is too large/);
    expect(error("0 0 1 */13 *")).toMatch(/the month field "\*\/13": the step 13 is too large for the range 1-12: only 1 would match/);
    expect(error("0 0 1 */12 *")).toMatch(/the month field "\*\/12": the step 12 is too large/);
    expect(error("0 0 * * */8")).toMatch(/the day-of-week field "\*\/8": the step 8 is too large for the range 0-6: only 0 would match/);
    expect(error("0 0 * * */7")).toMatch(/the day-of-week field "\*\/7": the step 7 is too large/);
    expect(error("0 0 * * Thu-Tue/6")).toMatch(/the day-of-week field "Thu-Tue\/6": the step 6 is too large for the range Thu-Tue: only 4 would match/);
    // The longest steps that still match twice.
    expect(runs("*/59 * * * *", 3)).toEqual(["00:59", "01:00", "01:59"].map((t) => `2026-11-01T${t}:00.000Z`));
    expect(runs("0 0 * * */6", 3)).toEqual(["07", "08", "14"].map((d) => `2026-11-${d}T00:00:00.000Z`)); // Sunday and Saturday
    expect(error("0 */23 * * *")).toBe("no error");
  });
});

describe("Cron across daylight saving, America/New_York, 2026 (docs/schedules.md)", () => {
  const NY = { timezone: "America/New_York" };
  const at = (text: string) => new Date(text).getTime();
  const runsFrom = (expression: string, from: string, count: number) => iso(Cron(expression, NY).nextRuns(count, { from: new Date(from) }));
  const latest = (expression: string, when: string) => new Date(Cron(expression, NY).latestAtOrBefore(at(when), 0)).toISOString();
  /** Every run in [from, to), one by one, as the Scheduler walks them. */
  const between = (expression: string, from: string, to: string) => {
    const out: number[] = [];
    for (let t = Cron(expression, NY).nextAfter(at(from) - 1, 0); t < at(to); t = Cron(expression, NY).nextAfter(t, 0)) out.push(t);
    return out;
  };

  // 8 March: at 02:00 EST (07:00Z) the clocks go to 03:00 EDT; 02:00-02:59 does not happen.
  it("spring: a job at 02:30 runs once, at 03:00 EDT, when the clocks jump", () => {
    expect(runsFrom("30 2 * * *", "2026-03-07T00:00:00Z", 3)).toEqual(["2026-03-07T07:30:00.000Z", "2026-03-08T07:00:00.000Z", "2026-03-09T06:30:00.000Z"]);
    expect(latest("30 2 * * *", "2026-03-08T07:00:00Z")).toBe("2026-03-08T07:00:00.000Z");
    expect(latest("30 2 * * *", "2026-03-08T06:59:59.999Z")).toBe("2026-03-07T07:30:00.000Z");
    expect(runsFrom("30 2 * * *", "2026-03-08T07:00:00Z", 1)).toEqual(["2026-03-09T06:30:00.000Z"]);
    // Several times of day in the skipped hour are one run.
    expect(runsFrom("0,30 2 * * *", "2026-03-07T12:00:00Z", 2)).toEqual(["2026-03-08T07:00:00.000Z", "2026-03-09T06:00:00.000Z"]);
  });

  it("spring: a job every 30 minutes runs every 30 real minutes, with nothing for the skipped times", () => {
    expect(runsFrom("*/30 * * * *", "2026-03-08T05:50:00Z", 4)).toEqual([
      "2026-03-08T06:00:00.000Z", // 01:00 EST
      "2026-03-08T06:30:00.000Z", // 01:30 EST
      "2026-03-08T07:00:00.000Z", // 03:00 EDT
      "2026-03-08T07:30:00.000Z", // 03:30 EDT
    ]);
    expect(latest("*/30 * * * *", "2026-03-08T06:59:00Z")).toBe("2026-03-08T06:30:00.000Z");
    // The local day is 23 hours long: 46 runs, each 30 minutes after the last.
    const day = between("*/30 * * * *", "2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z");
    expect(day.length).toBe(46);
    expect(new Set(day.slice(1).map((t, i) => t - day[i]!))).toEqual(new Set([30 * 60_000]));
    // An hourly job at :15 does not run at the 02:15 that never comes.
    expect(runsFrom("15 * * * *", "2026-03-08T06:00:00Z", 2)).toEqual(["2026-03-08T06:15:00.000Z", "2026-03-08T07:15:00.000Z"]);
  });

  // 1 November: at 02:00 EDT (06:00Z) the clocks go back to 01:00 EST; 01:00-01:59 happens twice.
  it("autumn: a job at 01:30 runs once, the first time 01:30 comes", () => {
    expect(runsFrom("30 1 * * *", "2026-10-31T12:00:00Z", 2)).toEqual(["2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"]);
    // From inside the repeated hour, the second 01:30 (06:30Z) is not a run.
    expect(runsFrom("30 1 * * *", "2026-11-01T06:00:00Z", 1)).toEqual(["2026-11-02T06:30:00.000Z"]);
    expect(latest("30 1 * * *", "2026-11-01T06:45:00Z")).toBe("2026-11-01T05:30:00.000Z");
    expect(between("30 1 * * *", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z")).toEqual([at("2026-11-01T05:30:00Z")]);
  });

  it("autumn: a job every 30 minutes runs in both passes of the repeated hour, every 30 real minutes", () => {
    expect(runsFrom("*/30 * * * *", "2026-11-01T04:10:00Z", 6)).toEqual([
      "2026-11-01T04:30:00.000Z", // 00:30 EDT
      "2026-11-01T05:00:00.000Z", // 01:00 EDT
      "2026-11-01T05:30:00.000Z", // 01:30 EDT
      "2026-11-01T06:00:00.000Z", // 01:00 EST
      "2026-11-01T06:30:00.000Z", // 01:30 EST
      "2026-11-01T07:00:00.000Z", // 02:00 EST
    ]);
    expect(latest("*/30 * * * *", "2026-11-01T06:10:00Z")).toBe("2026-11-01T06:00:00.000Z");
    expect(latest("*/30 * * * *", "2026-11-01T05:59:00Z")).toBe("2026-11-01T05:30:00.000Z");
    // An hourly job at :15 runs in both passes.
    expect(runsFrom("15 * * * *", "2026-11-01T05:00:00Z", 3)).toEqual(["2026-11-01T05:15:00.000Z", "2026-11-01T06:15:00.000Z", "2026-11-01T07:15:00.000Z"]);
    // The local day is 25 hours long: 50 runs, each 30 minutes after the last.
    const day = between("*/30 * * * *", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z");
    expect(day.length).toBe(50);
    expect(new Set(day.slice(1).map((t, i) => t - day[i]!))).toEqual(new Set([30 * 60_000]));
  });
});

describe("Cron across daylight saving, anywhere", () => {
  const MIN = 60_000;
  const DAY = 86_400_000;
  const HALF_DAY = DAY / 2;
  /** Whether a wall-clock time matches a plain expression (lists of numbers or *): day of month OR day of week when both are restricted. */
  const matcher = (plain: string) => {
    const [minute, hour, dom, month, dow] = plain.split(" ").map((f) => (f === "*" ? undefined : new Set(f.split(",").map(Number))));
    return (wall: number) => {
      const d = new Date(wall);
      const inDom = dom?.has(d.getUTCDate());
      const inDow = dow?.has(d.getUTCDay());
      const day = inDom === undefined || inDow === undefined ? (inDom ?? true) && (inDow ?? true) : inDom || inDow;
      return (minute?.has(d.getUTCMinutes()) ?? true) && (hour?.has(d.getUTCHours()) ?? true) && (month?.has(d.getUTCMonth() + 1) ?? true) && day;
    };
  };
  /**
   * The rule applied minute by minute over [start, end), given the offset at each minute: each instant whose wall
   * clock matches runs, a wall clock shown before only for an interval job, and for a job at a time of day, the
   * instant the clocks jump when they skip a time it matches.
   */
  const byRule = (expression: string, offsets: number[], start: number): number[] => {
    const { plain, interval } = readCronExpression(expression, "test");
    const matches = matcher(plain);
    const shown = new Set<number>();
    const runs: number[] = [];
    for (let i = 1; i < offsets.length; i++) {
      const c = start + i * MIN;
      const [before, offset] = [offsets[i - 1]!, offsets[i]!];
      let run = false;
      if (!interval && offset > before) for (let w = c + before; w < c + offset && !run; w += MIN) run = matches(w);
      if (matches(c + offset) && (interval || !shown.has(c + offset))) run = true;
      if (run) runs.push(c);
      shown.add(c + offset);
    }
    return runs;
  };
  // New York, London, Lord Howe (a 30-minute change), Santiago (at midnight), Dublin (winter time is the "daylight" one),
  // Samoa (a whole day skipped, 30 December 2011).
  const CHANGES: [string, string][] = [
    ["America/New_York", "2026-03-08T07:00:00Z"],
    ["America/New_York", "2026-11-01T06:00:00Z"],
    ["Europe/London", "2026-03-29T01:00:00Z"],
    ["Europe/London", "2026-10-25T01:00:00Z"],
    ["Australia/Lord_Howe", "2026-04-04T15:00:00Z"],
    ["Australia/Lord_Howe", "2026-10-03T15:30:00Z"],
    ["America/Santiago", "2026-04-05T03:00:00Z"],
    ["America/Santiago", "2026-09-06T04:00:00Z"],
    ["Europe/Dublin", "2026-10-25T01:00:00Z"],
    ["Pacific/Apia", "2011-12-30T10:00:00Z"],
  ];
  const EXPRESSIONS = ["30 2 * * *", "30 1 * * *", "0 0 * * *", "45 23 * * *", "*/30 * * * *", "15 * * * *", "0,30 2 * * *", "*/20 0-3 * * *", "0 2 * * *"];

  it("places every run as the rule says, around each change", () => {
    for (const [timezone, change] of CHANGES) {
      const start = new Date(change).getTime() - HALF_DAY;
      const end = start + DAY;
      // From a day earlier, so that a time shown before `start` counts as shown.
      const offsets = Array.from({ length: (2 * DAY) / MIN }, (_, i) => offsetAt(timezone, start - DAY + i * MIN));
      for (const expression of EXPRESSIONS) {
        const cron = Cron(expression, { timezone });
        const expected = byRule(expression, offsets, start - DAY);
        const inWindow = expected.filter((t) => t >= start);
        const found: number[] = [];
        for (let t = cron.nextAfter(start - 1, 0); t < end; t = cron.nextAfter(t, 0)) found.push(t);
        expect({ timezone, expression, runs: iso(found.map((t) => new Date(t))) }).toEqual({
          timezone,
          expression,
          runs: iso(inWindow.map((t) => new Date(t))),
        });
        // The last run at or before each time of the three hours either side of the change.
        for (let at = start + HALF_DAY - 3 * 60 * MIN; at < start + HALF_DAY + 3 * 60 * MIN; at += 7 * MIN) {
          const latest = expected.filter((t) => t <= at).at(-1);
          expect({ timezone, expression, at, latest: cron.latestAtOrBefore(at, 0) }).toEqual({ timezone, expression, at, latest });
        }
      }
    }
  });
});

describe("Period", () => {
  it("counts from `from`, in whole periods", () => {
    expect(iso(Period({ hours: 1, minutes: 30 }).nextRuns(2, { from: FROM }))).toEqual(["2026-11-01T01:30:00.000Z", "2026-11-01T03:00:00.000Z"]);
    const p = Period({ seconds: 10 });
    expect(p.description).toBe("every 10s");
    expect(p.nextAfter(1_000, 0)).toBe(10_000);
    expect(p.nextAfter(10_000, 0)).toBe(20_000);
    expect(p.nextAfter(-5, 0)).toBe(0);
    // A week later, the latest due time is computed, not walked to.
    expect(p.latestAtOrBefore(7 * 86_400_000 + 9_999, 0)).toBe(7 * 86_400_000);
    expect(Period({ days: 1, hours: 2 }).description).toBe("every 1d2h");
  });

  it("refuses a length of zero or less, one over 366 days (its run times would pass the last date a Date holds), or an unknown unit", () => {
    expect(Period({}).refused).toBe("Period({}): a period must be at least 1 second long (this one is 0 ms)");
    expect(Period({ hours: -1 }).refused).toBe('Period({"hours":-1}): hours must not be negative');
    expect(Period({ minutes: 0, seconds: 0 }).refused).toContain("a period must be at least 1 second long");
    expect(Period({ weeks: 1 } as object).refused).toContain('unknown unit "weeks"; use days, hours, minutes and seconds');
    expect(Period({ minutes: 1e12 }).refused).toBe(
      'Period({"minutes":1000000000000}): a period must be at most 366 days long (this one is 694444444d10h40m); a yearly job is Cron("@yearly")',
    );
    expect(Period({ days: 367 }).refused).toContain("a period must be at most 366 days long");
  });

  it("quotes a bad length as it was given: NaN and Infinity as themselves, a string in quotes", () => {
    // Before, JSON.stringify wrote NaN and Infinity as null, and String() dropped a string's quotes.
    expect(Period({ hours: NaN }).refused).toBe('Period({"hours":NaN}): hours must be a finite number (got NaN)');
    expect(Period({ seconds: -Infinity }).refused).toBe('Period({"seconds":-Infinity}): seconds must be a finite number (got -Infinity)');
    expect(Period({ minutes: "5" } as unknown as { minutes: number }).refused).toBe('Period({"minutes":"5"}): minutes must be a finite number (got "5")');
    expect(Period({ hours: 1 }, { overlap: NaN as unknown as "skip" }).refused).toBe(
      'Period({"hours":1}): option "overlap" must be "skip" or "allow" (got NaN)',
    );
    expect(Cron(NaN as unknown as string).refused).toBe('Cron: the expression must be a string such as "0 2 * * *"');
    expect(Cron("0 2 * * *", { timezone: Infinity as unknown as string }).refused).toBe(
      'Cron("0 2 * * *"): unknown timezone Infinity; use an IANA name such as "UTC", "Europe/Paris" or "America/New_York"',
    );
    expect(Period({ days: 366 }).refused).toBeUndefined();
  });
});

describe("the schedule option", () => {
  it("names the app and the function a refused Cron or Period was given to", () => {
    const app = new App("reports");
    expect(() => app.function({ name: "nightly", schedule: Cron("0 24 * * *") }, () => 1)).toThrow(
      'app "reports": function "nightly": option "schedule": Cron("0 24 * * *"): the hour field "24": 24 is out of range (0-23)',
    );
    // Named after its export: the error waits for the app to load, as any option's does.
    const hourly = app.function({ schedule: Period({ hours: -1 }) }, () => 1);
    expect(() => app.finalize({ hourly, default: app })).toThrow(
      'app "reports": function "hourly": option "schedule": Period({"hours":-1}): hours must not be negative',
    );
    // Used on its own, a refused schedule throws its reason when asked for run times.
    expect(() => Cron("61 * * * *").nextRuns(1)).toThrow('Cron("61 * * * *"): the minute field "61": 61 is out of range (0-59)');
  });

  it("is checked when the app loads", () => {
    const bad = new App("bad");
    // Named after its export: the error waits for the app to load, and any use of the function before that throws it.
    const nightly = bad.function({ schedule: "0 2 * * *" as never }, () => 1);
    expect(() => nightly.name).toThrow('app "bad": function "(no name)": option "schedule" must be Cron("...") or Period({...})');
    expect(() => bad.finalize({ nightly, default: bad })).toThrow(
      'app "bad": function "nightly": option "schedule" must be Cron("...") or Period({...}) (got "0 2 * * *")',
    );
    // Several schedules for one function: said as such (before: "must be Cron(...) or Period(...)", then their JSON).
    expect(() => bad.function({ name: "twice", schedule: [Cron("0 2 * * *"), Period({ hours: 1 })] as never }, () => 1)).toThrow(
      'app "bad": function "twice": option "schedule" takes one schedule, not a list: to run it on several, give each its own function that calls it',
    );
    const unexported = new App("bad2");
    unexported.function({ timeout: 0 }, () => 1);
    expect(() => unexported.finalize({ default: unexported })).toThrow('app "bad2": function "#1": option "timeout"');
    expect(() => unexported.function({ name: "named", timeout: 0 }, () => 1)).toThrow('app "bad2": function "named": option "timeout"'); // named: at once
    const app = new App("s");
    expect(app.function({ schedule: Cron("0 2 * * *") }, () => 1).spec?.schedule?.description).toBe('cron "0 2 * * *" (UTC)');
    const Hourly = app.cls(
      { schedule: Period({ hours: 1 }) },
      class {
        m() {}
      },
    );
    expect(() => app.finalize({ Hourly, default: app })).toThrow('app "s": class "Hourly": option "schedule" is for functions');
  });
});
