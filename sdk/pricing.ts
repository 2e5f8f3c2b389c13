/**
 * What plane containers cost, per second of a container's life (from start to
 * stop, idle warm time included): its GPUs at the rate of their type, its CPU
 * cores and its memory. `tandem usage` and spend caps use this one table.
 */
import type { GpuType } from "./gpu.js";

/** Dollars per GPU-second, by type. */
export const GPU_PRICE_PER_SECOND: Record<GpuType, number> = {
  T4: 0.000164,
  L4: 0.000222,
  A10G: 0.000306,
  L40S: 0.000389,
  A100: 0.000394,
  "A100-80GB": 0.000463,
  H100: 0.000833,
};

/** Dollars per CPU core-second. */
export const CPU_PRICE_PER_CORE_SECOND = 0.0000131;

/** Dollars per GiB-second of memory. */
export const MEMORY_PRICE_PER_GIB_SECOND = 0.00000222;

/** The cost of one container for `seconds`. */
export function containerCost(seconds: number, resources: { gpu: GpuType | null; gpuCount: number; cpu: number; memoryMiB: number }): number {
  const gpu = resources.gpu ? GPU_PRICE_PER_SECOND[resources.gpu] * resources.gpuCount : 0;
  return seconds * (gpu + resources.cpu * CPU_PRICE_PER_CORE_SECOND + (resources.memoryMiB / 1024) * MEMORY_PRICE_PER_GIB_SECOND);
}

/**
 * A cost as `tandem usage`, the dashboard and a spend cap's error write it: dollars to the millionth, whatever its
 * size, so one row reads the same everywhere (a second of the smallest container costs about $0.000014).
 * @example formatUsd(0.0280331); // "$0.028033"
 */
export function formatUsd(usd: number): string {
  return `$${usd.toFixed(6)}`;
}
