/**
 * Starts the gateway Worker in real workerd through miniflare, with the
 * bindings it declares in `gateway/env.ts`. State (the call ledger, blobs)
 * persists under `persistDir` when one is given, else lives in memory.
 */
import { Miniflare } from "miniflare";
import { dirname } from "node:path";
import type { Readable } from "node:stream";
import { LineSplitter } from "../stream-lines.js";

export interface WorkerdOptions {
  /** The bundled Worker module. */
  scriptPath: string;
  /** `false`: state in memory only. */
  persistDir: string | false;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** The gateway's `TANDEM_*` settings, as Worker bindings (the CLI reads them from its environment once: `config.ts`). */
  bindings: Record<string, string>;
  /** Where the Worker's console lines go; default this process's stdout/stderr. */
  onOutput?: (line: string, stream: "stdout" | "stderr") => void;
}

export const COMPATIBILITY_DATE = "2025-09-01";
export const COMPATIBILITY_FLAGS = ["nodejs_compat"];

export interface RunningWorkerd {
  url: URL;
  miniflare: Miniflare;
  dispose(): Promise<void>;
}

export async function startWorkerd(options: WorkerdOptions): Promise<RunningWorkerd> {
  const onOutput = options.onOutput ?? ((line, stream) => (stream === "stdout" ? process.stdout : process.stderr).write(line + "\n"));
  const miniflare = new Miniflare({
    name: "tandem-gateway",
    modules: true,
    scriptPath: options.scriptPath,
    modulesRoot: dirname(options.scriptPath),
    // The bundle imports its source map as text (see bundle.ts).
    modulesRules: [
      { type: "Text", include: ["**/*.map"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: COMPATIBILITY_FLAGS,
    durableObjects: {
      LEDGER: { className: "CallLedger", useSQLite: true },
      PLANES: { className: "PlaneRegistry", useSQLite: true },
      SCHEDULER: { className: "Scheduler", useSQLite: true },
      AGENTS: { className: "AgentHub", useSQLite: true },
      TOKENS: { className: "TokenStore", useSQLite: true },
    },
    r2Buckets: ["BLOBS"],
    bindings: options.bindings,
    // Requests come in on a socket of the Worker's own, as in production. miniflare's entry socket (which
    // dispatchFetch and the binding helpers use) passes each request through an extra entry Worker first:
    // measured here, a bare Worker's POST took 0.97 ms that way and 0.45 ms on its own socket.
    unsafeDirectSockets: [{ host: options.host ?? "127.0.0.1", port: options.port ?? 0 }],
    host: "127.0.0.1",
    port: 0,
    cf: false,
    ...(options.persistDir === false ? {} : { defaultPersistRoot: options.persistDir }),
    handleRuntimeStdio(stdout: Readable, stderr: Readable) {
      forwardLines(stdout, (line) => onOutput(line, "stdout"));
      forwardLines(stderr, (line) => onOutput(line, "stderr"));
    },
  });
  await miniflare.ready;
  const url = await miniflare.unsafeGetDirectURL();
  return { url, miniflare, dispose: () => miniflare.dispose() };
}

function forwardLines(stream: Readable, write: (line: string) => void): void {
  const lines = new LineSplitter();
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => lines.push(chunk).forEach(write));
  stream.on("end", () => lines.end().forEach(write));
}
