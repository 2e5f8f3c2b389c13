/**
 * `console.table` as Node writes it, for the edge's console (gateway/edge-console.ts): workerd's own prints nothing a
 * call keeps, and a plane function's container writes Node's. The same rows, columns, cell text and box characters, so
 * a table reads the same whichever tier printed it (test/console-table.test.ts compares the two).
 */
import { inspect } from "node:util";

const INDEX = "(index)";
const ITERATION_INDEX = "(iteration index)";
const KEY = "Key";
const VALUES = "Values";

/** A cell's value as Node's table shows it: a small object whole, a larger one's keys, at most three array items. */
function cell(value: unknown): string {
  const depth = value !== null && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length > 2 ? -1 : 0;
  return inspect(value, { depth, maxArrayLength: 3, breakLength: Infinity, colors: false });
}

const indexes = (length: number) => Array.from({ length }, (_, i) => cell(i));

/**
 * The table `console.table(data, properties)` prints, or undefined for data that is no object (printed as it is).
 * @example consoleTable([{ a: 1 }]); // "┌─────────┬───┐\n│ (index) │ a │\n├─────────┼───┤\n│ 0       │ 1 │\n└─────────┴───┘"
 */
export function consoleTable(data: unknown, properties?: readonly string[]): string | undefined {
  if (data === null || typeof data !== "object") return undefined;
  if (data instanceof Map) {
    const keys: string[] = [];
    const values: string[] = [];
    for (const [k, v] of data) {
      keys.push(cell(k));
      values.push(cell(v));
    }
    return render([ITERATION_INDEX, KEY, VALUES], [indexes(keys.length), keys, values]);
  }
  if (data instanceof Set) {
    const values = [...data].map(cell);
    return render([ITERATION_INDEX, VALUES], [indexes(values.length), values]);
  }
  const columns = new Map<string, string[]>();
  const primitives: string[] = [];
  let hasPrimitives = false;
  const rowKeys = Object.keys(data);
  rowKeys.forEach((rowKey, i) => {
    const item = (data as Record<string, unknown>)[rowKey];
    const primitive = item === null || (typeof item !== "function" && typeof item !== "object");
    if (properties === undefined && primitive) {
      hasPrimitives = true;
      primitives[i] = cell(item);
      return;
    }
    for (const key of properties ?? Object.keys(item as object)) {
      let column = columns.get(key);
      if (!column) columns.set(key, (column = []));
      column[i] = primitive || !Object.prototype.hasOwnProperty.call(item, key) ? "" : cell((item as Record<string, unknown>)[key]);
    }
  });
  const head = [INDEX, ...columns.keys()];
  const body = [rowKeys, ...columns.values()];
  if (hasPrimitives) {
    head.push(VALUES);
    body.push(primitives);
  }
  return render(head, body);
}

/** Node's box: a header row, then a row for each index of the longest column, each cell left-aligned in its column. */
function render(head: string[], columns: string[][]): string {
  const rowCount = Math.max(...columns.map((c) => c.length));
  const widths = head.map((h) => width(h));
  const rows: string[][] = Array.from({ length: rowCount }, () => []);
  columns.forEach((column, i) => {
    for (let j = 0; j < rowCount; j++) {
      const value = Object.prototype.hasOwnProperty.call(column, j) ? column[j]! : "";
      rows[j]![i] = value;
      widths[i] = Math.max(widths[i]!, width(value));
    }
  });
  const line = (left: string, middle: string, right: string) => left + widths.map((w) => "─".repeat(w + 2)).join(middle) + right;
  const row = (cells: string[]) => "│ " + cells.map((c, i) => c + " ".repeat(widths[i]! - width(c))).join(" │ ") + " │";
  return [line("┌", "┬", "┐"), row(head), line("├", "┼", "┤"), ...rows.map(row), line("└", "┴", "┘")].join("\n");
}

/** Columns a string takes on a terminal: wide East Asian characters and emoji two, combining marks none. */
function width(text: string): number {
  let columns = 0;
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if ((code >= 0x300 && code <= 0x36f) || code === 0x200b || (code >= 0xfe00 && code <= 0xfe0f)) continue;
    columns += isWide(code) ? 2 : 1;
  }
  return columns;
}

function isWide(code: number): boolean {
  return (
    (code >= 0x1100 && code <= 0x115f) ||
    (code >= 0x2e80 && code <= 0xa4cf && code !== 0x303f) ||
    (code >= 0xac00 && code <= 0xd7a3) ||
    (code >= 0xf900 && code <= 0xfaff) ||
    (code >= 0xfe30 && code <= 0xfe4f) ||
    (code >= 0xff00 && code <= 0xff60) ||
    (code >= 0xffe0 && code <= 0xffe6) ||
    (code >= 0x1f300 && code <= 0x1f64f) ||
    (code >= 0x1f900 && code <= 0x1f9ff) ||
    (code >= 0x20000 && code <= 0x3fffd)
  );
}
