/**
 * Memory snapshots on the plane (docs/plane.md, "Memory snapshots"), against real Docker under gVisor: a
 * `snapshot: true` class's enter() runs once, for the snapshot; every cold start after resumes from it.
 */
import Database from "better-sqlite3";
import { readdirSync } from "node:fs";
import { truncate } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Dict, lookup } from "../sdk/index.js";
import { runCli } from "./helpers/cli.js";
import { ADMIN_TOKEN, eventually } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack(new URL("./fixtures/snapshot-app.ts", import.meta.url).pathname);
}, 120_000);
afterAll(async () => {
  await stack?.dispose();
});

const lookupRow = (i: number) =>
  lookup<[Record<string, unknown>, number], { value: number; enteredAs: string }>("snaps", "Table.lookup", { gateway: stack.url }).remote({}, i);
const linesWith = (text: string) => stack.planeOutput.filter((l) => l.includes(text));
/** The plane's lines about the snapshot app's containers and snapshots, for a failed count's message. */
const snapshotLines = () => stack.planeOutput.filter((l) => /table enter|snaps\.Table|memory snapshot/.test(l));
const containers = () => stack.planes[0]!.status().containers.filter((c) => c.app === "snaps");
const snapshotsOnDisk = () => readdirSync(join(stack.dir, "plane-0", "snapshots")).filter((name) => !name.endsWith(".partial"));

describe("memory snapshots on the plane", () => {
  it("runs enter() once for two cold starts: the second resumes from the snapshot", async () => {
    expect(stack.planes[0]!.driver.runtime).toBe("runsc");
    const first = await lookupRow(21);
    expect(first.value).toBe(42);
    expect(linesWith("memory snapshot of snaps.Table taken")).toHaveLength(1);
    await eventually(() => containers().length === 0, 30_000); // scaled down after its 1 s window

    const second = await lookupRow(50_000);
    expect(second.value).toBe(100_000);
    // A resume that failed starts the container fresh (and drops the snapshot): said first, with the plane's lines.
    expect(linesWith("could not resume its memory snapshot"), snapshotLines().join("\n")).toEqual([]);
    // The table and the values enter() made came back from the snapshot: the same ones, made once.
    expect(second.enteredAs, snapshotLines().join("\n")).toBe(first.enteredAs);
    expect(linesWith("] table enter ")).toHaveLength(1);
    expect(await Dict.fromName("enters", { gateway: stack.url, token: ADMIN_TOKEN }).len()).toBe(1);
    expect(linesWith("(resumed from its memory snapshot)")).toHaveLength(2);
    // A resumed runner's lines still reach the plane, tagged with their call.
    await eventually(() => linesWith("] lookup 50000").length === 1, 5_000);
    expect(linesWith("] lookup 50000")[0]).toMatch(/ fc-[0-9a-z]{26} ctr-[0-9a-f]{8}\] lookup 50000$/);
    expect(snapshotsOnDisk()).toHaveLength(1);
  });

  it("removes the app's snapshots with tandem app stop", async () => {
    const { code, stdout } = await runCli(["app", "stop", "snaps", "--gateway", stack.url]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/of app snaps/);
    expect(snapshotsOnDisk()).toEqual([]);
    expect(linesWith("removed 1 memory snapshot of app snaps")).toHaveLength(1);
  });

  it("starts fresh, saying why, when a snapshot cannot be resumed", async () => {
    expect((await lookupRow(7)).value).toBe(14); // a new snapshot, after the stop removed the last
    expect(snapshotsOnDisk()).toHaveLength(1);
    await eventually(() => containers().length === 0, 30_000);
    const image = join(stack.dir, "plane-0", "snapshots", snapshotsOnDisk()[0]!, "tandem", "checkpoint.img");
    await truncate(image, 1000); // a damaged snapshot

    expect((await lookupRow(8)).value).toBe(16);
    expect(linesWith("snaps.Table: could not resume its memory snapshot (")).toHaveLength(1);
    // The first snapshot's, the second's, and this fresh start's. A container's lines reach the plane's output after
    // its answer can, so the count is waited for (a test ran on at 2 once, and the next counted the late line as its own).
    await eventually(() => linesWith("] table enter ").length >= 3, 5_000).catch(() => {});
    expect(linesWith("] table enter ")).toHaveLength(3);
    expect(snapshotsOnDisk()).toEqual([]);
  });

  it("takes one snapshot for cold starts that come together, and meters the container that took it", async () => {
    const taken = linesWith("memory snapshot of snaps.Table taken").length;
    const entered = linesWith("] table enter ").length;
    const failedResumes = linesWith("could not resume its memory snapshot").length;
    const together = lookup<[Record<string, unknown>, number], { value: number }>("snaps", "Table.lookup", { gateway: stack.url });
    const answers = await Promise.all([together.remote({ batch: 2 }, 1), together.remote({ batch: 2 }, 2)]);
    expect(answers.map((a) => a.value)).toEqual([2, 4]);
    expect(linesWith("memory snapshot of snaps.Table taken")).toHaveLength(taken + 1);
    await eventually(() => linesWith("] table enter ").length >= entered + 1, 5_000).catch(() => {});
    // A resume that failed starts its container fresh, and enter() runs again: asserted first, so that a count off by
    // one says which it was; each message lists the plane's lines about the app's containers.
    expect(linesWith("could not resume its memory snapshot"), snapshotLines().join("\n")).toHaveLength(failedResumes);
    expect(linesWith("] table enter "), snapshotLines().join("\n")).toHaveLength(entered + 1);
    const maker = /\((ctr-[0-9a-f]{8})\)$/.exec(linesWith("memory snapshot of snaps.Table taken").at(-1)!)![1]!;
    const ledger = new Database(join(stack.dir, "plane-0", "usage.sqlite"), { readonly: true });
    try {
      expect(ledger.prepare("SELECT app, cpu FROM containers WHERE container_id = ?").get(maker)).toEqual({ app: "snaps", cpu: 1 });
    } finally {
      ledger.close();
    }
  });
});
