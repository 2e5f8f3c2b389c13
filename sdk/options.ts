/**
 * Function options: their types, their defaults, and the one validator that
 * checks them when an app loads, with a message that names the option.
 */
import { z } from "zod";
import { InvalidOptionsError } from "./errors.js";
import { parseGpuSpec } from "./gpu.js";
import { isImage, type Image } from "./image.js";
import { NAME_PATTERN, type RetryPolicy } from "./protocol.js";
import { isSchedule, type Schedule } from "./schedule.js";

/** Seconds. */
export const DEFAULT_TIMEOUT_SECONDS = 300;
export const MAX_TIMEOUT_SECONDS = 24 * 3600;
/** The most one container may ask for. */
export const MAX_CPU = 64;
export const MAX_MEMORY_MIB = 336 * 1024;

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxRetries: 0,
  backoffCoefficient: 2,
  initialDelayMs: 1000,
  maxDelayMs: 60_000,
};

const RETRIES_BRAND = Symbol.for("tandem.retries");

/** A retry policy made by `Retries(...)`. */
export type Retries = RetryPolicy & { readonly [RETRIES_BRAND]: true };

/**
 * A retry policy with exponential backoff: attempt `k` (from 1) waits
 * `min(initialDelayMs * backoffCoefficient^(k-1), maxDelayMs)` before it runs.
 * @example
 * app.function({ retries: Retries({ maxRetries: 3, initialDelayMs: 500 }) }, flaky)
 */
export function Retries(options: {
  maxRetries: number;
  backoffCoefficient?: number;
  initialDelayMs?: number;
  maxDelayMs?: number;
}): Retries {
  const parsed = RetriesSchema.safeParse({ ...DEFAULT_RETRY_POLICY, ...options }, { reportInput: true });
  if (!parsed.success) throw new InvalidOptionsError(`Retries: ${describeIssues(parsed.error)}`);
  return Object.freeze({ ...parsed.data, [RETRIES_BRAND]: true as const });
}

/** Options a function may take. Plane options (`gpu`, `image`, `cpu`, `memory`) send it to the GPU plane. */
export interface FunctionOptions {
  /** The function's name; defaults to the name it is exported under. */
  name?: string;
  /** Seconds one attempt may run, 1 to 86400; default 300. */
  timeout?: number;
  /** How many times to retry a failed attempt, or a `Retries(...)` policy. Default 0. */
  retries?: number | Retries;
  /** Environment for the function, read with `currentCall().env`. */
  env?: Record<string, string>;
  /** Where it runs. Defaults to `"plane"` when a plane option is set, else `"edge"`. */
  tier?: "edge" | "plane";
  /** Run it on a schedule, fired from the edge: `Cron("0 2 * * *")` or `Period({ hours: 1 })`. It is called with no arguments. */
  schedule?: Schedule;
  /** GPU type (`"A100"`, `"H100:2"`) or a fallback list; runs on the plane. */
  gpu?: string | string[];
  /** A container image for the plane: `Image.node().npmInstall(...)...`. */
  image?: Image;
  /** CPU cores on the plane. */
  cpu?: number;
  /** Memory in MiB on the plane. */
  memory?: number;
  /** Plane containers kept warm with no traffic (default 0). */
  minContainers?: number;
  /** The most plane containers at once; inputs beyond them queue (default 100). */
  maxContainers?: number;
  /** Idle plane containers kept ready while the function is busy (default 0). */
  bufferContainers?: number;
  /** Seconds a plane container may sit idle before it is stopped (default: the plane's, 60 s). */
  scaledownWindow?: number;
  /** Inputs one plane container takes at once: `maxInputs` at most, aiming for `targetInputs` before starting another (default 1). */
  concurrency?: { maxInputs: number; targetInputs?: number };
}

/** How a plane scales a function's containers, defaults filled in. */
export interface AutoscalerSpec {
  minContainers: number;
  maxContainers: number;
  bufferContainers: number;
  /** Null: the plane's own window (60 s unless it was started with another). */
  scaledownWindowSeconds: number | null;
  maxInputs: number;
  targetInputs: number;
}

export const DEFAULT_AUTOSCALER: AutoscalerSpec = {
  minContainers: 0,
  maxContainers: 100,
  bufferContainers: 0,
  scaledownWindowSeconds: null,
  maxInputs: 1,
  targetInputs: 1,
};

/** Options after validation, with every default filled in. */
export interface FunctionSpec {
  name: string | undefined;
  timeoutSeconds: number;
  retries: RetryPolicy;
  env: Record<string, string>;
  tier: "edge" | "plane";
  schedule: Schedule | undefined;
  gpu: string[] | undefined;
  image: Image | undefined;
  cpu: number | undefined;
  memory: number | undefined;
  autoscaler: AutoscalerSpec;
}

const RetriesSchema = z.strictObject({
  maxRetries: z.number().int("must be a whole number").min(0, "must be 0 or more").max(10, "must be 10 or fewer"),
  backoffCoefficient: z.number().min(1, "must be at least 1").max(10, "must be at most 10"),
  initialDelayMs: z.number().min(0, "must be 0 or more").max(60_000, "must be at most 60000"),
  maxDelayMs: z.number().min(0, "must be 0 or more").max(60_000, "must be at most 60000"),
});

const OptionsSchema = z.strictObject({
  name: z.string().regex(NAME_PATTERN, "must be 1-64 letters, digits, '-' or '_', starting with a letter or digit").optional(),
  timeout: z
    .number("must be a number of seconds")
    .min(1, "must be at least 1 second")
    .max(MAX_TIMEOUT_SECONDS, "must be at most 86400 seconds (24 h)")
    .optional(),
  retries: z
    .union([z.number().int().min(0).max(10), z.custom<Retries>((v) => isRetries(v))], "must be a whole number of retries from 0 to 10, or Retries({...})")
    .optional(),
  env: z.record(z.string(), z.string("values must be strings")).optional(),
  tier: z.enum(["edge", "plane"], "must be \"edge\" or \"plane\"").optional(),
  schedule: z.custom<Schedule>((v) => isSchedule(v), "must be Cron(\"...\") or Period({...})").optional(),
  gpu: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)], "must be a GPU type or a list of them").optional(),
  image: z.custom<Image>((v) => isImage(v), "must be an Image (Image.node()...)").optional(),
  cpu: z.number().positive("must be more than 0").max(MAX_CPU, `must be at most ${MAX_CPU} cores`).optional(),
  memory: z.number().int("must be whole MiB").min(6, "must be at least 6 MiB, the least a container can have").max(MAX_MEMORY_MIB, `must be at most ${MAX_MEMORY_MIB} MiB (336 GB)`).optional(),
  minContainers: z.number().int("must be a whole number").min(0, "must be 0 or more").max(1000, "must be at most 1000").optional(),
  maxContainers: z.number().int("must be a whole number").min(1, "must be at least 1").max(1000, "must be at most 1000").optional(),
  bufferContainers: z.number().int("must be a whole number").min(0, "must be 0 or more").max(1000, "must be at most 1000").optional(),
  scaledownWindow: z.number().min(1, "must be at least 1 second").max(MAX_TIMEOUT_SECONDS, "must be at most 86400 seconds").optional(),
  concurrency: z
    .strictObject({
      maxInputs: z.number().int("must be a whole number").min(1, "must be at least 1").max(1000, "must be at most 1000"),
      targetInputs: z.number().int("must be a whole number").min(1, "must be at least 1").optional(),
    })
    .optional(),
});

function isRetries(value: unknown): value is Retries {
  return typeof value === "object" && value !== null && RETRIES_BRAND in value;
}

/**
 * Validates options and fills in defaults. `where` names the function in the
 * error (`function "greet"`).
 */
export function parseFunctionOptions(options: unknown, where: string): FunctionSpec {
  const parsed = OptionsSchema.safeParse(options ?? {}, { reportInput: true });
  if (!parsed.success) throw new InvalidOptionsError(`${where}: ${describeIssues(parsed.error)}`);
  const o = parsed.data;
  const retries: RetryPolicy =
    o.retries === undefined
      ? DEFAULT_RETRY_POLICY
      : typeof o.retries === "number"
        ? { ...DEFAULT_RETRY_POLICY, maxRetries: o.retries }
        : { maxRetries: o.retries.maxRetries, backoffCoefficient: o.retries.backoffCoefficient, initialDelayMs: o.retries.initialDelayMs, maxDelayMs: o.retries.maxDelayMs };
  const gpu = o.gpu === undefined ? undefined : Array.isArray(o.gpu) ? o.gpu : [o.gpu];
  for (const g of gpu ?? []) {
    try {
      parseGpuSpec(g);
    } catch (err) {
      throw new InvalidOptionsError(`${where}: option "gpu": ${(err as Error).message}`);
    }
  }
  const autoscaler: AutoscalerSpec = {
    minContainers: o.minContainers ?? DEFAULT_AUTOSCALER.minContainers,
    maxContainers: o.maxContainers ?? Math.max(DEFAULT_AUTOSCALER.maxContainers, o.minContainers ?? 0),
    bufferContainers: o.bufferContainers ?? DEFAULT_AUTOSCALER.bufferContainers,
    scaledownWindowSeconds: o.scaledownWindow ?? DEFAULT_AUTOSCALER.scaledownWindowSeconds,
    maxInputs: o.concurrency?.maxInputs ?? DEFAULT_AUTOSCALER.maxInputs,
    targetInputs: o.concurrency?.targetInputs ?? o.concurrency?.maxInputs ?? DEFAULT_AUTOSCALER.targetInputs,
  };
  if (autoscaler.minContainers > autoscaler.maxContainers) {
    throw new InvalidOptionsError(`${where}: option "minContainers" (${autoscaler.minContainers}) is more than option "maxContainers" (${autoscaler.maxContainers})`);
  }
  if (autoscaler.targetInputs > autoscaler.maxInputs) {
    throw new InvalidOptionsError(`${where}: option "concurrency.targetInputs" (${autoscaler.targetInputs}) is more than "concurrency.maxInputs" (${autoscaler.maxInputs})`);
  }
  const scaling = (["minContainers", "maxContainers", "bufferContainers", "scaledownWindow", "concurrency"] as const).filter((k) => o[k] !== undefined);
  const wantsPlane = o.gpu !== undefined || o.image !== undefined || o.cpu !== undefined || o.memory !== undefined || scaling.length > 0;
  if (wantsPlane && o.tier === "edge") {
    const named = (["gpu", "image", "cpu", "memory", ...scaling] as const).filter((k) => o[k] !== undefined).map((k) => `"${k}"`);
    throw new InvalidOptionsError(`${where}: option "tier" is "edge", but option${named.length > 1 ? "s" : ""} ${named.join(", ")} need${named.length > 1 ? "" : "s"} the plane; drop one or the other`);
  }
  return {
    name: o.name,
    timeoutSeconds: o.timeout ?? DEFAULT_TIMEOUT_SECONDS,
    retries,
    env: o.env ?? {},
    tier: o.tier ?? (wantsPlane ? "plane" : "edge"),
    schedule: o.schedule,
    gpu,
    image: o.image,
    cpu: o.cpu,
    memory: o.memory,
    autoscaler,
  };
}

/** Options of a WebAssembly function (`app.wasm`): a function's options, and these. */
export interface WasmOptions extends FunctionOptions {
  /** How input and output travel: `"json"` (default: the arguments as a JSON array on stdin, the result as JSON on stdout) or `"bytes"` (one argument's raw bytes in, stdout's raw bytes out). */
  contentType?: "json" | "bytes";
  /** Linear memory one call may use, in 64 KiB pages (default 4096: 256 MiB). */
  maxMemoryPages?: number;
  /** Bytes one call may write to stdout and stderr together (default 10 MiB). */
  maxOutputBytes?: number;
}

/** A WebAssembly function's options after validation. Its wall-time limit is its `timeout`. */
export interface WasmSpec {
  spec: FunctionSpec;
  contentType: "json" | "bytes";
  limits: { maxMemoryPages: number; maxOutputBytes: number };
}

const WasmOnlySchema = z.object({
  contentType: z.enum(["json", "bytes"], 'must be "json" or "bytes"').optional(),
  maxMemoryPages: z.number().int("must be a whole number").min(1, "must be at least 1").max(65536, "must be at most 65536 (4 GiB)").optional(),
  maxOutputBytes: z.number().int("must be a whole number").min(1, "must be at least 1").max(1024 ** 3, "must be at most 1 GiB").optional(),
});

/** Validates a WebAssembly function's options; `where` names it in the error. */
export function parseWasmOptions(options: unknown, where: string): WasmSpec {
  const { contentType, maxMemoryPages, maxOutputBytes, ...rest } = (options ?? {}) as WasmOptions;
  const parsed = WasmOnlySchema.safeParse({ contentType, maxMemoryPages, maxOutputBytes }, { reportInput: true });
  if (!parsed.success) throw new InvalidOptionsError(`${where}: ${describeIssues(parsed.error)}`);
  return {
    spec: parseFunctionOptions(rest, where),
    contentType: parsed.data.contentType ?? "json",
    limits: { maxMemoryPages: parsed.data.maxMemoryPages ?? 4096, maxOutputBytes: parsed.data.maxOutputBytes ?? 10 * 1024 * 1024 },
  };
}

/** The delay before retry `attempt` (1 = the first retry). */
export function retryDelayMs(policy: RetryPolicy, attempt: number): number {
  return Math.min(policy.initialDelayMs * policy.backoffCoefficient ** (attempt - 1), policy.maxDelayMs);
}

/** Turns zod issues into "option \"timeout\" must be ..." sentences. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      if (issue.code === "unrecognized_keys") return `unknown option${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
      const path = issue.path.map(String).join(".");
      const got = "input" in issue && issue.input !== undefined ? ` (got ${JSON.stringify(issue.input)})` : "";
      return path ? `option "${path}" ${issue.message}${got}` : `${issue.message}${got}`;
    })
    .join("; ");
}
