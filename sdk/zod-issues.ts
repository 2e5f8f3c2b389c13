/**
 * One way to say what is wrong with a value zod refused, for every boundary:
 * function options when an app loads (`option "timeout" must be ...`), request
 * bodies at the gateway and the plane (`field "callId" must be ...`), and
 * configuration (`setting "TANDEM_MAX_BODY_BYTES" must be ...`).
 */
import type { z } from "zod";

/** What the checked names are called in the sentence. */
export type IssueNoun = "option" | "field" | "setting";

/** The longest echo of a refused value, so a large body is not copied into its error. */
const MAX_ECHO = 80;

/**
 * Turns zod issues into sentences: `option "timeout" must be at least 1
 * second (got 0)`; unknown keys: `unknown field "argz"`.
 * @example
 * const parsed = schema.safeParse(body, { reportInput: true });
 * if (!parsed.success) throw new InvalidRequestError(`run request: ${describeIssues(parsed.error, "field")}`);
 */
export function describeIssues(error: z.ZodError, noun: IssueNoun = "option"): string {
  return error.issues
    .map((issue) => {
      if (issue.code === "unrecognized_keys") return `unknown ${noun}${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
      const path = issue.path.map(String).join(".");
      const got = "input" in issue && issue.input !== undefined ? ` (got ${echo(issue.input)})` : "";
      return path ? `${noun} "${path}" ${issue.message}${got}` : `${issue.message}${got}`;
    })
    .join("; ");
}

function echo(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > MAX_ECHO ? `${text.slice(0, MAX_ECHO)}…` : text;
}
