/** WebAssembly functions at the edge, in real workerd: the JSON ABI, endpoints calling them, errors. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FunctionTimeoutError, InvalidRequestError, RemoteError, lookup } from "../sdk/index.js";
import { runCli } from "./helpers/cli.js";
import { authed, eventually, startTestGateway, type TestGateway } from "./helpers/gateway.js";
import { READ_ONLY_ERRNOS } from "../wasm/fixtures/files-errnos.js";

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

  it("refuse, naming it, an argument JSON cannot carry (a Map, a Set, bytes, a BigInt) rather than send it changed", async () => {
    const refusal = async (...args: unknown[]) => {
      const err = await lookup("wasmy", "upper", { gateway: gw.url })
        .remote(...args)
        .catch((e) => e);
      expect(err).toBeInstanceOf(InvalidRequestError);
      return err.message;
    };
    const rest = `, which JSON cannot carry; pass plain objects, arrays, strings, numbers and booleans (or give the function contentType: "bytes" and pass bytes)`;
    expect(await refusal(new Map([["a", 1]]))).toBe(`wasmy.upper takes its arguments as JSON: argument 1 is a Map${rest}`);
    expect(await refusal("x", { tags: new Set(["y"]) })).toBe(`wasmy.upper takes its arguments as JSON: argument 2.tags is a Set${rest}`);
    expect(await refusal([new Uint8Array([104, 105])])).toBe(`wasmy.upper takes its arguments as JSON: argument 1[0] is bytes (Uint8Array)${rest}`);
    expect(await refusal(10n)).toBe(`wasmy.upper takes its arguments as JSON: argument 1 is a BigInt${rest}`);
    // A Date is sent as its ISO string, as JSON.stringify writes it.
    expect(await lookup("wasmy", "upper", { gateway: gw.url }).remote(new Date(0))).toEqual(["1970-01-01T00:00:00.000Z"]);
  });

  it("refuse a stream before their module runs", async () => {
    const ran = () => gw.output.filter((l) => /\[wasmy\.upper fc-[0-9a-z]{26}\] \(stderr\) bye/.test(l)).length;
    // Once this call's line is in, every earlier call's is (workerd prints them in order).
    const call = await lookup("wasmy", "upper", { gateway: gw.url }).spawn("x");
    await call.get();
    await eventually(() => gw.output.some((l) => l.includes(`[wasmy.upper ${call.id}] (stderr) bye`)));
    const before = ran();
    const res = await fetch(`${gw.url}/v1/apps/wasmy/functions/upper/stream`, authed({ method: "POST", body: JSON.stringify({ args: ["x"] }) }));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: unknown }).error).toMatchObject({
      code: "invalid_request",
      message: "wasmy.upper is a WebAssembly function, which does not stream; call it with .remote() (POST .../call)",
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(ran()).toBe(before); // before: it ran once, then was refused as "not a generator function"
  });

  it("are called from a web endpoint like any function", async () => {
    expect(await (await fetch(`${gw.url}/wasmy/shout/quiet`)).json()).toEqual({ upper: ["QUIET"] });
  });

  it("fail the call with a typed error when the output is not JSON, and log their stderr", async () => {
    const err = await lookup("wasmy", "notJson", { gateway: gw.url })
      .remote()
      .catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.remoteName).toBe("WasmExitError");
    expect(err.message).toBe(
      'notJson wrote output that is not JSON: "ok" (a module that writes other output takes contentType: "bytes", and its result is stdout\'s bytes)',
    );
    await lookup("wasmy", "upper", { gateway: gw.url }).remote("x");
    await eventually(() => gw.output.some((l) => /\[wasmy\.upper fc-[0-9a-z]{26}\] \(stderr\) bye/.test(l)));
  });
});

describe("a command-line tool with args and files", () => {
  const tool = () => lookup<[], { argv: string[]; text: string; errnos: Record<string, number> }>("wasmy", "tool", { gateway: gw.url });

  it("gets its args as argv and reads its bundled directory at the guest path", async () => {
    const out = await tool().remote();
    expect(out.argv).toEqual(["tool", "/data", "hello.txt"]);
    expect(out.text).toBe("hello from the bundle\n");
  });

  it("cannot change the directory: EROFS for every change, EBADF through a descriptor opened for reading; the next call reads the same", async () => {
    const first = await tool().remote();
    expect(first.errnos).toEqual(READ_ONLY_ERRNOS);
    expect((await tool().remote()).text).toBe("hello from the bundle\n");
  });
});

describe("a bytes function", () => {
  const misbehave = () => lookup<[Uint8Array | string], Uint8Array>("wasmy", "misbehave", { gateway: gw.url });
  const text = (b: Uint8Array) => new TextDecoder().decode(b);

  it("takes raw bytes on stdin and answers with stdout's bytes, from a call and from an endpoint", async () => {
    const out = await misbehave().remote(new TextEncoder().encode("x"));
    expect(out).toBeInstanceOf(Uint8Array);
    expect(text(out)).toBe("ok");
    expect(text(await misbehave().remote("x"))).toBe("ok");
    const res = await fetch(`${gw.url}/wasmy/raw/`, { method: "POST", body: "x" });
    expect(await res.text()).toBe("ok");
  });

  it("refuses input that is not one bytes value with a 4xx naming it", async () => {
    const err = await lookup("wasmy", "misbehave", { gateway: gw.url })
      .remote(1, 2)
      .catch((e) => e);
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect(err.message).toBe(
      "wasmy.misbehave takes its input as bytes: call it with one Uint8Array or string, or with nothing for an empty stdin (got 2 arguments)",
    );
  });

  it("fails one call that traps, outgrows its memory or output, or loops past its timeout; the next call works", async () => {
    const failure = async (input: string) => {
      const e = await misbehave()
        .remote(input)
        .catch((e) => e);
      return { type: e.constructor.name, name: e.remoteName, message: e.message };
    };
    expect(await failure("t")).toEqual({ type: "RemoteError", name: "WasmTrapError", message: "misbehave trapped: unreachable" });
    // No frame of the caller's own is left in a trap's stack, so it is the error alone, not the platform's frames.
    const trapped = await misbehave()
      .remote("t")
      .catch((e) => e);
    expect(trapped.remoteStack).toBe("WasmTrapError: misbehave trapped: unreachable");
    expect(await failure("o")).toEqual({
      type: "RemoteError",
      name: "WasmLimitError",
      message: "misbehave wrote more than 1000 bytes of output, stdout and stderr together (its maxOutputBytes option)",
    });
    expect(await failure("m")).toEqual({
      type: "RemoteError",
      name: "WasmLimitError",
      message: "misbehave grew its memory to 65 pages, past its limit of 64 (4 MiB; its maxMemoryPages option)",
    });
    const started = Date.now();
    const timedOut = await misbehave()
      .remote("l")
      .catch((e) => e);
    expect(timedOut).toBeInstanceOf(FunctionTimeoutError);
    expect(timedOut.message).toMatch(
      /^wasmy\.misbehave timed out after 1 s \(attempt 1\): misbehave ran for 1\d{3} ms, past its limit of 1000 ms, and was stopped$/,
    );
    // The same facts as any function's timeout, in either tier: its call and attempt.
    expect(timedOut.details).toEqual({ timeoutSeconds: 1, callId: expect.stringMatching(/^fc-/), attempt: 1 });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(text(await misbehave().remote("x"))).toBe("ok");
  });

  it("records a call that ran past its timeout as timed out", async () => {
    const call = await misbehave().spawn("l");
    const err = await call.get().catch((e) => e);
    expect(err).toBeInstanceOf(FunctionTimeoutError);
    const res = await fetch(`${gw.url}/v1/calls/${call.id}`, authed());
    expect(((await res.json()) as { status: string }).status).toBe("timed_out");
  });
});

describe("a bad module", () => {
  const load = async (which: string) => {
    const { code, stderr } = await runCli(["run", "test/fixtures/wasm-bad-app.ts::bad"], { env: { TANDEM_TEST_BAD: which } });
    return { code, error: stderr.split("\n").find((l) => l.includes('app "wasmbad"')) };
  };

  it("fails before anything starts, naming the module and the import it lacks", async () => {
    expect(await load("import")).toEqual({
      code: 2,
      error: expect.stringContaining(
        'app "wasmbad": wasm function "bad": ../../wasm/fixtures/uses-env.as.ts imports env.now_please (function), which this host does not provide',
      ),
    });
  });

  it("fails before anything starts when the module is not a WASI command, or not WebAssembly at all", async () => {
    expect(await load("command")).toEqual({
      code: 2,
      error: expect.stringContaining(
        'app "wasmbad": wasm function "bad": ../../wasm/fixtures/not-command.as.ts is not a WASI command: it exports no _start function',
      ),
    });
    expect(await load("module")).toEqual({
      code: 2,
      error: expect.stringMatching(/app "wasmbad": wasm function "bad": \.\/not-a-module\.wasm is not a WebAssembly module \(.+\)/),
    });
  });

  it("fails before anything starts when its files are past the size limit, naming the directory, its size and the limit", async () => {
    const big = mkdtempSync(join(tmpdir(), "tandem-wasm-big-"));
    try {
      writeFileSync(join(big, "a.bin"), new Uint8Array(9 * 1024 * 1024));
      const { code, stderr } = await runCli(["run", "test/fixtures/wasm-bad-app.ts::bad"], { env: { TANDEM_TEST_BAD: "files", TANDEM_TEST_BAD_DIR: big } });
      expect({ code, error: stderr.split("\n").find((l) => l.includes('app "wasmbad"')) }).toEqual({
        code: 2,
        error: expect.stringContaining(
          `app "wasmbad": wasm function "bad": option "files" ("/data": ${big}) holds 9.0 MiB, more than the limit of 8.0 MiB for one function`,
        ),
      });
    } finally {
      rmSync(big, { recursive: true, force: true });
    }
  });

  it("says to use module, not source, for a .wasm file", async () => {
    expect(await load("source-is-wasm")).toEqual({
      code: 2,
      error: expect.stringContaining(
        'app "wasmbad": wasm function "bad": "source" takes AssemblyScript to compile (a .ts file), not ./not-a-module.wasm; for a compiled module, use { module: "./not-a-module.wasm" }',
      ),
    });
  });
});
