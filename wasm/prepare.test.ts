import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WasmTrapError, runWasi } from "./host.js";
import { compileAssemblyScript, instrument } from "./prepare.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tandem-asc-cache-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("compiling AssemblyScript with a cache", () => {
  it("reuses a compile while every file it read is unchanged, and compiles again when one changes", { timeout: 60_000 }, async () => {
    const cache = join(dir, "cache");
    const out = join(dir, "out.wasm");
    await writeFile(join(dir, "lib.ts"), "export function two(): i32 { return 2; }\n");
    await writeFile(
      join(dir, "main.ts"),
      'import { two } from "./lib";\nexport function _start(): void {}\nexport function answer(): i32 { return two() * 21; }\n',
    );
    const answer = async () => (new WebAssembly.Instance(new WebAssembly.Module(await readFile(out))).exports.answer as () => number)();

    await compileAssemblyScript(join(dir, "main.ts"), out, cache);
    expect(await answer()).toBe(42);

    // Unchanged: the cached module is what comes out (marked here, to see that it is the one used).
    const [cachedWasm] = (await import("node:fs")).readdirSync(cache).filter((f) => f.endsWith(".wasm"));
    const marked = new Uint8Array([...(await readFile(join(cache, cachedWasm!))), 0]);
    await writeFile(join(cache, cachedWasm!), marked);
    await compileAssemblyScript(join(dir, "main.ts"), out, cache);
    expect(new Uint8Array(await readFile(out))).toEqual(marked);

    // A change in a file the entry imports compiles again.
    await writeFile(join(dir, "lib.ts"), "export function two(): i32 { return 3; }\n");
    await compileAssemblyScript(join(dir, "main.ts"), out, cache);
    expect(await answer()).toBe(63);
  });

  it("says what asc said when the source does not compile", async () => {
    await writeFile(join(dir, "broken.ts"), "export function _start(): void { let x: i32 = 'text'; }\n");
    await expect(compileAssemblyScript(join(dir, "broken.ts"), join(dir, "broken.wasm"), join(dir, "cache"))).rejects.toThrow(
      /AssemblyScript could not compile it:[\s\S]*not assignable/,
    );
  });
});

describe("an AssemblyScript function that throws", () => {
  const trapOf = async (name: string, source: string) => {
    await writeFile(join(dir, `${name}.as.ts`), source);
    await compileAssemblyScript(join(dir, `${name}.as.ts`), join(dir, `${name}.wasm`));
    try {
      runWasi(new WebAssembly.Module(await readFile(join(dir, `${name}.wasm`))), `${name}.wasm`);
    } catch (err) {
      return err;
    }
  };

  it("fails with its message and where it was thrown, not a bare unreachable", { timeout: 60_000 }, async () => {
    const err = await trapOf("throws", 'export function _start(): void {\n  throw new Error("n is too big");\n}\n');
    expect(err).toBeInstanceOf(WasmTrapError);
    expect((err as WasmTrapError).message).toBe("throws.wasm trapped: unreachable: n is too big (at throws.as.ts:2:3)");
  });

  it("fails with the standard library's own message, an index out of range", { timeout: 60_000 }, async () => {
    const err = await trapOf("index", "export function _start(): void {\n  const a = new StaticArray<i32>(2);\n  a[4] = 1;\n}\n");
    expect(err).toBeInstanceOf(WasmTrapError);
    expect((err as WasmTrapError).message).toMatch(/^index\.wasm trapped: unreachable: Index out of range \(at ~lib\/staticarray\.ts:\d+:\d+\)$/);
  });
});

describe("instrumenting a module", () => {
  it("gives the same bytes each time for the same module, however many this process instrumented before (a reload keeps its bundle's hash)", async () => {
    const bytes = new Uint8Array(await readFile(new URL("../examples/wasm/wc.wasm", import.meta.url)));
    const first = await instrument(bytes, 256);
    const second = await instrument(bytes, 256);
    expect(Buffer.from(second).equals(Buffer.from(first))).toBe(true);
    // The module's own functions keep their signatures, and it exports what it did.
    const before = new WebAssembly.Module(bytes);
    const after = new WebAssembly.Module(first);
    expect(WebAssembly.Module.exports(after)).toEqual(WebAssembly.Module.exports(before));
  });
});
