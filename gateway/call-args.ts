/**
 * A call's arguments in the form they arrived in. Arguments a request carried
 * stay encoded (`{ json, meta }`), so a plane gets them, and the ledger keeps
 * them, exactly as the client sent them; arguments from code in this isolate
 * stay values. Each form is made from the other only when something asks for
 * it, and then once.
 */
import { decodeValue, encodeValue, type EncodedValue } from "../sdk/protocol.js";

export class CallArgs {
  #encoded: EncodedValue | undefined;
  #values: unknown[] | undefined;

  private constructor(encoded: EncodedValue | undefined, values: unknown[] | undefined) {
    this.#encoded = encoded;
    this.#values = values;
  }

  /**
   * Arguments as a request (or the ledger) carried them; `values` when the
   * receiver has decoded them already.
   *
   * @example CallArgs.received({ json: ["2026-01-01T00:00:00.000Z"], meta: { values: { "0": ["Date"] }, v: 1 } })
   */
  static received(encoded: EncodedValue, values?: unknown[]): CallArgs {
    return new CallArgs(encoded, values);
  }

  /**
   * Arguments as values, from code running in this isolate.
   *
   * @example CallArgs.of([new Date(), 2n])
   */
  static of(values: unknown[]): CallArgs {
    return new CallArgs(undefined, values);
  }

  /** The wire form: as received, or encoded once from the values. */
  get encoded(): EncodedValue {
    return (this.#encoded ??= encodeValue(this.#values));
  }

  /** The values: as given, or decoded once from the wire form (plain JSON, with no `meta`, is its own value). */
  get values(): unknown[] {
    return (this.#values ??= decodeValue(this.#encoded!.json, this.#encoded!.meta) as unknown[]);
  }
}
