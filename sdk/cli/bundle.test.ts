/**
 * A plane bundle whose runtime is kept apart (`bundlePlane`'s `runtimeApart`, as `tandem run` and `tandem serve`
 * build): the runner and the SDK are bundled once and kept, an edit bundles only the app's own module and joins it to
 * them, and the one file that makes has one source map for both parts and no edge function's code. That it runs is
 * test/inner-loop.test.ts's.
 */
import { originalPositionFor } from "@jridgewell/trace-mapping";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RUNTIME_SOURCE_PREFIX, traceMap } from "../stack-map.js";
import { BuildCache } from "./build-cache.js";
import { buildApps } from "./local-stack.js";

/** A build cache that notes which builds it kept. */
class NotingCache extends BuildCache {
  readonly kept: string[] = [];
  override async put(name: string, ...rest: Parameters<BuildCache["put"]> extends [string, ...infer R] ? R : never): Promise<void> {
    this.kept.push(name.split(":")[0]!);
    return super.put(name, ...rest);
  }
}

const app = (factor: number) =>
  [
    'import { App } from "tandem";',
    'const app = new App("apart");',
    'export const greet = app.function((name: string) => "the edge greets " + name);',
    `export const triple = app.function({ tier: "plane" }, (n: number) => { if (n < 0) throw new Error("negative input"); return n * ${factor}; });`,
    "export default app;",
  ].join("\n");

/** Where `text` is in `code`, as a source map counts: line from 1, column from 0. */
function positionOf(code: string, text: string): { line: number; column: number } {
  const at = code.indexOf(text);
  expect(at).toBeGreaterThanOrEqual(0);
  const before = code.slice(0, at).split("\n");
  return { line: before.length, column: before.at(-1)!.length };
}

describe("a plane bundle built with its runtime apart", () => {
  let dir: string;
  let cache: NotingCache;
  const build = async (minifyPlane = false) => {
    cache.kept.length = 0;
    const built = await buildApps([join(dir, "app.ts")], join(dir, "build"), { cache, runtimeApart: cache, minifyPlane });
    const plane = built.planes[0]!;
    return { plane, code: new TextDecoder().decode(plane.bytes) };
  };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tandem-plane-apart-"));
    cache = new NotingCache(join(dir, "cache"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("bundles the runner and the SDK once, and after an edit only the app's own module", async () => {
    await writeFile(join(dir, "app.ts"), app(3));
    const first = await build();
    expect(cache.kept).toContain("plane-runtime");
    expect(cache.kept).toContain("plane");
    await writeFile(join(dir, "app.ts"), app(4));
    const edited = await build();
    expect(cache.kept).not.toContain("plane-runtime");
    expect(cache.kept).toContain("plane");
    expect(edited.plane.hash).not.toBe(first.plane.hash);
    expect(edited.code).toContain("n * 4");
    expect(await readFile(edited.plane.path)).toEqual(Buffer.from(edited.plane.bytes));
  });

  it("leaves the edge function's code out", async () => {
    const { code } = await build();
    expect(code).not.toContain("the edge greets");
    expect(code).toContain("apart.greet runs at the edge: its code is not in the plane bundle");
  });

  it.each([
    ["as `tandem run` prints it", false],
    ["minified, as `tandem serve` keeps it", true],
  ])("maps the app's lines to its file and the runner's to Tandem's own, through one source map (%s)", async (_, minify) => {
    const { plane, code } = await build(minify);
    const map = traceMap(plane.map)!;
    const inApp = originalPositionFor(map, positionOf(code, '"negative input"'));
    expect(inApp.source).toMatch(/app\.ts$/);
    expect(inApp.source?.startsWith(RUNTIME_SOURCE_PREFIX)).toBe(false);
    expect(inApp.line).toBe(4);
    const inRunner = originalPositionFor(map, positionOf(code, "function runFunctions("));
    expect(inRunner.source).toBe(`${RUNTIME_SOURCE_PREFIX}gpu-plane/runner/main.ts`);
    // The entry that starts the runner is Tandem's too: a stack through it (a class's enter()) leaves it out.
    const inEntry = originalPositionFor(map, positionOf(code, "runFunctions(app_exports"));
    expect(inEntry.source).toBe(`${RUNTIME_SOURCE_PREFIX}tandem-plane-entry.ts`);
  });
});
