/**
 * bench/fault-run: the fault run at full size, on demand. 2,000 spawned plane
 * calls and 300 edge calls through `tandem serve`, killed with SIGKILL
 * mid-load and started again; prints what was lost, what ran twice, and the
 * records' attempts against the real runs. A measurement of delivery, not a
 * comparison with a bare runtime (test/fault-run.test.ts runs it small in CI).
 *
 *   npx tsx bench/fault-run.ts [--n 2000] [--tiny]
 */
import { runFaultRun, type TierReport } from "../test/helpers/fault-run.js";
import { benchArgs } from "./stats.js";

const { n } = benchArgs(2000);
const report = await runFaultRun({
  planeCalls: n,
  edgeCalls: Math.round(n * 0.15),
  planeWorkMs: 2_000,
  edgeWorkMs: 8_000,
  killAtShare: 0.3,
  log: (line) => console.log(`  ${line}`),
});

const row = (name: string, t: TierReport) =>
  `${name.padEnd(6)} ${String(t.calls).padStart(6)} ${String(t.succeeded).padStart(9)} ${String(t.lost).padStart(5)} ${String(t.duplicated).padStart(10)} ${String(t.executions).padStart(10)} ${String(t.attempts).padStart(8)} ${String(t.attemptsMismatched.length).padStart(10)}`;
console.log(
  `\nkilled serve with ${report.planeBegunAtKill} plane calls begun and ${report.edgeBegunAtKill} edge calls under way; down ${report.downMs} ms; all ended after ${report.totalMs} ms`,
);
console.log(`the plane answered ${report.answeredAgain} resumed requests without running them again; workerd left over: ${report.workerdLeftOver}`);
console.log(`\ntier    calls succeeded  lost duplicated executions attempts mismatched`);
console.log(row("plane", report.plane));
console.log(row("edge", report.edge));
console.log(`runs per call: plane ${JSON.stringify(report.plane.runs)}, edge ${JSON.stringify(report.edge.runs)}`);
for (const line of [...report.plane.attemptsMismatched, ...report.edge.attemptsMismatched].slice(0, 10)) console.log(`  mismatch: ${line}`);
const ok =
  report.plane.lost === 0 &&
  report.plane.duplicated === 0 &&
  report.edge.lost === 0 &&
  report.plane.attemptsMismatched.length + report.edge.attemptsMismatched.length === 0;
console.log(ok ? "\nresult: no plane call lost or run twice; every record's attempts equal its runs" : "\nresult: FAILED");
process.exit(ok ? 0 : 1);
