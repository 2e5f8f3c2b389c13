import type { Command } from "commander";
import { describe, expect, it } from "vitest";
import { readCliConfig } from "./config.js";
import { tandemProgram } from "./program.js";

/** Each command of the program with its path (`["queue", "peek"]`), the program itself first. */
function everyCommand(command: Command, path: string[] = []): { path: string[]; command: Command }[] {
  return [{ path, command }, ...command.commands.flatMap((sub) => everyCommand(sub, [...path, sub.name()]))];
}

describe("every command's --help", () => {
  const commands = everyCommand(tandemProgram(readCliConfig({})));

  it('says each default once (commander adds its own "(default: …)" to an option given a default)', () => {
    expect(commands.length).toBeGreaterThan(30);
    for (const { path, command } of commands)
      expect(command.helpInformation().replace(/\s+/g, " "), path.join(" ")).not.toMatch(/\(default:? ([^)]+)\) \(default: \1\)/);
    const peek = commands.find(({ path }) => path.join(" ") === "queue peek")!.command;
    expect(peek.helpInformation()).toMatch(/at most this many \(default: 10\)\n/);
  });

  it("describes every command, option and argument", () => {
    for (const { path, command } of commands) {
      const where = ["tandem", ...path].join(" ");
      expect(command.description(), where).not.toBe("");
      for (const option of command.options) expect(option.description, `${where} ${option.flags}`).not.toBe("");
      for (const argument of command.registeredArguments) expect(argument.description, `${where} <${argument.name()}>`).not.toBe("");
    }
  });
});

describe("an option's bad value", () => {
  /**
   * What `tandem` says of `args`: commander's own error as it prints it, or an error commander passes on (which main.ts
   * prints as `error: <message>`).
   */
  const refusal = (args: string[]): string => {
    const program = tandemProgram(readCliConfig({}));
    let said = "";
    for (const { command } of everyCommand(program)) command.exitOverride().configureOutput({ writeErr: () => {}, outputError: (text) => (said += text) });
    try {
      program.parse(args, { from: "user" });
    } catch (err) {
      return said || `error: ${(err as Error).message}`;
    }
    throw new Error(`tandem ${args.join(" ")} was not refused`);
  };

  it("names the option and its value, a --gpus with an unknown GPU too, in every command that takes one", () => {
    // Before: `unknown GPU "V100"; …` alone, where every other --gpus mistake named the option.
    for (const command of [["plane"], ["serve"], ["run", "app.ts::f"]])
      expect(refusal([...command, "--gpus", "V100:1"]), command[0]).toMatch(/^error: --gpus "V100:1": unknown GPU "V100"; known types: T4, /);
    expect(refusal(["plane", "--gpus", ",,"])).toMatch(/^error: --gpus ",," names no GPU/);
    expect(refusal(["plane", "--port", "http"])).toMatch(/^error: option '-p, --port <port>' argument 'http' is invalid\. must be a port number/);
  });
});
