/**
 * A five-field cron expression read field by field, as Tandem means it: values,
 * names (three letters or in full, any case: `FRI`, `friday`), ranges (`1-5`,
 * and ranges that wrap past the end of their field: `Fri-Mon`, `Nov-Mar`,
 * `22-2`), steps along a range (`Thu-Tue/2`: Thu, Sat, Mon), lists. What
 * standard cron does not have (`L`, `W`, `#`, `?`, `H`) is refused by name, and
 * so is a step so long that only its range's first value would match (`*\/60`
 * in minutes). Each restricted field comes out as a plain list of numbers, which
 * is all cron-parser is given to find the matching times.
 */
import { InvalidOptionsError } from "./errors.js";
import { nearestName } from "./nearest-name.js";

/** An expression read by `readCronExpression`. */
export interface CronExpressionFields {
  /** The five fields as written (a shorthand as its five fields). */
  fields: string[];
  /** The same times with every restricted field as a sorted list of numbers (`*` kept), for cron-parser. */
  plain: string;
  /**
   * The minute or the hour field starts with `*` (`*\/30 * * * *`, `15 * * * *`): a job that repeats within the day
   * keeps its pace in real time across daylight-saving changes, where a job at a time of day runs once a day
   * (cron(8)'s rule; docs/schedules.md).
   */
  interval: boolean;
}

interface Field {
  name: string;
  min: number;
  max: number;
  /** The last value of one cycle: a range wraps from it back to `min` (Saturday, for days of the week, where 7 is Sunday again). */
  last: number;
  /** Names in full, the first one for `min`; the first three letters are a name too. */
  names?: readonly string[];
}

const MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"];
const DAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];

const FIELDS: readonly Field[] = [
  { name: "minute", min: 0, max: 59, last: 59 },
  { name: "hour", min: 0, max: 23, last: 23 },
  { name: "day-of-month", min: 1, max: 31, last: 31 },
  { name: "month", min: 1, max: 12, last: 12, names: MONTHS },
  { name: "day-of-week", min: 0, max: 7, last: 6, names: DAYS },
];

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

/** Extensions of Quartz and Jenkins that standard cron lacks, each with what it would have meant. */
const UNSUPPORTED: Record<string, string> = {
  "?": `"?" is not supported; write *`,
  "#": `"#" (the nth weekday of the month) is not supported`,
  l: `"L" (last) is not supported`,
  lw: `"LW" (the last weekday of the month) is not supported`,
  w: `"W" (the nearest weekday) is not supported`,
  h: `"H" (a hashed value) is not supported; write the value itself`,
};

/**
 * Reads and checks a five-field expression (or a shorthand such as `@daily`); `where` starts each error
 * (`Cron("0 24 * * *"): the hour field "24": 24 is out of range (0-23)`).
 * @example
 * readCronExpression("0 9 * * friday-monday", "Cron(...)").plain // "0 9 * * 0,1,5,6"
 */
export function readCronExpression(expression: string, where: string): CronExpressionFields {
  const trimmed = expression.trim();
  const shorthand = SHORTHANDS[trimmed.toLowerCase()];
  if (trimmed.startsWith("@") && !shorthand) {
    throw new InvalidOptionsError(`${where}: unknown shorthand ${trimmed}; known: ${Object.keys(SHORTHANDS).join(", ")}`);
  }
  const fields = (shorthand ?? trimmed).split(/\s+/).filter(Boolean);
  if (fields.length !== 5) {
    throw new InvalidOptionsError(
      `${where}: has ${fields.length} field${fields.length === 1 ? "" : "s"}; a cron expression has five: minute hour day-of-month month day-of-week${fields.length === 6 ? " (seconds are not supported)" : ""}`,
    );
  }
  const plain = fields.map((text, i) => (text === "*" ? "*" : readField(where, FIELDS[i]!, text).join(","))).join(" ");
  return { fields, plain, interval: fields[0]!.startsWith("*") || fields[1]!.startsWith("*") };
}

/** The values one field matches, sorted (days of the week 0-6). */
function readField(where: string, field: Field, text: string): number[] {
  const fail = (why: string): never => {
    throw new InvalidOptionsError(`${where}: the ${field.name} field ${JSON.stringify(text)}: ${why}`);
  };
  const values = new Set<number>();
  for (const part of text.split(",")) {
    const unsupported = unsupportedToken(part);
    if (unsupported) fail(unsupported);
    const [range, stepText, extra] = part.split("/");
    if (extra !== undefined) fail(`"${part}" has more than one step`);
    if (stepText !== undefined && !(/^\d+$/.test(stepText) && Number(stepText) > 0)) fail(`the step "${stepText}" must be a whole number above 0`);
    const [start, end, more] = (range ?? "").split("-");
    if (more !== undefined || !start || end === "") fail(`"${part}" is not a value, a name, a range or *`);
    let run: number[];
    let label: string;
    if (range === "*") {
      run = walk(field, field.min, field.last);
      label = `${field.min}-${field.last}`;
    } else {
      const a = valueOf(field, start!, fail);
      // A value with a step runs to the end of the field (`5/15`: 5, 20, 35, 50), as cron-parser and Quartz read it.
      const b = end !== undefined ? valueOf(field, end, fail) : stepText !== undefined ? field.last : a;
      run = walk(field, a, b);
      label = end !== undefined ? range! : stepText !== undefined ? `${start}-${field.last}` : start!;
    }
    if (stepText !== undefined) {
      const step = Number(stepText);
      if (step >= run.length) fail(`the step ${step} is too large for the range ${label}: only ${run[0]} would match (write ${run[0]} if you mean that)`);
      run = run.filter((_, i) => i % step === 0);
    }
    for (const v of run) values.add(field.name === "day-of-week" && v === 7 ? 0 : v);
  }
  return [...values].sort((x, y) => x - y);
}

/** `a` to `b` in order; when `b` comes before `a`, on past the field's last value and round from its first. */
function walk(field: Field, a: number, b: number): number[] {
  const out: number[] = [];
  if (a <= b) for (let v = a; v <= b; v++) out.push(v);
  else if (a === 7 && field.name === "day-of-week")
    for (let v = 0; v <= b; v++) out.push(v); // 7 is Sunday: 7-2 is Sun-Tue
  else {
    for (let v = a; v <= field.last; v++) out.push(v);
    for (let v = field.min; v <= b; v++) out.push(v);
  }
  return out;
}

/** A number in the field's range, or a name (three letters or in full, any case). */
function valueOf(field: Field, token: string, fail: (why: string) => never): number {
  if (/^\d+$/.test(token)) {
    const n = Number(token);
    if (n < field.min || n > field.max) fail(`${n} is out of range (${field.min}-${field.max}${field.name === "day-of-week" ? ", 0 and 7 are Sunday" : ""})`);
    return n;
  }
  if (!field.names) return fail(`"${token}" is not a number`);
  const lower = token.toLowerCase();
  const at = field.names.findIndex((name) => name === lower || name.slice(0, 3) === lower);
  if (at >= 0) return field.min + at;
  const near = nearestName(
    lower,
    field.names.flatMap((name) => [name.slice(0, 3), name]),
  );
  if (near !== undefined) return fail(`unknown name "${token}"; did you mean "${inCaseOf(token, near)}"?`);
  return fail(`unknown name "${token}" (names: ${field.names.map((n) => n.slice(0, 3).toUpperCase()).join(", ")}, in any case, or in full)`);
}

/** What the first token of `part` that standard cron lacks would have meant, or undefined. */
function unsupportedToken(part: string): string | undefined {
  if (part.includes("?")) return UNSUPPORTED["?"];
  if (part.includes("#")) return UNSUPPORTED["#"];
  for (const word of part.match(/[a-z]+/gi) ?? []) {
    const said = UNSUPPORTED[word.toLowerCase()];
    if (said) return said;
  }
  return undefined;
}

/** `name` written as `like` is: `FRI`, `Fri` or `fri`. */
function inCaseOf(like: string, name: string): string {
  if (like === like.toUpperCase()) return name.toUpperCase();
  if (like[0] === like[0]!.toUpperCase()) return name[0]!.toUpperCase() + name.slice(1);
  return name;
}
