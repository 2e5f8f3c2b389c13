import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LogFrame } from "../sdk/protocol.js";
import { LineSplitter } from "../sdk/stream-lines.js";
import { ControlChannel } from "./control-channel.js";

const CALL = "fc-01m91fw027c8q3ea52pxvfrwvz";
const OTHER = "fc-01m91fw027c8q3ea52pxvfrwv0";
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A channel, and a runner's end of it that sends frames and reads the inputs it is sent. */
async function connected() {
  const dir = await mkdtemp(join(tmpdir(), "tandem-control-"));
  const channel = await ControlChannel.open(join(dir, "ctl"));
  const logs: { frame: LogFrame; functions: (string | undefined)[]; readAt: number; handedOnAt: number }[] = [];
  channel.onLog((frame, functions, readAt) => logs.push({ frame, functions, readAt, handedOnAt: Date.now() }));
  const runner = net.connect(join(channel.dir, "control.sock"));
  const inputs: string[] = [];
  const lines = new LineSplitter();
  runner.setEncoding("utf8");
  runner.on("data", (chunk: string) => inputs.push(...lines.push(chunk)));
  await new Promise((resolve) => runner.once("connect", resolve));
  cleanups.push(async () => {
    runner.destroy();
    await channel.close();
    await rm(dir, { recursive: true, force: true });
  });
  const send = (frame: object) => runner.write(JSON.stringify(frame) + "\n");
  send({ t: "ready", pid: 1, functions: ["f"] });
  await channel.ready;
  return { channel, logs, inputs, send };
}

const line = (callId: string | null, text: string) => ({ callId, source: "stdout", text });
const until = async (check: () => boolean) => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
};

describe("a container's log frames", () => {
  it("are kept until the plane listens, with an uncaught frame: a runner logs its enter() as soon as it connects", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tandem-control-"));
    const channel = await ControlChannel.open(join(dir, "ctl"));
    const runner = net.connect(join(channel.dir, "control.sock"));
    cleanups.push(async () => {
      runner.destroy();
      await channel.close();
      await rm(dir, { recursive: true, force: true });
    });
    await new Promise((resolve) => runner.once("connect", resolve));
    runner.write(JSON.stringify({ t: "log", lines: [line(null, "loading the weights")] }) + "\n");
    runner.write(JSON.stringify({ t: "uncaught", origin: "rejection", error: { name: "RangeError", message: "lost" } }) + "\n");
    await new Promise((r) => setTimeout(r, 50));
    const texts: string[] = [];
    const uncaught: string[] = [];
    channel.onLog((frame) => texts.push(...frame.lines.map((l) => l.text)));
    channel.onUncaught((frame) => uncaught.push(frame.error.message));
    await until(() => texts.length === 1);
    expect([texts, uncaught]).toEqual([["loading the weights"], ["lost"]]);
  });

  it("are timed as read, before the output read with them, though they are handed on after it", async () => {
    const { channel, logs, inputs, send } = await connected();
    const output = channel.run({ t: "input", callId: CALL, function: "f", attempt: 1, args: { json: [] } });
    await until(() => inputs.length === 1);
    const sentAt = Date.now();
    send({ t: "log", lines: [line(CALL, "printed, then the result")] });
    send({ t: "output", callId: CALL, status: "succeeded", result: { json: 1 } });
    await output;
    const answeredAt = Date.now();
    // Handed on late, as a busy plane might: the line's time is still when it came.
    const busyUntil = Date.now() + 30;
    while (Date.now() < busyUntil);
    await until(() => logs.length === 1);
    expect(logs[0]!.readAt).toBeGreaterThanOrEqual(sentAt);
    expect(logs[0]!.readAt).toBeLessThanOrEqual(answeredAt);
    expect(logs[0]!.handedOnAt).toBeGreaterThanOrEqual(busyUntil);
  });

  it("keep the call of a line only when that call runs or ran in this container: another call's id is its own line", async () => {
    const { channel, logs, inputs, send } = await connected();
    const output = channel.run({ t: "input", callId: CALL, function: "f", attempt: 1, args: { json: [] } });
    await until(() => inputs.length === 1);
    send({ t: "log", lines: [line(CALL, "mine"), line(OTHER, "claimed"), line(null, "outside")] });
    send({ t: "output", callId: CALL, status: "succeeded", result: { json: 1 } });
    await output;
    send({ t: "log", lines: [line(CALL, "late, from a timer of the call's")] });
    await until(() => logs.length === 2);
    expect(logs.map(({ frame, functions }) => ({ lines: frame.lines.map((l) => `${l.callId ?? "-"} ${l.text}`), functions }))).toEqual([
      { lines: [`${CALL} mine`, "- claimed", "- outside"], functions: ["f", undefined, undefined] },
      { lines: [`${CALL} late, from a timer of the call's`], functions: ["f"] },
    ]);
  });

  it("hands a call's lines on after its answer, in the order sent, and fails the channel on a log frame of the wrong shape", async () => {
    const { channel, logs, inputs, send } = await connected();
    let failure: string | undefined;
    channel.onProtocolError((message) => (failure = message));
    const output = channel.run({ t: "input", callId: CALL, function: "f", attempt: 1, args: { json: [] } });
    await until(() => inputs.length === 1);
    const answeredWith: number[] = [];
    void output.then(() => answeredWith.push(logs.length));
    send({ t: "log", lines: [line(CALL, "one")] });
    send({ t: "log", lines: [line(CALL, "two")] });
    send({ t: "output", callId: CALL, status: "succeeded", result: { json: 1 } });
    await output;
    await until(() => logs.length === 2);
    expect(answeredWith).toEqual([0]);
    expect(logs.map(({ frame }) => frame.lines[0]!.text)).toEqual(["one", "two"]);
    send({ t: "log", lines: [{ callId: CALL, source: "stdin", text: "no such source" }] });
    await until(() => failure !== undefined);
    expect(failure).toMatch(/^a frame of the wrong shape: "\{\\"t\\":\\"log\\"/);
    await expect(channel.run({ t: "input", callId: OTHER, function: "f", attempt: 1, args: { json: [] } })).rejects.toThrow(/wrong shape/);
  });
});
