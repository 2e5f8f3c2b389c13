import { Command } from "commander";
import { describe, expect, it } from "vitest";
import type { HttpInvoker } from "../client.js";
import type { LogLine } from "../protocol.js";
import { logLine } from "../../test/helpers/log-line.js";
import { addLogsCommand, bareSinceProblem, formatLogLine } from "./logs.js";

const line = (text: string): LogLine =>
  logLine(text, { time: Date.UTC(2026, 11, 4, 7, 4, 36, 120), function: "resize", callId: "fc-01", containerId: "c-9f2e", tier: "plane", source: "system" });

describe("formatLogLine", () => {
  it("prints a line with its time and origin", () => {
    expect(formatLogLine(line("cold start"))).toBe("2026-12-04T07:04:36.120Z shop.resize fc-01 c-9f2e (plane, system) cold start");
  });

  it("indents the rest of a line that holds several, so none is printed without its origin above it", () => {
    const printed = formatLogLine(line("ran out of memory (limit 128 MiB); its last lines:\nallocating\r\nstill allocating")).split("\n");
    expect(printed).toEqual([
      "2026-12-04T07:04:36.120Z shop.resize fc-01 c-9f2e (plane, system) ran out of memory (limit 128 MiB); its last lines:",
      "    allocating",
      "    still allocating",
    ]);
  });
});

describe("formatLogLine, with what a function may print to take over a terminal", () => {
  it("shows control characters other than tab as escapes, so a line cannot recolour, rewrite or retitle the screen", () => {
    const text = "red \x1b[31mRED\x1b[0m, over\rhidden, title\x1b]0;pwned\x07, bell\x07, nul\x00, del\x7f, csi\x9b2J, tab\tkept";
    expect(formatLogLine(line(text))).toBe(
      "2026-12-04T07:04:36.120Z shop.resize fc-01 c-9f2e (plane, system) " +
        "red \\x1b[31mRED\\x1b[0m, over\\rhidden, title\\x1b]0;pwned\\x07, bell\\x07, nul\\x00, del\\x7f, csi\\x9b2J, tab\tkept",
    );
  });

  it("shows the marks that reorder text right to left as escapes too, so a line cannot read backwards", () => {
    expect(formatLogLine(line("file\u202Egpj.exe, isolate\u2066x\u2069"))).toMatch(/ file\\u202egpj\.exe, isolate\\u2066x\\u2069$/);
  });

  it("keeps each line of several on its own line, escaping within each, and escapes the line's origin as well", () => {
    const printed = formatLogLine({ ...line("one\x1b[2K\r\ntwo\rthree"), function: "re\x1bsize", containerId: "c-\x07" }).split("\n");
    expect(printed).toEqual(["2026-12-04T07:04:36.120Z shop.re\\x1bsize fc-01 c-\\x07 (plane, system) one\\x1b[2K", "    two\\rthree"]);
  });
});

describe("tandem logs -n", () => {
  const parse = async (n: string) => {
    const program = new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    addLogsCommand(program, () => ({ logLines: async function* () {} }) as unknown as HttpInvoker, "a token");
    await program.parseAsync(["logs", "shop", "-n", n], { from: "user" });
  };

  it("takes a whole number from 1 to 10000", async () => {
    await expect(parse("1")).resolves.toBeUndefined();
    await expect(parse("10000")).resolves.toBeUndefined();
  });

  it("refuses what is not written as one, though JavaScript would read a number in it", async () => {
    for (const n of ["", " 5", "0x10", "1e3", "1.5", "-3", "10001"]) {
      await expect(parse(n), n).rejects.toThrow(/must be a whole number from 0 \(with -f\) to 10000/);
    }
  });
});

describe("tandem logs -f -n 0", () => {
  it("asks for the lines from the gateway's now, so a clock here that runs ahead hides none", async () => {
    const asked: string[] = [];
    const program = new Command().exitOverride();
    addLogsCommand(
      program,
      () =>
        ({
          followLines: (path: string) => {
            asked.push(path);
            return []; // no line
          },
        }) as unknown as HttpInvoker,
      "a token",
    );
    await program.parseAsync(["logs", "shop", "-f", "-n", "0"], { from: "user" });
    expect(asked).toHaveLength(1);
    expect(new URL(asked[0]!, "http://gateway").searchParams.get("since")).toBe("0s");
  });

  it("refuses --since with it, which it would drop without a word", async () => {
    const asked: string[] = [];
    const program = new Command().exitOverride();
    addLogsCommand(program, () => ({ logLines: (path: string) => (asked.push(path), []) }) as unknown as HttpInvoker, "a token");
    await expect(program.parseAsync(["logs", "shop", "-f", "-n", "0", "--since", "2h"], { from: "user" })).rejects.toThrow(
      "-n 0 -f prints only the lines that come from now on, so --since has nothing to add: leave it out, or give -n from 1 to 10000 with it",
    );
    expect(asked).toEqual([]);
  });
});

describe("tandem logs --limit", () => {
  const asked = async (...args: string[]) => {
    const paths: string[] = [];
    const program = new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    const client = { logLines: (path: string) => (paths.push(path), []), followLines: (path: string) => (paths.push(path), []) };
    addLogsCommand(program, () => client as unknown as HttpInvoker, "a token");
    await program.parseAsync(["logs", "shop", ...args], { from: "user" });
    return new URL(paths[0]!, "http://gateway").searchParams;
  };

  it("is -n/--lines under the logs API's name, as its help says, checked the same way", async () => {
    expect((await asked("--limit", "15")).get("limit")).toBe("15");
    expect((await asked("--limit", "0", "-f")).get("since")).toBe("0s");
    expect((await asked("-n", "15", "--limit", "15")).get("limit")).toBe("15");
    await expect(asked("-n", "5", "--limit", "15")).rejects.toThrow("--limit is -n/--lines by another name: give one (got -n 5 and --limit 15)");
    await expect(asked("--limit", "0x10")).rejects.toThrow(/must be a whole number from 0 \(with -f\) to 10000/);
    const program = new Command();
    addLogsCommand(program, () => ({}) as unknown as HttpInvoker, "a token");
    expect(program.commands[0]!.helpInformation().replace(/\s+/g, " ")).toContain("--limit <n> alias of -n, --lines (the logs API's name for it: limit)");
  });
});

describe("tandem logs --since", () => {
  const asked = async (since: string) => {
    const paths: string[] = [];
    const program = new Command().exitOverride();
    addLogsCommand(program, () => ({ logLines: (path: string) => (paths.push(path), []) }) as unknown as HttpInvoker, "a token");
    await program.parseAsync(["logs", "shop", "--since", since], { from: "user" });
    return new URL(paths[0]!, "http://gateway").searchParams.get("since");
  };

  it("reads a date without a zone in this machine's zone, as a user means it, not in the gateway's", async () => {
    const zone = process.env.TZ;
    process.env.TZ = "Asia/Tokyo";
    try {
      expect(await asked("2026-12-05 09:00")).toBe(String(Date.UTC(2026, 11, 5, 0, 0)));
      expect(await asked("2026-12-05T09:00:00Z")).toBe(String(Date.UTC(2026, 11, 5, 9, 0)));
    } finally {
      if (zone === undefined) delete process.env.TZ;
      else process.env.TZ = zone;
    }
  });

  it("refuses a date outside the span a since may name, quoting it as written", async () => {
    await expect(asked("2300-01-01 00:00")).rejects.toThrow('--since must be a time from 1970-01-01T00:00:00Z to a day from now (got "2300-01-01 00:00")');
  });

  it("sends a duration and ms since the epoch as written, for the gateway's clock to read", async () => {
    expect(await asked("2h")).toBe("2h");
    expect(await asked("1796431424014")).toBe("1796431424014");
  });
});

describe("a --since of 0", () => {
  it("is told to leave --since out, not to write 0s (which is now)", () => {
    const problem = bareSinceProblem("0")!;
    expect(problem).toContain("leave --since out for every line kept");
    expect(problem).not.toContain('"0s"');
    expect(bareSinceProblem("90")).toContain('"90s"');
  });
});
