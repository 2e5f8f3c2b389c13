/**
 * Function options, declared once: `FunctionOptionsSchema` holds each
 * option's type and doc comment (what an editor shows), its check and the
 * message that names it, and where it runs. `FunctionOptions` (what users
 * write), `FunctionSpec` (what runtimes read, defaults filled in) and the
 * spec a plane receives are derived from it; defaults come from
 * `sdk/defaults.ts`. sdk/README.md says how to add an option.
 */
import { z } from "zod";
import { isArgumentsSchema, type ArgumentsSchema } from "./arguments.js";
import { FUNCTION_DEFAULTS, FUNCTION_LIMITS, WASM_DEFAULTS } from "./defaults.js";
import { InvalidOptionsError } from "./errors.js";
import { parseGpuSpec, type GpuRequest, type GpuSpec } from "./gpu.js";

const isGpuText = (v: unknown): v is string => typeof v === "string" && v.length > 0;
import { isImage, type Image } from "./image.js";
import { NAME_PATTERN, REGION_PATTERN, reservedEnvName, type PlaneFunctionSpec, type RetryPolicy } from "./protocol.js";
import { isSchedule, type Schedule } from "./schedule.js";
import { isSecret, type Secret } from "./secret.js";
import { describeIssues } from "./zod-issues.js";
import { userRecord } from "./zod-record.js";
import { isVolume, type Volume } from "./volume.js";

/** Seconds. */
export const DEFAULT_TIMEOUT_SECONDS = FUNCTION_DEFAULTS.timeoutSeconds;
export const DEFAULT_RETRY_POLICY: RetryPolicy = FUNCTION_DEFAULTS.retries;

const RETRIES_BRAND = Symbol.for("tandem.retries");

/** A retry policy made by `Retries(...)`. */
export type Retries = RetryPolicy & { readonly [RETRIES_BRAND]: true };

const { maxTimeoutSeconds, maxCpu, minMemoryMiB, maxMemoryMiB, maxContainers, maxInputsPerContainer } = FUNCTION_LIMITS;

const RetriesSchema = z.strictObject({
  maxRetries: z
    .number()
    .int("must be a whole number")
    .min(0, "must be 0 or more")
    .max(FUNCTION_LIMITS.maxRetries, `must be ${FUNCTION_LIMITS.maxRetries} or fewer`),
  backoffCoefficient: z
    .number()
    .min(1, "must be at least 1")
    .max(FUNCTION_LIMITS.maxBackoffCoefficient, `must be at most ${FUNCTION_LIMITS.maxBackoffCoefficient}`),
  initialDelayMs: z.number().min(0, "must be 0 or more").max(FUNCTION_LIMITS.maxRetryDelayMs, `must be at most ${FUNCTION_LIMITS.maxRetryDelayMs}`),
  maxDelayMs: z.number().min(0, "must be 0 or more").max(FUNCTION_LIMITS.maxRetryDelayMs, `must be at most ${FUNCTION_LIMITS.maxRetryDelayMs}`),
});

/**
 * A retry policy with exponential backoff: attempt `k` (from 1) waits
 * `min(initialDelayMs * backoffCoefficient^(k-1), maxDelayMs)` before it runs.
 * @example
 * app.function({ retries: Retries({ maxRetries: 3, initialDelayMs: 500 }) }, flaky)
 */
export function Retries(options: { maxRetries: number; backoffCoefficient?: number; initialDelayMs?: number; maxDelayMs?: number }): Retries {
  const parsed = RetriesSchema.safeParse({ ...DEFAULT_RETRY_POLICY, ...options }, { reportInput: true });
  if (!parsed.success) throw new InvalidOptionsError(`Retries: ${describeIssues(parsed.error, "option", RetriesSchema)}`);
  return Object.freeze({ ...parsed.data, [RETRIES_BRAND]: true as const });
}

function isRetries(value: unknown): value is Retries {
  return typeof value === "object" && value !== null && RETRIES_BRAND in value;
}

/** Marks an option that sends a function to the GPU plane (`tier` defaults to `"plane"` when one is set). */
const PLANE = { tier: "plane" } as const;

const wholeContainers = (least: number, what: string) =>
  z.number().int("must be a whole number").min(least, what).max(maxContainers, `must be at most ${maxContainers}`);

const REGION_MESSAGE = "must be a region name (lowercase letters, digits and '-', such as \"eu-west\") or a list of them";
const regionName = z.string(REGION_MESSAGE).regex(REGION_PATTERN, REGION_MESSAGE);

/**
 * Every option of `app.function` and `app.cls`. Plane options (marked
 * `.meta(PLANE)`) send the function to the GPU plane and are part of the spec
 * each plane receives, and of what makes its containers interchangeable.
 */
const FunctionOptionsSchema = z.strictObject({
  /** The function's name; defaults to the name it is exported under. */
  name: z.string().regex(NAME_PATTERN, "must be 1-64 letters, digits, '-' or '_', starting with a letter or digit").optional(),
  /** Seconds one attempt may run, 1 to 86400; default 300. */
  timeout: z
    .number("must be a number of seconds")
    .min(1, "must be at least 1 second")
    .max(maxTimeoutSeconds, "must be at most 86400 seconds (24 h)")
    .optional(),
  /** How many times to retry a failed attempt, or a `Retries(...)` policy. Default 0. */
  retries: z
    .union(
      [z.number().int().min(0).max(FUNCTION_LIMITS.maxRetries), z.custom<Retries>((v) => isRetries(v))],
      "must be a whole number of retries from 0 to 10, or Retries({...})",
    )
    .optional(),
  /** Environment for the function, read with `currentCall().env`; on the plane also the container's environment. */
  env: userRecord(z.string("values must be strings"))
    .superRefine((env, ctx) => {
      // A name with "=" would split elsewhere than written ({ "A=B": "x" } is A="B=x" to the program), "" is no name.
      for (const name of Object.keys(env)) {
        if (name === "" || /[=\0]/.test(name))
          ctx.addIssue({ code: "custom", message: `names must be non-empty, with no "=" or NUL: ${JSON.stringify(name)} is not one` });
        const reserved = reservedEnvName(name);
        if (reserved) ctx.addIssue({ code: "custom", message: reserved });
      }
    })
    .optional(),
  /**
   * Secrets read as `process.env.KEY` inside the function, in both tiers; later ones override earlier ones, and the
   * function sees no other secret's keys. `[Secret.fromName("api"), Secret.fromDotenv()]`. See docs/secrets.md.
   */
  secrets: z
    .array(
      z.custom<Secret>((v) => isSecret(v), "must be Secrets"),
      'must be a list of Secrets, such as [Secret.fromName("api")]',
    )
    .optional(),
  /** Where it runs. Defaults to `"plane"` when a plane option is set, else `"edge"`. */
  tier: z.enum(["edge", "plane"], 'must be "edge" or "plane"').optional(),
  /**
   * A zod schema of the argument list, `z.tuple([z.string(), z.number()])`: each call's arguments are checked
   * before it runs (a bad one is `400 invalid_argument`, naming it), and the handler gets the schema's output.
   * Its types type the handler's parameters and the callers' arguments. For `app.cls`, one per method:
   * `{ predict: z.tuple([z.string()]) }`. See docs/arguments.md.
   */
  input: z
    .custom<ArgumentsSchema>((v) => isArgumentsSchema(v), "must be a zod schema of the argument list, such as z.tuple([z.string(), z.number()])")
    .optional(),
  /** Run it on a schedule, fired from the edge: `Cron("0 2 * * *")` or `Period({ hours: 1 })`. It is called with no arguments. */
  schedule: z
    .custom<Schedule>((v) => isSchedule(v), {
      // A list (several schedules for one function) is said as such, not shown as the JSON of what it holds.
      error: (issue) =>
        Array.isArray(issue.input)
          ? 'takes one schedule, not a list: to run it on several, give each its own function that calls it (or one Cron("...") that covers them)'
          : 'must be Cron("...") or Period({...})',
    })
    .optional(),
  /** GPU type (`"A100"`, `"H100:2"`) or a fallback list; runs on the plane. */
  gpu: z
    .custom<GpuSpec | readonly GpuSpec[]>(
      (v) => isGpuText(v) || (Array.isArray(v) && v.length > 0 && v.every(isGpuText)),
      "must be a GPU type or a list of them",
    )
    .optional()
    .meta(PLANE),
  /**
   * The region its plane calls run in (`"eu-west"`), or a list of them: only planes started with one of these
   * `--region`s take its calls, nearest to the caller first; with none healthy a call fails naming the regions (no
   * fallback elsewhere). Unset: any region, nearest first. Runs on the plane. See docs/deploy.md, "Regions".
   */
  region: z
    .union([regionName, z.array(regionName).min(1, REGION_MESSAGE)], REGION_MESSAGE)
    .optional()
    .meta(PLANE),
  /** A container image for the plane: `Image.node().npmInstall(...)...`. */
  image: z
    .custom<Image>((v) => isImage(v), "must be an Image (Image.node()...)")
    .optional()
    .meta(PLANE),
  /**
   * Volumes mounted into the function's containers, by where: `{ "/models": vol }`, `vol.readOnly()`,
   * `vol.subPath("dir")`. Each is an ordinary directory there, as committed when the container started; see
   * docs/volumes.md.
   */
  volumes: z
    .record(
      z.string(),
      z.custom<Volume>((v) => isVolume(v), 'must be a Volume (Volume.fromName("name"))'),
      'must map paths in the container to Volumes: { "/models": Volume.fromName("models") }',
    )
    .optional()
    .meta(PLANE),
  /** CPU cores on the plane (default 1). */
  cpu: z.number().positive("must be more than 0").max(maxCpu, `must be at most ${maxCpu} cores`).optional().meta(PLANE),
  /** Memory in MiB on the plane (default 512). */
  memory: z
    .number()
    .int("must be whole MiB")
    .min(minMemoryMiB, `must be at least ${minMemoryMiB} MiB, the least a container can have`)
    .max(maxMemoryMiB, `must be at most ${maxMemoryMiB} MiB (336 GiB)`)
    .optional()
    .meta(PLANE),
  /**
   * Plane containers kept warm with no traffic (default 0). On a class it is
   * kept for the default parameters only (`Model()`, that is `{}`): every other
   * set of parameters has a pool of its own, started by its first call and
   * scaled to zero after `scaledownWindow`.
   * @example
   * app.cls({ gpu: "T4", minContainers: 1 }, Model); // one container of Model() stays warm; Model({ size: "large" }) starts cold
   */
  minContainers: wholeContainers(0, "must be 0 or more").optional().meta(PLANE),
  /** The most plane containers at once; inputs beyond them queue (default 100). */
  maxContainers: wholeContainers(1, "must be at least 1").optional().meta(PLANE),
  /** Idle plane containers kept ready while the function is busy (default 0). */
  bufferContainers: wholeContainers(0, "must be 0 or more").optional().meta(PLANE),
  /** Seconds a plane container may sit idle before it is stopped (default: the plane's, 60 s). */
  scaledownWindow: z.number().min(1, "must be at least 1 second").max(maxTimeoutSeconds, "must be at most 86400 seconds").optional().meta(PLANE),
  /** Inputs one plane container takes at once: `maxInputs` at most, aiming for `targetInputs` before starting another (default 1). */
  concurrency: z
    .strictObject({
      maxInputs: z.number().int("must be a whole number").min(1, "must be at least 1").max(maxInputsPerContainer, `must be at most ${maxInputsPerContainer}`),
      targetInputs: z.number().int("must be a whole number").min(1, "must be at least 1").optional(),
    })
    .optional()
    .meta(PLANE),
  /**
   * Start plane containers from a memory snapshot (docs/plane.md, "Memory snapshots"): the first container's memory
   * is saved once it has loaded the bundle and run `enter()`, before any input, and later cold starts resume from it
   * instead of loading and entering again. Values made in `enter()` (random ids, seeds, timestamps) are then the same
   * in every container restored. Needs a plane under gVisor; elsewhere containers start fresh.
   * @example
   * app.cls({ gpu: "T4", snapshot: true }, Model); // enter() runs once; each later cold start resumes after it
   */
  snapshot: z.boolean("must be true or false").optional().meta(PLANE),
});

/**
 * The `secrets` option of the web handlers and agents (`app.web`, `app.endpoint`, `app.websocket`): the
 * functions' own schema, checked the same way.
 * @example parseSecretsOption([Secret.fromName("api")], 'endpoint "pay"'); // [Secret]
 */
export function parseSecretsOption(secrets: unknown, where: string): Secret[] {
  const schema = z.strictObject({ secrets: FunctionOptionsSchema.shape.secrets });
  const parsed = schema.safeParse({ secrets }, { reportInput: true });
  if (!parsed.success) throw new InvalidOptionsError(`${where}: ${describeIssues(parsed.error, "option", schema)}`);
  return parsed.data.secrets ?? [];
}

/** Options a function may take. Plane options (`gpu`, `image`, `cpu`, `memory`, scaling) send it to the GPU plane. */
export type FunctionOptions = z.input<typeof FunctionOptionsSchema>;

/** The options that send a function to the plane, read from their declaration. */
const PLANE_OPTIONS = Object.entries(FunctionOptionsSchema.shape)
  .filter(([, schema]) => schema.meta()?.tier === "plane")
  .map(([key]) => key as keyof FunctionOptions);

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

export const DEFAULT_AUTOSCALER: AutoscalerSpec = { ...FUNCTION_DEFAULTS.autoscaler, scaledownWindowSeconds: null };

/**
 * Options after validation, with every default filled in: a few are
 * normalised (`timeout` → `timeoutSeconds`, `retries` → a policy, `gpu` →
 * parsed requests, the scaling options → `autoscaler`); any other option is
 * carried as it was given.
 */
export type FunctionSpec = ReturnType<typeof toSpec>;

function toSpec(o: z.output<typeof FunctionOptionsSchema>, where: string) {
  const { timeout, retries, env, tier, gpu, region, minContainers, maxContainers, bufferContainers, scaledownWindow, concurrency, ...rest } = o;
  const policy: RetryPolicy =
    retries === undefined
      ? DEFAULT_RETRY_POLICY
      : typeof retries === "number"
        ? { ...DEFAULT_RETRY_POLICY, maxRetries: retries }
        : {
            maxRetries: retries.maxRetries,
            backoffCoefficient: retries.backoffCoefficient,
            initialDelayMs: retries.initialDelayMs,
            maxDelayMs: retries.maxDelayMs,
          };
  const autoscaler: AutoscalerSpec = {
    minContainers: minContainers ?? DEFAULT_AUTOSCALER.minContainers,
    maxContainers: maxContainers ?? Math.max(DEFAULT_AUTOSCALER.maxContainers, minContainers ?? 0),
    bufferContainers: bufferContainers ?? DEFAULT_AUTOSCALER.bufferContainers,
    scaledownWindowSeconds: scaledownWindow ?? DEFAULT_AUTOSCALER.scaledownWindowSeconds,
    maxInputs: concurrency?.maxInputs ?? DEFAULT_AUTOSCALER.maxInputs,
    targetInputs: concurrency?.targetInputs ?? concurrency?.maxInputs ?? DEFAULT_AUTOSCALER.targetInputs,
  };
  if (autoscaler.minContainers > autoscaler.maxContainers) {
    throw new InvalidOptionsError(
      `${where}: option "minContainers" (${autoscaler.minContainers}) is more than option "maxContainers" (${autoscaler.maxContainers})`,
    );
  }
  if (autoscaler.targetInputs > autoscaler.maxInputs) {
    throw new InvalidOptionsError(
      `${where}: option "concurrency.targetInputs" (${autoscaler.targetInputs}) is more than "concurrency.maxInputs" (${autoscaler.maxInputs})`,
    );
  }
  for (const path of Object.keys(o.volumes ?? {})) {
    const problem = mountPathProblem(path, Object.keys(o.volumes ?? {}));
    if (problem) throw new InvalidOptionsError(`${where}: option "volumes": "${path}" ${problem}`);
  }
  if (o.schedule?.refused) throw new InvalidOptionsError(`${where}: option "schedule": ${o.schedule.refused}`);
  // `snapshot: false` asks for nothing the edge lacks.
  const planeOptions = PLANE_OPTIONS.filter((k) => o[k] !== undefined && !(k === "snapshot" && o[k] === false));
  if (planeOptions.length > 0 && tier === "edge") {
    const named = planeOptions.map((k) => `"${k}"`);
    throw new InvalidOptionsError(
      `${where}: option "tier" is "edge", but option${named.length > 1 ? "s" : ""} ${named.join(", ")} need${named.length > 1 ? "" : "s"} the plane; drop one or the other`,
    );
  }
  return {
    ...rest,
    timeoutSeconds: timeout ?? DEFAULT_TIMEOUT_SECONDS,
    retries: policy,
    env: env ?? {},
    secrets: rest.secrets ?? [],
    tier: tier ?? (planeOptions.length > 0 ? "plane" : "edge"),
    gpu: gpu === undefined ? undefined : parseGpuOption(gpu, where),
    /** The regions its plane calls may run in; empty: any. */
    regions: region === undefined ? [] : [...new Set(Array.isArray(region) ? region : [region])],
    autoscaler,
  };
}

/** The GPU option as requests, parsed once here: every runtime reads `{ type, count }`. */
function parseGpuOption(gpu: string | readonly string[], where: string): GpuRequest[] {
  return (typeof gpu === "string" ? [gpu] : gpu).map((g) => {
    try {
      return parseGpuSpec(g);
    } catch (err) {
      throw new InvalidOptionsError(`${where}: option "gpu": ${(err as Error).message}`);
    }
  });
}

/**
 * Names that other serverless platforms give these options, too far from ours for "did you mean" to find: an app
 * ported from one is told the option that does the same. (`maxInputs` is left out: elsewhere it can mean the inputs a
 * container serves before it is replaced, which Tandem has no option for; `concurrency.maxInputs` is not that.)
 */
const FUNCTION_OPTION_ALIASES: Readonly<Record<string, string>> = {
  keepWarm: "minContainers",
  concurrencyLimit: "maxContainers",
  containerIdleTimeout: "scaledownWindow",
  allowConcurrentInputs: "concurrency",
  enableMemorySnapshot: "snapshot",
};

/**
 * Validates options and fills in defaults. `where` names the function in the
 * error (`function "greet"`).
 */
export function parseFunctionOptions(options: unknown, where: string): FunctionSpec {
  const parsed = FunctionOptionsSchema.safeParse(options ?? {}, { reportInput: true });
  if (!parsed.success) throw new InvalidOptionsError(`${where}: ${describeIssues(parsed.error, "option", FunctionOptionsSchema, FUNCTION_OPTION_ALIASES)}`);
  return toSpec(parsed.data, where);
}

/**
 * What a plane needs of a function to run and scale it: its plane options
 * (resources, scaling), its environment, and what the gateway knows of it
 * (its image's hash, the app's spend cap).
 */
export function planeSpecOf(spec: FunctionSpec, known: { image: string | null; spendCapUsd: number | null }): PlaneFunctionSpec {
  return {
    gpu: spec.gpu ?? null,
    cpu: spec.cpu ?? null,
    memory: spec.memory ?? null,
    env: spec.env,
    spendCapUsd: known.spendCapUsd,
    image: known.image,
    ...(spec.volumes && Object.keys(spec.volumes).length > 0
      ? { volumes: Object.entries(spec.volumes).map(([path, vol]) => ({ path, ...vol.mountSpec })) }
      : {}),
    autoscaler: spec.autoscaler,
    ...(spec.snapshot ? { snapshot: true as const } : {}),
  };
}

/** The resources a plane container of `spec` gets: its options, else the defaults. */
export function containerResources(spec: Pick<PlaneFunctionSpec, "cpu" | "memory">): { cpu: number; memoryMiB: number } {
  return { cpu: spec.cpu ?? FUNCTION_DEFAULTS.cpu, memoryMiB: spec.memory ?? FUNCTION_DEFAULTS.memoryMiB };
}

const WasmOptionsSchema = FunctionOptionsSchema.extend({
  /** How input and output travel: `"json"` (default: the arguments as a JSON array on stdin, the result as JSON on stdout) or `"bytes"` (one argument's raw bytes in, stdout's raw bytes out). */
  contentType: z.enum(["json", "bytes"], 'must be "json" or "bytes"').optional(),
  /** Linear memory one call may use, in 64 KiB pages (default 4096: 256 MiB). */
  maxMemoryPages: z
    .number()
    .int("must be a whole number")
    .min(1, "must be at least 1")
    .max(WASM_DEFAULTS.maxMemoryPagesLimit, `must be at most ${WASM_DEFAULTS.maxMemoryPagesLimit} (4 GiB)`)
    .optional(),
  /** Bytes one call may write to stdout and stderr together (default 10 MiB). */
  maxOutputBytes: z
    .number()
    .int("must be a whole number")
    .min(1, "must be at least 1")
    .max(WASM_DEFAULTS.maxOutputBytesLimit, "must be at most 1 GiB")
    .optional(),
});

/** What is wrong with a volume's mount path in a container, given the others, or undefined. */
function mountPathProblem(path: string, all: string[]): string | undefined {
  if (path === "/") return "cannot be / (the container's own root); use a folder such as /models";
  const problem = guestPathProblem(path);
  if (problem) return problem;
  if (path === "/tandem" || path.startsWith("/tandem/") || path === "/tmp" || path.startsWith("/tmp/")) {
    return "is the plane's own (/tandem) or the container's scratch space (/tmp); mount it elsewhere, such as /data";
  }
  const other = all.find((p) => p !== path && (p.startsWith(`${path}/`) || path.startsWith(`${p}/`)));
  if (other) return `and "${other}" are one inside the other; mount volumes side by side`;
  return undefined;
}

/**
 * A guest path a directory is preopened at: absolute, its parts neither empty, "." nor "..", and not `/` itself
 * (the module's own scratch file system). Returns what is wrong with it, or undefined.
 */
function guestPathProblem(path: string): string | undefined {
  if (!path.startsWith("/")) return "must be absolute (start with /)";
  if (path === "/") return "cannot be / (the module's own scratch file system is there); use a folder such as /data";
  const parts = path.slice(1).split("/");
  if (parts.some((p) => p === "")) return "must not end with / or hold an empty part (//)";
  if (parts.some((p) => p === "." || p === "..")) return 'must not hold "." or ".." parts';
  if (path.includes("\0")) return "must not hold a NUL character";
  return undefined;
}

const WasmSourceSchema = z
  .strictObject({
    /** A prebuilt WASI command module (`.wasm`), from any language that targets WASI; relative to the app file. */
    module: z.string("must be the path of a .wasm file").min(1, "must be the path of a .wasm file").optional(),
    /** AssemblyScript source, compiled by `tandem serve`/`deploy`; relative to the app file. */
    source: z.string("must be the path of an AssemblyScript file").min(1, "must be the path of an AssemblyScript file").optional(),
    /** argv[1..] of every call (argv[0] is the function's name), as a command line gives a tool its flags. */
    args: z.array(z.string("must be a string"), "must be a list of strings").optional(),
    /**
     * Directories bundled with the app and preopened read-only for the module, by guest path:
     * `{ "/data": "./data" }` (relative to the app file). A write, create or unlink under them fails with
     * EROFS. At most 8 MiB and 1000 files and directories in all (sdk/defaults.ts).
     */
    files: z.record(z.string(), z.string("must be the path of a directory").min(1, "must be the path of a directory")).optional(),
  })
  .superRefine((from, ctx) => {
    const guestPaths = Object.keys(from.files ?? {});
    for (const guest of guestPaths) {
      const problem = guestPathProblem(guest);
      if (problem) ctx.addIssue({ code: "custom", path: [], message: `option "files": a guest path ${problem}`, input: guest });
      const outer = guestPaths.find((other) => guest.startsWith(`${other}/`));
      if (!problem && outer)
        ctx.addIssue({
          code: "custom",
          path: [],
          message: `option "files": a guest path is inside another one (${JSON.stringify(outer)}); give directories that do not nest`,
          input: guest,
        });
    }
  });

/** Where a WebAssembly function's module comes from (paths relative to the app file), its argv and its bundled directories. */
export type WasmSource = z.input<typeof WasmSourceSchema>;

/** A WebAssembly function's source after validation: exactly one of `module` and `source`, `args` and `files` filled in. */
export interface WasmSourceSpec {
  module: string | undefined;
  source: string | undefined;
  args: string[];
  files: Record<string, string>;
}

/** Validates where a WebAssembly function comes from, its `args` and `files`; `where` names it in the error. */
export function parseWasmSource(from: unknown, where: string): WasmSourceSpec {
  const parsed = WasmSourceSchema.safeParse(from ?? {}, { reportInput: true });
  if (!parsed.success) throw new InvalidOptionsError(`${where}: ${describeIssues(parsed.error, "option", WasmSourceSchema)}`);
  const { module, source, args, files } = parsed.data;
  if ((module === undefined) === (source === undefined)) {
    throw new InvalidOptionsError(`${where}: give exactly one of { module: "./fn.wasm" } or { source: "./fn.as.ts" }`);
  }
  return { module, source, args: args ?? [], files: files ?? {} };
}

/** Options of a WebAssembly function (`app.wasm`): a function's options, and how its input, output and memory are handled. */
export type WasmOptions = z.input<typeof WasmOptionsSchema>;

/** A WebAssembly function's options after validation. Its wall-time limit is its `timeout`. */
export interface WasmSpec {
  spec: FunctionSpec;
  contentType: "json" | "bytes";
  limits: { maxMemoryPages: number; maxOutputBytes: number };
}

/** Validates a WebAssembly function's options; `where` names it in the error. */
export function parseWasmOptions(options: unknown, where: string): WasmSpec {
  const parsed = WasmOptionsSchema.safeParse(options ?? {}, { reportInput: true });
  if (!parsed.success) throw new InvalidOptionsError(`${where}: ${describeIssues(parsed.error, "option", WasmOptionsSchema)}`);
  const { contentType, maxMemoryPages, maxOutputBytes, ...rest } = parsed.data;
  return {
    spec: toSpec(rest, where),
    contentType: contentType ?? "json",
    limits: { maxMemoryPages: maxMemoryPages ?? WASM_DEFAULTS.maxMemoryPages, maxOutputBytes: maxOutputBytes ?? WASM_DEFAULTS.maxOutputBytes },
  };
}

/** The delay before retry `attempt` (1 = the first retry). */
export function retryDelayMs(policy: RetryPolicy, attempt: number): number {
  return Math.min(policy.initialDelayMs * policy.backoffCoefficient ** (attempt - 1), policy.maxDelayMs);
}

const MapOptionsSchema = z.strictObject(
  {
    orderOutputs: z.boolean("must be true or false").optional(),
    returnExceptions: z.boolean("must be true or false").optional(),
  },
  "must be an object such as { orderOutputs: false }",
);

/**
 * `map` and `starmap`'s inputs and options, checked when they are called: inputs that cannot be iterated, and an
 * option misspelt, fail there rather than as a bare `TypeError` later or not at all.
 * @example parseMapOptions([1, 2], { orderOutput: false }, "square.map"); // throws: unknown option "orderOutput"; did you mean "orderOutputs"?
 */
export function parseMapOptions(inputs: unknown, options: unknown, where: string): z.infer<typeof MapOptionsSchema> {
  const iterable = (inputs !== null && typeof inputs === "object") || typeof inputs === "string" || typeof inputs === "function";
  const it = iterable ? (inputs as { [Symbol.iterator]?: unknown; [Symbol.asyncIterator]?: unknown }) : {};
  if (typeof it[Symbol.iterator] !== "function" && typeof it[Symbol.asyncIterator] !== "function") {
    const got = inputs === null || typeof inputs !== "object" ? String(inputs) : "an object";
    throw new InvalidOptionsError(`${where}: inputs must be an iterable or async iterable, such as an array or a generator (got ${got})`);
  }
  const parsed = MapOptionsSchema.safeParse(options ?? {}, { reportInput: true });
  if (!parsed.success) throw new InvalidOptionsError(`${where}: ${describeIssues(parsed.error, "option", MapOptionsSchema)}`);
  return parsed.data;
}

const GetOptionsSchema = z.strictObject(
  { timeoutMs: z.number("must be a number of milliseconds").min(0, "must be 0 or more").optional() },
  "must be an object such as { timeoutMs: 10_000 }",
);

/**
 * `FunctionCall.get`'s options, checked before it asks the gateway.
 * @example parseGetOptions({ timeoutMs: -5 }, "get"); // throws: option "timeoutMs" must be 0 or more (got -5)
 */
export function parseGetOptions(options: unknown, where: string): z.infer<typeof GetOptionsSchema> {
  const parsed = GetOptionsSchema.safeParse(options ?? {}, { reportInput: true });
  if (!parsed.success) throw new InvalidOptionsError(`${where}: ${describeIssues(parsed.error, "option", GetOptionsSchema)}`);
  return parsed.data;
}
