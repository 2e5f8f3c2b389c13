/**
 * The container runner when its plane goes away, or its app's code throws
 * outside a call. The test app's plane bundle (the app and the runner, built
 * as `tandem serve` builds it) runs under the process driver, connected to a
 * control socket this test holds where the plane would; the test then drops
 * that socket the way a dying plane does, or reads the frames the runner
 * sends, and what it printed and how it exited.
 */
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProcessDriver } from "../gpu-plane/drivers/process.js";
import type { ExitInfo } from "../gpu-plane/drivers/driver.js";
import { bundlePlane, type PlaneBundle } from "../sdk/cli/bundle.js";

const APP = new URL("./fixtures/plane-app.ts", import.meta.url).pathname;
const CLASS_APP = new URL("./fixtures/class-app.ts", import.meta.url).pathname;
let dir: string;
let bundle: PlaneBundle;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tandem-runner-"));
  bundle = await bundlePlane(APP, join(dir, "build"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Starts the bundle as the plane would, its control socket in `controlDir`; returns its output lines and exit. */
async function startRunner(
  controlDir: string,
  env: Record<string, string> = { TANDEM_FUNCTION: "slowPlane" },
  bundlePath = bundle.path,
): Promise<{ output: string[]; exited: Promise<ExitInfo> }> {
  const container = await new ProcessDriver().start({
    id: "ctr-0000test",
    bundlePath,
    nodeModulesPath: undefined,
    controlDir,
    env,
    cpu: 1,
    memoryMiB: 256,
    pidsLimit: 64,
    network: false,
    gpuDeviceIds: [],
    labels: {},
  });
  const output: string[] = [];
  container.onOutput((_, line) => output.push(line));
  const timeout = setTimeout(() => void container.kill(), 20_000); // bounded: a runner that never leaves is killed, and the test fails on its code
  const exited = container.exited.finally(() => clearTimeout(timeout));
  return { output, exited };
}

/** A control socket where the plane keeps it; with `pauseOnConnect`, nothing the runner writes is read. */
async function controlSocket(pauseOnConnect: boolean): Promise<{ controlDir: string; connected: Promise<net.Socket>; close: () => void }> {
  const controlDir = await mkdtemp(join(dir, "control-"));
  let accept!: (socket: net.Socket) => void;
  const connected = new Promise<net.Socket>((resolve) => (accept = resolve));
  const server = net.createServer({ pauseOnConnect }, (socket) => accept(socket));
  await new Promise<void>((resolve) => server.listen(join(controlDir, "control.sock"), resolve));
  return { controlDir, connected, close: () => server.close() };
}

describe("the runner, when its plane goes away", () => {
  it("leaves quietly with exit 0 when the plane's end of the socket is reset, with frames it never read", async () => {
    const control = await controlSocket(true);
    const runner = await startRunner(control.controlDir);
    const socket = await control.connected;
    await new Promise((r) => setTimeout(r, 300)); // the runner's "ready" frame sits unread on the plane's side
    socket.destroy(); // unread data: the runner's side of the socket gets ECONNRESET, as when the plane is killed
    control.close();
    const exit = await runner.exited;
    expect(runner.output.join("\n")).not.toMatch(/ECONNRESET|Uncaught|\n\s+at /);
    expect(exit.code).toBe(0);
  });

  it("leaves quietly with exit 0 when the plane is gone before the runner has said it is ready", async () => {
    const control = await controlSocket(false);
    const runner = await startRunner(control.controlDir);
    (await control.connected).destroy(); // the runner's "ready" meets a closed socket (EPIPE), or is reset unread
    control.close();
    const exit = await runner.exited;
    expect(runner.output.join("\n")).not.toMatch(/EPIPE|ECONNRESET|Uncaught|\n\s+at /);
    expect(exit.code).toBe(0);
  });

  it("says in one line that its plane's control socket is gone when there is none to connect to", async () => {
    const controlDir = await mkdtemp(join(dir, "control-"));
    const runner = await startRunner(controlDir);
    const exit = await runner.exited;
    expect(runner.output).toHaveLength(1);
    expect(runner.output[0]).toMatch(/^tandem runner: cannot reach the plane's control socket .*control\.sock \(ENOENT\); leaving$/);
    expect(exit.code).toBe(1);
  });
});

describe("the runner, when its app's code throws outside a call", () => {
  let classes: PlaneBundle;
  beforeAll(async () => {
    classes = await bundlePlane(CLASS_APP, join(dir, "build-classes"));
  });

  /** A class's container running `method` until it exits: the frames it sent its plane, what it printed, its exit. */
  async function runUntilExit(method: string) {
    const control = await controlSocket(false);
    const runner = await startRunner(control.controlDir, { TANDEM_FUNCTION: method, TANDEM_CLS_PARAMS: "{}" }, classes.path);
    const socket = await control.connected;
    let read = "";
    socket.setEncoding("utf8").on("data", (chunk: string) => (read += chunk));
    const exit = await runner.exited;
    control.close();
    const frames = read
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { t: string; origin?: string; error?: { name: string; message: string; stack?: string } });
    return { frames, output: runner.output, exit };
  }

  it("tells its plane what was thrown in one frame and exits 1, printing none of the bundle's source", async () => {
    // A class's container: its enter() starts a timer that throws 1.5 s later.
    const { frames, output: printed, exit } = await runUntilExit("Looping.wait");
    expect(frames.map((f) => f.t)).toEqual(["ready", "uncaught"]);
    expect(frames[1]).toMatchObject({ origin: "exception", error: { name: "TypeError", message: "the background loop lost its queue" } });
    expect(frames[1]!.error!.stack).toMatch(/^TypeError: the background loop lost its queue\n\s+at /);
    expect(printed).toEqual([]);
    expect(exit.code).toBe(1);
  });

  it("tells it in place of its ready frame when a promise enter() left rejected before it was ready", async () => {
    const { frames, output: printed, exit } = await runUntilExit("Rejecting.wait");
    expect(frames).toEqual([{ t: "uncaught", origin: "rejection", error: expect.objectContaining({ name: "RangeError", message: "nobody awaited this" }) }]);
    expect(printed).toEqual([]);
    expect(exit.code).toBe(1);
  });
});
