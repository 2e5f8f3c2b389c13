/**
 * A value as an error message quotes it: JSON where the value is JSON (`"5"`, `{"hours":-1}`), and as written
 * where JSON would say something else (`NaN`, `Infinity`, `undefined`, `5n`, which `JSON.stringify` writes as
 * `null` or drops). Plain code, so it reads the same in Node, browsers and workerd.
 */

/** How deep objects and arrays are written before `…` stands for the rest. */
const MAX_DEPTH = 4;

/**
 * Text a request sent, as an answer repeats it: a JSON string of at most `max` characters of it (`…` after; never half
 * of a character), with the marks that reorder text (bidi overrides, isolates, LRM, RLM, ALM) written as escapes, so a path or query value of thousands of
 * characters, or one with a right-to-left override, is neither echoed whole nor read reordered.
 * @example echoedText("in\u202evoice") // '"in\\u202evoice"'
 */
export function echoedText(text: string, max = 80): string {
  let cut = text.length > max ? text.slice(0, max) : text;
  if (cut.length < text.length && /[\ud800-\udbff]$/.test(cut)) cut = cut.slice(0, -1); // not half a character
  const shown = cut.length < text.length ? `${cut}…` : text;
  return JSON.stringify(shown).replace(REORDERING_MARKS, (m) => `\\u${m.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** The marks that reorder or hide the direction of text: the bidi embeddings, overrides and isolates, LRM, RLM, ALM. */
const REORDERING_MARKS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `value` as a message quotes it.
 * @example valueText({ hours: NaN }) // '{"hours":NaN}'
 * @example valueText("5") // '"5"'
 */
export function valueText(value: unknown): string {
  return written(value, 0, new Set());
}

function written(value: unknown, depth: number, seen: Set<object>): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "number":
      return Object.is(value, -0) ? "-0" : String(value); // NaN, Infinity, -Infinity as themselves
    case "bigint":
      return `${value}n`;
    case "undefined":
      return "undefined";
    case "symbol":
      return value.toString();
    case "function":
      return value.name ? `[function ${value.name}]` : "[function]";
    case "boolean":
      return String(value);
  }
  if (value === null) return "null";
  const object = value as object;
  if (seen.has(object)) return "[circular]";
  if (depth >= MAX_DEPTH) return Array.isArray(object) ? "[…]" : "{…}";
  if (object instanceof Date) return Number.isNaN(object.getTime()) ? "Invalid Date" : JSON.stringify(object);
  seen.add(object);
  try {
    if (Array.isArray(object)) return `[${object.map((item) => written(item, depth + 1, seen)).join(",")}]`;
    const entries = Object.entries(object).map(([key, item]) => `${JSON.stringify(key)}:${written(item, depth + 1, seen)}`);
    return `{${entries.join(",")}}`;
  } finally {
    seen.delete(object);
  }
}

/**
 * A span of time as the CLI's listings and the dashboard show it: ms under a second, else seconds.
 * @example formatMs(518); // "518 ms"
 * @example formatMs(12_345); // "12.3 s"
 */
export function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/**
 * A size in bytes as people read it, in binary units.
 * @example formatBytes(1536) // "1.5 KiB"
 */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
