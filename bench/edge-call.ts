/**
 * bench/edge-call: latency of (a) `.remote()` on an edge function (the SDK,
 * whose calls go over `node:http` in Node) and (b) a GET on a web endpoint
 * through the gateway (Node's fetch), against (c) a bare hono Worker doing the
 * same work on the same miniflare/workerd, called with Node's fetch as (b),
 * and (f) the same bare Worker called over `node:http` as (a), in one run (the
 * target is (a)/(f), both sides on one client; (a)/(c) is shown beside it); and
 * (d) `.remote()` on the same function asked to print
 * one line, which the gateway keeps in the app's log, against (a): the cost of
 * logging, with (e), (a) once more, as the control that shows what noise alone
 * gives; and (g) `POST .../call` without an Idempotency-Key, as curl sends it,
 * against (a): a call that no client key records; and (h) the bare Worker taking
 * the argument as `.remote()` sends it, a POST with a JSON body, over
 * `node:http`: what a bare Worker's GET (f) does not pay. Rounds are interleaved
 * so drift hits them all.
 *
 *   npx tsx bench/edge-call.ts [--n 2000] [--tiny]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { lookup } from "../sdk/index.js";
import { ADMIN_TOKEN } from "../test/helpers/gateway.js";
import { startBareWorker } from "./bare-worker.js";
import { nodeHttpJson } from "./node-http.js";
import { startBenchGateway } from "./bench-gateway.js";
import { benchArgs, printTable, stateInMemory, summarize } from "./stats.js";

const here = dirname(fileURLToPath(import.meta.url));
const { n } = benchArgs(2000);
console.log(stateInMemory());
const WORK = 1000;
const ROUND = 50;

const dir = await mkdtemp(join(tmpdir(), "tandem-bench-"));
const gateway = await startBenchGateway(join(here, "apps/edge-call-app.ts"), dir);

const bare = await startBareWorker(join(here, "apps/bare-worker.ts"), join(dir, "bare"));
const bareUrl = bare.url;
const gatewayUrl = gateway.url.href.replace(/\/$/, "");

const KEYLESS_URL = `${gatewayUrl}/v1/apps/bench/functions/compute/call`;
const KEYLESS = { method: "POST", body: JSON.stringify({ args: [WORK] }), headers: { authorization: `Bearer ${ADMIN_TOKEN}` } } as const;
const BARE_POST = { method: "POST", body: JSON.stringify({ args: [WORK] }) } as const;
const compute = lookup<[number, boolean?], { sum: number }>("bench", "compute", { gateway: gatewayUrl, token: ADMIN_TOKEN });
const targets = {
  "(a) .remote() on an edge function": async () => {
    await compute.remote(WORK);
  },
  "(b) GET web endpoint through the gateway": async () => {
    await (await fetch(`${gatewayUrl}/bench/work/${WORK}`)).json();
  },
  "(c) GET bare hono Worker, same work": async () => {
    await (await fetch(`${bareUrl}/work/${WORK}`)).json();
  },
  "(d) (a), the function printing a line": async () => {
    await compute.remote(WORK, true);
  },
  "(e) (a) again, the control": async () => {
    await compute.remote(WORK);
  },
  "(f) (c) over node:http, as the SDK sends": async () => {
    await nodeHttpJson(`${bareUrl}/work/${WORK}`);
  },
  "(g) (a) keyless, as curl sends it": async () => {
    await nodeHttpJson(KEYLESS_URL, KEYLESS);
  },
  "(h) (f) as a POST of the argument": async () => {
    await nodeHttpJson(`${bareUrl}/work`, BARE_POST);
  },
};
type Name = keyof typeof targets;
const samples = Object.fromEntries(Object.keys(targets).map((k) => [k, [] as number[]])) as Record<Name, number[]>;

// Same answer from all of them before timing anything.
const expected = JSON.stringify(await compute.remote(WORK));
for (const url of [`${gatewayUrl}/bench/work/${WORK}`, `${bareUrl}/work/${WORK}`]) {
  const got = JSON.stringify(await (await fetch(url)).json());
  if (got !== expected) throw new Error(`targets disagree: ${got} vs ${expected}`);
}
const keyless = JSON.stringify(((await nodeHttpJson(KEYLESS_URL, KEYLESS)) as { result?: unknown }).result);
if (keyless !== expected) throw new Error(`targets disagree: ${keyless} vs ${expected}`);
const barePost = JSON.stringify(await nodeHttpJson(`${bareUrl}/work`, BARE_POST));
if (barePost !== expected) throw new Error(`targets disagree: ${barePost} vs ${expected}`);

for (const fn of Object.values(targets)) for (let i = 0; i < Math.min(200, n); i++) await fn(); // warm-up
// Rounds of a block a target, in turn. The first SETTLE calls of each block are not timed: a worker that another one's
// block has left idle is slower for a while, and the target after another worker's block paid for it (on the plane, a
// control timed whole in that place came out 1.05-1.07; bench/README.md, "Measuring a log line's cost fairly").
const SETTLE = 10;
for (let done = 0; done < n; done += ROUND) {
  for (const [name, fn] of Object.entries(targets) as [Name, () => Promise<void>][]) {
    for (let i = 0; i < SETTLE; i++) await fn();
    for (let i = 0; i < Math.min(ROUND, n - done); i++) {
      const t0 = performance.now();
      await fn();
      samples[name].push(performance.now() - t0);
    }
  }
}

const rows = (Object.keys(targets) as Name[]).map((name) => summarize(name, samples[name]));
type Row = ReturnType<typeof summarize>;
const [a, b, c, d, e, f, g, h] = rows as [Row, Row, Row, Row, Row, Row, Row, Row];
console.log(
  `bench/edge-call: ${n} sequential requests per target, work(${WORK}), workerd via miniflare; (b), (c) with Node's fetch, (a), (d), (e), (f), (g), (h) over node:http`,
);
printTable(rows);
console.log(
  `ratio (a)/(f) median ${(a.medianMs / f.medianMs).toFixed(3)}  p99 ${(a.p99Ms / f.p99Ms).toFixed(3)}   (both sides over node:http, the SDK's client; target: median <= 1.3; 1.79-1.85 when it was set, both sides then on Node's fetch)`,
);
console.log(
  `ratio (a)/(h) median ${(a.medianMs / h.medianMs).toFixed(3)}  p99 ${(a.p99Ms / h.p99Ms).toFixed(3)}   (the bare side taking the argument as .remote() sends it, a POST with a JSON body; not a target, shown beside it)`,
);
console.log(
  `ratio (h)/(f) median ${(h.medianMs / f.medianMs).toFixed(3)}  p99 ${(h.p99Ms / f.p99Ms).toFixed(3)}   (what the bare Worker itself pays for the POST and its body over its GET)`,
);
console.log(
  `ratio (a)/(c) median ${(a.medianMs / c.medianMs).toFixed(3)}  p99 ${(a.p99Ms / c.p99Ms).toFixed(3)}   (the bare side on Node's fetch, slower a call than node:http; not a target, shown beside it)`,
);
console.log(`ratio (b)/(c) median ${(b.medianMs / c.medianMs).toFixed(3)}  p99 ${(b.p99Ms / c.p99Ms).toFixed(3)}   (target: median <= 1.15)`);
console.log(
  `ratio (d)/(a) median ${(d.medianMs / a.medianMs).toFixed(3)}  p99 ${(d.p99Ms / a.p99Ms).toFixed(3)}   (logging one line a call; target: median <= 1.05)`,
);
console.log(
  `ratio (e)/(a) median ${(e.medianMs / a.medianMs).toFixed(3)}  p99 ${(e.p99Ms / a.p99Ms).toFixed(3)}   (the control: the same calls twice, what noise alone gives)`,
);
console.log(
  `ratio (g)/(a) median ${(g.medianMs / a.medianMs).toFixed(3)}  p99 ${(g.p99Ms / a.p99Ms).toFixed(3)}   (a call without a client's key, recorded once it ends; not a target)`,
);

await gateway.dispose();
await bare.dispose();
await rm(dir, { recursive: true, force: true });
