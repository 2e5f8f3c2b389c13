/** Remote stacks mapped to the user's sources: what is kept, and what is left out. */
import { describe, expect, it } from "vitest";
import { mapFrameLine, mapFramesIn, mapStackWith, traceMap } from "./stack-map.js";

// A one-line bundle: its column 1 maps to the user's app.ts, its column 20 to Tandem's own runtime.
const map = traceMap(JSON.stringify({ version: 3, sources: ["app.ts", "tandem:runtime.ts"], names: [], mappings: "AAAA,mBCAA", file: "bundle.mjs" }));

describe("mapStackWith", () => {
  it("keeps the user's frames, mapped, and leaves Tandem's own out", () => {
    const stack = "Error: boom\n    at handler (file:///srv/bundle.mjs:1:1)\n    at run (file:///srv/bundle.mjs:1:20)";
    expect(mapStackWith(map, stack)).toBe("Error: boom\n    at handler (app.ts:1:1)");
  });

  it("answers the name and message alone, every line of it, when no frame of the user's is left", () => {
    const stack = "WasmTrapError: misbehave trapped: unreachable\n    at run (file:///srv/bundle.mjs:1:20)\n    at async call (gateway.mjs:9:9)";
    expect(mapStackWith(map, stack)).toBe("WasmTrapError: misbehave trapped: unreachable");
    expect(mapStackWith(map, "Error: two\nlines\n    at run (bundle.mjs:1:20)")).toBe("Error: two\nlines");
  });

  it("leaves Node's own frames out, unmapped: their lines are not the bundle's", () => {
    const stack = "Error: boom\n    at handler (file:///srv/bundle.mjs:1:1)\n    at process.processTicksAndRejections (node:internal/process/task_queues:1:1)";
    expect(mapStackWith(map, stack)).toBe("Error: boom\n    at handler (app.ts:1:1)");
    expect(mapStackWith(map, "Error: x\n    at node:internal/main/run_main_module:1:1")).toBe("Error: x");
  });

  it("gives a stack mapped already back as it is: an inner call's error passed on keeps its frames", () => {
    const mapped = "MyErr: boom\n    at thrower (app.ts:1:20)\n    at handler (app.ts:1:1)";
    expect(mapStackWith(map, mapped)).toBe(mapped);
    expect(mapStackWith(map, mapStackWith(map, "Error: boom\n    at handler (file:///srv/bundle.mjs:1:1)"))).toBe("Error: boom\n    at handler (app.ts:1:1)");
  });

  it("leaves a stack as it is without a source map", () => {
    expect(mapStackWith(null, "Error: x\n    at f (bundle.mjs:1:20)")).toBe("Error: x\n    at f (bundle.mjs:1:20)");
  });
});

describe("a printed stack's lines (log lines)", () => {
  it("maps a frame of the bundle to the user's file, leaves Tandem's own out, and any other line as it is", () => {
    expect(mapFrameLine(map, "    at handler (file:///tandem/app/bundle.mjs:1:1)")).toBe("    at handler (app.ts:1:1)");
    expect(mapFrameLine(map, "    at run (file:///tandem/app/bundle.mjs:1:20)")).toBeNull();
    expect(mapFrameLine(map, "    at async file:///tandem/app/bundle.mjs:1:1")).toBe("    at async app.ts:1:1");
    expect(mapFrameLine(map, "    at async run (file:///tandem/app/bundle.mjs:1:20)")).toBeNull();
    for (const line of [
      "resized 3 images at noon",
      "    at process.processTicksAndRejections (node:internal/process/task_queues:1:1)",
      "    at f (/tandem/app/node_modules/sharp/lib/index.js:1:1)",
    ])
      expect(mapFrameLine(map, line)).toBe(line);
    expect(mapFrameLine(null, "    at handler (bundle.mjs:1:1)")).toBe("    at handler (bundle.mjs:1:1)");
  });

  it("maps every frame in a printed text, keeping what is not a frame, and only the named module's with one", () => {
    const text = "caught: Error: boom\n    at handler (worker.mjs:1:1)\n    at run (worker.mjs:1:20)\n  { code: 7 }";
    expect(mapFramesIn(map, text)).toBe("caught: Error: boom\n    at handler (app.ts:1:1)\n  { code: 7 }");
    expect(mapFramesIn(map, "    at f (file:///srv/runtime/gateway.mjs:1:1)\n    at g (app.mjs:1:1)\n    at h (node:internal/x:1:1)", "app.mjs")).toBe(
      "    at g (app.ts:1:1)\n    at h (node:internal/x:1:1)",
    );
    expect(mapFramesIn(map, "no frame here")).toBe("no frame here");
    // An error printed with fields of its own: its last frame ends with " {" (before: left as it was, unmapped).
    const withFields = "FunctionTimeoutError: late\n    at async handler (file:///x/worker.mjs:1:1) {\n  code: 'function_timeout'\n}";
    expect(mapFramesIn(map, withFields, "worker.mjs")).toBe("FunctionTimeoutError: late\n    at async handler (app.ts:1:1) {\n  code: 'function_timeout'\n}");
    const tandemLast =
      "RemoteError: boom\n    at handler (worker.mjs:1:1)\n    at async file:///x/runtime/gateway.mjs:460:19114 {\n  code: 'function_failed'\n}";
    expect(mapFramesIn(map, tandemLast, "worker.mjs")).toBe("RemoteError: boom\n    at handler (app.ts:1:1) {\n  code: 'function_failed'\n}");
    // A stack mapped already (then printed) stays as it is: its frames name the map's sources, not the bundle.
    expect(mapFramesIn(map, "threw: Error: x\n    at handler (app.ts:1:20)")).toBe("threw: Error: x\n    at handler (app.ts:1:20)");
  });
});
