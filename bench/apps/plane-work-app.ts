// The Tandem side of bench/plane-warm and bench/plane-cold: the benchmark's
// work as a plane function.
import { App } from "tandem";
import { work } from "./work.js";

const app = new App("planebench");

export const compute = app.function({ tier: "plane", cpu: 1, memory: 256, timeout: 60 }, (n: number) => work(n));

/** The same, printing one line per call: sent to the gateway's log store (docs/observability.md), as the cost of logging. */
export const computeLogged = app.function({ tier: "plane", cpu: 1, memory: 256, timeout: 60 }, (n: number) => {
  console.log(`work(${n})`);
  return work(n);
});

export default app;
