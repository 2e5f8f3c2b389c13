/**
 * One way to say what is wrong with a value zod refused, for every boundary:
 * function options when an app loads (`option "timeout" must be ...`), request
 * bodies at the gateway and the plane (`field "callId" must be ...`), and
 * configuration (`setting "TANDEM_MAX_BODY_BYTES" must be ...`). Given the
 * schema, a name it does not know comes with the nearest one it does.
 */
import type { z } from "zod";
import { nearestName } from "./nearest-name.js";
import { valueText } from "./value-text.js";

/** What the checked names are called in the sentence. */
export type IssueNoun = "option" | "field" | "setting";

/** The longest echo of a refused value, so a large body is not copied into its error. */
const MAX_ECHO = 80;
/** The most issues told one by one; a body wrong in many places (every element of a long list) gets a count of the rest. */
const MAX_ISSUES = 5;

/**
 * Turns zod issues into sentences: `option "timeout" must be at least 1
 * second (got 0)`; unknown keys: `unknown field "argz"`, and with the
 * `schema` that refused them, `unknown option "gpus"; did you mean "gpu"?`.
 * @example
 * const parsed = schema.safeParse(body, { reportInput: true });
 * if (!parsed.success) throw new InvalidRequestError(`run request: ${describeIssues(parsed.error, "field", schema)}`);
 */
export function describeIssues(error: z.ZodError, noun: IssueNoun = "option", schema?: z.ZodType, aliases: Readonly<Record<string, string>> = {}): string {
  const more = error.issues.length - MAX_ISSUES;
  const told = error.issues
    .slice(0, MAX_ISSUES)
    .map((issue) => {
      if (issue.code === "unrecognized_keys") return unknownKeys(issue.path, issue.keys, noun, schema ? keysAt(schema, issue.path) : [], aliases);
      const path = issue.path.map(String).join(".");
      const got = "input" in issue && issue.input !== undefined ? ` (got ${echo(issue.input)})` : "";
      const message = nonFinite(issue) ? "Invalid input: expected a finite number" : issue.message;
      return path ? `${noun} "${path}" ${message}${got}` : `${message}${got}`;
    })
    .join("; ");
  return more > 0 ? `${told}; and ${more} more` : told;
}

/** A number refused for being NaN or infinite, in zod's own words ("expected number, received number"), not a schema's. */
function nonFinite(issue: z.core.$ZodIssue): boolean {
  return (
    issue.code === "invalid_type" &&
    issue.message.startsWith("Invalid input: expected number, received") &&
    typeof issue.input === "number" &&
    !Number.isFinite(issue.input)
  );
}

/**
 * `unknown option "gpus"; did you mean "gpu"?`; several: each with its nearest known name. Inside an object, named
 * with its path: `unknown option "concurrency.maxInput"; did you mean "concurrency.maxInputs"?`.
 */
function unknownKeys(path: PropertyKey[], keys: string[], noun: IssueNoun, known: string[], aliases: Readonly<Record<string, string>>): string {
  const full = (key: string) => `"${[...path.map(String), key].join(".")}"`;
  const named = keys.map((key) => {
    // snake_case, as another platform's Python spells it (`keep_warm`, `min_containers`): looked up as camelCase too.
    const camel = key.replace(/_+([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    const alias = path.length === 0 ? [key, camel].find((k) => Object.hasOwn(aliases, k)) : undefined;
    const near = alias !== undefined ? aliases[alias] : known.includes(camel) ? camel : nearestName(key, known);
    return { key: full(key), hint: near === undefined ? undefined : `did you mean ${full(near)}?` };
  });
  if (named.length === 1) return `unknown ${noun} ${named[0]!.key}${named[0]!.hint ? `; ${named[0]!.hint}` : ""}`;
  return `unknown ${noun}s ${named.map(({ key, hint }) => (hint ? `${key} (${hint})` : key)).join(", ")}`;
}

/** The names the object schema at `path` declares, looking through wrappers (`.optional()`, `.default()`, `z.lazy()`, …). */
function keysAt(schema: z.ZodType, path: PropertyKey[]): string[] {
  type Node = { def?: { innerType?: Node; getter?: () => Node; shape?: Record<string, Node> } } | undefined;
  const unwrap = (node: Node): Node => {
    const inner = node?.def?.innerType ?? node?.def?.getter?.();
    return inner ? unwrap(inner) : node;
  };
  let node = unwrap(schema as Node);
  for (const key of path) node = unwrap(node?.def?.shape?.[String(key)]);
  return Object.keys(node?.def?.shape ?? {});
}

function echo(value: unknown): string {
  // A zod schema where a value was wanted (an `input` of one value): its kind, not its internals.
  const zodType = (value as { _zod?: { def?: { type?: unknown } } } | null)?._zod?.def?.type;
  if (typeof value === "object" && typeof zodType === "string") return `a zod ${zodType} schema`;
  let text: string;
  try {
    // As sent: JSON writes NaN and ±Infinity as null, which would tell the caller a value they did not send.
    text = valueText(value);
  } catch {
    text = String(value);
  }
  if (text.length <= MAX_ECHO) return text;
  // Not between the two halves of a surrogate pair: a lone half is no character, and JSON writes it as `\ud83d`.
  const end = /[\uD800-\uDBFF]/.test(text.charAt(MAX_ECHO - 1)) ? MAX_ECHO - 1 : MAX_ECHO;
  return `${text.slice(0, end)}…`;
}
