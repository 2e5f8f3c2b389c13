// The Tandem side of bench/secret-call: the same small piece of work as an edge function with no secret and as one
// that declares two named secrets (and reads them, as a function that needs them does).
import { App, Secret } from "tandem";
import { work } from "./work.js";

const app = new App("bench");

export const plain = app.function((n: number) => work(n));

export const withSecrets = app.function({ secrets: [Secret.fromName("bench-a"), Secret.fromName("bench-b")] }, (n: number) => {
  if (!process.env.BENCH_A || !process.env.BENCH_B) throw new Error("the secrets are not in process.env");
  return work(n);
});

export default app;
