/**
 * `tandem volume|dict|queue create NAME [--exist-ok]`: one command, the same
 * for each kind of thing the gateway keeps by name.
 */
import type { Command } from "commander";
import { style } from "./style.js";

/**
 * Adds `create` to `parent` (`tandem dict`, say): `make` makes the `kind` named (or, with `--exist-ok`, takes the one
 * there is), and `summary` says what it holds.
 * @example addCreateCommand(dict, "dict", withGateway, (name, existOk, opts) => Dict.create(name, { ...optionsOf(opts), existOk }), (d) => `${d.len} entries`);
 */
export function addCreateCommand<Info extends { name: string }, Opts>(
  parent: Command,
  kind: string,
  withGateway: (command: Command) => Command,
  make: (name: string, existOk: boolean, opts: Opts) => Promise<Info>,
  summary: (info: Info) => string,
): void {
  withGateway(
    parent
      .command("create")
      .description(`make a ${kind} (needs a token of scope deploy)`)
      .argument("<name>", `the ${kind}'s name`)
      .option("--exist-ok", "succeed when it exists already"),
  ).action(async (name: string, opts: Opts & { existOk?: boolean }) => {
    const info = await make(name, opts.existOk ?? false, opts);
    console.log(`${style.ok("✓")} ${kind} ${info.name} (${summary(info)})`);
  });
}
