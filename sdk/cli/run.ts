/**
 * `tandem run <app.ts>::<function> [args…]`: runs one function once on an
 * ephemeral gateway (in-memory state), with an ephemeral plane beside it when
 * the app has plane functions, prints the result (a generator's chunks one a
 * line as they come; `--json`: JSON lines), and exits non-zero with the remote
 * error when it throws.
 */
import { inspect } from "node:util";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { InvalidOptionsError } from "../errors.js";
import { HttpInvoker } from "../client.js";
import { encodeValue, newToken } from "../protocol.js";
import { randomBytes } from "node:crypto";
import { Plane } from "../../gpu-plane/plane.js";
import { buildApps, checkPlaneFits, uploadPlaneBundles } from "./local-stack.js";
import { stateDir } from "./paths.js";
import { onStopSignal } from "./signals.js";
import type { CliConfig } from "./config.js";
import { printFailure } from "./failure.js";
import { startWorkerd } from "./workerd.js";

/** Splits `app.ts::fn`. A missing `::fn` is allowed when the app has exactly one function. */
export function parseTarget(target: string): { file: string; fn: string | undefined } {
  const at = target.lastIndexOf("::");
  if (at < 0) return { file: target, fn: undefined };
  return { file: target.slice(0, at), fn: target.slice(at + 2) || undefined };
}

/**
 * Each argument is parsed as JSON. A bare word that is not JSON (`Ada`) is
 * taken as a string; something that looks like JSON but is not is an error.
 */
export function parseArg(raw: string, position: number): unknown {
  try {
    return JSON.parse(raw);
  } catch (err) {
    if (/^\s*[[{"]/.test(raw)) throw new InvalidOptionsError(`argument ${position} is not valid JSON: ${(err as Error).message}`);
    return raw;
  }
}

export interface RunOptions {
  /** Print the result, or each chunk, as one line of JSON. */
  json?: boolean;
  /** The ephemeral plane's simulated GPUs (`"H100:2"`); default real ones, else one of each type. */
  gpus?: string;
}

export async function runOnce(target: string, rawArgs: string[], config: CliConfig, options: RunOptions = {}): Promise<number> {
  const { file, fn: wanted } = parseTarget(target);
  const state = stateDir();
  const buildDir = join(state, "build", "run");
  const built = await buildApps([file], buildDir);
  const app = built.apps[0]!;
  const names = app.callables.map((c) => c.name);
  const fn = wanted ?? (names.length === 1 ? names[0] : undefined);
  if (!fn) throw new InvalidOptionsError(`say which function to run: ${file}::<function> (functions: ${names.join(", ") || "none"})`);
  if (!names.includes(fn)) throw new InvalidOptionsError(`app "${app.name}" in ${file} has no function "${fn}" (functions: ${names.join(", ") || "none"})`);
  const args = rawArgs.map((a, i) => parseArg(a, i + 1));

  // An ephemeral gateway (state in memory) and, when the app has plane functions, an ephemeral plane beside it.
  const secret = randomBytes(32).toString("hex");
  const { token } = newToken(); // this run's own admin token: its gateway lives as long as the run
  // Logs go to stderr: stdout is the result alone.
  const gateway = await startWorkerd({
    scriptPath: built.worker.path,
    persistDir: false,
    bindings: { ...config.gatewayVars, TANDEM_PLANE_SECRET: secret, TANDEM_ADMIN_TOKEN: token },
    onOutput: (line) => process.stderr.write(line + "\n"),
  });
  let plane: Plane | undefined;
  // A folder of this run's own: runs side by side in one project each get their ephemeral plane.
  const planeDir = join(state, "run-planes", String(process.pid));
  const stop = async () => {
    await plane?.close();
    await gateway.dispose();
    await rm(planeDir, { recursive: true, force: true });
  };
  onStopSignal(async () => {
    await stop();
    process.exit(130);
  });
  try {
    const url = gateway.url.href.replace(/\/$/, "");
    if (built.planes.length) {
      await uploadPlaneBundles(gateway.miniflare, built);
      plane = await Plane.start({
        gatewayUrl: url,
        secret,
        host: "127.0.0.1",
        port: 0,
        region: "local",
        runtime: "docker",
        simulateWhenNone: true,
        ...(options.gpus ? { gpus: options.gpus } : {}),
        keepWarm: false,
        forceBuild: config.forceBuild,
        stateDir: planeDir,
        log: (line) => console.error(line),
      });
      const local = plane;
      checkPlaneFits(built.apps, local.inventory, fn); // as serve does: a call that could never run here fails now, not at its timeout
    }
    const invoker = new HttpInvoker(url, { token });
    if (app.callables.find((c) => c.name === fn)?.generator) {
      for await (const chunk of invoker.stream(app.name, fn, args)) console.log(chunkLine(chunk, options.json ?? false));
      return 0;
    }
    const result = await invoker.call(app.name, fn, args);
    if (options.json) {
      console.log(JSON.stringify(result) ?? "null");
      return 0;
    }
    // Strings print as they are, plain JSON as JSON, anything richer (Map, Date, bytes) as Node shows it.
    // Bytes (a "bytes" WebAssembly function's output, say) go to stdout as they are, so they can be piped.
    if (result instanceof Uint8Array) process.stdout.write(result);
    else if (result !== undefined)
      console.log(
        typeof result === "string" ? result : encodeValue(result).meta === undefined ? JSON.stringify(result, null, 2) : inspect(result, { depth: 8 }),
      );
    return 0;
  } catch (err) {
    printFailure(err);
    return 1;
  } finally {
    await stop();
  }
}

/**
 * A generator's chunk as one line: text as it is, plain JSON as JSON, anything richer (Map, Date) as Node shows
 * it; with `json`, every chunk as JSON (NDJSON: text quoted).
 */
export function chunkLine(chunk: unknown, json: boolean): string {
  if (json) return JSON.stringify(chunk) ?? "null";
  if (typeof chunk === "string") return chunk;
  return encodeValue(chunk).meta === undefined ? JSON.stringify(chunk) : inspect(chunk, { depth: 8, breakLength: Infinity });
}
