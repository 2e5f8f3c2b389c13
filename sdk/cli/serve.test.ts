/** What `tandem serve` prints: workerd's lines that tell of nothing wrong left out, and each schedule's real next run. */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { App } from "../app.js";
import { Period } from "../schedule.js";
import { anotherServeHere, isHarmlessWorkerdLine, printEndpoints, requestLine, restartDelayMs, stepsInTime } from "./serve.js";

it("leaves out workerd's line for an answer its client left early, and keeps every other error", () => {
  expect(
    isHarmlessWorkerdLine(
      "workerd/server/server.c++:5351: error: kj::getCaughtExceptionAsKj() = kj/async-io-unix.c++:186: disconnected: ::write(fd, buffer, size): Broken pipe",
    ),
  ).toBe(true);
  expect(isHarmlessWorkerdLine("workerd/server/server.c++:5351: error: x = kj/async-io-unix.c++:491: disconnected: ::read(): Connection reset by peer")).toBe(
    true,
  );
  for (const line of [
    "workerd/server/server.c++:4200: error: Uncaught exception: Error: boom",
    "workerd/io/worker.c++:2050: error: disconnected: the Durable Object's isolate was reset",
    "[shop.resize fc-01m8kahk46m9azssadeq4z196a] Broken pipe while uploading",
  ])
    expect(isHarmlessWorkerdLine(line), line).toBe(false);
});

it("leaves out workerd's warning for an alarm handler cancelled because the object set its next alarm meanwhile", () => {
  expect(
    isHarmlessWorkerdLine(
      "workerd/io/actor-sqlite.c++:970: warning: NOSENTRY SQLite alarm handler canceled with requestScheduledAlarm.; scheduledTime = 1767225600000; newTime = 1767225620000",
    ),
  ).toBe(true);
  expect(isHarmlessWorkerdLine("workerd/io/actor-sqlite.c++:970: warning: NOSENTRY SQLite database is corrupt")).toBe(false);
});

it("prints when each schedule runs next as the gateway keeps it, not one period from now", () => {
  const app = new App("beat");
  app.function({ name: "heartbeat", schedule: Period({ seconds: 20 }) }, () => {});
  app.function({ name: "hourly", schedule: Period({ hours: 1 }) }, () => {});
  const now = Date.parse("2026-01-01T00:00:00Z");
  const lines: string[] = [];
  printEndpoints([app], new URL("http://127.0.0.1:8787/"), (line) => lines.push(line), new Map([["beat.heartbeat", now + 6_200]]), now);
  expect(lines.find((l) => l.includes("heartbeat") && l.includes("schedule"))).toMatch(/every 20s, next in 7s$/);
  // One the gateway did not list (it could not be asked): counted from now.
  expect(lines.find((l) => l.includes("hourly") && l.includes("schedule"))).toMatch(/every 1h, next in 1h$/);
});

it("warns of a scheduled handler that takes parameters with no default, which every scheduled run gets undefined for", () => {
  // Before, it loaded without a word, and every run failed (`TypeError: Cannot read properties of undefined`).
  const app = new App("jobs");
  app.function({ name: "needsArg", schedule: Period({ seconds: 20 }) }, (name: string) => name.toUpperCase());
  app.function({ name: "two", schedule: Period({ seconds: 20 }) }, (a: string, b: number) => a.repeat(b));
  app.function({ name: "defaulted", schedule: Period({ seconds: 20 }) }, (day = "today") => day);
  app.function({ name: "none", schedule: Period({ seconds: 20 }) }, () => "ok");
  app.function({ name: "unscheduled" }, (name: string) => name);
  const lines: string[] = [];
  printEndpoints([app], new URL("http://127.0.0.1:8787/"), (line) => lines.push(line));
  const warnings = lines.filter((l) => l.includes("⚠"));
  expect(warnings).toEqual([
    expect.stringContaining(
      "a schedule calls needsArg with no arguments, and its handler takes a parameter with no default: each scheduled run gets undefined for it",
    ),
    expect.stringContaining("a schedule calls two with no arguments, and its handler takes 2 parameters with no default"),
  ]);
  // Each under its own schedule's line.
  expect(lines[lines.indexOf(warnings[0]!) - 1]).toMatch(/schedule {2}needsArg/);
});

it("starts a workerd that died again at once, then after longer pauses while it keeps dying as soon as it starts, then gives up", () => {
  expect([1, 2, 3, 4, 5].map(restartDelayMs)).toEqual([0, 1000, 2000, 4000, undefined]);
});

it("logs a request with the status its client got: none when it was cut before its answer began, and says when an answer was cut", () => {
  expect(requestLine("POST", "/v1/apps/a/functions/f/call", 200, 12.04, false)).toBe("POST /v1/apps/a/functions/f/call 200 12.0 ms");
  expect(requestLine("POST", "/v1/apps/a/functions/f/call", undefined, 3527.4, true)).toBe("POST /v1/apps/a/functions/f/call no answer (cut) 3527.4 ms");
  expect(requestLine("POST", "/v1/apps/a/functions/f/stream", 200, 900, true)).toBe("POST /v1/apps/a/functions/f/stream 200 (cut) 900.0 ms");
  expect(requestLine("POST", "/v1/planes/heartbeat", 204, 1, false)).toBeUndefined();
  // A function container's own dict, queue and volume operations, carried by its plane: said only when one failed.
  expect(requestLine("POST", "/v1/queues/work/get", 200, 7.8, false, true)).toBeUndefined();
  expect(requestLine("POST", "/v1/queues/work/put", 413, 3, false, true)).toBe("POST /v1/queues/work/put 413 3.0 ms");
});

it("names another tandem serve running in the folder, with its port, and says what to do, rather than speak of a plane", async () => {
  const folder = mkdtempSync(join(tmpdir(), "tandem-serve-"));
  const first = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60_000)"]); // stands for the first serve
  try {
    const state = join(folder, ".tandem");
    expect(anotherServeHere(state)).toBeUndefined();
    mkdirSync(join(state, "serve-plane"), { recursive: true });
    writeFileSync(join(state, "serve-plane", "plane.pid"), String(first.pid));
    // Still starting: its gateway.json is not written yet.
    expect(anotherServeHere(state)).toBe(
      `another \`tandem serve\` (process ${first.pid}) is running in this folder; stop it (Ctrl-C in its terminal, or kill ${first.pid}), or serve from another folder`,
    );
    writeFileSync(join(state, "gateway.json"), JSON.stringify({ url: "http://127.0.0.1:8790", pid: first.pid }));
    expect(anotherServeHere(state)).toMatch(new RegExp(`^another \`tandem serve\` \\(process ${first.pid}, at http://127\\.0\\.0\\.1:8790\\) is running`));
    first.kill();
    await new Promise((resolve) => first.once("exit", resolve));
    expect(anotherServeHere(state)).toBeUndefined(); // it stopped without removing its files
  } finally {
    first.kill();
    rmSync(folder, { recursive: true, force: true });
  }
});

it("stepsInTime names the step a stop hangs on, once its time is up, and nothing when every step ends", async () => {
  const never = new Promise<void>(() => {});
  const stuck = await stepsInTime(async (step) => {
    step("answering the requests in flight");
    await Promise.resolve();
    step("the local plane");
    await never;
    step("the gateway");
  }, 200);
  expect(stuck).toBe("the local plane");
  const done: string[] = [];
  expect(
    await stepsInTime(async (step) => {
      step("the local plane");
      await new Promise((r) => setTimeout(r, 20));
      done.push("plane");
    }, 2_000),
  ).toBeUndefined();
  expect(done).toEqual(["plane"]);
});
