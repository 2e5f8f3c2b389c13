/**
 * The calls the host answers itself (wasi-calls.ts), with modules written by
 * hand in WAT: poll_oneoff sleeps (relative, absolute, past the limit, several
 * subscriptions, stdio) end within the run's time limit in Node and in real
 * workerd; bad subscriptions get an errno; a trap keeps stderr's tail; sockets
 * answer ENOTSUP and a raised signal ends the run with WasmSignalError.
 */
import binaryen from "binaryen";
import { startWasmWorker } from "./fixtures/workerd.js";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { parseWasmOptions, parseWasmSource } from "../sdk/options.js";
import { wasmFunction } from "./function.js";
import { WasmLimitError, WasmSignalError, WasmTrapError, checkWasiCommand, runWasi, type WasmLimits } from "./host.js";
import { instrument } from "./prepare.js";
import { ERRNO } from "./wasi-calls.js";

/** A module from WAT text. */
function wat(text: string): Uint8Array<ArrayBuffer> {
  const m = binaryen.parseText(text);
  try {
    return new Uint8Array(m.emitBinary());
  } finally {
    m.dispose();
  }
}

const IMPORTS = `
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))`;

/**
 * Reads a control block from stdin (its length u32 @256, then count @260, in @264, out @268, nevents @272, dump
 * from @276, dump length @280, subscriptions from @288), leaves the rest of stdin unread, calls poll_oneoff with
 * them, and writes the errno (u32) then the dumped memory to stdout.
 */
const POLL = wat(`(module ${IMPORTS}
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 256))
    (i32.store (i32.const 20) (i32.const 4))
    (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 40)))
    (i32.store (i32.const 16) (i32.const 260))
    (i32.store (i32.const 20) (i32.sub (i32.load (i32.const 256)) (i32.const 4)))
    (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 40)))
    (i32.store (i32.const 0)
      (call $poll_oneoff (i32.load (i32.const 264)) (i32.load (i32.const 268)) (i32.load (i32.const 260)) (i32.load (i32.const 272))))
    (i32.store (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (i32.const 4))
    (i32.store (i32.const 24) (i32.load (i32.const 276)))
    (i32.store (i32.const 28) (i32.load (i32.const 280)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 2) (i32.const 40)))))`);

type Subscription =
  | { userdata: bigint; clock: "realtime" | "monotonic" | number; timeoutNs: bigint; absolute?: boolean; flags?: number }
  | { userdata: bigint; fd: number; write?: boolean }
  | { userdata: bigint; tag: number };

const NEVENTS_AT = 8184;
const EVENTS_AT = 8192;

/** stdin for POLL: the subscriptions, then `rest` (left on stdin); pointers may be overridden to test bad ones. */
function pollInput(subs: Subscription[], options: { rest?: string; count?: number; inPtr?: number; outPtr?: number; neventsPtr?: number } = {}): Uint8Array {
  const control = new DataView(new ArrayBuffer(32 + subs.length * 48));
  const count = options.count ?? subs.length;
  const fine = options.inPtr === undefined && options.outPtr === undefined && options.neventsPtr === undefined;
  const fields = [
    control.byteLength,
    count,
    options.inPtr ?? 288,
    options.outPtr ?? EVENTS_AT,
    options.neventsPtr ?? NEVENTS_AT,
    NEVENTS_AT,
    fine ? 8 + Math.min(count, 100) * 32 : 0,
  ];
  fields.forEach((v, i) => control.setUint32(i * 4, v, true));
  subs.forEach((s, i) => {
    const at = 32 + i * 48;
    control.setBigUint64(at, s.userdata, true);
    if ("clock" in s) {
      control.setUint32(at + 16, s.clock === "realtime" ? 0 : s.clock === "monotonic" ? 1 : s.clock, true);
      control.setBigUint64(at + 24, s.timeoutNs, true);
      control.setBigUint64(at + 32, 1000n, true);
      control.setUint16(at + 40, s.flags ?? (s.absolute ? 1 : 0), true);
    } else if ("fd" in s) {
      control.setUint8(at + 8, s.write ? 2 : 1);
      control.setUint32(at + 16, s.fd, true);
    } else control.setUint8(at + 8, s.tag);
  });
  const rest = new TextEncoder().encode(options.rest ?? "");
  const out = new Uint8Array(control.byteLength + rest.length);
  out.set(new Uint8Array(control.buffer));
  out.set(rest, control.byteLength);
  return out;
}

interface PollAnswer {
  errno: number;
  events?: { userdata: bigint; error: number; type: number; nbytes: bigint; flags: number }[];
}

function readAnswer(stdout: Uint8Array): PollAnswer {
  const view = new DataView(stdout.buffer, stdout.byteOffset, stdout.byteLength);
  const errno = view.getUint32(0, true);
  if (stdout.length === 4) return { errno };
  const nevents = view.getUint32(4, true);
  const events = Array.from({ length: nevents }, (_, i) => {
    const at = 4 + (EVENTS_AT - NEVENTS_AT) + i * 32;
    return {
      userdata: view.getBigUint64(at, true),
      error: view.getUint16(at + 8, true),
      type: view.getUint8(at + 10),
      nbytes: view.getBigUint64(at + 16, true),
      flags: view.getUint16(at + 24, true),
    };
  });
  return { errno, events };
}

const pollModule = new WebAssembly.Module(POLL);
const poll = (subs: Subscription[], options: Parameters<typeof pollInput>[1] = {}, limits: Partial<WasmLimits> = {}) =>
  readAnswer(runWasi(pollModule, "poll.wasm", { stdin: pollInput(subs, options), limits }).stdout);

/** What a run threw, as `{ name, limit?, message }`. */
function failure(run: () => unknown): { name: string; limit?: string; message: string } | undefined {
  try {
    run();
  } catch (e) {
    if (e instanceof WasmLimitError) return { name: e.name, limit: e.limit, message: e.message };
    return { name: (e as Error).name, message: (e as Error).message };
  }
}

const ms = (n: number) => BigInt(n) * 1_000_000n;
const realtimeNs = () => BigInt(Date.now()) * 1_000_000n;
const monotonicNs = () => BigInt(Math.round(performance.now() * 1e6));
/** 2100-01-01T00:00:00Z, in ns. */
const YEAR_2100 = 4_102_444_800_000n * 1_000_000n;
const clockEvent = (userdata: bigint) => ({ userdata, error: 0, type: 0, nbytes: 0n, flags: 0 });

describe("poll_oneoff on clocks", () => {
  it("sleeps a relative time on either clock, and answers with the subscription's event", () => {
    for (const clock of ["monotonic", "realtime"] as const) {
      const before = Date.now();
      expect(poll([{ userdata: 7n, clock, timeoutNs: ms(30) }])).toEqual({ errno: 0, events: [clockEvent(7n)] });
      expect(Date.now() - before).toBeGreaterThanOrEqual(30);
    }
  });

  it("sleeps until an absolute time on the realtime and the monotonic clock, as clock_time_get reads them", () => {
    const wakeAt = realtimeNs() + ms(40);
    expect(poll([{ userdata: 1n, clock: "realtime", timeoutNs: wakeAt, absolute: true }])).toEqual({ errno: 0, events: [clockEvent(1n)] });
    expect(realtimeNs()).toBeGreaterThanOrEqual(wakeAt);
    const monotonicWake = monotonicNs() + ms(40);
    expect(poll([{ userdata: 2n, clock: "monotonic", timeoutNs: monotonicWake, absolute: true }])).toEqual({ errno: 0, events: [clockEvent(2n)] });
    expect(monotonicNs()).toBeGreaterThanOrEqual(monotonicWake);
    // A time already past fires at once.
    expect(poll([{ userdata: 3n, clock: "realtime", timeoutNs: 1n, absolute: true }])).toEqual({ errno: 0, events: [clockEvent(3n)] });
  });

  it("fails at once with the time limit when an absolute sleep ends far in the future, on either clock", () => {
    for (const clock of ["realtime", "monotonic"] as const) {
      expect(failure(() => poll([{ userdata: 1n, clock, timeoutNs: YEAR_2100, absolute: true }]))).toEqual({
        name: "WasmLimitError",
        limit: "time",
        message: expect.stringMatching(/^poll\.wasm asked to sleep \d+ ms, past its limit of 300000 ms, and was stopped$/),
      });
    }
  });

  it("fails at once with the time limit when a relative sleep ends past it, and the next run sleeps within it", () => {
    expect(failure(() => poll([{ userdata: 1n, clock: "monotonic", timeoutNs: ms(10_000) }], {}, { maxWallMs: 2000 }))).toEqual({
      name: "WasmLimitError",
      limit: "time",
      message: "poll.wasm asked to sleep 10000 ms, past its limit of 2000 ms, and was stopped",
    });
    expect(poll([{ userdata: 1n, clock: "monotonic", timeoutNs: ms(20) }], {}, { maxWallMs: 2000 })).toEqual({ errno: 0, events: [clockEvent(1n)] });
  });

  it("answers several clock subscriptions with the earliest, or with every one already due", () => {
    const subs: Subscription[] = [
      { userdata: 1n, clock: "monotonic", timeoutNs: ms(5000) },
      { userdata: 2n, clock: "monotonic", timeoutNs: ms(20) },
      { userdata: 3n, clock: "realtime", timeoutNs: realtimeNs() + ms(4000), absolute: true },
    ];
    // The later ones are not waited for: 4 s and 5 s are past the limit.
    expect(poll(subs, {}, { maxWallMs: 2000 })).toEqual({ errno: 0, events: [clockEvent(2n)] });
    expect(
      poll([
        { userdata: 4n, clock: "realtime", timeoutNs: 0n },
        { userdata: 5n, clock: "monotonic", timeoutNs: 1n, absolute: true },
        { userdata: 6n, clock: "monotonic", timeoutNs: ms(1000) },
      ]),
    ).toEqual({ errno: 0, events: [clockEvent(4n), clockEvent(5n)] });
  });

  it("stops a tight loop at its time limit once instrumented, where no call returns to the host", async () => {
    const loop = wat(`(module ${IMPORTS}
      (memory (export "memory") 1)
      (func (export "_start") (loop $forever (br $forever))))`);
    const module = new WebAssembly.Module(await instrument(loop, 16));
    expect(failure(() => runWasi(module, "loop.wasm", { limits: { maxWallMs: 200 } }))).toEqual({
      name: "WasmLimitError",
      limit: "time",
      message: expect.stringMatching(/^loop\.wasm ran for \d+ ms, past its limit of 200 ms, and was stopped$/),
    });
  });
});

describe("poll_oneoff on stdio and bad input", () => {
  it("finds stdin, stdout and stderr ready at once, with the bytes left to read or to write, and no sleep", () => {
    const answer = poll(
      [
        { userdata: 1n, fd: 0 },
        { userdata: 2n, fd: 1, write: true },
        { userdata: 3n, clock: "monotonic", timeoutNs: ms(10_000) },
        { userdata: 4n, fd: 2, write: true },
        { userdata: 5n, fd: 9 },
      ],
      { rest: "hello" },
      { maxWallMs: 2000, maxOutputBytes: 1000 },
    );
    expect(answer).toEqual({
      errno: 0,
      events: [
        { userdata: 1n, error: 0, type: 1, nbytes: 5n, flags: 0 },
        { userdata: 2n, error: 0, type: 2, nbytes: 1000n, flags: 0 },
        { userdata: 4n, error: 0, type: 2, nbytes: 1000n, flags: 0 },
        { userdata: 5n, error: ERRNO.BADF, type: 1, nbytes: 0n, flags: 0 },
      ],
    });
    expect(poll([{ userdata: 1n, fd: 0 }])).toEqual({ errno: 0, events: [{ userdata: 1n, error: 0, type: 1, nbytes: 0n, flags: 0 }] });
  });

  it("answers bad subscriptions and pointers with EINVAL or EFAULT, without throwing", () => {
    const clock = { userdata: 1n, clock: "monotonic", timeoutNs: 0n } as const;
    expect(poll([], { count: 0 }).errno).toBe(ERRNO.INVAL);
    expect(poll([{ userdata: 1n, tag: 3 }]).errno).toBe(ERRNO.INVAL);
    expect(poll([{ ...clock, clock: 2 }]).errno).toBe(ERRNO.INVAL);
    expect(poll([{ ...clock, flags: 2 }]).errno).toBe(ERRNO.INVAL);
    expect(poll([clock], { inPtr: 65536 - 40 }).errno).toBe(ERRNO.FAULT);
    expect(poll([clock], { outPtr: 65536 - 16 }).errno).toBe(ERRNO.FAULT);
    expect(poll([clock], { neventsPtr: 65535 }).errno).toBe(ERRNO.FAULT);
    expect(poll([clock], { count: 0x7fffffff }).errno).toBe(ERRNO.FAULT);
    expect(poll([clock], { inPtr: -8 >>> 0 }).errno).toBe(ERRNO.FAULT);
  });
});

const PANIC = wat(`(module ${IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 64) "working\\npanicked at src/main.rs:2:5:\\nexplicit panic\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 52))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (unreachable)))`);

describe("a trap", () => {
  it("keeps stderr's last lines in WasmTrapError's message and properties", () => {
    const thrown = (() => {
      try {
        runWasi(new WebAssembly.Module(PANIC), "panic.wasm");
      } catch (e) {
        return e;
      }
    })() as WasmTrapError;
    expect(thrown).toBeInstanceOf(WasmTrapError);
    expect(thrown.message).toBe("panic.wasm trapped: unreachable: working\npanicked at src/main.rs:2:5:\nexplicit panic");
    expect(thrown.stderrTail).toBe("working\npanicked at src/main.rs:2:5:\nexplicit panic");
    expect(new TextDecoder().decode(thrown.stderr)).toBe("working\npanicked at src/main.rs:2:5:\nexplicit panic\n");
  });

  afterEach(() => vi.restoreAllMocks());

  it("logs stderr's lines through the function ABI before the call fails", () => {
    const logged: unknown[] = [];
    vi.spyOn(console, "error").mockImplementation((line: unknown) => void logged.push(line));
    const definition = { name: "panic", ...parseWasmSource({ module: "./panic.wasm" }, "panic"), ...parseWasmOptions({}, "panic") };
    const handler = wasmFunction("demo", definition, new WebAssembly.Module(PANIC));
    expect(() => handler()).toThrow("panic trapped: unreachable: working\npanicked at src/main.rs:2:5:\nexplicit panic");
    expect(logged).toEqual(["working", "panicked at src/main.rs:2:5:", "explicit panic"]);
  });
});

describe("sockets and signals", () => {
  it("answers every sock_* call with ENOTSUP on an open descriptor and EBADF on a closed one", () => {
    const SOCKETS = wat(`(module ${IMPORTS}
      (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "sock_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "sock_send" (func $send (param i32 i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "sock_shutdown" (func $shutdown (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func $all (param $fd i32) (param $at i32)
        (i32.store (local.get $at) (call $accept (local.get $fd) (i32.const 0) (i32.const 512)))
        (i32.store (i32.add (local.get $at) (i32.const 4)) (call $recv (local.get $fd) (i32.const 256) (i32.const 1) (i32.const 0) (i32.const 512) (i32.const 516)))
        (i32.store (i32.add (local.get $at) (i32.const 8)) (call $send (local.get $fd) (i32.const 256) (i32.const 1) (i32.const 0) (i32.const 512)))
        (i32.store (i32.add (local.get $at) (i32.const 12)) (call $shutdown (local.get $fd) (i32.const 2))))
      (func (export "_start")
        (call $all (i32.const 0) (i32.const 64))
        (call $all (i32.const 99) (i32.const 80))
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.const 32))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`);
    const module = new WebAssembly.Module(SOCKETS);
    checkWasiCommand(module, "sockets.wasm");
    const { stdout, exitCode } = runWasi(module, "sockets.wasm");
    expect(exitCode).toBe(0);
    expect([...new Uint32Array(stdout.slice().buffer)]).toEqual([...Array(4).fill(ERRNO.NOTSUP), ...Array(4).fill(ERRNO.BADF)]);
  });

  // Writes stderr's line, raises the signal numbered by stdin's first byte, then writes proc_raise's errno to stdout.
  const RAISE = wat(`(module ${IMPORTS}
    (import "wasi_snapshot_preview1" "proc_raise" (func $proc_raise (param i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 64) "Assertion failed: x == 1\\n")
    (func (export "_start")
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 25))
      (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
      (i32.store (i32.const 0) (i32.const 128))
      (i32.store (i32.const 4) (i32.const 1))
      (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (i32.store (i32.const 132) (call $proc_raise (i32.load8_u (i32.const 128))))
      (i32.store (i32.const 0) (i32.const 132))
      (i32.store (i32.const 4) (i32.const 4))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`);

  it("ends the run with WasmSignalError naming a signal that ends a process, with stderr's tail", () => {
    const module = new WebAssembly.Module(RAISE);
    for (const [signal, name] of [
      [6, "SIGABRT"],
      [15, "SIGTERM"],
      [9, "SIGKILL"],
    ] as const) {
      const thrown = (() => {
        try {
          runWasi(module, "raise.wasm", { stdin: new Uint8Array([signal]) });
        } catch (e) {
          return e;
        }
      })() as WasmSignalError;
      expect(thrown).toBeInstanceOf(WasmSignalError);
      expect(thrown).toBeInstanceOf(WasmTrapError);
      expect({ name: thrown.name, signal: thrown.signal, message: thrown.message, tail: thrown.stderrTail }).toEqual({
        name: "WasmSignalError",
        signal: name,
        message: `raise.wasm raised ${name} (signal ${signal}) and was stopped: Assertion failed: x == 1`,
        tail: "Assertion failed: x == 1",
      });
    }
  });

  it("goes on after a signal a process ignores, and answers EINVAL for a number that is no signal", () => {
    const module = new WebAssembly.Module(RAISE);
    const errnoOf = (signal: number) => new DataView(runWasi(module, "raise.wasm", { stdin: new Uint8Array([signal]) }).stdout.buffer).getUint32(0, true);
    expect([0, 16, 17, 22, 27].map(errnoOf)).toEqual([0, 0, 0, 0, 0]);
    expect([31, 99, 255].map(errnoOf)).toEqual([ERRNO.INVAL, ERRNO.INVAL, ERRNO.INVAL]);
  });
});

describe("the same calls in workerd", () => {
  it("sleep, refuse a sleep past the limit, find stdio ready and keep a trap's stderr, as in Node", async () => {
    const mf = await startWasmWorker(
      `import { runWasi } from ${JSON.stringify(join(import.meta.dirname, "host.ts"))};
import poll from "./poll.wasm";
import panic from "./panic.wasm";
export default { async fetch(request) {
  const stdin = new Uint8Array(await request.arrayBuffer());
  const started = Date.now();
  try {
    const module = new URL(request.url).pathname === "/panic" ? panic : poll;
    const run = runWasi(module, "poll.wasm", { stdin, limits: { maxWallMs: 5000, maxOutputBytes: 1000 } });
    return Response.json({ stdout: [...run.stdout], ms: Date.now() - started });
  } catch (e) {
    return Response.json({ error: { name: e.name, limit: e.limit, message: e.message, tail: e.stderrTail } });
  }
} };`,
      { "poll.wasm": POLL, "panic.wasm": PANIC },
    );
    const inWorkerd = async (subs: Subscription[], rest?: string, path = "/") => {
      const res = (await (await mf.dispatchFetch(`http://x${path}`, { method: "POST", body: pollInput(subs, { rest }) })).json()) as {
        stdout?: number[];
        ms?: number;
        error?: object;
      };
      return res.error ?? { answer: readAnswer(new Uint8Array(res.stdout!)), ms: res.ms };
    };
    try {
      expect(await inWorkerd([{ userdata: 1n, clock: "monotonic", timeoutNs: ms(30) }])).toEqual({
        answer: { errno: 0, events: [clockEvent(1n)] },
        ms: expect.any(Number),
      });
      const wakeAt = realtimeNs() + ms(50);
      expect(await inWorkerd([{ userdata: 2n, clock: "realtime", timeoutNs: wakeAt, absolute: true }])).toMatchObject({ answer: { events: [clockEvent(2n)] } });
      expect(realtimeNs()).toBeGreaterThanOrEqual(wakeAt);
      expect(await inWorkerd([{ userdata: 3n, clock: "realtime", timeoutNs: YEAR_2100, absolute: true }])).toEqual({
        name: "WasmLimitError",
        limit: "time",
        message: expect.stringMatching(/^poll\.wasm asked to sleep \d+ ms, past its limit of 5000 ms, and was stopped$/),
      });
      expect(
        await inWorkerd(
          [
            { userdata: 4n, fd: 0 },
            { userdata: 5n, clock: "monotonic", timeoutNs: ms(10_000) },
          ],
          "abc",
        ),
      ).toMatchObject({ answer: { errno: 0, events: [{ userdata: 4n, error: 0, type: 1, nbytes: 3n, flags: 0 }] } });
      expect(await inWorkerd([], undefined, "/panic")).toEqual({
        name: "WasmTrapError",
        message: "poll.wasm trapped: unreachable: working\npanicked at src/main.rs:2:5:\nexplicit panic",
        tail: "working\npanicked at src/main.rs:2:5:\nexplicit panic",
      });
    } finally {
      await mf.dispose();
    }
  });
});
