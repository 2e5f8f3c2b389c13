// The Tandem side of bench/volume: reads from a mounted volume, cold starts with and without a mount, a commit.
import { randomFillSync } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import { App, Volume } from "tandem";
import { readPasses } from "./read-passes.js";

const app = new App("volbench");
const data = Volume.fromName("bench-data");
const scratch = Volume.fromName("bench-scratch", { createIfMissing: true });

/** Reads `/vol/<path>` whole `passes` times (the first from disk, the rest from the page cache): ms per pass. */
export const readMounted = app.function(
  { cpu: 1, memory: 256, timeout: 600, volumes: { "/vol": data.subPath("read").readOnly() } },
  (path: string, passes: number) => readPasses(`/vol/${path}`, passes),
);

/** Cold starts: the same empty handler, without a mount and with the 1 GiB volume mounted. */
export const coldPlain = app.function({ cpu: 0.5, memory: 256 }, () => "ok");
export const coldMounted = app.function({ cpu: 0.5, memory: 256, volumes: { "/vol": data.subPath("cold").readOnly() } }, () => "ok");

/** Writes `mib` MiB of new random bytes into the mount, then commits: the commit's ms. */
export const commitNew = app.function({ cpu: 1, memory: 512, timeout: 600, volumes: { "/w": scratch } }, async (name: string, mib: number) => {
  const fd = openSync(`/w/${name}`, "w");
  const chunk = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < mib; i++) writeSync(fd, randomFillSync(chunk));
  closeSync(fd);
  const began = performance.now();
  await scratch.commit();
  return performance.now() - began;
});

export default app;
