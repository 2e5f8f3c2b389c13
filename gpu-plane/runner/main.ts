/**
 * The container entrypoint. Bundled with the user's app file into one module
 * (the plane bundle), it connects to the control socket, loads the app, says
 * it is ready, then runs one input at a time until the plane stops it.
 * stdout and stderr are the function's logs; the plane tags them.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import net from "node:net";
import { loadAppModule, type FunctionHandle } from "../../sdk/app.js";
import { installCallContextStore, type CallContext } from "../../sdk/context.js";
import { remoteErrorFrom, toWireError } from "../../sdk/errors.js";
import { decodeValue, encodeValue, type InputFrame, type RunnerFrame } from "../../sdk/protocol.js";
import { IN_CONTAINER } from "../drivers/driver.js";

export async function runFunctions(appExports: Record<string, unknown>): Promise<void> {
  const socketPath = process.env.TANDEM_CONTROL_SOCKET ?? IN_CONTAINER.controlSocket;
  const app = loadAppModule("app", appExports);
  const functions = new Map(app.functions.map((f) => [f.name, f as FunctionHandle<unknown[], unknown>]));
  const calls = new AsyncLocalStorage<CallContext>();
  installCallContextStore(calls);

  const socket = net.connect(socketPath);
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  const send = (frame: RunnerFrame) => socket.write(JSON.stringify(frame) + "\n");
  send({ t: "ready", pid: process.pid, functions: [...functions.keys()] });

  let buffered = "";
  for await (const chunk of socket) {
    buffered += chunk.toString("utf8");
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const input = JSON.parse(buffered.slice(0, newline)) as InputFrame;
      buffered = buffered.slice(newline + 1);
      send(await run(input));
    }
  }
  process.exit(0); // the plane closed the channel

  async function run(input: InputFrame): Promise<RunnerFrame> {
    const fn = functions.get(input.function);
    const context: CallContext = { callId: input.callId, app: app.name, function: input.function, attempt: input.attempt, env: fn?.spec?.env ?? {} };
    try {
      if (!fn?.handler) throw new Error(`this bundle of app "${app.name}" has no function "${input.function}"`);
      const args = decodeValue(input.args.json, input.args.meta) as unknown[];
      const value = await calls.run(context, () => fn.handler!(...args));
      return { t: "output", callId: input.callId, status: "succeeded", result: encodeValue(value) };
    } catch (err) {
      const error = toWireError(remoteErrorFrom(err, { callId: input.callId }));
      return { t: "output", callId: input.callId, status: "failed", error: error as Extract<RunnerFrame, { status: "failed" }>["error"] };
    }
  }
}
