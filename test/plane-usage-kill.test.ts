/**
 * Metering across a plane's death (a `tandem plane` process, real Docker and workerd): a plane SIGKILLed while its
 * container runs a call, started again on its folder, removes the container it left behind and records its time, from
 * its start until it stopped, so `tandem usage` (and the app's spend cap) counts it.
 */
import { execFileSync } from "node:child_process";
import Database from "better-sqlite3";
import { join } from "node:path";
import { expect, it } from "vitest";
import { lookup } from "../sdk/index.js";
import { CONTAINER_LABELS, type UsageRow } from "../sdk/protocol.js";
import { runCli } from "./helpers/cli.js";
import { authed, eventually } from "./helpers/gateway.js";
import { planeExit, startPlaneProcess, stopPlaneProcess } from "./helpers/plane-process.js";
import { startTestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/plane-app.ts", import.meta.url).pathname;

it("bills a container its plane left running when killed, up to when it stopped, once the plane is started again", async () => {
  const stack = await startTestStack(APP, {}, { planes: 0 });
  let plane = await startPlaneProcess(stack.url, []);
  try {
    await eventually(async () => {
      const res = (await (await fetch(`${stack.url}/v1/planes`, authed())).json()) as { planes: { planeId: string; healthy: boolean }[] };
      return res.planes.some((p) => p.planeId === plane.planeId() && p.healthy);
    }, 20_000);
    const call = await lookup<[number], string>("plane", "announcedNap", { gateway: stack.url }).spawn(4_000);
    await eventually(
      () =>
        plane
          .output()
          .split("\n")
          .some((l) => l.includes(call.id) && l.includes("running attempt 1")),
      30_000,
    );
    const runningSince = Date.now(); // the container was up before its runner took the call
    const containerId = /cold start: plane\.announcedNap (ctr-[0-9a-f]+)/.exec(plane.output())![1]!;
    await new Promise((r) => setTimeout(r, 2_000));

    const exited = planeExit(plane);
    plane.child.kill("SIGKILL");
    await exited;
    // What the engine says of it now: still up (it runs until the next run of its plane removes it), or stopped when.
    const left = dockerIdsOf(containerId);
    expect(left).toHaveLength(1);
    const state = JSON.parse(execFileSync("docker", ["inspect", "--format", "{{json .State}}", left[0]!]).toString()) as {
      Running: boolean;
      FinishedAt: string;
    };
    const ranUntil = !state.Running ? Date.parse(state.FinishedAt) : Date.now();
    const ran = ranUntil - runningSince;
    expect(ran).toBeGreaterThan(1_500);

    plane = await startPlaneProcess(stack.url, [], {}, plane.dir); // the same id, and its usage ledger
    await eventually(() => dockerIdsOf(containerId).length === 0, 30_000); // removed as the plane started

    // Its row in the plane's ledger: from its start until it stopped, at least the time it was seen running.
    const ledger = new Database(join(plane.dir, ".tandem", "plane", "usage.sqlite"), { readonly: true });
    const row = ledger.prepare("SELECT started_at, ended_at FROM containers WHERE container_id = ?").get(containerId) as
      { started_at: number; ended_at: number | null } | undefined;
    ledger.close();
    expect(row, `no row for ${containerId}`).toBeDefined();
    expect(row!.started_at).toBeLessThanOrEqual(runningSince);
    expect(row!.ended_at! - row!.started_at).toBeGreaterThanOrEqual(ran);

    // And in `tandem usage`: the killed container beside the one that ran the call again (attempt 2), still warm.
    expect(await call.get({ timeoutMs: 60_000 })).toBe("slept 4000");
    const { stdout } = await runCli(["usage", "--app", "plane", "--since", "1h", "--gateway", stack.url, "--json"]);
    const nap = (JSON.parse(stdout) as { rows: UsageRow[] }).rows.find((r) => r.function === "announcedNap");
    expect(nap).toMatchObject({ app: "plane", gpu: null, containers: 2 });
    expect(nap!.seconds).toBeGreaterThanOrEqual(ran / 1000 + 4);
    expect(plane.output()).toMatch(/\[plane\] recorded the usage of \d+ container\(s\) its previous run left running/);
  } finally {
    await stopPlaneProcess(plane);
    await stack.dispose();
  }
}, 120_000);

/** The engine's ids of the plane's container `containerId`, while the engine has it. */
function dockerIdsOf(containerId: string): string[] {
  return execFileSync("docker", ["ps", "-aq", "--filter", `label=${CONTAINER_LABELS.container}=${containerId}`])
    .toString()
    .split("\n")
    .filter(Boolean);
}
