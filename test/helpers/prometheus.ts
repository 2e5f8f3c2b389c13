/**
 * Prometheus text-format scrapes read with `parse-prometheus-text-format`, a parser apart from the prom-client that
 * writes them. That parser folds every label set of a histogram into one, so a labelled histogram is read one label
 * set at a time: its lines for that set, labels but `le` taken off, parsed alone.
 */
import { createRequire } from "node:module";

/** One family as the parser gives it (values as the text wrote them). */
export interface MetricFamily {
  name: string;
  help: string;
  type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED";
  metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string; sum?: string }[];
}

const parse = createRequire(import.meta.url)("parse-prometheus-text-format") as (text: string) => MetricFamily[];

/** Every family of a scrape. */
export function parsePrometheus(text: string): MetricFamily[] {
  return parse(text);
}

/** A sample's value (a counter or gauge) in a family, for the label set that has `labels` (and any others). */
export function sampleValue(families: MetricFamily[], name: string, labels: Record<string, string> = {}): number | undefined {
  const family = families.find((f) => f.name === name);
  const sample = family?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return sample?.value === undefined ? undefined : Number(sample.value);
}

/** One label set of a histogram: its cumulative buckets by `le`, count and sum. */
export function histogram(
  text: string,
  name: string,
  labels: Record<string, string>,
): { buckets: Record<string, number>; count: number; sum: number } | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const lines = text
    .split("\n")
    .filter((line) => (line.startsWith("#") ? line.split(" ")[2] === name : line.startsWith(`${name}_`) && wanted.every((w) => line.includes(w))))
    .map((line) =>
      line.startsWith("#")
        ? line
        : line.replace(/\{([^}]*)\}/, (_, inner: string) => {
            const le = /le="[^"]*"/.exec(inner)?.[0];
            return le ? `{${le}}` : "";
          }),
    );
  const [family] = parse(lines.join("\n") + "\n").filter((f) => f.name === name);
  const sample = family?.metrics[0];
  if (!sample?.buckets || sample.count === undefined) return undefined;
  return {
    buckets: Object.fromEntries(Object.entries(sample.buckets).map(([le, n]) => [le, Number(n)])),
    count: Number(sample.count),
    sum: Number(sample.sum),
  };
}

/**
 * A quantile from cumulative buckets, as PromQL's `histogram_quantile` estimates it (linear within the bucket).
 * @example quantile({ "0.1": 1, "0.5": 3, "+Inf": 3 }, 0.5); // 0.3
 */
export function quantile(buckets: Record<string, number>, q: number): number {
  const sorted = Object.entries(buckets)
    .map(([le, n]) => [le === "+Inf" ? Infinity : Number(le), n] as const)
    .sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, n] of sorted) {
    if (n >= rank) return le === Infinity ? lower : lower + ((le - lower) * (rank - below)) / Math.max(1, n - below);
    lower = le;
    below = n;
  }
  return lower;
}

/**
 * The series a page of docs lists in the table under `heading` (a line of its own, `## Metrics`): the `tandem_…` names
 * of its rows, up to the next heading.
 * @example documentedSeries(await readFile("docs/observability.md", "utf8"), "### The gateway's series");
 */
export function documentedSeries(markdown: string, heading: string): string[] {
  const lines = markdown.split("\n");
  const start = lines.indexOf(heading);
  if (start < 0) throw new Error(`no heading "${heading}"`);
  const end = lines.findIndex((line, i) => i > start && /^#{1,6} /.test(line));
  return lines
    .slice(start + 1, end < 0 ? undefined : end)
    .map((line) => /^\| `(tandem_[a-z0-9_]+)`/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined);
}
