import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileAssemblyScript } from "./prepare.js";

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
