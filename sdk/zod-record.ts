/**
 * A record whose keys a user names (environment variables, secret keys, a class's parameters). zod refuses, as no
 * record at all, an object with an own key `constructor` (it reads that key to tell a plain object from an instance),
 * so `{ constructor: "1" }`, a valid environment variable, was refused with "must be an object". Such a key is checked
 * under another name, one no user key can have, and given back its own after.
 */
import { z } from "zod";

const KEY = "constructor";
/** Where the `constructor` key is checked: a NUL is in no environment variable's name, nor in JSON a user wrote. */
const STAND_IN = "\u0000constructor";

/**
 * `z.record(z.string(), value, message)` that takes a key named `constructor`.
 * @example const env = userRecord(z.string()); // env.parse({ constructor: "1" }) → { constructor: "1" }
 */
export function userRecord<V extends z.ZodType>(value: V, message?: string): z.ZodType<Record<string, z.output<V>>, Record<string, z.input<V>>> {
  const record = message === undefined ? z.record(z.string(), value) : z.record(z.string(), value, message);
  // Typed as the record it checks: a preprocess takes `unknown` in, which made `env: 42` an option that compiled.
  return z.preprocess(standIn, record).transform((checked) => {
    if (!Object.hasOwn(checked, STAND_IN)) return checked;
    const { [STAND_IN]: kept, ...rest } = checked;
    return { ...rest, [KEY]: kept } as typeof checked;
  }) as unknown as z.ZodType<Record<string, z.output<V>>, Record<string, z.input<V>>>;
}

function standIn(raw: unknown): unknown {
  if (typeof raw !== "object" || raw === null || Object.getPrototypeOf(raw) !== Object.prototype) return raw; // refused as before
  if (!Object.hasOwn(raw, KEY) || Object.hasOwn(raw, STAND_IN)) return raw;
  const { [KEY]: kept, ...rest } = raw as Record<string, unknown>;
  return { ...rest, [STAND_IN]: kept };
}
