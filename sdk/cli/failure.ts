/**
 * How every `tandem` command says it failed, in one format on stderr:
 * `error: <what went wrong, and what to do>`. A function's own error reads as
 * it was thrown (`error: RangeError: out of range`) with its remote stack
 * under it; commander's own errors (an unknown flag, a bad value) are put in
 * the same shape.
 */
import { RemoteError } from "../errors.js";
import { style, visibleLines } from "./style.js";

/**
 * The lines that say `err` ended a command.
 * @example
 * formatFailure(new InvalidOptionsError('app "a" has no function "nope"')) // 'error: app "a" has no function "nope"'
 */
export function formatFailure(err: unknown): string {
  const head = style.err("error:");
  // A function's error and a container's last lines are its text: escapes show as text, as in `tandem logs`.
  if (err instanceof RemoteError) {
    const frames = err.remoteStack?.split("\n").slice(1).join("\n");
    return `${head} ${visibleLines(`${err.remoteName}: ${err.message}${frames ? `\n${frames}` : ""}`)}`;
  }
  return `${head} ${err instanceof Error ? visibleLines(err.message) : String(err)}`;
}

/** Prints `err` as a command's failure. */
export function printFailure(err: unknown): void {
  console.error(formatFailure(err));
}

/**
 * Commander's error text (`error: unknown option '--gpu'\n(Did you mean --gpus?)\n`) in the one format, for
 * `program.configureOutput({ outputError })`.
 */
export function formatCommanderError(text: string): string {
  const message = text
    .trim()
    .replace(/^error:\s*/, "")
    .replace(/\n\(Did you mean (.+)\?\)$/, "; did you mean $1?");
  return `${formatFailure(message)}\n`;
}
