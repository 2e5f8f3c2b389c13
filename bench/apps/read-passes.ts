// Reading a file whole, the same code on both sides of bench/volume (a mounted volume, a bind-mounted folder).
import { closeSync, openSync, readSync } from "node:fs";

/** Reads `path` whole `passes` times through one 8 MiB buffer: ms per pass. */
export function readPasses(path: string, passes: number): number[] {
  const buffer = Buffer.alloc(8 * 1024 * 1024);
  const times: number[] = [];
  for (let p = 0; p < passes; p++) {
    const began = performance.now();
    const fd = openSync(path, "r");
    while (readSync(fd, buffer, 0, buffer.length, null) > 0);
    closeSync(fd);
    times.push(performance.now() - began);
  }
  return times;
}
