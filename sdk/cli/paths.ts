/**
 * Where the installed Tandem package lives, and where a project keeps its
 * local state (`.tandem/` beside the app file's working directory).
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The package root: the folder holding Tandem's package.json. */
export const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

export const SDK_ENTRY = join(PACKAGE_ROOT, "sdk/index.ts");
export const SDK_DIST = join(PACKAGE_ROOT, "dist/index.js");
export const GATEWAY_ENTRY = join(PACKAGE_ROOT, "gateway/index.ts");

/** The project's local state folder, made on first use with a .gitignore so it is never committed. */
export function stateDir(cwd = process.cwd()): string {
  const dir = resolve(cwd, ".tandem");
  if (!existsSync(join(dir, ".gitignore"))) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, ".gitignore"), "# Local state of `tandem serve`: builds, the call ledger, blobs.\n*\n");
  }
  return dir;
}

function findPackageRoot(from: string): string {
  let dir = from;
  while (!existsSync(join(dir, "package.json")) || !existsSync(join(dir, "sdk"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find Tandem's package root above ${from}`);
    dir = up;
  }
  return dir;
}

/**
 * True when something other than a folder is at `path` (a file an `--outdir` names, say); false for a folder or nothing.
 * @example if (await notAFolder(outDir)) throw new InvalidOptionsError(`--outdir ${outDir} is a file`);
 */
export async function notAFolder(path: string): Promise<boolean> {
  return stat(path).then(
    (found) => !found.isDirectory(),
    () => false,
  );
}
