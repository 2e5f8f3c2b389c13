/**
 * The bare side of the container benchmarks: one app function's handler,
 * bundled on its own into a script that a container runs with plain Node and
 * that prints the function's result, with no runner, plane or gateway.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));

/**
 * Bundles `appFile`'s export `exportName`, called locally with `arg`, into `outfile`.
 * @example await buildBareScript("bench/apps/plane-work-app.ts", "compute", 1000, "/tmp/bare/bare.mjs");
 */
export async function buildBareScript(appFile: string, exportName: string, arg: number, outfile: string): Promise<void> {
  await build({
    stdin: {
      contents: `import { ${exportName} } from ${JSON.stringify(appFile)};\nconsole.log(JSON.stringify(await ${exportName}.local(${arg})));`,
      resolveDir: root,
      loader: "ts",
    },
    outfile,
    bundle: true,
    minify: true,
    format: "esm",
    platform: "node",
    target: "node20",
    alias: { tandem: join(root, "sdk/index.ts") },
    logLevel: "silent",
  });
}
