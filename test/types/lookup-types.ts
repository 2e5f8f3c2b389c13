// Checked by `tsc` (npm run typecheck), never run: `lookup<typeof handle>` types a client's calls by the handle its
// app file exports, imported as a type only (before: lookup's arguments and result were `any`, and `lookup<typeof
// handle>` did not compile).
import { CancelledError, FunctionTimeoutError, TandemError, lookup, type ErrorCode, type FunctionCall } from "tandem";
import type { greet as Greet, stamp as Stamp, tokens as Tokens } from "./typed-app.js";

export async function lookupChecks(): Promise<void> {
  const greet = lookup<typeof Greet>("typed", "greet", { gateway: "http://127.0.0.1:8787" });
  const text: string = await greet.remote("Ada");
  const twice: string = await greet.remote("Ada", 2);
  // @ts-expect-error: a number where the handler takes a string
  await greet.remote(1);
  // @ts-expect-error: the result is a string
  const wrong: number = await greet.remote("Ada");
  const call: FunctionCall<string> = await greet.spawn("Ada");
  const stamp = lookup<typeof Stamp>("typed", "stamp");
  const { year }: { year: number } = await stamp.remote(new Date());
  for await (const token of lookup<typeof Tokens>("typed", "tokens").remoteGen("a b")) {
    const t: string = token;
    void t;
  }
  // By its arguments and result as given, as before; and untyped, any.
  const given: number = await lookup<[number], number>("typed", "square").remote(3);
  const untyped: { anything: true } = await lookup("typed", "greet").remote(1, 2, 3);
  void [text, twice, wrong, call, year, given, untyped];
}

// Each error class has its own code: `instanceof` narrows `code` too (before: every class's was the whole union).
export function errorChecks(e: unknown): string {
  if (e instanceof FunctionTimeoutError) {
    const code: "function_timeout" = e.code;
    return code;
  }
  if (e instanceof CancelledError) {
    // @ts-expect-error: a cancel's code is call_cancelled
    const code: "function_timeout" = e.code;
    return code;
  }
  if (e instanceof TandemError) {
    const code: ErrorCode = e.code; // any of them
    return code;
  }
  return "";
}
