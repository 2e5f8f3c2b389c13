// The Tandem side of bench/plane-warm and bench/plane-cold: the benchmark's
// work as a plane function.
import { App } from "tandem";
import { work } from "./work.js";

const app = new App("planebench");

/**
 * The benchmark's work; with `log`, it also prints one line, sent to the gateway's log store (docs/observability.md):
 * bench/plane-warm's (c), the cost of logging, on the same function and container as the calls that print nothing.
 */
export const compute = app.function({ tier: "plane", cpu: 1, memory: 256, timeout: 60 }, (n: number, log = false) => {
  if (log) console.log(`work(${n})`);
  return work(n);
});

export default app;
