import { describe, expect, it } from "vitest";
import { z } from "zod";
import { InvalidOptionsError } from "./errors.js";
import { DEFAULT_RETRY_POLICY, Retries, parseFunctionOptions, planeSpecOf, retryDelayMs } from "./options.js";
import { Volume } from "./volume.js";

const parse = (o: unknown) => parseFunctionOptions(o, 'function "f"');

describe("function options", () => {
  it("fills in defaults", () => {
    expect(parse({})).toMatchObject({ timeoutSeconds: 300, retries: DEFAULT_RETRY_POLICY, tier: "edge", env: {} });
    expect(parse({ concurrency: { maxInputs: 8 } }).autoscaler).toEqual({
      minContainers: 0,
      maxContainers: 100,
      bufferContainers: 0,
      scaledownWindowSeconds: null,
      maxInputs: 8,
      targetInputs: 8,
    });
  });

  it("sends a function with a plane option to the plane, and refuses one that also says tier edge", () => {
    // The GPU option is parsed once, here: every runtime reads { type, count } requests.
    expect(parse({ gpu: "A100" })).toMatchObject({ tier: "plane", gpu: [{ type: "A100", count: 1 }] });
    expect(parse({ gpu: ["h100:2", "A100-80GB"] }).gpu).toEqual([
      { type: "H100", count: 2 },
      { type: "A100-80GB", count: 1 },
    ]);
    expect(parse({ tier: "plane" }).tier).toBe("plane");
    expect(() => parse({ memory: 512, tier: "edge" })).toThrow('option "tier" is "edge", but option "memory" needs the plane');
  });

  it("sends a snapshot: true function to the plane with the flag in its spec, and leaves it out of others' specs", () => {
    const known = { image: null, spendCapUsd: null };
    expect(parse({ snapshot: true }).tier).toBe("plane");
    expect(planeSpecOf(parse({ snapshot: true }), known).snapshot).toBe(true);
    expect("snapshot" in planeSpecOf(parse({ snapshot: false, memory: 512 }), known)).toBe(false);
    expect(parse({ snapshot: false }).tier).toBe("edge");
  });

  it("takes a region or a list of them as the regions a plane function may run in", () => {
    expect(parse({}).regions).toEqual([]);
    expect(parse({ region: "eu-west" })).toMatchObject({ tier: "plane", regions: ["eu-west"] });
    expect(parse({ gpu: "A100", region: ["eu-west", "us-east", "eu-west"] }).regions).toEqual(["eu-west", "us-east"]);
    expect(() => parse({ tier: "edge", region: "eu-west" })).toThrow('option "tier" is "edge", but option "region" needs the plane');
  });

  it.each([
    [{ timeout: 0 }, 'option "timeout" must be at least 1 second (got 0)'],
    [{ timeout: 90_000 }, 'option "timeout" must be at most 86400 seconds'],
    [{ timeout: "10" }, 'option "timeout" must be a number of seconds'],
    [{ retries: -1 }, 'option "retries"'],
    [{ memory: 1 }, 'option "memory" must be at least 6 MiB, the least a container can have (got 1)'],
    [{ retries: 2.5 }, 'option "retries" must be a whole number of retries from 0 to 10, or Retries({...}) (got 2.5)'],
    [{ tier: "cloud" }, 'option "tier" must be "edge" or "plane"'],
    [{ env: { A: 1 } }, 'option "env.A" values must be strings'],
    [{ env: { "A=B": "x" } }, 'option "env" names must be non-empty, with no "=" or NUL: "A=B" is not one'],
    [{ env: { "": "x" } }, 'option "env" names must be non-empty, with no "=" or NUL: "" is not one'],
    [{ env: { TANDEM_SECRET_KEYS: "" } }, 'option "env" "TANDEM_SECRET_KEYS" is a name the plane sets itself in each container'],
    [{ name: "has space" }, 'option "name" must be 1-64 letters'],
    [{ timout: 5 }, 'unknown option "timout"; did you mean "timeout"?'],
    [{ gpus: "A100" }, 'unknown option "gpus"; did you mean "gpu"?'],
    [{ concurrency: { maxInputs: 2, maxInput: 2 } }, 'unknown option "concurrency.maxInput"; did you mean "concurrency.maxInputs"?'],
    [{ gpus: "A100", colour: "red" }, 'unknown options "gpus" (did you mean "gpu"?), "colour"'],
    [{ keepWarm: 1 }, 'unknown option "keepWarm"; did you mean "minContainers"?'],
    [{ containerIdleTimeout: 30 }, 'unknown option "containerIdleTimeout"; did you mean "scaledownWindow"?'],
    [{ allowConcurrentInputs: 4 }, 'unknown option "allowConcurrentInputs"; did you mean "concurrency"?'],
    [{ enableMemorySnapshot: true }, 'unknown option "enableMemorySnapshot"; did you mean "snapshot"?'],
    // Before: no hint for these (another platform's older name, and its Python's snake_case).
    [{ concurrencyLimit: 4 }, 'unknown option "concurrencyLimit"; did you mean "maxContainers"?'],
    [{ keep_warm: 1 }, 'unknown option "keep_warm"; did you mean "minContainers"?'],
    [{ scaledown_window: 30 }, 'unknown option "scaledown_window"; did you mean "scaledownWindow"?'],
    [{ gpu: "B200" }, 'option "gpu": unknown GPU "B200"; known types: T4, L4, A10G, L40S, A100, A100-80GB, H100'],
    [{ gpu: ["H100", "A100:9"] }, 'option "gpu": GPU "A100:9": the count must be 1 to 8'],
    [{ cpu: 65 }, 'option "cpu" must be at most 64 cores'],
    [{ minContainers: 3, maxContainers: 2 }, 'option "minContainers" (3) is more than option "maxContainers" (2)'],
    [{ minContainers: -1 }, 'option "minContainers" must be 0 or more'],
    [{ maxContainers: 0 }, 'option "maxContainers" must be at least 1'],
    [{ concurrency: { maxInputs: 2, targetInputs: 3 } }, '"concurrency.targetInputs" (3) is more than "concurrency.maxInputs" (2)'],
    [{ concurrency: { maxInputs: 0 } }, 'option "concurrency.maxInputs" must be at least 1'],
    [{ scaledownWindow: 0 }, 'option "scaledownWindow" must be at least 1 second'],
    [{ tier: "edge", minContainers: 1 }, 'option "tier" is "edge", but option "minContainers" needs the plane'],
    [{ memory: 400_000 }, 'option "memory" must be at most 344064 MiB'],
    // The schema given named by its kind (before: its internals, `{"~standard":{"validate":[function validate],…`).
    [{ input: z.string() }, 'option "input" must be a zod schema of the argument list, such as z.tuple([z.string(), z.number()]) (got a zod string schema)'],
    [{ input: [z.string()] }, 'option "input" must be a zod schema of the argument list'],
    [{ region: "EU West" }, 'option "region" must be a region name (lowercase letters, digits and \'-\', such as "eu-west") or a list of them'],
    [{ region: [] }, 'option "region" must be a region name'],
    [{ snapshot: "yes" }, 'option "snapshot" must be true or false'],
    [{ tier: "edge", snapshot: true }, 'option "tier" is "edge", but option "snapshot" needs the plane'],
  ])("rejects %j naming the option", (options, message) => {
    expect(() => parse(options)).toThrow(InvalidOptionsError);
    expect(() => parse(options)).toThrow(message);
  });

  it("names the function in the message", () => {
    expect(() => parse({ timeout: 0 })).toThrow(/^function "f": /);
  });
});

describe("Retries", () => {
  it("takes a number as maxRetries with the default backoff", () => {
    expect(parse({ retries: 3 }).retries).toEqual({ ...DEFAULT_RETRY_POLICY, maxRetries: 3 });
  });

  it("takes a Retries policy", () => {
    expect(parse({ retries: Retries({ maxRetries: 4, backoffCoefficient: 3, initialDelayMs: 10, maxDelayMs: 100 }) }).retries).toEqual({
      maxRetries: 4,
      backoffCoefficient: 3,
      initialDelayMs: 10,
      maxDelayMs: 100,
    });
  });

  it("rejects an out-of-range policy", () => {
    expect(() => Retries({ maxRetries: 11 })).toThrow('option "maxRetries" must be 10 or fewer');
    expect(() => Retries({ maxRetries: 1, backoffCoefficient: 0.5 })).toThrow('option "backoffCoefficient" must be at least 1');
    expect(() => Retries({ maxRetry: 1 } as never)).toThrow('Retries: unknown option "maxRetry"; did you mean "maxRetries"?');
  });

  it("rejects a plain object that was not made by Retries()", () => {
    expect(() => parse({ retries: { maxRetries: 1 } })).toThrow('option "retries"');
  });

  it("grows the delay by the coefficient up to the maximum", () => {
    const policy = { maxRetries: 5, backoffCoefficient: 2, initialDelayMs: 100, maxDelayMs: 500 };
    expect([1, 2, 3, 4, 5].map((k) => retryDelayMs(policy, k))).toEqual([100, 200, 400, 500, 500]);
  });
});

describe("volume mounts", () => {
  const models = Volume.fromName("models", { createIfMissing: true });

  it("sends a function that mounts volumes to the plane, each mount as the plane's spec names it", () => {
    const spec = parse({ volumes: { "/models": models.readOnly(), "/data": Volume.fromName("data").subPath("/a/b/").subPath("c") } });
    expect(spec.tier).toBe("plane");
    expect(planeSpecOf(spec, { image: null, spendCapUsd: null }).volumes).toEqual([
      { path: "/models", volume: "models", readOnly: true, subPath: "", createIfMissing: true },
      { path: "/data", volume: "data", readOnly: false, subPath: "a/b/c", createIfMissing: false },
    ]);
    expect(planeSpecOf(parse({ gpu: "T4" }), { image: null, spendCapUsd: null }).volumes).toBeUndefined();
    // A restricted handle is another handle: the original stays writable, at the root.
    expect(models.mountSpec).toEqual({ volume: "models", readOnly: false, subPath: "", createIfMissing: true });
  });

  it("refuses mount paths that are not absolute, are the plane's own, or sit one inside another, and values that are not Volumes", () => {
    expect(() => parse({ volumes: { models: models } })).toThrow('option "volumes": "models" must be absolute (start with /)');
    expect(() => parse({ volumes: { "/": models } })).toThrow('"/" cannot be / (the container\'s own root)');
    expect(() => parse({ volumes: { "/tandem/x": models } })).toThrow("is the plane's own (/tandem)");
    expect(() => parse({ volumes: { "/tmp": models } })).toThrow("scratch space (/tmp)");
    expect(() => parse({ volumes: { "/a": models, "/a/b": models } })).toThrow('"/a" and "/a/b" are one inside the other');
    expect(() => parse({ volumes: { "/a": "models" } })).toThrow('must be a Volume (Volume.fromName("name"))');
    expect(() => models.subPath("../up")).toThrow(InvalidOptionsError);
  });

  it("commit() outside a plane container says what it is for", async () => {
    await expect(models.commit()).rejects.toThrow('volume "models" is not mounted here: commit() publishes a plane container\'s changes');
  });
});
