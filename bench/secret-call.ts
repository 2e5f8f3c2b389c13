/**
 * bench/secret-call: latency of `.remote()` on (a) an edge function that
 * declares two named secrets (read from the gateway's SecretStore, kept for
 * `SECRET_LIMITS.cacheMs` in the isolate, set as the call's `process.env` and
 * masked in its logs) against (b) the same function with none, on the same
 * gateway in the same workerd, same client, in one run. Rounds are
 * interleaved so drift hits both. Target: (a)/(b) at most 1.05 at the median.
 *
 *   npx tsx bench/secret-call.ts [--n 2000] [--tiny]
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { lookup } from "../sdk/index.js";
import { paths } from "../sdk/protocol.js";
import { ADMIN_TOKEN } from "../test/helpers/gateway.js";
import { startBenchGateway } from "./bench-gateway.js";
import { benchArgs, printTable, stateInMemory, summarize } from "./stats.js";

const here = dirname(fileURLToPath(import.meta.url));
const { n } = benchArgs(2000);
console.log(stateInMemory());
const WORK = 1000;
const ROUND = 50;

const dir = await mkdtemp(join(tmpdir(), "tandem-bench-"));
const gateway = await startBenchGateway(join(here, "apps/secret-call-app.ts"), dir, { TANDEM_SECRETS_KEY: randomBytes(32).toString("hex") });
const gatewayUrl = gateway.url.href.replace(/\/$/, "");

for (const [name, key] of [
  ["bench-a", "BENCH_A"],
  ["bench-b", "BENCH_B"],
]) {
  const res = await fetch(gatewayUrl + paths.secrets(), {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name, values: { [key!]: `value-of-${key}-${randomBytes(8).toString("hex")}` } }),
  });
  if (!res.ok) throw new Error(`could not create secret ${name}: HTTP ${res.status} ${await res.text()}`);
}

const fn = (name: string) => lookup<[number], { sum: number }>("bench", name, { gateway: gatewayUrl, token: ADMIN_TOKEN });
const withSecrets = fn("withSecrets");
const plain = fn("plain");
const targets = {
  "(a) .remote(), function with two secrets": async () => {
    await withSecrets.remote(WORK);
  },
  "(b) .remote(), same function, no secret": async () => {
    await plain.remote(WORK);
  },
};
type Name = keyof typeof targets;
const samples = Object.fromEntries(Object.keys(targets).map((k) => [k, [] as number[]])) as Record<Name, number[]>;

// Same answer from both before timing anything.
const expected = JSON.stringify(await plain.remote(WORK));
const got = JSON.stringify(await withSecrets.remote(WORK));
if (got !== expected) throw new Error(`targets disagree: ${got} vs ${expected}`);

for (const run of Object.values(targets)) for (let i = 0; i < Math.min(200, n); i++) await run(); // warm-up
for (let done = 0; done < n; done += ROUND) {
  for (const [name, run] of Object.entries(targets) as [Name, () => Promise<void>][]) {
    for (let i = 0; i < Math.min(ROUND, n - done); i++) {
      const t0 = performance.now();
      await run();
      samples[name].push(performance.now() - t0);
    }
  }
}

const rows = (Object.keys(targets) as Name[]).map((name) => summarize(name, samples[name]));
const [a, b] = rows as [ReturnType<typeof summarize>, ReturnType<typeof summarize>];
console.log(`bench/secret-call: ${n} sequential calls per target, work(${WORK}), workerd via miniflare, Node fetch client`);
printTable(rows);
console.log(`ratio (a)/(b) median ${(a.medianMs / b.medianMs).toFixed(3)}  p99 ${(a.p99Ms / b.p99Ms).toFixed(3)}   (target: median <= 1.05)`);

await gateway.dispose();
await rm(dir, { recursive: true, force: true });
