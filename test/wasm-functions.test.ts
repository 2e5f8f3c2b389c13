/** WebAssembly functions at the edge, in real workerd: the JSON ABI, endpoints calling them, errors. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RemoteError, lookup } from "../sdk/index.js";
import { runCli } from "./helpers/cli.js";
import { startTestGateway, type TestGateway } from "./helpers/gateway.js";

let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway(new URL("./fixtures/wasm-app.ts", import.meta.url).pathname);
});
afterAll(async () => {
  await gw?.dispose();
});

describe("WebAssembly functions", () => {
  it("take their arguments as JSON on stdin and answer with the JSON on stdout", async () => {
    expect(await lookup("wasmy", "upper", { gateway: gw.url }).remote("hello")).toEqual(["HELLO"]);
    const out: unknown[] = [];
    for await (const r of lookup("wasmy", "upper", { gateway: gw.url }).map(["a", "b"])) out.push(r);
    expect(out).toEqual([["A"], ["B"]]);
  });

  it("are called from a web endpoint like any function", async () => {
    expect(await (await fetch(`${gw.url}/wasmy/shout/quiet`)).json()).toEqual({ upper: ["QUIET"] });
  });

  it("fail the call with a typed error when the output is not JSON, and log their stderr", async () => {
    const err = await lookup("wasmy", "notJson", { gateway: gw.url }).remote().catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.remoteName).toBe("WasmExitError");
    expect(err.message).toBe('notJson wrote output that is not JSON: "ok"');
    await lookup("wasmy", "upper", { gateway: gw.url }).remote("x");
    expect(gw.output.some((l) => /\[wasmy\.upper fc-[0-9a-z]{26}\] bye/.test(l))).toBe(true);
  });
});

describe("a bad module", () => {
  it("fails serve before anything starts, naming the module and the import", async () => {
    const { code, stderr } = await runCli(["run", "test/fixtures/wasm-bad-app.ts::bad"]);
    expect(code).toBe(2);
    expect(stderr).toContain('app "wasmbad": wasm function "bad": ../../wasm/fixtures/uses-env.as.ts imports env.now_please (function), which this host does not provide');
  });
});
