import { describe, expect, it } from "vitest";
import { App } from "./app.js";
import { ContainerFailedError, InvalidOptionsError, NotFoundError, RemoteError } from "./errors.js";
import { maskedError, maskSecretValues, parseDotenv, Secret, secretMask } from "./secret.js";

describe("parseDotenv", () => {
  it("reads KEY=value lines, comments, export and blank lines", () => {
    expect(parseDotenv("# a comment\n\nAPI_KEY=abc # the key\nexport MODE = demo\nEMPTY=\nURL=http://x/#frag\n")).toEqual({
      API_KEY: "abc",
      MODE: "demo",
      EMPTY: "",
      URL: "http://x/#frag",
    });
  });

  it("keeps single-quoted values as they are and reads escapes in double quotes, over several lines", () => {
    expect(parseDotenv(`A='x \\n # y'\nB="one\\ntwo \\"q\\""\nC="line 1\nline 2" # after\r\nD=last`)).toEqual({
      A: "x \\n # y",
      B: 'one\ntwo "q"',
      C: "line 1\nline 2",
      D: "last",
    });
  });

  it("names the file and line of what it cannot read, never a value", () => {
    expect(() => parseDotenv("OK=1\nnot a pair\n", "app/.env")).toThrow("app/.env:2: expected KEY=value");
    expect(() => parseDotenv('K="open-secret-value\n', ".env")).toThrow('.env:1: the value of K has no closing "');
    try {
      parseDotenv('K="open-secret-value\n');
    } catch (err) {
      expect((err as Error).message).not.toContain("open-secret-value");
    }
    expect(() => parseDotenv("1KEY=x")).toThrow(InvalidOptionsError);
  });
});

describe("Secret", () => {
  it("refuses bad names, keys and values, naming them", () => {
    expect(() => Secret.fromName("no spaces")).toThrow('Secret.fromName("no spaces")');
    expect(() => Secret.fromName("api", { requiredKeys: ["1X"] })).toThrow('"requiredKeys" must be a list of environment variable names');
    expect(() => Secret.fromDict({ "A-B": "x" })).toThrow('"A-B" is not an environment variable name');
    expect(() => Secret.fromDict({ A: 1 as unknown as string })).toThrow('the value of "A" must be a string');
    expect(() => Secret.fromDict({ TANDEM_VOLUMES: "[]" })).toThrow('Secret.fromDict: "TANDEM_VOLUMES" is a name the plane sets itself in each container');
  });

  it("is the secrets option of functions, classes, wasm, web handlers and agents, and nothing else", () => {
    const app = new App("s");
    const api = Secret.fromName("api", { requiredKeys: ["API_KEY"] });
    const fn = app.function({ secrets: [api, Secret.fromDotenv()] }, () => 1);
    app.endpoint({ label: "pay", secrets: [Secret.fromDict({ K: "v" })] }, () => "ok");
    app.web("api", () => ({ fetch: () => new Response("") }), { secrets: [api] });
    app.websocket("chat", {}, { secrets: [api] });
    app.finalize({ fn });
    expect(app.secretHolders().map((h) => [h.holder, h.what, h.secrets.length])).toEqual([
      ["fn", 'function "fn"', 2],
      ["web/api", 'web "api"', 1],
      ["web/pay", 'endpoint "pay"', 1],
      ["web/chat", 'websocket "chat"', 1],
    ]);
    expect(fn.spec!.secrets[0]!.source).toEqual({ kind: "name", name: "api", requiredKeys: ["API_KEY"] });
    const bad = new App("bad");
    expect(() => bad.endpoint({ label: "x", secrets: ["api"] as never }, () => 1)).toThrow('app "bad": endpoint "x": option "secrets.0" must be Secrets');
    const f = bad.function({ secrets: "api" } as never, () => 1);
    expect(() => bad.finalize({ f })).toThrow('option "secrets" must be a list of Secrets, such as [Secret.fromName("api")]');
  });
});

describe("masking", () => {
  it("replaces each secret value with ***, longest first, wherever it appears from 4 characters on", () => {
    expect(maskSecretValues("k-123 and k-1234 and xk-123x", ["k-123", "k-1234"])).toBe("*** and *** and x***x");
    expect(maskSecretValues("nothing here", [])).toBe("nothing here");
    expect(maskSecretValues("nothing here", [""])).toBe("nothing here");
  });

  it("masks a value of 1 to 3 characters only where it stands alone, so ordinary text around it survives", () => {
    expect(maskSecretValues("pin 42, took 142 ms, v42, 42_x, x42", ["42"])).toBe("pin ***, took 142 ms, v42, 42_x, x42");
    expect(maskSecretValues("x and max; x=1 (x)", ["x"])).toBe("*** and max; ***=1 (***)");
    expect(maskSecretValues('{"code":"a.b","n":"a-b"}', ["a.b"])).toBe('{"code":"***","n":"a-b"}'); // a dot is the value, not any character
    expect(maskSecretValues("één é", ["é"])).toBe("één ***"); // letters of any script count as letters
    expect(maskSecretValues("key abc, code abcd", ["abc", "abcd"])).toBe("key ***, code ***");
  });

  it("masks an error's message and remote stack, keeping its class", () => {
    const err = new RemoteError({ name: "Error", message: "bad k-secret", stack: "Error: bad k-secret\n    at f (app.ts:1:1)" }, { callId: "fc-1" });
    const masked = maskedError(err, ["k-secret"]) as RemoteError;
    expect(masked).toBeInstanceOf(RemoteError);
    expect([masked.message, masked.remoteStack, masked.details]).toEqual(["bad ***", "Error: bad ***\n    at f (app.ts:1:1)", { callId: "fc-1" }]);
    expect(maskedError(err, ["other"])).toBe(err);
    expect(maskedError(new NotFoundError("no k-secret"), ["k-secret"])).toBeInstanceOf(NotFoundError);
  });

  it("masks a remote error's name, which the app may set to anything", () => {
    const err = new RemoteError({ name: "Nk-secret", message: "x", stack: "Nk-secret: x\n    at f (app.ts:1:1)" }, { callId: "fc-1" });
    const masked = maskedError(err, ["k-secret"]) as RemoteError;
    expect([masked.remoteName, masked.message, masked.remoteStack]).toEqual(["N***", "x", "N***: x\n    at f (app.ts:1:1)"]);
    expect(masked.toJSON()).toEqual({
      code: "function_failed",
      message: "x",
      remote: { name: "N***", message: "x", stack: "N***: x\n    at f (app.ts:1:1)" },
      details: { callId: "fc-1" },
    });
  });

  it("masks every string in an error's details, nested and in keys, and leaves its code and other values", () => {
    const err = new ContainerFailedError("app.f crashed; last log lines:\nkey k-secret", {
      reason: "crashed",
      exitCode: 3,
      logTail: ["loading", "key k-secret"],
      nested: { deep: [{ "k-secret": "v k-secret" }], when: null, ok: true },
    });
    const masked = maskedError(err, ["k-secret"]);
    expect(masked).toBeInstanceOf(ContainerFailedError);
    expect(masked.toJSON()).toEqual({
      code: "container_failed",
      message: "app.f crashed; last log lines:\nkey ***",
      details: { reason: "crashed", exitCode: 3, logTail: ["loading", "key ***"], nested: { deep: [{ "***": "v ***" }], when: null, ok: true } },
    });
    // A code is never the app's text: a value that matches part of one leaves it as it is.
    expect(maskedError(new RemoteError({ name: "Error", message: "x" }), ["function"]).code).toBe("function_failed");
    // Details that hold no value, even a cycle, come back as they were.
    const cyclic: Record<string, unknown> = { a: "fine" };
    cyclic.self = cyclic;
    const untouched = new ContainerFailedError("fine", cyclic);
    expect(maskedError(untouched, ["k-secret"])).toBe(untouched);
  });

  it("masks an app's own TandemError's name, which its wire form does not carry, by giving it its class's", () => {
    const err = new InvalidOptionsError("bad option");
    err.name = "Nk-secret";
    const masked = maskedError(err, ["k-secret"]);
    expect(masked).toBeInstanceOf(InvalidOptionsError);
    expect([masked.name, masked.message]).toEqual(["InvalidOptionsError", "bad option"]);
  });

  it("makes one mask for many texts, the identity without a value", () => {
    const mask = secretMask(["k-123", "42", ""]);
    expect(["key k-123, pin 42", "took 142 ms", "none"].map(mask)).toEqual(["key ***, pin ***", "took 142 ms", "none"]);
    expect(secretMask([""])("k-123")).toBe("k-123");
  });
});
