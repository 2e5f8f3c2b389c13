import { describe, expect, it } from "vitest";
import { PlaneFunctionSpecSchema, type PlaneFunctionSpec } from "../sdk/protocol.js";
import { poolKey, poolName, resourceRequests, type PoolDescriptor } from "./pool-descriptor.js";

const spec: PlaneFunctionSpec = {
  gpu: [
    { type: "A100", count: 1 },
    { type: "T4", count: 1 },
  ],
  cpu: 2,
  memory: 1024,
  env: { MODEL: "small", LOG_LEVEL: "info" },
  spendCapUsd: 5,
  image: "a".repeat(64),
  volumes: [{ path: "/models", volume: "weights", readOnly: true, subPath: "", createIfMissing: false }],
  autoscaler: { minContainers: 0, maxContainers: 4, bufferContainers: 0, scaledownWindowSeconds: 30, maxInputs: 1, targetInputs: 1 },
  snapshot: true,
};
const pool: PoolDescriptor = { app: "inference", function: "generate", bundleHash: "b".repeat(64), spec };

/** Every path to a value in `value` (an object's fields, at every depth), arrays and scalars being values. */
function leafPaths(value: unknown, path: string[] = []): string[][] {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return [path];
  return Object.entries(value).flatMap(([k, v]) => leafPaths(v, [...path, k]));
}

/** A copy of `root` with the value at `path` replaced by a different one of a kind the field could hold. */
function withChanged(root: unknown, path: string[]): unknown {
  if (path.length === 0) {
    if (typeof root === "number") return root + 1;
    if (typeof root === "string") return root + "x";
    if (Array.isArray(root)) return [...root, "L4"];
    if (root === null) return 1;
    if (typeof root === "boolean") return !root;
    throw new Error(`no change known for ${JSON.stringify(root)}`);
  }
  const [head, ...rest] = path;
  const object = root as Record<string, unknown>;
  return { ...object, [head!]: withChanged(object[head!], rest) };
}

describe("the pool key", () => {
  it("is built from a sample spec that has every field the protocol defines", () => {
    // A field added to the protocol must be added here, so the next test covers it.
    expect(Object.keys(spec).sort()).toEqual(Object.keys(PlaneFunctionSpecSchema.unwrap().shape).sort());
    expect(Object.keys(spec.autoscaler).sort()).toEqual(Object.keys(PlaneFunctionSpecSchema.unwrap().shape.autoscaler.shape).sort());
  });

  it("differs for two specs that differ in any one field", () => {
    const paths = leafPaths(spec);
    expect(paths.length).toBeGreaterThanOrEqual(13);
    for (const path of paths) {
      const other = { ...pool, spec: withChanged(spec, path) as PlaneFunctionSpec };
      expect(poolKey(other), `spec.${path.join(".")}`).not.toBe(poolKey(pool));
    }
  });

  it("differs for another app, function, bundle or class parameters", () => {
    const keys = [
      poolKey(pool),
      poolKey({ ...pool, app: "other" }),
      poolKey({ ...pool, function: "other" }),
      poolKey({ ...pool, bundleHash: "c".repeat(64) }),
      poolKey({ ...pool, function: "Model.generate", clsParams: {} }),
      poolKey({ ...pool, function: "Model.generate", clsParams: { size: "large" } }),
    ];
    expect(new Set(keys).size).toBe(keys.length);
  });

  it("is the same whatever order the fields were written in, and ignores a request's own fields", () => {
    const reordered: PlaneFunctionSpec = {
      snapshot: true,
      autoscaler: { targetInputs: 1, maxInputs: 1, scaledownWindowSeconds: 30, bufferContainers: 0, maxContainers: 4, minContainers: 0 },
      volumes: [{ createIfMissing: false, subPath: "", readOnly: true, volume: "weights", path: "/models" }],
      image: spec.image,
      spendCapUsd: 5,
      env: { LOG_LEVEL: "info", MODEL: "small" },
      memory: 1024,
      cpu: 2,
      gpu: [
        { type: "A100", count: 1 },
        { type: "T4", count: 1 },
      ],
    };
    const request = {
      ...pool,
      spec: reordered,
      callId: "fc-0000000000aaaaaaaaaaaaaaaa",
      attempt: 2,
      timeoutSeconds: 60,
      args: [1],
      nodeModules: "/srv/node_modules",
    };
    expect(poolKey(request)).toBe(poolKey(pool));
  });

  it("keeps a GPU fallback list's order, which is a preference", () => {
    expect(
      poolKey({
        ...pool,
        spec: {
          ...spec,
          gpu: [
            { type: "T4", count: 1 },
            { type: "A100", count: 1 },
          ],
        },
      }),
    ).not.toBe(poolKey(pool));
  });

  it("puts every method of a class instance in its class's pool", () => {
    const generate = { ...pool, function: "Model.generate", clsParams: { size: "large" } };
    const embed = { ...generate, function: "Model.embed" };
    expect(poolName(generate)).toBe("Model");
    expect(poolKey(embed)).toBe(poolKey(generate));
    expect(poolName({ ...pool, function: "Model.generate" })).toBe("Model.generate"); // not a class method without parameters
  });
});

describe("resource requests", () => {
  it("asks for each GPU option in order, or for the default CPU and memory", () => {
    expect(resourceRequests(pool).map((r) => [r.gpu?.type, r.cpu, r.memoryMiB])).toEqual([
      ["A100", 2, 1024],
      ["T4", 2, 1024],
    ]);
    expect(resourceRequests({ ...pool, spec: { ...spec, gpu: null, cpu: null, memory: null } })).toEqual([{ gpu: undefined, cpu: 1, memoryMiB: 512 }]);
  });
});
