import { describe, expect, it } from "vitest";
import { z } from "zod";
import { App, loadAppModule, lookup } from "./app.js";
import { FunctionCall } from "./function-call.js";
import { InvalidArgumentError, InvalidOptionsError } from "./errors.js";
import { Cron } from "./schedule.js";

describe("App", () => {
  it("names functions and endpoints after their exports, unless they have a name", () => {
    const app = new App("demo");
    const greet = app.function((name: string) => `hi ${name}`);
    const other = app.function({ name: "explicit" }, () => 1);
    const page = app.endpoint({}, () => "page");
    loadAppModule("demo.ts", { default: app, greet, renamed: other, page });
    expect(app.functions.map((f) => f.name)).toEqual(["greet", "explicit"]);
    expect(page.label).toBe("page");
    expect(app.manifest().endpoints).toEqual([{ label: "page", kind: "endpoint", method: "GET", path: "/", auth: "public" }]);
  });

  it("refuses two functions with one name", () => {
    const app = new App("demo");
    const a = app.function({ name: "same" }, () => 1);
    const b = app.function(() => 2);
    expect(() => loadAppModule("demo.ts", { default: app, a, same: b })).toThrow('two functions are named "same"');
  });

  it("refuses a function with no name", () => {
    const app = new App("demo");
    app.function(() => 1);
    expect(() => loadAppModule("demo.ts", { default: app })).toThrow("a function has no name");
  });

  it("refuses an app file without a default-exported App", () => {
    expect(() => loadAppModule("x.ts", { foo: 1 })).toThrow("x.ts must `export default` an App");
  });

  it("refuses bad app names, labels and endpoint options", () => {
    expect(() => new App("has space")).toThrow(InvalidOptionsError);
    expect(() => new App("v1")).toThrow("reserved");
    const app = new App("demo");
    expect(() => app.web("bad label", () => ({ fetch: () => new Response() }))).toThrow("web label");
    expect(() => app.endpoint({ method: "FETCH" as "GET" }, () => 1)).toThrow('option "method"');
    expect(() => app.endpoint({ path: "no-slash" }, () => 1)).toThrow('option "path" must start with "/"');
    const e1 = app.endpoint({ label: "dup" }, () => 1);
    app.web("dup", () => ({ fetch: () => new Response() }));
    expect(() => loadAppModule("demo.ts", { default: app, e1 })).toThrow('app "demo": a web app and a web endpoint use the label "dup"; labels must be unique');
    // Two agents were called "two web endpoints" too.
    const agents = new App("chatty");
    agents.websocket("chat", { onMessage() {} });
    agents.websocket("chat", { onMessage() {} });
    expect(() => loadAppModule("chatty.ts", { default: agents })).toThrow('app "chatty": two WebSocket agents use the label "chat"');
  });

  it("names the handler an agent's misspelt one was meant to be", () => {
    const app = new App("chat");
    expect(() => app.websocket("room", { onMesage() {} } as never)).toThrow(
      'app "chat": websocket "room": unknown handler "onMesage"; did you mean "onMessage"? (handlers: initialState, onOpen, onMessage, onClose)',
    );
  });

  it("refuses a scheduled function whose input schema refuses the no arguments a schedule calls it with", () => {
    // Before, it loaded, and every run failed with invalid_argument.
    const app = new App("nightly");
    const report = app.function({ schedule: Cron("0 2 * * *"), input: z.tuple([z.string()]) }, (day: string) => day);
    expect(() => loadAppModule("nightly.ts", { default: app, report })).toThrow(
      'app "nightly": function "report" runs on a schedule, which calls it with no arguments, and its option "input" refuses that (argument 1: Invalid input: expected string, received undefined): give its arguments defaults',
    );
    const fine = new App("nightly2");
    const withDefault = fine.function({ schedule: Cron("0 2 * * *"), input: z.tuple([z.string().default("today")]) }, (day: string) => day);
    expect(() => loadAppModule("nightly2.ts", { default: fine, withDefault })).not.toThrow();
  });

  it("takes a body limit for an endpoint or a web mount, and refuses one that is not a size", () => {
    const app = new App("demo");
    const upload = app.endpoint({ method: "POST", maxBodyBytes: 50_000_000 }, () => 1);
    const open = app.endpoint({ method: "PUT", maxBodyBytes: Infinity }, () => 1);
    app.web("files", () => ({ fetch: () => new Response() }), { maxBodyBytes: 0 });
    expect([upload.maxBodyBytes, open.maxBodyBytes, app.webMounts[0]!.maxBodyBytes]).toEqual([50_000_000, Infinity, 0]);
    for (const bad of [-1, 1.5, NaN, "stream", "10mb", null]) {
      expect(() => app.endpoint({ method: "POST", maxBodyBytes: bad as number }, () => 1)).toThrow(
        `app "demo": endpoint: option "maxBodyBytes" must be a whole number of bytes, 0 or more, or Infinity for no limit (got ${typeof bad === "string" ? JSON.stringify(bad) : String(bad)})`,
      );
      expect(() => app.web("w", () => ({ fetch: () => new Response() }), { maxBodyBytes: bad as number })).toThrow(
        'app "demo": web "w": option "maxBodyBytes"',
      );
    }
    expect(() => app.web("w", () => ({ fetch: () => new Response() }), { maxBody: 1 } as object)).toThrow(
      'unknown option "maxBody" (options: auth, maxBodyBytes, secrets)',
    );
  });

  it("checks a WebAssembly function's options, naming the option", () => {
    const app = new App("w");
    expect(() => app.wasm("x", { module: "./x.wasm", source: "./x.as.ts" })).toThrow('give exactly one of { module: "./fn.wasm" } or { source: "./fn.as.ts" }');
    expect(() => app.wasm("x", { module: "./x.wasm" }, { contentType: "xml" as "json" })).toThrow(
      'app "w": wasm function "x": option "contentType" must be "json" or "bytes" (got "xml")',
    );
    expect(() => app.wasm("x", { module: "./x.wasm" }, { maxMemoryPages: 0 })).toThrow('option "maxMemoryPages" must be at least 1');
    expect(() => app.wasm("x", { module: "./x.wasm" }, { timeot: 3 } as object)).toThrow('unknown option "timeot"');
    const plane = app.wasm("y", { module: "./y.wasm" }, { tier: "plane", contentType: "bytes", timeout: 5 });
    expect(plane.spec?.tier).toBe("plane");
    expect(app.wasmFunctions.find((w) => w.name === "y")).toMatchObject({
      contentType: "bytes",
      limits: { maxMemoryPages: 4096, maxOutputBytes: 10 * 1024 * 1024 },
    });
  });

  it("checks a WebAssembly function's args and files, naming the app, the function and the option", () => {
    const app = new App("w");
    const refused = (from: object) => {
      try {
        app.wasm("tool", from as { module: string });
      } catch (err) {
        return (err as Error).message;
      }
      return "accepted";
    };
    expect(refused({ module: "./t.wasm", args: "--fast" })).toBe('app "w": wasm function "tool": option "args" must be a list of strings (got "--fast")');
    expect(refused({ module: "./t.wasm", args: ["-n", 3] })).toBe('app "w": wasm function "tool": option "args.1" must be a string (got 3)');
    expect(refused({ module: "./t.wasm", files: { data: "./data" } })).toBe(
      'app "w": wasm function "tool": option "files": a guest path must be absolute (start with /) (got "data")',
    );
    expect(refused({ module: "./t.wasm", files: { "/data/../etc": "./data" } })).toBe(
      'app "w": wasm function "tool": option "files": a guest path must not hold "." or ".." parts (got "/data/../etc")',
    );
    expect(refused({ module: "./t.wasm", files: { "/": "./data" } })).toContain(
      'a guest path cannot be / (the module\'s own scratch file system is there); use a folder such as /data (got "/")',
    );
    expect(refused({ module: "./t.wasm", files: { "/data/": "./data" } })).toContain(
      'a guest path must not end with / or hold an empty part (//) (got "/data/")',
    );
    expect(refused({ module: "./t.wasm", files: { "/data": "./a", "/data/more": "./b" } })).toBe(
      'app "w": wasm function "tool": option "files": a guest path is inside another one ("/data"); give directories that do not nest (got "/data/more")',
    );
    expect(refused({ module: "./t.wasm", files: { "/data": 7 } })).toBe(
      'app "w": wasm function "tool": option "files./data" must be the path of a directory (got 7)',
    );
    expect(refused({ module: "./t.wasm", file: { "/data": "./data" } })).toBe('app "w": wasm function "tool": unknown option "file"; did you mean "files"?');
    app.wasm("ok", { module: "./t.wasm", args: ["--check", "/data/rules.json"], files: { "/data": "./rules", "/share/fonts": "../fonts" } });
    expect(app.wasmFunctions.find((w) => w.name === "ok")).toMatchObject({
      args: ["--check", "/data/rules.json"],
      files: { "/data": "./rules", "/share/fonts": "../fonts" },
    });
  });

  it("runs .local() in this process", async () => {
    const app = new App("demo");
    const double = app.function({ name: "double" }, async (x: number) => x * 2);
    expect(await double.local(21)).toBe(42);
    await expect(lookup("demo", "double").local(1)).rejects.toThrow("no local handler");
  });

  it("runs a class method's .local() on an instance built here, enter() first", async () => {
    const app = new App("demo");
    const Counter = app.cls(
      { name: "Counter" },
      class {
        n = 0;
        constructor(readonly params: { start?: number }) {}
        enter() {
          this.n = this.params.start ?? 0;
        }
        inc(by: number) {
          return (this.n += by);
        }
      },
    );
    expect(await Counter({ start: 5 }).inc!.local(2)).toBe(7);
    expect(await Counter({ start: 5 }).inc!.local(2)).toBe(9); // the same instance for the same parameters
    expect(await Counter({ start: 1 }).inc!.local(1)).toBe(2);
  });

  it("runs .local() of a class no runtime named (imported by a script), and says how to call one by name", async () => {
    const app = new App("demo");
    const Shout = app.cls(
      {},
      class {
        shout(word: string) {
          return word.toUpperCase();
        }
      },
    );
    // Before: making the method's handle threw "a class has no name yet", so .local() could not run.
    expect(await Shout({}).shout!.local("hi")).toBe("HI");
    await expect(Shout({}).shout!.remote("hi")).rejects.toThrow(/a class has no name yet: .*lookup\("demo", "<Class>\.<method>"\)/);
  });

  it("makes the methods a class inherits functions too, its own first, and no getter runs to find them", async () => {
    const app = new App("demo");
    class Base {
      constructor(readonly params: { size?: string }) {}
      enter() {}
      predict(text: string) {
        return `${this.params.size ?? "base"}:${text}`;
      }
      get heavy(): never {
        throw new Error("a getter ran");
      }
    }
    const Child = app.cls(
      { name: "Child" },
      class extends Base {
        extra() {
          return "x";
        }
        override predict(text: string) {
          return super.predict(text).toUpperCase();
        }
      },
    );
    // Before: only "extra"; `Child.predict` was "no function" to every runtime.
    expect(app.callables.map((c) => c.name)).toEqual(["Child.extra", "Child.predict"]);
    expect(await Child({ size: "s" }).predict!.local("hi")).toBe("S:HI");
    // A class whose only "methods" are arrow-function fields has none: said so, with why.
    expect(() =>
      app.cls(
        { name: "Arrows" },
        class {
          predict = (text: string) => text;
        },
      ),
    ).toThrow(
      'app "demo": class "Arrows" has no methods to call (a method is declared in the class body or a class it extends; an arrow-function field is not one)',
    );
  });

  it("says in its manifest (what tandem apps prints) which names are functions and which are a class's methods", () => {
    const app = new App("demo");
    const double = app.function((x: number) => x * 2);
    const Model = app.cls(
      {},
      class {
        predict() {}
      },
    );
    loadAppModule("demo.ts", { default: app, double, Model });
    // Before: no kind; tandem apps called a method a function, where serve's banner said method.
    expect(app.manifest().functions.map((f) => [f.name, f.kind])).toEqual([
      ["double", "function"],
      ["Model.predict", "method"],
    ]);
  });

  it("names an anonymous class in an option's error by its export, once the app loads, and by its place in the app when it has none", () => {
    const app = new App("demo");
    app.cls(
      { name: "First" },
      class {
        f() {}
      },
    );
    // Before: class "#2" (and before that, class ""), though the app's loader knows it as "Model".
    const Model = app.cls(
      { gpus: "T4" } as never,
      class {
        f() {}
      },
    );
    const error = 'app "demo": class "Model": unknown option "gpus"; did you mean "gpu"?';
    expect(() => app.finalize({ Model, default: app })).toThrow(error);
    expect(() => Model({})).toThrow(error); // used after it was named
    const other = new App("other");
    const unexported = other.cls(
      { schedule: Cron("0 2 * * *") } as never,
      class {
        f() {}
      },
    );
    expect(() => unexported({})).toThrow('app "other": class "#1": option "schedule" is for functions'); // used before
    expect(() => other.finalize({ default: other })).toThrow('app "other": class "#1": option "schedule" is for functions');
    const noMethods = new App("empty");
    noMethods.cls({}, class {});
    expect(() => noMethods.finalize({ default: noMethods })).toThrow('app "empty": class "#1" has no methods to call');
    // A class with a name of its own (or a name option) is told at once, by that name.
    expect(() =>
      new App("named").cls(
        { gpus: "T4" } as never,
        class Named {
          f() {}
        },
      ),
    ).toThrow('app "named": class "Named": unknown option "gpus"');
  });

  it("says what it got when app.cls is not given a class, and how to call an unnamed handle from elsewhere", () => {
    const app = new App("demo");
    expect(() => app.cls({}, (() => 1) as never)).toThrow('app "demo": class #1 needs a class (got an arrow function)');
    const unnamed = app.function(() => 1);
    expect(() => unnamed.name).toThrow('From another program, call it by name: lookup("demo", "<export name>")');
  });

  it("checks a function's arguments against its input schema in .local(), handing the handler the schema's output", async () => {
    const app = new App("demo");
    const repeat = app.function({ input: z.tuple([z.string().trim(), z.number().int().default(2)]) }, (s, n) => s.repeat(n));
    const stream = app.function({ input: z.tuple([z.number()]) }, async function* (n) {
      yield n;
    });
    loadAppModule("demo.ts", { default: app, repeat, stream });
    expect(await repeat.local(" ab ")).toBe("abab");
    const err = await repeat.local("ab", 1.5).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toBe("demo.repeat: argument 2: Invalid input: expected int, received number (got 1.5)");
    expect(app.callables.map((c) => [c.name, c.generator])).toEqual([
      ["repeat", false],
      ["stream", true],
    ]);
  });

  it("takes a class's input schemas per method, and checks them in .local()", async () => {
    const app = new App("demo");
    const Model = app.cls(
      { name: "Model", input: { predict: z.tuple([z.string().min(1)]) } },
      class {
        constructor(readonly params: { size?: string }) {}
        predict(text: string) {
          return text.toUpperCase();
        }
        free(x: unknown) {
          return x;
        }
      },
    );
    expect(app.classes[0]!.input).toHaveProperty("predict");
    expect(await Model().predict!.local("hi")).toBe("HI");
    expect(await Model().free!.local(3)).toBe(3);
    await expect(Model().predict!.local("")).rejects.toThrow('demo.Model.predict: argument 1: Too small: expected string to have >=1 characters (got "")');
  });

  it("refuses a class's input that is not a schema per method, naming the methods", () => {
    const app = new App("demo");
    const Class = class {
      predict(text: string) {
        return text;
      }
    };
    expect(() => app.cls({ name: "M", input: z.tuple([z.string()]) as never }, Class)).toThrow(
      'app "demo": class "M": option "input" takes a schema per method, such as { predict: z.tuple([...]) }',
    );
    expect(() => app.cls({ name: "M", input: { predikt: z.tuple([z.string()]) } as never }, Class)).toThrow(
      'option "input" names "predikt", which is not a method of the class (methods: predict)',
    );
    expect(() => app.cls({ name: "M", input: { predict: z.string() } as never }, Class)).toThrow(
      'option "input.predict" must be a zod schema of the argument list',
    );
  });
});

describe("map and get options, checked where they are given", () => {
  const double = lookup<[number], number>("demo", "double", { gateway: "http://127.0.0.1:9" });

  it("refuses inputs that cannot be iterated, naming the function", () => {
    expect(() => double.map(5 as unknown as number[])).toThrow(
      new InvalidOptionsError("double.map: inputs must be an iterable or async iterable, such as an array or a generator (got 5)"),
    );
    expect(() => double.starmap(null as unknown as [number][])).toThrow(InvalidOptionsError);
  });

  it("refuses a starmap input that is not an argument list, naming its index", async () => {
    const first = async (inputs: unknown) => {
      for await (const result of double.starmap(inputs as [number][])) return result;
    };
    await expect(first([1, 2])).rejects.toThrow(
      new InvalidOptionsError("double.starmap: inputs[0] must be an argument list, an array such as [1, 2] (got 1); for one argument per input, use map"),
    );
    await expect(first([[1], "ab"])).rejects.toThrow('double.starmap: inputs[1] must be an argument list, an array such as [1, 2] (got "ab")');
    await expect(first([[1], { a: 1 }])).rejects.toThrow("inputs[1] must be an argument list, an array such as [1, 2] (got an object)");
  });

  it("refuses an unknown or mistyped map option, with the nearest known one", () => {
    expect(() => double.map([1], { orderOutput: true } as never)).toThrow(
      new InvalidOptionsError('double.map: unknown option "orderOutput"; did you mean "orderOutputs"?'),
    );
    expect(() => double.map([1], { returnExceptions: "yes" } as never)).toThrow(
      new InvalidOptionsError('double.map: option "returnExceptions" must be true or false (got "yes")'),
    );
  });

  it("refuses a negative or non-number timeoutMs before it asks the gateway", async () => {
    const call = FunctionCall.fromId("fc-01jc3k0000000000000000000a", { gateway: "http://127.0.0.1:9" });
    await expect(call.get({ timeoutMs: -5 })).rejects.toThrow(new InvalidOptionsError(`call ${call.id}: get: option "timeoutMs" must be 0 or more (got -5)`));
    await expect(call.get({ timeoutMs: "10s" } as never)).rejects.toThrow(InvalidOptionsError);
    await expect(call.get({ timeout: 5 } as never)).rejects.toThrow('unknown option "timeout"; did you mean "timeoutMs"?');
  });
});
