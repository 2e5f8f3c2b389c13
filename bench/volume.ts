/**
 * bench/volume: volumes mounted on the plane, each side by side with its bare
 * baseline in one run (docs/volumes.md):
 * (a) reading a file inside a container from a mounted volume, against the
 *     same read of the same bytes from a plain bind-mounted host folder in a
 *     bare container of the same image (target: throughput ratio >= 0.9);
 * (b) the cold start of a container that mounts a volume already in the
 *     plane's cache, against the same function without it (target: <= 50 ms
 *     more at the median);
 * (c) a commit of new data from a container, against `cp` of the same number
 *     of bytes into the local R2 store's folder, as a throughput ratio.
 * Full size: a 512 MiB file, a 1 GiB volume (8 files), 256 MiB committed;
 * `--tiny`: 32 MiB, 64 MiB, 16 MiB. The volume's files repeat one random
 * 8 MiB block, so it is uploaded once (the store keeps each block once); on
 * the plane's disk each file is whole.
 *
 *   npx tsx bench/volume.ts [--n 10] [--tiny]
 */
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, readdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { DockerDriver } from "../gpu-plane/drivers/docker.js";
import { startBareContainer } from "./bare-script.js";
import { Volume, lookup } from "../sdk/index.js";
import { VOLUME_LIMITS } from "../sdk/defaults.js";
import { paths } from "../sdk/protocol.js";
import { ADMIN_TOKEN, eventually } from "../test/helpers/gateway.js";
import { startTestStack } from "../test/helpers/stack.js";
import { benchArgs, printTable, summarize } from "./stats.js";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const { n, tiny } = benchArgs(10, 2);
const MiB = 1024 * 1024;
const READ_MIB = tiny ? 32 : 512;
const COLD_MIB = tiny ? 64 : 1024;
const COMMIT_MIB = tiny ? 16 : 256;
const PASSES = tiny ? 3 : 4;
const BLOCK = VOLUME_LIMITS.blockBytes;

const stack = await startTestStack(join(here, "apps/volume-app.ts"), { scaledownWindowSeconds: 0.001 });
const plane = stack.planes[0]!;
const driver = new DockerDriver();
const fn = <A extends unknown[], R>(name: string) => lookup<A, R>("volbench", name, { gateway: stack.url, token: ADMIN_TOKEN });
const api = (method: string, path: string, body?: Uint8Array<ArrayBuffer> | string) =>
  fetch(stack.url + path, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, ...(body ? { body } : {}) }).then(async (res) => {
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${await res.text()}`);
    return res;
  });
const quiet = () => eventually(() => plane.status().containers.length === 0, 20_000);

try {
  // The volume: one random block, files that repeat it.
  await Volume.create("bench-data", { gateway: stack.url, token: ADMIN_TOKEN, existOk: true });
  const block = new Uint8Array(randomBytes(BLOCK));
  const hash = createHash("sha256").update(block).digest("hex");
  await api("PUT", paths.volumeBlock("bench-data", hash), block);
  const put = (path: string, mib: number) => ({ op: "put", path, blocks: new Array<string>((mib * MiB) / BLOCK).fill(hash), size: mib * MiB });
  const coldFiles = Array.from({ length: 8 }, (_, i) => put(`cold/part-${i}.bin`, COLD_MIB / 8));
  await api("POST", paths.volumeCommit("bench-data"), JSON.stringify({ changes: [put("read/data.bin", READ_MIB), ...coldFiles] }));

  // The bare side of (a): the same bytes in a host folder, bind-mounted read-only into a bare container that runs
  // the same read loop with plain Node.
  const bareDir = join(stack.dir, "bare");
  await mkdir(join(bareDir, "control"), { recursive: true });
  await mkdir(join(bareDir, "data"), { recursive: true });
  const file = await open(join(bareDir, "data", "data.bin"), "w");
  for (let i = 0; i < (READ_MIB * MiB) / BLOCK; i++) await file.write(block);
  await file.close();
  const bareScript = join(bareDir, "read.mjs");
  await build({
    stdin: {
      contents: `import { readPasses } from "./bench/apps/read-passes.ts";\nconsole.log(JSON.stringify(readPasses(process.env.FILE, Number(process.env.PASSES))));`,
      resolveDir: root,
      loader: "ts",
    },
    outfile: bareScript,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    logLevel: "silent",
  });
  await driver.prepare();
  const bareRead = async (): Promise<number[]> => {
    const { line, container } = await startBareContainer(driver, {
      script: bareScript,
      controlDir: join(bareDir, "control"),
      planeId: plane.planeId,
      env: { FILE: "/bare/data.bin", PASSES: String(PASSES) },
      mounts: [{ hostPath: join(bareDir, "data"), containerPath: "/bare", readOnly: true }],
    });
    await container.kill();
    return JSON.parse(line) as number[];
  };

  // (a) Reads: every pass after the first of each container (the page cache holds the file for both sides).
  const readMounted = fn<[string, number], number[]>("readMounted");
  await readMounted.remote("data.bin", 1); // the plane's cache filled, outside the timing
  const reads: number[][] = [[], []];
  for (let i = 0; i < n; i++) {
    await quiet();
    reads[0]!.push(...(await readMounted.remote("data.bin", PASSES)).slice(1));
    reads[1]!.push(...(await bareRead()).slice(1));
  }
  const readRows = [summarize(`(a) read ${READ_MIB} MiB: mounted volume`, reads[0]!), summarize(`(a) read ${READ_MIB} MiB: bind-mounted folder`, reads[1]!)];

  // (b) Cold starts with and without the cached volume mounted.
  const coldPlain = fn<[], string>("coldPlain");
  const coldMounted = fn<[], string>("coldMounted");
  await quiet();
  await coldMounted.remote(); // the cache filled, outside the timing
  const colds: number[][] = [[], []];
  for (let i = 0; i < n; i++) {
    for (const [k, f] of [coldPlain, coldMounted].entries()) {
      await quiet();
      const began = performance.now();
      await f.remote();
      colds[k]!.push(performance.now() - began);
    }
  }
  const coldRows = [summarize("(b) cold start, no volume", colds[0]!), summarize(`(b) cold start, ${COLD_MIB} MiB volume cached`, colds[1]!)];

  // (c) A commit of new bytes, against cp of as many bytes into the local R2 store's folder.
  const commitNew = fn<[string, number], number>("commitNew");
  const r2 = (await findDir(join(stack.dir, "state"), "r2")) ?? join(stack.dir, "state");
  const source = join(bareDir, "commit-source.bin");
  await writeFile(source, randomBytes(COMMIT_MIB * MiB));
  const commits: number[][] = [[], []];
  const runs = tiny ? 1 : 3;
  for (let i = 0; i < runs; i++) {
    await quiet();
    commits[0]!.push(await commitNew.remote(`new-${i}.bin`, COMMIT_MIB));
    const target = join(r2, `bench-cp-${i}.bin`);
    const began = performance.now();
    execFileSync("cp", [source, target]);
    commits[1]!.push(performance.now() - began);
    await rm(target, { force: true });
  }
  const commitRows = [summarize(`(c) commit ${COMMIT_MIB} MiB new data`, commits[0]!), summarize(`(c) cp ${COMMIT_MIB} MiB into the R2 folder`, commits[1]!)];

  console.log(`bench/volume: ${n} containers per side${tiny ? " (tiny)" : ""}; ${PASSES - 1} timed reads each; ${runs} commit(s)`);
  printTable([...readRows, ...coldRows, ...commitRows]);
  const mibps = (ms: number, mib: number) => ((mib * 1000) / ms).toFixed(0);
  console.log(
    `(a) read: ${mibps(readRows[0]!.medianMs, READ_MIB)} MiB/s mounted, ${mibps(readRows[1]!.medianMs, READ_MIB)} MiB/s bind mount; ratio ${(readRows[1]!.medianMs / readRows[0]!.medianMs).toFixed(3)}   (target >= 0.9)`,
  );
  console.log(`(b) cold start: +${(coldRows[1]!.medianMs - coldRows[0]!.medianMs).toFixed(1)} ms at the median with the volume mounted   (target <= 50 ms)`);
  const mounts = stack.planeOutput.flatMap((l) => {
    const m = /at \/vol \(read-only\): 8 file\(s\), 0 block\(s\) downloaded, in (\d+) ms \((\d+) ms asking the gateway\)/.exec(l);
    return m ? [[Number(m[1]), Number(m[2])] as const] : [];
  });
  if (mounts.length) {
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(
      `    of which the plane readying the mount: median ${median(mounts.map((m) => m[0]))} ms, ${median(mounts.map((m) => m[1]))} ms of it asking the gateway for the manifest`,
    );
  }
  console.log(
    `(c) commit: ${mibps(commitRows[0]!.medianMs, COMMIT_MIB)} MiB/s, cp ${mibps(commitRows[1]!.medianMs, COMMIT_MIB)} MiB/s; ratio ${(commitRows[1]!.medianMs / commitRows[0]!.medianMs).toFixed(3)}`,
  );
} finally {
  await stack.dispose();
  await driver.cleanup(plane.planeId).catch(() => {});
}

/** The first folder named `name` under `dir` (miniflare keeps R2 in one). */
async function findDir(dir: string, name: string): Promise<string | undefined> {
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isDirectory() && entry.name === name) return join(entry.parentPath, entry.name);
  }
  return undefined;
}
