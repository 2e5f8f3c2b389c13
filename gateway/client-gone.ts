/**
 * A web request whose client went before its answer ended: the `.remote()` calls its handler waits on are cancelled
 * (executor.ts `callNow`), as nobody will read what they answer. Deployed, workerd aborts the request's `signal`
 * (`enable_request_signal`). Under `tandem serve` it does not (it does not watch a connection while its handler
 * runs): the front door, which sees its client go, tells the gateway (`LOCAL_CLIENT_GONE_ROUTE`), naming the request
 * by the watch id it sent it with (`HEADERS.clientWatch`). workerd refuses one request's I/O from another, so the
 * request that waits looks for its id itself, every `DELIVERY_DEFAULTS.clientGoneCheckMs`, while a call waits.
 */
import { Hono } from "hono";
import { CancelledError, InvalidRequestError } from "../sdk/errors.js";
import { DELIVERY_DEFAULTS } from "../sdk/defaults.js";
import { CLIENT_CLOSED_REQUEST, CLIENT_WATCH_PATTERN, HEADERS, LOCAL_CLIENT_GONE_ROUTE } from "../sdk/protocol.js";
import type { RouteEnv } from "./env.js";
import type { RunContext } from "./run-context.js";
import { requireLocalKey } from "./local-blobs.js";

const { clientGoneCheckMs, clientGoneKeepMs, clientGoneKeepMax } = DELIVERY_DEFAULTS;

/** The watch ids the front door named, with when. */
const gone = new Map<string, number>();

/** What a web request's work asks whether its client went (`RunContext.clientGone`). */
export interface ClientWatch {
  /** Calls `listener` once, when the client goes; answers the function that stops watching. */
  onGone(listener: () => void): () => void;
}

/** Why a call a web request's handler (or an agent's) waited on was cancelled, in its record and its error. */
export const CLIENT_WENT = "the client waiting on it went (its web request or WebSocket ended first)";

/**
 * What a handler's `.remote()` throws when the call was cancelled because the handler's client went (`callNow`): a
 * `CancelledError` (its name and code) that says why, and that answers as hono's `HTTPException` does
 * (`getResponse`: a 499 nobody reads). So an `app.web` app's default `onError`, an endpoint and an agent end the request
 * quietly, where each logged it as the handler's failure, with a stack of the gateway's own (before).
 */
export class ClientWentError extends CancelledError {
  constructor(callId: string) {
    super(`call ${callId} was cancelled: ${CLIENT_WENT}`, { callId });
    this.name = "CancelledError";
  }

  getResponse(): Response {
    return new Response(null, { status: CLIENT_CLOSED_REQUEST });
  }
}

/**
 * Cancels a call (`cancel`, with `CLIENT_WENT` as its reason) when the client `rc` works for goes: a `.remote()`
 * (`callNow`) or a `.remoteGen()` (`streamCall`) a web request's or an agent's handler waits on. `went` says whether it
 * did, so the call's error becomes a `ClientWentError`; `stop` once the call has ended.
 * @example const watch = cancelWhenClientGoes(rc, record.cancel); … watch.stop(); if (watch.went()) error = new ClientWentError(id);
 */
export function cancelWhenClientGoes(rc: RunContext, cancel: (why: string) => Promise<void>): { went(): boolean; stop(): void } {
  let went = false;
  const stop = rc.clientGone?.onGone(() => {
    went = true;
    rc.waitUntil(cancel(CLIENT_WENT));
  });
  return { went: () => went, stop: () => stop?.() };
}

/**
 * The listeners of the calls a client's work waits on, all told at once, once, when it goes (`tell`): a web request's
 * (`clientWatch`) or a socket's (an agent's, gateway/agents.ts). `watch`, when given, starts looking as the first
 * listener comes, and answers how to stop looking (none: there is nothing to look at).
 */
export class ClientGone implements ClientWatch {
  readonly #listeners = new Set<() => void>();
  readonly #watch: ((tell: () => void) => (() => void) | undefined) | undefined;
  #stopWatching: (() => void) | undefined;
  #gone = false;

  constructor(watch?: (tell: () => void) => (() => void) | undefined) {
    this.#watch = watch;
  }

  /** The client went: every listener is told now, and any that comes later at once. */
  tell(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#stopWatching?.();
    for (const listener of [...this.#listeners]) listener();
    this.#listeners.clear();
  }

  onGone(listener: () => void): () => void {
    if (this.#gone) {
      listener();
      return () => {};
    }
    this.#listeners.add(listener);
    if (this.#listeners.size === 1) this.#stopWatching = this.#watch?.(() => this.tell());
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size > 0) return;
      this.#stopWatching?.();
      this.#stopWatching = undefined;
    };
  }
}

/**
 * The watch of a web request, as it came to the gateway (before a body limit made another of it). Every call its
 * handler waits on is told at once, in one go, so that each stops before the handler, failing on the first one's
 * cancel, ends the request (an edge call then keeps its grace: gateway/executor.ts). The request is read as a handler
 * first waits on a call: most web requests never do, and pay for neither (workerd makes a request's signal on its
 * first read: bench/README.md).
 * @example const rc: RunContext = { …, clientGone: clientWatch(c.req.raw) };
 */
export function clientWatch(request: Request): ClientWatch {
  return new ClientGone((tell) => {
    const signal = request.signal;
    const id = request.headers.get(HEADERS.clientWatch);
    const watched = id !== null && CLIENT_WATCH_PATTERN.test(id) ? id : undefined;
    if (signal.aborted || (watched !== undefined && gone.has(watched))) {
      tell();
      return undefined;
    }
    signal.addEventListener("abort", tell, { once: true });
    const check = watched === undefined ? undefined : setInterval(() => gone.has(watched) && tell(), clientGoneCheckMs);
    return () => {
      signal.removeEventListener("abort", tell);
      clearInterval(check);
    };
  });
}

/**
 * `res` with its body cancelled when its client goes, as workerd cancels a body deployed: hono's `stream()` and
 * `streamSSE()` run their `onAbort` listeners, and a handler's writes after it end. Under `tandem serve` workerd does not
 * see its client go (the front door tells the gateway instead), so a request the front door watches (`request`'s
 * `HEADERS.clientWatch`) gets a body that watches `watch` until it ends; any other answer is returned as it is. A
 * WebSocket's upgrade (101) has no body to watch.
 * @example return cancelledWhenClientGoes(request, rc.clientGone, await webApp.fetch(request, env, ctx));
 */
export function cancelledWhenClientGoes(request: Request, watch: ClientWatch | undefined, res: Response): Response {
  if (res.body === null || res.status === 101 || watch === undefined || !request.headers.has(HEADERS.clientWatch)) return res;
  const reader = res.body.getReader();
  let unwatch: (() => void) | undefined;
  const body = new ReadableStream<Uint8Array>({
    start() {
      unwatch = watch.onGone(() => void reader.cancel(new ClientGoneCancel()).catch(() => {}));
    },
    async pull(controller) {
      const { done, value } = await reader.read().catch((err: unknown) => {
        unwatch?.();
        throw err;
      });
      if (!done) return controller.enqueue(value);
      unwatch?.();
      controller.close();
    },
    cancel(reason) {
      unwatch?.();
      return reader.cancel(reason);
    },
  });
  return new Response(body, res);
}

/** Why a body `cancelledWhenClientGoes` cancelled was: what a stream's reader that sees it is told. */
class ClientGoneCancel extends Error {
  constructor() {
    super(CLIENT_WENT);
    this.name = "AbortError";
  }
}

/** @example router.route("/", clientGoneRoutes()); */
export function clientGoneRoutes(): Hono<RouteEnv> {
  const routes = new Hono<RouteEnv>();
  routes.post(`${LOCAL_CLIENT_GONE_ROUTE}/:id`, (c) => {
    requireLocalKey(c, LOCAL_CLIENT_GONE_ROUTE);
    const id = c.req.param("id");
    if (!CLIENT_WATCH_PATTERN.test(id)) throw new InvalidRequestError(`${JSON.stringify(id)} is not a watch id`);
    const now = Date.now();
    for (const [old, at] of gone) if (now - at > clientGoneKeepMs || gone.size >= clientGoneKeepMax) gone.delete(old);
    gone.set(id, now);
    return c.body(null, 204);
  });
  return routes;
}
