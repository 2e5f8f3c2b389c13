/**
 * The check on a class method's parameters (its first argument), which pick
 * its instance at the edge and its pool on a plane. One function, so that a
 * call is refused with the same 400 whichever tier would run it.
 */
import { InvalidRequestError } from "../sdk/errors.js";
import type { RegisteredFunction } from "./registry.js";

/**
 * A class method's parameters (its first argument), which pick its instance
 * (and its pool on the plane): an object of strings, numbers, booleans or
 * nulls, as the SDK checks them. Throws `invalid_request` naming what is wrong.
 *
 * @example clsParamsOf(fn, [{ size: "small" }, "text"]) // { clsParams: { size: "small" } } for a class method, {} otherwise
 */
export function clsParamsOf(fn: RegisteredFunction, args: unknown[]): { clsParams?: Record<string, unknown> } {
  if (!fn.clsMethod) return {};
  const params = args[0];
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw new InvalidRequestError(`${fn.app}.${fn.name} is a class method: its first argument must be the class's parameters object ({} for none)`);
  }
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && !["string", "number", "boolean"].includes(typeof value)) {
      const got = Array.isArray(value) ? "an array" : typeof value === "object" ? "an object" : typeof value;
      throw new InvalidRequestError(`${fn.app}.${fn.name}: class parameter "${key}" must be a string, number, boolean or null (got ${got})`, { parameter: key });
    }
  }
  return { clsParams: params as Record<string, unknown> };
}
