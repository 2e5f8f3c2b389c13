/**
 * No WebAssembly module keeps the gateway from answering: in real workerd, a module that sleeps until a time far in
 * the future, or loops forever, fails its call with FunctionTimeoutError within its timeout (2 s) plus a second, and
 * /v1/health and another function answer within that bound too.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FunctionTimeoutError, lookup } from "../sdk/index.js";
import { startTestGateway, type TestGateway } from "./helpers/gateway.js";

let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway(new URL("./fixtures/wasm-hang-app.ts", import.meta.url).pathname);
});
afterAll(async () => {
  await gw?.dispose();
});

const TIMEOUT_MS = 2000;

describe("a module that tries to outlive its timeout", () => {
  for (const [what, input] of [
    ["sleeps until an absolute time far in the future", "a"],
    ["loops forever", "l"],
  ] as const) {
    it(`fails its call in time, and the gateway answers health and other calls meanwhile, when it ${what}`, { timeout: 20_000 }, async () => {
      const started = Date.now();
      const since = () => Date.now() - started;
      const hanging = lookup<[string], Uint8Array>("wasmhang", "hang", { gateway: gw.url })
        .remote(input)
        .then(
          () => ({ error: undefined, at: since() }),
          (error: unknown) => ({ error, at: since() }),
        );
      // Asked once the hanging call has reached the gateway.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const health = fetch(`${gw.url}/v1/health`).then((res) => ({ status: res.status, at: since() }));
      const other = lookup<[string], string[]>("wasmhang", "upper", { gateway: gw.url })
        .remote("still here")
        .then((result) => ({ result, at: since() }));
      const [call, healthy, answered] = await Promise.all([hanging, health, other]);
      expect(call.error).toBeInstanceOf(FunctionTimeoutError);
      expect((call.error as Error).message).toMatch(
        /^wasmhang\.hang timed out after 2 s \(attempt 1\): hang (asked to sleep \d+ ms|ran for \d+ ms), past its limit of 2000 ms/,
      );
      expect(call.at).toBeLessThanOrEqual(TIMEOUT_MS + 1000);
      expect(healthy).toEqual({ status: 200, at: expect.any(Number) });
      expect(healthy.at).toBeLessThanOrEqual(TIMEOUT_MS + 1000);
      expect(answered).toEqual({ result: ["STILL HERE"], at: expect.any(Number) });
      expect(answered.at).toBeLessThanOrEqual(TIMEOUT_MS + 1000);
    });
  }
});
