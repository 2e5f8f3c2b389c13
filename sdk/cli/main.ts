#!/usr/bin/env node
/**
 * The `tandem` command line. Each command is a thin layer over a module in
 * this folder; `tandem --help` lists them.
 */
import { Command, InvalidArgumentError } from "commander";
import { readCliConfig, type CliConfig } from "./config.js";
import { printFailure } from "./failure.js";
import { readerHasGone, watchReaderGone } from "./signals.js";
import { style } from "./style.js";
import { trace, traceTo } from "../trace.js";
import { tandemProgram } from "./program.js";

/** A command's exit status when it fails, its options or arguments wrong included (README, "Exit codes"). */
const FAILURE_EXIT = 2;

// Every TANDEM_* setting the CLI uses, read once, here.
let config: CliConfig;
try {
  config = readCliConfig(process.env, process.argv[2]);
  if (config.trace) traceTo((line) => process.stderr.write(line + "\n"));
  trace("cli: modules loaded");
} catch (err) {
  printFailure(err);
  process.exit(FAILURE_EXIT);
}

const program = tandemProgram(config);

// A mistake in a command's options or arguments ends with where its usage is, not the usage itself, and exits 2 as
// every other failure does (README, "Exit codes"): commander's own exit status for it is 1, which `tandem run` and
// `tandem logs` give to a call that failed and to a name with nothing to show. Help and --version still exit 0.
(function pointToHelp(command: Command, path: string): void {
  command.showHelpAfterError(style.dim(`run "${path} --help" for usage`));
  command.exitOverride((err) => {
    // `tandem`, `tandem volume` (a group, no command named): its help went to stderr; the failure is said as every other.
    if (err.code === "commander.help" && err.exitCode !== 0) printFailure(new InvalidArgumentError(`${path} needs a command: one of those above`));
    process.exit(err.exitCode === 0 ? 0 : FAILURE_EXIT);
  });
  for (const sub of command.commands) pointToHelp(sub, `${path} ${sub.name()}`);
})(program, program.name());

// `tandem run … | head -1`, `tandem volume get v /f - | head -c 10`: once the reader is gone there is no one to print
// for, so the command ends with 0, quietly (it ended with EPIPE's stack, or "error: write EPIPE" and 2).
watchReaderGone();

// Every command's failure, in one format (failure.ts).
program.parseAsync().catch((err: unknown) => {
  if (readerHasGone()) process.exit(0);
  printFailure(err);
  process.exit(FAILURE_EXIT);
});
