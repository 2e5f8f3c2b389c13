/**
 * `tandem plane`: a GPU plane node for a gateway elsewhere. It says ✓ only
 * once the gateway has taken its first heartbeat. A refused heartbeat ends it
 * with what to do (most often: the plane's secret is not the gateway's); a
 * gateway it cannot reach is said so, and tried again every heartbeat, with a
 * status line every so often, until it answers. Told to stop (SIGTERM,
 * Ctrl-C), it drains: no new input, the ones it has run to their end.
 */
import { join, relative } from "node:path";
import { Plane, type HeartbeatOutcome } from "../../gpu-plane/plane.js";
import { PrintedLines } from "../../gpu-plane/printed-lines.js";
import { PLANE_DEFAULTS } from "../defaults.js";
import { InvalidOptionsError, UnauthorizedError } from "../errors.js";
import type { CliConfig } from "./config.js";
import { printFailure } from "./failure.js";
import { planeSecret } from "./local-stack.js";
import { stateDir } from "./paths.js";
import { onStopSignal } from "./signals.js";
import { style, visibleLines } from "./style.js";

/** Addresses that listen on every interface: the gateway cannot reach a plane by them (`--host` is also its URL). */
const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]"]);

/** A status line while the gateway cannot be reached: after the first failure, then every this many. */
const STATUS_EVERY = 10;

export interface PlaneNodeOptions {
  /** The gateway's URL, resolved (`--gateway`, TANDEM_GATEWAY, or the local default). */
  gateway: string;
  config: CliConfig;
  host: string;
  port: number;
  region: string;
  gpus?: string;
  runtime: "docker" | "process";
  dockerRuntime?: string;
  scaledownWindowSeconds: number;
  /** `--prepared`: most prepared containers kept per function. */
  preparedPerFunction: number;
  /** `--snapshot-max`, `--snapshot-max-bytes`: the caps on the memory snapshots kept. */
  snapshotMax?: number;
  snapshotMaxBytes?: number;
  /** `--metrics-port` and `--metrics-host`: a listener of its own for `GET /metrics`. */
  metricsListen?: { host: string; port: number };
  /** How long a stopping plane waits for its inputs to end (`--drain-timeout`). */
  drainTimeoutSeconds: number;
  /** How long an old version's containers may take to finish their inputs after a deploy (`--version-drain-timeout`). */
  versionDrainTimeoutSeconds: number;
}

/** Starts the plane and reports to the gateway until Ctrl-C; throws (the plane closed) when the gateway refuses it. */
export async function startPlaneNode(options: PlaneNodeOptions): Promise<void> {
  const state = stateDir();
  const secretFile = join(state, "plane-secret");
  const secretFrom = options.config.planeSecret ? "TANDEM_PLANE_SECRET" : `the secret in ${relative(process.cwd(), secretFile) || secretFile}`;
  let started: Plane | undefined;
  let first: HeartbeatOutcome | undefined;
  let accepted = false;
  let failures = 0;
  /** What the gateway last refused this plane with, after it had taken it: said once, not at every heartbeat. */
  let refusedAs: string | undefined;
  // The plane's lines (its containers' among them, one or more a call) are printed in batches; this command's own
  // lines are printed after the ones that wait, so the order stays as things happened.
  const printed = new PrintedLines((text) => process.stdout.write(text));
  process.once("exit", () => printed.flush());
  const say = (line: string): void => {
    printed.flush();
    console.log(line);
  };

  const report = (outcome: HeartbeatOutcome, p: Plane): void => {
    if (outcome.kind === "accepted") {
      if (!accepted) {
        say(`${style.ok("✓")} ${p.describe()}, registered with the gateway at ${options.gateway}`);
        if (p.inventory.simulated) say(style.warn("  GPUs are simulated (declared with --gpus)."));
        if (p.metricsUrl) say(style.dim(`  metrics at ${p.metricsUrl}`));
      } else if (failures > 0 || refusedAs !== undefined) {
        say(`${style.ok("✓")} plane ${p.planeId} reached the gateway at ${options.gateway} again`);
      }
      accepted = true;
      failures = 0;
      refusedAs = undefined;
      return;
    }
    if (outcome.kind === "refused") {
      const refusal = refused(options.gateway, p.planeId, outcome.reason, secretFrom);
      if (accepted) {
        // It was taken before: a gateway changing, or another plane with this id; said once, each plane tries again.
        if (refusedAs !== outcome.reason) say(style.warn(`⚠ ${refusal.message}; trying again every ${PLANE_DEFAULTS.heartbeatMs / 1000} s`));
        refusedAs = outcome.reason;
        return;
      }
      void p.close().finally(() => {
        printFailure(refusal);
        process.exit(2);
      });
      return;
    }
    failures++;
    const every = `trying again every ${PLANE_DEFAULTS.heartbeatMs / 1000} s`;
    if (failures === 1) {
      const what = accepted ? `lost the gateway at ${options.gateway}` : `${p.describe()} cannot reach the gateway at ${options.gateway}`;
      say(`${style.warn("…")} ${what}: ${outcome.reason}; ${every}`);
    } else if (failures % STATUS_EVERY === 0) {
      const waited = Math.round((failures * PLANE_DEFAULTS.heartbeatMs) / 1000);
      say(style.dim(`  still cannot reach the gateway at ${options.gateway} (${failures} tries, ${waited} s): ${outcome.reason}; ${every}`));
    }
  };

  const plane = await Plane.start({
    gatewayUrl: options.gateway,
    secret: planeSecret(state, options.config.planeSecret),
    forceBuild: options.config.forceBuild,
    host: options.host,
    port: options.port,
    region: options.region,
    runtime: options.runtime,
    stateDir: join(state, "plane"),
    scaledownWindowSeconds: options.scaledownWindowSeconds,
    preparedPerFunction: options.preparedPerFunction,
    ...(options.snapshotMax !== undefined ? { snapshotMax: options.snapshotMax } : {}),
    ...(options.snapshotMaxBytes !== undefined ? { snapshotMaxBytes: options.snapshotMaxBytes } : {}),
    versionDrainTimeoutSeconds: options.versionDrainTimeoutSeconds,
    ...(options.gpus !== undefined ? { gpus: options.gpus } : {}),
    ...(options.dockerRuntime ? { dockerRuntime: options.dockerRuntime } : {}),
    ...(options.config.metricsToken ? { metricsToken: options.config.metricsToken } : {}),
    ...(options.metricsListen ? { metricsListen: options.metricsListen } : {}),
    ...(options.config.otlp ? { otlp: options.config.otlp } : {}),
    // Its lines quote its containers' (what functions print): shown as `tandem serve` and `tandem logs` show them.
    log: (line) => printed.line(visibleLines(line)),
    // The first heartbeat is sent before start returns: it is reported once the plane is there to describe.
    onHeartbeat: (outcome) => (started ? report(outcome, started) : (first = outcome)),
  }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EADDRINUSE") throw err;
    throw new InvalidOptionsError(
      `port ${options.port} on ${options.host} is already in use; is another tandem plane (or tandem serve's plane) running here? Pick another with --port`,
    );
  });
  started = plane;
  // Said at once, whether or not the gateway answers: a plane it cannot reach may be why.
  if (WILDCARD_HOSTS.has(options.host)) {
    say(
      style.warn(
        `⚠ --host ${options.host} listens on every address, and the gateway is told to reach this plane at ${plane.url}, which names no machine: ` +
          `only a gateway on this machine can. Give --host the address the gateway reaches this machine at`,
      ),
    );
  }
  if (first?.kind === "refused") {
    await plane.close();
    throw refused(options.gateway, plane.planeId, first.reason, secretFrom);
  }
  if (first) report(first, plane);
  // SIGTERM (an orchestrator stopping it) or Ctrl-C: the inputs it has run to their end first, up to the drain timeout.
  // A second signal ends the drain at once, and the plane still stops its containers and tells the gateway; a third
  // quits at once.
  let cutDrain: (() => void) | undefined;
  onStopSignal(
    async (signal) => {
      const again = signal === "SIGINT" ? "Ctrl-C again" : "a second signal";
      say(style.dim(`${signal}: plane ${plane.planeId} takes no new input and finishes the ones it has… (${again} to stop now)`));
      const cut = new Promise<"cut">((resolve) => (cutDrain = () => resolve("cut")));
      const left = await Promise.race([plane.drain(options.drainTimeoutSeconds * 1000), cut]);
      cutDrain = undefined;
      if (left === "cut") say(style.warn(`⚠ stopping now: the containers of the inputs still running stop (${again} to quit at once)`));
      else if (left > 0) say(style.warn(`⚠ ${left} input(s) still running after ${options.drainTimeoutSeconds} s: stopping their containers`));
      else say(`plane ${plane.planeId} drained; stopping`);
      await plane.close();
      process.exit(left === "cut" ? 130 : 0);
    },
    () => {
      if (!cutDrain) return false; // not draining: stopping its containers already, or not yet started
      cutDrain();
      return true;
    },
  );
}

/** Why the gateway refused this plane, and what to do about it. */
function refused(gateway: string, planeId: string, reason: string, secretFrom: string): UnauthorizedError {
  const why = reason.replace(/^plane request refused: /, "");
  const head = `the gateway at ${gateway} refused plane ${planeId}: ${why}`;
  if (/bad signature/.test(why)) {
    return new UnauthorizedError(
      `${head}. This plane's secret is not the gateway's: it signs with ${secretFrom}. Give it the gateway's secret as TANDEM_PLANE_SECRET ` +
        `(for a local tandem serve: TANDEM_PLANE_SECRET=$(cat <its folder>/.tandem/plane-secret) tandem plane --gateway ${gateway}), ` +
        `or run tandem plane from the gateway's folder, where .tandem/plane-secret is the gateway's`,
    );
  }
  if (/no TANDEM_PLANE_SECRET/.test(why)) {
    return new UnauthorizedError(`${head}. Give the gateway a TANDEM_PLANE_SECRET (16 characters or more), and this plane the same one`);
  }
  if (/timestamp outside/.test(why)) return new UnauthorizedError(`${head}. This machine's clock and the gateway's differ: set both right (NTP)`);
  return new UnauthorizedError(head);
}
