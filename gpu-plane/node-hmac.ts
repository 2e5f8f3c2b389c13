/** Request signing with node:crypto, synchronous: the plane installs it (see `HmacEngine` in sdk/signing.ts). */
import { createHash, createHmac } from "node:crypto";
import type { HmacEngine } from "../sdk/signing.js";

export const nodeHmacEngine: HmacEngine = {
  sha256Hex: (data) => createHash("sha256").update(data).digest("hex"),
  hmacHex: (secret, data) => createHmac("sha256", secret).update(data).digest("hex"),
};
