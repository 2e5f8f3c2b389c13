/**
 * `App` and the handles it hands out: functions (`app.function`), whole hono
 * apps (`app.web`) and single web handlers (`app.endpoint`). Definitions are
 * plain data plus the handler; the runtimes (the gateway, later the plane)
 * decide how to run them.
 */
import type { Context } from "hono";
import {
  checkedHandler,
  isArgumentsSchema,
  parseArguments,
  refusalOfNoArguments,
  type ArgumentsIn,
  type ArgumentsOut,
  type ArgumentsSchema,
} from "./arguments.js";
import { InvalidOptionsError, TandemError } from "./errors.js";
import { FunctionCall } from "./function-call.js";
import { invokerFor, type MapOutcome } from "./invoker.js";
import { RemoteStream, type CallStream } from "./remote-stream.js";
import {
  parseFunctionOptions,
  parseMapOptions,
  parseSecretsOption,
  parseWasmOptions,
  parseWasmSource,
  type FunctionOptions,
  type FunctionSpec,
  type WasmOptions,
  type WasmSource,
  type WasmSourceSpec,
} from "./options.js";

export type { WasmSource } from "./options.js";
import { AGENT_DEFAULTS } from "./defaults.js";
import { formatGpu } from "./gpu.js";
import { FUNCTION_NAME_PATTERN, NAME_PATTERN, RESERVED_APP_NAMES, clsParamsProblem, type AppManifest } from "./protocol.js";
import { Secret } from "./secret.js";
import { valueText } from "./value-text.js";
import { didYouMean } from "./nearest-name.js";

/** The handlers a WebSocket agent may have. */
const AGENT_HANDLERS = ["initialState", "onOpen", "onMessage", "onClose"];

const APP_BRAND = Symbol.for("tandem.app");
const FUNCTION_BRAND = Symbol.for("tandem.function");

/** Where a client's calls go, and with which API token. */
export interface ClientOptions {
  /** The gateway: this option, then `TANDEM_GATEWAY`, then http://127.0.0.1:8787. */
  gateway?: string;
  /** The API token: this option, then `TANDEM_TOKEN`, then the profile file's for the gateway, then (for a local gateway) `.tandem/token`. */
  token?: string;
  /**
   * The regions this caller would rather its plane calls ran in, nearest first (`"eu-west"`, `["eu", "us"]`): sent
   * as `Tandem-Region`, in place of the caller's Cloudflare location. A function's own `region` option still
   * decides where it may run. See docs/deploy.md, "Regions".
   */
  region?: string | string[];
  /** The environment to address (`dev`); default `TANDEM_ENV`, then the gateway's own. See docs/deploy.md, "Environments". */
  env?: string;
}

/** Anything with a Web-standard `fetch`, such as a hono app. */
export interface WebApp {
  fetch(request: Request, env?: unknown, ctx?: unknown): Response | Promise<Response>;
}

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS";
const METHODS: readonly string[] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

export interface EndpointOptions<P extends string = string> {
  /** HTTP method; default `"GET"`. */
  method?: HttpMethod;
  /** Path under `/<app>/<label>`, with hono parameters (`/:id`); default `/`. */
  path?: P;
  /** The URL label; defaults to the name it is exported under. */
  label?: string;
  /** `"token"`: callers need an API token (or a connect token in `?token=`); default `"public"`. */
  auth?: WebAuth;
  /**
   * The largest request body the handler is given, in bytes: a whole number
   * (0 for none), or `Infinity` for no limit, the handler then reading the
   * stream as it comes. Default: the gateway's `TANDEM_MAX_BODY_BYTES`. A
   * larger body answers `413 payload_too_large`.
   */
  maxBodyBytes?: number;
  /** Secrets the handler reads as `process.env.KEY` (docs/secrets.md). */
  secrets?: Secret[];
}

/**
 * Who may open a web endpoint or agent: anyone (`"public"`, the default), or
 * callers with an API token that reaches the app, or a connect token minted
 * for it (`"token"`; see docs/security.md).
 */
export type WebAuth = "public" | "token";
const WEB_AUTH: readonly string[] = ["public", "token"];

/** Options of `app.web`. */
export interface WebOptions {
  /** `"token"`: callers need an API token (or a connect token in `?token=`); default `"public"`. */
  auth?: WebAuth;
  /** The largest request body the mounted app is given; as `EndpointOptions.maxBodyBytes`. */
  maxBodyBytes?: number;
  /** Secrets the mounted app reads as `process.env.KEY` (docs/secrets.md). */
  secrets?: Secret[];
}

/** A handler for `app.endpoint`: return a `Response`, or any JSON value to send as JSON. */
export type EndpointHandler<P extends string = string> = (c: Context<any, P>) => unknown;

export interface MapOptions {
  /** Yield results in input order (default) or as they finish. */
  orderOutputs?: boolean;
  /** Yield a failed input's error instead of throwing it (default false). */
  returnExceptions?: boolean;
}

type Inputs<T> = Iterable<T> | AsyncIterable<T>;

/** What a generator function yields. */
export type Yielded<R> = R extends AsyncIterable<infer Y> ? Y : R extends Iterable<infer Y> ? Y : never;

/**
 * The arguments `.remote()` and `.spawn()` take: a generator function's none (the gateway refuses to
 * call one: it streams, through `.remoteGen()`), so such a call does not compile, with this message.
 */
type CallArgs<A extends unknown[], R> = [R] extends [never]
  ? A
  : R extends Generator<unknown, unknown, never> | AsyncGenerator<unknown, unknown, never>
    ? [generatorFunction: "a generator function: stream it with .remoteGen()"]
    : A;

/**
 * One input of `.map()`: the function's first argument, where any later one may be left out; a function that needs
 * more takes `.starmap()` (a `.map()` of it called it with one argument, the rest undefined), so such a map does not
 * compile, with this message.
 */
type MapArg<A extends unknown[]> = A extends [unknown, unknown, ...unknown[]] ? "a function of several arguments: map it with .starmap([[a, b], ...])" : A[0];

/**
 * What `.map()` and `.starmap()` take: for a generator function, nothing (the gateway refuses to map one: each
 * input would stream), so such a map does not compile, with this message.
 */
type MapInputs<I, R> = [R] extends [never]
  ? Inputs<I>
  : R extends Generator<unknown, unknown, never> | AsyncGenerator<unknown, unknown, never>
    ? "a generator function: it is not mapped; stream each input with .remoteGen()"
    : Inputs<I>;

/**
 * The arguments `.remoteGen()` takes: none for a function that is no generator function (the gateway refuses to
 * stream it), so such a stream does not compile, with this message. A generator's result (or an async iterable's, as
 * `lookup` may be typed) streams; an array or a string, iterable yet returned whole, does not.
 */
type StreamArgs<A extends unknown[], R> = [R] extends [never]
  ? A
  : unknown extends R
    ? A
    : R extends Generator<unknown, unknown, never> | AsyncIterable<unknown>
      ? A
      : [notAGenerator: "not a generator function: call it with .remote()"];

/**
 * Any function a handler can be. `never` parameters leave the handler's own
 * annotations and default values to type its parameters.
 */
type Handler = (...args: never) => unknown;

/**
 * A deployed function. Its parameter and return types come from the handler.
 * @example
 * export const square = app.function({ timeout: 10 }, (x: number) => x * x);
 * await square.remote(4);             // 16, run by the gateway
 * for await (const y of square.map([1, 2, 3])) console.log(y);
 */
export class FunctionHandle<A extends unknown[] = unknown[], R = unknown> {
  readonly [FUNCTION_BRAND] = true;
  readonly spec: FunctionSpec | undefined;
  /** The handler as runtimes call it: with an `input` schema, it checks its arguments and hands the handler the schema's output. */
  readonly handler: ((...args: A) => unknown) | undefined;
  /** @internal Declared as a generator function (`function*`, `async function*`): it streams. */
  readonly generator: boolean;
  #app: string;
  #name: string | undefined;
  /** Where calls go and with which token (`lookup`'s options); empty: the defaults. */
  readonly #client: ClientOptions;
  /** Sent before the caller's arguments: a class method's parameters. */
  readonly #bound: unknown[];
  /** Options that did not check out: the error, told once the function's name is known. */
  readonly #invalid: ((name: string) => InvalidOptionsError) | undefined;

  /** @internal Made by `app.function`, `app.cls` or `lookup`. */
  constructor(init: {
    app: string;
    name?: string;
    spec?: FunctionSpec;
    handler?: (...args: A) => unknown;
    generator?: boolean;
    client?: ClientOptions;
    boundArgs?: unknown[];
    invalid?: (name: string) => InvalidOptionsError;
  }) {
    this.#app = init.app;
    this.#name = init.name;
    this.spec = init.spec;
    this.handler = init.handler;
    this.generator = init.generator ?? isGeneratorFunction(init.handler);
    this.#client = init.client ?? {};
    this.#bound = init.boundArgs ?? [];
    this.#invalid = init.invalid;
  }

  /** @internal What is wrong with its options, named after the function; `label` when it has no name. */
  optionsError(label: string): InvalidOptionsError | undefined {
    return this.#invalid?.(this.#name ?? label);
  }

  get appName(): string {
    return this.#app;
  }

  /** The function's name; throws if it has none yet (not exported and no `name` option). */
  get name(): string {
    if (this.#invalid) throw this.#invalid(this.#name ?? "(no name)");
    if (this.#name === undefined) {
      throw new InvalidOptionsError(
        `a function of app "${this.#app}" has no name yet: functions are named after their exports (or a \`name\` option) when a runtime loads the app file. From another program, call it by name: lookup("${this.#app}", "<export name>"), typed as the handle with lookup<typeof handle>(…) and an \`import type\` of it`,
      );
    }
    return this.#name;
  }

  /** @internal Called when the app loads, with the name it is exported under. */
  bindName(name: string): void {
    this.#name ??= name;
  }

  /** @internal */
  get boundName(): string | undefined {
    return this.#name;
  }

  /** Runs the function where it is deployed and returns its result. */
  async remote(...args: CallArgs<A, R>): Promise<R> {
    return (await invokerFor(this.#client).call(this.#app, this.name, [...this.#bound, ...args])) as R;
  }

  /**
   * Streams what a generator function yields, chunk by chunk, as it yields
   * them. Leaving the loop early stops the generator where it runs.
   * @example
   * for await (const token of generate.remoteGen("Once upon")) process.stdout.write(token);
   */
  remoteGen(...args: StreamArgs<A, R>): CallStream<Yielded<R>> {
    const invoker = invokerFor(this.#client);
    const all = [...this.#bound, ...args];
    return new RemoteStream((onCallId) => invoker.stream(this.#app, this.name, all, onCallId) as AsyncIterable<Yielded<R>>, `${this.#app}.${this.name}`);
  }

  /** Runs the handler here, in this process, without the gateway (its `input` schema checks the arguments here too). */
  async local(...args: A): Promise<R> {
    if (!this.handler) throw new InvalidOptionsError(`${this.#app}.${this.name} was looked up by name, so it has no local handler`);
    return (await this.handler(...args)) as R;
  }

  /** Starts the function and returns at once with a `FunctionCall` to collect the result later. */
  async spawn(...args: CallArgs<A, R>): Promise<FunctionCall<R>> {
    const id = await invokerFor(this.#client).spawn(this.#app, this.name, [...this.#bound, ...args]);
    return new FunctionCall<R>(id, this.#client);
  }

  /**
   * Calls the function once per input (its first argument), concurrently. With
   * `returnExceptions` true, or a boolean only known when it runs, a failed input's
   * error is yielded in its place, so its type is among the results'.
   */
  map(inputs: MapInputs<MapArg<A>, R>, options: MapOptions & { returnExceptions: true }): AsyncIterable<R | TandemError>;
  map(inputs: MapInputs<MapArg<A>, R>, options?: MapOptions & { returnExceptions?: false }): AsyncIterable<R>;
  map(inputs: MapInputs<MapArg<A>, R>, options?: MapOptions): AsyncIterable<R | TandemError>;
  map(inputs: MapInputs<MapArg<A>, R>, options: MapOptions = {}): AsyncIterable<R | TandemError> {
    const checked = parseMapOptions(inputs, options, `${this.#name ?? "function"}.map`);
    return this.#starmap(
      mapInputs(inputs as Inputs<A[0]>, (x) => [x] as unknown as A),
      checked,
    );
  }

  /** Like `map`, but each input is the whole argument list. */
  starmap(inputs: MapInputs<A, R>, options: MapOptions & { returnExceptions: true }): AsyncIterable<R | TandemError>;
  starmap(inputs: MapInputs<A, R>, options?: MapOptions & { returnExceptions?: false }): AsyncIterable<R>;
  starmap(inputs: MapInputs<A, R>, options?: MapOptions): AsyncIterable<R | TandemError>;
  starmap(inputs: MapInputs<A, R>, options: MapOptions = {}): AsyncIterable<R | TandemError> {
    return this.#starmap(inputs as Inputs<A>, parseMapOptions(inputs, options, `${this.#name ?? "function"}.starmap`));
  }

  /** `starmap` with its inputs and options checked (`map` checks its own). */
  #starmap(inputs: Inputs<A>, options: MapOptions): AsyncIterable<R | TandemError> {
    const bound = this.#bound;
    const where = `${this.#name ?? "function"}.starmap`;
    const outcomes = invokerFor(this.#client).map(
      this.#app,
      this.name,
      mapInputs(inputs, (args, index) => [...bound, ...argumentList(args, index, where)]),
    );
    const ordered = options.orderOutputs ?? true;
    return unwrapOutcomes<R>(ordered ? inOrder(outcomes) : outcomes, options.returnExceptions ?? false);
  }
}

/** A single web handler mounted at `/<app>/<label><path>`. */
export class EndpointHandle {
  readonly method: HttpMethod;
  readonly path: string;
  readonly handler: EndpointHandler;
  readonly auth: WebAuth;
  /** The endpoint's own body limit (`Infinity`: none); undefined: the gateway's. */
  readonly maxBodyBytes: number | undefined;
  readonly secrets: readonly Secret[];
  #label: string | undefined;

  /** @internal */
  constructor(options: EndpointOptions, handler: EndpointHandler) {
    this.method = options.method ?? "GET";
    this.path = options.path ?? "/";
    this.auth = options.auth ?? "public";
    this.maxBodyBytes = options.maxBodyBytes;
    this.secrets = options.secrets ?? [];
    this.#label = options.label;
    this.handler = handler;
  }

  get label(): string {
    if (this.#label === undefined) throw new InvalidOptionsError("an endpoint has no label: export it, or give it a `label` option");
    return this.#label;
  }

  /** @internal */
  bindName(name: string): void {
    this.#label ??= name;
  }

  /** @internal */
  get boundLabel(): string | undefined {
    return this.#label;
  }
}

/** Method names of a class that are lifecycle hooks, not callable methods. */
export const LIFECYCLE_HOOKS = ["enter", "exit"] as const;

/** Parameters a class is built with; each distinct set gets its own pool of containers. */
export type ClsParams = Record<string, string | number | boolean | null>;

/** The callable methods of a class instance, as function handles. */
export type ClsMethods<I> = {
  [K in keyof I as K extends (typeof LIFECYCLE_HOOKS)[number] ? never : I[K] extends (...args: never) => unknown ? K : never]: I[K] extends (
    ...args: infer A
  ) => infer R
    ? FunctionHandle<A, Awaited<R>>
    : never;
};

/**
 * A class defined with `app.cls`: call it (with parameters, or none) to get
 * handles on its methods.
 * @example
 * const model = Model({ size: "small" });
 * await model.predict.remote("hello");
 */
export type ClsHandle<I, P = ClsParams> = (Record<never, never> extends P ? (params?: P) => ClsMethods<I> : (params: P) => ClsMethods<I>) & {
  readonly [CLS_BRAND]: ClsDefinition;
};

/**
 * The parameters a class is built with, as its constructor declares them, each a value a parameter can be
 * (a field declared as a `Date`, say, takes nothing); a class that declares none takes any `ClsParams`.
 */
export type ClsParamsOf<C> = C extends new (params: infer P) => object
  ? unknown extends P
    ? ClsParams
    : { [K in keyof P]: P[K] & ClsParams[string] }
  : ClsParams;

const CLS_BRAND = Symbol.for("tandem.cls");

/** What the runtimes need of a class: its name, options, constructor and methods. */
export interface ClsDefinition {
  /** The class's name in the app (its `name` option, the name it is exported under, or the class's own name). */
  name: string | undefined;
  spec: FunctionSpec;
  Class: new (params: ClsParams) => Record<string, unknown>;
  methods: string[];
  /** The app it belongs to (for messages). */
  app: string;
  /** Each method's `input` schema, for those that have one. */
  input: Readonly<Record<string, ArgumentsSchema>>;
  /** @internal What is wrong with the options of an anonymous class, named once it has a name (`finalize`). */
  invalid?: (name: string) => InvalidOptionsError;
}

/**
 * Options of `app.cls`: a function's options, with `input` given per method
 * (`{ predict: z.tuple([z.string()]) }`), each schema's output fitting its
 * method's parameters. (A single schema type-checks, so that options typed
 * `FunctionOptions` fit a class too; it is refused when the app loads.)
 */
export type ClsOptions<I = Record<string, unknown>> = Omit<FunctionOptions, "input"> & {
  input?: { [K in keyof ClsMethods<I>]?: K extends keyof I ? ArgumentsSchema<MethodParameters<I[K]>> : never } | ArgumentsSchema;
};

type MethodParameters<M> = M extends (...args: infer A) => unknown ? A : never;

/** A WebAssembly function as the runtimes see it. */
export interface WasmDefinition extends WasmSourceSpec {
  name: string;
  spec: FunctionSpec;
  contentType: "json" | "bytes";
  limits: { maxMemoryPages: number; maxOutputBytes: number };
}

/** A function as callers name it: a function, a class's method or a WebAssembly function, with its options. */
export interface Callable {
  name: string;
  kind: "function" | "method" | "wasm";
  spec: FunctionSpec;
  /** Declared as a generator function (`function*`, `async function*`): it streams. */
  generator: boolean;
  /** Its `input` schema (a class method's own), which a call's arguments are checked against (`checkCallArguments`). */
  input: ArgumentsSchema | undefined;
  /**
   * How many parameters its handler declares before its first one with a default (a function's `length`): what a
   * schedule, which calls it with none, leaves undefined. 0 with an `input` schema, which says so itself (`finalize`).
   */
  parameters: number;
}

/** A handler written as a generator function. (One that returns an iterable some other way is only known when it runs.) */
function isGeneratorFunction(f: unknown): boolean {
  const kind = (f as { constructor?: { name?: string } } | undefined)?.constructor?.name;
  return kind === "AsyncGeneratorFunction" || kind === "GeneratorFunction";
}

/** What a WebSocket agent's handlers get: the session, its durable state, and the socket. */
export interface AgentContext<S = Record<string, unknown>> {
  /** The session's id: the client's `sessionId` (resume with it), or one made for a client that gave none. */
  readonly sessionId: string;
  /**
   * The session's state: mutate it freely. It is saved when each handler
   * settles (threw or not), and survives hibernation, a gateway restart and
   * reconnects with the same session id. JSON-like values only.
   */
  state: S;
  /** Sends a text or binary frame to this session's sockets. */
  send(data: string | ArrayBuffer | ArrayBufferView): void;
  /** Closes this session's sockets (default 1000). */
  close(code?: number, reason?: string): void;
  /** Joins a named room (kept with the session); `broadcast` reaches every socket in it. */
  join(room: string): void;
  leave(room: string): void;
  readonly rooms: readonly string[];
  /** Sends to every socket in `room`, in every shard (this session's too unless `exceptSelf`); resolves to how many it reached. */
  broadcast(room: string, data: string | ArrayBuffer | ArrayBufferView, options?: { exceptSelf?: boolean }): Promise<number>;
}

/** A WebSocket agent's handlers. Each may be async, and may call any function (`.remote()`, `.remoteGen()`). */
export interface AgentHandlers<S = Record<string, unknown>> {
  /** The session's first state (default `{}`). */
  initialState?: () => S;
  /** A socket opened; `resumed` when the session existed before (a reconnect). */
  onOpen?: (ctx: AgentContext<S>, info: { resumed: boolean }) => unknown;
  /** A frame arrived: text as a string, binary as bytes. */
  onMessage?: (ctx: AgentContext<S>, message: string | Uint8Array) => unknown;
  /** A socket closed, with the code and reason it closed with. */
  onClose?: (ctx: AgentContext<S>, info: { code: number; reason: string }) => unknown;
}

/** Limits of a WebSocket agent's connections. */
export interface AgentOptions {
  /** The largest frame a client may send, in bytes (default 1 MiB); a larger one closes the socket with 1009. */
  maxMessageBytes?: number;
  /** Frames a client may send per second, bursts of twice that allowed (default 20); a flood closes the socket with 1008. */
  maxMessagesPerSecond?: number;
  /** Seconds a session's state is kept after its last socket closes (default 7 days); a later connection with its id starts afresh. */
  sessionTtl?: number;
  /**
   * Durable Objects the sessions are spread over, by session id (default 1, at most 64): one object runs its
   * sessions' handlers one at a time, so an agent with many busy connections wants more. Rooms span them all.
   */
  shards?: number;
  /** `"token"`: a client needs an API token (or, from a browser, a connect token in `?token=`); default `"public"`. */
  auth?: WebAuth;
  /** Secrets the handlers read as `process.env.KEY` (docs/secrets.md). */
  secrets?: Secret[];
}

/** A WebSocket agent as the gateway sees it. */
export interface AgentDefinition {
  label: string;
  auth: WebAuth;
  handlers: AgentHandlers<any>;
  maxMessageBytes: number;
  maxMessagesPerSecond: number;
  sessionTtl: number;
  shards: number;
  secrets: readonly Secret[];
}

/** A whole web app mounted at `/<app>/<label>/...`. */
export interface WebMount {
  label: string;
  auth: WebAuth;
  factory: () => WebApp | Promise<WebApp>;
  /** The mount's own body limit (`Infinity`: none); undefined: the gateway's. */
  maxBodyBytes?: number;
  secrets: readonly Secret[];
}

/**
 * An app: a named set of functions and web endpoints. Default-export it from
 * the app file.
 * @example
 * import { App } from "tandem";
 * const app = new App("hello");
 * export const greet = app.function({}, (name: string) => `Hello, ${name}!`);
 * export default app;
 */
export class App {
  readonly [APP_BRAND] = true;
  readonly name: string;
  /** Dollars of plane container time after which no new container starts; undefined: no cap. */
  readonly spendCap: number | undefined;
  readonly #functions: FunctionHandle<any, any>[] = [];
  readonly #classes: ClsDefinition[] = [];
  readonly #endpoints: EndpointHandle[] = [];
  readonly #webMounts: WebMount[] = [];
  readonly #wasm: WasmDefinition[] = [];
  readonly #agents: AgentDefinition[] = [];

  constructor(name: string, options: { spendCap?: number } = {}) {
    if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
      throw new InvalidOptionsError(`app name ${valueText(name)} must be 1-64 letters, digits, '-' or '_', starting with a letter or digit`);
    }
    if (RESERVED_APP_NAMES.has(name)) throw new InvalidOptionsError(`app name "${name}" is reserved for the gateway's own routes`);
    for (const key of Object.keys(options ?? {})) if (key !== "spendCap") throw new InvalidOptionsError(`app "${name}": unknown option "${key}"`);
    if (options.spendCap !== undefined && !(typeof options.spendCap === "number" && options.spendCap > 0)) {
      throw new InvalidOptionsError(`app "${name}": option "spendCap" must be a number of dollars above 0`);
    }
    this.name = name;
    this.spendCap = options.spendCap;
  }

  /**
   * Defines a function. Options are checked now; see `FunctionOptions`. The
   * handler's parameter types (defaults included) and return type become the
   * handle's; with an `input` schema, the schema's input types the callers'
   * arguments and its output the handler's parameters.
   * @example
   * export const add = app.function({ input: z.tuple([z.number(), z.number()]) }, (a, b) => a + b); // add.remote(1, "2"): 400 invalid_argument
   */
  function<F extends Handler>(handler: F): FunctionHandle<Parameters<F>, Awaited<ReturnType<F>>>;
  function<S extends ArgumentsSchema, R>(
    options: FunctionOptions & { input: S },
    handler: (...args: ArgumentsOut<S>) => R,
  ): FunctionHandle<ArgumentsIn<S>, Awaited<R>>;
  function<F extends Handler>(options: Omit<FunctionOptions, "input">, handler: F): FunctionHandle<Parameters<F>, Awaited<ReturnType<F>>>;
  function<F extends Handler>(a: FunctionOptions | F, b?: F): FunctionHandle<Parameters<F>, Awaited<ReturnType<F>>> {
    type A = Parameters<F>;
    type R = Awaited<ReturnType<F>>;
    const [options, handler] = typeof a === "function" ? [{}, a] : [a, b];
    const label = (options as FunctionOptions | undefined)?.name ?? `#${this.#functions.length + 1}`;
    if (typeof handler !== "function") throw new InvalidOptionsError(`app "${this.name}": function ${label} needs a handler function`);
    const where = (name: string) => `app "${this.name}": function "${name}"`;
    let spec: FunctionSpec;
    let invalid: ((name: string) => InvalidOptionsError) | undefined;
    try {
      spec = parseFunctionOptions(options, where(label));
    } catch (err) {
      // Not named yet (it is named after its export when the app loads): the error waits for the name, and
      // `finalize` throws it; using the function before that throws it too.
      if (!(err instanceof InvalidOptionsError) || (options as FunctionOptions | undefined)?.name !== undefined) throw err;
      spec = parseFunctionOptions({}, where(label));
      invalid = (name) => new InvalidOptionsError(err.message.replace(where(label), where(name)), err.details);
    }
    const input = spec.input;
    const handle: FunctionHandle<A, R> = new FunctionHandle<A, R>({
      app: this.name,
      ...(spec.name ? { name: spec.name } : {}),
      spec,
      // With an `input` schema, every runtime (the edge, a plane container, `.local()`) calls the checked handler.
      handler: input ? checkedHandler<A>(handler, input, () => `${this.name}.${handle.boundName ?? label}`) : (handler as unknown as (...args: A) => unknown),
      generator: isGeneratorFunction(handler),
      ...(invalid ? { invalid } : {}),
    });
    this.#functions.push(handle);
    return handle;
  }

  /**
   * Defines a class whose methods are functions. One instance is built per
   * container (per isolate at the edge) and per set of parameters: its
   * `enter()` runs once there before the first input (load a model once), its
   * `exit()` when the container stops. Options are a function's options.
   * @example
   * export const Model = app.cls({ gpu: "A100" }, class {
   *   constructor(readonly params: { size?: string }) {}
   *   async enter() { this.weights = await load(this.params.size) }
   *   predict(text: string) { return run(this.weights, text) }
   * });
   * await Model({ size: "small" }).predict.remote("hi");
   */
  cls<C extends new (params: any) => object>(options: NoInfer<ClsOptions<InstanceType<C>>>, Class: C): ClsHandle<InstanceType<C>, ClsParamsOf<C>> {
    // An anonymous class (`app.cls(options, class { … })`, the usual form) is named by its export only later, as the app
    // is loaded: until then it is the app's class #N.
    const label = options?.name || Class?.name || `#${this.#classes.length + 1}`;
    if (typeof Class !== "function" || typeof Class.prototype !== "object")
      throw new InvalidOptionsError(
        `app "${this.name}": class ${label} needs a class (got ${typeof Class === "function" ? "an arrow function" : typeof Class})`,
      );
    const { input, ...functionOptions } = (options ?? {}) as ClsOptions;
    const where = (name: string) => `app "${this.name}": class "${name}"`;
    const checked = (): Pick<ClsDefinition, "spec" | "methods" | "input"> => {
      const spec = parseFunctionOptions(functionOptions, where(label));
      if (spec.schedule) throw new InvalidOptionsError(`${where(label)}: option "schedule" is for functions; schedule a function that calls the method`);
      const methods = classMethods(Class.prototype as object);
      if (methods.length === 0)
        throw new InvalidOptionsError(
          `${where(label)} has no methods to call (a method is declared in the class body or a class it extends; an arrow-function field is not one)`,
        );
      return { spec, methods, input: checkMethodInputs(where(label), input, methods) };
    };
    let parts: Pick<ClsDefinition, "spec" | "methods" | "input">;
    let invalid: ClsDefinition["invalid"];
    try {
      parts = checked();
    } catch (err) {
      // Anonymous (`class { … }`, the usual form): not named yet, it is named after its export as the app loads, so
      // the error waits for that name (`finalize` throws it, and so does using the class before then).
      if (!(err instanceof InvalidOptionsError) || options?.name || Class.name) throw err;
      parts = { spec: parseFunctionOptions({}, where(label)), methods: classMethods(Class.prototype as object), input: {} };
      invalid = (name) => new InvalidOptionsError(err.message.replace(where(label), where(name)), err.details);
    }
    const { spec, methods } = parts;
    const definition: ClsDefinition = {
      name: spec.name ?? undefined,
      ...parts,
      Class: Class as unknown as ClsDefinition["Class"],
      app: this.name,
      ...(invalid ? { invalid } : {}),
    };
    this.#classes.push(definition);
    const appName = this.name;
    let local: ClassInstances | undefined; // `.local()`: instances in this process, built on first use
    const handle = ((params: ClsParams = {}) => {
      if (definition.invalid) throw definition.invalid(definition.name ?? label);
      checkClsParams(appName, definition, params);
      return Object.fromEntries(
        methods.map((m) => [
          m,
          new FunctionHandle({
            app: appName,
            // Not named yet (imported from the app file by a script, which no runtime loaded): `.local()` runs all the
            // same, and a call by name says how to make one (before: making the handle threw, `.local()` with it).
            ...(definition.name === undefined ? { invalid: () => unnamedClass(appName) } : { name: `${definition.name}.${m}` }),
            spec,
            boundArgs: [params],
            handler: (...args: unknown[]) => (local ??= new ClassInstances(definition)).handler(m)(params, ...args),
          }),
        ]),
      );
    }) as ClsHandle<InstanceType<C>, ClsParamsOf<C>>;
    Object.defineProperty(handle, CLS_BRAND, { value: definition });
    this.#pendingClassNames.set(handle, definition);
    return handle;
  }

  /**
   * A function that is a WASI command module: its arguments arrive as a JSON
   * array on stdin, its result is the JSON it writes to stdout, stderr goes to
   * the logs, and a non-zero exit is an error carrying stderr's tail (see
   * docs/wasm.md). It runs at the edge, in a fresh instance per call, or on
   * the plane with `tier: "plane"`, through the same host. `args` are its
   * argv[1..] for every call; `files` bundles directories of the project with
   * the app and preopens them read-only at their guest paths.
   * @example
   * export const upper = app.wasm<[string], string[]>("upper", { source: "./upper.as.ts" });
   * export const thumb = app.wasm<[Uint8Array], Uint8Array>("thumb", { module: "./thumb.wasm" }, { contentType: "bytes" });
   * // A command-line tool as it is: its flags in argv, a directory of the project read-only at /data.
   * export const lint = app.wasm("lint", { module: "./lint.wasm", args: ["--config", "/data/rules.json"], files: { "/data": "./lint-data" } });
   */
  wasm<A extends unknown[] = unknown[], R = unknown>(name: string, from: WasmSource, options: WasmOptions = {}): FunctionHandle<A, R> {
    const where = `app "${this.name}": wasm function "${name}"`;
    if (typeof name !== "string" || !NAME_PATTERN.test(name)) throw new InvalidOptionsError(`${where}: the name must be 1-64 letters, digits, '-' or '_'`);
    const source = parseWasmSource(from, where);
    const { spec, contentType, limits } = parseWasmOptions({ ...options, name }, where);
    this.#wasm.push({ name, ...source, spec, contentType, limits });
    return new FunctionHandle<A, R>({ app: this.name, name, spec });
  }

  get wasmFunctions(): readonly WasmDefinition[] {
    return this.#wasm;
  }

  /**
   * A WebSocket agent at `/<app>/<label>`: each connection is a session held at
   * the edge (in a Durable Object, hibernating while idle), with durable state,
   * rooms, and handlers that may call any function. Clients connect with
   * `connect(app, label)`, or any WebSocket (`?session=<id>` to resume).
   * @example
   * app.websocket<{ turns: number }>("chat", {
   *   initialState: () => ({ turns: 0 }),
   *   async onMessage(ctx, text) {
   *     ctx.state.turns++;
   *     for await (const token of generate.remoteGen(String(text))) ctx.send(token);
   *   },
   * });
   */
  websocket<S = Record<string, unknown>>(label: string, handlers: AgentHandlers<S>, options: AgentOptions = {}): void {
    const where = `app "${this.name}": websocket "${label}"`;
    if (typeof label !== "string" || !NAME_PATTERN.test(label)) throw new InvalidOptionsError(`${where}: the label must be 1-64 letters, digits, '-' or '_'`);
    if (typeof handlers !== "object" || handlers === null) throw new InvalidOptionsError(`${where} needs handlers: { onOpen?, onMessage?, onClose? }`);
    for (const [key, value] of Object.entries(handlers)) {
      if (!AGENT_HANDLERS.includes(key)) {
        throw new InvalidOptionsError(`${where}: unknown handler "${key}"${didYouMean(key, AGENT_HANDLERS)} (handlers: ${AGENT_HANDLERS.join(", ")})`);
      }
      if (typeof value !== "function") throw new InvalidOptionsError(`${where}: "${key}" must be a function`);
    }
    for (const key of Object.keys(options ?? {})) {
      if (!["maxMessageBytes", "maxMessagesPerSecond", "sessionTtl", "shards", "auth", "secrets"].includes(key))
        throw new InvalidOptionsError(`${where}: unknown option "${key}"`);
    }
    const d = AGENT_DEFAULTS;
    const {
      maxMessageBytes = d.maxMessageBytes,
      maxMessagesPerSecond = d.maxMessagesPerSecond,
      sessionTtl = d.sessionTtlSeconds,
      shards = d.shards,
    } = options ?? {};
    if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 1 || maxMessageBytes > d.maxMessageBytesLimit)
      throw new InvalidOptionsError(`${where}: option "maxMessageBytes" must be a whole number from 1 to ${d.maxMessageBytesLimit} (1 MiB)`);
    if (!(typeof maxMessagesPerSecond === "number" && maxMessagesPerSecond > 0 && maxMessagesPerSecond <= d.maxMessagesPerSecondLimit))
      throw new InvalidOptionsError(`${where}: option "maxMessagesPerSecond" must be a number above 0, at most ${d.maxMessagesPerSecondLimit}`);
    if (!(typeof sessionTtl === "number" && sessionTtl >= 1 && sessionTtl <= d.sessionTtlSecondsLimit))
      throw new InvalidOptionsError(`${where}: option "sessionTtl" must be a number of seconds from 1 to ${d.sessionTtlSecondsLimit} (365 days)`);
    if (!Number.isInteger(shards) || shards < 1 || shards > d.shardsLimit)
      throw new InvalidOptionsError(`${where}: option "shards" must be a whole number from 1 to ${d.shardsLimit}`);
    const auth = checkAuth(options?.auth, where);
    const secrets = parseSecretsOption(options?.secrets, where);
    this.#agents.push({ label, auth, handlers: handlers as AgentHandlers<any>, maxMessageBytes, maxMessagesPerSecond, sessionTtl, shards, secrets });
  }

  get agents(): readonly AgentDefinition[] {
    return this.#agents;
  }

  /**
   * Mounts a whole web app (hono, or anything with `fetch`) at `/<app>/<label>/...`.
   * The factory runs once per isolate, at the first request.
   * @example
   * app.web("api", () => new Hono().get("/", (c) => c.text("hi")));
   * app.web("uploads", () => uploads, { maxBodyBytes: Infinity }); // reads request bodies as streams, of any size
   */
  web(label: string, factory: () => WebApp | Promise<WebApp>, options: WebOptions = {}): void {
    if (typeof label !== "string" || !NAME_PATTERN.test(label)) {
      throw new InvalidOptionsError(`app "${this.name}": web label ${valueText(label)} must be 1-64 letters, digits, '-' or '_'`);
    }
    const where = `app "${this.name}": web "${label}"`;
    if (typeof factory !== "function") throw new InvalidOptionsError(`${where} needs a factory function returning a hono app`);
    if (options === null || typeof options !== "object") throw new InvalidOptionsError(`${where}: options must be an object ({ auth, maxBodyBytes, secrets })`);
    for (const key of Object.keys(options)) {
      if (!["auth", "maxBodyBytes", "secrets"].includes(key))
        throw new InvalidOptionsError(`${where}: unknown option "${key}" (options: auth, maxBodyBytes, secrets)`);
    }
    checkMaxBodyBytes(where, options.maxBodyBytes);
    this.#webMounts.push({
      label,
      factory,
      auth: checkAuth(options.auth, where),
      secrets: parseSecretsOption(options.secrets, where),
      ...(options.maxBodyBytes === undefined ? {} : { maxBodyBytes: options.maxBodyBytes }),
    });
  }

  /**
   * One web handler at `/<app>/<label><path>`.
   * @example
   * export const hi = app.endpoint({ method: "GET", path: "/:name" }, (c) => ({ hi: c.req.param("name") }));
   */
  endpoint<P extends string = "/">(options: EndpointOptions<P>, handler: EndpointHandler<P>): EndpointHandle {
    const where = `app "${this.name}": endpoint${options?.label ? ` "${options.label}"` : ""}`;
    if (typeof handler !== "function") throw new InvalidOptionsError(`${where} needs a handler function`);
    const o = options ?? {};
    for (const key of Object.keys(o)) {
      if (!["method", "path", "label", "auth", "maxBodyBytes", "secrets"].includes(key)) throw new InvalidOptionsError(`${where}: unknown option "${key}"`);
    }
    checkAuth(o.auth, where);
    parseSecretsOption(o.secrets, where);
    checkMaxBodyBytes(where, o.maxBodyBytes);
    if (o.method !== undefined && !METHODS.includes(o.method)) throw new InvalidOptionsError(`${where}: option "method" must be one of ${METHODS.join(", ")}`);
    if (o.path !== undefined && (typeof o.path !== "string" || !o.path.startsWith("/")))
      throw new InvalidOptionsError(`${where}: option "path" must start with "/"`);
    if (o.label !== undefined && !NAME_PATTERN.test(o.label))
      throw new InvalidOptionsError(`${where}: option "label" must be 1-64 letters, digits, '-' or '_'`);
    const handle = new EndpointHandle(o, handler as EndpointHandler);
    this.#endpoints.push(handle);
    return handle;
  }

  get functions(): readonly FunctionHandle<any, any>[] {
    return this.#functions;
  }

  /** Every function a caller can name: functions, class methods and WebAssembly functions (after `finalize`). */
  get callables(): Callable[] {
    return [
      ...this.#functions.map((f) => ({
        name: f.name,
        kind: "function" as const,
        spec: f.spec!,
        generator: f.generator,
        input: f.spec!.input,
        parameters: f.spec!.input ? 0 : (f.handler?.length ?? 0),
      })),
      ...this.#classes.flatMap((c) =>
        c.methods.map((m) => ({
          name: `${c.name}.${m}`,
          kind: "method" as const,
          spec: c.spec,
          generator: isGeneratorFunction((c.Class.prototype as Record<string, unknown>)[m]),
          input: c.input[m],
          parameters: c.input[m] ? 0 : ((c.Class.prototype as Record<string, (...args: unknown[]) => unknown>)[m]?.length ?? 0),
        })),
      ),
      ...this.#wasm.map((w) => ({ name: w.name, kind: "wasm" as const, spec: w.spec, generator: false, input: w.spec.input, parameters: 0 })),
    ];
  }

  /**
   * Everything in the app that declares secrets: who (`holder`: a function's or class's name, or `web/<label>` for
   * a web mount, endpoint or agent), how messages name it, and its secrets in order.
   */
  secretHolders(): { holder: string; what: string; secrets: readonly Secret[] }[] {
    return [
      ...this.#functions.map((f) => ({ holder: f.name, what: `function "${f.name}"`, secrets: f.spec?.secrets ?? [] })),
      ...this.#wasm.map((w) => ({ holder: w.name, what: `wasm function "${w.name}"`, secrets: w.spec.secrets })),
      ...this.#classes.map((c) => ({ holder: c.name!, what: `class "${c.name}"`, secrets: c.spec.secrets })),
      ...this.#webMounts.map((m) => ({ holder: `web/${m.label}`, what: `web "${m.label}"`, secrets: m.secrets })),
      ...this.#endpoints.map((e) => ({ holder: `web/${e.label}`, what: `endpoint "${e.label}"`, secrets: e.secrets })),
      ...this.#agents.map((a) => ({ holder: `web/${a.label}`, what: `websocket "${a.label}"`, secrets: a.secrets })),
    ].filter((h) => h.secrets.length > 0);
  }

  /**
   * Everything in the app that declares secrets (`secretHolders`), and its images' build steps (`Image.secrets`),
   * named `function "f" (its image)`: what needs a named secret, and the keys it requires, before it can run.
   */
  secretDeclarers(): { holder: string; what: string; secrets: readonly Secret[] }[] {
    const images = [
      ...this.#functions.map((f) => ({ holder: f.name, what: `function "${f.name}"`, image: f.spec?.image })),
      ...this.#classes.map((c) => ({ holder: c.name!, what: `class "${c.name}"`, image: c.spec.image })),
    ].flatMap(({ holder, what, image }) => {
      const secrets = (image?.steps ?? []).flatMap((step) =>
        step.kind === "secrets" ? step.secrets.map((s) => Secret.fromName(s.name, { requiredKeys: s.requiredKeys })) : [],
      );
      return secrets.length ? [{ holder, what: `${what} (its image)`, secrets }] : [];
    });
    return [...this.secretHolders(), ...images];
  }

  get endpoints(): readonly EndpointHandle[] {
    return this.#endpoints;
  }

  get webMounts(): readonly WebMount[] {
    return this.#webMounts;
  }

  get classes(): readonly ClsDefinition[] {
    return this.#classes;
  }

  readonly #pendingClassNames = new Map<unknown, ClsDefinition>();

  /**
   * @internal Names functions and endpoints after their exports, then checks
   * that every one has a name and no two share one. Runtimes call this when
   * they load the app file.
   */
  finalize(moduleExports: Record<string, unknown>): void {
    for (const [exportName, value] of Object.entries(moduleExports)) {
      const cls = this.#pendingClassNames.get(value);
      if (cls) cls.name ??= exportName;
      if (value instanceof FunctionHandle || value instanceof EndpointHandle) {
        if (this.#functions.includes(value as FunctionHandle<any, any>) || this.#endpoints.includes(value as EndpointHandle)) value.bindName(exportName);
      }
    }
    for (const [i, fn] of this.#functions.entries()) {
      const error = fn.optionsError(`#${i + 1}`);
      if (error) throw error;
    }
    for (const [i, cls] of this.#classes.entries()) if (cls.invalid) throw cls.invalid(cls.name ?? `#${i + 1}`);
    const seen = new Set<string>();
    for (const fn of this.#functions) {
      const name = fn.boundName;
      if (name === undefined) throw new InvalidOptionsError(`app "${this.name}": a function has no name; export it, or give it a \`name\` option`);
      if (!NAME_PATTERN.test(name)) throw new InvalidOptionsError(`app "${this.name}": function name "${name}" must be 1-64 letters, digits, '-' or '_'`);
      if (seen.has(name)) throw new InvalidOptionsError(`app "${this.name}": two functions are named "${name}"; names must be unique`);
      seen.add(name);
    }
    for (const fn of this.#functions) {
      const refused = fn.spec?.schedule && fn.spec.input ? refusalOfNoArguments(fn.spec.input) : undefined;
      if (refused !== undefined) {
        throw new InvalidOptionsError(
          `app "${this.name}": function "${fn.boundName}" runs on a schedule, which calls it with no arguments, and its option "input" refuses that (${refused}): give its arguments defaults, or schedule a function that calls it with them`,
        );
      }
    }
    for (const w of this.#wasm) {
      if (seen.has(w.name)) throw new InvalidOptionsError(`app "${this.name}": two functions are named "${w.name}"; names must be unique`);
      seen.add(w.name);
    }
    for (const cls of this.#classes) {
      cls.name ??= cls.Class.name || undefined;
      if (cls.name === undefined || !NAME_PATTERN.test(cls.name))
        throw new InvalidOptionsError(`app "${this.name}": a class has no usable name; export it, or give it a \`name\` option`);
      for (const m of cls.methods) {
        const name = `${cls.name}.${m}`;
        if (seen.has(name)) throw new InvalidOptionsError(`app "${this.name}": two functions are named "${name}"; names must be unique`);
        seen.add(name);
      }
    }
    const labels = new Map<string, string>(); // label → what has it
    const all = [
      ...this.#webMounts.map((w) => ({ label: w.label, what: "a web app" })),
      ...this.#endpoints.map((e) => ({ label: e.boundLabel, what: "a web endpoint" })),
      ...this.#agents.map((a) => ({ label: a.label, what: "a WebSocket agent" })),
    ];
    for (const { label, what } of all) {
      if (label === undefined) throw new InvalidOptionsError(`app "${this.name}": an endpoint has no label; export it, or give it a \`label\` option`);
      if (!NAME_PATTERN.test(label)) throw new InvalidOptionsError(`app "${this.name}": endpoint label "${label}" must be 1-64 letters, digits, '-' or '_'`);
      const first = labels.get(label);
      if (first !== undefined) {
        const both = first === what ? `two ${what.replace(/^an? /, "")}s` : `${first} and ${what}`;
        throw new InvalidOptionsError(`app "${this.name}": ${both} use the label "${label}"; labels must be unique within an app`);
      }
      labels.set(label, what);
    }
  }

  /** What the gateway lists for this app. */
  manifest(): AppManifest {
    return {
      name: this.name,
      functions: this.callables.map(({ name, kind, spec, generator }) => ({
        name,
        kind,
        tier: spec.tier,
        timeoutSeconds: spec.timeoutSeconds,
        retries: spec.retries,
        generator,
        ...(spec.regions.length ? { regions: spec.regions } : {}),
        ...(spec.gpu?.length ? { gpu: spec.gpu.map(formatGpu) } : {}),
      })),
      endpoints: [
        ...this.#webMounts.map((w) => ({ label: w.label, kind: "web" as const, path: "/*", auth: w.auth })),
        ...this.#agents.map((a) => ({ label: a.label, kind: "websocket" as const, path: "/", auth: a.auth })),
        ...this.#endpoints.map((e) => ({ label: e.label, kind: "endpoint" as const, method: e.method, path: e.path, auth: e.auth })),
      ],
    };
  }
}

/**
 * The `App` an app file default-exports, with its functions and endpoints
 * named after their exports and checked. Runtimes call this when they load an
 * app file; `file` is only for messages.
 */
export function loadAppModule(file: string, moduleExports: Record<string, unknown>): App {
  const app = moduleExports.default;
  if (!isApp(app)) {
    throw new InvalidOptionsError(`${file} must \`export default\` an App (found ${app === undefined ? "no default export" : typeof app})`);
  }
  app.finalize(moduleExports);
  return app;
}

/**
 * The runtime side of a class: one instance per set of parameters, built on
 * first use, with `enter()` awaited once before its first method runs (a
 * failed `enter` fails every input that waits on it). Runtimes call the
 * handlers with the parameters first, then the method's arguments.
 */
export class ClassInstances {
  readonly #definition: ClsDefinition;
  readonly #instances = new Map<string, Promise<Record<string, unknown>>>();
  /** An instance has an `exit` of its own (a field, not a method of the class). */
  #withExit = false;

  constructor(definition: ClsDefinition) {
    this.#definition = definition;
  }

  /** `method`'s handler: `(params, ...args) => result`, the arguments checked first when the method has an `input` schema. */
  handler(method: string): (...args: unknown[]) => Promise<unknown> {
    const schema = this.#definition.input[method];
    const where = () => `${this.#definition.app}.${this.#definition.name}.${method}`;
    return async (params: unknown, ...given: unknown[]) => {
      const args = schema ? await parseArguments(schema, given, where()) : given;
      const instance = await this.#instance((params ?? {}) as ClsParams);
      return (instance[method] as (...a: unknown[]) => unknown).apply(instance, args);
    };
  }

  /** Builds the instance for `params` now (its `enter()` runs), as a container does before it takes inputs. */
  async prepare(params: ClsParams): Promise<void> {
    await this.#instance(params);
  }

  /** Whether an instance of the class has an `exit()` hook to run when its container stops. */
  hasExitHook(): boolean {
    return typeof (this.#definition.Class.prototype as Record<string, unknown>).exit === "function" || this.#withExit;
  }

  /** Runs every instance's `exit()` (when its container stops). */
  async exitAll(): Promise<void> {
    for (const pending of this.#instances.values()) {
      const instance = await pending.catch(() => undefined);
      const exit = instance?.exit;
      if (typeof exit === "function") await Promise.resolve(exit.call(instance)).catch((err) => console.error("exit() failed:", err));
    }
    this.#instances.clear();
  }

  #instance(params: ClsParams): Promise<Record<string, unknown>> {
    const key = JSON.stringify(Object.entries(params).sort(([a], [b]) => a.localeCompare(b)));
    let instance = this.#instances.get(key);
    if (!instance) {
      instance = (async () => {
        const created = new this.#definition.Class(params);
        if (typeof created.exit === "function") this.#withExit = true;
        if (typeof created.enter === "function") await created.enter();
        return created;
      })();
      this.#instances.set(key, instance);
    }
    return instance;
  }
}

/** What a call by name of a class not named yet is told. */
function unnamedClass(app: string): InvalidOptionsError {
  return new InvalidOptionsError(
    `app "${app}": a class has no name yet: classes are named after their exports (or a \`name\` option) when a runtime loads the app file. From another program, call a method by name: lookup("${app}", "<Class>.<method>").remote(params, ...args)`,
  );
}

/**
 * The methods callers can name on a class: those of its prototype and of the classes it extends (a subclass's own
 * first), but its constructor and lifecycle hooks. Read from property descriptors, so no getter runs.
 * @example classMethods(class extends Base { extra() {} }.prototype); // ["extra", "predict"]
 */
function classMethods(prototype: object): string[] {
  const methods = new Set<string>();
  for (let proto: object | null = prototype; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto) as object | null)
    for (const m of Object.getOwnPropertyNames(proto))
      if (m !== "constructor" && !(LIFECYCLE_HOOKS as readonly string[]).includes(m) && typeof Object.getOwnPropertyDescriptor(proto, m)?.value === "function")
        methods.add(m);
  return [...methods];
}

function checkClsParams(app: string, definition: ClsDefinition, params: unknown): asserts params is ClsParams {
  const wrong = clsParamsProblem(params);
  if (wrong)
    throw new InvalidOptionsError(
      `app "${app}": class "${definition.name || definition.Class.name}": ${wrong.problem}`,
      wrong.parameter ? { parameter: wrong.parameter } : undefined,
    );
}

/** A class's `input` option: a zod schema of the arguments per method, each named method one of the class's. */
function checkMethodInputs(where: string, input: unknown, methods: readonly string[]): Record<string, ArgumentsSchema> {
  if (input === undefined) return {};
  const example = `{ ${methods[0]}: z.tuple([...]) }`;
  if (isArgumentsSchema(input))
    throw new InvalidOptionsError(`${where}: option "input" takes a schema per method, such as ${example}; a class's methods take different arguments`);
  if (typeof input !== "object" || input === null || Array.isArray(input))
    throw new InvalidOptionsError(`${where}: option "input" must map method names to zod schemas of their arguments, such as ${example}`);
  for (const [method, schema] of Object.entries(input)) {
    if (!methods.includes(method))
      throw new InvalidOptionsError(`${where}: option "input" names "${method}", which is not a method of the class (methods: ${methods.join(", ")})`);
    if (!isArgumentsSchema(schema))
      throw new InvalidOptionsError(`${where}: option "input.${method}" must be a zod schema of the argument list, such as z.tuple([z.string(), z.number()])`);
  }
  return input as Record<string, ArgumentsSchema>;
}

/** Checks an `auth` option; returns it, `"public"` when left out. */
function checkAuth(auth: unknown, where: string): WebAuth {
  if (auth === undefined) return "public";
  if (typeof auth !== "string" || !WEB_AUTH.includes(auth))
    throw new InvalidOptionsError(`${where}: option "auth" must be "public" or "token" (got ${valueText(auth)})`);
  return auth as WebAuth;
}

/** True for an `App`, even one made by another copy of the SDK. */
export function isApp(value: unknown): value is App {
  return typeof value === "object" && value !== null && APP_BRAND in value;
}

/**
 * A handle on a deployed function, by name, from any process, typed by the handle its app file exports: a client
 * imports that only as a type (`import type`), so it loads none of the app's code. (The exported handle itself is
 * named only where its app is served: called from another program, it says to look the function up.)
 * @example
 * import type { greet as Greet } from "./app.js";
 * const greet = lookup<typeof Greet>("hello", "greet");
 * const text: string = await greet.remote("Ada"); // greet.remote(1): a type error
 */
export function lookup<H extends FunctionHandle<any[], any>>(appName: string, functionName: string, options?: ClientOptions): H;
/**
 * A handle on a deployed function, by name, from any process, typed by its arguments and result as given (any when
 * not: `lookup<typeof handle>` takes them from the app file's handle).
 * @example
 * const greet = lookup<[string], string>("hello", "greet");
 * console.log(await greet.remote("Ada"));
 */
export function lookup<A extends unknown[] = any[], R = any>(appName: string, functionName: string, options?: ClientOptions): FunctionHandle<A, R>;
export function lookup(appName: string, functionName: string, options: ClientOptions = {}): FunctionHandle<unknown[], unknown> {
  if (!NAME_PATTERN.test(appName)) throw new InvalidOptionsError(`lookup: app name ${valueText(appName)} is not a valid name`);
  if (!FUNCTION_NAME_PATTERN.test(functionName)) throw new InvalidOptionsError(`lookup: function name ${valueText(functionName)} is not a valid name`);
  return new FunctionHandle({ app: appName, name: functionName, client: options });
}

async function* mapInputs<T, U>(inputs: Inputs<T>, f: (x: T, index: number) => U): AsyncIterable<U> {
  let index = 0;
  for await (const x of inputs as AsyncIterable<T>) yield f(x, index++);
}

/**
 * One of `starmap`'s inputs as the argument list it is: an array, or another iterable. Anything else (`[1, 2]` given
 * where `[[1], [2]]` was meant) is refused as `map(null)` is, naming the input, not spread into a bare TypeError; so is
 * a string, which would be spread into its characters.
 * @example argumentList(1, 0, "add.starmap"); // throws: add.starmap: inputs[0] must be an argument list, an array such as [1, 2] (got 1)
 */
function argumentList(input: unknown, index: number, where: string): unknown[] {
  if (Array.isArray(input)) return input;
  if (input !== null && typeof input === "object" && typeof (input as { [Symbol.iterator]?: unknown })[Symbol.iterator] === "function")
    return [...(input as Iterable<unknown>)];
  const got = typeof input === "string" ? JSON.stringify(input) : input === null || typeof input !== "object" ? String(input) : "an object";
  throw new InvalidOptionsError(
    `${where}: inputs[${index}] must be an argument list, an array such as [1, 2] (got ${got}); for one argument per input, use map`,
  );
}

async function* inOrder(outcomes: AsyncIterable<MapOutcome>): AsyncIterable<MapOutcome> {
  const pending = new Map<number, MapOutcome>();
  let next = 0;
  for await (const outcome of outcomes) {
    pending.set(outcome.index, outcome);
    while (pending.has(next)) {
      yield pending.get(next)!;
      pending.delete(next++);
    }
  }
}

async function* unwrapOutcomes<R>(outcomes: AsyncIterable<MapOutcome>, returnExceptions: boolean): AsyncIterable<R | TandemError> {
  for await (const outcome of outcomes) {
    if (outcome.ok) yield outcome.value as R;
    else if (returnExceptions) yield outcome.error as TandemError;
    else throw outcome.error;
  }
}

/** `maxBodyBytes` of an endpoint or a web mount: a whole number of bytes, 0 or more, or `Infinity`. */
function checkMaxBodyBytes(where: string, value: unknown): void {
  if (value === undefined || value === Infinity || (Number.isSafeInteger(value) && (value as number) >= 0)) return;
  throw new InvalidOptionsError(
    `${where}: option "maxBodyBytes" must be a whole number of bytes, 0 or more, or Infinity for no limit (got ${valueText(value)})`,
  );
}
