/**
 * `tandem init` as a newcomer runs it, from this checkout and no global link:
 * a project in a new folder outside the repository, installed from the npm
 * registry (Tandem from the tarball init packs into it), type-checked with its
 * own tsc, served with its own `tandem serve`, and called from its client
 * (the edge function, the plane function in Docker, the web endpoint) with no
 * token in the environment, as a user's shell has none. Then what init
 * refuses, `--link`, and `tandem pack`.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { linkedCheckoutKey, shellWord } from "../sdk/cli/init.js";
import { ROOT, runCli, runNode, startServe, type Served } from "./helpers/cli.js";

const NO_TOKEN = { TANDEM_TOKEN: "", TANDEM_ADMIN_TOKEN: "" };

/** A folder holding this checkout's better-sqlite3 binary packed as its prebuilt download is (prebuild-install's name). */
async function localSqlitePrebuild(parent: string): Promise<string> {
  const pkg = join(ROOT, "node_modules/better-sqlite3");
  const { version } = JSON.parse(await readFile(join(pkg, "package.json"), "utf8")) as { version: string };
  const dir = join(parent, "prebuilds");
  await mkdir(dir);
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  execFileSync("tar", ["-czf", join(dir, name), "-C", pkg, "build/Release/better_sqlite3.node"]);
  return dir;
}
const TANDEM = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string; dependencies: Record<string, string> };
const VERSION = TANDEM.version;

describe("tandem init, then npm install, tsc, tandem serve and the client, in a new folder", () => {
  let parent: string;
  let dir: string;
  let init: { code: number; stdout: string; stderr: string; seconds: number };
  let served: Served | undefined;

  beforeAll(async () => {
    parent = await mkdtemp(join(tmpdir(), "tandem-init-"));
    dir = join(parent, "first-app");
    const started = Date.now();
    // npm install runs inside init: Tandem's dependencies from the registry. better-sqlite3's install fetches its prebuilt
    // binary, or compiles it (2 min of one core) where it cannot, as here: it finds the binary `npm ci` built here as a
    // local prebuild, named as its download would be, so the project gets what a user's download gives.
    const env = { npm_config_better_sqlite3_local_prebuilds: await localSqlitePrebuild(parent) };
    init = { ...(await runCli(["init", "first-app"], { cwd: parent, env })), seconds: (Date.now() - started) / 1000 };
  }, 600_000);
  afterAll(async () => {
    await served?.stop();
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it("writes the project and installs it, with no install-script warning", async () => {
    expect(init.stderr + init.stdout).not.toContain("install-scripts");
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toContain("app first-app in first-app");
    expect(init.stdout).toMatch(/cd first-app\n\s+npx tandem serve/);
    console.log(`tandem init with npm install: ${init.seconds.toFixed(1)} s`);

    expect((await readdir(dir)).sort()).toEqual(
      [
        ".gitignore",
        "README.md",
        "app.ts",
        "client.mjs",
        "image-packages.d.ts",
        "node_modules",
        "package-lock.json",
        "package.json",
        "tsconfig.json",
        "vendor",
      ].sort(),
    );
    const pkg = JSON.parse(await readFile(join(dir, "package.json"), "utf8"));
    expect(pkg.dependencies.tandem).toBe(`file:vendor/tandem-${VERSION}.tgz`);
    expect(pkg.dependencies.hono).toBeDefined();
    expect(pkg.dependencies.zod).toBe(TANDEM.dependencies.zod); // docs/arguments.md imports it: a dependency of the project's own
    expect((await readFile(join(dir, ".gitignore"), "utf8")).split("\n")).toEqual(expect.arrayContaining(["node_modules/", ".tandem/"]));
    expect((await readFile(join(dir, "README.md"), "utf8")).trimEnd().split("\n")).toHaveLength(3);
    expect(await readFile(join(dir, "app.ts"), "utf8")).toContain('new App("first-app")');
    // Tandem is installed as a package of its own, not a link to this checkout.
    expect(statSync(join(dir, "node_modules/tandem")).isDirectory()).toBe(true);
    expect(existsSync(join(dir, "node_modules/tandem/dist/cli.js"))).toBe(true);
    const installed = JSON.parse(await readFile(join(dir, "node_modules/tandem/package.json"), "utf8"));
    expect(installed.scripts).toBeUndefined();
    // The better-sqlite3 Tandem pins, whose binary the local prebuild above is.
    const sqlite = JSON.parse(await readFile(join(dir, "node_modules/better-sqlite3/package.json"), "utf8"));
    expect(sqlite.version).toBe(TANDEM.dependencies["better-sqlite3"]);
  });

  it("type-checks the app with tsc: hono's and Node's types found, the image-only package declared", async () => {
    const { code, stdout, stderr } = await runNode([join(dir, "node_modules/typescript/bin/tsc"), "-p", "."], { cwd: dir });
    expect(stdout + stderr).toBe("");
    expect(code).toBe(0);
  });

  it("emits declarations of an app's handles (a class, a generator), naming their types from tandem", async () => {
    await writeFile(
      join(dir, "handles.ts"),
      `import { App } from "tandem";
const app = new App("handles");
export const Model = app.cls({}, class { constructor(readonly params: { size?: string }) {} predict(text: string) { return text; } });
export const tokens = app.function(async function* (n: number) { yield n; });
export default app;
`,
    );
    await writeFile(
      join(dir, "tsconfig.decl.json"),
      JSON.stringify({
        extends: "./tsconfig.json",
        compilerOptions: { declaration: true, emitDeclarationOnly: true, noEmit: false, outDir: "decl" },
        files: ["handles.ts"],
      }),
    );
    try {
      const { code, stdout, stderr } = await runNode([join(dir, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.decl.json"], { cwd: dir });
      // Before: TS2742, the inferred type of 'Model' cannot be named without a reference to …/tandem/dist/types/sdk/app.
      expect(stdout + stderr).toBe("");
      expect(code).toBe(0);
      expect(await readFile(join(dir, "decl/handles.d.ts"), "utf8")).toContain('import("tandem").ClsHandle<');
    } finally {
      for (const made of ["handles.ts", "tsconfig.decl.json", "decl"]) await rm(join(dir, made), { recursive: true, force: true });
    }
  });

  it("checks a deployment with the project's own tandem deploy --dry-run: wrangler comes with Tandem", async () => {
    const { code, stdout, stderr } = await runNode([join(dir, "node_modules/.bin/tandem"), "deploy", "app.ts", "--dry-run"], {
      cwd: dir,
      env: { WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", TANDEM_WRANGLER: "" },
    });
    expect(stderr).not.toMatch(/✘|\[ERROR\]|Cannot find module/);
    expect(code).toBe(0);
    expect(stdout).toContain("--dry-run: exiting now.");
  }, 120_000);

  it("serves with the project's own tandem serve, no app file named, no token in the environment", async () => {
    served = await startServe([], dir, NO_TOKEN, join(dir, "node_modules/.bin/tandem"));
    await served.waitFor(/function\s+greet\s+POST http:\/\/127\.0\.0\.1:\d+\/v1\/apps\/first-app\/functions\/greet\/call/);
    await served.waitFor(/function\s+countNumbers\s+POST .*\(plane\)/);
    await served.waitFor(/endpoint\s+hello\s+GET http:\/\/127\.0\.0\.1:\d+\/first-app\/hello\/:name/);
    expect(existsSync(join(dir, ".tandem/token"))).toBe(true);
  });

  it("answers the edge function, the plane function and the web endpoint from client.mjs, finding the serve in its folder", async () => {
    expect(served, "tandem serve did not start").toBeDefined();
    expect(served!.url).not.toBe("http://127.0.0.1:8787"); // a port of its own, as `--port` gives: no TANDEM_GATEWAY says where
    const { code, stdout, stderr } = await runNode(["client.mjs"], { cwd: dir, env: { ...NO_TOKEN, TANDEM_GATEWAY: "" } });
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout.split("\n")).toEqual(["Hello, Ada!", `{ numbers: 2, of: 3, node: '${process.version}' }`, "200 Hello, Ada!", ""]);
    await served!.waitFor(/\[plane\] cold start: first-app\.countNumbers ctr-[0-9a-f]{8} ready/);
  }, 240_000);
});

describe("tandem init refuses what it should not write into", () => {
  let parent: string;
  beforeAll(async () => {
    parent = await mkdtemp(join(tmpdir(), "tandem-init-refuse-"));
  });
  afterAll(async () => {
    await rm(parent, { recursive: true, force: true });
  });

  it("refuses a folder that holds a project, pointing at how to add Tandem to one, and writes nothing", async () => {
    const dir = join(parent, "existing");
    await mkdir(dir);
    await writeFile(join(dir, "package.json"), "{}\n");
    await writeFile(join(dir, "index.js"), "\n");
    const { code, stderr } = await runCli(["init", dir, "--no-install"], { cwd: parent });
    expect(code).not.toBe(0);
    expect(stderr).toContain(`${dir} is not empty (index.js, package.json): tandem init writes only into a new folder, and never over a file.`);
    expect(stderr).toContain('"Tandem in an existing project" in Tandem\'s README');
    expect((await readdir(dir)).sort()).toEqual(["index.js", "package.json"]);
  });

  it("refuses a folder with a file it would write, naming it", async () => {
    const dir = join(parent, "has-app");
    await mkdir(dir);
    await writeFile(join(dir, "app.ts"), "// mine\n");
    const { code, stderr } = await runCli(["init", "has-app", "--no-install"], { cwd: parent });
    expect(code).not.toBe(0);
    expect(stderr).toContain("is not empty (app.ts)");
    expect(await readFile(join(dir, "app.ts"), "utf8")).toBe("// mine\n");
  });

  it("refuses a folder inside Tandem's own, suggesting one beside it", async () => {
    const { code, stderr } = await runCli(["init", "examples/new-app", "--no-install"], { cwd: ROOT });
    expect(code).not.toBe(0);
    expect(stderr).toContain("is inside Tandem's own folder");
    expect(stderr).toContain("tandem init ../new-app");
    expect(existsSync(join(ROOT, "examples/new-app"))).toBe(false);
  });

  it("refuses a folder whose name makes no app name", async () => {
    const { code, stderr } = await runCli(["init", "__", "--no-install"], { cwd: parent });
    expect(code).not.toBe(0);
    expect(stderr).toContain('cannot name an app after the folder "__"');
  });

  it("writes the cd of its Next: lines as a shell reads it back, for a folder with spaces, ! or quotes in its name", async () => {
    const { code, stdout } = await runCli(["init", "My App!", "--no-install"], { cwd: parent });
    expect(code).toBe(0);
    expect(stdout).toContain("\n  cd 'My App!'\n");
    expect(shellWord("Ada's app")).toBe("'Ada'\\''s app'");
    expect(shellWord("first-app")).toBe("first-app");
    const echoed = execFileSync("/bin/sh", ["-c", `printf %s ${shellWord("Ada's $HOME app!")}`]).toString();
    expect(echoed).toBe("Ada's $HOME app!");
  });

  it("takes a fresh clone's folder (.git, a .gitignore, a licence), keeping the .gitignore's lines", async () => {
    const dir = join(parent, "Fresh Clone");
    await mkdir(join(dir, ".git"), { recursive: true });
    await writeFile(join(dir, ".gitignore"), "*.log");
    await writeFile(join(dir, "LICENSE"), "MIT\n");
    const { code, stdout, stderr } = await runCli(["init", "--no-install"], { cwd: dir });
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toContain("app fresh-clone in .");
    expect(stdout).not.toContain("  cd ");
    expect(await readFile(join(dir, ".gitignore"), "utf8")).toBe("*.log\nnode_modules/\n.tandem/\n");
    expect(await readFile(join(dir, "LICENSE"), "utf8")).toBe("MIT\n");
    expect(existsSync(join(dir, `vendor/tandem-${VERSION}.tgz`))).toBe(true);
    expect(existsSync(join(dir, "node_modules"))).toBe(false);
  });
});

describe("tandem init --link and tandem pack", () => {
  let parent: string;
  beforeAll(async () => {
    parent = await mkdtemp(join(tmpdir(), "tandem-init-link-"));
  });
  afterAll(async () => {
    await rm(parent, { recursive: true, force: true });
  });

  it("depends on this checkout through a file: path, and denies its build step to npm (npm ci here ran it)", async () => {
    const { code, stderr } = await runCli(["init", "linked", "--link", "--no-install"], { cwd: parent });
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const dir = join(parent, "linked");
    const pkg = JSON.parse(await readFile(join(dir, "package.json"), "utf8"));
    expect(pkg.dependencies.tandem).toBe(`file:${relative(dir, ROOT)}`);
    expect(pkg.dependencies.zod).toBe(TANDEM.dependencies.zod);
    expect(pkg.allowScripts[`file:${relative(join(dir, "node_modules"), ROOT)}`]).toBe(false);
    expect(existsSync(join(dir, "vendor"))).toBe(false);
    expect(await readFile(join(dir, "README.md"), "utf8")).toContain(`the checkout at \`${relative(dir, ROOT)}\``);
  });

  it("denies the checkout's build step by the key npm writes for a linked folder: one ../ more than the dependency's path", async () => {
    // A project two folders down, as a user's apps/proj beside the checkout: the key is the checkout's path from the
    // project's node_modules/, where npm links it, not from the project.
    await mkdir(join(parent, "apps"));
    const { code, stderr } = await runCli(["init", "proj", "--link", "--no-install"], { cwd: join(parent, "apps") });
    expect(code, stderr).toBe(0);
    const dir = join(parent, "apps", "proj");
    const pkg = JSON.parse(await readFile(join(dir, "package.json"), "utf8"));
    expect(pkg.dependencies.tandem).toBe(`file:${relative(dir, ROOT)}`);
    expect(pkg.allowScripts[`file:../${relative(dir, ROOT)}`]).toBe(false);
    expect(pkg.allowScripts[linkedCheckoutKey(dir, ROOT)]).toBe(false);

    // npm's own word on that key, offline: a stand-in checkout with a build step, linked from a project laid out alike.
    const checkout = join(parent, "stand-in");
    await mkdir(checkout);
    await writeFile(
      join(checkout, "package.json"),
      JSON.stringify({ name: "tandem", version: "0.0.0", scripts: { prepare: "node -e \"require('fs').writeFileSync('prepared', '')\"" } }),
    );
    const probe = join(parent, "apps", "probe");
    await mkdir(probe);
    const probePackage = { name: "probe", version: "0.1.0", private: true, dependencies: { tandem: `file:${relative(probe, checkout)}` } };
    await writeFile(join(probe, "package.json"), JSON.stringify(probePackage));
    const npm = (...args: string[]) => execFileSync("npm", [...args, "--offline", "--no-audit", "--no-fund"], { cwd: probe, encoding: "utf8", stdio: "pipe" });
    npm("install", "--ignore-scripts");
    npm("deny-scripts", "tandem"); // the key npm itself writes for it
    expect(JSON.parse(await readFile(join(probe, "package.json"), "utf8")).allowScripts).toEqual({ [linkedCheckoutKey(probe, checkout)]: false });
    // And the key denies it: the build step does not run at the next install.
    await rm(join(probe, "node_modules"), { recursive: true });
    npm("install");
    expect(existsSync(join(checkout, "prepared"))).toBe(false);
  });

  it("type-checks a project holding an AssemblyScript source beside app.ts, as the README's tour has it", async () => {
    const { code, stderr } = await runCli(["init", "with-wasm", "--link", "--no-install"], { cwd: parent });
    expect(code, stderr).toBe(0);
    const dir = join(parent, "with-wasm");
    // What npm install would link, without the registry: Tandem itself and the packages the project's types need.
    await mkdir(join(dir, "node_modules"));
    for (const [name, target] of [
      ["tandem", ROOT],
      ["hono", join(ROOT, "node_modules/hono")],
      ["@types", join(ROOT, "node_modules/@types")],
    ])
      await symlink(target, join(dir, "node_modules", name));
    await copyFile(join(ROOT, "examples/wasm/fib.as.ts"), join(dir, "fib.as.ts"));
    const app = await readFile(join(dir, "app.ts"), "utf8");
    await writeFile(
      join(dir, "app.ts"),
      app.replace("export default app;", 'export const fib = app.wasm<[number], number>("fib", { source: "./fib.as.ts" });\n\nexport default app;'),
    );
    const tsc = await runNode([join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "."], { cwd: dir });
    expect(tsc.stdout + tsc.stderr).toBe("");
    expect(tsc.code).toBe(0);
  }, 120_000);

  it("packs a built Tandem without build scripts or tests", async () => {
    const { code, stdout, stderr } = await runCli(["pack", parent], { cwd: parent });
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const tarball = join(parent, `tandem-${VERSION}.tgz`);
    expect(stdout).toContain(tarball);
    const files = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).trim().split("\n");
    expect(files).toEqual(
      expect.arrayContaining(["package/dist/cli.js", "package/dist/types/sdk/index.d.ts", "package/gateway/index.ts", "package/sdk/cli/init-template/app.ts"]),
    );
    expect(files.filter((f) => f.endsWith(".test.ts"))).toEqual([]);
    const pkg = JSON.parse(execFileSync("tar", ["-xzOf", tarball, "package/package.json"], { encoding: "utf8" }));
    expect(pkg.scripts).toBeUndefined();
  });
});

describe("the tandem command", () => {
  it("lists init in its help", async () => {
    const { stdout } = await runCli(["--help"]);
    expect(stdout).toMatch(/^\s+init \[options\] \[dir\]\s+start a project/m);
  });

  it("says what to do when serve has no app file and there is no app.ts", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tandem-no-app-"));
    try {
      const { code, stderr } = await runCli(["serve", "--port", "0"], { cwd: dir });
      expect(code).not.toBe(0);
      expect(stderr).toContain("no app file given, and no app.ts here: tandem serve <app files>, or tandem init to start a project");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
