/**
 * How a function handle reaches its function. In a client process that is the
 * gateway over HTTP (`HttpInvoker`); inside the gateway the Worker installs its
 * own executor with `installInvoker`, so `.remote()` from a web endpoint runs
 * in the same isolate without a network hop.
 */
import { HttpInvoker, resolveGatewayUrl } from "./client.js";

/** One result of a map, in completion order. */
export type MapOutcome = { index: number; ok: true; value: unknown } | { index: number; ok: false; error: Error };

export interface Invoker {
  call(app: string, fn: string, args: unknown[]): Promise<unknown>;
  spawn(app: string, fn: string, args: unknown[]): Promise<string>;
  map(app: string, fn: string, inputs: AsyncIterable<unknown[]>): AsyncIterable<MapOutcome>;
  /** The values a generator function yields, as they come; stopping early stops the generator. `onCallId`: told the call's id once it has one. */
  stream(app: string, fn: string, args: unknown[], onCallId?: (id: string) => void): AsyncIterable<unknown>;
  get(callId: string, timeoutMs: number | undefined): Promise<unknown>;
  cancel(callId: string, options?: { terminateContainer?: boolean }): Promise<void>;
}

let installed: Invoker | undefined;
const byGateway = new Map<string, Invoker>();

/** Used by the gateway runtime: every handle in this isolate calls through `invoker`. */
export function installInvoker(invoker: Invoker | undefined): void {
  installed = invoker;
}

/** Which gateway a handle talks to, and how (`ClientOptions` in sdk/app.ts). */
export interface InvokerTarget {
  gateway?: string | undefined;
  token?: string | undefined;
  /** The regions its plane calls would rather run in, nearest first (the `Tandem-Region` header). */
  region?: string | readonly string[] | undefined;
  /** The environment it addresses (the `Tandem-Env` header); default `TANDEM_ENV`, then the gateway's own. */
  env?: string | undefined;
}

/**
 * The invoker for a handle: the installed one, else an HTTP client of the
 * resolved gateway, sending `token` (else the one found for that gateway) and
 * the preferred regions.
 */
export function invokerFor(target: InvokerTarget = {}): Invoker {
  const { gateway, token, env } = target;
  const region = target.region === undefined ? undefined : typeof target.region === "string" ? [target.region] : [...target.region];
  if (installed && gateway === undefined && token === undefined && region === undefined && env === undefined) return installed;
  const url = resolveGatewayUrl(gateway);
  const key = `${url} ${token ?? ""} ${region?.join(",") ?? ""} ${env ?? ""}`;
  let invoker = byGateway.get(key);
  if (!invoker) {
    invoker = new HttpInvoker(url, {
      ...(token === undefined ? {} : { token }),
      ...(region === undefined ? {} : { region }),
      ...(env === undefined ? {} : { env }),
    });
    byGateway.set(key, invoker);
  }
  return invoker;
}
