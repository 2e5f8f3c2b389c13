// WebAssembly functions at the edge: one written in AssemblyScript (compiled by
// `tandem serve`), one prebuilt from C (wc.c, built by ./build-wc.sh), both
// called from web endpoints. Run it: npx tandem serve examples/wasm/app.ts
import { App } from "tandem";

const app = new App("wasm");

// JSON in, JSON out: fib.remote(50) sends `[50]` on stdin and reads `12586269025` from stdout. n runs from 0 to 78:
// the result is a JSON number, exact only up to 2^53, so fib(79) and above fail the call (WasmExitError).
export const fib = app.wasm<[number], number>("fib", { source: "./fib.as.ts" }, { timeout: 5 });

// Raw bytes in, raw bytes out: the text to count on stdin, its counts as JSON on stdout.
export const wc = app.wasm<[Uint8Array | string], Uint8Array<ArrayBuffer>>("wc", { module: "./wc.wasm" }, { contentType: "bytes", maxOutputBytes: 4096 });

// GET /wasm/fib/50 → {"n":50,"fib":12586269025}
export const fibonacci = app.endpoint({ method: "GET", path: "/:n", label: "fib" }, async (c) => {
  const n = Number(c.req.param("n"));
  if (!Number.isInteger(n) || n < 0 || n > 78) return c.json({ error: "n must be a whole number from 0 to 78" }, 400);
  return { n, fib: await fib.remote(n) };
});

// curl --data-binary @README.md localhost:8787/wasm/count/ → {"lines":…,"words":…,"bytes":…}
export const count = app.endpoint({ method: "POST", path: "/" }, async (c) => {
  const counts = await wc.remote(new Uint8Array(await c.req.arrayBuffer()));
  return new Response(counts, { headers: { "content-type": "application/json" } });
});

export default app;
