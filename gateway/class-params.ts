/**
 * The check on a class method's parameters (its first argument), which pick
 * its instance at the edge and its pool on a plane. One function, so that a
 * call is refused with the same 400 whichever tier would run it.
 */
import { checkClassParams } from "../sdk/arguments.js";
import type { RegisteredFunction } from "./registry.js";

/**
 * A class method's parameters (its first argument), which pick its instance
 * (and its pool on the plane), checked as every caller's are
 * (`checkClassParams`). Throws `invalid_request` naming what is wrong.
 *
 * @example clsParamsOf(fn, [{ size: "small" }, "text"]) // { clsParams: { size: "small" } } for a class method, {} otherwise
 */
export function clsParamsOf(fn: RegisteredFunction, args: unknown[]): { clsParams?: Record<string, unknown> } {
  if (!fn.clsMethod) return {};
  const params = args[0];
  checkClassParams(`${fn.app}.${fn.name}`, params);
  return { clsParams: params };
}
