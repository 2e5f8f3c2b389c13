/** Small helpers shared by the benchmarks: percentiles and a printed table. */
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export interface Summary {
  name: string;
  n: number;
  medianMs: number;
  p99Ms: number;
}

export function summarize(name: string, samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return { name, n: sorted.length, medianMs: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
}

export function printTable(rows: Summary[]): void {
  console.log(`${"".padEnd(44)} ${"n".padStart(6)} ${"median ms".padStart(10)} ${"p99 ms".padStart(9)}`);
  for (const r of rows) console.log(`${r.name.padEnd(44)} ${String(r.n).padStart(6)} ${r.medianMs.toFixed(3).padStart(10)} ${r.p99Ms.toFixed(3).padStart(9)}`);
}

/** Reads `--tiny` (a smoke run for CI, `tinyN` samples) and `--n <count>`. */
export function benchArgs(defaultN: number, tinyN = 40): { n: number; tiny: boolean } {
  const argv = process.argv.slice(2);
  const tiny = argv.includes("--tiny");
  const at = argv.indexOf("--n");
  const n = at >= 0 ? Number(argv[at + 1]) : tiny ? tinyN : defaultN;
  if (!Number.isInteger(n) || n <= 0) refuseArgs(`--n must be a positive whole number (got ${at >= 0 ? JSON.stringify(argv[at + 1] ?? "") : n})`);
  return { n, tiny };
}

/** Says what is wrong with the benchmark's arguments, in the CLI's one format, and exits 2. */
export function refuseArgs(message: string): never {
  console.error(`error: ${message}`);
  process.exit(2);
}

/**
 * Keeps the run's workerd state (the Durable Objects' SQLite files) in memory, on /dev/shm where there is one,
 * unless `--state-on-disk` is given, and answers a line saying where, for the report. workerd's local SQLite syncs
 * each Durable Object commit to disk on the isolate's own thread (measured here: 0.1–0.5 ms a commit on a quiet
 * disk, up to 3.5 ms on a busy one, during which no request of that workerd runs); a deployed Durable Object's
 * commit is replicated while its isolate goes on. Call it before anything makes a temporary folder.
 */
export function stateInMemory(): string {
  if (process.argv.includes("--state-on-disk")) return `state: on disk (${tmpdir()}), as asked`;
  if (!existsSync("/dev/shm")) return `state: on disk (${tmpdir()}): this machine has no /dev/shm`;
  process.env.TMPDIR = "/dev/shm";
  return "state: in memory (/dev/shm); --state-on-disk keeps it on disk";
}

/**
 * The order of a round's blocks: every target in each round, in an order shuffled anew each round (a fixed seed, so
 * runs are alike), so no target always follows the same one. In a fixed order, a block after another stack's sat
 * idle paid for it: a control timed in that place came out a few per cent slower than the same calls elsewhere
 * (bench/README.md, "Measuring a log line's cost fairly").
 * @example for (const i of roundOrder(targets.length)) await block(targets[i]);
 */
export function roundOrder(count: number): number[] {
  const order = Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(nextRandom() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** mulberry32: a small seeded generator, enough to shuffle blocks. */
let seed = 0x7a4d3e1;
function nextRandom(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
