/**
 * bench/plane-heartbeat: what one plane heartbeat costs the gateway (`POST
 * /v1/planes/heartbeat`: signature and nonce, the registry's record, the
 * answer's warm pools) when 1, 10 and 20 planes report to it, side by side in
 * one run. Each fleet has a gateway of its own (same workerd build, same app
 * with two warm pools); its planes are registered by signed heartbeats, the
 * same bytes `tandem plane` sends, and then report round-robin. Rounds go
 * from fleet to fleet, each round starting with another, so drift hits all. Flat means the 20-plane median is
 * within noise of the 1-plane one.
 *
 * Besides each heartbeat's round trip, it reports the CPU time each fleet's
 * workerd process spent per heartbeat (from /proc, Linux): on a loaded
 * machine the round trip mostly measures the other work; the CPU time does not.
 *
 *   npx tsx bench/plane-heartbeat.ts [--n 600] [--tiny] [--fleets 1,10,20,100]
 */
import { readFileSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleWorker } from "../sdk/cli/bundle.js";
import { startWorkerd, type RunningWorkerd } from "../sdk/cli/workerd.js";
import { GATEWAY_AUDIENCE, PROTOCOL_VERSION, paths, type PlaneHeartbeat } from "../sdk/protocol.js";
import { signRequest } from "../sdk/signing.js";
import { ADMIN_TOKEN } from "../test/helpers/gateway.js";
import { benchArgs, printTable, refuseArgs, summarize } from "./stats.js";

const here = dirname(fileURLToPath(import.meta.url));
const { n } = benchArgs(600, 60);
const fleetsAt = process.argv.indexOf("--fleets");
const FLEETS = fleetsAt >= 0 ? process.argv[fleetsAt + 1]!.split(",").map(Number) : [1, 10, 20];
if (FLEETS.length < 2 || FLEETS.some((f) => !Number.isInteger(f) || f < 1 || f > 9999)) refuseArgs("--fleets takes plane counts, e.g. 1,10,20,100");
const ROUND = 20;
const SECRET = "bench-plane-secret-0123456789abcdef";

const dir = await mkdtemp(join(tmpdir(), "tandem-bench-"));
const worker = await bundleWorker([join(here, "apps/fleet-app.ts")], join(dir, "gateway"));

/** A plane's heartbeat as `tandem plane` sends it: simulated A100s, some in use. */
function heartbeatOf(fleet: number, i: number): PlaneHeartbeat {
  return {
    planeId: `pl-bench${String(fleet).padStart(2, "0")}${String(i).padStart(4, "0")}`,
    url: `http://127.0.0.1:${20_000 + i}`,
    region: "bench",
    runtime: "docker",
    simulated: true,
    gpus: { A100: { total: 8, free: 8 - (i % 8) } },
    cpu: { total: 64, free: 60 },
    memoryMiB: { total: 512_000, free: 480_000 },
    protocol: PROTOCOL_VERSION,
  };
}

async function beat(url: string, heartbeat: PlaneHeartbeat): Promise<void> {
  const body = JSON.stringify(heartbeat);
  const route = paths.planeHeartbeat();
  const signature = await signRequest(SECRET, { audience: GATEWAY_AUDIENCE, method: "POST", path: route, body });
  const res = await fetch(url + route, { method: "POST", body, headers: { "content-type": "application/json", ...signature } });
  if (!res.ok) throw new Error(`heartbeat refused: HTTP ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
}

/** The workerd processes this process started (Linux: /proc), by pid. */
function workerdPids(): Set<number> {
  const pids = new Set<number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (stat.includes("(workerd)") && Number(fields[1]) === process.pid) pids.add(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** User plus system CPU time of a process so far, in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks: 100 a second on Linux
}

const gateways: { fleet: number; workerd: RunningWorkerd; url: string; next: number; pid: number; cpuMs: number }[] = [];
for (const fleet of FLEETS) {
  const before = workerdPids();
  const workerd = await startWorkerd({
    worker,
    persistDir: join(dir, `state-${fleet}`),
    bindings: { TANDEM_ADMIN_TOKEN: ADMIN_TOKEN, TANDEM_PLANE_SECRET: SECRET },
    onOutput: () => {},
  });
  const url = workerd.url.href.replace(/\/$/, "");
  for (let i = 0; i < fleet; i++) await beat(url, heartbeatOf(fleet, i)); // registered
  const listed = (await (await fetch(`${url}/v1/planes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { planes: unknown[] };
  if (listed.planes.length !== fleet) throw new Error(`fleet of ${fleet}: the gateway lists ${listed.planes.length} planes`);
  const pid = [...workerdPids()].find((p) => !before.has(p));
  if (pid === undefined) throw new Error("could not find the workerd process of a fleet's gateway");
  gateways.push({ fleet, workerd, url, next: 0, pid, cpuMs: 0 });
}

const samples = new Map<number, number[]>(FLEETS.map((f) => [f, []]));
for (const g of gateways) for (let i = 0; i < Math.min(100, n); i++) await beat(g.url, heartbeatOf(g.fleet, i % g.fleet)); // warm-up
for (let done = 0, round = 0; done < n; done += ROUND, round++) {
  // Each round starts with another fleet, so no fleet always follows the same one.
  for (const g of gateways.map((_, k) => gateways[(k + round) % gateways.length]!)) {
    for (let i = 0; i < Math.min(ROUND, n - done); i++) {
      const heartbeat = heartbeatOf(g.fleet, g.next++ % g.fleet);
      const cpu0 = cpuMs(g.pid);
      const t0 = performance.now();
      await beat(g.url, heartbeat);
      samples.get(g.fleet)!.push(performance.now() - t0);
      g.cpuMs += cpuMs(g.pid) - cpu0;
    }
  }
}

const rows = FLEETS.map((fleet) => summarize(`heartbeat, ${fleet} plane${fleet > 1 ? "s" : ""} reporting`, samples.get(fleet)!));
printTable(rows);
for (const g of gateways)
  console.log(`${`gateway CPU per heartbeat, ${g.fleet} plane${g.fleet > 1 ? "s" : ""}`.padEnd(44)} ${(g.cpuMs / n).toFixed(3).padStart(17)} ms`);
const [first, last] = [gateways[0]!, gateways[gateways.length - 1]!];
console.log(
  `${last.fleet} planes / ${first.fleet}: round trip ${(rows[rows.length - 1]!.medianMs / rows[0]!.medianMs).toFixed(2)} at the median, ` +
    `gateway CPU ${(last.cpuMs / first.cpuMs).toFixed(2)}`,
);

for (const g of gateways) await g.workerd.dispose();
await rm(dir, { recursive: true, force: true });
