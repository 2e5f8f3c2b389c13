/**
 * A web request whose client went before its answer ended: the `.remote()` calls its handler waits on are cancelled
 * (executor.ts `callNow`), as nobody will read what they answer. Deployed, workerd aborts the request's `signal`
 * (`enable_request_signal`). Under `tandem serve` it does not (it does not watch a connection while its handler
 * runs): the front door, which sees its client go, tells the gateway (`LOCAL_CLIENT_GONE_ROUTE`), naming the request
 * by the watch id it sent it with (`HEADERS.clientWatch`). workerd refuses one request's I/O from another, so the
 * request that waits looks for its id itself, every `DELIVERY_DEFAULTS.clientGoneCheckMs`, while a call waits.
 */
import { Hono } from "hono";
import { InvalidRequestError } from "../sdk/errors.js";
import { DELIVERY_DEFAULTS } from "../sdk/defaults.js";
import { CLIENT_WATCH_PATTERN, HEADERS, LOCAL_CLIENT_GONE_ROUTE } from "../sdk/protocol.js";
import type { RouteEnv } from "./env.js";
import { requireLocalKey } from "./local-blobs.js";

const { clientGoneCheckMs, clientGoneKeepMs, clientGoneKeepMax } = DELIVERY_DEFAULTS;

/** The watch ids the front door named, with when. */
const gone = new Map<string, number>();

/** What a web request's work asks whether its client went (`RunContext.clientGone`). */
export interface ClientWatch {
  /** Calls `listener` once, when the client goes; answers the function that stops watching. */
  onGone(listener: () => void): () => void;
}

/**
 * The watch of a web request, as it came to the gateway (before a body limit made another of it). Every call its
 * handler waits on is told at once, in one go, so that each stops before the handler, failing on the first one's
 * cancel, ends the request (an edge call then keeps its grace: gateway/executor.ts).
 * @example const rc: RunContext = { …, clientGone: clientWatch(c.req.raw) };
 */
export function clientWatch(request: Request): ClientWatch {
  // Read as a handler first waits on a call: most web requests never do, and pay for neither.
  let signal!: AbortSignal;
  let watched: string | undefined;
  let read = false;
  const readRequest = () => {
    if (read) return;
    read = true;
    signal = request.signal;
    const id = request.headers.get(HEADERS.clientWatch);
    watched = id !== null && CLIENT_WATCH_PATTERN.test(id) ? id : undefined;
  };
  const listeners = new Set<() => void>();
  let went = false;
  let check: ReturnType<typeof setInterval> | undefined;
  const stop = () => {
    signal.removeEventListener("abort", tellAll);
    clearInterval(check);
    check = undefined;
  };
  function tellAll(): void {
    if (went) return;
    went = true;
    stop();
    for (const listener of [...listeners]) listener();
    listeners.clear();
  }
  const hasGone = () => signal.aborted || (watched !== undefined && gone.has(watched));
  return {
    onGone(listener) {
      readRequest();
      if (went || hasGone()) {
        tellAll();
        listener();
        return () => {};
      }
      listeners.add(listener);
      if (listeners.size === 1) {
        signal.addEventListener("abort", tellAll, { once: true });
        if (watched !== undefined) check = setInterval(() => hasGone() && tellAll(), clientGoneCheckMs);
      }
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0) stop();
      };
    },
  };
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
