// examples/hello: an edge function, a whole hono app and a single endpoint.
//   tandem serve examples/hello/app.ts
//   curl http://127.0.0.1:8787/hello/greet/Ada
import { Hono } from "hono";
import { App, Retries } from "tandem";

const app = new App("hello");

/** A plain TypeScript function, run in the edge isolate. */
export const greet = app.function({ timeout: 10 }, (name: string) => {
  console.log(`greeting ${name}`);
  return `Hello, ${name}!`;
});

/** Squares a number; the client maps it over many inputs. */
export const square = app.function({ retries: Retries({ maxRetries: 2, initialDelayMs: 100 }) }, (x: number) => x * x);

/** A whole hono app at /hello/api/...; its routes call the functions above. */
app.web("api", () =>
  new Hono()
    .get("/", (c) => c.json({ functions: ["greet", "square"] }))
    .get("/square/:x", async (c) => c.json({ result: await square.remote(Number(c.req.param("x"))) })),
);

/** One handler at /hello/greet/:name. */
export const greetPage = app.endpoint({ method: "GET", path: "/:name", label: "greet" }, async (c) => c.text(await greet.remote(c.req.param("name"))));

export default app;
