/** A plane's metrics over a stand-in source: a plane with one T4 and nothing running, but for what `source` gives. */
import { Inventory, simulatedGpus } from "../../gpu-plane/inventory.js";
import { PlaneMetrics, type PlaneMetricsSource } from "../../gpu-plane/plane-metrics.js";

export function planeMetricsWith(source: Partial<PlaneMetricsSource> = {}): PlaneMetrics {
  return new PlaneMetrics({
    planeId: "pl-0123456789abcdef",
    region: "local",
    runtime: "process",
    sandboxed: false,
    inventory: new Inventory(simulatedGpus({ T4: 1 }), 2, 4096),
    functions: () => [],
    containers: () => [],
    prepared: () => [],
    usage: () => [],
    status: () => ({ state: "ready", gatewayReachable: true, lastHeartbeatAt: Date.now() }),
    ...source,
  });
}
