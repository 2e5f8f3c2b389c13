// Checked by `tsc` (npm run typecheck), never run: a function's `input` schema types its handler's parameters (the
// schema's output) and its callers' arguments (the schema's input); a class's schemas must fit its methods.
import { App, type FunctionOptions } from "tandem";
import { z } from "zod";

const app = new App("types");

const add = app.function({ input: z.tuple([z.number(), z.number()]) }, (a, b) => {
  const sum: number = a + b;
  return sum;
});
// Callers send what the schema takes in; the handler gets what it puts out.
const parse = app.function({ input: z.tuple([z.string().transform((s) => Number(s))]) }, (n) => n.toFixed(2));
const many = app.function({ input: z.array(z.string()), timeout: 10 }, (...names) => names.join(", "));
const gen = app.function({ input: z.tuple([z.number()]) }, async function* (n) {
  yield n * 2;
});

export async function checks(): Promise<void> {
  const s: number = await add.remote(1, 2);
  const t: string = await parse.remote("1.5");
  const m: string = await many.remote("a", "b", "c");
  for await (const y of add.starmap([[1, 2]])) void (y satisfies number);
  for await (const chunk of gen.remoteGen(1)) void (chunk satisfies number);
  void [s, t, m];

  // @ts-expect-error: the schema takes numbers
  await add.remote(1, "2");
  // @ts-expect-error: the schema takes a string, not what the handler gets
  await parse.remote(1);
  // @ts-expect-error: the handler's annotation does not fit the schema's output
  app.function({ input: z.tuple([z.string()]) }, (x: number) => x);
  // @ts-expect-error: a schema's output is the handler's: a number has no toUpperCase
  app.function({ input: z.tuple([z.number()]) }, (x) => x.toUpperCase());

  // Options kept in a variable still fit, handler typed by its own annotations.
  const shared: FunctionOptions = { timeout: 30 };
  const plain = app.function(shared, (x: string) => x.length);
  const p: number = await plain.remote("x");
  void p;

  const Model = app.cls(
    { gpu: "T4", input: { predict: z.tuple([z.string(), z.number().default(1)]) } },
    class {
      predict(text: string, n: number) {
        return text.repeat(n);
      }
      other() {
        return 1;
      }
    },
  );
  const predicted: string = await Model().predict.remote("a", 2);
  void predicted;

  app.cls(
    // @ts-expect-error: predict takes a string, not a number
    { input: { predict: z.tuple([z.number()]) } },
    class {
      predict(text: string) {
        return text;
      }
    },
  );
  app.cls(
    // @ts-expect-error: only the class's methods take a schema
    { input: { nope: z.tuple([]) } },
    class {
      predict(text: string) {
        return text;
      }
    },
  );
}

// Options typed FunctionOptions fit a class too.
const sharedOptions: FunctionOptions = { gpu: "T4" };
export const Shared = app.cls(
  sharedOptions,
  class {
    f(x: string) {
      return x;
    }
  },
);

// A function's env is names to strings (before: typed unknown, so these compiled and failed as the app loaded).
// @ts-expect-error: env is an object of strings
export const numericEnv = app.function({ env: 42 }, () => 1);
// @ts-expect-error: env values must be strings
export const envOfNumbers = app.function({ env: { A: 1 } }, () => 1);
export const envOfStrings = app.function({ env: { A: "1" } }, () => 1);
