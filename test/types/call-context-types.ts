// Checked by `tsc` (npm run typecheck), never run: inside a call, `currentCall().signal` is always there, so strict
// code reads it without a check of its own (before, `signal?: AbortSignal` made this TS18048).
import { App, currentCall, type CallContext } from "tandem";

const app = new App("types");

export const watchful = app.function(async () => {
  const signal: AbortSignal = currentCall()!.signal;
  currentCall()!.signal.addEventListener("abort", () => console.log("stopped"));
  return signal.aborted;
});

// Every runtime that makes a call's context must give it one.
// @ts-expect-error a CallContext without a signal
export const missing: CallContext = { callId: "fc-1", app: "types", function: "f", attempt: 1, env: {} };
