/**
 * A local stack for plane tests: the gateway in real workerd with the app's
 * plane bundle in its blob store, and a plane (real Docker) registered with it.
 */
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Plane, type PlaneOptions } from "../../gpu-plane/plane.js";
import { BuildCache } from "../../sdk/cli/build-cache.js";
import { buildApps, uploadPlaneBundles } from "../../sdk/cli/local-stack.js";
import { startWorkerd, type RunningWorkerd } from "../../sdk/cli/workerd.js";
import { lookup } from "../../sdk/index.js";
import { PROTOCOL_VERSION, type PlaneFunctionSpec, type PlaneHeartbeat, type PlaneRunRequest } from "../../sdk/protocol.js";
import { ROOT } from "./cli.js";
import { ADMIN_TOKEN, authed, eventually } from "./gateway.js";

export const SECRET = "test-plane-secret-0123456789abcdef";

export interface TestStack {
  url: string;
  dir: string;
  gatewayOutput: string[];
  planeOutput: string[];
  planes: Plane[];
  workerd: RunningWorkerd;
  addPlane(options?: Partial<PlaneOptions>): Promise<Plane>;
  /**
   * Stops the gateway (its runners die mid-call) and starts it again on the same port, with the same state, `downMs`
   * later, and after `whileDown` has run.
   */
  restartGateway(downMs?: number, whileDown?: () => Promise<void>): Promise<void>;
  dispose(): Promise<void>;
}

/**
 * Starts the gateway serving `appFile` (or several app files), with `bindings` besides the plane secret, and, unless
 * `planes: 0`, one in-process plane with `planeOptions`.
 */
export async function startTestStack(
  appFile: string | string[],
  planeOptions: Partial<PlaneOptions> = {},
  options: { planes?: 0 | 1; bindings?: Record<string, string> } = {},
): Promise<TestStack> {
  const dir = await mkdtemp(join(tmpdir(), "tandem-stack-"));
  // Plane bundles as `tandem deploy` and `tandem serve` build them: the runtime (built once, kept) joined with the app.
  const built = await buildApps(Array.isArray(appFile) ? appFile : [appFile], join(dir, "build"), {
    planeRuntimeApart: new BuildCache(join(ROOT, ".tandem", "cache", "build")),
  });
  const gatewayOutput: string[] = [];
  const planeOutput: string[] = [];
  const startGateway = (port = 0) =>
    startWorkerd({
      port,
      worker: built.worker,
      persistDir: join(dir, "state"),
      bindings: { TANDEM_ADMIN_TOKEN: ADMIN_TOKEN, ...options.bindings, TANDEM_PLANE_SECRET: SECRET },
      onOutput: (line) => gatewayOutput.push(line),
    });
  const workerd = await startGateway();
  await uploadPlaneBundles(workerd, built);
  const url = workerd.url.href.replace(/\/$/, "");
  const planes: Plane[] = [];
  const stack: TestStack = {
    url,
    dir,
    gatewayOutput,
    planeOutput,
    planes,
    workerd,
    async addPlane(options = {}) {
      const plane = await Plane.start({
        gatewayUrl: url,
        secret: SECRET,
        host: "127.0.0.1",
        port: 0,
        region: "test",
        runtime: "docker",
        stateDir: join(dir, `plane-${planes.length}`),
        log: (line) => planeOutput.push(line),
        ...planeOptions,
        ...options,
      });
      planes.push(plane);
      await eventually(async () => {
        const res = (await (await fetch(`${url}/v1/planes`, authed())).json()) as { planes: { planeId: string; healthy: boolean }[] };
        return res.planes.some((p) => p.planeId === plane.planeId && p.healthy);
      });
      return plane;
    },
    async restartGateway(downMs = 0, whileDown) {
      await stack.workerd.dispose();
      await new Promise((r) => setTimeout(r, downMs));
      await whileDown?.();
      stack.workerd = await startGateway(Number(new URL(url).port));
    },
    async dispose() {
      for (const p of planes) await p.close().catch(() => {});
      await stack.workerd.dispose();
      await rm(dir, { recursive: true, force: true });
    },
  };
  if (options.planes !== 0) await stack.addPlane();
  return stack;
}

/**
 * A complete run request for `fn` of the plane test app (test/fixtures/plane-app.ts), as the gateway builds it, with
 * the bundle the stack's first plane fetched: one call of `slowPlane` through the gateway puts it there. `autoscaler`
 * changes the spec's defaults (one input a container, up to 100 containers).
 */
export async function planeRunRequest(
  stack: TestStack,
  fn: string,
  args: unknown[],
  autoscaler: Partial<PlaneFunctionSpec["autoscaler"]> = {},
): Promise<PlaneRunRequest> {
  const warmed = await lookup<[number], string>("plane", "slowPlane", { gateway: stack.url, token: ADMIN_TOKEN }).remote(1);
  if (!warmed.startsWith("slept 1")) throw new Error(`slowPlane answered ${warmed}`);
  const [bundleHash] = readdirSync(join(stack.dir, "plane-0", "bundles")).filter((f) => /^[0-9a-f]{64}$/.test(f));
  if (!bundleHash) throw new Error("the plane has no bundle of the test app");
  return {
    callId: `fc-${randomBytes(13).toString("hex")}`,
    app: "plane",
    function: fn,
    bundleHash,
    attempt: 1,
    timeoutSeconds: 30,
    args,
    spec: {
      gpu: null,
      cpu: null,
      memory: null,
      env: {},
      spendCapUsd: null,
      image: null,
      autoscaler: { minContainers: 0, maxContainers: 100, bufferContainers: 0, scaledownWindowSeconds: null, maxInputs: 1, targetInputs: 1, ...autoscaler },
    },
  };
}

/** A heartbeat as a plane sends it, for a plane `planeId` at `url` with `gpus` (the gateway signs nothing back). */
export function planeHeartbeat(planeId: string, url: string, gpus: PlaneHeartbeat["gpus"]): PlaneHeartbeat {
  return {
    planeId,
    url,
    region: "test",
    runtime: "docker",
    simulated: true,
    gpus,
    cpu: { total: 1, free: 0 },
    memoryMiB: { total: 1024, free: 1024 },
    protocol: PROTOCOL_VERSION,
  };
}
