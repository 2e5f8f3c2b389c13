/**
 * `Volume`'s arguments, checked before anything is sent: each bad one an `InvalidOptionsError` naming the method
 * and what the argument must be (the gateway these handles name is never reached).
 */
import { describe, expect, it } from "vitest";
import { GatewayUnreachableError, InvalidOptionsError } from "./errors.js";
import { Volume } from "./volume.js";

// Nothing listens here: a check that let an argument through would fail with GatewayUnreachableError instead.
const vol = () => Volume.fromName("v", { gateway: "http://127.0.0.1:9", token: "tk-0000000000000000.ts-00000000000000000000000000000000" });

const refusal = async (work: () => Promise<unknown>): Promise<InvalidOptionsError> => {
  const err = await Promise.resolve()
    .then(work)
    .catch((e: unknown) => e);
  expect(err).toBeInstanceOf(InvalidOptionsError);
  return err as InvalidOptionsError;
};

describe("Volume's arguments", () => {
  it("refuses file data that is not text, bytes, a Blob or a stream, naming what it may be", async () => {
    const wants = "the data must be text (a string), bytes (a Uint8Array or Buffer), a Blob, a ReadableStream or an async iterable of bytes";
    expect((await refusal(() => vol().writeFile("x.txt", 42 as never))).message).toBe(
      `volume "v" writeFile: ${wants} (fs.createReadStream(...)); got number 42`,
    );
    expect((await refusal(() => vol().writeFile("x.txt", { a: 1 } as never))).message).toContain(
      "got an object (Object) (for JSON, pass JSON.stringify(value))",
    );
    expect((await refusal(() => vol().writeFile("n.txt", null as never))).message).toContain("got null");
    expect(
      (
        await refusal(async () =>
          vol()
            .batchUpload()
            .putFile(undefined as never, "a.bin"),
        )
      ).message,
    ).toContain("batch putFile: the local file");
  });

  it("refuses a path that is not a string, or not a path in a volume", async () => {
    expect((await refusal(() => vol().readFile(123 as never))).message).toBe(
      'volume "v" readFile: the path must be a string, like "models/weights.bin" (got number 123)',
    );
    expect((await refusal(() => vol().listdir("a/../b"))).message).toContain('listdir: path "a/../b" must not hold `.` or `..`');
    expect((await refusal(() => vol().remove(undefined as never))).message).toContain("remove: the path must be a string");
    expect((await refusal(() => vol().copyFiles("a.txt" as never, "b"))).message).toContain("copyFiles: the sources must be a list of one or more paths");
    expect((await refusal(() => vol().copyFiles(["a.txt"], 7 as never))).message).toContain("copyFiles: the path must be a string");
    expect(
      (
        await refusal(async () =>
          vol()
            .batchUpload()
            .putDirectory("./d", 1 as never),
        )
      ).message,
    ).toContain("putDirectory: the path must be a string");
  });

  it("refuses a write to a name reserved for the plane, and reads and removes of one pass", async () => {
    expect((await refusal(() => vol().writeFile(".tandem-keep.txt", "x"))).message).toBe(
      'volume "v" writeFile: path ".tandem-keep.txt" holds the name ".tandem-keep.txt": names starting with ".tandem-" are reserved for the plane ' +
        "(its files being replaced in a mount), which never commits them; choose another name",
    );
    expect((await refusal(() => vol().copyFiles(["a"], "b/.tandem-c/"))).message).toContain('holds the name ".tandem-c"');
    // A volume may hold one from before: reading or removing it is let through (here to a gateway that is not there).
    await expect(vol().readFile(".tandem-old")).rejects.toBeInstanceOf(GatewayUnreachableError);
    await expect(vol().remove(".tandem-old")).rejects.toBeInstanceOf(GatewayUnreachableError);
  });

  it("refuses options of the wrong type", async () => {
    expect((await refusal(() => vol().writeFile("a", "x", { mode: "644" as never }))).message).toBe(
      'volume "v" writeFile: option "mode" must be a file\'s permission bits, 0 to 0o777, such as 0o644 or 0o755 (got "644"): a volume keeps no setuid, setgid or sticky bit',
    );
    expect((await refusal(() => vol().writeFile("a", "x", { mode: 0o4755 }))).message).toContain("(got 0o4755)"); // in octal, not 2541
    expect((await refusal(() => vol().remove("a", { recursive: "yes" as never }))).message).toContain('option "recursive" must be true or false (got "yes")');
    expect((await refusal(() => vol().listdir("/", true as never))).message).toContain("listdir: the options must be an object");
    expect((await refusal(async () => vol().batchUpload({ force: 1 as never }))).message).toContain('batchUpload: option "force" must be true or false');
  });
});
