/**
 * The bare side of the container benchmarks: one app function's handler,
 * bundled on its own into a script that a container runs with plain Node and
 * that prints the function's result, with no runner, plane or gateway.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { ContainerDriver, ContainerSpec, StartedContainer } from "../gpu-plane/drivers/driver.js";

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

/**
 * Bundles the script `entry` on its own into `outfile`, for a bare container to run with plain Node.
 * @example await buildBareEntry("bench/apps/bare-chain-runner.ts", "/tmp/bare/chain.mjs");
 */
export async function buildBareEntry(entry: string, outfile: string): Promise<void> {
  await build({ entryPoints: [entry], outfile, bundle: true, minify: true, format: "esm", platform: "node", target: "node20", logLevel: "silent" });
}

/**
 * Starts a bare script (`buildBareScript`) in a container of `driver` with the resources the benchmarks give a
 * function (1 CPU, 256 MiB), labelled for `planeId` so a plane's clean-up finds it, and answers the first line it
 * prints with the container, which the caller kills (inside or outside its timing).
 * @example const { line, container } = await startBareContainer(driver, { script, controlDir, planeId }); await container.kill();
 */
export async function startBareContainer(
  driver: ContainerDriver,
  options: { script: string; controlDir: string; planeId: string; env?: Record<string, string>; mounts?: ContainerSpec["mounts"] },
): Promise<{ line: string; container: StartedContainer }> {
  const container = await driver.start({
    id: `ctr-${randomBytes(4).toString("hex")}`,
    bundlePath: options.script,
    nodeModulesPath: undefined,
    controlDir: options.controlDir,
    env: options.env ?? {},
    cpu: 1,
    memoryMiB: 256,
    pidsLimit: 256,
    network: false,
    gpuDeviceIds: [],
    labels: { "tandem.plane": options.planeId, "tandem.bench": "bare" },
    ...(options.mounts ? { mounts: options.mounts } : {}),
  });
  const line = await new Promise<string>((resolve) => container.onOutput((_s, l) => resolve(l)));
  return { line, container };
}
