/**
 * What a pool of interchangeable containers runs, and what follows from that
 * alone: the pool's key, its name, and what each of its containers reserves.
 */
import { formatGpu, parseGpuSpec, type GpuRequest } from "../sdk/gpu.js";
import type { PlaneFunctionSpec } from "../sdk/protocol.js";
import type { ResourceRequest } from "./inventory.js";

/** CPU cores of a function that does not say. */
export const DEFAULT_CPU = 1;
/** Memory (MiB) of a function that does not say. */
export const DEFAULT_MEMORY_MIB = 512;

/**
 * What a pool of containers runs: one function of one bundle, with its spec.
 * A run request is one (its other fields are left out of the key).
 */
export interface PoolDescriptor {
  app: string;
  function: string;
  bundleHash: string;
  spec: PlaneFunctionSpec;
  /** A class method's parameters: each set has its own pool. */
  clsParams?: Record<string, unknown>;
}

/** What identifies a pool of interchangeable containers: the function, its bundle and its resources. */
export function poolKey(req: PoolDescriptor): string {
  return `${req.app}/${poolName(req)}/${req.bundleHash}/${req.spec.image}/${(req.spec.gpu ?? []).join("|")}/${req.spec.cpu}/${req.spec.memory}/${JSON.stringify(req.spec.env)}/${JSON.stringify(req.clsParams ?? null)}`;
}

/**
 * A function's pool, or for a class method its class's: one container serves
 * every method of an instance.
 * @example
 * poolName({ ...pool, function: "Model.generate", clsParams: {} }); // "Model"
 */
export function poolName(pool: PoolDescriptor): string {
  return pool.clsParams === undefined ? pool.function : pool.function.split(".")[0]!;
}

/**
 * What a container of the pool needs from the inventory: one request per GPU
 * option (a fallback list, in order of preference), or CPU and memory.
 * @example
 * resourceRequests({ ...pool, spec: { ...spec, gpu: ["A100", "T4"] } }).map((r) => r.gpu?.type); // ["A100", "T4"]
 */
export function resourceRequests(pool: PoolDescriptor): ResourceRequest[] {
  const options = (pool.spec.gpu ?? []).map(parseGpuSpec);
  return (options.length ? options : [undefined]).map((gpu: GpuRequest | undefined) => ({
    gpu,
    cpu: pool.spec.cpu ?? DEFAULT_CPU,
    memoryMiB: pool.spec.memory ?? DEFAULT_MEMORY_MIB,
  }));
}

/**
 * Resource requests as a `no_capacity` message names them.
 * @example
 * describeRequests(resourceRequests(pool)); // "A100 or T4", or "1 CPU, 512 MiB"
 */
export function describeRequests(requests: ResourceRequest[]): string {
  return requests.map((r) => (r.gpu ? formatGpu(r.gpu) : `${r.cpu} CPU, ${r.memoryMiB} MiB`)).join(" or ");
}
