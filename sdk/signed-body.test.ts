import { describe, expect, it } from "vitest";
import { z } from "zod";
import { PLANE_DEFAULTS } from "./defaults.js";
import { InvalidRequestError, PayloadTooLargeError } from "./errors.js";
import { parseSignedBody, readSignedBodyBytes, signedBodyText } from "./signed-body.js";

const readSignedBody = async (request: Request, maxBytes: number) => signedBodyText(await readSignedBodyBytes(request, maxBytes));

const Stop = z.strictObject({ app: z.string() });
const Values = z.strictObject({ args: z.array(z.unknown()) });
const nested = (depth: number, open = "[", close = "]", inner = "") => open.repeat(depth) + inner + close.repeat(depth);

/** A chunked request whose body is `chunks` pieces of `size` bytes; `pulled` counts what was taken from it. */
function streamed(chunks: number, size: number, headers: Record<string, string> = {}): { request: Request; pulled: () => number } {
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled === chunks) return controller.close();
      pulled++;
      controller.enqueue(new Uint8Array(size).fill(0x20));
    },
  });
  return {
    request: new Request("http://127.0.0.1/v1/planes/heartbeat", { method: "POST", body, headers, duplex: "half" } as RequestInit),
    pulled: () => pulled,
  };
}

describe("a signed request's body, parsed", () => {
  it("accepts an object of the right shape", () => {
    expect(parseSignedBody('{"app":"shop"}', Stop, "stop")).toEqual({ app: "shop" });
  });

  it("refuses text that is not JSON, JSON that is not an object, and the wrong shape, each with a 400 that says which", () => {
    const refusal = (text: string) => {
      try {
        parseSignedBody(text, Stop, "stop");
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidRequestError);
        return (err as Error).message;
      }
      throw new Error(`${text} was accepted`);
    };
    expect(refusal("")).toBe("stop request body is not valid JSON");
    expect(refusal("{app:")).toBe("stop request body is not valid JSON");
    for (const notAnObject of ["null", "42", '"shop"', "[]", "true"]) expect(refusal(notAnObject)).toBe("stop request body is not a JSON object");
    expect(refusal('{"app":1}')).toMatch(/^stop request has the wrong shape: field "app"/);
    expect(refusal('{"app":"shop","x":1}')).toBe('stop request has the wrong shape: unknown field "x"');
  });

  it("refuses JSON nested deeper than the limit before parsing it, arrays or objects, but not brackets inside strings", () => {
    const max = PLANE_DEFAULTS.maxJsonDepth;
    expect(parseSignedBody(`{"args":${nested(max - 1)}}`, Values, "run").args).toHaveLength(1);
    expect(() => parseSignedBody(`{"args":${nested(max)}}`, Values, "run")).toThrow(`run request body nests deeper than ${max} levels`);
    expect(() => parseSignedBody(`{"args":[${nested(5_000, '{"a":', "}", "1")}]}`, Values, "run")).toThrow("nests deeper than");
    expect(() => parseSignedBody(nested(100_000), Values, "run")).toThrow("nests deeper than");
    const bracketsInAString = JSON.stringify({ args: ["[".repeat(5_000) + '\\"{'.repeat(5_000)] });
    expect(parseSignedBody(bracketsInAString, Values, "run").args[0]).toHaveLength(20_000);
  });
});

describe("a signed request's body, read", () => {
  it("reads a body within the limit, chunked or declared", async () => {
    expect(await readSignedBody(streamed(4, 1024).request, 4096)).toHaveLength(4096);
    const declared = new Request("http://127.0.0.1/", { method: "POST", body: '{"app":"shop"}' });
    expect(await readSignedBody(declared, 64)).toBe('{"app":"shop"}');
    expect(await readSignedBody(new Request("http://127.0.0.1/"), 64)).toBe("");
  });

  it("refuses a chunked body with 413 as soon as it passes the limit, and pulls no more of it", async () => {
    const { request, pulled } = streamed(1_000, 1024);
    const err = await readSignedBody(request, 8 * 1024).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PayloadTooLargeError);
    expect((err as PayloadTooLargeError).details).toEqual({ maxBytes: 8192, atLeast: 9216 });
    expect((err as Error).message).toBe("request body is larger than 8192 bytes, the most a signed request between the gateway and a plane may carry");
    expect(pulled()).toBeLessThan(12);
  });

  it("reads its bytes as text only as UTF-8, refusing others with a 400 saying so (they were read with U+FFFD, so a signature over them failed)", () => {
    expect(signedBodyText(new TextEncoder().encode('{"a":"é"}'))).toBe('{"a":"é"}');
    expect(() => signedBodyText(new Uint8Array([0x7b, 0xff, 0x7d]))).toThrow("signed request body is not UTF-8 text: send JSON encoded as UTF-8");
  });

  it("refuses a declared length over the limit before reading a byte", async () => {
    const { request, pulled } = streamed(1_000, 1024, { "content-length": String(1_000 * 1024) });
    await expect(readSignedBody(request, 8 * 1024)).rejects.toThrow(PayloadTooLargeError);
    expect(pulled()).toBeLessThanOrEqual(1); // a stream may pull its first piece ahead, unasked
  });
});
