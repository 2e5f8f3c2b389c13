/** Tandem's errors: each class's name, whatever a bundler does to the class. */
import { build } from "esbuild";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { ERROR_STATUS, TandemError, fromWireError, type ErrorCode } from "./errors.js";

describe("an error's name", () => {
  it("is its class's name, for every code", () => {
    for (const code of Object.keys(ERROR_STATUS) as ErrorCode[]) {
      const err = fromWireError({ code, message: "m" });
      expect(err.name, code).toBe(err.constructor.name);
    }
  });

  it("is its class's name in a minified browser bundle too, and an app's own subclass keeps its own", async () => {
    // Before: the minifier's names (`zn`), so `err.name === "NotFoundError"` failed in a page.
    const bundled = await build({
      stdin: {
        contents: `import { NotFoundError, RemoteError, fromWireError } from "./errors.ts";
          class QuotaError extends NotFoundError {}
          globalThis.out = [new NotFoundError("x").name, fromWireError({ code: "get_timeout", message: "m" }).name,
            new RemoteError({ name: "TypeError", message: "m" }).name, new QuotaError("q").name];`,
        resolveDir: new URL(".", import.meta.url).pathname,
        loader: "ts",
      },
      bundle: true,
      minify: true,
      write: false,
      format: "iife",
      platform: "browser",
      logLevel: "silent",
    });
    const context: { out?: string[] } = {};
    runInNewContext(bundled.outputFiles[0]!.text, context);
    expect(context.out!.slice(0, 3)).toEqual(["NotFoundError", "GetTimeoutError", "RemoteError"]);
    expect(context.out![3]).not.toBe("NotFoundError"); // its own class's name, as the minifier left it
    expect(new (class Mine extends TandemError {})("internal", "m").name).toBe("Mine");
  });
});
