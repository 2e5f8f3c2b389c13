/**
 * Runs every benchmark in this folder, one after another, passing on the
 * arguments (`--tiny` for CI's smoke run, `--n <count>`).
 *
 *   npm run bench [-- --tiny]
 */
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const BENCHMARKS = [
  "edge-call.ts",
  "secret-call.ts",
  "plane-warm.ts",
  "plane-cold.ts",
  "map-throughput.ts",
  "wasm-cold.ts",
  "ws-agent.ts",
  "dict-queue.ts",
  "cli-run.ts",
  "volume.ts",
  "plane-heartbeat.ts",
];

let failed = 0;
for (const file of BENCHMARKS) {
  console.log(`\n== bench/${file}`);
  const run = spawnSync(process.execPath, ["--import", "tsx", join(here, file), ...process.argv.slice(2)], { stdio: "inherit" });
  if (run.status !== 0) {
    failed++;
    console.error(`bench/${file} exited with ${run.status}`);
  }
}
process.exit(failed ? 1 : 0);
