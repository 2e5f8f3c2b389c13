/**
 * GPU types and GPU specs (`"A100"`, `"H100:2"`, fallback lists), shared by
 * the SDK (load-time checks), the gateway (routing) and the plane (inventory).
 */
import { InvalidOptionsError } from "./errors.js";

/** The GPU types Tandem knows, with their memory in GiB. `A100` is the 40 GB part. */
export const GPU_TYPES = {
  T4: 16,
  L4: 24,
  A10G: 24,
  L40S: 48,
  A100: 40,
  "A100-80GB": 80,
  H100: 80,
} as const;

export type GpuType = keyof typeof GPU_TYPES;

/** The most GPUs one container may have. */
export const MAX_GPUS_PER_CONTAINER = 8;

/** A GPU type as the `gpu` option may name it: as listed, in lower case, or by an alias (`"A100-40GB"`). */
type GpuName = GpuType | Lowercase<GpuType> | keyof typeof ALIASES | Lowercase<keyof typeof ALIASES>;

/**
 * What the `gpu` option takes, typed so that an unknown type or a count past `MAX_GPUS_PER_CONTAINER` does not
 * compile (`parseGpuSpec` checks it again at load, where any casing is taken).
 * @example const gpu: GpuSpec = "H100:2";
 */
export type GpuSpec = GpuName | `${GpuName}:${1 | 2 | 3 | 4 | 5 | 6 | 7 | 8}`;

export interface GpuRequest {
  type: GpuType;
  count: number;
}

const ALIASES = { "A100-40GB": "A100", "A100-40G": "A100", "A100-80G": "A100-80GB" } as const satisfies Record<string, GpuType>;

/** Parses `"H100:2"` (case-insensitive). Throws naming the known types. */
export function parseGpuSpec(spec: string): GpuRequest {
  const [rawType = "", rawCount, ...rest] = spec.trim().split(":");
  const upper = rawType.toUpperCase();
  const type = (Object.keys(GPU_TYPES).find((t) => t.toUpperCase() === upper) ?? (ALIASES as Record<string, GpuType | undefined>)[upper]) as
    GpuType | undefined;
  if (!type || rest.length) {
    throw new InvalidOptionsError(`unknown GPU "${spec}"; known types: ${Object.keys(GPU_TYPES).join(", ")} (add ":N" for N of them, e.g. "H100:2")`);
  }
  const count = rawCount === undefined ? 1 : Number(rawCount);
  if (!Number.isInteger(count) || count < 1 || count > MAX_GPUS_PER_CONTAINER) {
    throw new InvalidOptionsError(`GPU "${spec}": the count must be 1 to ${MAX_GPUS_PER_CONTAINER}`);
  }
  return { type, count };
}

/** Formats a request back: `H100:2`, or `T4` for one. */
export function formatGpu(request: GpuRequest): string {
  return request.count === 1 ? request.type : `${request.type}:${request.count}`;
}

/** Parses an inventory declaration such as `"A100:2,T4:1"` (used by `--gpus`). */
export function parseGpuInventory(text: string): Partial<Record<GpuType, number>> {
  const inventory: Partial<Record<GpuType, number>> = {};
  const parts = text
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  // Said rather than read as no GPUs (a CPU-only plane), or as the part before a second ":", without a word.
  if (parts.length === 0) throw new InvalidOptionsError(`--gpus "${text}" names no GPU: give types and counts, e.g. "A100:2,T4:1"`);
  for (const part of parts) {
    const [type = "", count = "1", ...rest] = part.split(":");
    if (rest.length) throw new InvalidOptionsError(`--gpus "${part}": give a type and a count, such as "A100:2"`);
    const n = Number(count);
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidOptionsError(`--gpus "${part}": the count must be 1 to 64`);
    const { type: known } = parseGpuSpec(type);
    inventory[known] = (inventory[known] ?? 0) + n;
  }
  return inventory;
}
