/**
 * A call's arguments checked at the gateway, before anything runs: a class
 * method's parameters, the function's `input` schema, and what a WebAssembly
 * function's module can be given. A call, spawn or
 * stream request with a bad one is refused (`400`) before it is recorded or
 * sent to a plane; a map input with one fails by itself. The schema's output
 * is not kept here: the handler gets it where it runs (sdk/arguments.ts),
 * and a plane is sent the arguments as the caller sent them. The check is
 * the SDK's (`checkCallArguments`), which `tandem run` makes too.
 */
import { checkCallArguments } from "../sdk/arguments.js";
import { checkWasmArguments } from "../wasm/function.js";
import type { CallArgs } from "./call-args.js";
import type { RegisteredFunction } from "./registry.js";

/**
 * Throws `invalid_request` for a class method's bad parameters, and
 * `invalid_argument` for an argument its `input` schema refuses (a class
 * method's own arguments are counted after its parameters). Arguments still
 * in wire form are decoded only when there is something to check.
 *
 * @example await checkArguments(fn, CallArgs.of(["a", 1])) // demo.add: argument 1: Invalid input: expected number, received string (got "a")
 */
export async function checkArguments(fn: RegisteredFunction, args: CallArgs): Promise<void> {
  if (fn.clsMethod || fn.input) await checkCallArguments(`${fn.app}.${fn.name}`, fn, args.values);
  if (fn.wasmInput) checkWasmArguments(`${fn.app}.${fn.name}`, fn.wasmInput, args.values);
}
