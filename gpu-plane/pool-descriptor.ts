/**
 * What a pool of interchangeable containers runs, and what follows from that
 * alone: the pool's key, its name, and what each of its containers reserves.
 * The key is the canonical JSON of everything that describes the pool, the
 * whole function spec included, so that a field added to the spec later can
 * never let two different functions share a container.
 */
import { formatGpu, type GpuRequest } from "../sdk/gpu.js";
import { containerResources } from "../sdk/options.js";
import { containerGroup, type PlaneFunctionSpec } from "../sdk/protocol.js";
import type { ResourceRequest } from "./inventory.js";

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
  /** The environment with secrets, for a container this pool starts; not part of its key (a warm container keeps what it started with). */
  secrets?: Record<string, string>;
}

/**
 * What identifies a pool of interchangeable containers: the app, the pool's
 * name, the bundle, the class parameters and the whole spec, as JSON with
 * sorted keys (so the order fields were written in does not matter).
 * @example
 * poolKey(req) === poolKey({ ...req, callId: "fc-…", args: [2] }); // true: only the pool's own fields count
 */
export function poolKey(pool: PoolDescriptor): string {
  return canonicalJson({ app: pool.app, pool: poolName(pool), bundleHash: pool.bundleHash, clsParams: pool.clsParams ?? null, spec: pool.spec });
}

/**
 * A function's pool, or for a class method its class's: one container serves
 * every method of an instance.
 * @example
 * poolName({ ...pool, function: "Model.generate", clsParams: {} }); // "Model"
 */
export function poolName(pool: PoolDescriptor): string {
  return pool.clsParams === undefined ? pool.function : containerGroup(pool.function);
}

/**
 * What a container of the pool needs from the inventory: one request per GPU
 * option (a fallback list, in order of preference), or CPU and memory.
 * @example
 * resourceRequests({ ...pool, spec: { ...spec, gpu: [{ type: "A100", count: 1 }, { type: "T4", count: 1 }] } }).map((r) => r.gpu?.type); // ["A100", "T4"]
 */
export function resourceRequests(pool: PoolDescriptor): ResourceRequest[] {
  const options: (GpuRequest | undefined)[] = pool.spec.gpu ?? [undefined];
  return options.map((gpu) => ({ gpu, ...containerResources(pool.spec) }));
}

/**
 * Resource requests as a `no_capacity` message names them.
 * @example
 * describeRequests(resourceRequests(pool)); // "A100 or T4", or "1 CPU, 512 MiB"
 */
export function describeRequests(requests: ResourceRequest[]): string {
  return requests.map((r) => (r.gpu ? formatGpu(r.gpu) : `${r.cpu} CPU, ${r.memoryMiB} MiB`)).join(" or ");
}

/** JSON with every object's keys sorted, at every depth; arrays keep their order (a GPU fallback list is ordered). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}
