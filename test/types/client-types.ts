// Checked by `tsc` (npm run typecheck), never run: what a map yields when its
// failures may be returned, a class's parameters as its constructor declares
// them, and an agent client's events, each typed for its listeners.
import { App, Dict, Queue, TandemError, connect, lookup } from "tandem";

const app = new App("types");
const square = app.function(async (x: number) => x * x);
const add = app.function((a: number, b: number) => a + b);

export async function mapChecks(returnExceptions: boolean): Promise<void> {
  for await (const y of square.map([1, 2], { orderOutputs: false })) {
    const n: number = y;
    void n;
  }
  for await (const y of square.map([1, 2], { returnExceptions: true })) {
    const either: number | TandemError = y;
    void either;
  }
  // A flag known only when it runs may yield errors: they are among the results' types.
  for await (const y of square.map([1, 2], { returnExceptions })) {
    // @ts-expect-error: a failed input's TandemError may be yielded
    const n: number = y;
    const either: number | TandemError = y;
    void [n, either];
  }
  // A function of two arguments is mapped with starmap: map gave it one, the other undefined (before: it compiled).
  // @ts-expect-error: a function of several arguments: map it with .starmap([[a, b], ...])
  for await (const y of add.map([1, 2])) void y;
  const optionalSecond = app.function((a: number, b?: number) => a + (b ?? 0));
  for await (const y of optionalSecond.map([1, 2])) void y;
  for await (const y of add.starmap([[1, 2]], { returnExceptions })) {
    // @ts-expect-error: a failed input's TandemError may be yielded
    const n: number = y;
    void n;
  }
  for await (const y of add.starmap([[1, 2]], { returnExceptions: false })) {
    const n: number = y;
    void n;
  }
}

export async function classParamChecks(): Promise<void> {
  const Model = app.cls(
    { gpu: "T4" },
    class {
      constructor(readonly params: { size?: string; layers?: number }) {}
      predict(text: string) {
        return text.length;
      }
    },
  );
  const a: number = await Model({ size: "small" }).predict.remote("a");
  await Model().predict.remote("b");
  await Model({ layers: 2 }).predict.remote("c");
  // @ts-expect-error: a parameter the constructor does not declare
  Model({ sizee: "small" });
  // @ts-expect-error: size is a string
  Model({ size: 3 });

  const Required = app.cls(
    {},
    class {
      constructor(readonly params: { size: string }) {}
      run() {
        return this.params.size;
      }
    },
  );
  await Required({ size: "x" }).run.remote();
  const Dated = app.cls(
    {},
    class {
      constructor(readonly params: { since?: Date; label?: string | null }) {}
      run() {
        return 1;
      }
    },
  );
  await Dated({ label: null }).run.remote();
  // @ts-expect-error: a Date cannot be a class parameter (the gateway refuses it): strings, numbers, booleans, null
  Dated({ since: new Date() });
  // @ts-expect-error: its constructor needs a size
  Required();

  // A class without a constructor takes any parameters a class can have.
  const Plain = app.cls(
    {},
    class {
      run() {
        return 1;
      }
    },
  );
  await Plain({ anything: "goes", n: 1 }).run.remote();
  await Plain().run.remote();
  void a;
}

export function agentEventChecks(): void {
  const chat = connect("agent", "chat");
  chat.addEventListener("message", (e) => {
    const data: string | Uint8Array = e.data;
    void data;
  });
  chat.addEventListener("open", (e) => {
    const resumed: boolean = e.resumed;
    void resumed;
  });
  chat.addEventListener("close", (e) => {
    const facts: [number, string, boolean] = [e.code, e.reason, e.willReconnect];
    void facts;
  });
  chat.addEventListener("error", (e) => {
    const message: string = e.message;
    void message;
  });
  chat.addEventListener("message", (e) => {
    // @ts-expect-error: a message event has no code
    void e.code;
  });
  const other = (e: Event) => void e.type;
  chat.addEventListener("custom", other);
  chat.removeEventListener("custom", other);
}

export async function generatorChecks(): Promise<void> {
  const tokens = app.function(async function* (prompt: string) {
    yield* prompt.split(" ");
  });
  const counts = app.function(function* (n: number) {
    for (let i = 0; i < n; i++) yield i;
  });
  for await (const token of tokens.remoteGen("a b")) {
    const t: string = token;
    void t;
  }
  for await (const i of counts.remoteGen(2)) {
    const n: number = i;
    void n;
  }
  // @ts-expect-error: the gateway refuses to call a generator function: it streams
  await tokens.remote("a b");
  // @ts-expect-error: nor spawn one
  await tokens.spawn("a b");
  // @ts-expect-error: nor stream a function that yields nothing
  square.remoteGen(2);
  // @ts-expect-error: nor one that returns an array or a string: iterable, yet returned whole (before: it compiled)
  app.function((n: number) => [n, n + 1]).remoteGen(1);
  // @ts-expect-error: a string
  app.function((s: string) => s.toUpperCase()).remoteGen("a");
  // @ts-expect-error: remoteGen still checks a generator's arguments
  tokens.remoteGen(1);
  // @ts-expect-error: nor map one: each input would stream
  tokens.map(["a b", "c"]);
  // @ts-expect-error: nor starmap one
  counts.starmap([[1], [2]]);

  // Looked up by name: typed as the caller says, or left open.
  const typed = lookup<[string], AsyncGenerator<string>>("app", "tokens");
  for await (const token of typed.remoteGen("a")) {
    const t: string = token;
    void t;
  }
  // @ts-expect-error: typed as a generator, so not called
  await typed.remote("a");
  const open = lookup("app", "anything");
  await open.remote(1, 2);
  for await (const chunk of open.remoteGen(1)) void chunk;
  const failing = lookup<[], never>("app", "failing");
  await failing.remote().catch(() => undefined);
}

export async function errorChecks(): Promise<void> {
  try {
    await square.remote(2);
  } catch (err) {
    if (err instanceof TandemError) {
      // The call an error ended, typed: no cast from details' unknown.
      const callId: string | undefined = err.callId;
      // @ts-expect-error: there may be no call (a bad argument is refused before one is made)
      const sure: string = err.callId;
      void [callId, sure];
    }
  }
}

export async function storeChecks(): Promise<void> {
  // A dict's and a queue's types, when named, type what goes in and what comes out.
  const counts = Dict.fromName<string, number>("counts");
  const n: number | undefined = await counts.get("a");
  const withFallback: number = await counts.get("a", 0); // a fallback of the value's type: never undefined
  // A fallback of another type: either comes back (before: typed as the fallback's alone).
  const either: number | string = await counts.get("a", "none");
  // @ts-expect-error: the value may be the dict's number, not the fallback's string
  const onlyFallback: string = await counts.get("a", "none");
  await counts.put("a", 1);
  // @ts-expect-error: the value must be a number
  await counts.put("a", "one");
  // @ts-expect-error: the key must be a string
  await counts.contains(1);
  await counts.update({ a: 1, b: 2 });
  await counts.update(new Map([["c", 3]]));
  // @ts-expect-error: the values must be numbers
  await counts.update({ a: "1" });
  for await (const [key, value] of counts.items()) {
    const k: string = key;
    const v: number = value;
    void [k, v];
  }
  // Unnamed, as before: anything goes in, and a read names what it expects.
  const loose = Dict.fromName("loose");
  await loose.put({ any: "key" }, [1, 2]);
  const read: string | undefined = await loose.get<string>("x");
  const jobs = Queue.fromName<{ url: string }>("jobs");
  await jobs.put({ url: "https://example.com" });
  // @ts-expect-error: an item must be a job
  await jobs.put({ path: "/x" });
  const job = await jobs.get({ timeoutMs: 10 });
  const url: string | undefined = job?.url;
  const leased = await jobs.get({ lease: 60 });
  if (leased) await jobs.ack(leased);
  const many: { url: string }[] = await jobs.getMany(5);
  // Options whose lease may or may not be there: a leased item or a plain one (before: typed as plain alone).
  const options: { lease?: number } = { lease: 30 };
  const maybeLeased = await jobs.get(options);
  // @ts-expect-error: it may be a LeasedItem, whose job is under .value
  const notSure: string | undefined = maybeLeased?.url;
  void [n, withFallback, either, onlyFallback, read, url, many, notSure];
}
