/**
 * bench/dict-queue: (1) dict gets and puts from an edge endpoint through the
 * SDK's `Dict` (straight to its Durable Object), against (2) the same
 * operation on a bare SQLite Durable Object, each timed inside its Worker
 * over rounds of sequential operations (mean per operation per round; the
 * medians and p99s are over rounds), each on its own miniflare instance of the
 * same workerd, rounds interleaved. Then queue throughput between the tiers:
 * an edge function puts items (100 to a request) while a Node consumer takes
 * them over HTTP (`getMany(100)`), in items per second.
 *
 *   npx tsx bench/dict-queue.ts [--n 200] [--tiny]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Queue, lookup } from "../sdk/index.js";
import { QUEUE_LIMITS } from "../sdk/defaults.js";
import { ADMIN_TOKEN } from "../test/helpers/gateway.js";
import { startBareWorker } from "./bare-worker.js";
import { startBenchGateway } from "./bench-gateway.js";
import { benchArgs, printTable, stateInMemory, summarize } from "./stats.js";

const here = dirname(fileURLToPath(import.meta.url));
const { n, tiny } = benchArgs(200, 10); // rounds per side and operation
console.log(stateInMemory());
/** A ratio of two times, or why there is none: a round too short for workerd's whole-ms clock reads 0 ms. */
const ratio = (a: number, b: number) =>
  b > 0 ? (a / b).toFixed(3) : "none (the bare side read 0 ms: rounds too short for workerd's clock; run without --tiny)";
const PER = tiny ? 10 : 1000; // operations per round: the isolate's clock moves in whole ms, so a round of 1,000 resolves 1 µs
// The producer may run ahead of the consumer: no more items than one partition holds, or a put meets `queue_full`.
const ITEMS = tiny ? 500 : QUEUE_LIMITS.maxItemsPerPartition;

const dir = await mkdtemp(join(tmpdir(), "tandem-bench-dq-"));
const gateway = await startBenchGateway(join(here, "apps/dict-queue-app.ts"), dir);
const gatewayUrl = gateway.url.href.replace(/\/$/, "");
const bare = await startBareWorker(join(here, "apps/bare-kv-worker.ts"), join(dir, "bare"), {
  durableObjects: { KV: { className: "BareKv", useSQLite: true } },
});

const rounds = async (url: string): Promise<number[]> => {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as number[];
};

try {
  for (const op of ["get", "put"] as const) {
    const sides = {
      [`(1) Dict.${op} from an edge endpoint`]: (count: number) => rounds(`${gatewayUrl}/dqbench/dict/${op}/${count}/${PER}`),
      [`(2) bare Durable Object ${op}`]: (count: number) => rounds(`${bare.url}/x/${op}/${count}/${PER}`),
    };
    const samples: Record<string, number[]> = Object.fromEntries(Object.keys(sides).map((k) => [k, []]));
    for (const side of Object.values(sides)) await side(Math.min(5, n)); // warm-up
    for (let done = 0; done < n; done += 10) for (const [name, side] of Object.entries(sides)) samples[name]!.push(...(await side(Math.min(10, n - done))));
    const rows = Object.keys(sides).map((name) => summarize(name, samples[name]!));
    console.log(`bench/dict-queue: dict ${op}, ${n} rounds of ${PER} sequential operations per side, ms per operation${tiny ? " (tiny)" : ""}`);
    printTable(rows);
    console.log(`ratio (1)/(2): median ${ratio(rows[0]!.medianMs, rows[1]!.medianMs)}  p99 ${ratio(rows[0]!.p99Ms, rows[1]!.p99Ms)}   (target: median <= 1.2)`);
  }

  const q = Queue.fromName("throughput", { gateway: gatewayUrl, token: ADMIN_TOKEN, createIfMissing: true });
  await q.len();
  const started = performance.now();
  const producing = lookup("dqbench", "produce", { gateway: gatewayUrl, token: ADMIN_TOKEN }).remote("throughput", ITEMS, 100);
  let received = 0;
  let lastSeen = -1;
  let outOfOrder = 0;
  while (received < ITEMS) {
    const items = await q.getMany<number>(100, { timeoutMs: 10_000 });
    if (items.length === 0) throw new Error(`no item came in 10 s after ${received}`);
    for (const item of items) if (item !== ++lastSeen) outOfOrder++;
    received += items.length;
  }
  const seconds = (performance.now() - started) / 1000;
  await producing;
  console.log(
    `queue: ${ITEMS} items put by an edge function (100 a request) and taken in Node over HTTP (getMany 100): ${(ITEMS / seconds).toFixed(0)} items/s, ${seconds.toFixed(2)} s, ${outOfOrder} out of order`,
  );
} finally {
  await gateway.dispose();
  await bare.dispose();
  await rm(dir, { recursive: true, force: true });
}
