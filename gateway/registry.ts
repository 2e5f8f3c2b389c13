/**
 * The apps this gateway serves, by name, loaded from the app files bundled
 * into the Worker, with each app's plane bundle and each function's spec as a
 * plane reads it.
 */
import { ClassInstances, type App, type FunctionHandle } from "../sdk/app.js";
import type { ArgumentsSchema } from "../sdk/arguments.js";
import { NotFoundError } from "../sdk/errors.js";
import { planeSpecOf, type FunctionSpec } from "../sdk/options.js";
import type { AppManifest, PlaneBundleRef, PlaneFunctionSpec } from "../sdk/protocol.js";
import { wasmFunction } from "../wasm/function.js";
import type { RunContext } from "./run-context.js";
import { secretEnv, type CallEnv } from "./secret-env.js";
import { echoedText } from "../sdk/value-text.js";

export interface RegisteredFunction {
  app: string;
  /** The app's spend cap in dollars, if it has one. */
  spendCap: number | undefined;
  name: string;
  spec: FunctionSpec;
  /** Its spec as a plane reads it (sent with every input and warm pool); made once, when the registry is built. */
  planeSpec: PlaneFunctionSpec;
  handler: (...args: unknown[]) => unknown;
  /** A class method: its first argument is the class's parameters (its plane pool is per parameters). */
  clsMethod: boolean;
  /** Declared as a generator function: it is streamed, not called. */
  generator: boolean;
  /** A WebAssembly function (`app.wasm`): called, never streamed. */
  wasm?: true;
  /** Who declares its secrets (`App.secretHolders`): its name, or its class's. */
  secretHolder: string;
  /** Its `input` schema (a class method's own): a call's arguments are checked against it before it runs or is forwarded. */
  input: ArgumentsSchema | undefined;
  /**
   * A WebAssembly function without an `input` schema: how its module takes its arguments, checked before a call is
   * recorded or forwarded (`checkWasmArguments`); with a schema, its handler checks the schema's output.
   */
  wasmInput?: "json" | "bytes";
}

export class AppRegistry {
  readonly #apps = new Map<string, App>();
  readonly #functions = new Map<string, Map<string, RegisteredFunction>>();
  readonly #planeBundles = new Map<string, PlaneBundleRef>();

  /**
   * `wasm`: the compiled module of each WebAssembly function, by `app/name`;
   * `planeBundles`: the bundle planes run for each app, by app name;
   * `wasmFiles`: the bundled directories of each WebAssembly function that has `files`, by `app/name`.
   *
   * @example new AppRegistry([app], {}, { shop: { hash, images: {} } })
   */
  constructor(
    apps: readonly App[],
    wasm: Record<string, WebAssembly.Module> = {},
    planeBundles: Record<string, PlaneBundleRef> = {},
    wasmFiles: Record<string, ArrayBuffer> = {},
  ) {
    for (const [app, ref] of Object.entries(planeBundles)) this.#planeBundles.set(app, ref);
    for (const app of apps) {
      if (this.#apps.has(app.name)) throw new Error(`two app files define the app "${app.name}"`);
      this.#apps.set(app.name, app);
      const fns = new Map<string, RegisteredFunction>();
      const add = (fn: Omit<RegisteredFunction, "app" | "spendCap" | "planeSpec">) => {
        const registered = { app: app.name, spendCap: app.spendCap, ...fn };
        fns.set(fn.name, { ...registered, planeSpec: this.#planeSpecOf(registered) });
      };
      const generators = new Set(app.callables.filter((c) => c.generator).map((c) => c.name));
      for (const fn of app.functions as readonly FunctionHandle<unknown[], unknown>[]) {
        const { name, spec } = fn;
        add({ name, spec: spec!, handler: fn.handler!, clsMethod: false, generator: generators.has(name), input: spec!.input, secretHolder: name });
      }
      for (const w of app.wasmFunctions) {
        const module = wasm[`${app.name}/${w.name}`];
        // A plane-tier module ships in the plane bundle; the edge forwards its calls.
        const handler = w.spec.tier === "plane" ? planeOnly : module ? wasmFunction(app.name, w, module, wasmFiles[`${app.name}/${w.name}`]) : undefined;
        if (!handler) throw new Error(`the WebAssembly module of ${app.name}.${w.name} was not bundled; serve or deploy the app with the tandem CLI`);
        add({
          name: w.name,
          spec: w.spec,
          handler,
          clsMethod: false,
          generator: false,
          wasm: true,
          input: w.spec.input,
          secretHolder: w.name,
          ...(w.spec.input ? {} : { wasmInput: w.contentType }),
        });
      }
      for (const cls of app.classes) {
        const instances = new ClassInstances(cls); // at the edge: one instance per isolate and parameters
        for (const m of cls.methods) {
          const name = `${cls.name}.${m}`;
          const input = cls.input[m];
          add({ name, spec: cls.spec, handler: instances.handler(m), clsMethod: true, generator: generators.has(name), input, secretHolder: cls.name! });
        }
      }
      this.#functions.set(app.name, fns);
    }
  }

  /** The bundle planes run for `app`; undefined when it was not bundled for the plane. */
  planeBundle(app: string): PlaneBundleRef | undefined {
    return this.#planeBundles.get(app);
  }

  /**
   * Plane bundles known once the Worker runs (`tandem run` of an edge function bundles them when a call first needs a
   * plane: `localPlaneBundle` in gateway/plane-choice.ts); each of their functions' plane spec is made again, with its image.
   */
  addPlaneBundles(bundles: Record<string, PlaneBundleRef>): void {
    for (const [app, ref] of Object.entries(bundles)) {
      if (!this.#apps.has(app)) continue;
      this.#planeBundles.set(app, ref);
      for (const fn of this.#functions.get(app)?.values() ?? []) fn.planeSpec = this.#planeSpecOf(fn);
    }
  }

  get apps(): readonly App[] {
    return [...this.#apps.values()];
  }

  app(name: string): App {
    const app = this.#apps.get(name);
    if (!app) throw new NotFoundError(`no app named ${echoedText(name)} is deployed here (apps: ${this.#names()})`, { app: name });
    return app;
  }

  function(appName: string, name: string): RegisteredFunction {
    const fns = this.#functions.get(appName);
    if (!fns) throw new NotFoundError(`no app named ${echoedText(appName)} is deployed here (apps: ${this.#names()})`, { app: appName });
    const fn = fns.get(name);
    if (!fn) {
      // A class's name alone (`Model`): its methods are its functions (`Model.predict`), called with its parameters first.
      const methods = [...fns.keys()].filter((f) => f.startsWith(`${name}.`));
      const hint = methods.length ? `; "${name}" is a class: call one of its methods, ${methods.map((m) => `"${m}"`).join(", ")}` : "";
      // The name echoed as an unknown app's is (`echoedText`: cut past 80 characters, marks that reorder text escaped).
      throw new NotFoundError(`app "${appName}" has no function ${echoedText(name)} (functions: ${[...fns.keys()].join(", ") || "none"})${hint}`, {
        app: appName,
        function: name,
      });
    }
    return fn;
  }

  /**
   * `appName`'s function `name`, or undefined when there is none (a call recorded before a deploy that removed it).
   * @example registry().find("shop", "resize")?.spec.tier
   */
  find(appName: string, name: string): RegisteredFunction | undefined {
    return this.#functions.get(appName)?.get(name);
  }

  /** The environment `fn` runs with: its `env` option and its secrets (gateway/secret-env.ts). */
  processEnvOf(rc: Pick<RunContext, "env" | "config">, fn: RegisteredFunction): Promise<CallEnv> {
    return secretEnv(rc, { app: fn.app, holder: fn.secretHolder, where: `${fn.app}.${fn.name}`, secrets: fn.spec.secrets }, fn.spec.env);
  }

  /** Every function of every app. */
  all(): RegisteredFunction[] {
    return [...this.#functions.values()].flatMap((fns) => [...fns.values()]);
  }

  manifests(): AppManifest[] {
    return this.apps.map((a) => a.manifest());
  }

  #names(): string {
    return [...this.#apps.keys()].join(", ") || "none";
  }

  /** A function's spec as a plane reads it: its resources, env, spend cap, and the image built for it (or its class). */
  #planeSpecOf(fn: Omit<RegisteredFunction, "planeSpec">): PlaneFunctionSpec {
    const images = this.#planeBundles.get(fn.app)?.images;
    const image = images?.[fn.name] ?? (fn.clsMethod ? images?.[fn.name.split(".")[0]!] : undefined) ?? null;
    return planeSpecOf(fn.spec, { image, spendCapUsd: fn.spendCap ?? null });
  }
}

const planeOnly = () => {
  throw new Error("a plane-tier WebAssembly function runs on the plane, not at the edge");
};

let current: AppRegistry | undefined;

/** Set once when the Worker module loads. */
export function setRegistry(registry: AppRegistry): void {
  current = registry;
}

export function registry(): AppRegistry {
  if (!current) throw new Error("the gateway's app registry is not loaded");
  return current;
}
