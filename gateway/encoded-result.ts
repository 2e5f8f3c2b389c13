/**
 * Results that arrive already encoded (from a plane) are relayed to callers
 * and the ledger as they are, and decoded only if code in this isolate asks
 * for the value.
 */
import { decodeValue, type EncodedValue } from "../sdk/protocol.js";

/** A result kept in its wire form. */
export class EncodedResult {
  constructor(readonly encoded: EncodedValue) {}

  decode(): unknown {
    return decodeValue(this.encoded.json, this.encoded.meta);
  }
}

/** A value as code in this isolate sees it. */
export function plainValue(value: unknown): unknown {
  return value instanceof EncodedResult ? value.decode() : value;
}
