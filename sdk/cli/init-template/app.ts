// my-app: an edge function, a plane function and a web endpoint, in one file.
//   npx tandem serve       (serves app.ts at http://127.0.0.1:8787)
//   node client.mjs        (calls all three from another program)
import { App, Image } from "tandem";

const app = new App("my-app");

/** At the edge: runs in the gateway's isolate (workerd), with near-zero cold start. */
export const greet = app.function({ timeout: 10 }, (name: string) => `Hello, ${name}!`);

// Built on the plane the first time a container needs it, then cached by content.
const image = Image.node().npmInstall("is-number@7.0.0");

/**
 * On the plane: in a sandboxed Docker container made from `image` (add
 * `gpu: "T4"` to ask for a GPU). A package the image installs exists only
 * there: import it inside the function; `image-packages.d.ts` gives tsc its types.
 */
export const countNumbers = app.function({ image }, async (values: string[]) => {
  const isNumber = (await import("is-number")).default;
  return { numbers: values.filter((v) => isNumber(v)).length, of: values.length, node: process.version };
});

/** A web endpoint, public: GET /my-app/hello/:name, answered at the edge, calling the edge function. */
export const hello = app.endpoint({ method: "GET", path: "/:name", label: "hello" }, async (c) => c.text(await greet.remote(c.req.param("name"))));

export default app;
