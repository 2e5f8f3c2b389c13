/**
 * Wall-clock time in an IANA timezone, read with Intl (in Node, workerd and
 * browsers alike): the offset at an instant, and the instants at which a
 * wall-clock time occurs: one, none (the hour skipped when clocks go forward)
 * or two (the hour repeated when they go back). A wall-clock time is carried as
 * milliseconds on a UTC timeline: 02:30 on 8 March 2026 is
 * `Date.UTC(2026, 2, 8, 2, 30)`. Like Temporal, it assumes a zone's offset
 * changes at most once in two days.
 */

const DAY = 86_400_000;

const formats = new Map<string, Intl.DateTimeFormat>();

/**
 * Whether `name` is a timezone Intl knows.
 * @example
 * isTimezone("Europe/Paris") // true
 */
export function isTimezone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/**
 * The wall clock minus UTC at `instant`, in milliseconds.
 * @example
 * offsetAt("America/New_York", Date.UTC(2026, 0, 1)) // -18_000_000 (UTC-5)
 */
export function offsetAt(timezone: string, instant: number): number {
  if (timezone === "UTC") return 0;
  let format = formats.get(timezone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: timezone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formats.set(timezone, format);
  }
  const part: Partial<Record<Intl.DateTimeFormatPartTypes, number>> = {};
  for (const { type, value } of format.formatToParts(instant)) part[type] = Number(value);
  const wall = Date.UTC(part.year!, part.month! - 1, part.day!, part.hour!, part.minute!, part.second!);
  return wall - (instant - (((instant % 1000) + 1000) % 1000));
}

/**
 * The instants at which the wall clock in `timezone` shows `wall`, earliest first: none in a gap, two in a
 * repeated hour.
 * @example
 * instantsAt("America/New_York", Date.UTC(2026, 10, 1, 1, 30)) // [05:30Z, 06:30Z]: 01:30 EDT, then 01:30 EST
 */
export function instantsAt(timezone: string, wall: number): number[] {
  const before = offsetAt(timezone, wall - DAY);
  const after = offsetAt(timezone, wall + DAY);
  const offsets = before === after ? [before] : [before, after];
  return offsets
    .map((offset) => wall - offset)
    .filter((instant) => instant + offsetAt(timezone, instant) === wall)
    .sort((a, b) => a - b);
}

/**
 * The instant a gap that swallows `wall` ends: when the clocks jump (07:00Z, 03:00 EDT, for 02:30 on 8 March 2026
 * in New York).
 */
export function gapEnd(timezone: string, wall: number): number {
  // Read with the later offset, `wall` is an instant still before the jump; with the earlier one, already after it.
  let before = wall - offsetAt(timezone, wall + DAY);
  let after = wall - offsetAt(timezone, wall - DAY);
  const offsetBefore = offsetAt(timezone, before);
  // Offsets change on whole seconds: halve the interval down to one second.
  while (after - before > 1000) {
    const middle = before + Math.floor((after - before) / 2000) * 1000;
    if (offsetAt(timezone, middle) === offsetBefore) before = middle;
    else after = middle;
  }
  return after;
}
