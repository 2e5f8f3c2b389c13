/**
 * A web endpoint's returned value, checked before it is answered as JSON. `JSON.stringify` drops or changes some values
 * without a word (a function or a symbol is left out, a `Map` or a `Set` is written `{}`, `NaN` `null`), so the client
 * would get other data than the handler returned: such a value fails the request, naming where it is and what to
 * return instead. What JSON does by its own plain rules stays: a field that is `undefined` is left out, a `Date` (any
 * value with a `toJSON` method) is written as that method says. Function results are checked by the wire's own rules
 * instead (sdk/result-value.ts): the wire carries a `Map`, a `Set` or a `Date` as itself.
 */

/** How deep the check looks: past it, JSON itself would be the problem (and `JSON.stringify` throws if so). */
const CHECKED_DEPTH = 512;

/**
 * Where in `value` JSON would write something other than what it is (a path such as `.rows[0].m`, "" for `value`
 * itself), what that is, and what JSON does with it and what to return instead (a clause that follows "which");
 * undefined when JSON writes it faithfully.
 * @example
 * unfaithfulJsonIn({ m: new Map() }); // { path: ".m", what: "a Map", instead: "…" }
 */
export function unfaithfulJsonIn(value: unknown): { path: string; what: string; instead: string } | undefined {
  const ancestors = new Set<object>();
  const walk = (v: unknown, depth: number): { path: string; what: string; instead: string } | undefined => {
    const problem = problemOf(v);
    if (problem) return { path: "", ...problem };
    if (typeof v !== "object" || v === null || depth >= CHECKED_DEPTH) return undefined;
    // A value with its own `toJSON` (a Date, a URL) is written as that says: what it returns is checked.
    const toJSON = (v as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") return walk(toJSON.call(v, ""), depth + 1);
    if (ancestors.has(v)) return { path: "", what: "a reference to a value that holds it", instead: "JSON cannot write (a cycle): return a copy without it" };
    ancestors.add(v);
    const entries: [string, unknown][] = Array.isArray(v) ? v.map((x, i) => [`[${i}]`, x]) : Object.entries(v).map(([k, x]) => [`.${k}`, x]);
    for (const [step, inner] of entries) {
      // A field that is undefined is left out, as JSON does (in an array it is null): no surprise to name.
      if (inner === undefined) continue;
      const found = walk(inner, depth + 1);
      if (found) return { ...found, path: `${step}${found.path}` };
    }
    ancestors.delete(v);
    return undefined;
  };
  return walk(value, 0);
}

/** What is wrong with `v` itself as JSON, and what to return instead; undefined for a value JSON writes as it is. */
function problemOf(v: unknown): { what: string; instead: string } | undefined {
  switch (typeof v) {
    case "function":
    case "symbol":
      return { what: `a ${typeof v}`, instead: "JSON leaves out: return data, a Response, or nothing (204)" };
    case "bigint":
      return { what: "a bigint", instead: "JSON has no text for: return it as a string (String(n)) or a number" };
    case "number":
      return Number.isFinite(v) ? undefined : { what: String(v), instead: "JSON writes as null: return null or a string" };
    case "object": {
      if (v === null || Array.isArray(v)) return undefined;
      const proto = Object.getPrototypeOf(v) as object | null;
      if (proto === Object.prototype || proto === null) return undefined;
      if (typeof (v as { toJSON?: unknown }).toJSON === "function") return undefined;
      // A boxed primitive (`new String("a")`) is written as its value.
      if (v instanceof String || v instanceof Number || v instanceof Boolean) return undefined;
      if (v instanceof Map) return { what: "a Map", instead: "JSON writes as {}: return Object.fromEntries(map), or [...map] for its entries" };
      if (v instanceof Set) return { what: "a Set", instead: "JSON writes as {}: return [...set]" };
      if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) {
        const name = v.constructor.name;
        return {
          what: `${/^[AEIO]/.test(name) ? "an" : "a"} ${name}`,
          instead: "JSON writes as an object of indexes, or {}: return Array.from(it), or the bytes as a Response",
        };
      }
      if (v instanceof Error) return { what: `an ${v.name || "Error"}`, instead: "JSON writes as {}: return { message: err.message }, or throw it" };
      if (v instanceof Promise) return { what: "a Promise", instead: "JSON writes as {}: await it first" };
      // Any other class's instance is written as its own fields, as JSON writes every object: those are checked.
      return undefined;
    }
    default:
      return undefined;
  }
}
