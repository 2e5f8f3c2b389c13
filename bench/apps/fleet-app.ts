// The app bench/plane-heartbeat's gateway serves: plane functions with warm pools, so every heartbeat answer
// places them (gateway/plane-routes.ts warmPoolsFor), as a real fleet's gateway does.
import { App } from "tandem";

const app = new App("fleetbench");

export const embed = app.function({ gpu: "A100", minContainers: 1, timeout: 60 }, (text: string) => text.length);

export const resize = app.function({ tier: "plane", cpu: 1, minContainers: 1, timeout: 60 }, (n: number) => n * 2);

export default app;
