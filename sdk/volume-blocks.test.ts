import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { volumePath } from "./protocol.js";
import { blocksOf, sha256Hex } from "./volume-blocks.js";

async function collect(source: Parameters<typeof blocksOf>[0], size: number): Promise<Uint8Array[]> {
  const blocks: Uint8Array[] = [];
  for await (const block of blocksOf(source, size)) blocks.push(block.slice());
  return blocks;
}

describe("volume blocks", () => {
  it("splits bytes that arrive in uneven pieces into blocks of one size, the last shorter", async () => {
    const bytes = Uint8Array.from({ length: 25 }, (_, i) => i);
    async function* pieces() {
      yield bytes.subarray(0, 3);
      yield bytes.subarray(3, 17);
      yield bytes.subarray(17, 17);
      yield bytes.subarray(17);
    }
    const blocks = await collect(pieces(), 10);
    expect(blocks.map((b) => [...b])).toEqual([[...bytes.subarray(0, 10)], [...bytes.subarray(10, 20)], [...bytes.subarray(20)]]);
    expect(await collect(new Blob([bytes]).stream(), 5)).toHaveLength(5);
    expect(await collect(new Uint8Array(0), 5)).toEqual([]);
  });

  it("makes a small file's block its own size, not a whole block's", async () => {
    const blocks: Uint8Array[] = [];
    for await (const block of blocksOf(new Blob([new TextEncoder().encode("tiny")]).stream())) blocks.push(block);
    expect(blocks).toHaveLength(1);
    expect(blocks[0]!.buffer.byteLength).toBe(4); // not an 8 MiB array holding 4 bytes
  });

  it("names a block by the SHA-256 of its bytes", async () => {
    const bytes = new TextEncoder().encode("tandem");
    expect(await sha256Hex(bytes)).toBe(createHash("sha256").update(bytes).digest("hex"));
  });

  it("puts paths in one form, and says what is wrong with a bad one", () => {
    expect(["/a/b.bin", "a/b.bin", "a/b.bin/", "//a/b.bin"].map(volumePath)).toEqual(Array(4).fill({ path: "a/b.bin" }));
    expect(volumePath("/")).toEqual({ path: "" });
    expect(volumePath("a/../b")).toEqual({ problem: "must not hold `.` or `..`: paths start at the volume's root" });
    expect(volumePath("a//b")).toEqual({ problem: "must not hold an empty name (`//`)" });
    expect(volumePath("x".repeat(256))).toEqual({ problem: "must not hold a name longer than 255 bytes" });
    expect(volumePath("a\0b")).toEqual({ problem: "must not hold a NUL character" });
  });
});
