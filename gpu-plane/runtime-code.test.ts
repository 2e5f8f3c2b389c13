/**
 * A joined plane bundle kept as two files, its runtime loaded from V8's code cache (gpu-plane/runtime-code.ts): the
 * split bundle runs as the joined one does, with every frame of a stack at the same line and column, and a bundle
 * run once its code cache is made says it took the runtime from there. Real Node processes.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PLANE_RUNTIME_CODE_KEY, PLANE_RUNTIME_MARKER } from "../sdk/protocol.js";
import { eventually } from "../test/helpers/gateway.js";
import { RuntimeCode, splitPlaneBundle } from "./runtime-code.js";

const run = promisify(execFile);

/** A runtime as bundlePlane's plane runtime is: a script that sets one variable, over several lines, using `require`. */
const RUNTIME = [
  "var __tandemPlaneRuntime=(()=>{",
  '  const os = require("node:os");',
  "  function shout(text) {",
  '    if (text === "") throw new Error("nothing to shout");',
  "    return text.toUpperCase() + (os.EOL.length > 0 ? '!' : '');",
  "  }",
  "  return { shout };",
  "})();",
].join("\n");

/** The app's module, as the joined bundle ends: it reads the runtime's variable, and says how the runtime was loaded. */
const APP = [
  "const { shout } = __tandemPlaneRuntime;",
  `console.log(JSON.stringify({ said: shout(process.argv[2] ?? "hi"), code: globalThis[Symbol.for(${JSON.stringify(PLANE_RUNTIME_CODE_KEY)})] ?? null }));`,
].join("\n");

const JOINED = `import { createRequire as __tandemRequire } from "node:module"; const require = __tandemRequire(import.meta.url); ${PLANE_RUNTIME_MARKER}${RUNTIME.split("\n").length}\n${RUNTIME}\n${APP}\n`;

describe("a joined plane bundle, split", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tandem-runtime-code-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const node = async (path: string, arg?: string) => {
    try {
      const { stdout } = await run(process.execPath, [path, ...(arg === undefined ? [] : [arg])]);
      return { out: JSON.parse(stdout) as { said: string; code: string | null }, stack: "" };
    } catch (err) {
      return { out: undefined, stack: (err as { stderr: string }).stderr };
    }
  };

  it("keeps the runtime's lines apart, and every line of the app where it was", () => {
    const split = splitPlaneBundle(JOINED)!;
    expect(split.runtime).toBe(RUNTIME);
    expect(split.bundle.split("\n")).toHaveLength(JOINED.split("\n").length);
    expect(split.bundle.split("\n").slice(1, 1 + RUNTIME.split("\n").length)).toEqual(Array(RUNTIME.split("\n").length).fill(""));
    expect(split.bundle.split("\n").slice(-3)).toEqual(JOINED.split("\n").slice(-3));
  });

  it("leaves a bundle that carries its runtime as it is", () => {
    expect(splitPlaneBundle(`import x from "y";\n${APP}`)).toBeUndefined();
    expect(splitPlaneBundle(`${PLANE_RUNTIME_MARKER}0\n${APP}`)).toBeUndefined();
  });

  it("runs as the joined bundle runs, its stacks at the same places, then from the code cache once it is made", async () => {
    await writeFile(join(dir, "joined.mjs"), JOINED);
    const joined = await node(join(dir, "joined.mjs"));
    expect(joined.out).toEqual({ said: "HI!", code: null });

    const bundleDir = join(dir, "bundle-1");
    await mkdir(bundleDir);
    const runtimes = new RuntimeCode(join(dir, "runtimes"));
    const path = await runtimes.write(bundleDir, splitPlaneBundle(JOINED)!);
    expect(path).toBe(join(bundleDir, "bundle.mjs"));
    // Made in the background (a child Node); until it is there, the runtime is compiled.
    const cacheFile = join(bundleDir, "runtime.cache");
    await eventually(() => existsSync(cacheFile), 20_000);

    const split = await node(path);
    expect(split.out).toEqual({ said: "HI!", code: "cached" });

    // A throw inside the runtime: the same line and column in either file.
    const frame = (stack: string) => /:(\d+:\d+)\)?\n/.exec(stack.slice(stack.indexOf("nothing to shout")))?.[1];
    const joinedThrow = await node(join(dir, "joined.mjs"), "");
    const splitThrow = await node(path, "");
    expect(joinedThrow.stack).toContain("nothing to shout");
    expect(frame(splitThrow.stack)).toBe(frame(joinedThrow.stack));
    expect(splitThrow.stack).toContain(`${path}:`);

    // A cache V8 does not take (another runtime's, say) is compiled past, not failed on.
    await rm(cacheFile);
    await writeFile(cacheFile, "not a code cache");
    expect((await node(path)).out).toEqual({ said: "HI!", code: "compiled" });

    // A second bundle with the same runtime shares its file.
    await mkdir(join(dir, "bundle-2"));
    await runtimes.write(join(dir, "bundle-2"), splitPlaneBundle(JOINED.replace(`?? "hi"`, `?? "ho"`))!);
    expect(await readFile(join(dir, "bundle-2", "runtime.js"), "utf8")).toBe(RUNTIME);
  }, 60_000);
});
