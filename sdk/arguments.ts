/**
 * A function's arguments checked against its `input` schema (a zod schema of
 * the argument list), the same way wherever it happens: the gateway checks a
 * call's arguments before it runs it or forwards it to a plane, and the
 * handler, wherever it runs (the edge, a plane container, `.local()`), is
 * handed the schema's output. A bad argument is `invalid_argument`, naming it
 * (from 1) and what was expected. docs/arguments.md says what users see.
 */
import { z } from "zod";
import { InvalidArgumentError, InvalidOptionsError, InvalidRequestError } from "./errors.js";
import { clsParamsProblem } from "./protocol.js";
import { describeIssues } from "./zod-issues.js";

/**
 * A zod schema of a function's argument list: `z.tuple([z.string(), z.number()])`,
 * `z.array(z.number())`, either one with `.refine()` or `.transform()`. Its
 * input types the callers' arguments; its output types the handler's.
 */
export type ArgumentsSchema<Out extends readonly unknown[] = readonly unknown[], In extends readonly unknown[] = readonly unknown[]> = z.core.$ZodType<Out, In>;

/** The arguments callers pass to a function with this `input`. */
export type ArgumentsIn<S extends ArgumentsSchema> = z.input<S> extends infer A extends unknown[] ? A : unknown[];

/** The arguments its handler is given: the schema's output. */
export type ArgumentsOut<S extends ArgumentsSchema> = z.output<S> extends infer A extends unknown[] ? A : unknown[];

/** Kinds of zod schema that describe a list of arguments; a pipe (`.transform()`, `.pipe()`) is one when its input is. */
const LIST_KINDS: ReadonlySet<string> = new Set(["tuple", "array"]);

/**
 * True for a zod (4) schema of a list: a tuple or an array, possibly piped
 * into a transform. Anything else would never accept an argument list, so it
 * is refused when the app loads.
 * @example
 * isArgumentsSchema(z.tuple([z.string()])) // true; z.string(): false
 */
export function isArgumentsSchema(value: unknown): value is ArgumentsSchema {
  const def = (value as { _zod?: { def?: { type?: string; in?: unknown } } } | null)?._zod?.def;
  if (typeof def?.type !== "string") return false;
  return LIST_KINDS.has(def.type) || (def.type === "pipe" && isArgumentsSchema(def.in));
}

/**
 * Checks `args` against `schema` and returns the schema's output, the values a
 * handler is given. Throws `InvalidArgumentError` naming `where`
 * (`demo.add`), each bad argument and what was expected.
 * @example
 * await parseArguments(z.tuple([z.string(), z.number()]), ["a", "b"], "demo.add");
 * // InvalidArgumentError: demo.add: argument 2: Invalid input: expected number, received string (got "b")
 */
export async function parseArguments(schema: ArgumentsSchema, args: readonly unknown[], where: string): Promise<unknown[]> {
  // A tuple's missing trailing arguments are undefined, as in a JavaScript call, so their `.default()` applies
  // (zod leaves a tuple's missing trailing elements out, defaults and all).
  const items = tupleLength(schema);
  const given = args.length < items ? [...args, ...Array<undefined>(items - args.length)] : args;
  const parsed = await z.safeParseAsync(schema, given, { reportInput: true });
  if (parsed.success) {
    // Only a transform can make something else of the list; the types refuse it, plain JavaScript may not.
    if (!Array.isArray(parsed.data))
      throw new InvalidOptionsError(`${where}: option "input" must put out an argument list (an array), not ${typeof parsed.data}`);
    return parsed.data;
  }
  const issues = parsed.error.issues.map((issue) => describeArgumentIssue(issue, args.length));
  const first = issues.find((i) => i.argument !== undefined)?.argument;
  throw new InvalidArgumentError(`${where}: ${issues.map((i) => i.sentence).join("; ")}`, {
    ...(first === undefined ? {} : { argument: first }),
    issues: issues.map(({ argument, path, message }) => ({ ...(argument === undefined ? {} : { argument }), path, message })),
  });
}

/**
 * What `schema` says of a call with no arguments (a schedule's), checked as a call's are; undefined when it takes one,
 * or when only an asynchronous check could say (left to the runs).
 * @example refusalOfNoArguments(z.tuple([z.string()])) // "argument 1: Invalid input: expected string, received undefined"
 */
export function refusalOfNoArguments(schema: ArgumentsSchema): string | undefined {
  const items = tupleLength(schema);
  let parsed: ReturnType<typeof z.safeParse>;
  try {
    parsed = z.safeParse(schema, Array<undefined>(items).fill(undefined), { reportInput: true });
  } catch {
    return undefined; // an async refinement: the sync parse cannot run it
  }
  return parsed.success ? undefined : parsed.error.issues.map((issue) => describeArgumentIssue(issue, 0).sentence).join("; ");
}

/**
 * A call's arguments checked as the gateway checks them before it runs or
 * forwards the call (and `tandem run` before it starts anything): a class
 * method's parameters (its first argument, `checkClassParams`), then its
 * `input` schema over its own arguments. `where` names the callee
 * (`demo.add`). Throws `invalid_request` for bad parameters,
 * `invalid_argument` for an argument the schema refuses.
 * @example
 * await checkCallArguments("demo.add", { clsMethod: false, input: z.tuple([z.number()]) }, ["a"]);
 * // InvalidArgumentError: demo.add: argument 1: Invalid input: expected number, received string (got "a")
 */
export async function checkCallArguments(
  where: string,
  callee: { clsMethod: boolean; input: ArgumentsSchema | undefined },
  args: readonly unknown[],
): Promise<void> {
  if (callee.clsMethod) checkClassParams(where, args[0]);
  if (callee.input) await parseArguments(callee.input, callee.clsMethod ? args.slice(1) : args, where);
}

/**
 * A class method's parameters (its first argument), which pick its instance
 * at the edge and its pool on a plane, checked by the rule the SDK uses too
 * (`clsParamsProblem`). Throws `invalid_request` naming what is wrong.
 * @example
 * checkClassParams("demo.Model.predict", [1]);
 * // InvalidRequestError: demo.Model.predict is a class method, called with the class's parameters first: .remote(parameters, …) …: parameters must be an object ({} for none; got an array)
 */
export function checkClassParams(where: string, params: unknown): asserts params is Record<string, unknown> {
  const wrong = clsParamsProblem(params);
  if (wrong?.parameter !== undefined) throw new InvalidRequestError(`${where}: class ${wrong.problem}`, { parameter: wrong.parameter });
  if (wrong)
    throw new InvalidRequestError(
      `${where} is a class method, called with the class's parameters first: .remote(parameters, ...args) or .starmap([[parameters, ...args], …]) from the SDK, tandem run FILE::Class.method '{}' ARGS… from the CLI, "args": [parameters, ...args] over HTTP: ${wrong.problem}`,
    );
}

/** How many elements a tuple schema (or a pipe from one) lists; 0 for any other list. */
function tupleLength(schema: ArgumentsSchema): number {
  const def = (schema as { _zod: { def: { type: string; items?: unknown[]; in?: ArgumentsSchema } } })._zod.def;
  if (def.type === "pipe" && def.in) return tupleLength(def.in);
  return def.type === "tuple" ? (def.items?.length ?? 0) : 0;
}

/**
 * A handler that checks its arguments first and is then called with the
 * schema's output. `where` is asked for when a call is refused (a function is
 * named only when its app loads).
 * @example
 * const run = checkedHandler((a: string, n: number) => a.repeat(n), z.tuple([z.string(), z.number()]), () => "demo.repeat");
 */
export function checkedHandler<A extends unknown[]>(
  handler: (...args: never) => unknown,
  schema: ArgumentsSchema,
  where: () => string,
): (...args: A) => Promise<unknown> {
  const call = handler as (...args: unknown[]) => unknown;
  return async (...args: A) => call(...(await parseArguments(schema, args, where())));
}

interface ArgumentIssue {
  /** The argument, from 1; undefined when the list as a whole is wrong (too many arguments). */
  argument: number | undefined;
  /** Where inside the argument. */
  path: (string | number)[];
  message: string;
  sentence: string;
}

/** `argument 2: Invalid input: expected number, received string (got "b")`, or for the list: `takes at most 2 arguments (got 3)`. */
function describeArgumentIssue(issue: z.core.$ZodIssue, given: number): ArgumentIssue {
  const [index, ...path] = issue.path;
  if (typeof index !== "number") {
    const count = (n: number | bigint) => `${n} argument${Number(n) === 1 ? "" : "s"}`;
    const sentence =
      issue.code === "too_big" && issue.origin === "array"
        ? `takes at most ${count(issue.maximum)} (got ${given})`
        : issue.code === "too_small" && issue.origin === "array"
          ? `takes at least ${count(issue.minimum)} (got ${given})`
          : describeIssues(new z.ZodError([issue]), "field");
    // The list's own issue in the sentence's words (zod's speak of an array: "expected array to have <2 items").
    return { argument: undefined, path: keys(issue.path), message: sentence, sentence };
  }
  // An argument that is a list: its items counted from 1, as its arguments are (before: `field "0"`).
  let rest = path;
  let items = "";
  for (; typeof rest[0] === "number"; rest = rest.slice(1)) items += `item ${rest[0] + 1}: `;
  // The same words as every other refusal (zod-issues.ts), with the path inside the argument named as its field.
  const inside = describeIssues(new z.ZodError([{ ...issue, path: rest }]), "field");
  // An unknown key's sentence is all of it (zod's own message, "Unrecognized key: …", would say it in other words).
  const message = issue.code === "unrecognized_keys" ? inside : issue.message;
  return { argument: index + 1, path: keys(path), message, sentence: `argument ${index + 1}: ${items}${inside}` };
}

/** A path as JSON can carry it. */
const keys = (path: PropertyKey[]) => path.map((k) => (typeof k === "symbol" ? String(k) : k));

/** How deep `checkSendable` looks for a function inside an argument (the wire has its own depth limit). */
const SENDABLE_DEPTH = 32;

/**
 * Refuses arguments the wire cannot carry: a function or a symbol, as an argument or inside an array, a plain object,
 * a `Map` or a `Set` of one. JSON would send `null` or nothing in its place, and the function would run on other
 * values than its caller passed, without a word.
 * @example checkSendable([1, () => 2]) // throws invalid_argument: argument 2 is a function…
 */
export function checkSendable(args: readonly unknown[]): void {
  args.forEach((arg, index) => {
    const where = unsendableIn(arg, 0);
    if (where !== undefined)
      throw new InvalidArgumentError(
        `argument ${index + 1}${where.path ? ` (at ${where.path})` : ""} is a ${where.kind}, which a call cannot carry: arguments travel as data (docs/api.md, "Values")`,
        { argument: index + 1 },
      );
  });
}

/**
 * Where in `value` a function or a symbol is (a path such as `.a[2]`, "" for `value` itself), and which. An object
 * met again (a shared reference, a cycle) is looked into again only from nearer the top than before (`seen`, its
 * least depth so far): each of its paths looked into afresh, a value of 32 levels each holding the next twice took
 * 2³² steps, holding a gateway's thread for good.
 */
export function unsendableIn(value: unknown, depth = 0, seen = new Map<object, number>()): { kind: string; path: string } | undefined {
  if (typeof value === "function" || typeof value === "symbol") return { kind: typeof value, path: "" };
  if (typeof value !== "object" || value === null || depth >= SENDABLE_DEPTH) return undefined;
  const before = seen.get(value);
  if (before !== undefined && before <= depth) return undefined;
  seen.set(value, depth);
  // Array.from, not map: a hole is read as undefined, as it travels (map would keep it, an entry missing).
  const entries: [string, unknown][] = Array.isArray(value)
    ? Array.from(value, (v, i) => [`[${i}]`, v])
    : value instanceof Map
      ? [...value].map(([k, v], i) => [`[${i}]`, typeof k === "function" || typeof k === "symbol" ? k : v])
      : value instanceof Set
        ? [...value].map((v, i) => [`[${i}]`, v])
        : Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null
          ? Object.entries(value).map(([k, v]) => [`.${k}`, v])
          : [];
  for (const [step, inner] of entries) {
    const found = unsendableIn(inner, depth + 1, seen);
    if (found) return { kind: found.kind, path: `${step}${found.path}` };
  }
  return undefined;
}
