/**
 * The gateway side of the edge benchmarks: a bench app bundled with the gateway runtime, started on workerd as
 * `tandem serve` starts it (its own socket, state under `dir`), taking the test admin token, its output dropped.
 */
import { join } from "node:path";
import { bundleWorker } from "../sdk/cli/bundle.js";
import { startWorkerd, type RunningWorkerd } from "../sdk/cli/workerd.js";
import { ADMIN_TOKEN } from "../test/helpers/gateway.js";

/**
 * @example const gateway = await startBenchGateway(join(here, "apps/edge-call-app.ts"), dir);
 */
export async function startBenchGateway(app: string, dir: string, bindings: Record<string, string> = {}): Promise<RunningWorkerd> {
  return startWorkerd({
    worker: await bundleWorker([app], join(dir, "gateway")),
    persistDir: join(dir, "state"),
    bindings: { TANDEM_ADMIN_TOKEN: ADMIN_TOKEN, ...bindings },
    onOutput: () => {},
  });
}
