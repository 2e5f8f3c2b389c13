/**
 * The WebAssembly host: a WASI command run in Node and in real workerd gives
 * the same output; bad modules are refused naming what is wrong; limits and
 * traps fail one run, and the next run works.
 */
import { startWasmWorker } from "./fixtures/workerd.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileFixture } from "./fixtures/build.js";
import { MEMORY_IMPORT, WasmLimitError, WasmModuleError, WasmTrapError, checkWasiCommand, runWasi } from "./host.js";
import { instrument } from "./prepare.js";

const dir = mkdtempSync(join(tmpdir(), "tandem-wasm-"));
let echo: Uint8Array<ArrayBuffer>;
let misbehave: Uint8Array<ArrayBuffer>;
let usesEnv: Uint8Array<ArrayBuffer>;
let notCommand: Uint8Array<ArrayBuffer>;
let memoryState: Uint8Array<ArrayBuffer>;
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (s: string) => new TextEncoder().encode(s);

beforeAll(async () => {
  [echo, misbehave, usesEnv, notCommand, memoryState] = await Promise.all(
    ["echo", "misbehave", "uses-env", "not-command", "memory-state"].map((name) => compileFixture(name, dir)),
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the WASI host in Node", () => {
  it("runs a command: stdin in, stdout and stderr out, its exit code", () => {
    const module = new WebAssembly.Module(echo);
    checkWasiCommand(module, "echo.wasm");
    const run = runWasi(module, "echo.wasm", { stdin: bytes("hello, wasm") });
    expect({ exitCode: run.exitCode, stdout: text(run.stdout), stderr: text(run.stderr) }).toEqual({ exitCode: 0, stdout: "HELLO, WASM", stderr: "bye\n" });
    expect(runWasi(module, "echo.wasm", { stdin: bytes("!stop") }).exitCode).toBe(3);
  });

  it("refuses a module that imports what the host does not provide, naming the import", () => {
    expect(() => checkWasiCommand(new WebAssembly.Module(usesEnv), "uses-env.wasm")).toThrow(WasmModuleError);
    expect(() => checkWasiCommand(new WebAssembly.Module(usesEnv), "uses-env.wasm")).toThrow(
      "uses-env.wasm imports env.now_please (function), which this host does not provide (it provides wasi_snapshot_preview1 functions only)",
    );
  });

  it("refuses a module that imports another runtime's extension under wasi_snapshot_preview1, saying it is not preview1's", async () => {
    const { default: binaryen } = await import("binaryen");
    // WasmEdge's socket extension: its name sits under wasi_snapshot_preview1, but preview1 has no such function.
    const m = binaryen.parseText(`(module
      (import "wasi_snapshot_preview1" "sock_open" (func $sock_open (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start") (drop (call $sock_open (i32.const 0) (i32.const 0) (i32.const 0)))))`);
    const module = new WebAssembly.Module(new Uint8Array(m.emitBinary()));
    m.dispose();
    expect(() => checkWasiCommand(module, "sockets.wasm")).toThrow(
      "sockets.wasm imports wasi_snapshot_preview1.sock_open (function), which this host does not provide (sock_open is not part of WASI preview1, but another runtime's extension)",
    );
  });

  it("names every import the host does not provide at once, not the first alone", async () => {
    const { default: binaryen } = await import("binaryen");
    const m = binaryen.parseText(`(module
      (import "wasi_snapshot_preview1" "sock_open" (func $sock_open (param i32 i32 i32) (result i32)))
      (import "env" "foo" (func $foo))
      (memory (export "memory") 1)
      (func (export "_start") (call $foo) (drop (call $sock_open (i32.const 0) (i32.const 0) (i32.const 0)))))`);
    const module = new WebAssembly.Module(new Uint8Array(m.emitBinary()));
    m.dispose();
    // Before: sock_open alone; env.foo came to light once that was fixed.
    expect(() => checkWasiCommand(module, "two.wasm")).toThrow(
      "two.wasm imports 2 things this host does not provide: wasi_snapshot_preview1.sock_open (function): sock_open is not part of WASI preview1, but another runtime's extension; env.foo (function): it provides wasi_snapshot_preview1 functions only",
    );
  });

  it("fails a run that traps, outgrows its memory or its output limit, and the next run works", () => {
    const module = new WebAssembly.Module(misbehave);
    expect(() => runWasi(module, "m.wasm", { stdin: bytes("t") })).toThrow(WasmTrapError);
    expect(() => runWasi(module, "m.wasm", { stdin: bytes("g"), limits: { maxMemoryPages: 50 } })).toThrow(
      /grew its memory to \d+ pages, past its limit of 50/,
    );
    const output = (() => {
      try {
        runWasi(module, "m.wasm", { stdin: bytes("o"), limits: { maxOutputBytes: 1000 } });
      } catch (e) {
        return e;
      }
    })();
    expect(output).toBeInstanceOf(WasmLimitError);
    expect((output as WasmLimitError).limit).toBe("output");
    expect((output as WasmLimitError).message).toBe("m.wasm wrote more than 1000 bytes of output, stdout and stderr together (its maxOutputBytes option)");
    expect(text(runWasi(module, "m.wasm", { stdin: bytes("x") }).stdout)).toBe("ok");
  });

  it("stops an instrumented module that loops past its time or grows past its memory, and the next run works", async () => {
    const module = new WebAssembly.Module(await instrument(misbehave, 64));
    expect(WebAssembly.Module.imports(module).map((i) => `${i.module}.${i.name}`)).toContain("tandem.tick");
    const limitOf = (input: string, limits: object) => {
      try {
        runWasi(module, "m.wasm", { stdin: bytes(input), limits });
      } catch (e) {
        return e instanceof WasmLimitError ? { limit: e.limit, message: e.message } : e;
      }
    };
    const started = Date.now();
    expect(limitOf("l", { maxWallMs: 200 })).toEqual({
      limit: "time",
      message: expect.stringMatching(/^m\.wasm ran for 2\d\d ms, past its limit of 200 ms, and was stopped$/),
    });
    expect(Date.now() - started).toBeLessThan(5000);
    // A sleep past the limit fails at once, rather than spinning until it ends.
    expect(limitOf("s", { maxWallMs: 200 })).toEqual({ limit: "time", message: "m.wasm asked to sleep 10000 ms, past its limit of 200 ms, and was stopped" });
    // Caught at the first step past the limit (one page over), not when the loop's budget runs out.
    expect(limitOf("m", { maxMemoryPages: 64 })).toEqual({
      limit: "memory",
      message: "m.wasm grew its memory to 65 pages, past its limit of 64 (4 MiB; its maxMemoryPages option)",
    });
    expect(text(runWasi(module, "m.wasm", { stdin: bytes("x") }).stdout)).toBe("ok");
  });

  it("runs a module's start section as part of the run: its steps, limits and traps are the run's, and a WASI call there is refused clearly", async () => {
    const { default: binaryen } = await import("binaryen");
    // A start section runs as the instance is made, before _start; _start exits 42 once it has counted to 100,000.
    const withStart = async (init: string, pages = 1) => {
      const m = binaryen.parseText(`(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") ${pages})
        (global $n (mut i32) (i32.const 0))
        (func $init ${init})
        (start $init)
        (func (export "_start") (call $exit (select (i32.const 42) (i32.const 1) (i32.eq (global.get $n) (i32.const 100000))))))`);
      const bytes = new Uint8Array(m.emitBinary());
      m.dispose();
      return new WebAssembly.Module(await instrument(bytes, 64));
    };
    const count = `(loop $l (global.set $n (i32.add (global.get $n) (i32.const 1))) (br_if $l (i32.lt_u (global.get $n) (i32.const 100000))))`;
    // Before: TypeError: Cannot read properties of undefined (reading 'memory'), once the loop reached its first step.
    expect(runWasi(await withStart(count), "s.wasm").exitCode).toBe(42);
    const failure = async (init: string, limits = {}, pages = 1) => {
      try {
        runWasi(await withStart(init, pages), "s.wasm", { limits });
      } catch (e) {
        return `${(e as Error).name}: ${(e as Error).message}`;
      }
    };
    expect(await failure(`(loop $l (br $l))`, { maxWallMs: 200 })).toMatch(
      /^WasmLimitError: s\.wasm ran for 2\d\d ms, past its limit of 200 ms, and was stopped$/,
    );
    expect(await failure(`(unreachable)`)).toBe("WasmTrapError: s.wasm trapped: unreachable"); // before: a bare RuntimeError
    expect(await failure(`(drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))`)).toBe(
      "WasmModuleError: s.wasm called WASI from its start section, before its instance existed; this host answers WASI calls from _start on (move that work into _start: AssemblyScript puts a file's top-level statements in the start section)",
    );
    // One that starts past its memory limit did not grow: said so, and its _start never runs.
    expect(await failure(`(nop)`, { maxMemoryPages: 8 }, 10)).toBe(
      "WasmLimitError: s.wasm starts with 10 pages of memory, past its limit of 8 (0.5 MiB; its maxMemoryPages option)",
    );
  });
});

describe("a prepared module's memory", () => {
  it("comes from the host, still exported, with its limits recorded", async () => {
    const module = new WebAssembly.Module(await instrument(memoryState, 64));
    expect(WebAssembly.Module.imports(module)).toContainEqual({ module: MEMORY_IMPORT.module, name: MEMORY_IMPORT.name, kind: "memory" });
    expect(WebAssembly.Module.exports(module)).toContainEqual({ name: "memory", kind: "memory" });
    const [limits] = WebAssembly.Module.customSections(module, MEMORY_IMPORT.section);
    expect(JSON.parse(text(new Uint8Array(limits!)))).toEqual({ initial: 1 });
    expect(() => checkWasiCommand(module, "memory-state.wasm")).not.toThrow();
  });

  it("holds nothing from an earlier run: not after a run that wrote, grew its memory or trapped", async () => {
    const module = new WebAssembly.Module(await instrument(memoryState, 64));
    const run = (input: string) => runWasi(module, "s.wasm", { stdin: bytes(input) });
    for (let i = 0; i < 3; i++) expect(text(run("x").stdout)).toBe("cell=0 data=7");
    expect(run("g").memoryPages).toBe(4);
    const after = run("x");
    expect({ out: text(after.stdout), pages: after.memoryPages }).toEqual({ out: "cell=0 data=7", pages: 1 });
    expect(() => run("t")).toThrow(WasmTrapError);
    expect(text(run("x").stdout)).toBe("cell=0 data=7");
  });

  it("is refused when the module imports it without its limits", async () => {
    // The raw fixture with its memory made an import by hand, without the section that says its limits.
    const { default: binaryen } = await import("binaryen");
    const m = binaryen.readBinary(memoryState);
    m.addMemoryImport("0", MEMORY_IMPORT.module, MEMORY_IMPORT.name);
    const bare = new WebAssembly.Module(new Uint8Array(m.emitBinary()));
    m.dispose();
    expect(WebAssembly.Module.imports(bare)).toContainEqual({ module: MEMORY_IMPORT.module, name: MEMORY_IMPORT.name, kind: "memory" });
    expect(() => checkWasiCommand(bare, "bare.wasm")).toThrow("bare.wasm imports tandem.memory (memory), which this host does not provide");
  });
});

describe("the same module in workerd", () => {
  it("gives each run of a prepared module a memory that holds nothing from an earlier run", async () => {
    const mf = await startWasmWorker(
      `import { runWasi } from ${JSON.stringify(join(import.meta.dirname, "host.ts"))};
import state from "./state.wasm";
export default { async fetch(request) {
  const d = new TextDecoder();
  const out = [];
  for (const input of ["x", "x", "g", "x", "t", "x"]) {
    try {
      const run = runWasi(state, "s.wasm", { stdin: new TextEncoder().encode(input) });
      out.push(d.decode(run.stdout) + " pages=" + run.memoryPages);
    } catch (e) { out.push(e.name); }
  }
  return Response.json(out);
} };`,
      { "state.wasm": await instrument(memoryState, 64) },
    );
    try {
      expect(await (await mf.dispatchFetch("http://x/")).json()).toEqual([
        "cell=0 data=7 pages=1",
        "cell=0 data=7 pages=1",
        "cell=0 data=7 pages=4",
        "cell=0 data=7 pages=1",
        "WasmTrapError",
        "cell=0 data=7 pages=1",
      ]);
    } finally {
      await mf.dispose();
    }
  });

  it("gives the same output as in Node, and refuses the same bad modules", async () => {
    const mf = await startWasmWorker(
      `import { runWasi, checkWasiCommand } from ${JSON.stringify(join(import.meta.dirname, "host.ts"))};
import echo from "./echo.wasm";
import usesEnv from "./uses-env.wasm";
import notCommand from "./not-command.wasm";
const refusal = (module, name) => { try { checkWasiCommand(module, name); } catch (e) { return e.name + ": " + e.message; } };
export default { async fetch(request) {
  if (request.method === "GET") return Response.json([refusal(usesEnv, "uses-env.wasm"), refusal(notCommand, "not-command.wasm")]);
  checkWasiCommand(echo, "echo.wasm");
  const run = runWasi(echo, "echo.wasm", { stdin: new Uint8Array(await request.arrayBuffer()) });
  const d = new TextDecoder();
  return Response.json({ exitCode: run.exitCode, stdout: d.decode(run.stdout), stderr: d.decode(run.stderr) });
} };`,
      { "echo.wasm": echo, "uses-env.wasm": usesEnv, "not-command.wasm": notCommand },
    );
    try {
      for (const input of ["hello, wasm", "!stop"]) {
        const fromWorkerd = await (await mf.dispatchFetch("http://x/", { method: "POST", body: input })).json();
        const node = runWasi(new WebAssembly.Module(echo), "echo.wasm", { stdin: bytes(input) });
        expect(fromWorkerd).toEqual({ exitCode: node.exitCode, stdout: text(node.stdout), stderr: text(node.stderr) });
      }
      expect(await (await mf.dispatchFetch("http://x/")).json()).toEqual([
        "WasmModuleError: uses-env.wasm imports env.now_please (function), which this host does not provide (it provides wasi_snapshot_preview1 functions only)",
        "WasmModuleError: not-command.wasm is not a WASI command: it exports no _start function",
      ]);
    } finally {
      await mf.dispose();
    }
  });
});
