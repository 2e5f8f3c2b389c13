/**
 * Reading request bodies, as logic: the depth check on the text, a `meta`
 * that rebuilds a value deeper or larger than its JSON, and a body limited
 * as it streams. The same paths against real workerd: test/gateway.test.ts.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { API_LIMITS } from "../sdk/defaults.js";
import { InvalidRequestError, PayloadTooLargeError } from "../sdk/errors.js";
import { encodeValue } from "../sdk/protocol.js";
import { decodeBodyValue, limitBody, nestedDeeperThan, parseJsonBody, readJsonBody } from "./body.js";

const nested = (depth: number, open = "[", close = "]") => open.repeat(depth) + "1" + close.repeat(depth);
const anything = z.unknown();

/** A body that arrives in pieces, with no length declared. */
function streamed(pieces: Uint8Array[], headers: Record<string, string> = {}): Request {
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = pieces.shift();
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
  return new Request("http://x/", { method: "POST", body, headers, duplex: "half" } as RequestInit);
}

describe("the shape of a body", () => {
  it("says a body that is not a JSON object is not one, naming what it is", () => {
    const schema = z.strictObject({ name: z.string().optional() });
    for (const [text, kind] of [
      ["[1]", "an array"],
      ["null", "null"],
      ["42", "a number"],
      ['"hi"', "a string"],
      ["true", "true"],
    ]) {
      expect(() => parseJsonBody(text!, schema)).toThrow(new InvalidRequestError(`request body must be a JSON object, not ${kind}`));
    }
    expect(() => parseJsonBody('{"name":1}', schema)).toThrow('request body has the wrong shape: field "name"');
  });
});

describe("the numbers of a body", () => {
  it("refuses a number JSON.parse reads as Infinity, where it was passed on as Infinity; keeps large finite ones and text", () => {
    const args = z.strictObject({ args: z.array(z.unknown()) });
    for (const text of ['{"args":[1e999]}', '{"args":[{"deep":[-1E+400]}]}', `{"args":[${"9".repeat(400)}]}`]) {
      expect(() => parseJsonBody(text, args), text.slice(0, 30)).toThrow("request body has a number beyond the range of a 64-bit float");
    }
    expect(parseJsonBody('{"args":[1e308, 1e-999, "1e999"]}', args).args).toEqual([1e308, 0, "1e999"]);
  });
});

describe("the depth of a body", () => {
  it("counts arrays and objects, and not brackets inside strings", () => {
    expect(nestedDeeperThan(nested(600), 512)).toBe(true);
    expect(nestedDeeperThan(nested(512), 512)).toBe(false);
    expect(nestedDeeperThan(`{"a":${nested(300, '{"b":', "}")}}`, 300)).toBe(true);
    expect(nestedDeeperThan(JSON.stringify({ text: "[".repeat(5000) + '\\"[' }), 512)).toBe(false);
  });

  it("refuses a body nested past the limit with a 400 that says so, before parsing it", () => {
    const err = (() => {
      try {
        parseJsonBody(`{"args":[${nested(API_LIMITS.maxJsonDepth)}]}`, anything);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect((err as Error).message).toContain(`more than ${API_LIMITS.maxJsonDepth} levels deep`);
    expect(parseJsonBody(`{"args":[${nested(API_LIMITS.maxJsonDepth - 2)}]}`, anything)).toBeTruthy();
  });
});

describe("a meta that rebuilds shared references", () => {
  it("keeps values an SDK sent with shared references and cycles", () => {
    const shared = { deep: { er: [1, 2] } };
    const cyclic: Record<string, unknown> = { name: "loop" };
    cyclic.self = cyclic;
    const { json, meta } = encodeValue([shared, shared, cyclic, new Map([["k", shared]])]);
    expect(meta).toMatchObject({ referentialEqualities: expect.anything() });
    const back = decodeBodyValue(JSON.parse(JSON.stringify(json)), JSON.parse(JSON.stringify(meta)), "args") as unknown[];
    expect(back[0]).toBe(back[1]);
    expect((back[2] as Record<string, unknown>).self).toBe(back[2]);
  });

  it("refuses type annotations that are not a tree, with what is wrong rather than a stack overflow", () => {
    // A leaf written without its brackets: superjson walked the string "bytes" as children, each letter its own child.
    for (const values of [{ "0": ["custom", "bytes"] }, ["custom", "bytes"], { "0": "Date" }, { "0": [["custom", "bytes"], "x"] }, 5]) {
      expect(() => decodeBodyValue([1], { values, v: 1 }, "args"), JSON.stringify(values)).toThrow(
        '"meta" does not describe "args": meta.values is not a tree of type annotations',
      );
    }
    const { json, meta } = encodeValue([new Uint8Array([7]), new Date(3), new Map([[1, new Set([2n])]])]);
    expect(decodeBodyValue(json, JSON.parse(JSON.stringify(meta)), "args")).toEqual([new Uint8Array([7]), new Date(3), new Map([[1, new Set([2n])]])]);
  });

  it("refuses chains joined end to end into a value far deeper than its JSON", () => {
    const depth = 400;
    const chain = JSON.parse(nested(depth, '{"a":', "}")) as unknown;
    const leaf = "." + Array(depth).fill("a").join(".");
    const json = [chain, JSON.parse(JSON.stringify(chain)), JSON.parse(JSON.stringify(chain))];
    const meta = { referentialEqualities: { "1": [`0${leaf}`], "2": [`1${leaf}`] }, v: 1 };
    expect(() => decodeBodyValue(json, meta, "args")).toThrow(/rebuilds "args" more than 512 levels deep/);
  });

  it("refuses references that multiply a value's elements (each level holding the next twice)", () => {
    const levels = 40;
    const json = Array.from({ length: levels }, () => ({ l: null as unknown, r: null as unknown }));
    const equalities: Record<string, string[]> = {};
    for (let i = 1; i < levels; i++) equalities[String(i)] = [`${i - 1}.l`, `${i - 1}.r`];
    expect(() => decodeBodyValue(json, { referentialEqualities: equalities, v: 1 }, "args")).toThrow(
      '"meta" rebuilds "args" with more elements than its JSON holds',
    );
  });
});

describe("a body's encoding", () => {
  it("refuses bytes that are not UTF-8 with a 400 that says so, and reads UTF-8 as it is", async () => {
    const post = (body: Uint8Array) => new Request("http://gw/v1/x", { method: "POST", body });
    const latin1 = new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0x63, 0x61, 0x66, 0xe9, 0x22, 0x7d]); // {"a":"café"} in Latin-1
    await expect(readJsonBody(post(latin1), anything, 4096)).rejects.toMatchObject({ code: "invalid_request", message: expect.stringContaining("not UTF-8") });
    await expect(readJsonBody(post(new TextEncoder().encode('{"a":"café"}')), anything, 4096)).resolves.toEqual({ a: "café" });
  });
});

describe("a body's size limit", () => {
  it("stops reading a /v1 body at the limit, whatever length it declares", async () => {
    const pieces = Array.from({ length: 64 }, () => new Uint8Array(1024).fill(0x20));
    const lying = streamed(pieces, { "content-length": "10" });
    await expect(readJsonBody(lying, anything, 4096)).rejects.toMatchObject({ code: "payload_too_large", details: { maxBytes: 4096, atLeast: 5120 } });
    expect(pieces.length).toBeGreaterThan(50); // the rest was never pulled
  });

  it("reads a body to the length it declares and stops there, unless a chunked transfer-encoding frames it", async () => {
    const pieces = () => [new TextEncoder().encode('{"a":1}'), new TextEncoder().encode(" and bytes past its length")];
    await expect(readJsonBody(streamed(pieces(), { "content-length": "7" }), anything, 4096)).resolves.toEqual({ a: 1 });
    await expect(readJsonBody(streamed(pieces(), { "content-length": "7", "transfer-encoding": "chunked" }), anything, 4096)).rejects.toMatchObject({
      code: "invalid_request",
      message: expect.stringContaining("not valid JSON"),
    });
    await expect(readJsonBody(streamed(pieces(), { "content-length": "0x7" }), anything, 4096)).rejects.toMatchObject({ code: "invalid_request" });
  });

  it("gives a handler a body that errors with 413 once it passes the limit, and says so", async () => {
    const pieces = Array.from({ length: 8 }, () => new Uint8Array(1000).fill(0x61));
    const limited = limitBody(streamed(pieces), 2500, `endpoint "up" of app "a" accepts (its maxBodyBytes option)`);
    const reader = limited.request.body!.getReader();
    let read = 0;
    const err = await (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return undefined;
        read += value.byteLength;
      }
    })().catch((e: unknown) => e);
    expect(read).toBe(2000);
    expect(err).toBeInstanceOf(PayloadTooLargeError);
    expect(limited.passed()?.message).toBe('request body is larger than 2500 bytes, the most endpoint "up" of app "a" accepts (its maxBodyBytes option)');
  });

  it("refuses a declared length over the limit at once, and leaves a body within it whole", async () => {
    expect(() => limitBody(new Request("http://x/", { method: "POST", body: "x".repeat(100), headers: { "content-length": "100" } }), 10)).toThrow(
      PayloadTooLargeError,
    );
    const fine = limitBody(streamed([new TextEncoder().encode("hello")]), 5);
    expect(await fine.request.text()).toBe("hello");
    expect(fine.passed()).toBeUndefined();
    const open = limitBody(streamed([new Uint8Array(10_000)]), Infinity);
    expect((await open.request.arrayBuffer()).byteLength).toBe(10_000);
  });
});
