/**
 * What a plane node can give containers: GPUs (from `nvidia-smi`, or a
 * declared, simulated inventory on a machine without them), CPU cores and
 * memory. Containers reserve from it when they start and give back when they
 * stop; GPU reservations pick device indices for `CUDA_VISIBLE_DEVICES`.
 */
import { execFile } from "node:child_process";
import os from "node:os";
import { promisify } from "node:util";
import { GPU_TYPES, type GpuRequest, type GpuType } from "../sdk/gpu.js";

export interface GpuDevice {
  index: number;
  type: GpuType;
  /** The name nvidia-smi reports, or "simulated <type>". */
  name: string;
  /** Docker device id (the GPU's UUID or index); empty for simulated GPUs. */
  deviceId: string;
  simulated: boolean;
}

export interface Reservation {
  gpus: GpuDevice[];
  cpu: number;
  memoryMiB: number;
}

export interface ResourceRequest {
  gpu: GpuRequest | undefined;
  cpu: number;
  memoryMiB: number;
}

/** nvidia-smi names → Tandem's GPU types. */
export function gpuTypeOfName(name: string): GpuType | undefined {
  const n = name.toUpperCase();
  if (n.includes("H100")) return "H100";
  if (n.includes("A100")) return /80\s?GB/.test(n) ? "A100-80GB" : "A100";
  if (n.includes("L40S")) return "L40S";
  if (n.includes("A10G")) return "A10G";
  if (/\bL4\b/.test(n)) return "L4";
  if (/\bT4\b/.test(n)) return "T4";
  return undefined;
}

/** Reads the real GPUs, or an empty list where nvidia-smi is missing or fails. */
export async function detectGpus(log: (line: string) => void = () => {}): Promise<GpuDevice[]> {
  let out: string;
  try {
    ({ stdout: out } = await promisify(execFile)("nvidia-smi", ["--query-gpu=index,name,uuid", "--format=csv,noheader"], { timeout: 10_000 }));
  } catch {
    return [];
  }
  const devices: GpuDevice[] = [];
  for (const line of out.split("\n").filter((l) => l.trim())) {
    const [index = "", name = "", uuid = ""] = line.split(",").map((p) => p.trim());
    const type = gpuTypeOfName(name);
    if (!type) {
      log(`GPU ${index} (${name}) is not a type Tandem schedules (${Object.keys(GPU_TYPES).join(", ")}); leaving it out`);
      continue;
    }
    devices.push({ index: Number(index), type, name, deviceId: uuid || index, simulated: false });
  }
  return devices;
}

/** A declared inventory: `{ A100: 2, T4: 1 }` → simulated devices 0, 1, 2. */
export function simulatedGpus(declared: Partial<Record<GpuType, number>>): GpuDevice[] {
  const devices: GpuDevice[] = [];
  for (const [type, count] of Object.entries(declared) as [GpuType, number][]) {
    for (let i = 0; i < count; i++) devices.push({ index: devices.length, type, name: `simulated ${type}`, deviceId: "", simulated: true });
  }
  return devices;
}

export class Inventory {
  readonly gpus: readonly GpuDevice[];
  readonly cpuTotal: number;
  readonly memoryMiBTotal: number;
  readonly #freeGpus: Set<GpuDevice>;
  #cpuFree: number;
  #memoryFree: number;

  constructor(gpus: GpuDevice[], cpuTotal = os.cpus().length, memoryMiBTotal = Math.floor(os.totalmem() / 1024 / 1024)) {
    this.gpus = gpus;
    this.cpuTotal = cpuTotal;
    this.memoryMiBTotal = memoryMiBTotal;
    this.#freeGpus = new Set(gpus);
    this.#cpuFree = cpuTotal;
    this.#memoryFree = memoryMiBTotal;
  }

  get simulated(): boolean {
    return this.gpus.some((g) => g.simulated);
  }

  /** Whether this node could ever hold the request (enough in total). */
  fits(request: ResourceRequest): string | undefined {
    if (request.gpu) {
      const total = this.gpus.filter((g) => g.type === request.gpu!.type).length;
      if (total < request.gpu.count)
        return `this plane has ${total} ${request.gpu.type} GPU${total === 1 ? "" : "s"}, the function asks for ${request.gpu.count}`;
    }
    if (request.memoryMiB > this.memoryMiBTotal) return `this plane has ${this.memoryMiBTotal} MiB of memory, the function asks for ${request.memoryMiB}`;
    if (request.cpu > this.cpuTotal) return `this plane has ${this.cpuTotal} CPU cores, the function asks for ${request.cpu}`;
    return undefined;
  }

  /** The first of `requests` (a function's GPU choices, in order) that fits, reserved; the others are left free. */
  reserveFirst(requests: readonly ResourceRequest[]): Reservation | undefined {
    for (const request of requests) {
      const reservation = this.reserve(request);
      if (reservation) return reservation;
    }
    return undefined;
  }

  /** Takes what the request needs, or nothing when it is not free now. CPU is shared, never refused. */
  reserve(request: ResourceRequest): Reservation | undefined {
    if (request.memoryMiB > this.#memoryFree) return undefined;
    let gpus: GpuDevice[] = [];
    if (request.gpu) {
      gpus = [...this.#freeGpus]
        .filter((g) => g.type === request.gpu!.type)
        .sort((a, b) => a.index - b.index)
        .slice(0, request.gpu.count);
      if (gpus.length < request.gpu.count) return undefined;
    }
    for (const g of gpus) this.#freeGpus.delete(g);
    this.#cpuFree -= request.cpu;
    this.#memoryFree -= request.memoryMiB;
    return { gpus, cpu: request.cpu, memoryMiB: request.memoryMiB };
  }

  release(reservation: Reservation): void {
    for (const g of reservation.gpus) this.#freeGpus.add(g);
    this.#cpuFree += reservation.cpu;
    this.#memoryFree += reservation.memoryMiB;
  }

  /** The CPU cores its containers asked for, together: more than the plane has when they share it (`reserve` never refuses CPU). */
  get cpuReserved(): number {
    return this.cpuTotal - this.#cpuFree;
  }

  /** Totals and free counts, as heartbeats carry them. */
  summary(): { gpus: Record<string, { total: number; free: number }>; cpu: { total: number; free: number }; memoryMiB: { total: number; free: number } } {
    const gpus: Record<string, { total: number; free: number }> = {};
    for (const g of this.gpus) {
      const entry = (gpus[g.type] ??= { total: 0, free: 0 });
      entry.total++;
      if (this.#freeGpus.has(g)) entry.free++;
    }
    // CPU is shared (`reserve` never refuses it), so containers may ask for more than the plane has: none is free
    // then, not less than none (a heartbeat's -2 read as a fault, and the gateway's choice counts what it sends).
    const cpuFree = Math.max(0, this.#cpuFree);
    return { gpus, cpu: { total: this.cpuTotal, free: cpuFree }, memoryMiB: { total: this.memoryMiBTotal, free: this.#memoryFree } };
  }
}
