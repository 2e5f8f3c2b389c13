/**
 * Leaving edge functions' code out of a plane bundle. Containers run only
 * plane functions, so each edge handler written inline as the last argument
 * of `app.function`, `app.endpoint` or `app.web` is replaced in the plane
 * bundle by a stub that throws if a container ever calls it. The bundle, and
 * so its hash and the container pools keyed on it, then changes only when code
 * a container can run changes: an edit to an edge function keeps the plane's
 * warm containers (`tandem serve` reloads), and any other edit makes another
 * bundle, whose code never runs in an old container.
 *
 * The handlers are found by their source text (`Function.prototype.toString`
 * of the app loaded in Node, printed by esbuild as the plane bundle is):
 * replaced only where that text occurs exactly once, as the last argument of
 * such a call. Anything else (a handler defined apart and named, so perhaps
 * shared with plane code; text printed otherwise) stays, and is then part of
 * the plane bundle like any other code.
 */

/** An edge function's handler, as the app loaded in Node shows it. */
export interface EdgeHandler {
  /** What it is called in the stub's error: `greet`, `endpoint "greet"`. */
  name: string;
  /** Its source text: `handler.toString()`. */
  source: string;
}

const REGISTRATIONS = /\.(?:function|endpoint|web)\s*$/;

/**
 * `code` (an unminified esbuild bundle) with each of `handlers` replaced by a
 * stub. The code after each stub keeps its line, and its column where the stub
 * fits, so the bundle's source map stays true for everything but the stubs.
 * @example
 * withoutEdgeHandlers('export const greet = app.function((name) => `Hello, ${name}!`);\n', [{ name: "greet", source: "(name) => `Hello, ${name}!`" }]);
 * // 'export const greet = app.function(() => { throw new Error("greet runs at the edge…"); });\n'
 */
export function withoutEdgeHandlers(code: string, handlers: readonly EdgeHandler[]): string {
  const cuts: { start: number; end: number; stub: string }[] = [];
  for (const { name, source } of handlers) {
    const start = code.indexOf(source);
    if (start < 0 || code.indexOf(source, start + 1) >= 0) continue;
    const end = start + source.length;
    if (!/^\s*\)/.test(code.slice(end, end + 200))) continue;
    const open = openingParen(code, start);
    if (open === undefined || !REGISTRATIONS.test(code.slice(Math.max(0, open - 40), open))) continue;
    cuts.push({ start, end, stub: laidOutAs(source, stubFor(name)) });
  }
  let out = code;
  for (const { start, end, stub } of cuts.sort((a, b) => b.start - a.start)) out = out.slice(0, start) + stub + out.slice(end);
  return out;
}

function stubFor(name: string): string {
  const message = `${name} runs at the edge: its code is not in the plane bundle (call it with .remote())`;
  return `() => { throw new Error(${JSON.stringify(message)}); }`;
}

/** `stub`, then the newlines of `source` and spaces to its last column, so what follows stays where it was. */
function laidOutAs(source: string, stub: string): string {
  const lines = source.split("\n");
  if (lines.length > 1) return stub + "\n".repeat(lines.length - 1) + " ".repeat(lines.at(-1)!.length);
  return stub + " ".repeat(Math.max(0, source.length - stub.length));
}

/**
 * The `(` of the call whose argument starts at `at`: right before it, or
 * before the earlier arguments (read backwards, skipping quoted strings).
 * Gives up (undefined) on anything it would have to parse to be sure of: a
 * template, a regular expression or comment, or an argument inside brackets
 * or braces.
 */
function openingParen(code: string, at: number): number | undefined {
  let i = at - 1;
  while (i >= 0 && /\s/.test(code[i]!)) i--;
  if (code[i] === "(") return i;
  if (code[i] !== ",") return undefined;
  let depth = 0;
  for (let j = i - 1; j >= Math.max(0, i - 10_000); j--) {
    const c = code[j]!;
    if (c === '"' || c === "'") {
      j = stringStart(code, j);
      if (j < 0) return undefined;
      continue;
    }
    if (c === "`" || c === "/") return undefined;
    if (c === ")" || c === "]" || c === "}") depth++;
    else if (c === "(" || c === "[" || c === "{") {
      if (depth === 0) return c === "(" ? j : undefined;
      depth--;
    }
  }
  return undefined;
}

/** Where the string literal that ends with the quote at `end` starts (its opening quote), or -1. */
function stringStart(code: string, end: number): number {
  const quote = code[end]!;
  for (let j = end - 1; j >= 0; j--) {
    if (code[j] === "\n") return -1;
    if (code[j] !== quote) continue;
    let slashes = 0;
    while (code[j - 1 - slashes] === "\\") slashes++;
    if (slashes % 2 === 0) return j;
  }
  return -1;
}
