/**
 * The inner loop, as a user goes round it with the built CLI: `tandem run`
 * starts only what the function needs (no plane for an edge function unless
 * a call asks for one), and a `tandem serve` reload that edits an edge
 * function keeps the plane's warm containers, while any edit to plane code
 * runs in a new one; `tandem run` keeps its builds, and an edit builds anew.
 * Timings are bench/cli-run.ts's; these assert on what starts.
 */
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RemoteError, lookup } from "../sdk/index.js";
import { ROOT, runCli, startServe, type Served } from "./helpers/cli.js";
import { eventually } from "./helpers/gateway.js";

const FIXTURE = join(ROOT, "test/fixtures/reload-app.ts");
const WC_WASM = join(ROOT, "examples/wasm/wc.wasm");
/** What a plane says to its gateway when it starts: `tandem run` passes the gateway's lines on to stderr. */
const PLANE_REGISTERED = /plane pl-[0-9a-f]+ registered/;

describe("tandem run starts only what the function needs", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tandem-run-starts-"));
    await copyFile(FIXTURE, join(dir, "app.ts"));
    await copyFile(WC_WASM, join(dir, "wc.wasm"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("runs an edge function without a plane, though its app has plane functions", async () => {
    const { code, stdout, stderr } = await runCli(["run", "app.ts::hello", "Ada"], { cwd: dir, env: { TANDEM_TRACE: "1" } });
    expect(code).toBe(0);
    expect(stdout.trim()).toBe("Hello, Ada!");
    expect(stderr).not.toMatch(PLANE_REGISTERED);
    expect(stderr).not.toContain("build: plane bundle"); // nor its bundle: its gateway would ask for it if a call needed a plane
  });

  it("exits once its output is written, leaving nothing in the system's temporary folder nor in its own", async () => {
    const tmp = await mkdtemp(join(tmpdir(), "tandem-run-tmp-"));
    // The folders of a run killed before its end (a process that is gone): the next run removes them.
    const dead = spawnSync(process.execPath, ["-e", "console.log(process.pid)"]).stdout.toString().trim();
    for (const kind of ["run-planes", "run-state"]) await mkdir(join(dir, ".tandem", kind, dead, "left"), { recursive: true });
    try {
      const { code, stdout } = await runCli(["run", "app.ts::hello", "Ada"], { cwd: dir, env: { TMPDIR: tmp } });
      expect(code).toBe(0);
      expect(stdout.trim()).toBe("Hello, Ada!");
      expect(await readdir(tmp)).toEqual([]); // miniflare's folder was in the run's own, removed before it exited
      expect(await readdir(join(dir, ".tandem/run-state"))).toEqual([]);
      expect(await readdir(join(dir, ".tandem/run-planes"))).toEqual([]);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });

  it("fails on an argument that is not JSON before a plane function's plane or container starts", async () => {
    // An app of its own name: the engine is shared, and no container of it may be left.
    const name = `runargs${randomBytes(3).toString("hex")}`;
    const source = (await readFile(join(dir, "app.ts"), "utf8")).replace('new App("reload")', `new App("${name}")`);
    await writeFile(join(dir, "args-app.ts"), source);
    const { code, stderr } = await runCli(["run", "args-app.ts::where", "{bad"], { cwd: dir });
    expect(code).not.toBe(0);
    expect(stderr).toContain("argument 1 is not valid JSON");
    expect(stderr).not.toMatch(PLANE_REGISTERED);
    const { stdout: left } = await promisify(execFile)("docker", ["ps", "-aq", "--filter", `label=tandem.app=${name}`]);
    expect(left.trim()).toBe("");
  });

  it("refuses an argument the function's input schema refuses, as the gateway would, before a plane or container starts", async () => {
    const name = `runinput${randomBytes(3).toString("hex")}`;
    await writeFile(
      join(dir, "input-app.ts"),
      [
        'import { App } from "tandem";',
        'import { z } from "zod";',
        `const app = new App("${name}");`,
        'export const heavy = app.function({ tier: "plane", cpu: 0.5, memory: 256, input: z.tuple([z.number().int().min(0)]) }, (n) => n * 2);',
        'export const Model = app.cls({ tier: "plane", cpu: 0.5, memory: 256 }, class {\n  predict(x: number) {\n    return x;\n  }\n});',
        "export default app;",
        "",
      ].join("\n"),
    );
    const bad = await runCli(["run", "input-app.ts::heavy", "--", "-2"], { cwd: dir });
    expect(bad.stderr).toBe(`error: ${name}.heavy: argument 1: Too small: expected number to be >=0 (got -2)\n`); // no cold start, no plane
    expect(bad.code).toBe(1); // as the gateway's refusal of the call was
    const params = await runCli(["run", "input-app.ts::Model.predict", "3"], { cwd: dir });
    expect(params.stderr).toBe(
      `error: ${name}.Model.predict is a class method, called with the class's parameters first: .remote(parameters, ...args) or .starmap([[parameters, ...args], …]) from the SDK, tandem run FILE::Class.method '{}' ARGS… from the CLI, "args": [parameters, ...args] over HTTP: parameters must be an object ({} for none; got number)\n`,
    );
    expect(params.code).toBe(1);
    const { stdout: left } = await promisify(execFile)("docker", ["ps", "-aq", "--filter", `label=tandem.app=${name}`]);
    expect(left.trim()).toBe("");
  });

  it("starts the plane beside workerd for a plane function, and calls it without waiting for its first heartbeat", async () => {
    const { code, stdout, stderr } = await runCli(["run", "app.ts::where"], { cwd: dir, env: { TANDEM_TRACE: "1" } });
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ version: 1, container: expect.stringMatching(/^ctr-[0-9a-f]{8}$/) });
    expect(stderr).toMatch(PLANE_REGISTERED);
    // The gateway takes the plane's report through LOCAL_PLANE; the heartbeat lands beside the call, still before the run stops.
    const at = (step: string) => stderr.indexOf(`ms  ${step}\n`);
    expect(at("run: call sent")).toBeGreaterThan(0);
    expect(at("run: call sent")).toBeLessThan(at("plane: first heartbeat answered"));
    expect(at("plane: first heartbeat answered")).toBeLessThan(at("run: workerd stopped"));
    // Its lines are printed here as they come; none is sent to a gateway that goes with the run.
    expect(stderr).toContain("cold start: reload.where");
    expect(stderr).not.toContain("could not send its log lines");
  });

  it("checks the secrets of the function it runs, not those of the app's others", async () => {
    await writeFile(
      join(dir, "secret-app.ts"),
      `import { App, Secret } from "tandem";
const app = new App("runsecrets");
export const plain = app.function((name: string) => \`hi \${name}\`);
export const keyed = app.function({ secrets: [Secret.fromName("nobody-made-this")] }, () => process.env.KEY);
export default app;
`,
    );
    const plain = await runCli(["run", "secret-app.ts::plain", "Ada"], { cwd: dir });
    expect({ code: plain.code, stdout: plain.stdout.trim() }).toEqual({ code: 0, stdout: "hi Ada" });
    const keyed = await runCli(["run", "secret-app.ts::keyed"], { cwd: dir });
    expect(keyed.code).toBe(1);
    expect(keyed.stderr).toContain('app "runsecrets": function "keyed" declares secret "nobody-made-this", which the gateway does not have');
  });

  it("runs a plane function that mounts a volume (its container waits for the gateway, not the gateway for it)", async () => {
    await writeFile(
      join(dir, "mount-app.ts"),
      `import { App, Volume } from "tandem";
const app = new App("runmount");
const data = Volume.fromName("run-data", { createIfMissing: true });
export const listed = app.function({ volumes: { "/data": data } }, async () => (await import("node:fs")).readdirSync("/data").length);
export default app;
`,
    );
    // It hung with no output: the container started ahead of the gateway waited for its volume from that gateway.
    const { code, stdout, stderr } = await runCli(["run", "mount-app.ts::listed"], { cwd: dir });
    expect(stderr).toContain('mounts "run-data" v0 at /data');
    expect({ code, stdout: stdout.trim() }).toEqual({ code: 0, stdout: "0" });
  });

  it("hands the plane its bundle and source map: a plane function's failure names the app's own lines", async () => {
    // The run's gateway holds no plane bundle nor map: a plane asking it for either would fail the call or keep
    // the bundle's own lines in the stack.
    const { code, stderr } = await runCli(["run", "app.ts::failing"], { cwd: dir });
    expect(code).toBe(1);
    expect(stderr).toContain("error: Error: failing on purpose");
    const line = (await readFile(FIXTURE, "utf8")).split("\n").findIndex((l) => l.includes('throw new Error("failing on purpose")')) + 1;
    expect(stderr).toMatch(new RegExp(`at .*app\\.ts:${line}:\\d+`));
    expect(stderr).not.toContain("could not fetch bundle");
  });

  it("removes a plain function's container at once when it exits, without a grace period its runner could not use", async () => {
    // The function answers, then holds its container's thread: a graceful stop would wait out the grace period (10 s).
    const name = `runquick${randomBytes(3).toString("hex")}`;
    await writeFile(
      join(dir, "busy-app.ts"),
      [
        'import { App } from "tandem";',
        `const app = new App("${name}");`,
        'export const busyAfter = app.function({ tier: "plane", timeout: 30 }, () => {',
        "  setTimeout(() => { const until = Date.now() + 60_000; while (Date.now() < until); }, 10);",
        '  return "answered";',
        "});",
        "export default app;",
      ].join("\n"),
    );
    const { code, stdout, stderr } = await runCli(["run", "busy-app.ts::busyAfter"], { cwd: dir, env: { TANDEM_TRACE: "1" } });
    expect(code).toBe(0);
    expect(stdout.trim()).toBe("answered");
    const at = (step: string) => Number(new RegExp(`(\\d+) ms  ${step}\n`).exec(stderr)?.[1]);
    expect(at("run: exit") - at("run: call answered")).toBeLessThan(5000);
    const { stdout: left } = await promisify(execFile)("docker", ["ps", "-aq", "--filter", `label=tandem.app=${name}`]);
    expect(left.trim()).toBe("");
  });

  it("still stops a class's container gracefully at its end, running the class's exit() hook", async () => {
    const { code, stdout, stderr } = await runCli(["run", join(ROOT, "test/fixtures/class-app.ts") + "::Model.predict", '{"size":"tiny"}', "hi"], { cwd: dir });
    expect(code).toBe(0);
    expect(stdout.trim()).toMatch(/^w-tiny:hi:ctr-[0-9a-f]{8}$/);
    // Its exit() line is the container's, under the class, not the call's that ran last.
    expect(stderr).toMatch(/\[classes\.Model - ctr-[0-9a-f]{8}\] exit tiny/);
  });

  it("starts the plane when an edge function's call asks for one", async () => {
    const { code, stdout, stderr } = await runCli(["run", "app.ts::whereFromEdge"], { cwd: dir, env: { TANDEM_TRACE: "1" } });
    expect(code).toBe(0);
    expect(stdout.trim()).toBe("1");
    expect(stderr.match(new RegExp(PLANE_REGISTERED, "g"))).toHaveLength(1);
    // Its plane bundle made once workerd was up, when the gateway asked for it.
    expect(stderr.indexOf("run: workerd ready")).toBeGreaterThan(0);
    expect(stderr.search(/build: plane bundle (bundled|found in the build cache)/)).toBeGreaterThan(stderr.indexOf("run: workerd ready"));
  });

  it("keeps its builds in .tandem/cache between runs, and runs an edited app's new code, edge and plane", async () => {
    expect((await readdir(join(dir, ".tandem/cache/build/files"))).length).toBeGreaterThan(0);
    const source = await readFile(join(dir, "app.ts"), "utf8");
    await writeFile(join(dir, "app.ts"), source.replace("`Hello, ${name}!`", "`Hi, ${name}!`").replace("version: 1", "version: 2"));
    const edge = await runCli(["run", "app.ts::hello", "Ada"], { cwd: dir });
    expect(edge.stdout.trim()).toBe("Hi, Ada!");
    const plane = await runCli(["run", "app.ts::where"], { cwd: dir });
    expect(JSON.parse(plane.stdout)).toMatchObject({ version: 2 });
  });
});

describe("tandem run after an edit", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tandem-run-edit-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("bundles only the app's own module, the gateway's kept, and its edge stacks name the edited lines", async () => {
    const app = (above: string) =>
      [
        'import { App } from "tandem";',
        'const app = new App("runedit");',
        above,
        'export const fails = app.function(() => { throw new Error("edge failure"); });',
        "export default app;",
      ].join("\n");
    const run = async () => {
      const { code, stderr } = await runCli(["run", "app.ts::fails"], { cwd: dir, env: { TANDEM_TRACE: "1" } });
      expect(code).toBe(1);
      expect(stderr).toContain("error: Error: edge failure");
      // The app's frames only: none of the gateway's own module, mapped through the app's map into lines of its.
      const frames = stderr.split("\n").filter((l) => /^\s+at /.test(l));
      expect(frames.length).toBeGreaterThan(0);
      for (const frame of frames) expect(frame).toMatch(/app\.ts:\d+:\d+\)?$/);
      return { stderr, line: Number(/app\.ts:(\d+):\d+/.exec(frames[0]!)?.[1]) };
    };
    await writeFile(join(dir, "app.ts"), app("// one line above"));
    const first = await run();
    expect(first.line).toBe(4);
    await writeFile(join(dir, "app.ts"), app("// three lines\n// above\n// now"));
    const edited = await run();
    expect(edited.line).toBe(6);
    expect(edited.stderr).toContain("build: runtime found in the build cache");
    expect(edited.stderr).toContain("build: Worker bundled"); // the app's module, bundled anew
  });

  it("joins a plane function's edited module to the runner it kept, and its plane stacks name the edited lines", async () => {
    const name = `runplaneedit${randomBytes(3).toString("hex")}`; // the engine is shared: no container of it may be left
    const app = (above: string) =>
      [
        'import { App } from "tandem";',
        `const app = new App("${name}");`,
        above,
        'export const fails = app.function({ tier: "plane" }, (text: unknown) => (text as string).split(","));',
        "export default app;",
      ].join("\n");
    const run = async () => {
      const { code, stderr } = await runCli(["run", "plane-app.ts::fails", "5"], { cwd: dir, env: { TANDEM_TRACE: "1" } });
      expect(code).toBe(1);
      expect(stderr).toContain("error: TypeError: text.split is not a function");
      const frames = stderr.split("\n").filter((l) => /^\s+at /.test(l));
      expect(frames.length).toBeGreaterThan(0);
      for (const frame of frames) expect(frame).toMatch(/plane-app\.ts:\d+:\d+\)?$/);
      return { stderr, line: Number(/plane-app\.ts:(\d+):\d+/.exec(frames[0]!)?.[1]) };
    };
    await writeFile(join(dir, "plane-app.ts"), app("// one line above"));
    const first = await run();
    expect(first.line).toBe(4);
    // The first run's plane made its runtime's V8 code cache, in the background, into the project's cache: the next
    // container loads the runtime from it (gpu-plane/runtime-code.ts), and its stacks still name the app's lines. (The
    // first run's own container may already have found it: the cache is made as the runtime is written, and a slow
    // container start on a loaded machine is staged after it is done.)
    const codeCaches = async () => {
      const runtimes = join(dir, ".tandem", "cache", "runtimes");
      const found = await readdir(runtimes).catch(() => [] as string[]);
      return (await Promise.all(found.map((r) => readdir(join(runtimes, r))))).flat().filter((f) => f === "runtime.cache");
    };
    await eventually(async () => (await codeCaches()).length > 0, 30_000);
    await writeFile(join(dir, "plane-app.ts"), app("// three lines\n// above\n// now"));
    const edited = await run();
    expect(edited.line).toBe(6);
    expect(edited.stderr).toMatch(/cold start: runplaneedit[0-9a-f]+\.fails ctr-[0-9a-f]{8} ready in \d+ ms \(runtime from its code cache\)/);
    expect(edited.stderr).toContain("build: plane runtime found in the build cache");
    expect(edited.stderr).toContain("build: plane bundle bundled"); // the app's module, joined to it anew
  });
});

describe("tandem serve reloading an edit", () => {
  let dir: string;
  let served: Served;
  const file = () => join(dir, "app.ts");
  /** Makes each replacement in the app file, then waits for the reload. */
  const edit = async (...replacements: [from: string, to: string][]) => {
    let source = await readFile(file(), "utf8");
    for (const [from, to] of replacements) {
      expect(source).toContain(from);
      source = source.replace(from, to);
    }
    const reloads = served.output().split("reloaded in").length - 1;
    await writeFile(file(), source);
    await served.waitFor(new RegExp(`(reloaded in[\\s\\S]*){${reloads + 1}}`));
  };
  const coldStarts = () => served.output().match(/cold start: reload\.where /g)?.length ?? 0;
  const fn = <A extends unknown[], R>(name: string) => lookup<A, R>("reload", name, { gateway: served.url });
  const where = () => fn<[], { version: number; container: string }>("where").remote();
  const failingStack = async () => {
    const err = await fn<[], never>("failing")
      .remote()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    return (err as RemoteError).remoteStack ?? "";
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tandem-reload-plane-"));
    await copyFile(FIXTURE, file());
    await copyFile(WC_WASM, join(dir, "wc.wasm"));
    served = await startServe(["app.ts", "--scaledown-window", "600"], dir, { TANDEM_TRACE: "1" });
  });
  afterAll(async () => {
    await served?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps the warm plane container when only an edge function changed, and serves the new edge code", async () => {
    const before = await where();
    expect(before.version).toBe(1);
    expect(coldStarts()).toBe(1);
    const stackBefore = await failingStack();
    const line = Number(/app\.ts:(\d+):\d+/.exec(stackBefore)?.[1]);
    expect(line).toBeGreaterThan(0);

    // Two lines more above the plane functions: their code is the same, at other lines.
    await edit(["return `Hello, ${name}!`;", 'const greeting = "Hi";\n  const punctuation = "!";\n  return `${greeting}, ${name}${punctuation}`;']);
    expect(await fn<[string], string>("hello").remote("Ada")).toBe("Hi, Ada!");
    const after = await where();
    expect(after).toEqual(before); // the same container, and no other cold start
    expect(coldStarts()).toBe(1);
    // The reload bundled the app's own module, the gateway's modules kept from the first start.
    expect(served.output()).toContain("build: runtime bundled");
    expect(served.output()).toContain("build: runtime found in the build cache");
    // Its stacks name the lines as they are now.
    expect(await failingStack()).toContain(`app.ts:${line + 2}:`);
  });

  it("runs changed plane code in a new container, never in the old one", async () => {
    const before = await where();
    await edit(["version: 1", "version: 2"]);
    const after = await where();
    expect(after.version).toBe(2);
    expect(after.container).not.toBe(before.container);
    expect(coldStarts()).toBe(2);
  });

  it("runs plane code in a new container when code it shares with an edge function changed", async () => {
    const before = await where();
    await edit(
      ["export default app;", "export const shared = () => 3;\nexport default app;"],
      ["version: 2", "version: shared()"],
      ["return `${greeting}", "return `${shared()} ${greeting}"],
    );
    const after = await where();
    expect(after.version).toBe(3);
    expect(after.container).not.toBe(before.container);
    await edit(["export const shared = () => 3;", "export const shared = () => 4;"]);
    const again = await where();
    expect(again.version).toBe(4);
    expect(again.container).not.toBe(after.container);
    expect(await fn<[string], string>("hello").remote("Ada")).toBe("4 Hi, Ada!");
  });

  it("answers get() of a call spawned just before a reload once the call ends: the old workerd stopped before the new one opened the ledger", async () => {
    const call = await fn<[number], number>("nap").spawn(3_000);
    await edit(["export default app;", "export const edited = true;\nexport default app;"]);
    const asked = Date.now();
    expect(await call.get({ timeoutMs: 20_000 })).toBe(3_000);
    // Two workerd on one state folder each had the ledger open: the new one never heard of the old one's result, and
    // its get() waited out the whole 20 s before reading it.
    expect(Date.now() - asked).toBeLessThan(10_000);
  });

  it("goes on with a call spawned before a reload that the reload cut short, within seconds, not a lease of 30", async () => {
    const call = await fn<[number], number>("nap").spawn(8_000);
    await new Promise((resolve) => setTimeout(resolve, 500)); // under way
    await edit(["export const edited = true;", "export const edited = 2;"]); // the old workerd stops: the nap's runner with it
    const asked = Date.now();
    expect(await call.get({ timeoutMs: 40_000 })).toBe(8_000);
    // Resumed once its 5 s lease lapsed (a deployed gateway's is 30 s) and run again: at most 5 + 8 s and the reload's.
    expect(Date.now() - asked).toBeLessThan(25_000);
    expect(served.output()).toContain(`resuming reload.nap ${call.id}`);
  }, 60_000);

  it("stops its plane's containers on Ctrl-C after reloads, as before them", async () => {
    const planeId = /plane (pl-[0-9a-f]+) registered/.exec(served.output())![1]!;
    await served.stop();
    expect(served.output()).toContain("stopping the local plane's containers");
    const { stdout: left } = await promisify(execFile)("docker", ["ps", "-aq", "--filter", `label=tandem.plane=${planeId}`]);
    expect(left.trim()).toBe("");
  });
});

describe("tandem serve and the files an image copies in", () => {
  let dir: string;
  let served: Served;
  const read = () => lookup<[], { config: string; assets: string[]; secret: string }>("imagefiles", "read", { gateway: served.url }).remote();
  const reloads = () => served.output().split("reloaded in").length - 1;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tandem-image-files-"));
    await mkdir(join(dir, "assets"));
    await writeFile(join(dir, "config.json"), '{"model":"small"}');
    await writeFile(join(dir, "assets", "a.txt"), "a");
    await writeFile(join(dir, "assets", "private.txt"), "kept", { mode: 0o600 });
    await writeFile(
      join(dir, "app.ts"),
      `import { App, Image } from "tandem";
const app = new App("imagefiles");
const image = Image.node().addLocalFile("config.json", "/srv/config.json").addLocalDir("assets", "/srv/assets");
export const read = app.function({ tier: "plane", image }, async () => {
  const { readFileSync, readdirSync } = await import("node:fs");
  return {
    config: readFileSync("/srv/config.json", "utf8"),
    assets: readdirSync("/srv/assets").sort(),
    secret: readFileSync("/srv/assets/private.txt", "utf8"),
  };
});
export default app;
`,
    );
    served = await startServe(["app.ts"], dir);
  }, 120_000);
  afterAll(async () => {
    await served?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("reloads when one of them changes, or a file is added to a folder it copies, and the function reads them as they are now", async () => {
    // A file kept private (0600) here is readable by the function, which runs as nobody (before: EACCES).
    expect(await read()).toEqual({ config: '{"model":"small"}', assets: ["a.txt", "private.txt"], secret: "kept" });
    // Before: no reload, and the function read the old content until the app file itself was saved.
    const before = reloads();
    await writeFile(join(dir, "config.json"), '{"model":"large"}');
    await served.waitFor(new RegExp(`(reloaded in[\\s\\S]*){${before + 1}}`), 60_000);
    expect((await read()).config).toBe('{"model":"large"}');
    await writeFile(join(dir, "assets", "b.txt"), "b");
    await served.waitFor(new RegExp(`(reloaded in[\\s\\S]*){${before + 2}}`), 60_000);
    expect((await read()).assets).toEqual(["a.txt", "b.txt", "private.txt"]);
  }, 180_000);

  it("reloads once a file an image copies in, missing when the app last failed to load, is put there", async () => {
    // The app asks for a file that is not there: its reload fails, and the previous version is served.
    const source = await readFile(join(dir, "app.ts"), "utf8");
    await writeFile(
      join(dir, "app.ts"),
      source.replace('.addLocalFile("config.json", "/srv/config.json")', '.addLocalFile("weights.bin", "/srv/config.json")'),
    );
    await served.waitFor(/reload failed, still serving the previous version:\n.*Image\.addLocalFile\("weights\.bin"\) — no such file/, 60_000);
    const before = reloads();
    // Before: putting the file there did nothing; only a save of the app file reloaded.
    await writeFile(join(dir, "weights.bin"), '{"model":"weights"}');
    await served.waitFor(new RegExp(`(reloaded in[\\s\\S]*){${before + 1}}`), 60_000);
    expect((await read()).config).toBe('{"model":"weights"}');
  }, 180_000);
});
