/** `tandem deploy --dry-run`: the generated configuration is accepted by the real wrangler, offline. */
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { unpackFiles } from "../wasm/files.js";
import { runCli } from "./helpers/cli.js";

const dirs: string[] = [];

/** The WebAssembly modules under `dir`, by their paths there, sorted. */
async function wasmFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.filter((path) => path.endsWith(".wasm")).sort();
}

afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

it("bundles the hello app and wrangler accepts the deployment with its bindings", async () => {
  const out = await mkdtemp(join(tmpdir(), "tandem-deploy-"));
  dirs.push(out);
  const { code, stdout, stderr } = await runCli(["deploy", "examples/hello/app.ts", "--dry-run", "--outdir", out, "--name", "hello-edge"], {
    env: { WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
  });
  expect(stderr).not.toMatch(/✘|\[ERROR\]/);
  expect(code).toBe(0);
  expect(stdout).toMatch(/env\.LEDGER \(CallLedger\)\s+Durable Object/);
  expect(stdout).toMatch(/env\.BLOBS \(tandem-blobs\)\s+R2 Bucket/);
  expect(stdout).toContain("--dry-run: exiting now.");
  const config = await readFile(join(out, "wrangler.toml"), "utf8");
  expect(config).toContain('main = "worker.mjs"');
  expect(config).toContain('name = "hello-edge"');
});

it("deploys another environment as a Worker of its own, told its environment, and wrangler accepts it", async () => {
  const out = await mkdtemp(join(tmpdir(), "tandem-deploy-"));
  dirs.push(out);
  const { code, stdout, stderr } = await runCli(["deploy", "examples/hello/app.ts", "--dry-run", "--outdir", out, "--name", "hello-edge", "--env", "dev"], {
    env: { WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
  });
  expect(stderr).not.toMatch(/✘|\[ERROR\]/);
  expect(code).toBe(0);
  expect(stdout).toMatch(/env\.TANDEM_ENV \("dev"\)\s+Environment Variable/);
  const config = await readFile(join(out, "wrangler.toml"), "utf8");
  expect(config).toContain('name = "hello-edge-dev"');
  expect(config).toMatch(/\[vars\]\nTANDEM_ENV = "dev"/);
  const refused = await runCli(["deploy", "examples/hello/app.ts", "--dry-run", "--outdir", out, "--env", "Dev"]);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toMatch(/--env.*must be an environment name/);
});

it("bundles plane functions for the planes, and says where the bundle goes", async () => {
  const out = await mkdtemp(join(tmpdir(), "tandem-deploy-"));
  dirs.push(out);
  const { code, stdout } = await runCli(["deploy", "examples/inference/app.ts", "--dry-run", "--outdir", out], { env: { WRANGLER_SEND_METRICS: "false" } });
  expect(code).toBe(0);
  expect(stdout).toMatch(/would upload .*plane-app\.mjs to r2:\/\/tandem-blobs\/bundles\/[0-9a-f]{64}\.mjs\n/);
  expect(stdout).toMatch(/would upload .*plane-app\.mjs\.map to r2:\/\/tandem-blobs\/bundles\/[0-9a-f]{64}\.mjs\.map\n/);
  expect(stdout).toMatch(/env\.PLANES \(PlaneRegistry\)\s+Durable Object/);
  // Minified, with the names the author wrote: an error reads `text.charCodeAt is not a function`, not `t.charCodeAt …`.
  for (const bundle of ["worker.mjs", join("plane", "plane-app.mjs")]) expect(await readFile(join(out, bundle), "utf8")).toContain("text.charCodeAt(");
});

it("ships WebAssembly functions' modules in the deployment, instrumented", async () => {
  const out = await mkdtemp(join(tmpdir(), "tandem-deploy-"));
  dirs.push(out);
  const { code } = await runCli(["deploy", "examples/wasm/app.ts", "--dry-run", "--outdir", out], { env: { WRANGLER_SEND_METRICS: "false" } });
  expect(code).toBe(0);
  for (const file of ["wasm-fib.wasm", "wasm-wc.wasm"]) {
    const module = new WebAssembly.Module(await readFile(join(out, "dist", "wasm", file)));
    expect(WebAssembly.Module.imports(module).map((i) => `${i.module}.${i.name}`)).toContain("tandem.tick");
  }
});

it("ships a WebAssembly function's bundled files as a data module of the deployment", async () => {
  const out = await mkdtemp(join(tmpdir(), "tandem-deploy-"));
  dirs.push(out);
  const { code } = await runCli(["deploy", "test/fixtures/wasm-app.ts", "--dry-run", "--outdir", out], { env: { WRANGLER_SEND_METRICS: "false" } });
  expect(code).toBe(0);
  const blob = (await readdir(join(out, "dist", "wasm"))).find((f) => /^files-[0-9a-f]{16}\.bin$/.test(f));
  expect(blob).toBeDefined();
  const files = unpackFiles(await readFile(join(out, "dist", "wasm", blob!)));
  expect(new TextDecoder().decode(files["/data"]!.files["hello.txt"])).toBe("hello from the bundle\n");
});

it("empties its folder before each deploy: dry runs in a row ship the same modules, once each, and nothing an earlier one left", async () => {
  const out = await mkdtemp(join(tmpdir(), "tandem-deploy-"));
  dirs.push(out);
  const dryRun = async () => {
    const { code, stdout } = await runCli(["deploy", "examples/wasm/app.ts", "--dry-run", "--outdir", out], { env: { WRANGLER_SEND_METRICS: "false" } });
    expect(code).toBe(0);
    return { modules: stdout.match(/│ \S+\.wasm .*│|Total \(\d+ modules?\)/g), files: await wasmFiles(out) };
  };
  const first = await dryRun();
  expect(first.modules).toEqual([expect.stringMatching(/^│ wasm\/wasm-fib\.wasm /), expect.stringMatching(/^│ wasm\/wasm-wc\.wasm /), "Total (2 modules)"]);
  // What an earlier deployment left: a module of a WebAssembly function since removed.
  await copyFile(join(out, "wasm", "wasm-fib.wasm"), join(out, "wasm", "removed-function.wasm"));
  // wrangler's dry-run output was in the folder it bundles from, never emptied: each run shipped the runs before it
  // (dist/wasm/…, then dist/dist/wasm/…).
  expect(await dryRun()).toEqual(first);
  expect(first.files).toEqual(["dist/wasm/wasm-fib.wasm", "dist/wasm/wasm-wc.wasm", "wasm/wasm-fib.wasm", "wasm/wasm-wc.wasm"]);
});

it("refuses an --outdir holding files it did not write, which wrangler would upload, and leaves them", async () => {
  const out = await mkdtemp(join(tmpdir(), "tandem-deploy-"));
  dirs.push(out);
  await writeFile(join(out, "mine.wasm"), "not Tandem's");
  const { code, stderr } = await runCli(["deploy", "examples/hello/app.ts", "--dry-run", "--outdir", out]);
  expect(code).toBe(2);
  expect(stderr).toBe(
    `error: --outdir ${out} holds files tandem deploy did not write, which wrangler would upload with the Worker: name a new or empty folder\n`,
  );
  expect(await readdir(out)).toEqual(["mine.wasm"]);
});

it("refuses an app with invalid options before calling wrangler", async () => {
  const out = await mkdtemp(join(tmpdir(), "tandem-deploy-bad-"));
  dirs.push(out);
  const { code, stderr, stdout } = await runCli(["deploy", "test/fixtures/bad-options-app.ts", "--dry-run", "--outdir", out]);
  expect(code).toBe(2);
  expect(stderr).toContain('option "timeout"');
  expect(stdout).not.toContain("wrangler");
});

it("refuses two app files of one app, or one file given twice, before calling wrangler", async () => {
  const out = await mkdtemp(join(tmpdir(), "tandem-deploy-dup-"));
  dirs.push(out);
  await writeFile(join(out, "again.ts"), await readFile("examples/hello/app.ts", "utf8"));
  // Before: exit 0, shipping a Worker that would never start ("two app files define the app").
  const dup = await runCli(["deploy", "examples/hello/app.ts", join(out, "again.ts"), "--dry-run", "--outdir", join(out, "o")]);
  expect(dup.code).toBe(2);
  expect(dup.stderr).toContain(`error: examples/hello/app.ts and ${join(out, "again.ts")} both define the app "hello"`);
  const twice = await runCli(["deploy", "examples/hello/app.ts", "./examples/hello/app.ts", "--dry-run", "--outdir", join(out, "o")]);
  expect(twice.code).toBe(2);
  expect(twice.stderr).toContain("error: ./examples/hello/app.ts is given twice");
  expect(dup.stdout + twice.stdout).not.toContain("wrangler");
});

it("gives a deployment with scheduled functions a cron trigger, and wrangler accepts it", async () => {
  const out = await mkdtemp(join(tmpdir(), "tandem-deploy-"));
  dirs.push(out);
  const { code, stdout } = await runCli(["deploy", "examples/cron/app.ts", "--dry-run", "--outdir", out], { env: { WRANGLER_SEND_METRICS: "false" } });
  expect(code).toBe(0);
  expect(stdout).toMatch(/env\.SCHEDULER \(Scheduler\)\s+Durable Object/);
  const config = await readFile(join(out, "wrangler.toml"), "utf8");
  expect(config).toContain('[triggers]\ncrons = ["* * * * *"]');
  expect(config).toContain('# 2 scheduled functions: cron::heartbeat (cron "*/5 * * * *" (UTC)), cron::refreshModelCache (every 1d)');
});

it("writes --strategy recreate into the plane bundle's reference the gateway sends planes, and refuses an unknown strategy", async () => {
  const out = await mkdtemp(join(tmpdir(), "tandem-deploy-"));
  dirs.push(out);
  const args = ["deploy", "examples/inference/app.ts", "--dry-run", "--outdir", out];
  const { code } = await runCli([...args, "--strategy", "recreate"], { env: { WRANGLER_SEND_METRICS: "false" } });
  expect(code).toBe(0);
  const worker = await readFile(join(out, "worker.mjs"), "utf8");
  expect(/\binference:\{hash:"[0-9a-f]{64}",builtAt:\d+,strategy:"recreate"/.test(worker)).toBe(true); // its plane bundle's reference
  const bad = await runCli([...args, "--strategy", "blue-green"], { env: { WRANGLER_SEND_METRICS: "false" } });
  expect(bad.code).not.toBe(0);
  expect(bad.stderr).toContain(`option '--strategy <strategy>' argument 'blue-green' is invalid. must be one of rolling, recreate`);
});
