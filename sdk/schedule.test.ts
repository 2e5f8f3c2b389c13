/** Cron and Period: standard cron semantics checked against cron-parser and by hand, and clear load-time errors. */
import { CronExpressionParser } from "cron-parser";
import { describe, expect, it } from "vitest";
import { App } from "./app.js";
import { Cron, Period } from "./schedule.js";

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
    expect(error("0 0 * * MOO")).toMatch(/the day-of-week field "MOO": unknown name "MOO" \(names: SUN, MON/);
    expect(error("*/0 * * * *")).toMatch(/the minute field "\*\/0": the step "0" must be a whole number above 0/);
    expect(error("5-1 * * * *")).toMatch(/the minute field "5-1": the range 5-1 runs backwards/);
    expect(error("0 0 30 2 *")).toMatch(/the day-of-month field "30" has no day in the month field "2", so it would never run/);
    expect(error("0 0 31 4,6 *")).toMatch(/the day-of-month field "31" has no day in the month field "4,6"/);
    expect(error("0 0 31 4,5 *")).toBe("no error"); // May has a 31st
    expect(error("0 0 L * *")).toMatch(/the day-of-month field "L": "L" is not a number/);
    expect(error("@every5m")).toMatch(/unknown shorthand @every5m/);
    expect(error("0 2 * * *", { timezone: "Mars/Olympus" })).toBe(
      'Cron("0 2 * * *"): unknown timezone "Mars/Olympus"; use an IANA name such as "UTC", "Europe/Paris" or "America/New_York"',
    );
    expect(error("0 2 * * *", { overlap: "queue" })).toMatch(/option "overlap" must be "skip" or "allow"/);
    expect(error("0 0 31 2 *")).toMatch(/^Cron\("0 0 31 2 \*"\): .+/); // never happens: cron-parser's reason
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

  it("refuses a length of zero or less, or an unknown unit", () => {
    expect(Period({}).refused).toBe("Period({}): a period must be at least 1 second long (this one is 0 ms)");
    expect(Period({ hours: -1 }).refused).toBe('Period({"hours":-1}): hours must not be negative');
    expect(Period({ minutes: 0, seconds: 0 }).refused).toContain("a period must be at least 1 second long");
    expect(Period({ weeks: 1 } as object).refused).toContain('unknown unit "weeks"; use days, hours, minutes and seconds');
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
    const unexported = new App("bad2");
    unexported.function({ timeout: 0 }, () => 1);
    expect(() => unexported.finalize({ default: unexported })).toThrow('app "bad2": function "#1": option "timeout"');
    expect(() => unexported.function({ name: "named", timeout: 0 }, () => 1)).toThrow('app "bad2": function "named": option "timeout"'); // named: at once
    const app = new App("s");
    expect(app.function({ schedule: Cron("0 2 * * *") }, () => 1).spec?.schedule?.description).toBe('cron "0 2 * * *" (UTC)');
    expect(() =>
      app.cls(
        { schedule: Period({ hours: 1 }) },
        class {
          m() {}
        },
      ),
    ).toThrow('option "schedule" is for functions');
  });
});
