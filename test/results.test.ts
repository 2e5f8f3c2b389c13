/**
 * A result the wire cannot carry (a function or a symbol in it, nested too deep, too long) fails its call the same
 * way in both tiers, as an error the function threw, and is recorded so: a spawned call ends, and is not run again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FunctionCall, InvalidArgumentError, RemoteError, lookup, type CallRecord } from "../sdk/index.js";
import { API_LIMITS, ERROR_LIMITS } from "../sdk/defaults.js";
import { authed } from "./helpers/gateway.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

const APP = new URL("./fixtures/results-app.ts", import.meta.url).pathname;
let stack: TestStack;

beforeAll(async () => {
  // A short lease: a call whose end could not be recorded would be resumed, run again, within a second or two.
  stack = await startTestStack(APP, { scaledownWindowSeconds: 30 }, { bindings: { TANDEM_CALL_LEASE_SECONDS: "1" } });
});
afterAll(async () => {
  await stack?.dispose();
});

const made = (fn: "edgeMade" | "planeMade") => lookup<[string], unknown>("results", fn, { gateway: stack.url });
const failure = async (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (err: unknown) => err as RemoteError,
  );

const EXPECTED: Record<string, [string, string]> = {
  symbol: ["TypeError", 'returned a symbol, which a result cannot carry: results travel as data, as arguments do (docs/api.md, "Values")'],
  function: ["TypeError", "returned a function (at .list[1].done), which a result cannot carry"],
  deep: ["RangeError", `returned a value nested more than ${API_LIMITS.maxJsonDepth} levels deep, the most a result may be: return it flatter`],
  "very deep": ["RangeError", `returned a value nested more than ${API_LIMITS.maxJsonDepth} levels deep`],
  long: ["RangeError", "returned a value longer than 10 MiB as JSON, the most a result may be"],
};

describe("values that JSON alone would change", () => {
  for (const fn of ["edgeArrived", "planeArrived"] as const) {
    it(`reach ${fn} and come back as they were: an array's holes as undefined, an invalid Date, a Buffer`, async () => {
      // eslint-disable-next-line no-sparse-arrays -- the holes are the point
      const sent = { holes: [1, , 3, new Array(2)], when: new Date(Number.NaN), buffer: Buffer.from("hi") };
      const out = (await lookup<[typeof sent], any>("results", fn, { gateway: stack.url }).remote(sent)) as {
        sent: typeof sent;
        seen: Record<string, unknown>;
        made: { holes: unknown[]; empty: unknown[]; when: Date; buffer: Buffer };
      };
      expect(out.seen).toEqual({
        holes: [1, undefined, 3, [undefined, undefined]],
        whenIsInvalidDate: true,
        bufferIsBuffer: true,
        bufferText: "hi",
      });
      // Sent back as they arrived, and made there.
      expect(out.sent.holes).toEqual([1, undefined, 3, [undefined, undefined]]);
      expect(out.made.holes).toEqual([1, undefined, 3]);
      expect(out.made.empty).toEqual([undefined, undefined]);
      for (const when of [out.sent.when, out.made.when]) {
        expect(when).toBeInstanceOf(Date);
        expect(when.getTime()).toBeNaN();
      }
      for (const buffer of [out.sent.buffer, out.made.buffer]) {
        expect(Buffer.isBuffer(buffer)).toBe(true);
        expect(buffer.toString()).toBe("hi");
      }
    });
  }
});

describe("a result the wire cannot carry", () => {
  for (const fn of ["edgeMade", "planeMade"] as const) {
    it(`fails a .remote() of ${fn} as the function's own error would, saying why`, async () => {
      for (const [kind, [name, message]] of Object.entries(EXPECTED)) {
        const err = await failure(made(fn).remote(kind));
        expect(err, kind).toBeInstanceOf(RemoteError);
        expect(err!.code).toBe("function_failed");
        expect(err!.remoteName).toBe(name);
        expect(err!.message).toContain(`results.${fn} ${message}`);
      }
      // What the wire carries still comes back as it was.
      expect(await made(fn).remote("fine")).toEqual({ when: new Date(0), n: 2n });
    });

    it(`ends a spawned call of ${fn} failed, once, and records it so (the call is not run again)`, async () => {
      const calls = await Promise.all(["symbol", "very deep", "long", "thrown long", "thrown long details"].map((kind) => made(fn).spawn(kind)));
      for (const call of calls.slice(0, 4)) {
        const err = await failure(call.get({ timeoutMs: 30_000 }));
        expect(err).toBeInstanceOf(RemoteError);
      }
      // An error too long to keep whole is kept cut, saying so: its message, its stack (the frames kept), its details.
      const long = (await failure(calls[3]!.get({ timeoutMs: 30_000 })))!;
      const [, kept, more] = /^(m+)… \((\d+) more characters\)$/.exec(long.message) ?? [];
      expect(kept!.length + Number(more)).toBe(1_000_000);
      expect(long.message.length).toBeLessThanOrEqual(ERROR_LIMITS.messageChars);
      expect(long.remoteStack).toMatch(new RegExp(`^Error: ${long.message.replace(/[()]/g, "\\$&")}\\n\\s+at made \\(`));
      const details = (await failure(calls[4]!.get({ timeoutMs: 30_000 }))) as unknown as InvalidArgumentError;
      expect(details).toBeInstanceOf(InvalidArgumentError);
      expect(details.message).toBe("bad input");
      expect(details.details).toMatchObject({
        callId: calls[4]!.id,
        omitted: expect.stringMatching(/^its details, \d+ characters as JSON, over the 65536 kept$/),
      });
      expect(details.details).not.toHaveProperty("blob");
      await new Promise((resolve) => setTimeout(resolve, 2_500)); // past the lease: a runner taken for lost would run it again
      for (const call of calls) {
        const record = (await (await fetch(`${stack.url}/v1/calls/${call.id}`, authed())).json()) as CallRecord;
        expect(record.status).toBe("failed");
        expect(record.attempts).toBe(1);
        expect(record.error?.code).toBe(call === calls[4] ? "invalid_argument" : "function_failed");
        expect(stack.gatewayOutput.some((l) => l.includes("resuming") && l.includes(call.id))).toBe(false);
        expect(
          (await FunctionCall.fromId(call.id, { gateway: stack.url })
            .get()
            .catch((e: Error) => e)) instanceof (call === calls[4] ? InvalidArgumentError : RemoteError),
        ).toBe(true);
      }
      expect(stack.gatewayOutput.filter((l) => l.includes("ledger: could not record"))).toEqual([]);
    });
  }

  for (const fn of ["edgeFeed", "planeFeed"] as const) {
    it(`fails a stream of ${fn} at a chunk the wire cannot carry, after the chunks before it, its generator closed`, async () => {
      const feed = lookup<[string], unknown>("results", fn, { gateway: stack.url });
      for (const [kind, [name, message]] of Object.entries(EXPECTED)) {
        const got: unknown[] = [];
        const err = await failure(
          (async () => {
            for await (const chunk of feed.remoteGen(kind)) got.push(chunk);
          })(),
        );
        expect(got, kind).toEqual([1]);
        expect(err, kind).toBeInstanceOf(RemoteError);
        expect(err!.code).toBe("function_failed");
        expect(err!.remoteName).toBe(name);
        expect(err!.message).toContain(`results.${fn} ${message.replace("returned", "yielded").replaceAll("result", "chunk").replace("return ", "yield ")}`);
        await expect
          .poll(
            async () =>
              (await (await fetch(`${stack.url}/v1/apps/results/logs?function=${fn}&search=${encodeURIComponent(`feed of ${kind} closed`)}`, authed())).text())
                .trim()
                .split("\n")
                .filter(Boolean).length,
            {
              timeout: 5_000,
            },
          )
          .toBe(1);
      }
      const got: unknown[] = [];
      for await (const chunk of feed.remoteGen("fine")) got.push(chunk);
      expect(got).toEqual([1, { when: new Date(0), n: 2n }, 3]);
    });
  }
});

describe("a stream while it runs", () => {
  for (const fn of ["edgeSlowly", "planeSlowly"] as const) {
    it(`is recorded running once it has run half a second, and a cancel by its id stops ${fn}`, async () => {
      const res = await fetch(`${stack.url}/v1/apps/results/functions/${fn}/stream`, authed({ method: "POST", body: JSON.stringify({ args: [40] }) }));
      expect(res.status).toBe(200);
      const id = res.headers.get("tandem-call-id")!;
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      const readUntil = async (done: (text: string) => boolean) => {
        while (!done(text)) {
          const { value, done: ended } = await reader.read();
          if (ended) break;
          text += value;
        }
      };
      await readUntil((t) => t.split("\n").length > 3); // three chunks: it has run about a second
      // Before, a running stream was recorded only as it ended: 404 here, and its cancel 404 too.
      const running = (await (await fetch(`${stack.url}/v1/calls/${id}`, authed())).json()) as CallRecord;
      expect(running).toMatchObject({ callId: id, kind: "stream", status: "running" });
      const cancel = await fetch(`${stack.url}/v1/calls/${id}/cancel`, authed({ method: "POST" }));
      expect(cancel.status).toBe(200);
      const asked = Date.now();
      await readUntil(() => false); // to the stream's end
      expect(Date.now() - asked).toBeLessThan(5_000);
      const lines = text
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { chunk?: number; error?: { code: string } });
      expect(lines.at(-1)!.error?.code).toBe("call_cancelled");
      expect(lines.filter((l) => "chunk" in l).length).toBeLessThan(30);
      await expect
        .poll(async () => ((await (await fetch(`${stack.url}/v1/calls/${id}`, authed())).json()) as CallRecord).status, { timeout: 5_000 })
        .toBe("cancelled");
      await expect
        .poll(async () => (await (await fetch(`${stack.url}/v1/apps/results/logs?call=${id}&search=slow%20stream%20closed`, authed())).text()).trim(), {
          timeout: 5_000,
        })
        .not.toBe("");
    });
  }

  it("refuses an Idempotency-Key, which a stream cannot honour", async () => {
    const res = await fetch(
      `${stack.url}/v1/apps/results/functions/edgeSlowly/stream`,
      authed({ method: "POST", headers: { "idempotency-key": "bad key" }, body: JSON.stringify({ args: [1] }) }),
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/^a stream takes no idempotency-key: it runs once/i);
  });
});
