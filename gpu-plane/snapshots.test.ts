import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SnapshotStore } from "./snapshots.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function store(caps: { maxCount?: number; maxBytes?: number } = {}, lines: string[] = []): { store: SnapshotStore; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), "tandem-snapshots-"));
  dirs.push(dir);
  return { store: new SnapshotStore({ dir, maxCount: caps.maxCount ?? 10, maxBytes: caps.maxBytes ?? 1 << 30, log: (l) => lines.push(l) }), dir };
}

/** What a driver's checkpoint writes: a folder with one image of `bytes` bytes. */
const image = (bytes: number) => async (into: string) => {
  await mkdir(join(into, "tandem"), { recursive: true });
  await writeFile(join(into, "tandem", "checkpoint.img"), Buffer.alloc(bytes));
};

describe("the plane's memory snapshots", () => {
  it("are keyed by the pool, the image and the secrets' values", () => {
    const keys = [
      SnapshotStore.keyOf("pool-a", "tandem-node:1", { TOKEN: "x" }),
      SnapshotStore.keyOf("pool-b", "tandem-node:1", { TOKEN: "x" }),
      SnapshotStore.keyOf("pool-a", "tandem-node:2", { TOKEN: "x" }),
      SnapshotStore.keyOf("pool-a", "tandem-node:1", { TOKEN: "y" }),
      SnapshotStore.keyOf("pool-a", undefined, undefined),
    ];
    expect(new Set(keys).size).toBe(keys.length);
    expect(SnapshotStore.keyOf("p", "i", { A: "1", B: "2" })).toBe(SnapshotStore.keyOf("p", "i", { B: "2", A: "1" }));
  });

  it("finds a snapshot once it is taken, and counts its bytes", async () => {
    const { store: s } = store();
    const key = SnapshotStore.keyOf("pool", undefined, undefined);
    expect(s.find(key)).toBeUndefined();
    const dir = await s.take(key, "app", image(1000));
    expect(s.find(key)).toBe(dir);
    expect(existsSync(join(dir, "tandem", "checkpoint.img"))).toBe(true);
    expect(s.summary()).toEqual({ count: 1, bytes: 1000 });
  });

  it("leaves nothing behind when a save fails", async () => {
    const { store: s, dir } = store();
    const key = SnapshotStore.keyOf("pool", undefined, undefined);
    await expect(s.take(key, "app", () => Promise.reject(new Error("engine said no")))).rejects.toThrow("engine said no");
    expect(readdirSync(dir)).toEqual([]);
    expect(s.find(key)).toBeUndefined();
  });

  it("keeps at most maxCount, the least recently used going first", async () => {
    const lines: string[] = [];
    const { store: s } = store({ maxCount: 2 }, lines);
    const [a, b, c] = ["a", "b", "c"].map((p) => SnapshotStore.keyOf(p, undefined, undefined));
    await s.take(a!, "app", image(10));
    await new Promise((r) => setTimeout(r, 5));
    await s.take(b!, "app", image(10));
    await new Promise((r) => setTimeout(r, 5));
    s.find(a!); // used: b is now the oldest
    await new Promise((r) => setTimeout(r, 5));
    await s.take(c!, "app", image(10));
    expect(s.find(a!)).toBeDefined();
    expect(s.find(b!)).toBeUndefined();
    expect(s.find(c!)).toBeDefined();
    expect(lines.filter((l) => l.includes("removed the memory snapshot"))).toHaveLength(1);
  });

  it("keeps at most maxBytes, but always the one just taken", async () => {
    const { store: s } = store({ maxBytes: 1500 });
    const [a, b] = ["a", "b"].map((p) => SnapshotStore.keyOf(p, undefined, undefined));
    await s.take(a!, "app", image(1000));
    await s.take(b!, "app", image(1000));
    expect(s.find(a!)).toBeUndefined();
    expect(s.find(b!)).toBeDefined();
  });

  it("removes an app's snapshots, and only its", async () => {
    const { store: s } = store();
    const [a, b] = ["a", "b"].map((p) => SnapshotStore.keyOf(p, undefined, undefined));
    const gone = await s.take(a!, "one", image(10));
    await s.take(b!, "two", image(10));
    expect(await s.removeApp("one")).toBe(1);
    expect(existsSync(gone)).toBe(false);
    expect(s.find(b!)).toBeDefined();
  });

  it("finds what a previous run of the plane kept, and drops half-written folders", async () => {
    const { store: s, dir } = store();
    const key = SnapshotStore.keyOf("pool", undefined, undefined);
    await s.take(key, "app", image(10));
    await mkdir(join(dir, `${key}.0000.partial`));
    writeFileSync(join(dir, `${key}.0000.partial`, "checkpoint.img"), "x");
    const again = new SnapshotStore({ dir, maxCount: 10, maxBytes: 1 << 30, log: () => {} });
    expect(again.find(key)).toBe(join(dir, key));
    expect(readdirSync(dir)).toEqual([key]);
  });
});
