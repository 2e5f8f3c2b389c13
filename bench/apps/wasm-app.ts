// bench/wasm-cold: the example's fib module as a plane-tier WebAssembly function.
import { App } from "tandem";

const app = new App("wasmbench");
export const fibPlane = app.wasm<[number], number>("fibPlane", { source: "../../examples/wasm/fib.as.ts" }, { tier: "plane" });
export default app;
