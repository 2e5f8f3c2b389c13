/**
 * Logs through the built CLI (`tandem serve`, `tandem logs`), real workerd and
 * real Docker: lines from a plane function's container and an edge function in
 * one follow, in order, within a second; one call's lines; Tandem's own lines
 * (a cold start, a retry); secret values masked where lines are kept; lines
 * that outlive a restart of `tandem serve`; bad queries answered 400.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FunctionCall, lookup, type TandemError } from "../sdk/index.js";
import type { LogLine } from "../sdk/protocol.js";
import { childEnded } from "./helpers/child-exit.js";
import { CLI, runCli, startServe, type Served } from "./helpers/cli.js";
import { ADMIN_TOKEN } from "./helpers/tokens.js";
import { authed, eventually, startTestGateway } from "./helpers/gateway.js";

const EDGE_APP = new URL("./fixtures/edge-app.ts", import.meta.url).pathname;

const SECRET_VALUE = "s3cr3t-4e1b-log-value";

const appSource = `
import { execFileSync } from "node:child_process";
import { App, Retries, Secret, currentCall } from "tandem";
const app = new App("journal");
const key = Secret.fromDict({ KEY: process.env.JOURNAL_KEY });
export const planeSlow = app.function({ tier: "plane", timeout: 5 }, async (ms: number) => { await new Promise((r) => setTimeout(r, ms)); });
export const edgeSay = app.function((word: string) => { console.log("edge says " + word); return word; });
export const planeSay = app.function({ tier: "plane" }, (word: string) => { console.log("plane says " + word); console.error("plane warns " + word); return word; });
export const edgeLeak = app.function({ secrets: [key] }, () => { console.log("the edge key is " + process.env.KEY); return 1; });
export const planeLeak = app.function({ tier: "plane", secrets: [key] }, () => { console.log("the plane key is " + process.env.KEY); return 1; });
// Two calls at once in one container, each writing lines three ways, a piece at a time, between waits; one of them a child process's.
export const planeMixed = app.function({ tier: "plane", maxContainers: 1, concurrency: { maxInputs: 2 } }, async (word: string, child: boolean) => {
  for (let i = 1; i <= 3; i++) {
    console.log(word + " log " + i);
    process.stdout.write(word + " write ");
    process.stdout.write(new TextEncoder().encode(i + "\\n"));
    await new Promise((r) => setTimeout(r, 40));
  }
  console.error(word + " err");
  if (child) execFileSync(process.execPath, ["-e", "console.log('" + word + " child')"], { stdio: "inherit" });
  return word;
});
export const edgeVerse = app.function(() => { console.log("verse one\\r\\nverse two\\nverse three"); return 3; });
export const planeVerse = app.function({ tier: "plane" }, () => { console.log("verse one\\r\\nverse two\\nverse three"); return 3; });
const formats = () => {
  const loop: Record<string, unknown> = { name: "loop" };
  loop.self = loop;
  console.log("%s is %d years and %o", "Ada", 36, { x: 1 });
  console.log(new Map([["a", 1]]), new Set([2]), 10n, [undefined, null]);
  console.error("%i%% of", 99.5, loop);
  return 1;
};
export const edgeFormats = app.function(formats);
export const planeFormats = app.function({ tier: "plane" }, formats);
const consoles = () => {
  console.group("outer");
  console.log("inside");
  console.group();
  console.info("deeper\\nsecond line");
  console.groupEnd();
  console.table([{ a: 1, b: "x" }]);
  console.groupEnd();
  console.dir({ d: { e: { f: 1 } } }, { depth: 0 });
  console.assert(true, "never");
  console.assert(false, "%s failed", "check");
  console.count(); console.count("n"); console.count(); console.countReset(); console.count();
  console.dirxml("xml", 1);
  console.time("t"); console.timeEnd("t");
  console.trace("here %d", 5);
  return 1;
};
export const edgeConsoles = app.function(consoles);
export const planeConsoles = app.function({ tier: "plane" }, consoles);
function deepFail(): never {
  throw new Error("caught boom");
}
// An error caught and printed, whole and as its stack alone.
const caught = () => {
  try {
    deepFail();
  } catch (err) {
    console.error(err);
    console.log("stack: " + (err as Error).stack);
  }
  return 1;
};
export const edgeCaught = app.function(caught);
export const planeCaught = app.function({ tier: "plane" }, caught);
export const planeConsole = app.function({ tier: "plane" }, () => {
  console.log("%s has %d items", "cart", 3);
  console.group("checkout");
  console.info({ total: 12.5, items: ["a", "b"] });
  console.groupEnd();
  console.warn("done");
  return 1;
});
export const planeLong = app.function({ tier: "plane" }, (n: number) => {
  console.log("y".repeat(n));
  process.stdout.write("z".repeat(n));
  process.stdout.write(" end\\n");
  return n;
});
export const edgeFlood = app.function((n: number) => {
  for (let i = 1; i <= n; i++) console.log("edge flood line " + i + " " + "x".repeat(100));
  return n;
});
export const planeFlood = app.function({ tier: "plane" }, (n: number) => {
  for (let i = 1; i <= n; i++) console.log("flood " + i);
  return n;
});
let tries = 0;
export const flaky = app.function({ retries: Retries({ maxRetries: 1, initialDelayMs: 10 }) }, () => {
  tries++;
  if (tries % 2 === 1) throw new Error("first try fails");
  return tries;
});
const boom = Retries({ maxRetries: 1, initialDelayMs: 10 });
export const edgeBoom = app.function({ retries: boom }, () => { throw new Error("edge boom\\nsecond line"); });
export const edgeWait = app.function(async (ms: number) => { console.log("edge waits " + ms); await new Promise((r) => setTimeout(r, ms)); return ms; });
// Its lines come in two batches of the isolate's, the last one just as it throws.
export const edgeLate = app.function(async () => { console.log("edge starts"); await new Promise((r) => setTimeout(r, 120)); console.log("edge ends"); throw new Error("edge late"); });
export const planeBoom = app.function({ tier: "plane", retries: boom }, () => { throw new TypeError("plane boom"); });
// Each attempt outlives its timeout: the call times out on its last.
const stall = () => new Promise((r) => setTimeout(r, 3_000));
export const edgeStall = app.function({ timeout: 1, retries: boom }, stall);
export const planeStall = app.function({ tier: "plane", timeout: 1, retries: boom }, stall);
export const planeCrash = app.function({ tier: "plane", retries: boom }, () => { console.log("about to exit"); process.exit(9); });
// Prints, then fails: each attempt's line comes before the gateway's line about that attempt.
const printsThenFails = (tier: string) => () => {
  console.log(tier + " tries " + currentCall().attempt);
  throw new Error(tier + " tried " + currentCall().attempt);
};
export const planeTries = app.function({ tier: "plane", retries: boom }, printsThenFails("plane"));
export const edgeTries = app.function({ retries: boom }, printsThenFails("edge"));
// A line every 100 ms, then a last one just as it returns.
const ticks = (tier: string) => async (n: number) => {
  for (let i = 1; i <= n; i++) {
    console.log(tier + " tick " + i);
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log(tier + " done");
  return n;
};
export const edgeTicks = app.function(ticks("edge"));
export const planeTicks = app.function({ tier: "plane" }, ticks("plane"));
// A class: its container's own line (enter()), a line a method, and its container stopped after a 1 s window.
export const Scribe = app.cls({ tier: "plane", scaledownWindow: 1 }, class {
  enter() { console.log("scribe enters"); }
  write(word: string) { console.log("scribe writes " + word); return word; }
  read() { console.log("scribe reads"); return 1; }
});
export default app;
`;

let dir: string;
let served: Served;
const token = ADMIN_TOKEN; // every gateway a test starts takes it (helpers/setup.ts)
const fn = <A extends unknown[], R>(name: string) => lookup<A, R>("journal", name, { gateway: served.url, token });
const logs = async (query: string): Promise<{ status: number; lines: LogLine[]; text: string }> => {
  const res = await fetch(`${served.url}/v1/apps/journal/logs${query}`, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  return {
    status: res.status,
    text,
    lines: res.ok
      ? text
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as LogLine)
      : [],
  };
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tandem-logs-"));
  await writeFile(join(dir, "app.ts"), appSource);
  served = await startServe(["app.ts"], dir, { JOURNAL_KEY: SECRET_VALUE });
  await served.waitFor(/plane .* ready|✓ plane/, 120_000);
}, 180_000);
afterAll(async () => {
  await served?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("log retention", () => {
  it("deletes lines past TANDEM_LOG_RETENTION_DAYS, and says at the edge when a function timed out", async () => {
    // 0.00003 days: 2.6 s, so the store's alarm sweeps within the test.
    const gateway = await startTestGateway(EDGE_APP, { bindings: { TANDEM_LOG_RETENTION_DAYS: "0.00003" } });
    try {
      const read = async (query: string) =>
        (await (await fetch(`${gateway.url}/v1/apps/edge/logs${query}`, authed())).text())
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as LogLine);
      await lookup<[string], string>("edge", "chatty", { gateway: gateway.url, token }).remote("soon gone");
      await expect(lookup<[number], string>("edge", "slow", { gateway: gateway.url, token }).remote(3_000)).rejects.toThrow(/timed out/);
      await expect.poll(async () => (await read("?function=chatty")).map((l) => l.text)).toEqual(["saying soon gone"]);
      await expect.poll(async () => (await read("?function=slow&source=system")).length).toBe(1); // written just after the answer
      expect((await read("?function=slow&source=system")).map((l) => [l.tier, l.region, l.text])).toEqual([
        ["edge", "local", expect.stringMatching(/edge\.slow timed out after 1 s/)],
      ]);
      await expect.poll(async () => (await read("")).length, { timeout: 15_000, interval: 500 }).toBe(0);
    } finally {
      await gateway.dispose();
    }
  }, 60_000);
});

/** `tandem logs journal …args` against the served gateway, its output gathered as it comes. */
function tandemLogs(...args: string[]): { child: ChildProcessWithoutNullStreams; out: () => string; err: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, "logs", "journal", ...args, "--gateway", served.url, "--token", token], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: "1" },
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const exited = childEnded(child);
  return { child, out: () => out, err: () => err, exited };
}

/**
 * The lines a spawned call of `name` printed (not Tandem's), each as "source text", once `done` says all have come.
 * @example await printedBy("edgeFormats", (lines) => lines.length === 3);
 */
async function printedBy(name: string, done: (lines: string[]) => boolean): Promise<string[]> {
  const call = await fn<[], number>(name).spawn();
  await call.get({ timeoutMs: 30_000 });
  const lines = async () =>
    (await FunctionCall.fromId(call.id, { gateway: served.url, token }).logs()).filter((l) => l.source !== "system").map((l) => `${l.source} ${l.text}`);
  await expect.poll(async () => done(await lines())).toBe(true);
  return lines();
}

describe("tandem logs", () => {
  it("-f shows a line a plane function printed and one an edge function printed, in order, each within a second", async () => {
    await fn<[string], string>("planeSay").remote("warm-up"); // the container started: its cold start is not what is timed
    const { child, out: printed } = tandemLogs("-f", "-n", "1", "--source", "stdout");
    const seenAt = new Map<string, number>();
    child.stdout.on("data", () => {
      for (const word of ["plane says one", "edge says two"]) if (!seenAt.has(word) && printed().includes(word)) seenAt.set(word, Date.now());
    });
    try {
      // The follow is open once it printed the last line so far, the warm-up's (a loaded machine starts the CLI slowly).
      await expect.poll(printed, { timeout: 10_000 }).toContain("plane says warm-up");
      await fn<[string], string>("planeSay").remote("one");
      const planeAnswered = Date.now();
      await fn<[string], string>("edgeSay").remote("two");
      const edgeAnswered = Date.now();
      const deadline = Date.now() + 3_000;
      while (seenAt.size < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(printed()).toMatch(/journal\.planeSay fc-[0-9a-z]{26} \S+ \(plane, stdout\) plane says one/);
      expect(printed()).toMatch(/journal\.edgeSay fc-[0-9a-z]{26} \(edge, stdout\) edge says two/);
      expect(printed().indexOf("plane says one")).toBeLessThan(printed().indexOf("edge says two"));
      expect(seenAt.get("plane says one")! - planeAnswered).toBeLessThan(1_000);
      expect(seenAt.get("edge says two")! - edgeAnswered).toBeLessThan(1_000);
      expect(printed()).not.toContain("plane warns one"); // --source stdout
    } finally {
      child.kill("SIGINT");
    }
  }, 60_000);

  it("-f -n 0 prints only the lines that come after it starts", async () => {
    await fn<[string], string>("edgeSay").remote("before the follow");
    await expect.poll(async () => (await logs("?search=before%20the%20follow")).lines.length).toBe(1);
    const { child, out, err } = tandemLogs("-f", "-n", "0");
    try {
      // A line every half second until the follow shows one: a loaded machine may take more than a second to start the CLI.
      for (let i = 0; i < 20 && !out(); i++) {
        await fn<[string], string>("edgeSay").remote(`after the follow ${i}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      await expect.poll(out, { timeout: 3_000 }).toContain("edge says after the follow");
      expect(err()).toBe("");
      const printed = out().split("\n").filter(Boolean);
      expect(printed.length).toBeGreaterThan(0);
      for (const line of printed) expect(line).toMatch(/\(edge, stdout\) edge says after the follow \d+$/);
    } finally {
      child.kill("SIGINT");
    }
  }, 30_000);

  it("-f ends quietly once what reads its output stops reading (| head -1)", async () => {
    await fn<[string], string>("edgeSay").remote("before the pipe closes");
    await expect.poll(async () => (await logs("?search=before%20the%20pipe")).lines.length).toBe(1);
    const { child, err, exited } = tandemLogs("-f", "-n", "1");
    try {
      await new Promise((resolve) => child.stdout.once("data", resolve)); // the last line so far: the follow is open
      child.stdout.destroy(); // as head does once it has its line
      for (let i = 0; i < 10 && child.exitCode === null; i++) {
        await fn<[string], string>("edgeSay").remote(`to a closed pipe ${i}`);
        await new Promise((r) => setTimeout(r, 300));
      }
      expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r("still running"), 3_000))])).toBe(0);
      expect(err()).toBe("");
    } finally {
      child.kill("SIGINT");
    }
  }, 30_000);

  it("a follow left idle for a while still gets the next line", async () => {
    const res = await fetch(`${served.url}/v1/apps/journal/logs?follow=1&limit=1&search=after%20a%20pause`, { headers: { authorization: `Bearer ${token}` } });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    const read = (async () => {
      while (!text.includes("edge says after a pause")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
    })();
    await new Promise((r) => setTimeout(r, 7_000)); // longer than workerd's and the front door's idle limits
    await fn<[string], string>("edgeSay").remote("after a pause");
    await Promise.race([read, new Promise((r) => setTimeout(r, 3_000))]);
    await reader.cancel();
    expect(text).toContain('"text":"edge says after a pause"');
    expect(text.startsWith("\n")).toBe(true); // the keep-alive line, which readers skip
  }, 30_000);

  it("--call shows only that call's lines, as FunctionCall.fromId(id).logs() does", async () => {
    const first = await fn<[string], string>("planeSay").spawn("alpha");
    const second = await fn<[string], string>("planeSay").spawn("beta");
    await first.get();
    await second.get();
    const call = FunctionCall.fromId(first.id, { gateway: served.url, token });
    let lines: LogLine[] = [];
    const deadline = Date.now() + 5_000;
    while (lines.filter((l) => l.source !== "system").length < 2 && Date.now() < deadline) lines = await call.logs();
    // stdout and stderr reach the plane on two streams, so their order between each other is not kept.
    expect(
      lines
        .map((l) => [l.source, l.text])
        .filter(([source]) => source !== "system")
        .sort(([a], [b]) => a!.localeCompare(b!)),
    ).toEqual([
      ["stderr", "plane warns alpha"],
      ["stdout", "plane says alpha"],
    ]);
    expect(lines.every((l) => l.callId === first.id && l.app === "journal" && l.tier === "plane" && l.region === "local")).toBe(true);
    expect(lines[0]!.containerId).toMatch(/\S+/);

    const cli = await runCli(["logs", "journal", "--call", first.id, "--gateway", served.url, "--token", token], { cwd: dir });
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain("plane says alpha");
    expect(cli.stdout).toContain("plane warns alpha");
    expect(cli.stdout).not.toContain("beta");
  }, 60_000);

  it("tags each line with the call that wrote it, two calls at once in one container, in the order written; a child process's too", async () => {
    const [red, blue] = await Promise.all([
      fn<[string, boolean], string>("planeMixed").spawn("red", false),
      fn<[string, boolean], string>("planeMixed").spawn("blue", false),
    ]);
    await Promise.all([red.get(), blue.get()]);
    const written = async (id: string) =>
      (await logs(`?call=${id}`)).lines.filter((l) => l.source !== "system").map((l) => [l.source, l.text, l.callId, l.function, l.containerId]);
    const expected = (word: string, id: string, container: unknown) => [
      ...[1, 2, 3].flatMap((i) => [
        ["stdout", `${word} log ${i}`, id, "planeMixed", container],
        ["stdout", `${word} write ${i}`, id, "planeMixed", container],
      ]),
      ["stderr", `${word} err`, id, "planeMixed", container],
    ];
    await expect.poll(() => written(red.id), { timeout: 5_000 }).toHaveLength(7);
    const container = (await written(red.id))[0]![4];
    expect(container).toMatch(/\S+/);
    await expect.poll(() => written(red.id), { timeout: 5_000 }).toEqual(expected("red", red.id, container));
    await expect.poll(() => written(blue.id), { timeout: 5_000 }).toEqual(expected("blue", blue.id, container)); // the same container
    // A child process writes to the container's stdout itself: its line comes the old way, still with its call.
    const green = await fn<[string, boolean], string>("planeMixed").spawn("green", true);
    await green.get();
    await expect
      .poll(async () => (await written(green.id)).filter(([source]) => source === "stdout").map(([, text]) => text), { timeout: 5_000 })
      .toEqual(expect.arrayContaining(["green log 1", "green write 3", "green child"]));
    expect((await written(green.id)).every(([, , callId]) => callId === green.id)).toBe(true);
  }, 60_000);

  it("drops a plane function's lines past 10,000 a second, and says how many", async () => {
    const call = await fn<[number], number>("planeFlood").spawn(12_000);
    await call.get();
    await expect
      .poll(async () => (await logs(`?call=${call.id}&source=system`)).lines.map((l) => l.text), { timeout: 10_000 })
      .toContain("2000 lines dropped: more than 10000 lines a second");
    const found = async (text: string) => (await logs(`?call=${call.id}&source=stdout&search=${encodeURIComponent(text)}`)).lines.map((l) => l.text);
    expect(await found("flood 10000")).toEqual(["flood 10000"]);
    expect(await found("flood 10001")).toEqual([]);
  }, 60_000);

  it("followLogs() yields a call's lines as they come, and stops when the loop does", async () => {
    const call = await fn<[string], string>("planeSay").spawn("gamma");
    const seen: string[] = [];
    for await (const line of FunctionCall.fromId(call.id, { gateway: served.url, token }).followLogs({ source: "stderr" })) {
      seen.push(line.text);
      if (line.text === "plane warns gamma") break;
    }
    expect(seen).toEqual(["plane warns gamma"]);
  }, 30_000);

  it("-f --call ends on its own, with 0, once the call has ended and its last lines are printed, in either tier", async () => {
    for (const tier of ["edge", "plane"]) {
      const call = await fn<[number], number>(`${tier}Ticks`).spawn(15);
      const { child, out, err, exited } = tandemLogs("--call", call.id, "-f", "--source", "stdout");
      try {
        await call.get({ timeoutMs: 30_000 });
        expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r("still running"), 5_000))]), tier).toBe(0);
        expect(err()).toBe("");
        const texts = out()
          .split("\n")
          .filter(Boolean)
          .map((line) => line.replace(/^.* \(\w+, stdout\) /, ""));
        expect(texts).toEqual([...Array.from({ length: 15 }, (_, i) => `${tier} tick ${i + 1}`), `${tier} done`]);
      } finally {
        child.kill("SIGINT");
      }
    }
  }, 90_000);

  it("--call with an id the gateway holds no call of says so, rather than printing nothing or waiting without a word", async () => {
    const unknown = "fc-01m8kahk46m9azssadeq4z196a";
    const once = tandemLogs("--call", unknown);
    expect(await once.exited).toBe(1);
    expect(once.out()).toBe("");
    expect(once.err()).toContain(`error: the gateway holds no call ${unknown}: the id is mistyped`);
    const follow = tandemLogs("--call", unknown, "-f");
    try {
      await expect.poll(() => follow.err(), { timeout: 10_000 }).toContain("following its lines anyway (Ctrl-C stops)");
    } finally {
      follow.child.kill("SIGINT");
    }
    // A value no call, date or duration could be is a usage mistake, said with its option (before: the gateway's
    // 'log query: field "call" must be…', and for a malformed id exit 2 where the docs promised a mistyped one 1).
    for (const [args, said] of [
      [["--call", "fc-nonexistent"], 'error: --call "fc-nonexistent": must be a call id (fc- and 26'],
      [["--since", "99999999999d"], 'error: --since "99999999999d": must be a time from 1970-01-01T00:00:00Z to a day from now'],
      [["--since", "yesterday"], 'error: --since "yesterday": must be a duration back from now'],
    ] as const) {
      const bad = tandemLogs(...args);
      expect(await bad.exited).toBe(2);
      expect(bad.err()).toContain(said);
      expect(bad.err()).not.toContain("log query");
    }
  }, 30_000);

  it("--function with a name the app has no function of says so, naming the nearest, rather than printing nothing", async () => {
    const once = tandemLogs("--function", "edgeTiks");
    expect(await once.exited).toBe(1);
    expect(once.out()).toBe("");
    expect(once.err()).toMatch(/^error: app "journal" has no function, class or web label "edgeTiks" \(functions: /);
    expect(once.err()).toContain('so it has no lines to show; did you mean "edgeTicks"?');
    const follow = tandemLogs("--function", "edgeTiks", "-f");
    try {
      await expect.poll(() => follow.err(), { timeout: 10_000 }).toContain("following its lines anyway (Ctrl-C stops)");
    } finally {
      follow.child.kill("SIGINT");
    }
    // A name it has, with no line yet, prints nothing and ends with 0, as before.
    const quiet = tandemLogs("--function", "planeBoom", "--search", "no such text");
    expect(await quiet.exited).toBe(0);
    expect(quiet.err()).toBe("");
  }, 30_000);

  it("--function with a class's name prints the lines of all its methods and of its container (enter(), its scale-down); a name it lacks lists its classes", async () => {
    expect(await lookup<[Record<string, never>, string], string>("journal", "Scribe.write", { gateway: served.url, token }).remote({}, "ink")).toBe("ink");
    expect(await lookup<[Record<string, never>], number>("journal", "Scribe.read", { gateway: served.url, token }).remote({})).toBe(1);
    // Its container stops after its 1 s window, and the app's log says so, tagged with the class and the container.
    await expect
      .poll(async () => (await logs("?search=stopping%20it&function=Scribe")).lines, { timeout: 20_000, interval: 500 })
      .toEqual([
        expect.objectContaining({
          function: "Scribe",
          callId: null,
          containerId: expect.stringMatching(/^ctr-/),
          source: "system",
          text: "idle for 1 s; stopping it",
        }),
      ]);
    const once = tandemLogs("--function", "Scribe");
    expect(await once.exited).toBe(0);
    expect(once.out().split("\n")).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/ \(plane, stdout\) scribe enters$/),
        expect.stringMatching(/journal\.Scribe\.write fc-\S+ ctr-\S+ \(plane, stdout\) scribe writes ink$/),
        expect.stringMatching(/journal\.Scribe\.read fc-\S+ ctr-\S+ \(plane, stdout\) scribe reads$/),
        expect.stringMatching(/journal\.Scribe ctr-\S+ \(plane, system\) idle for 1 s; stopping it$/),
      ]),
    );
    // A method's name selects its own lines only; the logs API reads a class's name as the CLI does.
    const method = (await logs("?function=Scribe.read")).lines.map((l) => l.text);
    expect(method).toContain("scribe reads");
    expect(method).not.toContain("scribe writes ink");
    expect((await logs("?function=Scribe")).lines.map((l) => l.text)).toEqual(expect.arrayContaining(["scribe enters", "scribe writes ink", "scribe reads"]));
    const unknown = tandemLogs("--function", "Scrib");
    expect(await unknown.exited).toBe(1);
    expect(unknown.err()).toMatch(
      /^error: app "journal" has no function, class or web label "Scrib" \(functions: .*Scribe\.write, Scribe\.read; classes: Scribe\), so it has no lines to show; did you mean "Scribe"\?/,
    );
  }, 60_000);

  it("--container with an id that printed no line in the app says so; one that did, with no line matching, prints nothing", async () => {
    const unknown = tandemLogs("--container", "ctr-00000000");
    expect(await unknown.exited).toBe(1);
    expect(unknown.out()).toBe("");
    expect(unknown.err()).toMatch(/^error: app "journal" has no line from container ctr-00000000 in the time its lines are kept/);
    const call = await fn<[number], number>("planeTicks").spawn(1);
    await call.get({ timeoutMs: 30_000 });
    const containerId = (await call.logs()).find((line) => line.containerId)?.containerId;
    expect(containerId).toMatch(/^ctr-/);
    const quiet = tandemLogs("--container", containerId!, "--search", "no such text");
    expect(await quiet.exited).toBe(0);
    expect(quiet.err()).toBe("");
  }, 60_000);

  it("a follow of one call, over HTTP (call=) and through followLogs(), ends once the call has, after its last line", async () => {
    const call = await fn<[number], number>("edgeTicks").spawn(5);
    const aborted = new AbortController();
    const http = fetch(`${served.url}/v1/apps/journal/logs?call=${call.id}&follow=1&source=stdout`, {
      headers: { authorization: `Bearer ${token}` },
      signal: aborted.signal,
    }).then(async (res) => (await res.text()).split("\n").filter(Boolean));
    const sdk = (async () => {
      const seen: string[] = [];
      for await (const line of FunctionCall.fromId(call.id, { gateway: served.url, token }).followLogs({ source: "stdout" })) seen.push(line.text);
      return seen;
    })();
    try {
      const ended = await Promise.race([Promise.all([http, sdk]), new Promise<"still open">((r) => setTimeout(() => r("still open"), 10_000))]);
      const expected = ["edge tick 1", "edge tick 2", "edge tick 3", "edge tick 4", "edge tick 5", "edge done"];
      expect(ended).not.toBe("still open");
      const [lines, seen] = ended as [string[], string[]];
      expect(lines.map((l) => (JSON.parse(l) as LogLine).text)).toEqual(expected);
      expect(seen).toEqual(expected);
    } finally {
      aborted.abort();
    }
  }, 30_000);

  it("keeps Tandem's own lines: a container's cold start, and a retry", async () => {
    await fn<[], number>("flaky").remote();
    const { lines } = await logs("?source=system&limit=1000");
    expect(lines.some((l) => l.function === "planeSay" && l.tier === "plane" && /^cold start: /.test(l.text) && l.containerId)).toBe(true);
    await expect
      .poll(async () => (await logs("?function=flaky&source=system")).lines.map((l) => l.text))
      .toEqual([expect.stringMatching(/^attempt 1 failed \(first try fails\); attempt 2 in \d+ ms$/)]);
  }, 30_000);

  it("reads an attempt's printed line before the gateway's line about how that attempt ended, though the plane sends it later", async () => {
    for (const tier of ["plane", "edge", "plane", "edge"]) {
      const call = await fn<[], never>(`${tier}Tries`).spawn();
      await expect(call.get()).rejects.toThrow(`${tier} tried 2`);
      const order = async () => (await logs(`?call=${call.id}`)).lines.filter((l) => l.source !== "system" || l.tier === "edge").map((l) => l.text);
      await expect
        .poll(order, { timeout: 5_000 })
        .toEqual([
          `${tier} tries 1`,
          expect.stringMatching(new RegExp(`^attempt 1 failed \\(${tier} tried 1\\); attempt 2 in \\d+ ms$`)),
          `${tier} tries 2`,
          `failed after 2 attempts: Error: ${tier} tried 2`,
        ]);
    }
  }, 60_000);

  it("says why an attempt whose container crashed failed in one line, without the log tail its error ends with", async () => {
    await expect(fn<[], never>("planeCrash").remote()).rejects.toThrow(/crashed with exit code 9/);
    const retried = async () => (await logs(`?function=planeCrash&source=system`)).lines.map((l) => l.text).filter((t) => t.startsWith("attempt 1 failed"));
    // Before: "attempt 1 failed (… crashed with exit code 9 during the call; last log lines:); attempt 2 in 10 ms".
    await expect
      .poll(retried, { timeout: 5_000 })
      .toEqual([
        expect.stringMatching(
          /^attempt 1 failed \(journal\.planeCrash container ctr-[0-9a-f]{8} crashed with exit code 9 during the call\); attempt 2 in \d+ ms$/,
        ),
      ]);
  });

  it("keeps a line when a call ends failed, once, after its last attempt, in either tier", async () => {
    await expect(fn<[], never>("edgeBoom").remote()).rejects.toThrow(/edge boom/);
    await expect(fn<[], never>("planeBoom").remote()).rejects.toThrow(/plane boom/);
    const system = async (name: string) => (await logs(`?function=${name}&source=system`)).lines.filter((l) => !l.text.startsWith("cold start"));
    for (const [name, error] of [
      ["edgeBoom", "Error: edge boom"],
      ["planeBoom", "TypeError: plane boom"],
    ]) {
      await expect
        .poll(async () => (await system(name!)).map((l) => l.text), { timeout: 5_000 })
        .toEqual([expect.stringMatching(/^attempt 1 failed \(.*boom.*\); attempt 2 in \d+ ms$/), `failed after 2 attempts: ${error}`]);
      expect(
        (await system(name!)).every((l) => l.tier === "edge"),
        name,
      ).toBe(true);
      // Printed on serve's terminal too, beside the function's own lines (before: kept only, so the terminal showed a
      // function's lines run twice and never why).
      const said = (await system(name!)).map((l) => `[journal.${name} ${l.callId}] (system) ${l.text}`);
      await expect.poll(() => said.every((line) => served.output().includes(line)), { timeout: 5_000 }).toBe(true);
    }
  }, 60_000);

  it("says in a running call's log that it was cancelled, in either tier", async () => {
    for (const [name, started] of [
      ["edgeWait", "edge waits 20000"],
      ["planeTicks", "plane tick 1"],
    ] as const) {
      const call = await fn<[number], number>(name).spawn(name === "edgeWait" ? 20_000 : 200);
      const lines = async () => (await logs(`?call=${call.id}`)).lines;
      await expect.poll(async () => (await lines()).map((l) => l.text), { timeout: 30_000 }).toContain(started);
      await call.cancel();
      // Before: its lines just ended, with no word of the cancel.
      await expect
        .poll(async () => (await lines()).filter((l) => l.source === "system" && l.tier === "edge").map((l) => l.text), { timeout: 5_000 })
        .toEqual([`cancelled (FunctionCall.cancel(), or POST /v1/calls/${call.id}/cancel)`]);
    }
  }, 60_000);

  it("ends a call that timed out on its last of several attempts with a line saying so, in either tier", async () => {
    for (const tier of ["edge", "plane"]) {
      const call = await fn<[], never>(`${tier}Stall`).spawn();
      await expect(call.get()).rejects.toThrow(/timed out after 1 s/);
      const told = async () => (await logs(`?call=${call.id}&source=system`)).lines.filter((l) => l.tier === "edge").map((l) => l.text);
      // Before: the last attempt's timeout was a lone timeout line at the edge, and the plane's own line alone for a plane call.
      await expect
        .poll(told, { timeout: 5_000 })
        .toEqual([
          expect.stringMatching(new RegExp(`^attempt 1 failed \\(journal\\.${tier}Stall timed out after 1 s.*\\); attempt 2 in \\d+ ms$`)),
          expect.stringMatching(new RegExp(`^timed out after 2 attempts: journal\\.${tier}Stall timed out after 1 s`)),
        ]);
    }
  }, 60_000);

  it("FunctionCall.fromId(id).logs() right after a plane call's get() has the lines it printed", async () => {
    const call = await fn<[string], string>("planeSay").spawn("delta");
    await call.get();
    const lines = await FunctionCall.fromId(call.id, { gateway: served.url, token }).logs();
    expect(
      lines
        .filter((l) => l.source !== "system")
        .map((l) => l.text)
        .sort(),
    ).toEqual(["plane says delta", "plane warns delta"]);
  }, 30_000);

  it("FunctionCall.fromId(id).logs() right after a plane .remote() failed has the gateway's line about its failure", async () => {
    // A keyed plane call is recorded running as it goes to its plane; its end comes in the ledger's next batch.
    const failed = await fn<[], never>("planeTries")
      .remote()
      .catch((err: unknown) => err as TandemError);
    expect(failed.callId).toMatch(/^fc-/);
    const lines = await FunctionCall.fromId(failed.callId!, { gateway: served.url, token }).logs();
    expect(lines.map((l) => l.text)).toEqual(
      expect.arrayContaining(["plane tries 1", "plane tries 2", expect.stringMatching(/^failed after 2 attempts: Error: plane tried 2/)]),
    );
  }, 30_000);

  it("a call's lines read right after its answer, in either route, are all there, its failure too", async () => {
    const headers = { authorization: `Bearer ${token}` };
    for (const route of ["calls", "app"]) {
      const answer = await fetch(`${served.url}/v1/apps/journal/functions/edgeLate/call`, { method: "POST", headers, body: '{"args":[]}' });
      const id = ((await answer.json()) as { callId: string }).callId;
      const read = await fetch(route === "calls" ? `${served.url}/v1/calls/${id}/logs` : `${served.url}/v1/apps/journal/logs?call=${id}`, { headers });
      expect(read.status, route).toBe(200);
      const texts = (await read.text())
        .split("\n")
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as LogLine).text);
      expect(texts, route).toEqual(["edge starts", "edge ends", "failed after 1 attempt: Error: edge late"]);
    }
    const call = await fn<[], never>("edgeLate").spawn();
    await expect(call.get()).rejects.toThrow(/edge late/);
    const lines = await FunctionCall.fromId(call.id, { gateway: served.url, token }).logs();
    expect(lines.map((l) => l.text)).toEqual(["edge starts", "edge ends", "failed after 1 attempt: Error: edge late"]);
  }, 30_000);

  it("reads the lines of a running call made without an Idempotency-Key, which the ledger records at its end", async () => {
    const running = fetch(`${served.url}/v1/apps/journal/functions/edgeWait/call`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: '{"args":[4000]}',
    });
    let id: string | undefined;
    await expect
      .poll(async () => (id = (await logs("?function=edgeWait&search=waits%204000")).lines.at(-1)?.callId ?? undefined), { timeout: 3_000 })
      .toMatch(/^fc-/);
    const res = await fetch(`${served.url}/v1/calls/${id}/logs`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect((await FunctionCall.fromId(id!, { gateway: served.url, token }).logs()).map((l) => l.text)).toEqual(["edge waits 4000"]);
    expect(((await (await running).json()) as { result: number }).result).toBe(4_000);
  }, 30_000);

  it("keeps the plane's line about a call that timed out, with its container", async () => {
    // Warm: the timeout below is the call's, not its container's start (5 s: a loaded machine's cold start under gVisor takes 2).
    await fn<[number], void>("planeSlow").remote(0);
    await expect(fn<[number], void>("planeSlow").remote(10_000)).rejects.toThrow(/timed out/);
    await expect
      .poll(async () => (await logs("?function=planeSlow&source=system")).lines.filter((l) => !l.text.startsWith("cold start")), { timeout: 5_000 })
      .toEqual([
        expect.objectContaining({
          tier: "plane",
          containerId: expect.stringMatching(/^ctr-/),
          text: expect.stringMatching(/^journal\.planeSlow timed out after 5 s/),
        }),
      ]);
  }, 60_000);

  it("masks a secret value printed in either tier where the lines are kept", async () => {
    await fn<[], number>("edgeLeak").remote();
    await fn<[], number>("planeLeak").remote();
    await expect.poll(async () => (await logs("?search=key%20is")).lines.map((l) => l.text).sort()).toEqual(["the edge key is ***", "the plane key is ***"]);
    // Nor in any file of the gateway's state (the value is in no file the app was built from: it came from the environment).
    const files = await readdir(join(dir, ".tandem", "state"), { recursive: true, withFileTypes: true });
    for (const f of files.filter((e) => e.isFile())) {
      // workerd still runs: a SQLite side file (-shm, -wal) listed may be gone by the time it is read, with nothing in it.
      const bytes = await readFile(join(f.parentPath, f.name)).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return Buffer.alloc(0);
        throw err;
      });
      expect(bytes.includes(SECRET_VALUE)).toBe(false);
    }
  }, 60_000);

  it("keeps text of several lines printed at the edge as that many lines, as a plane does, each printed with its prefix", async () => {
    const edge = await fn<[], number>("edgeVerse").spawn();
    await edge.get({ timeoutMs: 10_000 });
    await fn<[], number>("planeVerse").remote();
    const verses = async (name: string) => (await logs(`?function=${name}&source=stdout`)).lines.map((l) => l.text);
    await expect.poll(() => verses("edgeVerse")).toEqual(["verse one", "verse two", "verse three"]);
    await expect.poll(() => verses("planeVerse")).toEqual(["verse one", "verse two", "verse three"]);
    expect(served.output()).toContain(`[journal.edgeVerse ${edge.id}] verse two\n[journal.edgeVerse ${edge.id}] verse three`);
  }, 60_000);

  it("keeps a plane function's console lines as Node's console prints them: formats, groups and objects", async () => {
    const call = await fn<[], number>("planeConsole").spawn();
    await call.get({ timeoutMs: 30_000 });
    const lines = async () =>
      (await FunctionCall.fromId(call.id, { gateway: served.url, token }).logs()).filter((l) => l.source !== "system").map((l) => `${l.source} ${l.text}`);
    await expect.poll(lines).toEqual(["stdout cart has 3 items", "stdout checkout", "stdout   { total: 12.5, items: [ 'a', 'b' ] }", "stderr done"]);
  }, 60_000);

  it("keeps a line the same whichever tier printed it: formats, Maps, Sets, BigInts and cycles as Node's console prints them", async () => {
    const printed = (name: string) => printedBy(name, (lines) => lines.length === 3);
    const expected = [
      "stdout Ada is 36 years and { x: 1 }",
      "stdout Map(1) { 'a' => 1 } Set(1) { 2 } 10n [ undefined, null ]",
      "stderr 99% of <ref *1> { name: 'loop', self: [Circular *1] }",
    ];
    expect(await printed("planeFormats")).toEqual(expected);
    expect(await printed("edgeFormats")).toEqual(expected);
  }, 60_000);

  it("maps a stack the app prints to its own file's lines in either tier, as an error's stack is, Tandem's frames left out", async () => {
    const throwLine = appSource.split("\n").findIndex((line) => line.includes('throw new Error("caught boom")')) + 1;
    const callerLine = appSource.split("\n").findIndex((line) => line.includes("    deepFail();")) + 1;
    const printed = async (name: string) =>
      (await printedBy(name, (lines) => lines.some((l) => l.includes("stack: Error: caught boom")))).map((l) => l.replace(/^\w+ /, "")).join("\n");
    for (const name of ["planeCaught", "edgeCaught"]) {
      const text = await printed(name);
      // Printed twice (the error whole, then its stack), each naming the throw and its caller in app.ts.
      expect(text.match(new RegExp(`at deepFail \\(app\\.ts:${throwLine}:\\d+\\)`, "g")), `${name}: ${text}`).toHaveLength(2);
      expect(text.match(new RegExp(`at [^\\n]*caught[^\\n]* \\(app\\.ts:${callerLine}:\\d+\\)`, "g")), `${name}: ${text}`).toHaveLength(2);
      // Every other frame is Node's own: Tandem's (its runtime's module, or bundled) are left out.
      const others = text.split("\n").filter((line) => /^\s+at /.test(line) && !/\(app\.ts:\d+:\d+\)$/.test(line));
      for (const frame of others) expect(frame, name).toMatch(/\(node:[^)]+\)$/);
    }
  }, 60_000);

  it("prints the rest of Node's console the same in either tier: groups, tables, dir, assert, counts, timers, trace", async () => {
    const printed = (name: string) => printedBy(name, (lines) => lines.some((l) => l.startsWith("stderr Trace: ")));
    const expected = [
      "stdout outer",
      "stdout   inside",
      "stdout     deeper",
      "stdout     second line",
      "stdout   ┌─────────┬───┬─────┐",
      "stdout   │ (index) │ a │ b   │",
      "stdout   ├─────────┼───┼─────┤",
      "stdout   │ 0       │ 1 │ 'x' │",
      "stdout   └─────────┴───┴─────┘",
      "stdout { d: [Object] }",
      "stderr Assertion failed: check failed",
      "stdout default: 1",
      "stdout n: 1",
      "stdout default: 2",
      "stdout default: 1",
      "stdout xml 1",
      "stdout t: <ms>",
      "stderr Trace: here 5",
      `stderr     at consoles (app.ts:${appSource.split("\n").findIndex((line) => line.includes('console.trace("here %d", 5)')) + 1}:<column>)`,
    ];
    for (const name of ["planeConsoles", "edgeConsoles"]) {
      const lines = (await printed(name))
        .map((line) => line.replace(/^stdout t: \d+(\.\d+)?ms$/, "stdout t: <ms>").replace(/(app\.ts:\d+):\d+\)$/, "$1:<column>)"))
        .map((line) => line.replace(/ at \S*consoles\S* \[as handler\] \(/, " at consoles ("));
      expect(lines.slice(0, expected.length), name).toEqual(expected);
      // What follows the trace's own frame is Node's own frames, if any (Tandem's are left out).
      for (const line of lines.slice(expected.length)) expect(line, name).toMatch(/^stderr {5}at .*\(node:[^)]+\)$/);
    }
  }, 60_000);

  it("cuts a plane line longer than 16 KiB once, to 16 KiB, naming the length the function printed, whole or in pieces", async () => {
    const call = await fn<[number], number>("planeLong").spawn(20_000);
    await call.get({ timeoutMs: 30_000 });
    const lines = await FunctionCall.fromId(call.id, { gateway: served.url, token }).logs({ source: "stdout" });
    expect(lines.map((l) => l.text)).toEqual([
      "y".repeat(16 * 1024 - 25) + "… (cut: 20000 characters)",
      "z".repeat(16 * 1024 - 25) + "… (cut: 20004 characters)",
    ]);
  }, 60_000);

  it("keeps every line of an edge call that printed more than one write to the log store takes (SQLite's 2 MB), in order", async () => {
    const call = await fn<[number], number>("edgeFlood").spawn(15_000);
    expect(await call.get({ timeoutMs: 30_000 })).toBe(15_000);
    const lineOf = (n: number) => logs(`?call=${call.id}&search=${encodeURIComponent(`edge flood line ${n} `)}`);
    await eventually(async () => (await lineOf(15_000)).lines.length === 1, 20_000);
    const last = (await logs(`?call=${call.id}&limit=10000`)).lines.map((l) => l.text);
    expect(last).toHaveLength(10_000);
    expect(last[0]).toMatch(/^edge flood line 5001 x{100}$/);
    expect(last.at(-1)).toMatch(/^edge flood line 15000 x{100}$/);
    expect((await lineOf(1)).lines.map((l) => l.text)).toEqual([`edge flood line 1 ${"x".repeat(100)}`]);
  }, 60_000);

  it("answers a bad query with a 400 that names the parameter", async () => {
    const cases: [string, RegExp][] = [
      ["?limit=0", /field "limit" must be a whole number from 1 to 10000/],
      ["?limit=abc", /field "limit" must be a whole number from 1 to 10000 \(got "abc"\)/],
      ["?source=stdin", /field "source" must be one of stdout, stderr, system/],
      ["?since=last-tuesday", /field "since" must be a duration back from now/],
      ["?since=-5", /field "since" must be a duration back from now/],
      ["?since=-2h", /field "since" must be a duration back from now/],
      ["?call=fc-nope", /field "call" must be a call id/],
      ["?follow=yes", /field "follow" must be 1 or true, 0 or false \(got "yes"\)/],
      ["?lines=5", /unknown field "lines"/],
      ["?since=99999999999d", /field "since" must be a time from 1970-01-01T00:00:00Z to a day from now \(got "99999999999d"\)/],
      [`?since=${"9".repeat(400)}`, /field "since" must be a time from 1970-01-01T00:00:00Z to a day from now/],
      ["?since=8640000000000001", /field "since" must be a time from 1970-01-01T00:00:00Z to a day from now/],
      ["?source=stdout&source=stderr", /field "source" is given 2 times: give it once/],
      ["?limit=1&limit=2", /field "limit" is given 2 times: give it once/],
    ];
    for (const [query, message] of cases) {
      const { status, text } = await logs(query);
      expect(status, query).toBe(400);
      expect((JSON.parse(text) as { error: { message: string } }).error.message, query).toMatch(message);
    }
    const other = await fn<[string], string>("edgeSay").spawn("the path's call");
    const callQuery = await fetch(`${served.url}/v1/calls/${other.id}/logs?call=fc-01m8kahk46m9azssadeq4z196a`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(callQuery.status).toBe(400);
    expect(((await callQuery.json()) as { error: { message: string } }).error.message).toBe(
      'log query: field "call" is the call in the path here: leave it out',
    );
    const unknownApp = await fetch(`${served.url}/v1/apps/nosuch/logs`, { headers: { authorization: `Bearer ${token}` } });
    expect(unknownApp.status).toBe(404);
    const noToken = await fetch(`${served.url}/v1/apps/journal/logs`);
    expect(noToken.status).toBe(401);
    const cli = await runCli(["logs", "journal", "-n", "0", "--gateway", served.url, "--token", token], { cwd: dir });
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toMatch(/-n 0 prints no line without -f: give -f with it to print only new lines, or -n from 1 to 10000/);
    expect(cli.stderr).not.toContain("Usage:");
  }, 30_000);

  it("finds a line by its text as printed, letters outside ASCII included, and in another case", async () => {
    await fn<[string], string>("edgeSay").remote("ÉCHEC du téléchargement, Ärger");
    const found = async (search: string) => (await logs(`?search=${encodeURIComponent(search)}`)).lines.map((l) => l.text);
    await expect.poll(() => found("ÉCHEC")).toEqual(["edge says ÉCHEC du téléchargement, Ärger"]);
    for (const search of ["Ärger", "ÉCHEC DU", "TÉLÉCHARGEMENT", "Edge Says ÉCHEC"])
      expect(await found(search), search).toEqual(["edge says ÉCHEC du téléchargement, Ärger"]);
  }, 30_000);

  it("takes follow=true and follow=false as well as 1 and 0", async () => {
    await fn<[string], string>("edgeSay").remote("either spelling");
    await expect.poll(async () => (await logs("?search=either%20spelling&follow=false")).lines.map((l) => l.text)).toEqual(["edge says either spelling"]);
    const res = await fetch(`${served.url}/v1/apps/journal/logs?follow=true&search=either%20spelling`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain('"text":"edge says either spelling"');
    const more = await Promise.race([reader.read().then(() => "more"), new Promise((r) => setTimeout(() => r("still open"), 1_000))]);
    expect(more).toBe("still open"); // a follow: the stream waits for new lines
    await reader.cancel();
  }, 30_000);

  it("prints a line's control characters as escapes, and --json keeps its text exact", async () => {
    const printed = "\x1b[31mred\x1b[0m \x1b]0;title\x07 over\rwritten\tend";
    await fn<[string], string>("edgeSay").remote(printed);
    await expect.poll(async () => (await logs("?search=over")).lines.map((l) => l.text)).toEqual([`edge says ${printed}`]);
    const plain = await runCli(["logs", "journal", "--search", "over", "--gateway", served.url, "--token", token], { cwd: dir });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/\(edge, stdout\) edge says \\x1b\[31mred\\x1b\[0m \\x1b\]0;title\\x07 over\\rwritten\tend\n$/);
    expect(plain.stdout).not.toMatch(/(?![\t\n])\p{Cc}/u);
    const json = await runCli(["logs", "journal", "--search", "over", "--json", "--gateway", served.url, "--token", token], { cwd: dir });
    expect((JSON.parse(json.stdout) as LogLine).text).toBe(`edge says ${printed}`);
  }, 30_000);

  it("tandem serve echoes a function's control characters as escapes, in either tier, as tandem logs prints them", async () => {
    const printed = "\x1b[31mred\x1b[0m \x1b]0;title\x07 serve\rechoed";
    const shown = "\\x1b[31mred\\x1b[0m \\x1b]0;title\\x07 serve\\rechoed";
    await fn<[string], string>("edgeSay").remote(printed);
    await fn<[string], string>("planeSay").remote(printed);
    await expect.poll(() => served.output(), { timeout: 5_000 }).toContain(`plane warns ${shown}`);
    await expect.poll(() => served.output(), { timeout: 5_000 }).toContain(`edge says ${shown}`);
    expect(served.output()).toContain(`plane says ${shown}`);
    expect(served.output()).not.toContain("\x1b[31mred");
    expect(served.output()).not.toContain("serve\rechoed");
  }, 30_000);

  it("tandem serve tags a warn or error line (stderr) in either tier, its log lines not", async () => {
    const edge = await fn<[], number>("edgeFormats").spawn();
    const plane = await fn<[], number>("planeFormats").spawn();
    await Promise.all([edge.get(), plane.get()]);
    const tagged = (call: string) =>
      served
        .output()
        .split("\n")
        .filter((l) => l.includes(` ${call}`) && / (Ada is 36|99%)/.test(l))
        .map((l) => (l.includes("(stderr)") ? "stderr" : "stdout") + (l.includes("99% of") ? " 99%" : " Ada"));
    await expect.poll(() => tagged(edge.id), { timeout: 5_000 }).toEqual(["stdout Ada", "stderr 99%"]);
    await expect.poll(() => tagged(plane.id), { timeout: 5_000 }).toEqual(["stdout Ada", "stderr 99%"]);
  }, 30_000);

  it("-f follows on across a restart of tandem serve on the same port, each line printed once", async () => {
    await fn<[string], string>("edgeSay").remote("before the reconnect");
    const { child, out, err } = tandemLogs("-f", "-n", "1", "--search", "the reconnect");
    try {
      await expect.poll(out, { timeout: 10_000 }).toContain("edge says before the reconnect");
      const port = new URL(served.url).port;
      await served.stop();
      await expect.poll(err, { timeout: 10_000 }).toContain(`the gateway at ${served.url} went away; following again once it answers`);
      served = await startServe(["app.ts", "--port", port], dir, { JOURNAL_KEY: SECRET_VALUE });
      await fn<[string], string>("edgeSay").remote("after the reconnect");
      await expect.poll(out, { timeout: 15_000 }).toContain("edge says after the reconnect");
      expect(out().match(/edge says before the reconnect/g)).toHaveLength(1);
      expect(child.exitCode).toBeNull();
    } finally {
      child.kill("SIGINT");
    }
  }, 90_000);

  it("keeps the lines across a restart of tandem serve with the same state folder", async () => {
    await fn<[string], string>("edgeSay").remote("before the restart");
    await expect.poll(async () => (await logs("?search=before%20the%20restart")).lines.length).toBe(1);
    await served.stop();
    served = await startServe(["app.ts"], dir, { JOURNAL_KEY: SECRET_VALUE });
    const { lines } = await logs("?search=before%20the%20restart");
    expect(lines.map((l) => l.text)).toEqual(["edge says before the restart"]);
  }, 120_000);
});
