/**
 * The host's file system against WASI preview1 as POSIX reads it: each scenario of
 * fixtures/fs-conformance.as.ts runs under Node's own node:wasi (a real directory preopened) and
 * under Tandem's host (the same file in memory). Tandem's answer is asserted line by line; Node's
 * must be the same but for the lines listed where node:wasi is wrong, each with why. A few
 * scenarios run in real workerd too.
 */
import { startWasmWorker } from "./fixtures/workerd.js";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileFixture } from "./fixtures/build.js";
import { runWasi } from "./host.js";
import { ConsoleStdout, File, OpenFile, PreopenDirectory, WASI, type WasiInstance } from "./wasi/index.js";

const dir = mkdtempSync(join(tmpdir(), "tandem-wasi-conformance-"));
let fixture: Uint8Array<ArrayBuffer>;
let module: WebAssembly.Module;
const lines = (text: string) => text.trimEnd().split("\n");

beforeAll(async () => {
  fixture = await compileFixture("fs-conformance", dir);
  module = new WebAssembly.Module(fixture);
  writeFileSync(join(dir, "fs.wasm"), fixture);
  writeFileSync(join(dir, "node-wasi.mjs"), NODE_RUNNER);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function underTandem(scenario: string): string[] {
  const run = runWasi(module, "fs", { args: [scenario], files: { "/a.txt": new TextEncoder().encode("hello") } });
  return lines(new TextDecoder().decode(run.stdout));
}

/**
 * node:wasi runs in a child process: after a refused path_filestat_set_times it aborts the process it
 * runs in as that process ends (Node 20), which must not end the test worker. The runner writes
 * `#end` once the module has returned, so an abort after that is told from a run that did not finish.
 */
const NODE_RUNNER = `
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { WASI } from "node:wasi";
const [wasmPath, scenario, root, out] = process.argv.slice(2);
const fd = openSync(out, "w");
const wasi = new WASI({ version: "preview1", args: ["fs", scenario], env: {}, preopens: { "/": root }, returnOnExit: true, stdout: fd });
wasi.start(new WebAssembly.Instance(new WebAssembly.Module(readFileSync(wasmPath)), { wasi_snapshot_preview1: wasi.wasiImport }));
writeSync(fd, "#end\\n");
closeSync(fd);
`;

function underNode(scenario: string): string[] {
  const root = mkdtempSync(join(dir, `${scenario}-`));
  writeFileSync(join(root, "a.txt"), "hello");
  const out = join(dir, `${scenario}.out`);
  const run = spawnSync(process.execPath, ["--no-warnings", join(dir, "node-wasi.mjs"), join(dir, "fs.wasm"), scenario, root, out], {
    timeout: 20_000,
    encoding: "utf8",
  });
  const printed = lines(existsSync(out) ? readFileSync(out, "utf8") : "");
  if (printed.at(-1) !== "#end") {
    throw new Error(`node:wasi ended with ${run.signal ?? `code ${run.status}`} before scenario ${scenario} did: ${run.stderr.trim().slice(-500)}`);
  }
  return printed.slice(0, -1);
}

/**
 * Runs `scenario` in both hosts: Tandem's lines must be `expected`; Node's the same, but for
 * `nodeDiffers` (Tandem's line → node:wasi's). node:wasi reports the host's raw open flags
 * (O_LARGEFILE, O_RDWR) in fdstat, so that field is left out of the comparison with Node.
 */
function conforms(scenario: string, expected: string[], nodeDiffers: Record<string, string> = {}): void {
  expect(underTandem(scenario)).toEqual(expected);
  const withoutFlags = (l: string) => l.replace(/ flags=\d+/, "");
  expect(underNode(scenario).map(withoutFlags)).toEqual(expected.map((l) => withoutFlags(nodeDiffers[l] ?? l)));
}

describe("the host's file system, against Node's node:wasi", () => {
  it("writes at the end of an append-mode descriptor, whatever its position or the offset given (fd_write, fd_pwrite)", () => {
    conforms("append", [
      "open a.txt: SUCCESS",
      "write X: SUCCESS",
      "seek 0: SUCCESS",
      "write Y: SUCCESS",
      "pwrite Z at 0: SUCCESS",
      "fdstat: file flags=1 read=yes write=yes readdir=no",
      'a.txt holds "helloXYZ"',
    ]);
  });

  it("turns append mode on and off on an open descriptor (fd_fdstat_set_flags), and reports it (fd_fdstat_get)", () => {
    conforms("set-flags", [
      "open a.txt: SUCCESS",
      "fdstat: file flags=0 read=yes write=yes readdir=no",
      "set flags append: SUCCESS",
      "fdstat: file flags=1 read=yes write=yes readdir=no",
      "write X: SUCCESS",
      "set flags none: SUCCESS",
      "seek 0: SUCCESS",
      "write J: SUCCESS",
      'a.txt holds "JelloX"',
    ]);
  });

  it("truncates and extends a file with zeros (fd_filestat_set_size), but not through a read-only descriptor", () => {
    conforms("set-size", [
      "open a.txt: SUCCESS",
      "set size 2: SUCCESS",
      "filestat: file nlink=1 size=2",
      "set size 4: SUCCESS",
      "filestat: file nlink=1 size=4",
      'a.txt holds "he\\u0000\\u0000"',
      "open a.txt: SUCCESS",
      "set size 0 read-only: NOTCAPABLE",
      'a.txt holds "he\\u0000\\u0000"',
    ]);
  });

  it("sets a descriptor's times as its flags say, refusing a time both given and asked to be now (fd_filestat_set_times)", () => {
    conforms("set-times", [
      "open a.txt: SUCCESS",
      "set atim mtim: SUCCESS",
      "filestat: atim=1000000000000000000 mtim=1500000000000000000",
      "set atim and atim_now: INVAL",
      "set mtim and mtim_now: INVAL",
      "set mtim alone: SUCCESS",
      "filestat: atim=1000000000000000000 mtim=1200000000000000000",
      "set atim_now: SUCCESS",
      "filestat: atim=now mtim=1200000000000000000",
    ]);
  });

  it("sets a path's times, refusing ATIM with ATIM_NOW and MTIM with MTIM_NOW (path_filestat_set_times)", () => {
    conforms("path-set-times", [
      "set atim mtim: SUCCESS",
      "times a.txt: atim=1000000000000000000 mtim=1500000000000000000",
      "set mtim alone: SUCCESS",
      "times a.txt: atim=1000000000000000000 mtim=1200000000000000000",
      "set times missing: NOENT",
      "set atim and atim_now: INVAL",
    ]);
    conforms("path-set-times-mtim", ["set mtim and mtim_now: INVAL"]);
  });

  it("does not open through a symlink without SYMLINK_FOLLOW: ELOOP, or ENOTDIR when a directory is asked for (O_NOFOLLOW)", () => {
    conforms(
      "nofollow",
      [
        "symlink link -> a.txt: SUCCESS",
        "open link: LOOP",
        "open link: NOTDIR",
        "open link: SUCCESS",
        'read: SUCCESS "hello"',
        "mkdir d: SUCCESS",
        "symlink dlink -> d: SUCCESS",
        "open dlink: NOTDIR",
        "open dlink/: SUCCESS",
        "open dlink: SUCCESS",
        "stat link nofollow: symlink nlink=1 size=5",
        "stat link: file nlink=1 size=5",
      ],
      // node:wasi drops O_NOFOLLOW and opens the target.
      { "open link: LOOP": "open link: SUCCESS", "open dlink: NOTDIR": "open dlink: SUCCESS" },
    );
  });

  it("makes, reads and follows symlinks, within the sandbox only (path_symlink, path_readlink, trailing slashes)", () => {
    conforms(
      "symlink",
      [
        "symlink link -> a.txt: SUCCESS",
        "symlink link -> a.txt: EXIST",
        'readlink link (256 bytes): SUCCESS "a.txt"',
        'readlink link (3 bytes): SUCCESS "a.t"',
        "readlink a.txt (256 bytes): INVAL",
        "readlink missing (256 bytes): NOENT",
        "stat link nofollow: symlink nlink=1 size=5",
        "stat link/: NOTDIR",
        'link holds "hello"',
        "mkdir d: SUCCESS",
        "symlink d/up -> ../a.txt: SUCCESS",
        'd/up holds "hello"',
        "symlink dlink -> d: SUCCESS",
        'dlink/up holds "hello"',
        "symlink dangling -> nowhere: SUCCESS",
        "dangling holds: NOENT",
        "stat dangling nofollow: symlink nlink=1 size=7",
        "symlink loop -> loop: SUCCESS",
        "loop holds: LOOP",
        "symlink escape -> ../outside: SUCCESS",
        "escape holds: NOTCAPABLE",
        "unlink dlink: SUCCESS",
        "stat d: dir",
      ],
      {
        // readlink(2) fills a short buffer with the target's start (wasi-libc and Rust's std count on it); node:wasi fails.
        'readlink link (3 bytes): SUCCESS "a.t"': "readlink link (3 bytes): NOBUFS",
        // node:wasi follows the symlink out of the preopened directory, and finds nothing there only by chance.
        "escape holds: NOTCAPABLE": "escape holds: NOENT",
      },
    );
  });

  it("makes hard links that share the file and count its links (path_link)", () => {
    conforms("link", [
      "link b.txt to a.txt: SUCCESS",
      "stat a.txt: file nlink=2 size=5",
      "open b.txt: SUCCESS",
      "write !: SUCCESS",
      'a.txt holds "hello!"',
      "link b.txt to a.txt: EXIST",
      "mkdir d: SUCCESS",
      "link e to d: PERM",
      "link c.txt to missing: NOENT",
      "link d/ to a.txt: EXIST",
      "unlink a.txt: SUCCESS",
      "stat b.txt: file nlink=1 size=6",
      'b.txt holds "hello!"',
    ]);
  });

  it("renames directories named with trailing slashes, onto empty ones only, never into themselves (path_rename)", () => {
    conforms("rename-dir", [
      "mkdir d: SUCCESS",
      "open d/f: SUCCESS",
      "rename d/ to e/: SUCCESS",
      "stat d: NOENT",
      "stat e/f: file nlink=1 size=0",
      "rename e to e2/: SUCCESS",
      "rename a.txt/ to x: NOTDIR",
      "rename a.txt to b/: NOTDIR",
      "rename e2 to e2/sub: INVAL",
      "mkdir full: SUCCESS",
      "open full/g: SUCCESS",
      "rename e2/ to full/: NOTEMPTY",
      "rename e2/ to a.txt: NOTDIR",
      "rename a.txt to e2: ISDIR",
      "mkdir empty: SUCCESS",
      "rename e2/ to empty/: SUCCESS",
      "stat empty/f: file nlink=1 size=0",
      "stat e2: NOENT",
    ]);
  });

  it('opens the preopened directory itself (".") with a directory\'s rights, and nothing above it', () => {
    conforms(
      "open-preopen",
      [
        "open .: SUCCESS",
        "fdstat: dir flags=0 read=no write=no readdir=yes",
        "readdir: a.txt:file",
        "stat a.txt through it: file nlink=1 size=5",
        "open d/..: NOENT",
        "mkdir d: SUCCESS",
        "open d/..: SUCCESS",
        "open ..: NOTCAPABLE",
      ],
      {
        // node:wasi reads "d/.." as "." without looking for d, and opens the preopen's parent on the host.
        "open d/..: NOENT": "open d/..: SUCCESS",
        "open ..: NOTCAPABLE": "open ..: SUCCESS",
      },
    );
  });

  it("gives a descriptor the rights asked for at open: read-only, write-only or both, never writing to a directory", () => {
    conforms("read-write", [
      "open a.txt: SUCCESS",
      "fdstat: file flags=0 read=yes write=no readdir=no",
      "write X: NOTCAPABLE",
      'read: SUCCESS "hello"',
      "open a.txt: SUCCESS",
      "fdstat: file flags=0 read=no write=yes readdir=no",
      "read: NOTCAPABLE",
      "write J: SUCCESS",
      "open a.txt: SUCCESS",
      "fdstat: file flags=0 read=yes write=yes readdir=no",
      "seek 5: SUCCESS",
      "write !: SUCCESS",
      "seek 0: SUCCESS",
      'read: SUCCESS "Jello!"',
      "mkdir d: SUCCESS",
      "open d: ISDIR",
      "open d: SUCCESS",
      "open a.txt: NOTDIR",
      "open a.txt: EXIST",
      "open a.txt: SUCCESS",
      'a.txt holds ""',
    ]);
  });

  it("finds nothing at an empty path, walks through no file, and creates a dangling symlink's target (O_CREAT)", () => {
    conforms(
      "paths",
      ["stat : NOENT", "open : NOENT", "stat a.txt/.: NOTDIR", "symlink dangling -> made: SUCCESS", "open dangling: SUCCESS", "stat made: file nlink=1 size=0"],
      {
        // POSIX answers ENOENT for an empty path; node:wasi EINVAL.
        "stat : NOENT": "stat : INVAL",
        "open : NOENT": "open : INVAL",
        // node:wasi reads "a.txt/." as "a.txt" without looking at what a.txt is.
        "stat a.txt/.: NOTDIR": "stat a.txt/.: file nlink=1 size=5",
      },
    );
  });

  it("refuses to make what exists and removes a symlink, not what it points at (path_create_directory, path_unlink_file)", () => {
    conforms("remove", [
      "mkdir d: SUCCESS",
      "mkdir d: EXIST",
      "mkdir new/: SUCCESS",
      "unlink d: ISDIR",
      "unlink a.txt/: NOTDIR",
      "rmdir a.txt: NOTDIR",
      "open d/f: SUCCESS",
      "rmdir d: NOTEMPTY",
      "rmdir d/: NOTEMPTY",
      "unlink d/f: SUCCESS",
      "rmdir d/: SUCCESS",
      "symlink nlink -> new: SUCCESS",
      "rmdir nlink: NOTDIR",
      "unlink nlink: SUCCESS",
      "stat new: dir",
    ]);
  });
});

describe("the host's file system, beyond what Node can show", () => {
  it("refuses to open a read-only file for writing or truncating (EROFS), and reads it", () => {
    const out: Uint8Array[] = [];
    const files = new Map([["a.txt", new File(new TextEncoder().encode("hello"), { readonly: true })]]);
    const wasi = new WASI(
      ["fs", "read-only"],
      [],
      [new OpenFile(new File(new Uint8Array())), new ConsoleStdout((b) => out.push(b.slice())), new ConsoleStdout(() => {}), new PreopenDirectory("/", files)],
    );
    wasi.start(new WebAssembly.Instance(module, { wasi_snapshot_preview1: wasi.wasiImport }) as unknown as WasiInstance);
    expect(lines(out.map((b) => new TextDecoder().decode(b)).join(""))).toEqual([
      "open a.txt: ROFS",
      "open a.txt: ROFS",
      "open a.txt: SUCCESS",
      "fdstat: file flags=0 read=yes write=no readdir=no",
      'read: SUCCESS "hello"',
    ]);
  });
});

describe("the host's file system in workerd", () => {
  it("gives the same answers as in Node", async () => {
    const mf = await startWasmWorker(
      `import { runWasi } from ${JSON.stringify(join(import.meta.dirname, "host.ts"))};
import fs from "./fs-conformance.wasm";
export default { async fetch(request) {
  const scenario = new URL(request.url).searchParams.get("scenario");
  const run = runWasi(fs, "fs", { args: [scenario], files: { "/a.txt": new TextEncoder().encode("hello") } });
  return new Response(run.stdout);
} };`,
      { "fs-conformance.wasm": fixture },
    );
    try {
      for (const scenario of ["append", "set-times", "nofollow", "symlink", "link", "rename-dir", "read-write", "paths"]) {
        const fromWorkerd = lines(await (await mf.dispatchFetch(`http://x/?scenario=${scenario}`)).text());
        expect({ scenario, lines: fromWorkerd }).toEqual({ scenario, lines: underTandem(scenario) });
      }
    } finally {
      await mf.dispose();
    }
  });
});
