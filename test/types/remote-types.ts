// Checked by `tsc` (npm run typecheck), never run: a handler's parameter and
// return types flow through to .remote(), .spawn(), .map() and .local().
import { App, FunctionCall, lookup } from "tandem";

const app = new App("types");
const greet = app.function({}, (name: string, times: number) => name.repeat(times));
const square = app.function(async (x: number) => x * x);

export async function checks(): Promise<void> {
  const s: string = await greet.remote("a", 2);
  const n: number = await square.remote(3);
  const local: number = await square.local(3);
  const call: FunctionCall<number> = await square.spawn(4);
  const later: number = await call.get({ timeoutMs: 1000 });
  for await (const y of square.map([1, 2, 3])) {
    const ny: number = y;
    void ny;
  }
  for await (const y of greet.starmap([
    ["a", 1],
    ["b", 2],
  ])) {
    const sy: string = y;
    void sy;
  }

  // @ts-expect-error: wrong argument type
  await greet.remote(1, 2);
  // @ts-expect-error: missing argument
  await greet.remote("a");
  // @ts-expect-error: too many arguments
  await square.remote(1, 2);
  // @ts-expect-error: the result is a number, not a string
  const wrong: string = await square.remote(2);
  // @ts-expect-error: map inputs are the first argument's type
  square.map(["x"]);
  // @ts-expect-error: timeout must be a number
  app.function({ timeout: "10" }, () => 1);
  // @ts-expect-error: an unknown option
  app.function({ timout: 10 }, () => 1);

  const withDefault = app.function((prompt: string, maxTokens = 40) => prompt.slice(0, maxTokens));
  const d1: string = await withDefault.remote("x");
  const d2: string = await withDefault.remote("x", 2);
  // @ts-expect-error: a default value types its parameter
  await withDefault.remote("x", "2");
  void [d1, d2];

  const gen = app.function(async function* (prompt: string) {
    yield prompt.length;
  });
  for await (const chunk of gen.remoteGen("x")) {
    const c: number = chunk;
    void c;
  }
  for await (const chunk of gen.remoteGen("x")) {
    // @ts-expect-error: chunks are numbers
    const wrongChunk: string = chunk;
    void wrongChunk;
  }

  const Model = app.cls(
    { gpu: "T4" },
    class {
      constructor(readonly params: { size?: string }) {}
      enter() {}
      predict(text: string, n: number) {
        return text.repeat(n);
      }
    },
  );
  const predicted: string = await Model({ size: "small" }).predict.remote("a", 2);
  // @ts-expect-error: predict takes (string, number)
  await Model().predict.remote(1, 2);
  // @ts-expect-error: lifecycle hooks are not callable methods
  void Model().enter;
  void predicted;

  const typed = lookup<[string], string>("hello", "greet");
  const r: string = await typed.remote("x");
  void [s, n, local, later, wrong, r];
}

// The gpu option names a GPU type Tandem knows, with a count of 1 to 8: a typo does not compile.
export const gpuSpecs = [
  app.function({ gpu: "A100" }, () => 1),
  app.function({ gpu: "h100:2" }, () => 1),
  app.function({ gpu: ["H100:8", "A100-80GB:4", "A100-40GB"] }, () => 1),
  // @ts-expect-error: no such GPU type
  app.function({ gpu: "V100" }, () => 1),
  // @ts-expect-error: more GPUs than a container may have
  app.function({ gpu: "A100:9" }, () => 1),
  // @ts-expect-error: one of the fallbacks is no GPU type
  app.function({ gpu: ["H100", "B200"] }, () => 1),
];
