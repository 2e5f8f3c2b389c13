/**
 * `tandem init [dir]`: a new project that uses Tandem, ready for `npx tandem
 * serve`: the files of `init-template/` (an app with an edge function, a plane
 * function and a web endpoint, a client, a tsconfig), a package.json that
 * depends on Tandem the way a teammate and CI can reproduce, a .gitignore and
 * a short README; then `npm install`. And `tandem pack`: this Tandem as a
 * tarball a project depends on (what `init` puts in the project's vendor/).
 *
 * Tandem is not on the npm registry, so a project gets it from a checkout:
 * by default a tarball of it, built and without build scripts (npm runs no
 * script of Tandem's, and its install-script review has nothing to ask
 * about), kept in the project; or, with `--link`, a `file:` path to the
 * checkout itself, whose build `npm ci` there already ran.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { InvalidOptionsError } from "../errors.js";
import { NAME_PATTERN, RESERVED_APP_NAMES } from "../protocol.js";
import { PACKAGE_ROOT } from "./paths.js";
import { style } from "./style.js";

/** The template's files, copied with the app name in place of `my-app`. */
const TEMPLATE_DIR = join(PACKAGE_ROOT, "sdk/cli/init-template");
const TEMPLATE_FILES = ["app.ts", "client.mjs", "image-packages.d.ts", "tsconfig.json"];
const TEMPLATE_NAME = "my-app";

/** Everything `init` writes; none may be in the folder already. */
const WRITES = [...TEMPLATE_FILES, "package.json", "README.md", "vendor"];

/** What a new project's folder may already hold: a repository's metadata, editor settings, a licence. */
const SAFE_ENTRIES = [
  /^\.git$/,
  /^\.gitignore$/,
  /^\.gitattributes$/,
  /^\.hg$/,
  /^\.DS_Store$/,
  /^Thumbs\.db$/,
  /^\.idea$/,
  /^\.vscode$/,
  /^\.editorconfig$/,
  /^LICEN[CS]E/i,
];

/** Lines the project's .gitignore needs (kept, and added to, when the folder has one). */
const GITIGNORE = ["node_modules/", ".tandem/"];

/** What a built Tandem holds; without them a tarball of it would not run. */
const BUILT = ["dist/cli.js", "dist/index.js", "dist/types/sdk/index.d.ts"];

interface TandemPackage {
  name: string;
  version: string;
  engines?: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies?: Record<string, string>;
  allowScripts?: Record<string, boolean>;
  scripts?: Record<string, string>;
}

export interface InitOptions {
  /** The project's folder, made when missing; its name becomes the app's and the package's. */
  dir: string;
  /** Depend on this checkout through a `file:` path instead of a tarball in the project's vendor/. */
  link?: boolean;
  /** Run `npm install` in the project when it is written (default true). */
  install?: boolean;
  log?: (line: string) => void;
}

/**
 * Writes a new project into `options.dir`, then installs it.
 * @example
 * await initProject({ dir: "../my-app" }); // then: cd ../my-app && npx tandem serve
 */
export async function initProject(options: InitOptions): Promise<{ dir: string; app: string }> {
  const log = options.log ?? ((line: string) => console.log(line));
  const link = options.link ?? false;
  const install = options.install ?? true;
  const dir = resolve(options.dir);
  const app = appNameFor(dir);
  const inTandem = relative(PACKAGE_ROOT, dir);
  if (!inTandem.startsWith("..") && !inTandem.startsWith(sep))
    throw new InvalidOptionsError(`${dir} is inside Tandem's own folder (${PACKAGE_ROOT}); make the project beside it, e.g. tandem init ../${app}`);
  if (link && PACKAGE_ROOT.split(sep).includes("node_modules"))
    throw new InvalidOptionsError(
      `--link needs a checkout of Tandem, and this one is an installed package (${PACKAGE_ROOT}); leave --link out to use a tarball of it`,
    );
  checkFolder(dir);

  // Tandem first: a checkout that is not built fails here, before any file is written.
  const from = link ? relative(dir, PACKAGE_ROOT) : relative(dir, await packTandem(join(dir, "vendor")));
  const dependency = `file:${posix(from)}`;
  await mkdir(dir, { recursive: true });
  for (const file of TEMPLATE_FILES) {
    const text = await readFile(join(TEMPLATE_DIR, file), "utf8");
    await writeFile(join(dir, file), text.replaceAll(TEMPLATE_NAME, app));
  }
  await writeFile(join(dir, "package.json"), `${JSON.stringify(projectPackage(app, dependency, readTandemPackage(), dir, link), null, 2)}\n`);
  await writeFile(join(dir, "README.md"), readme(app, posix(from), link));
  await writeGitignore(dir);

  const where = options.dir; // as the user wrote it, for `cd`
  log(`${style.ok("✓")} app ${style.bold(app)} in ${where}: app.ts (an edge function, a plane function, a web endpoint), client.mjs, tsconfig.json`);
  log(style.dim(`  Tandem from ${posix(from)}${link ? " (linked)" : " (commit it: npm ci then works for a teammate and CI)"}`));
  if (install) {
    log(style.dim(`npm install in ${where}…`));
    await npmInstall(dir);
  }
  log("");
  log("Next:");
  if (where !== ".") log(`  cd ${shellWord(where)}`);
  if (!install) log("  npm install");
  log(`  npx tandem serve      ${style.dim("serves app.ts at http://127.0.0.1:8787 (plane functions need a Docker engine)")}`);
  log(`  node client.mjs       ${style.dim("calls all three, from another terminal")}`);
  log(`  npx tsc               ${style.dim("type-checks the app")}`);
  return { dir, app };
}

/**
 * `word` as a POSIX shell reads it back whole: as it is when it holds nothing the shell would split or expand, else in
 * single quotes (a quote inside closed, escaped and opened again), so a "Next:" line pastes as it reads.
 * @example shellWord("My App!") // "'My App!'"
 */
export function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Packs this Tandem into `destDir` as `tandem-<version>.tgz`: the files npm
 * would publish (package.json's `files`), built, with a package.json that has
 * no scripts, so installing it runs none of Tandem's. Returns the tarball's path.
 * @example
 * const tarball = await packTandem("vendor"); // then: npm install ./vendor/tandem-0.1.0.tgz
 */
export async function packTandem(destDir: string): Promise<string> {
  const listed = JSON.parse(await npm(["pack", "--dry-run", "--json", "--ignore-scripts"], PACKAGE_ROOT)) as [{ files: { path: string }[] }];
  const files = listed[0].files.map((f) => f.path);
  const missing = BUILT.filter((f) => !files.includes(f));
  if (missing.length > 0) throw new InvalidOptionsError(`Tandem in ${PACKAGE_ROOT} is not built (no ${missing.join(", ")}): run \`npm run build\` there first`);
  const stage = await mkdtemp(join(tmpdir(), "tandem-pack-"));
  try {
    for (const file of files.filter((f) => f !== "package.json")) {
      await mkdir(dirname(join(stage, file)), { recursive: true });
      await copyFile(join(PACKAGE_ROOT, file), join(stage, file));
    }
    const { scripts: _scripts, ...withoutScripts } = readTandemPackage();
    await writeFile(join(stage, "package.json"), `${JSON.stringify(withoutScripts, null, 2)}\n`);
    await mkdir(destDir, { recursive: true });
    const [packed] = JSON.parse(await npm(["pack", "--json", "--pack-destination", resolve(destDir)], stage)) as [{ filename: string }];
    return join(resolve(destDir), packed.filename);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/** The app's name (and the package's), from the folder's: lower case, letters, digits, '-' and '_'. */
function appNameFor(dir: string): string {
  const folder = basename(dir);
  const name = folder
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, "-")
    .replace(/^[-_]+|[-_]+$/g, "")
    .slice(0, 64);
  if (!NAME_PATTERN.test(name) || RESERVED_APP_NAMES.has(name))
    throw new InvalidOptionsError(`cannot name an app after the folder "${folder}": give the project a folder named with letters, digits, '-' or '_'`);
  return name;
}

/** Refuses a folder that is a file, or that holds anything but what a new project's folder may. */
function checkFolder(dir: string): void {
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) throw new InvalidOptionsError(`${dir} is a file; tandem init makes a project in a folder`);
  const entries = readdirSync(dir);
  const taken = entries.filter((e) => WRITES.includes(e));
  const other = entries.filter((e) => !WRITES.includes(e) && !SAFE_ENTRIES.some((safe) => safe.test(e)));
  if (taken.length === 0 && other.length === 0) return;
  const existing = entries.includes("package.json")
    ? ' It looks like a project already: to add Tandem to it, see "Tandem in an existing project" in Tandem\'s README.'
    : " Choose a new or empty folder.";
  throw new InvalidOptionsError(
    `${dir} is not empty (${[...taken, ...other].sort().join(", ")}): tandem init writes only into a new folder, and never over a file.${existing}`,
  );
}

function readTandemPackage(): TandemPackage {
  return JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as TandemPackage;
}

/**
 * The project's package.json. Versions of hono, zod (for `input` schemas), TypeScript and Node's types are Tandem's own. `allowScripts`
 * (npm's review of install scripts) is Tandem's, for the dependencies it brings; with `--link`, the checkout's
 * build (its `prepare`) is denied: `npm ci` there ran it, and a dependent's install must not rebuild it.
 */
function projectPackage(app: string, dependency: string, tandem: TandemPackage, dir: string, link: boolean): Record<string, unknown> {
  const dev = tandem.devDependencies ?? {};
  const allowScripts = Object.fromEntries(Object.entries(tandem.allowScripts ?? {}).filter(([name]) => !(name in dev)));
  if (link) allowScripts[linkedCheckoutKey(dir, PACKAGE_ROOT)] = false;
  return {
    name: app,
    version: "0.1.0",
    private: true,
    type: "module",
    ...(tandem.engines ? { engines: tandem.engines } : {}),
    scripts: { serve: "tandem serve", typecheck: "tsc" },
    dependencies: { hono: tandem.dependencies.hono ?? "^4", zod: tandem.dependencies.zod ?? "^4", [tandem.name]: dependency },
    devDependencies: { "@types/node": dev["@types/node"] ?? "^20", typescript: dev.typescript ?? "^5" },
    allowScripts,
  };
}

/**
 * The `allowScripts` key of a checkout that the project in `dir` depends on through a `file:` path: the path from the
 * project's `node_modules/`, where npm links it, one `../` more than the dependency's own. That is the key npm keeps a
 * linked folder's scripts under (`npm deny-scripts tandem` writes it so); denied by the dependency's own path, the
 * checkout's `prepare` still ran at every install of the project (npm 11.19).
 * @example linkedCheckoutKey("/src/apps/proj", "/src/tandem") // "file:../../../tandem", beside "tandem": "file:../../tandem"
 */
export function linkedCheckoutKey(dir: string, checkout: string): string {
  return `file:${posix(relative(join(dir, "node_modules"), checkout))}`;
}

function readme(app: string, from: string, link: boolean): string {
  const tandem = link
    ? `Tandem comes from the checkout at \`${from}\` (\`npm ci\` there first); \`npx tandem --help\` lists the commands, and Tandem's README has the rest.`
    : `Tandem comes from \`${from}\` (commit it, so \`npm ci\` works anywhere); \`npx tandem --help\` lists the commands, and Tandem's README has the rest.`;
  return `# ${app}\n\`npx tandem serve\` serves \`app.ts\` at http://127.0.0.1:8787 (an edge function, a plane function in Docker, a web endpoint); \`node client.mjs\` calls all three.\n${tandem}\n`;
}

async function writeGitignore(dir: string): Promise<void> {
  const path = join(dir, ".gitignore");
  const had = existsSync(path) ? await readFile(path, "utf8") : "";
  const lines = had.split(/\r?\n/);
  const missing = GITIGNORE.filter((line) => !lines.includes(line));
  if (missing.length === 0) return;
  await writeFile(path, `${had}${had && !had.endsWith("\n") ? "\n" : ""}${missing.join("\n")}\n`);
}

/** Runs npm to completion and returns what it printed on stdout; throws with its last lines when it fails. */
function npm(args: string[], cwd: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile("npm", args, { cwd, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolvePromise(stdout);
      const tail = String(stderr).trim().split("\n").slice(-10).join("\n");
      reject(new InvalidOptionsError(`npm ${args[0]} failed in ${cwd}${tail ? `:\n${tail}` : ` (${err.message})`}`));
    });
  });
}

/** `npm install` in the project, its output shown as it comes. */
function npmInstall(dir: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn("npm", ["install"], { cwd: dir, stdio: "inherit" });
    child.on("error", (err) => reject(new InvalidOptionsError(`could not run npm install in ${dir}: ${err.message}`)));
    child.on("exit", (code) =>
      code === 0
        ? resolvePromise()
        : reject(new InvalidOptionsError(`npm install failed in ${dir} (exit ${code}); fix what it said above, then run npm install there`)),
    );
  });
}

/** A relative path as package.json writes it, with forward slashes. */
function posix(path: string): string {
  return path.split(sep).join("/");
}
