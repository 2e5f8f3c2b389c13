/**
 * The check on a class method's parameters (its first argument), which pick
 * its instance at the edge and its pool on a plane. One function, so that a
 * call is refused with the same 400 whichever tier would run it.
 */
import { InvalidRequestError } from "../sdk/errors.js";
import { clsParamsProblem } from "../sdk/protocol.js";
import type { RegisteredFunction } from "./registry.js";

/**
 * A class method's parameters (its first argument), which pick its instance
 * (and its pool on the plane), checked by the rule the SDK uses too
 * (`clsParamsProblem`). Throws `invalid_request` naming what is wrong.
 *
 * @example clsParamsOf(fn, [{ size: "small" }, "text"]) // { clsParams: { size: "small" } } for a class method, {} otherwise
 */
export function clsParamsOf(fn: RegisteredFunction, args: unknown[]): { clsParams?: Record<string, unknown> } {
  if (!fn.clsMethod) return {};
  const wrong = clsParamsProblem(args[0]);
  if (wrong?.parameter !== undefined) throw new InvalidRequestError(`${fn.app}.${fn.name}: class ${wrong.problem}`, { parameter: wrong.parameter });
  if (wrong) throw new InvalidRequestError(`${fn.app}.${fn.name} is a class method: its first argument is the class's ${wrong.problem}`);
  return { clsParams: args[0] as Record<string, unknown> };
}
