/**
 * bench/wasm-cold: in one run,
 *   (a) instantiate + run of a small WASI function (examples/wasm/fib.as.ts, fib(50)), per call, inside workerd,
 *       through the same handler the gateway uses (wasm/function.ts: fresh instance, JSON on stdin and stdout);
 *   (b) the same logic as a plain TypeScript function, per call, in the same isolate;
 *   (c) a cold plane container running the same module (tier: "plane"), call to result, image cached.
 * Reports (a) in µs and the ratios a/b and c/a. workerd's clock has a 1 ms resolution, so each (a) and (b)
 * sample is the mean of a batch of calls long enough (>= 20 ms) for the clock to resolve it.
 *
 *   npx tsx bench/wasm-cold.ts [--n 40] [--tiny]
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { lookup } from "../sdk/index.js";
import { eventually } from "../test/helpers/gateway.js";
import { startTestStack } from "../test/helpers/stack.js";
import { ADMIN_TOKEN } from "../test/helpers/gateway.js";
import { prepareModule } from "../wasm/prepare.js";
import { benchArgs, printTable, stateInMemory, summarize } from "./stats.js";

const here = dirname(fileURLToPath(import.meta.url));
const { n, tiny } = benchArgs(40, 5);
console.log(stateInMemory());
const coldN = tiny ? 2 : 10;
const N = 50;
const dir = await mkdtemp(join(tmpdir(), "tandem-bench-wasm-"));

// The module exactly as `tandem serve` ships it: compiled, checked, instrumented.
const wasmPath = join(dir, "fib.wasm");
await prepareModule(join(here, "../examples/wasm/fib.as.ts"), wasmPath, { source: true, name: "fib.as.ts", maxMemoryPages: 4096 });

const worker = await build({
  stdin: {
    contents: `import { wasmFunction } from ${JSON.stringify(join(here, "../wasm/function.ts"))};
import { parseWasmOptions, parseWasmSource } from ${JSON.stringify(join(here, "../sdk/options.ts"))};
import fibModule from "./fib.wasm";
const definition = { name: "fib", ...parseWasmSource({ module: "./fib.wasm" }, "fib"), ...parseWasmOptions({}, "fib") };
const fibWasm = wasmFunction("bench", definition, fibModule);
function fibTs(n) { let a = 0, b = 1; for (let i = 0; i < n; i++) [a, b] = [b, a + b]; return a; }
// Mean µs per call over batches of at least 20 ms (the isolate's clock moves in whole ms).
function measure(fn, samples) {
  let batch = 1;
  for (;;) { const t = Date.now(); for (let i = 0; i < batch; i++) fn(${N}); if (Date.now() - t >= 20) break; batch *= 2; }
  const out = [];
  for (let s = 0; s < samples; s++) {
    const t = Date.now();
    for (let i = 0; i < batch; i++) fn(${N});
    out.push(((Date.now() - t) * 1000) / batch);
  }
  return { batch, samples: out };
}
export default { async fetch(request) {
  const url = new URL(request.url);
  const side = url.searchParams.get("side");
  const samples = Number(url.searchParams.get("samples"));
  if (side === "check") return Response.json({ wasm: fibWasm(${N}), ts: fibTs(${N}) });
  return Response.json(measure(side === "wasm" ? fibWasm : fibTs, samples));
} };`,
    resolveDir: dir,
    loader: "js",
  },
  bundle: true,
  write: false,
  format: "esm",
  // "browser": packages' browser maps apply (cron-parser's file reader is left out), as in the gateway's bundle.
  platform: "browser",
  external: ["*.wasm"],
  logLevel: "silent",
});
const mf = new Miniflare({
  modules: [
    { type: "ESModule", path: "worker.mjs", contents: worker.outputFiles[0]!.text },
    { type: "CompiledWasm", path: "fib.wasm", contents: await readFile(wasmPath) },
  ],
  compatibilityDate: "2025-09-01",
  cf: false,
});
const stack = await startTestStack(join(here, "apps/wasm-app.ts"), { scaledownWindowSeconds: 0.001 });
try {
  const check = (await (await mf.dispatchFetch("http://bench/?side=check")).json()) as { wasm: number; ts: number };
  const fibPlane = lookup<[number], number>("wasmbench", "fibPlane", { gateway: stack.url, token: ADMIN_TOKEN });
  if (check.wasm !== check.ts || (await fibPlane.remote(N)) !== check.ts) throw new Error(`the sides disagree: ${JSON.stringify(check)}`);

  const inIsolate = async (side: string) =>
    (await (await mf.dispatchFetch(`http://bench/?side=${side}&samples=${n}`)).json()) as { batch: number; samples: number[] };
  await inIsolate("wasm"); // warm-up: the isolate's JIT
  await inIsolate("ts");
  const a = await inIsolate("wasm");
  const b = await inIsolate("ts");
  const plane = stack.planes[0]!;
  const c: number[] = [];
  for (let i = 0; i < coldN; i++) {
    await eventually(() => plane.status().containers.length === 0, 10_000);
    const t0 = performance.now();
    await fibPlane.remote(N);
    c.push(performance.now() - t0);
  }
  const ms = (us: number[]) => us.map((x) => x / 1000);
  const rows = [
    summarize(`(a) wasm instantiate + run, in workerd`, ms(a.samples)),
    summarize(`(b) the same logic in TypeScript, in workerd`, ms(b.samples)),
    summarize(`(c) cold plane container, same module`, c),
  ];
  console.log(
    `bench/wasm-cold: fib(${N}); (a) ${n} batches of ${a.batch} calls, (b) ${n} batches of ${b.batch}, (c) ${coldN} cold calls${tiny ? " (tiny)" : ""}`,
  );
  printTable(rows);
  const [ra, rb, rc] = rows as [(typeof rows)[0], (typeof rows)[0], (typeof rows)[0]];
  console.log(
    `(a) per call: median ${(ra.medianMs * 1000).toFixed(1)} µs, p99 ${(ra.p99Ms * 1000).toFixed(1)} µs   (target: median < 40 µs; 58.6 µs before the host gave modules their memory)`,
  );
  console.log(`(b) per call: median ${(rb.medianMs * 1000).toFixed(2)} µs, p99 ${(rb.p99Ms * 1000).toFixed(2)} µs`);
  console.log(`ratio a/b: median ${(ra.medianMs / rb.medianMs).toFixed(1)}   ratio c/a: median ${(rc.medianMs / ra.medianMs).toFixed(0)}`);
} finally {
  await mf.dispose();
  await stack.dispose();
  await rm(dir, { recursive: true, force: true });
}
