/**
 * A function's result as the wire carries it, checked the same way in either tier (the gateway's isolate for an edge
 * function, the runner for a plane function) before the call is answered or recorded. A value the wire cannot carry
 * fails the call as an error the function threw would (`function_failed`, its remote error a `TypeError` or a
 * `RangeError` that says why): a function or a symbol in it (JSON would drop it without a word, as an argument's
 * is refused: docs/api.md, "Values"), a value nested deeper than `API_LIMITS.maxJsonDepth`, or one whose JSON is
 * longer than `API_LIMITS.maxResultChars` (either broke the call's record, and a spawned call ran again).
 */
import { API_LIMITS } from "./defaults.js";
import { unsendableIn } from "./arguments.js";
import { encodeValue, isStackOverflow, type EncodedValue } from "./protocol.js";

/**
 * @example
 * encodeResult(42, "shop.price"); // { json: 42 }
 * encodeResult({ done: () => {} }, "shop.price"); // throws TypeError: shop.price returned a function (at .done), …
 */
export function encodeResult(value: unknown, fn: string): EncodedValue {
  return encodeChecked(value, fn, "returned", "result");
}

/**
 * A generator function's chunk, checked as a result is ({@link encodeResult}), each as it is yielded, in either tier.
 * @example
 * encodeChunk(Symbol("x"), "shop.feed"); // throws TypeError: shop.feed yielded a symbol, which a chunk cannot carry: …
 */
export function encodeChunk(value: unknown, fn: string): EncodedValue {
  return encodeChecked(value, fn, "yielded", "chunk");
}

function encodeChecked(value: unknown, fn: string, verb: "returned" | "yielded", what: "result" | "chunk"): EncodedValue {
  let encoded: EncodedValue;
  try {
    encoded = encodeValue(value, (v) => {
      const where = unsendableIn(v);
      if (where)
        throw resultError(
          TypeError,
          `${fn} ${verb} a ${where.kind}${where.path ? ` (at ${where.path})` : ""}, which a ${what} cannot carry: ${what}s travel as data, as arguments do (docs/api.md, "Values")`,
        );
    });
  } catch (err) {
    // The codec recursed past the stack: a value thousands of levels deep.
    throw isStackOverflow(err) ? tooDeep(fn, verb, what) : err;
  }
  const over = measureJson(encoded.json, API_LIMITS.maxJsonDepth, API_LIMITS.maxResultChars);
  if (over === "deep") throw tooDeep(fn, verb, what);
  if (over === "long")
    throw resultError(
      RangeError,
      `${fn} ${verb} a value longer than ${API_LIMITS.maxResultChars / 1024 / 1024} MiB as JSON, the most a ${what} may be: ${what === "result" ? "return" : "yield"} a reference to it (a volume's file, a dict key) instead`,
    );
  return encoded;
}

const tooDeep = (fn: string, verb: string, what: string) =>
  resultError(
    RangeError,
    `${fn} ${verb} a value nested more than ${API_LIMITS.maxJsonDepth} levels deep, the most a ${what} may be: ${verb === "returned" ? "return" : "yield"} it flatter`,
  );

/** An error whose stack is its message alone: the frames would be Tandem's, not the function's. */
function resultError(kind: typeof TypeError | typeof RangeError, message: string): Error {
  const error = new kind(message);
  error.stack = `${error.name}: ${message}`;
  return error;
}

/**
 * Whether JSON nests deeper than `maxDepth` or is longer than `maxChars` as text (strings counted as they are, without
 * their escapes), looking no further than that. Recursive, once a level: it stops at `maxDepth`, far from the stack's
 * end, and allocates nothing for the small results most calls return.
 */
function measureJson(json: unknown, maxDepth: number, maxChars: number): "deep" | "long" | undefined {
  let chars = 0;
  const walk = (value: unknown, depth: number): "deep" | "long" | undefined => {
    if (typeof value === "string") chars += value.length + 2;
    else if (typeof value !== "object" || value === null)
      chars += String(value).length; // a number as JSON writes it, true, false, null
    else {
      if (depth > maxDepth) return "deep";
      chars += 2;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const over = walk(value[i], depth + 1);
          if (over) return over;
          chars++;
        }
      } else {
        for (const key in value) {
          chars += key.length + 4;
          const over = walk((value as Record<string, unknown>)[key], depth + 1);
          if (over) return over;
        }
      }
    }
    return chars > maxChars ? "long" : undefined;
  };
  return walk(json, 1);
}
