/**
 * An option that takes one of a few words (`--scope`, `--source`,
 * `--runtime`, `--strategy`): every one refuses another word the same way,
 * naming the choices and the nearest of them, as an unknown option is
 * refused (`must be one of call, deploy, admin; did you mean "admin"?`).
 * Used as commander's argument parser, in place of its `.choices()`.
 */
import { InvalidArgumentError } from "commander";
import { didYouMean } from "../nearest-name.js";
import { NAME_PATTERN } from "../protocol.js";
import { echoedText } from "../value-text.js";

/**
 * A commander argument parser that takes one of `choices`.
 * @example
 * program.option("--source <source>", "only stdout, stderr, system", parseChoice(LOG_SOURCES));
 * // --source stdrr: error: option '--source <source>' argument 'stdrr' is invalid. must be one of stdout, stderr, system; did you mean "stderr"?
 */
export function parseChoice<const C extends string>(choices: readonly C[]): (value: string) => C {
  return (value) => {
    const known = choices.find((c) => c === value);
    if (known !== undefined) return known;
    throw new InvalidArgumentError(`must be one of ${choices.join(", ")}${didYouMean(value, choices)}`);
  };
}

/**
 * A commander argument parser for an app's name (`NAME_PATTERN`): refused before any request, where an empty one
 * made a path of no route (`GET /v1/apps//calls`).
 * @example
 * command.argument("<app>", "the app", parseAppName);
 * // tandem calls "": error: command-argument value '' is invalid for argument 'app'. an app's name is 1-64 letters, …
 */
export function parseAppName(value: string): string {
  if (NAME_PATTERN.test(value)) return value;
  throw new InvalidArgumentError(`an app's name is 1-64 letters, digits, '-' or '_', starting with a letter or digit (got ${echoedText(value)})`);
}
