import { describe, expect, it } from "vitest";
import { importSecretsKey, openSecret, sealSecret } from "./secret-cipher.js";

const HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const OTHER = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

describe("a secret's values at rest", () => {
  it("open again with the key and name they were sealed with", async () => {
    const key = await importSecretsKey(HEX);
    const sealed = await sealSecret(key, "api", { API_KEY: "k-123", MODE: "live" });
    expect(await openSecret(key, "api", sealed)).toEqual({ API_KEY: "k-123", MODE: "live" });
  });

  it("hold no value in the clear, and differ each time they are sealed", async () => {
    const key = await importSecretsKey(HEX);
    const one = await sealSecret(key, "api", { API_KEY: "k-123-plaintext" });
    const two = await sealSecret(key, "api", { API_KEY: "k-123-plaintext" });
    expect(Buffer.from(one.ciphertext).toString("latin1")).not.toContain("k-123-plaintext");
    expect(Buffer.from(one.iv).equals(Buffer.from(two.iv))).toBe(false);
    expect(Buffer.from(one.ciphertext).equals(Buffer.from(two.ciphertext))).toBe(false);
  });

  it("do not open under another key, another name, or once altered", async () => {
    const key = await importSecretsKey(HEX);
    const sealed = await sealSecret(key, "api", { API_KEY: "k-123" });
    await expect(openSecret(await importSecretsKey(OTHER), "api", sealed)).rejects.toThrow();
    await expect(openSecret(key, "other", sealed)).rejects.toThrow();
    const altered = { iv: sealed.iv, ciphertext: sealed.ciphertext.slice() };
    altered.ciphertext[0]! ^= 1;
    await expect(openSecret(key, "api", altered)).rejects.toThrow();
  });

  it("need a key of 32 bytes in hex", async () => {
    await expect(importSecretsKey("abc")).rejects.toThrow("64 hex digits");
  });
});
