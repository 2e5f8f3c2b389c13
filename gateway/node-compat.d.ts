// The Node modules the gateway uses, through workerd's `nodejs_compat`.
// Declared here so the gateway type-checks without Node's types.
declare module "node:async_hooks" {
  export class AsyncLocalStorage<T> {
    run<R>(store: T, fn: () => R): R;
    getStore(): T | undefined;
  }
}

// A console line's arguments as Node's console writes them (gateway/run-context.ts, gateway/console-table.ts).
declare module "node:util" {
  export function format(...args: unknown[]): string;
  export interface InspectOptions {
    depth?: number | null;
    colors?: boolean;
    customInspect?: boolean;
    maxArrayLength?: number | null;
    breakLength?: number;
    [option: string]: unknown;
  }
  export function inspect(value: unknown, options?: InspectOptions): string;
}

// The bundle's source map, imported as a text module (sdk/cli/bundle.ts).
declare module "tandem:source-map" {
  const text: string;
  export default text;
}
