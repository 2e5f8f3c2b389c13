/**
 * A WebAssembly function's bundled directories: packed within their limits,
 * preopened read-only (EROFS for what would change them, EBADF for a write
 * through a descriptor opened for reading), and the same for every call.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readOnlyPreopen, unpackFiles, type BundledFiles } from "./files.js";
import { compileFixture } from "./fixtures/build.js";
import { runWasi } from "./host.js";
import type { File } from "./wasi/index.js";
import { packDirectories } from "./prepare.js";
import { READ_ONLY_ERRNOS } from "./fixtures/files-errnos.js";

const dir = mkdtempSync(join(tmpdir(), "tandem-wasm-files-"));
let files: WebAssembly.Module;
const limits = { maxBytes: 1024 * 1024, maxFiles: 100 };

beforeAll(async () => {
  files = new WebAssembly.Module(await compileFixture("files", dir));
  mkdirSync(join(dir, "data/sub/deeper"), { recursive: true });
  mkdirSync(join(dir, "data/empty"));
  writeFileSync(join(dir, "data/hello.txt"), "hello from the bundle\n");
  writeFileSync(join(dir, "data/sub/deeper/n.bin"), new Uint8Array([0, 1, 2, 255]));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One call of the fixture: `files <dir> <file>` with `data/` bundled at `/data`. */
async function run(argv: string[], given?: BundledFiles) {
  const bundled = given ?? unpackFiles(await packDirectories({ "/data": "./data" }, dir, limits));
  const preopens = Object.entries(bundled).map(([guest, d]) => readOnlyPreopen(guest, d));
  const result = runWasi(files, "files", { args: argv, preopens });
  return JSON.parse(new TextDecoder().decode(result.stdout));
}

describe("bundled directories", () => {
  it("pack every file and directory, empty ones too, and unpack to the same bytes", async () => {
    const unpacked = unpackFiles(await packDirectories({ "/data": "./data" }, dir, limits));
    expect(unpacked["/data"]!.dirs.sort()).toEqual(["empty", "sub", "sub/deeper"]);
    expect(Object.keys(unpacked["/data"]!.files).sort()).toEqual(["hello.txt", "sub/deeper/n.bin"]);
    expect([...unpacked["/data"]!.files["sub/deeper/n.bin"]!]).toEqual([0, 1, 2, 255]);
  });

  it("are preopened at their guest path, with the function's args as argv[1..]", async () => {
    const out = await run(["/data", "hello.txt"]);
    expect(out.argv).toEqual(["files", "/data", "hello.txt"]);
    expect(out.text).toBe("hello from the bundle\n");
  });

  it("refuse every change with EROFS (69), and a write through a descriptor opened for reading with EBADF (8)", async () => {
    const out = await run(["/data", "hello.txt"]);
    expect(out.errnos).toEqual(READ_ONLY_ERRNOS);
  });

  it("read the same for every call, whatever the last one tried", async () => {
    const bundled = unpackFiles(await packDirectories({ "/data": "./data" }, dir, limits));
    for (let i = 0; i < 3; i++) expect((await run(["/data", "hello.txt"], bundled)).text).toBe("hello from the bundle\n");
    expect(new TextDecoder().decode(bundled["/data"]!.files["hello.txt"])).toBe("hello from the bundle\n");
    // Each call's tree is its own, over the bundled bytes themselves: not a copy.
    const [a, b] = [readOnlyPreopen("/data", bundled["/data"]!), readOnlyPreopen("/data", bundled["/data"]!)];
    expect(a.dir).not.toBe(b.dir);
    const file = a.dir.contents.get("hello.txt") as File;
    expect(file.data.buffer).toBe(bundled["/data"]!.files["hello.txt"]!.buffer);
  });

  it("are refused past the size limit, naming the directory, its size and the limit", async () => {
    mkdirSync(join(dir, "big"));
    writeFileSync(join(dir, "big/a.bin"), new Uint8Array(700 * 1024));
    writeFileSync(join(dir, "big/b.bin"), new Uint8Array(700 * 1024));
    await expect(packDirectories({ "/big": "./big" }, dir, limits)).rejects.toThrow(
      'option "files" ("/big": ./big) holds 1.4 MiB, more than the limit of 1.0 MiB for one function',
    );
  });

  it("are refused past the file count limit, and when missing or not a directory", async () => {
    mkdirSync(join(dir, "many"));
    for (let i = 0; i < 5; i++) writeFileSync(join(dir, `many/${i}.txt`), "x");
    await expect(packDirectories({ "/many": "./many" }, dir, { maxBytes: 1024, maxFiles: 4 })).rejects.toThrow(
      'option "files" ("/many": ./many) holds more than 4 files and directories, the limit for one function',
    );
    await expect(packDirectories({ "/data": "./nowhere" }, dir, limits)).rejects.toThrow(
      `option "files": "/data" is ./nowhere, which does not exist (looked for ${join(dir, "nowhere")})`,
    );
    await expect(packDirectories({ "/data": "./data/hello.txt" }, dir, limits)).rejects.toThrow(
      'option "files": "/data" is ./data/hello.txt, which is not a directory',
    );
  });

  it("follow symbolic links, and refuse one that loops", async () => {
    mkdirSync(join(dir, "linked"));
    symlinkSync(join(dir, "data/hello.txt"), join(dir, "linked/hello.txt"));
    const unpacked = unpackFiles(await packDirectories({ "/l": "./linked" }, dir, limits));
    expect(new TextDecoder().decode(unpacked["/l"]!.files["hello.txt"])).toBe("hello from the bundle\n");
    symlinkSync(join(dir, "linked"), join(dir, "linked/again"));
    await expect(packDirectories({ "/l": "./linked" }, dir, limits)).rejects.toThrow(/reaches .*linked twice, through symbolic links/);
  });
});
