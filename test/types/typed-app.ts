// Checked by `tsc` (npm run typecheck), never run: an app file whose handles a client takes its types from
// (lookup-types.ts), importing them as types only.
import { App } from "tandem";

const app = new App("typed");
export const greet = app.function((name: string, times = 1) => name.repeat(times));
export const stamp = app.function(async (when: Date) => ({ when, year: when.getUTCFullYear() }));
export const tokens = app.function(async function* (prompt: string) {
  yield* prompt.split(" ");
});
export default app;
