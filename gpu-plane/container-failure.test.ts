import { describe, expect, it } from "vitest";
import type { Worker } from "./container-pool.js";
import { exitFailure, exitLine } from "./container-failure.js";

// A container as the plane knows it, with only what its failures read (logic only: no container runs here).
const worker = { label: "app.f", id: "ctr-1a2b3c4d", stopping: false, logTail: ["working"], reservation: { memoryMiB: 256 } } as unknown as Worker;

describe("a container that exited under a call", () => {
  it("says a crash with its exit code, and an exit with code 0 as the app's code ending its process, not a crash", () => {
    expect(exitFailure(worker, { code: 3, oomKilled: false }, "during the call").message).toMatch(
      /^app\.f container ctr-1a2b3c4d crashed with exit code 3 during the call; last log lines:\nworking$/,
    );
    const exited = exitFailure(worker, { code: 0, oomKilled: false }, "during the call");
    expect(exited.message).toMatch(
      /^app\.f container ctr-1a2b3c4d exited with code 0 \(the app's code ended its process, as process\.exit\(\) does\) during the call;/,
    );
    expect(exited.details).toMatchObject({ reason: "crashed", exitCode: 0 });
    expect(exitLine(worker, { code: 0, oomKilled: false }, 0)).toBe(
      "app.f container ctr-1a2b3c4d exited with code 0 (the app's code ended its process, as process.exit() does); the next call starts a new container",
    );
  });

  it("says why the plane stopped a container under a call, where it says, rather than the runner's exit code", () => {
    const stopped = { ...worker, stopping: true, stoppingWhy: "as the plane shut down" } as Worker;
    expect(exitFailure(stopped, { code: 0, oomKilled: false }, "during the call").message).toMatch(
      /^app\.f container ctr-1a2b3c4d was stopped by the plane as the plane shut down during the call;/,
    );
    expect(exitFailure({ ...worker, stopping: true } as Worker, { code: 0, oomKilled: false }, "during the call").message).toMatch(
      /^app\.f container ctr-1a2b3c4d was stopped by the plane \(exit code 0\) during the call;/,
    );
  });
});
