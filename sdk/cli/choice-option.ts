/**
 * An option that takes one of a few words (`--scope`, `--source`,
 * `--runtime`, `--strategy`): every one refuses another word the same way,
 * naming the choices and the nearest of them, as an unknown option is
 * refused (`must be one of call, deploy, admin; did you mean "admin"?`).
 * Used as commander's argument parser, in place of its `.choices()`.
 */
import { InvalidArgumentError } from "commander";
import { didYouMean } from "../nearest-name.js";

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
