// The Tandem side of bench/edge-call: the same small piece of work as a
// function and as a web endpoint.
import { App } from "tandem";
import { work } from "./work.js";

const app = new App("bench");

/**
 * The benchmark's work; with `log`, it also prints one line, kept in the app's log (docs/observability.md):
 * bench/edge-call's (d), the cost of logging, on the same function as the calls that print nothing.
 */
export const compute = app.function((n: number, log = false) => {
  if (log) console.log(`work(${n})`);
  return work(n);
});

export const page = app.endpoint({ method: "GET", path: "/:n", label: "work" }, (c) => c.json(work(Number(c.req.param("n")))));

export default app;
