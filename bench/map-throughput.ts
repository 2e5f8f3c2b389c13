/**
 * bench/map-throughput: `.map` over 1,000 and 10,000 small inputs on a plane
 * function with maxContainers 4 and concurrency.maxInputs 8, in inputs per
 * second, against the same work sent by a plain loop of concurrent HTTP calls
 * (32 in flight) to four bare containers of the same image, in one run.
 *
 *   npx tsx bench/map-throughput.ts [--tiny]
 */
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { DockerDriver } from "../gpu-plane/drivers/docker.js";
import type { StartedContainer } from "../gpu-plane/drivers/driver.js";
import { lookup } from "../sdk/index.js";
import { startTestStack } from "../test/helpers/stack.js";
import { freePort } from "../test/helpers/ports.js";
import { ADMIN_TOKEN } from "../test/helpers/gateway.js";
import { benchArgs, stateInMemory } from "./stats.js";

const here = dirname(fileURLToPath(import.meta.url));

const { tiny } = benchArgs(1);
console.log(stateInMemory());
const SIZES = tiny ? [100] : [1_000, 10_000];
const WORK = 200;
const IN_FLIGHT = 32;

// Both sides under runc: the bare containers are reached over loopback (host network), which gVisor, run here with
// its own network off, does not give a container; Tandem's containers use the same runtime, so the two compare.
const RUNTIME = "runc";
const stack = await startTestStack(join(here, "apps/map-app.ts"), { scaledownWindowSeconds: 600, dockerRuntime: RUNTIME });
const driver = new DockerDriver({ runtime: RUNTIME });
const bare: StartedContainer[] = [];
try {
  // Four bare containers of the same image, each a tiny HTTP server doing the same work (host network, loopback only).
  const dir = join(stack.dir, "bare");
  await mkdir(join(dir, "control"), { recursive: true });
  const script = join(dir, "server.mjs");
  const bundled = await build({ entryPoints: [join(here, "apps/work.ts")], bundle: true, write: false, format: "esm", platform: "node", logLevel: "silent" });
  const ports: number[] = [];
  for (let i = 0; i < 4; i++) ports.push(await freePort());
  await writeFile(
    script,
    `${bundled.outputFiles[0]!.text.replace(/export\s*{[^}]*};?/, "")}
import http from "node:http";
http.createServer((req, res) => { let b = ""; req.on("data", (c) => (b += c)); req.on("end", () => { res.end(JSON.stringify(work(Number(b)).sum)); }); })
  .listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"));
`,
  );
  for (const port of ports) {
    const container = await driver.start({
      id: `ctr-${randomBytes(4).toString("hex")}`,
      bundlePath: script,
      nodeModulesPath: undefined,
      controlDir: join(dir, "control"),
      env: { PORT: String(port) },
      cpu: 1,
      memoryMiB: 256,
      pidsLimit: 256,
      network: true,
      gpuDeviceIds: [],
      labels: { "tandem.plane": stack.planes[0]!.planeId },
    });
    bare.push(container);
    // Bounded: a port taken on the host since it was free ends the container, and the run says so.
    const lines: string[] = [];
    const listening = new Promise<void>((resolve) => container.onOutput((_s, line) => (line === "listening" ? resolve() : lines.push(line))));
    const failed = (why: string) => new Error(`a bare container on port ${port} ${why}${lines.length ? `: ${lines.slice(-3).join(" | ")}` : ""}`);
    await Promise.race([
      listening,
      container.exited.then(() => Promise.reject(failed("exited before it listened"))),
      new Promise((_, reject) => setTimeout(() => reject(failed("did not listen within 30 s")), 30_000).unref()),
    ]);
  }

  const small = lookup<[number], number>("mapbench", "small", { gateway: stack.url, token: ADMIN_TOKEN });
  for await (const _ of small.map(Array.from({ length: 64 }, () => WORK))) void _; // warm: four containers up

  console.log(
    `bench/map-throughput: Docker runtime ${RUNTIME}; work(${WORK}) per input; Tandem: maxContainers 4 x maxInputs 8; bare: 4 containers, ${IN_FLIGHT} HTTP calls in flight`,
  );
  console.log(`${"inputs".padStart(8)} ${"tandem .map/s".padStart(15)} ${"bare HTTP/s".padStart(13)} ${"ratio".padStart(7)}`);
  for (const n of SIZES) {
    const inputs = Array.from({ length: n }, () => WORK);
    let t0 = performance.now();
    let count = 0;
    for await (const _ of small.map(inputs, { orderOutputs: false })) count++;
    const tandem = count / ((performance.now() - t0) / 1000);

    t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < n) {
        const i = next++;
        const port = ports[i % ports.length]!;
        await (await fetch(`http://127.0.0.1:${port}/`, { method: "POST", body: String(WORK) })).json();
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    const plain = n / ((performance.now() - t0) / 1000);
    console.log(`${String(n).padStart(8)} ${tandem.toFixed(0).padStart(15)} ${plain.toFixed(0).padStart(13)} ${(plain / tandem).toFixed(2).padStart(7)}`);
  }
  console.log("ratio = bare / tandem (target at 10,000 inputs: <= 1.05; 1.19 when it was set, the first round's target within 1.3)");
} finally {
  for (const c of bare) await c.kill();
  await stack.dispose();
}
