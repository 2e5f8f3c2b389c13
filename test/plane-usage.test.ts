/** Metering on the plane with real Docker: `tandem usage`, and an app's spend cap. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SpendCapError, lookup } from "../sdk/index.js";
import { runCli } from "./helpers/cli.js";
import { authed, eventually } from "./helpers/gateway.js";
import { parsePrometheus, sampleValue } from "./helpers/prometheus.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack(new URL("./fixtures/capped-app.ts", import.meta.url).pathname, { scaledownWindowSeconds: 1 });
});
afterAll(async () => {
  await stack?.dispose();
});

describe("metering", () => {
  it("refuses a new container past the app's spend cap, with a clear error", async () => {
    const work = lookup<[number], string>("capped", "work", { gateway: stack.url });
    const first = work.remote(1_500); // its container's cost passes the cap while it runs
    // Once its container runs (a cold start can take longer than the cap takes to pass), and a little cost has accrued.
    await eventually(() => stack.planes[0]!.status().containers.some((c) => c.busy));
    await new Promise((r) => setTimeout(r, 200));
    const err = await work.remote(10).catch((e) => e);
    expect(err).toBeInstanceOf(SpendCapError);
    expect(err.message).toMatch(/app "capped" reached its spend cap of \$1e-7 \(\$0\.\d+ spent on plane pl-[0-9a-f]+\); no new container starts for it/);
    expect(await first).toBe("done");
    // Counted where an operator alerts on it (docs/observability.md).
    const families = parsePrometheus(await stack.planes[0]!.metrics.text());
    expect(sampleValue(families, "tandem_function_errors_total", { app: "capped", function: "work", code: "spend_cap_reached" })).toBe(1);
  });

  it("prints the seconds and dollars of this test's own runs with tandem usage", async () => {
    const { code, stdout } = await runCli(["usage", "--app", "capped", "--gateway", stack.url]);
    expect(code).toBe(0);
    // Each row names the plane it was recorded on: with a fleet, one function has a row per plane that ran it.
    expect(stdout).toMatch(new RegExp(`capped\\s+work\\s+-\\s+1\\s+\\d+\\.\\d\\s+\\$0\\.\\d{6}  ${stack.planes[0]!.planeId}\n`));
    const json = JSON.parse((await runCli(["usage", "--app", "capped", "--since", "1h", "--gateway", stack.url, "--json"])).stdout);
    expect(json.totalSeconds).toBeGreaterThan(1);
    expect(json.totalUsd).toBeGreaterThan(0);
    expect(json.rows[0]).toMatchObject({ app: "capped", function: "work", gpu: null, containers: 1 });
    // To the millisecond and the billionth of a dollar (before: 33.983000000000004 s, and as many digits of dollars).
    for (const row of json.rows as { seconds: number; costUsd: number }[]) {
      expect(Math.round(row.seconds * 1e3) / 1e3).toBe(row.seconds);
      expect(Math.round(row.costUsd * 1e9) / 1e9).toBe(row.costUsd);
    }
    // A name no app has, served or recorded: a typo, said as such (before: "no container time recorded", exit 0).
    const none = await runCli(["usage", "--app", "nosuch", "--gateway", stack.url]);
    expect([none.code, none.stdout]).toEqual([2, ""]);
    expect(none.stderr).toMatch(/^error: no app named "nosuch" is deployed here \(apps: [^)]*capped/);
  });

  it("shows a token limited to another environment none of this one's usage", async () => {
    const made = await fetch(`${stack.url}/v1/tokens`, authed({ method: "POST", body: JSON.stringify({ scope: "deploy", env: "dev" }) }));
    const { token } = (await made.json()) as { token: string };
    const usage = async (auth: RequestInit) =>
      (await (await fetch(`${stack.url}/v1/usage?app=capped`, auth)).json()) as { rows: unknown[]; totalSeconds: number };
    expect((await usage({ headers: { authorization: `Bearer ${token}`, "tandem-env": "dev" } })).rows).toEqual([]);
    expect((await usage(authed())).totalSeconds).toBeGreaterThan(1);
  });
});
