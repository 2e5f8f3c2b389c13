/**
 * A command's filters checked here as the gateway checks its query (`tandem logs`, `tandem calls`), so that a bad
 * value is said in the command's words, naming its option, as the usage mistake it is (exit 2): the gateway's
 * refusal spoke of its query and fields ("log query: field …").
 */
import type { z } from "zod";
import { InvalidOptionsError } from "../errors.js";

/**
 * Throws for the first field of `query` (as sent) that `schema` refuses, naming its option (`options[field]`: the
 * option and what the user gave it, cut at 60 characters).
 * @example refuseAsGatewayWould(CallListQuerySchema, { limit: "0" }, { limit: ["-n", "0"] }); // -n "0": must be …
 */
export function refuseAsGatewayWould(schema: z.ZodType, query: Record<string, string>, options: Record<string, [string, unknown]>): void {
  const checked = schema.safeParse(query);
  if (checked.success) return;
  const issue = checked.error.issues[0]!;
  const field = String(issue.path[0]);
  const [option, value] = options[field] ?? [field, query[field]];
  const given = value === undefined ? undefined : String(value);
  const shown = given === undefined ? "" : ` ${JSON.stringify(given.length > 60 ? `${given.slice(0, 60)}…` : given)}`;
  throw new InvalidOptionsError(`${option}${shown}: ${issue.message}`);
}
