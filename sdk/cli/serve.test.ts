/** What `tandem serve` leaves out of the gateway's output: workerd's line for a client that went away, nothing else. */
import { expect, it } from "vitest";
import { isClientGoneLine } from "./serve.js";

it("leaves out workerd's line for an answer its client left early, and keeps every other error", () => {
  expect(
    isClientGoneLine(
      "workerd/server/server.c++:5351: error: kj::getCaughtExceptionAsKj() = kj/async-io-unix.c++:186: disconnected: ::write(fd, buffer, size): Broken pipe",
    ),
  ).toBe(true);
  expect(isClientGoneLine("workerd/server/server.c++:5351: error: x = kj/async-io-unix.c++:491: disconnected: ::read(): Connection reset by peer")).toBe(true);
  for (const line of [
    "workerd/server/server.c++:4200: error: Uncaught exception: Error: boom",
    "workerd/io/worker.c++:2050: error: disconnected: the Durable Object's isolate was reset",
    "[shop.resize fc-01m8kahk46m9azssadeq4z196a] Broken pipe while uploading",
  ])
    expect(isClientGoneLine(line), line).toBe(false);
});
