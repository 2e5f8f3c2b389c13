/**
 * Schedules fired from the edge, in real workerd: the Worker's scheduled
 * handler (the cron trigger) is invoked with chosen times, in 2030 so that no
 * real alarm interferes, and every run is checked in the call ledger.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CallRecord, ScheduleInfo } from "../sdk/index.js";
import { runCli, startServe, type Served } from "./helpers/cli.js";
import { LOG_LIMITS } from "../sdk/defaults.js";
import { authed, eventually, startTestGateway, type TestGateway } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

const T0 = Date.UTC(2030, 0, 7, 0, 0); // a Monday, 00:00 UTC
const MIN = 60_000;
let gw: TestGateway;

const schedules = async (): Promise<Record<string, ScheduleInfo>> => {
  const { schedules } = (await (await fetch(`${gw.url}/v1/schedules?app=crony`, authed())).json()) as { schedules: ScheduleInfo[] };
  return Object.fromEntries(schedules.map((s) => [s.function, s]));
};
const record = async (id: string): Promise<CallRecord> => (await (await fetch(`${gw.url}/v1/calls/${id}?wait=10000`, authed())).json()) as CallRecord;
/** The system lines of `fn` in the app's log, as `tandem logs crony --function fn --source system` shows them. */
const systemLines = async (fn: string): Promise<{ callId: string | null; text: string }[]> =>
  (await (await fetch(`${gw.url}/v1/apps/crony/logs?function=${fn}&source=system`, authed())).text())
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { callId: string | null; text: string });
const runs = (fn: string) => gw.output.filter((l) => new RegExp(`^\\[crony\\.${fn} fc-[0-9a-z]{26}\\] \\w+ ran$`).test(l)).length;

beforeAll(async () => {
  gw = await startTestGateway(new URL("./fixtures/cron-app.ts", import.meta.url).pathname);
});
afterAll(async () => {
  await gw?.dispose();
});

describe("schedules fired from the edge", () => {
  let first: Record<string, ScheduleInfo>;

  it("fires each due function once per scheduled time, however many times the handler is invoked", async () => {
    await Promise.all([gw.scheduled(T0), gw.scheduled(T0)]);
    await gw.scheduled(T0);
    first = await schedules();
    const minute = first.everyMinute!.lastRun!;
    expect(minute.scheduledAt).toBe(T0);
    const rec = await record(minute.callId);
    expect(rec).toMatchObject({ app: "crony", function: "everyMinute", kind: "scheduled", scheduledAt: T0, status: "succeeded", result: "ok" });
    await eventually(() => runs("everyMinute") > 0);
    await new Promise((resolve) => setTimeout(resolve, 20 * LOG_LIMITS.edgePrintMs)); // a second run's line would be printed by now
    expect(runs("everyMinute")).toBe(1);
    // Not due at T0: a Period's first run is one period after it is first seen; 09:30 in Paris is later.
    expect(first.hourly!.lastRun).toBeUndefined();
    expect(first.paris!.lastRun).toBeUndefined();
  });

  it("skips a run due while the previous one still runs (overlap skip), and fires it with overlap allow", async () => {
    await gw.scheduled(T0 + 5 * MIN); // the slow runs of T0 take 6 s
    const after = await schedules();
    expect(after.slowSkip!.lastRun!.scheduledAt).toBe(T0);
    expect(after.slowSkip!.skipped).toBe(1);
    expect(after.slowAllow!.lastRun!.scheduledAt).toBe(T0 + 5 * MIN);
    expect(after.slowAllow!.skipped).toBe(0);
    await eventually(() => runs("slowAllow") === 2);
    expect(runs("slowSkip")).toBe(1);
    await eventually(() =>
      gw.output.some((l) => l.includes("[crony.slowSkip] (system) scheduled run of 2030-01-07T00:05:00.000Z skipped: the run of 2030-01-07T00:00:00.000Z")),
    );
    // Printed once, as a system line (before: a second time without "(system)").
    expect(gw.output.filter((l) => l.includes("scheduled run of 2030-01-07T00:05:00.000Z skipped")).length).toBe(1);
    // Kept in the app's log too, where `tandem logs` and the dashboard read it.
    await eventually(async () =>
      (await systemLines("slowSkip")).some((l) => l.callId === null && l.text.startsWith("scheduled run of 2030-01-07T00:05:00.000Z skipped: the run of")),
    );
  });

  it("catches up a missed window once, counting the runs it missed", async () => {
    const after = await schedules();
    // everyMinute was due at 00:01 to 00:05: one run, for 00:05, and four missed.
    expect(after.everyMinute!.lastRun!.scheduledAt).toBe(T0 + 5 * MIN);
    expect(after.everyMinute!.missed).toBe(4);
    await record(after.everyMinute!.lastRun!.callId);
    await eventually(() =>
      gw.output.includes(
        `[crony.everyMinute ${after.everyMinute!.lastRun!.callId}] (system) scheduled run of 2030-01-07T00:05:00.000Z caught up once for 4 missed runs (nothing ticked meanwhile)`,
      ),
    );
    await eventually(async () =>
      (await systemLines("everyMinute")).some(
        (l) =>
          l.callId === after.everyMinute!.lastRun!.callId &&
          l.text === "scheduled run of 2030-01-07T00:05:00.000Z caught up once for 4 missed runs (nothing ticked meanwhile)",
      ),
    );
    await eventually(() => runs("everyMinute") === 2);
  });

  it("records a failed run with its error after the function's retries, and the next tick still fires", async () => {
    const failed = await record(first.flaky!.lastRun!.callId);
    expect(failed).toMatchObject({ kind: "scheduled", scheduledAt: T0, status: "failed", attempts: 2, error: { message: "the feed is down" } });
    // Nobody waits on a scheduled run: its failure is in the logs as well, named as the app threw it (as its kept line
    // and `tandem logs` name it), not by the wrapper the gateway carries it in.
    await eventually(() => gw.output.includes(`[crony.flaky ${failed.callId}] (system) failed after 2 attempts: Error: the feed is down`));
    expect(gw.output.filter((line) => line.includes("failed after 2 attempts")).length).toBe(1); // said once, not twice
    expect(gw.output.filter((line) => line.includes("RemoteError"))).toEqual([]);
    await gw.scheduled(T0 + 60 * MIN);
    const after = await schedules();
    expect(after.flaky!.lastRun!.callId).not.toBe(failed.callId);
    expect(after.flaky!.lastRun!.scheduledAt).toBe(T0 + 60 * MIN);
    expect((await record(after.flaky!.lastRun!.callId)).status).toBe("failed");
    // The Period: one hour after it was first seen.
    expect(after.hourly!.lastRun!.scheduledAt).toBe(T0 + 60 * MIN);
    // With its attempts: a run retried (or run again after its runner was lost) says so (before: only its status and time).
    expect((await schedules()).flaky!.lastRun).toMatchObject({ status: "failed", attempts: 2, error: { message: "the feed is down" } });
  });

  it("lists each schedule with its next three runs, in its timezone", async () => {
    const { paris, hourly, marchSundays } = await schedules();
    expect(paris).toMatchObject({ schedule: 'cron "30 9 * * MON-FRI" (Europe/Paris)', timezone: "Europe/Paris", overlap: "skip", skipped: 0, missed: 0 });
    // 09:30 in Paris in January is 08:30 UTC; Monday to Wednesday.
    expect(paris!.nextRuns.map((t) => new Date(t).toISOString())).toEqual(["2030-01-07T08:30:00.000Z", "2030-01-08T08:30:00.000Z", "2030-01-09T08:30:00.000Z"]);
    expect(hourly!.nextRuns).toEqual([T0 + 120 * MIN, T0 + 180 * MIN, T0 + 240 * MIN]);
    // Sundays in March at 02:30 New York time; on the 10th the clocks jump from 02:00 to 03:00, and it runs then.
    const sundays = ["2030-03-03T07:30:00.000Z", "2030-03-10T07:00:00.000Z", "2030-03-17T06:30:00.000Z"];
    expect(marchSundays!.nextRuns.map((t) => new Date(t).toISOString())).toEqual(sundays);
    const { code, stdout } = await runCli(["schedule", "list", "crony", "--gateway", gw.url]);
    expect(code).toBe(0);
    expect(stdout).toContain('crony::paris  cron "30 9 * * MON-FRI" (Europe/Paris)');
    expect(stdout).toContain("next      2030-01-07T08:30:00.000Z  2030-01-08T08:30:00.000Z  2030-01-09T08:30:00.000Z");
    expect(stdout).toContain(`crony::marchSundays  cron "30 2 * March sunday" (America/New_York)\n  next      ${sundays.join("  ")}`);
    expect(stdout).toMatch(
      /crony::flaky {2}cron "0 \* \* \* \*" \(UTC\)\n {2}next {6}2030-01-07T02:00:00.000Z.*\n {2}last run {2}failed in \d+ ms after 2 attempts \(fc-[0-9a-z]{26}, due 2030-01-07T01:00:00.000Z\): the feed is down/,
    );
  });

  it("fires one run now with tandem schedule trigger, and refuses a function without a schedule", async () => {
    const fired = await runCli(["schedule", "trigger", "crony::everyMinute", "--gateway", gw.url]);
    expect(fired.code).toBe(0);
    const id = /fired crony::everyMinute: (fc-[0-9a-z]{26})/.exec(fired.stdout)?.[1];
    expect(id).toBeDefined();
    expect(await record(id!)).toMatchObject({ kind: "scheduled", status: "succeeded" });
    const refused = await runCli(["schedule", "trigger", "crony::notScheduled", "--gateway", gw.url]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("crony.notScheduled has no schedule; call it with .remote() or .spawn()");
    const bad = await runCli(["schedule", "trigger", "crony", "--gateway", gw.url]);
    expect(bad.stderr).toContain('"crony" must be app::function');
    // A trigger takes no body: one with fields would have them ignored, so it is refused, and fires nothing.
    const before = ((await (await fetch(`${gw.url}/v1/schedules?app=crony`, authed())).json()) as { schedules: ScheduleInfo[] }).schedules;
    const withBody = await fetch(`${gw.url}/v1/apps/crony/functions/everyMinute/trigger`, authed({ method: "POST", body: JSON.stringify({ at: 1 }) }));
    expect(withBody.status).toBe(400);
    expect(((await withBody.json()) as { error: { message: string } }).error.message).toContain('"at"');
    const after = ((await (await fetch(`${gw.url}/v1/schedules?app=crony`, authed())).json()) as { schedules: ScheduleInfo[] }).schedules;
    expect(after).toEqual(before);
  });

  it("lists a failed run's error with its control characters as escapes, as tandem logs prints a function's text", async () => {
    const fired = await runCli(["schedule", "trigger", "crony::garbled", "--gateway", gw.url]);
    expect(fired.code).toBe(0);
    const id = /fired crony::garbled: (fc-[0-9a-z]{26})/.exec(fired.stdout)![1]!;
    expect(await record(id)).toMatchObject({ status: "failed" });
    const { code, stdout } = await runCli(["schedule", "list", "crony", "--gateway", gw.url]);
    expect(code).toBe(0);
    expect(stdout).toContain(`(${id}, due `);
    expect(stdout).toContain("): \\x1b[2J\\x1b]0;owned\\x07report\\rfailed\n");
    expect([...stdout].filter((ch) => (ch < " " && ch !== "\n") || ch === "\x7f")).toEqual([]);
  });
});

describe("tandem serve: a schedule taken out of the app, then put back", () => {
  let dir: string;
  let served: Served;
  const source = (scheduled: boolean) =>
    [
      'import { App, Period } from "tandem";',
      'const app = new App("comeback");',
      `export const pulse = app.function(${scheduled ? "{ schedule: Period({ seconds: 2 }) }, " : ""}() => console.log("pulse ran"));`,
      "export default app;",
    ].join("\n");
  const reloads = () => served.output().match(/reloaded in/g)?.length ?? 0;
  const pulses = () => served.output().match(/\[comeback\.pulse fc-[0-9a-z]{26}\] pulse ran/g)?.length ?? 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tandem-schedule-comeback-"));
    await writeFile(join(dir, "app.ts"), source(true));
    served = await startServe(["app.ts"], dir);
  });
  afterAll(async () => {
    await served?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("counts from when it is put back, and catches up none of the runs due while it was gone", async () => {
    await eventually(() => pulses() > 0, 20_000);
    await writeFile(join(dir, "app.ts"), source(false));
    await eventually(() => reloads() === 1, 20_000);
    await served.waitFor("schedule: comeback/pulse is no longer scheduled");
    const before = pulses();
    await new Promise((resolve) => setTimeout(resolve, 5000)); // two due times pass with no schedule
    expect(pulses()).toBe(before);
    const putBack = Date.now();
    await writeFile(join(dir, "app.ts"), source(true));
    await eventually(() => reloads() === 2, 20_000);
    await eventually(() => pulses() > before, 20_000);
    expect(served.output()).not.toContain("caught up once");
    const { code, stdout } = await runCli(["schedule", "list", "comeback", "--gateway", served.url], { cwd: dir });
    expect(code).toBe(0);
    expect(stdout).not.toContain("missed while nothing ticked");
    const due = new Date(/due (\S+Z)\)/.exec(stdout)![1]!).getTime();
    expect(due).toBeGreaterThan(putBack); // the first run of the schedule put back, one period after it
  });
});

describe("examples/cron: a plane function fired from an edge tick (real Docker)", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack(new URL("../examples/cron/app.ts", import.meta.url).pathname);
  });
  afterAll(async () => {
    await stack?.dispose();
  });

  it("runs the daily Period in a plane container, recorded as a scheduled call", async () => {
    const tick = async (at: number) => (await stack.workerd.miniflare.getWorker()).scheduled({ scheduledTime: new Date(at), cron: "* * * * *" });
    const list = async () => ((await (await fetch(`${stack.url}/v1/schedules?app=cron`, authed())).json()) as { schedules: ScheduleInfo[] }).schedules;
    await tick(T0);
    expect((await list()).find((s) => s.function === "refreshModelCache")!.lastRun).toBeUndefined();
    await tick(T0 + 24 * 60 * MIN);
    const run = (await list()).find((s) => s.function === "refreshModelCache")!.lastRun!;
    expect(run.scheduledAt).toBe(T0 + 24 * 60 * MIN);
    const rec = (await (await fetch(`${stack.url}/v1/calls/${run.callId}?wait=30000`, authed())).json()) as CallRecord;
    expect(rec).toMatchObject({ kind: "scheduled", status: "succeeded", result: { bytes: 4349, tokens: expect.any(Number) } });
    expect((rec.result as { sha256: string }).sha256).toMatch(/^[0-9a-f]{64}$/);
    await eventually(() =>
      stack.planeOutput.some((l) =>
        new RegExp(`\\[cron\\.refreshModelCache ${run.callId} ctr-[0-9a-f]{8}\\] model cache refreshed in /tmp/model-cache: 4349 bytes`).test(l),
      ),
    );
    // The edge job ran at the edge on the same tick (00:00 is on its five minutes).
    const heartbeat = (await list()).find((s) => s.function === "heartbeat")!;
    expect(heartbeat.lastRun!.scheduledAt).toBe(T0 + 24 * 60 * MIN);
  });
});
