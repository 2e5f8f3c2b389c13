/**
 * The fault run, small enough for CI: 200 spawned plane calls and 30 edge
 * calls through a real `tandem serve`, which is killed with SIGKILL while
 * they run and started again. No plane call is lost or runs twice (the plane
 * answers the restarted gateway for the attempts it ran); edge calls under
 * way run again; every record's `attempts` is how many times its call really
 * ran. `npx tsx bench/fault-run.ts` runs the full 2,000.
 */
import { expect, it } from "vitest";
import { runFaultRun } from "./helpers/fault-run.js";

it("loses and repeats no plane call when serve is killed mid-load, and records every run", { timeout: 420_000 }, async () => {
  const report = await runFaultRun({ planeCalls: 200, edgeCalls: 30, planeWorkMs: 2_000, edgeWorkMs: 10_000, killAtShare: 0.25 });
  expect(report.plane).toMatchObject({ calls: 200, succeeded: 200, lost: 0, duplicated: 0, executions: 200, attemptsMismatched: [] });
  // The fault came mid-load: the restarted gateway took calls over, and the plane answered for those it had, without running them.
  expect(report.answeredAgain).toBeGreaterThan(0);
  expect(report.edge).toMatchObject({ calls: 30, succeeded: 30, lost: 0, attemptsMismatched: [] });
  // Every edge call was under way at the fault: each ran again, and its record says so (attempts equal runs, above).
  expect(report.edgeBegunAtKill).toBe(30);
  expect(report.edge).toMatchObject({ duplicated: 30, executions: 60, attempts: 60 });
  expect(report.workerdLeftOver).toBe(false); // the killed serve's workerd ended with it
});
