/**
 * Starts the gateway Worker in real workerd through miniflare, with the
 * bindings it declares in `gateway/env.ts`. State (the call ledger, blobs)
 * persists under `persistDir` when one is given, else lives in memory.
 * workerd ends with the process that started it, however that process ends.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import type * as MiniflareModule from "miniflare";
import { dirname } from "node:path";
import type { Readable, Writable } from "node:stream";
import { errorBody, errorStatus } from "../errors.js";
import {
  LOCAL_BACKGROUND_ROUTE,
  LOCAL_CLIENT_GONE_ROUTE,
  LOCAL_BLOBS_ROUTE,
  LOCAL_PLANE_ROUTES,
  type LocalPlaneBundles,
  type LocalPlaneStarted,
  type PlaneBundleRef,
  type PlaneHeartbeat,
} from "../protocol.js";
import { LineSplitter } from "../stream-lines.js";
import { trace } from "../trace.js";
import type { WorkerBundle } from "./bundle.js";

// Required, not imported: miniflare is CommonJS, and an ES import of it first reads all its 4 MB for the names it
// exports (measured: 0.23 s of a 0.55 s load, which every `tandem run` waits for).
const { Miniflare, Response: MiniflareResponse } = createRequire(import.meta.url)("miniflare") as typeof MiniflareModule;
type Miniflare = MiniflareModule.Miniflare;
type MiniflareResponse = MiniflareModule.Response;

export interface WorkerdOptions {
  /** The bundled Worker module and the files beside it that it imports (`bundleWorker`). */
  worker: Pick<WorkerBundle, "path" | "modules">;
  /** `false`: state in memory only. */
  persistDir: string | false;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** The gateway's `TANDEM_*` settings, as Worker bindings (the CLI reads them from its environment once: `config.ts`). */
  bindings: Record<string, string>;
  /**
   * Starts the local plane when a call first needs one and none has reported
   * (`tandem run`); resolves with its report once it takes calls. The gateway asks through its
   * `LOCAL_PLANE` binding. Without it, the gateway waits for planes to report.
   */
  startPlane?: () => Promise<PlaneHeartbeat>;
  /**
   * The apps' plane bundles, made when first asked for (`tandem run` of an edge function starts the gateway before it
   * bundles them): the gateway asks through `LOCAL_PLANE` when a call needs an app's and its Worker does not name it.
   */
  planeBundles?: () => Promise<Record<string, PlaneBundleRef>>;
  /**
   * Where miniflare keeps its temporary files (workerd's in-memory state backs onto disk there), instead of a
   * folder in the system's: whoever starts it removes this folder, rather than wait for miniflare's removal of its
   * own after `dispose` (`tandem run`: 0.2 s of every run).
   */
  tmpDir?: string;
  /** Where the Worker's console lines go; default this process's stdout/stderr. */
  onOutput?: (line: string, stream: "stdout" | "stderr") => void;
}

/** How often `settled` asks whether a gateway's background work is done. */
const BACKGROUND_POLL_MS = 25;

export const COMPATIBILITY_DATE = "2025-09-01";
/**
 * As wrangler.toml's: `web_socket_auto_reply_to_close` (the default from 2026-04-07) answers a client's close frame
 * with its own, as the WebSocket standard says, so a hono `upgradeWebSocket` in `app.web` closes cleanly (without it
 * the client waits, then sees 1006). Agents answer a close themselves and are unchanged. `enable_request_signal`
 * aborts an incoming request's `signal` when its client goes: a web handler's `.remote()` calls are then cancelled.
 */
export const COMPATIBILITY_FLAGS = ["nodejs_compat", "web_socket_auto_reply_to_close", "enable_request_signal"];

/**
 * A started gateway. Talk to it over HTTP, never through miniflare's binding proxies (`getR2Bucket`, `getWorker`, …):
 * their calls block this thread until workerd answers, and workerd writes its console to a pipe this thread reads, so
 * under load both wait on each other for good (gateway/local-blobs.ts).
 */
export interface RunningWorkerd {
  url: URL;
  miniflare: Miniflare;
  /** Puts a plane bundle, source map or image spec (by its `BLOB_KEYS` key) into the gateway's R2 bucket. */
  putBlob(key: string, bytes: Uint8Array | string): Promise<void>;
  /** Runs the Worker's `scheduled` handler, as a cron trigger at `at` does; rejects when the handler failed. */
  scheduled(at: Date): Promise<void>;
  /**
   * Resolves once the work its requests left behind them (`waitUntil`) is done, or after `maxMs`, or at once when it
   * cannot be asked (gateway/background.ts).
   */
  settled(maxMs: number): Promise<void>;
  /** Tells the gateway that the client of the web request sent with `HEADERS.clientWatch: watch` went (gateway/client-gone.ts). */
  clientGone(watch: string): void;
  /**
   * Resolves when workerd ends on its own (killed, crashed, out of memory), with how it ended: never when `dispose`
   * stops it, nor where its process could not be told apart (`tandem serve` starts it again).
   */
  exited: Promise<WorkerdExit>;
  /** Stops workerd; called again, waits for the first call's stop. */
  dispose(): Promise<void>;
}

/** How a workerd process ended: its pid, and its exit code or the signal that killed it. */
export interface WorkerdExit {
  pid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
}

export async function startWorkerd(options: WorkerdOptions): Promise<RunningWorkerd> {
  const onOutput = options.onOutput ?? ((line, stream) => (stream === "stdout" ? process.stdout : process.stderr).write(line + "\n"));
  // miniflare names its temporary folder once, in its constructor, under os.tmpdir() (TMPDIR): set for that moment only.
  const systemTmp = process.env.TMPDIR;
  if (options.tmpDir) {
    mkdirSync(options.tmpDir, { recursive: true });
    process.env.TMPDIR = options.tmpDir;
  }
  const blobsKey = randomBytes(24).toString("base64url");
  let miniflare: Miniflare;
  let child: ChildProcess | undefined;
  try {
    miniflare = spawningWorkerd(
      () => newMiniflare({ ...options, bindings: { ...options.bindings, LOCAL_BLOBS_KEY: blobsKey } }, onOutput),
      (spawned) => (child = spawned),
    );
  } finally {
    if (options.tmpDir) {
      if (systemTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = systemTmp;
    }
  }
  trace("workerd: miniflare set up");
  await miniflare.ready;
  trace("workerd: ready");
  const workerd = child;
  const watchdog = endWithThisProcess(workerd?.pid);
  let disposing = false;
  let disposed: Promise<void> | undefined;
  const exited = new Promise<WorkerdExit>((resolve) => {
    if (!workerd || workerd.exitCode !== null || workerd.signalCode !== null) return; // not told apart, or gone already: nothing to hear
    workerd.once("exit", (code, signal) => {
      if (!disposing) resolve({ pid: workerd.pid, code, signal });
    });
  });
  const url = await miniflare.unsafeGetDirectURL();
  return {
    url,
    miniflare,
    // Sent again after a moment when the store fails it (a reload's workerd shares the store with the one serving).
    putBlob: async (key, bytes) => {
      const body = typeof bytes === "string" ? bytes : new Uint8Array(bytes);
      for (let attempt = 1; ; attempt++) {
        const res = await fetch(new URL(`${LOCAL_BLOBS_ROUTE}/${key}`, url), { method: "PUT", body, headers: { authorization: `Bearer ${blobsKey}` } });
        if (res.status === 204) return;
        const why = `HTTP ${res.status} ${await res.text()}`;
        if (res.status < 500 || attempt === 3) throw new Error(`the local gateway did not take ${key}: ${why}`);
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    },
    // Through miniflare's entry Worker, which calls the handler (unsafeTriggerHandlers): a request, not a proxy call.
    scheduled: async (at) => {
      const res = await miniflare.dispatchFetch(`http://localhost/cdn-cgi/handler/scheduled?time=${at.getTime()}&cron=${encodeURIComponent("* * * * *")}`);
      const outcome = await res.text();
      if (res.status !== 200) throw new Error(`the scheduled handler answered ${outcome || `HTTP ${res.status}`}`);
    },
    settled: async (maxMs) => {
      const until = Date.now() + maxMs;
      for (;;) {
        try {
          const res = await fetch(new URL(LOCAL_BACKGROUND_ROUTE, url), { headers: { authorization: `Bearer ${blobsKey}` } });
          if (!res.ok) return void (await res.body?.cancel()); // a gateway without the route: nothing to wait for
          if (((await res.json()) as { pending: number }).pending === 0) return;
        } catch {
          return; // gone, or not answering: nothing more to wait for here
        }
        if (Date.now() >= until) return;
        await new Promise((r) => setTimeout(r, BACKGROUND_POLL_MS));
      }
    },
    // Not waited for: the request it names is the one to stop, and it looks within 100 ms; a gateway gone meanwhile has nothing to stop.
    clientGone: (watch) => {
      fetch(new URL(`${LOCAL_CLIENT_GONE_ROUTE}/${watch}`, url), { method: "POST", headers: { authorization: `Bearer ${blobsKey}` } })
        .then((res) => res.body?.cancel())
        .catch(() => {});
    },
    exited,
    // Once: miniflare's own dispose, called again, throws ERR_SERVER_NOT_RUNNING from a close callback, out of the process.
    dispose: () =>
      (disposed ??= (async () => {
        disposing = true;
        watchdog?.kill();
        await miniflare.dispose();
      })()),
  };
}

function newMiniflare(options: WorkerdOptions, onOutput: NonNullable<WorkerdOptions["onOutput"]>): Miniflare {
  return new Miniflare({
    name: "tandem-gateway",
    // Every module named (the bundle, its source map as text, its WebAssembly modules): see WorkerBundle.modules.
    modules: [{ type: "ESModule", path: options.worker.path }, ...options.worker.modules],
    modulesRoot: dirname(options.worker.path),
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: COMPATIBILITY_FLAGS,
    durableObjects: {
      LEDGER: { className: "CallLedger", useSQLite: true },
      PLANES: { className: "PlaneRegistry", useSQLite: true },
      SCHEDULER: { className: "Scheduler", useSQLite: true },
      AGENTS: { className: "AgentHub", useSQLite: true },
      TOKENS: { className: "TokenStore", useSQLite: true },
      SECRETS: { className: "SecretStore", useSQLite: true },
      VOLUMES: { className: "VolumeStore", useSQLite: true },
      DICTS: { className: "DictStore", useSQLite: true },
      QUEUES: { className: "QueueStore", useSQLite: true },
      LOGS: { className: "LogStore", useSQLite: true },
      DEPLOYMENTS: { className: "DeploymentStore", useSQLite: true },
      METRICS_EXPORTER: { className: "MetricsExporter", useSQLite: true },
    },
    r2Buckets: ["BLOBS"],
    // As wrangler.toml's [version_metadata]: its timestamp is this workerd's start, so each reload is a later version.
    versionMetadata: "CF_VERSION_METADATA",
    bindings: options.bindings,
    ...(options.startPlane ? { serviceBindings: { LOCAL_PLANE: localPlaneService(options.startPlane, options.planeBundles) } } : {}),
    // Requests come in on a socket of the Worker's own, as in production. miniflare's entry socket (which
    // dispatchFetch and the binding helpers use) passes each request through an extra entry Worker first:
    // measured here, a bare Worker's POST took 0.97 ms that way and 0.45 ms on its own socket.
    unsafeDirectSockets: [{ host: options.host ?? "127.0.0.1", port: options.port ?? 0 }],
    host: "127.0.0.1",
    port: 0,
    cf: false,
    // The gateway's own requests (to its planes, an OTLP collector) go straight out. By default miniflare sends each
    // through a Worker of its own first, to drop a header (CF-Connecting-IP) that nothing sets here: that extra Worker
    // took about 0.12 ms of each warm plane call (bench/README.md, "The gateway's requests without miniflare's extra Worker").
    stripCfConnectingIp: false,
    unsafeTriggerHandlers: true,
    ...(options.persistDir === false ? {} : { defaultPersistRoot: options.persistDir }),
    handleRuntimeStdio(stdout: Readable, stderr: Readable) {
      for (const [stream, name] of [
        [stdout, "stdout"],
        [stderr, "stderr"],
      ] as const) {
        forwardLines(stream, (line) => {
          const shown = readableWorkerdLine(line);
          if (shown !== undefined) onOutput(shown, name);
        });
      }
    },
  });
}

/**
 * The gateway's `LOCAL_PLANE` binding: `LOCAL_PLANE_ROUTES.start` starts the plane, answered with its report once it
 * takes calls; `LOCAL_PLANE_ROUTES.bundles` answers with the plane bundles, made when first asked for.
 */
function localPlaneService(
  start: () => Promise<PlaneHeartbeat>,
  bundles: (() => Promise<Record<string, PlaneBundleRef>>) | undefined,
): (request: MiniflareModule.Request) => Promise<MiniflareResponse> {
  return async (request) => {
    const route = new URL(request.url).pathname;
    if (request.method !== "POST" || (route !== LOCAL_PLANE_ROUTES.start && (route !== LOCAL_PLANE_ROUTES.bundles || !bundles)))
      return new MiniflareResponse(null, { status: 404 });
    try {
      if (route === LOCAL_PLANE_ROUTES.bundles) return MiniflareResponse.json({ bundles: await bundles!() } satisfies LocalPlaneBundles);
      return MiniflareResponse.json({ plane: await start() } satisfies LocalPlaneStarted);
    } catch (err) {
      return MiniflareResponse.json(errorBody(err), { status: errorStatus(err) });
    }
  };
}

// node:child_process as miniflare requires it (CommonJS): the object whose `spawn` miniflare calls.
const childProcesses = createRequire(import.meta.url)("node:child_process") as { spawn: (...args: unknown[]) => ChildProcess };
/** Told of the workerd spawned in its async context (`spawningWorkerd`). */
const spawning = new AsyncLocalStorage<(child: ChildProcess) => void>();
let spawnWrapped = false;

/**
 * Runs `start` (a miniflare's construction), telling `found` of the workerd process it spawns. miniflare keeps that
 * ChildProcess to itself, yet only it says when workerd ends and how: node:child_process's `spawn` is wrapped once,
 * and a spawn of workerd in `start`'s async context (miniflare starts it a few awaits later) is reported; every
 * other spawn goes on as it is. Two gateways starting at once each hear of their own.
 */
function spawningWorkerd<T>(start: () => T, found: (child: ChildProcess) => void): T {
  if (!spawnWrapped) {
    spawnWrapped = true;
    const spawn = childProcesses.spawn;
    childProcesses.spawn = (...args: unknown[]) => {
      const isWorkerd = /(^|[/\\])workerd(\.exe)?$/.test(String(args[0]));
      // In a process group of its own: a terminal's Ctrl-C signals the whole group it runs in, and reached workerd
      // too, which died at once, before `tandem serve` could let the requests in flight end (its watchdog, and
      // miniflare's dispose, still end it with this process).
      if (isWorkerd && Array.isArray(args[1])) args[2] = { ...(args[2] as object | undefined), detached: true };
      const child = spawn(...args);
      if (isWorkerd) spawning.getStore()?.(child);
      return child;
    };
  }
  return spawning.run(found, start);
}

/**
 * Kills workerd `pid` when this process is gone. miniflare stops workerd on
 * dispose, but a process killed outright (SIGKILL, the OOM killer) left it
 * running: still serving the calls it had and renewing their leases, beside
 * the workerd a restart starts on the same state folder, which then ran them
 * again. A shell in its own process group (a Ctrl-C to this one does not
 * reach it) waits on a pipe from this process; the pipe closes when this
 * process ends, and the shell kills workerd.
 */
function endWithThisProcess(pid: number | undefined): ChildProcess | undefined {
  if (pid === undefined) return undefined;
  const watchdog = spawn("/bin/sh", ["-c", 'read _; kill -9 "$1" 2>/dev/null', "tandem-workerd-watchdog", String(pid)], {
    stdio: ["pipe", "ignore", "ignore"],
    detached: true,
  });
  watchdog.on("error", () => {}); // no shell: workerd outlives a killed process, as before
  watchdog.unref();
  (watchdog.stdin as Writable & { unref?: () => void }).unref?.();
  return watchdog;
}

/**
 * A line of workerd's output as `tandem serve` and `tandem run` print it: a request workerd cancelled because the code
 * answering it could never answer (a promise waiting on nothing: no timer, fetch or other I/O pending) is said in
 * words, and the addresses in workerd's binary that follow such an error (`stack: …/workerd@2f201f0 …`) are left out
 * (undefined). Any other line is as workerd wrote it.
 * @example readableWorkerdLine("stack: /x/bin/workerd@2f201f0 /x/bin/workerd@2f20430") // undefined
 */
export function readableWorkerdLine(line: string): string | undefined {
  if (/^stack:( \S*workerd@[0-9a-f]+)+\s*$/.test(line)) return undefined;
  if (/Uncaught exception: .*had hung and would never generate a response/.test(line)) return HUNG_REQUEST;
  return line;
}

/** What `readableWorkerdLine` prints for a request workerd cancelled as hung, and the front door answers with. */
export const HUNG_REQUEST =
  "the gateway cancelled a request its code could never answer: a handler's promise waits on nothing that could settle it (no timer, fetch or other I/O is pending)";

function forwardLines(stream: Readable, write: (line: string) => void): void {
  const lines = new LineSplitter();
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => lines.push(chunk).forEach(write));
  stream.on("end", () => lines.end().forEach(write));
}
