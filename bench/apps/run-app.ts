// The app of bench/cli-run: the same work as an edge function and as a plane
// function, side by side in one app, as a user's app file has them.
import { App } from "tandem";
import { work } from "./work.js";

const app = new App("runbench");

export const atEdge = app.function((n: number) => work(n));

export const onPlane = app.function({ tier: "plane", cpu: 1, memory: 256, timeout: 60 }, (n: number) => work(n));

export default app;
