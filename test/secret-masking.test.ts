/**
 * Secret masking past `console.*`, through the built CLI (`tandem serve`), real workerd and Docker: what a plane
 * container writes to its own stdout and stderr (a child process, `fs.writeSync` to fd 1 and 2, a value split
 * across two writes) reaches the app's log, the plane's output and a crashed container's error with `***` in
 * place of the value; an error whose `name` holds the value is masked in the caller's error, the call record and
 * the call's log line, at the edge and on the plane, and one thrown outside a call on the plane.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FunctionCall, RemoteError, TandemError, lookup } from "../sdk/index.js";
import { runCli, startServe, type Served } from "./helpers/cli.js";
import { authed } from "./helpers/gateway.js";

const VALUE = "alpha-secret-VALUE-123";

const appSource = `
import { spawnSync } from "node:child_process";
import { writeSync } from "node:fs";
import { App, Secret } from "tandem";
const app = new App("masks");
const asecret = Secret.fromName("asecret", { requiredKeys: ["ASECRET"] });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
// Output that never passes through the runner's capture of process.stdout and process.stderr.
export const planeRaw = app.function({ tier: "plane", secrets: [asecret] }, async () => {
  spawnSync(process.execPath, ["-e", "console.log('child:' + process.env.ASECRET); console.error('child err:' + process.env.ASECRET)"], { stdio: "inherit" });
  writeSync(1, "fd1:" + process.env.ASECRET + "\\n");
  writeSync(2, "fd2:" + process.env.ASECRET + "\\n");
  const value = process.env.ASECRET!;
  writeSync(1, "split:" + value.slice(0, 7));
  await sleep(100); // two chunks of the container's stream, one line
  writeSync(1, value.slice(7) + ":end\\n");
  return "written";
});
export const planeCrash = app.function({ tier: "plane", secrets: [asecret] }, () => {
  writeSync(2, "dying with " + process.env.ASECRET + "\\n");
  process.exit(3);
});
const named = () => {
  const e = new Error("x");
  e.name = "N" + process.env.ASECRET;
  throw e;
};
export const edgeName = app.function({ secrets: [asecret] }, named);
export const planeName = app.function({ tier: "plane", secrets: [asecret] }, named);
// Thrown outside the call's own code: the runner reports it and the container ends.
export const planeUncaught = app.function({ tier: "plane", secrets: [asecret] }, () => {
  setTimeout(named, 10);
  return new Promise(() => {});
});
export default app;
`;

let dir: string;
let served: Served;
const fn = (name: string) => lookup<[], string>("masks", name, { gateway: served.url });
/** A call's log lines, as `source text` (`FunctionCall.logs()`, the logs API). */
const callLines = async (id: string) => (await FunctionCall.fromId(id, { gateway: served.url }).logs()).map((l) => `${l.source} ${l.text}`);
const callRecord = async (id: string) => await (await fetch(`${served.url}/v1/calls/${id}`, authed())).text();
/** The error `promise` rejects with; undefined when it resolves. */
const failure = <E>(promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (err: unknown) => err as E,
  );

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tandem-secret-masking-"));
  await writeFile(join(dir, "app.ts"), appSource);
  served = await startServe(["app.ts"], dir);
  const created = await runCli(["secret", "create", "asecret", `ASECRET=${VALUE}`, "--gateway", served.url], { cwd: dir });
  expect(created.stderr).toBe("");
});
afterAll(async () => {
  await served?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("secret masking past console.*", () => {
  it("masks a plane container's own stdout and stderr: a child process's lines, writes to fd 1 and 2, a value split across two writes", async () => {
    const call = await fn("planeRaw").spawn();
    expect(await call.get({ timeoutMs: 60_000 })).toBe("written");
    const expected = ["stdout child:***", "stderr child err:***", "stdout fd1:***", "stderr fd2:***", "stdout split:***:end"];
    await expect.poll(() => callLines(call.id), { timeout: 10_000 }).toEqual(expect.arrayContaining(expected));
    expect((await callLines(call.id)).join("\n")).not.toContain(VALUE);
    // The whole app's log (the API `tandem logs` and the dashboard read), and the plane's own output.
    expect(await (await fetch(`${served.url}/v1/apps/masks/logs?limit=1000`, authed())).text()).not.toContain(VALUE);
    await served.waitFor(/\[masks\.planeRaw [^\]]*\] split:\*\*\*:end$/m);
    expect(served.output()).not.toContain(VALUE);
  }, 120_000);

  it("masks a crashed container's last log lines in the caller's error, the call record and the log", async () => {
    const call = await fn("planeCrash").spawn();
    const error = await failure<TandemError>(call.get({ timeoutMs: 60_000 }));
    expect(error).toBeInstanceOf(TandemError);
    expect(error!.message).toContain("dying with ***");
    expect(JSON.stringify(error!.details)).toContain("dying with ***");
    expect(JSON.stringify([error!.message, error!.details])).not.toContain(VALUE);
    const record = await callRecord(call.id);
    expect(record).toContain("dying with ***");
    expect(record).not.toContain(VALUE);
    await expect.poll(() => callLines(call.id), { timeout: 10_000 }).toContain("stderr dying with ***");
    expect((await callLines(call.id)).join("\n")).not.toContain(VALUE);
    expect(served.output()).not.toContain(VALUE);
  }, 120_000);

  it("masks the name of an error thrown outside a call on the plane, in the caller's error, the call record and the plane's line about the exit", async () => {
    const call = await fn("planeUncaught").spawn();
    const error = await failure<TandemError>(call.get({ timeoutMs: 60_000 }));
    expect(error).toBeInstanceOf(TandemError);
    expect(error!.message).toContain("after an uncaught error in code outside a call (N***: x)");
    expect(error!.message).not.toContain(VALUE);
    const record = await callRecord(call.id);
    expect(record).toContain("N***: x");
    expect(record).not.toContain(VALUE);
    await served.waitFor(/crashed with exit code 1 after an uncaught error[^\n]*:\nN\*\*\*: x/);
    expect(served.output()).not.toContain(VALUE);
  }, 120_000);

  for (const name of ["edgeName", "planeName"]) {
    it(`masks an error's name (${name}) in the caller's error, the call record and the call's log line`, async () => {
      const error = await failure<RemoteError>(fn(name).remote());
      expect(error).toBeInstanceOf(RemoteError);
      expect([error!.remoteName, error!.message]).toEqual(["N***", "x"]);
      expect(error!.remoteStack).not.toContain(VALUE);
      const call = await fn(name).spawn();
      expect((await failure<RemoteError>(call.get({ timeoutMs: 60_000 })))?.remoteName).toBe("N***");
      const record = await callRecord(call.id);
      expect(record).toContain('"name":"N***"');
      expect(record).not.toContain(VALUE);
      await expect
        .poll(() => callLines(call.id), { timeout: 10_000 })
        .toEqual(expect.arrayContaining([expect.stringMatching(/^system failed after 1 attempt: N\*\*\*: x/)]));
      expect((await callLines(call.id)).join("\n")).not.toContain(VALUE);
      expect(await (await fetch(`${served.url}/v1/apps/masks/logs?function=${name}&limit=1000`, authed())).text()).not.toContain(VALUE);
      expect(served.output()).not.toContain(VALUE);
    }, 120_000);
  }
});
