/**
 * The fault run: spawned calls on the plane and at the edge through a real
 * `tandem serve` (a subprocess), which is killed with SIGKILL while they run
 * and started again on the same port and state; then every call's record is
 * read back and set against what really ran. Plane calls run on a separate
 * `tandem plane` (it outlives `serve`, as a plane on another machine would;
 * `serve`'s own plane has one A100 and the function wants the plane with
 * more free); each run prints its call id there. Edge runs report to a
 * counter on loopback. Used by test/fault-run.test.ts (small) and
 * bench/fault-run.ts (the full size).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lookup, type CallRecord } from "../../sdk/index.js";
import { TERMINAL_STATUSES } from "../../sdk/protocol.js";
import { childEnded } from "./child-exit.js";
import { CLI } from "./cli.js";
import { ADMIN_TOKEN, authed, eventually } from "./gateway.js";
import { freePort } from "./ports.js";
import { SECRET } from "./stack.js";

export const FAULT_APP = new URL("../fixtures/fault-app.ts", import.meta.url).pathname;

export interface FaultRunOptions {
  planeCalls: number;
  edgeCalls: number;
  /** How long each plane call works. */
  planeWorkMs: number;
  /** How long each edge call works: all are under way when `serve` is killed, if this is longer than it takes to start them. */
  edgeWorkMs: number;
  /** `serve` is killed once every call is spawned, every edge call has begun, and this share of the plane calls. */
  killAtShare: number;
  log?: (line: string) => void;
}

/** What one tier's calls came to. */
export interface TierReport {
  calls: number;
  succeeded: number;
  /** Calls that did not succeed, or whose record is missing. */
  lost: number;
  /** Runs beyond the first, over all calls. */
  duplicated: number;
  executions: number;
  /** The sum of the records' `attempts`. */
  attempts: number;
  /** Calls whose record's `attempts` is not the number of times they ran. */
  attemptsMismatched: string[];
  /** Calls by how many times they ran. */
  runs: Record<number, number>;
}

export interface FaultReport {
  plane: TierReport;
  edge: TierReport;
  /** Plane calls that had begun when `serve` was killed; edge calls under way then. */
  planeBegunAtKill: number;
  edgeBegunAtKill: number;
  /** From the kill until `serve` was ready again. */
  downMs: number;
  /** From the first spawn until every call had ended. */
  totalMs: number;
  /** Lines of the plane saying a resumed gateway's request was answered without running it again. */
  answeredAgain: number;
  workerdLeftOver: boolean;
}

interface Child {
  child: ChildProcess;
  output: () => string;
  exited: Promise<unknown>;
}

function start(args: string[], cwd: string, env: Record<string, string>, onLine?: (line: string) => void): Child {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, NO_COLOR: "1", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  // A line of each stream on its own: a chunk of one that ends within a line is not joined to the other's next.
  const taker = () => {
    let partial = "";
    return (d: Buffer) => {
      out += d;
      if (!onLine) return;
      const lines = (partial + d.toString()).split("\n");
      partial = lines.pop()!;
      for (const line of lines) onLine(line);
    };
  };
  child.stdout!.on("data", taker());
  child.stderr!.on("data", taker());
  return { child, output: () => out, exited: childEnded(child) };
}

/** Resolves once `serve` says its gateway is ready; throws with what it printed if it exits or takes over two minutes. */
async function ready(serve: Child, what: string): Promise<void> {
  const said = () => serve.output().includes("gateway ready at");
  await eventually(() => said() || serve.child.exitCode !== null, 120_000).catch(() => {});
  if (!said()) throw new Error(`tandem serve did not start${what ? ` ${what}` : ""}:\n${serve.output().slice(-4000)}`);
}

/** Runs `work` over `items`, `width` at a time. */
async function pool<T>(items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

/** The workerd processes `parent` started (Linux's /proc). */
function workerdChildren(parent: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
    const stat = procStat(Number(entry));
    if (stat?.comm === "workerd" && stat.ppid === parent) found.push(Number(entry));
  }
  return found;
}

/** A process that exists and is not a zombie. */
function alive(pid: number): boolean {
  const stat = procStat(pid);
  return stat !== undefined && stat.state !== "Z";
}

function procStat(pid: number): { comm: string; state: string; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), state: state!, ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

/** The fault run, end to end; resolves with what it measured. */
export async function runFaultRun(options: FaultRunOptions): Promise<FaultReport> {
  const log = options.log ?? (() => {});
  const serveDir = await mkdtemp(join(tmpdir(), "tandem-fault-serve-"));
  const planeDir = await mkdtemp(join(tmpdir(), "tandem-fault-plane-"));
  // The run's own gateway takes the tests' admin token, which this process sends (in CI and from bench/).
  // A lease of 5 s, renewed every 1.7 s: short enough that calls resume soon after the restart, long enough for a live
  // runner to keep it on a loaded machine. At 2 s a loaded CI machine once ran the 30 edge calls 77 times, not 60: each
  // run counted in its record, but a lease that lapses is taken for a lost runner, and this run expects one rerun each.
  const env = { TANDEM_PLANE_SECRET: SECRET, TANDEM_CALL_LEASE_SECONDS: "5", TANDEM_ADMIN_TOKEN: ADMIN_TOKEN };

  // Edge runs, counted on loopback.
  const edgeRuns = new Map<string, number>();
  const counter = http.createServer((req, res) => {
    const id = new URL(req.url!, "http://x").searchParams.get("call")!;
    edgeRuns.set(id, (edgeRuns.get(id) ?? 0) + 1);
    res.end();
  });
  await new Promise<void>((resolve) => counter.listen(0, "127.0.0.1", resolve));
  const counterUrl = `http://127.0.0.1:${(counter.address() as net.AddressInfo).port}/ran`;

  // Plane runs, counted from the plane's log.
  const planeRuns = new Map<string, number>();
  let answeredAgain = 0;
  const onPlaneLine = (line: string) => {
    const ran = /fault-run executing (fc-[0-9a-z]{26})/.exec(line);
    if (ran) planeRuns.set(ran[1]!, (planeRuns.get(ran[1]!) ?? 0) + 1);
    if (/was sent again: (still running|it ended)/.test(line)) answeredAgain++;
  };

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const serveArgs = ["serve", FAULT_APP, "--port", String(port), "--gpus", "A100:1", "--no-watch"];
  let serve = start(serveArgs, serveDir, env);
  let plane: Child | undefined;
  try {
    await ready(serve, "");
    plane = start(["plane", "--gateway", url, "--port", "0", "--gpus", "A100:8"], planeDir, env, onPlaneLine);
    const planeId = await new Promise<string>((resolve, reject) => {
      const timer = setInterval(() => {
        const id = /plane (pl-[0-9a-z]+) at/.exec(plane!.output())?.[1];
        if (id) resolve(id);
        if (id || plane!.child.exitCode !== null) clearInterval(timer);
        if (plane!.child.exitCode !== null) reject(new Error(`tandem plane exited:\n${plane!.output()}`));
      }, 50);
    });
    await eventually(async () => {
      const { planes } = (await (await fetch(`${url}/v1/planes`, authed())).json()) as { planes: { planeId: string; healthy: boolean }[] };
      return planes.some((p) => p.planeId === planeId && p.healthy);
    }, 30_000);
    log(`serve at ${url}, plane ${planeId}`);

    // Every call spawned (and recorded) before the fault.
    const started = Date.now();
    const planeWork = lookup<[number], number>("fault", "planeWork", { gateway: url, token: ADMIN_TOKEN });
    const edgeWork = lookup<[string, number], number>("fault", "edgeWork", { gateway: url, token: ADMIN_TOKEN });
    const planeIds: string[] = [];
    const edgeIds: string[] = [];
    // Edge calls last, and the fault once they have all begun: each is under way when it comes.
    const jobs: ("plane" | "edge")[] = [
      ...Array.from({ length: options.planeCalls }, () => "plane" as const),
      ...Array.from({ length: options.edgeCalls }, () => "edge" as const),
    ];
    await pool(jobs, 16, async (job) => {
      if (job === "plane") planeIds.push((await planeWork.spawn(options.planeWorkMs)).id);
      else edgeIds.push((await edgeWork.spawn(counterUrl, options.edgeWorkMs)).id);
    });
    log(`spawned ${planeIds.length} plane and ${edgeIds.length} edge calls in ${Date.now() - started} ms`);

    await eventually(() => planeRuns.size >= options.planeCalls * options.killAtShare && edgeRuns.size >= options.edgeCalls, 120_000);
    const planeBegunAtKill = planeRuns.size;
    const edgeBegunAtKill = edgeRuns.size;
    const workerd = workerdChildren(serve.child.pid!);
    serve.child.kill("SIGKILL");
    const killedAt = Date.now();
    await serve.exited;
    log(`killed serve with ${planeBegunAtKill} plane and ${edgeBegunAtKill} edge calls begun`);
    await new Promise((r) => setTimeout(r, 1_500)); // the watchdog ends workerd
    const workerdLeftOver = workerd.length === 0 || workerd.some(alive); // none found would prove nothing

    serve = start(serveArgs, serveDir, env);
    await ready(serve, "again");
    const downMs = Date.now() - killedAt;
    log(`serve ready again after ${downMs} ms`);

    // Every record, once it has ended.
    const records = new Map<string, CallRecord>();
    const deadline = Date.now() + 240_000;
    await pool([...planeIds, ...edgeIds], 64, async (id) => {
      while (Date.now() < deadline) {
        const res = await fetch(`${url}/v1/calls/${id}?wait=20000`, authed()).catch(() => undefined);
        const record = res && res.status !== 404 ? ((await res.json()) as CallRecord) : undefined;
        if (record && TERMINAL_STATUSES.has(record.status)) return void records.set(id, record);
        if (!record) await new Promise((r) => setTimeout(r, 200));
      }
    });
    const totalMs = Date.now() - started;
    await new Promise((r) => setTimeout(r, 500)); // the last log lines
    return {
      plane: tierReport(planeIds, records, planeRuns),
      edge: tierReport(edgeIds, records, edgeRuns),
      planeBegunAtKill,
      edgeBegunAtKill,
      downMs,
      totalMs,
      answeredAgain,
      workerdLeftOver,
    };
  } finally {
    counter.close();
    for (const c of [serve, plane]) {
      if (!c || c.child.exitCode !== null || c.child.signalCode !== null) continue;
      c.child.kill("SIGINT"); // both remove their containers as they stop
      await Promise.race([c.exited, new Promise((r) => setTimeout(r, 20_000))]);
      if (c.child.exitCode === null) c.child.kill("SIGKILL");
    }
    await rm(serveDir, { recursive: true, force: true });
    await rm(planeDir, { recursive: true, force: true });
  }
}

function tierReport(ids: string[], records: Map<string, CallRecord>, runs: Map<string, number>): TierReport {
  const report: TierReport = { calls: ids.length, succeeded: 0, lost: 0, duplicated: 0, executions: 0, attempts: 0, attemptsMismatched: [], runs: {} };
  for (const id of ids) {
    const record = records.get(id);
    const ran = runs.get(id) ?? 0;
    report.executions += ran;
    report.duplicated += Math.max(0, ran - 1);
    report.runs[ran] = (report.runs[ran] ?? 0) + 1;
    if (record?.status === "succeeded") report.succeeded++;
    else report.lost++;
    report.attempts += record?.attempts ?? 0;
    if (record?.attempts !== ran) report.attemptsMismatched.push(`${id}: ran ${ran}, record says ${record?.attempts ?? "nothing"}`);
  }
  return report;
}
