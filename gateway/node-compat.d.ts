// The one Node module the gateway uses, through workerd's `nodejs_compat`.
// Declared here so the gateway type-checks without Node's types.
declare module "node:async_hooks" {
  export class AsyncLocalStorage<T> {
    run<R>(store: T, fn: () => R): R;
    getStore(): T | undefined;
  }
}

// The bundle's source map, imported as a text module (sdk/cli/bundle.ts).
declare module "tandem:source-map" {
  const text: string;
  export default text;
}
