import { mkdtemp, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BuildCache } from "./build-cache.js";

describe("BuildCache", () => {
  let dir: string;
  let cache: BuildCache;
  const input = () => join(dir, "app.ts");
  const other = () => join(dir, "lib.ts");
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "tandem-build-cache-"));
    cache = new BuildCache(join(dir, "cache"));
    await writeFile(input(), "export const a = 1;\n");
    await writeFile(other(), "export const b = 2;\n");
    await cache.put("worker", { minify: false }, [input(), other()], { worker: "code", map: new TextEncoder().encode("{}") }, { bytes: 4 });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("finds a build again, its files and what was noted beside them, while its inputs read the same", async () => {
    const hit = await cache.get<{ bytes: number }>("worker", { minify: false });
    expect(hit?.files.worker?.toString()).toBe("code");
    expect(hit?.files.map?.toString()).toBe("{}");
    expect(hit?.meta).toEqual({ bytes: 4 });
    await writeFile(input(), "export const a = 1;\n"); // written again, the same bytes
    expect(await cache.get("worker", { minify: false })).toBeDefined();
  });

  it("builds anew when an input changed or is gone, when asked for another way, or for another name", async () => {
    expect(await cache.get("worker", { minify: true })).toBeUndefined();
    expect(await cache.get("plane", { minify: false })).toBeUndefined();
    await writeFile(other(), "export const b = 3;\n");
    expect(await cache.get("worker", { minify: false })).toBeUndefined();
    await writeFile(other(), "export const b = 2;\n");
    expect(await cache.get("worker", { minify: false })).toBeDefined();
    await rm(input());
    expect(await cache.get("worker", { minify: false })).toBeUndefined();
  });

  it("notices an input rewritten to the same size with its modification time set back", async () => {
    const before = await stat(other());
    await writeFile(other(), "export const b = 9;\n");
    await utimes(other(), before.atime, before.mtime);
    expect(await cache.get("worker", { minify: false })).toBeUndefined();
  });

  it("keeps one build per name: the files only the replaced one had are removed", async () => {
    await cache.put("worker", { minify: false }, [input()], { worker: "code 2", map: "{}" }, { bytes: 6 });
    expect((await cache.get("worker", { minify: false }))?.files.worker?.toString()).toBe("code 2");
    expect(await readdir(join(dir, "cache", "files"))).toHaveLength(2); // "code 2" and the map both kept
  });
});
