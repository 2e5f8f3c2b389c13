// The Tandem side of bench/edge-call: the same small piece of work as a
// function and as a web endpoint.
import { App } from "tandem";
import { work } from "./work.js";

const app = new App("bench");

export const compute = app.function((n: number) => work(n));

/** The same, printing one line per call: kept in the app's log (docs/observability.md), as the cost of logging. */
export const computeLogged = app.function((n: number) => {
  console.log(`work(${n})`);
  return work(n);
});

export const page = app.endpoint({ method: "GET", path: "/:n", label: "work" }, (c) => c.json(work(Number(c.req.param("n")))));

export default app;
