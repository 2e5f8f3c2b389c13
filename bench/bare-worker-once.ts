/**
 * The bare side of bench/cli-run's edge rows, run as a process of its own as
 * `tandem run` is: bundle a bare Worker doing the same work, start it on the
 * same workerd (bench/bare-worker.ts), make one request, print the answer,
 * stop.
 *
 *   npx tsx bench/bare-worker-once.ts <worker.ts> <out-dir> <path>
 */
import { startBareWorker } from "./bare-worker.js";

const [entry, outDir, path] = process.argv.slice(2);
if (!entry || !outDir || !path) throw new Error("usage: bare-worker-once.ts <worker.ts> <out-dir> <path>");
const bare = await startBareWorker(entry, outDir);
try {
  console.log(JSON.stringify(await (await fetch(`${bare.url}${path}`)).json()));
} finally {
  await bare.dispose();
}
