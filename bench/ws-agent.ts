/**
 * bench/ws-agent: echo round trips over (a) a Tandem WebSocket agent through
 * the gateway and (b) a bare Durable Object echo (WebSocket Hibernation API),
 * each on its own miniflare instance of the same workerd, with the same `ws`
 * client, in one run, rounds interleaved. Then holds 1,000 idle connections
 * to (a) on loopback and reports the gateway's workerd memory (RSS).
 *
 *   npx tsx bench/ws-agent.ts [--n 2000] [--tiny]
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { startBareWorker } from "./bare-worker.js";
import { startBenchGateway } from "./bench-gateway.js";
import { benchArgs, printTable, stateInMemory, summarize } from "./stats.js";

const here = dirname(fileURLToPath(import.meta.url));
const { n, tiny } = benchArgs(2000, 100);
console.log(stateInMemory());
const IDLE = tiny ? 100 : 1000;
const ROUND = 50;
const MESSAGE = "x".repeat(32);

const workerdPids = () => {
  try {
    return new Set(execFileSync("pgrep", ["-x", "workerd"]).toString().trim().split("\n").filter(Boolean).map(Number));
  } catch {
    return new Set<number>();
  }
};
const rssMiB = async (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, "utf8"))![1]) / 1024;

const dir = await mkdtemp(join(tmpdir(), "tandem-bench-ws-"));
const before = workerdPids();
const gateway = await startBenchGateway(join(here, "apps/ws-app.ts"), dir);
const gatewayPid = [...workerdPids()].find((p) => !before.has(p));

const bare = await startBareWorker(join(here, "apps/bare-echo-worker.ts"), join(dir, "bare"), {
  durableObjects: { ECHO: { className: "EchoHub", useSQLite: true } },
});
const bareUrl = bare.url.replace(/^http/, "ws");
const gatewayUrl = gateway.url.href.replace(/^http/, "ws").replace(/\/$/, "");

/** An open socket and a function that sends one frame and waits for its echo. */
async function echoer(url: string): Promise<{ ws: WebSocket; roundTrip: () => Promise<number> }> {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  return {
    ws,
    roundTrip: () =>
      new Promise<number>((resolve, reject) => {
        const t0 = performance.now();
        ws.once("message", (data) => (data.toString() === MESSAGE ? resolve(performance.now() - t0) : reject(new Error(`echoed ${data}`))));
        ws.send(MESSAGE);
      }),
  };
}

const sides = {
  "(a) Tandem agent via the gateway": await echoer(`${gatewayUrl}/wsbench/echo?session=bench-session-a`),
  "(b) bare Durable Object echo": await echoer(bareUrl),
};
type Name = keyof typeof sides;
const samples = Object.fromEntries(Object.keys(sides).map((k) => [k, [] as number[]])) as Record<Name, number[]>;
try {
  for (const side of Object.values(sides)) for (let i = 0; i < Math.min(200, n); i++) await side.roundTrip(); // warm-up
  for (let done = 0; done < n; done += ROUND) {
    for (const [name, side] of Object.entries(sides) as [Name, (typeof sides)[Name]][]) {
      for (let i = 0; i < Math.min(ROUND, n - done); i++) samples[name].push(await side.roundTrip());
    }
  }
  const rows = (Object.keys(sides) as Name[]).map((name) => summarize(name, samples[name]));
  console.log(`bench/ws-agent: ${n} sequential echo round trips per side, ${MESSAGE.length}-byte text frames, ws client${tiny ? " (tiny)" : ""}`);
  printTable(rows);
  console.log(
    `ratio (a)/(b): median ${(rows[0]!.medianMs / rows[1]!.medianMs).toFixed(3)}  p99 ${(rows[0]!.p99Ms / rows[1]!.p99Ms).toFixed(3)}   (target: median <= 1.2)`,
  );

  // Idle connections: each a session of its own, opened then left alone.
  if (gatewayPid) {
    const base = await rssMiB(gatewayPid);
    const idle: WebSocket[] = [];
    for (let i = 0; i < IDLE; i += 50) {
      idle.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(50, IDLE - i) }, async (_, k) => {
            const ws = new WebSocket(`${gatewayUrl}/wsbench/echo?session=idle-session-${i + k}`);
            await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
            return ws;
          }),
        )),
      );
    }
    const open = await rssMiB(gatewayPid);
    await new Promise((r) => setTimeout(r, tiny ? 1000 : 15_000)); // idle: the agent's object may hibernate
    const later = await rssMiB(gatewayPid);
    const stillOpen = idle.filter((ws) => ws.readyState === WebSocket.OPEN).length;
    console.log(
      `${IDLE} idle connections to (a): gateway workerd RSS ${base.toFixed(1)} MiB before, ${open.toFixed(1)} MiB with them open (${(((open - base) * 1024) / IDLE).toFixed(1)} KiB each), ${later.toFixed(1)} MiB after ${tiny ? 1 : 15} s idle; ${stillOpen} still open`,
    );
    for (const ws of idle) ws.terminate();
  } else {
    console.log("could not find the gateway's workerd process; memory not measured");
  }
} finally {
  for (const side of Object.values(sides)) side.ws.terminate();
  await gateway.dispose();
  await bare.dispose();
  await rm(dir, { recursive: true, force: true });
}
