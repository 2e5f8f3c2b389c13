// The Tandem side of bench/map-throughput: small work, four containers of eight inputs each.
import { App } from "tandem";
import { work } from "./work.js";

const app = new App("mapbench");

export const small = app.function({ tier: "plane", maxContainers: 4, concurrency: { maxInputs: 8 }, timeout: 300 }, (n: number) => work(n).sum);

export default app;
