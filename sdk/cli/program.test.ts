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
