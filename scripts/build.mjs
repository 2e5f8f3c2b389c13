// Builds the Node side of the package into dist/: the SDK (dist/index.js,
// with type declarations under dist/types) and the CLI (dist/cli.js).
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { chmodSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
await build({
  entryPoints: { index: "sdk/index.ts", cli: "sdk/cli/main.ts" },
  outdir: "dist",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  packages: "external",
  sourcemap: true,
  logLevel: "warning",
  banner: { js: "" },
});
chmodSync("dist/cli.js", 0o755);
execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.sdk.json"], { stdio: "inherit" });
