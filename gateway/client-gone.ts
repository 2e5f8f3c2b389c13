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
 * The watch of a web request, as it came to the gateway (before a body limit made another of it).
 * @example const rc: RunContext = { …, clientGone: clientWatch(c.req.raw) };
 */
export function clientWatch(request: Request): ClientWatch {
  const signal = request.signal;
  const id = request.headers.get(HEADERS.clientWatch);
  const watched = id !== null && CLIENT_WATCH_PATTERN.test(id) ? id : undefined;
  return {
    onGone(listener) {
      let told = false;
      const tell = () => {
        if (told) return;
        told = true;
        stop();
        listener();
      };
      signal.addEventListener("abort", tell, { once: true });
      const check = watched === undefined ? undefined : setInterval(() => gone.has(watched) && tell(), clientGoneCheckMs);
      const stop = () => {
        signal.removeEventListener("abort", tell);
        clearInterval(check);
      };
      if (signal.aborted || (watched !== undefined && gone.has(watched))) tell();
      return stop;
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
