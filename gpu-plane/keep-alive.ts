/**
 * How long the plane's process keeps an idle connection to its gateway: `fetch` (the log shipper, heartbeats,
 * containers' requests, bundle reads) lets a kept-alive connection go after `PLANE_KEEP_ALIVE_MS` idle. workerd closes
 * one idle 5 s; Node's own `fetch` lets go after 4 s on a coarse timer, which under load ran past those 5 s, so a
 * connection was sent a request just as workerd closed it: the request failed with `fetch failed` (ECONNRESET), a
 * container's volume commit among them.
 */
import { Agent, setGlobalDispatcher } from "undici";

/** An idle connection's life: well inside workerd's 5 s, whatever the timer's lag. */
export const PLANE_KEEP_ALIVE_MS = 2_000;

let set = false;

/**
 * The dispatcher of containers' requests to the gateway (gpu-plane/container-api.ts): idle connections as short, and
 * no wait of its own on the answer's headers or body. undici's 300 s would cut off a container's `.remote()` of a
 * function that runs longer, or a `.remoteGen()` quiet that long; the gateway bounds each (the function's timeout,
 * `API_LIMITS.maxWaitMs`), and the container's end closes the request.
 */
export const containerRequests = new Agent({
  keepAliveTimeout: PLANE_KEEP_ALIVE_MS,
  keepAliveMaxTimeout: PLANE_KEEP_ALIVE_MS,
  headersTimeout: 0,
  bodyTimeout: 0,
});

/**
 * Makes `fetch` in this process let idle connections go after `PLANE_KEEP_ALIVE_MS`; once, at a plane's start.
 *
 * @example keepConnectionsShort(); // then fetch(gatewayUrl + route, …) as before
 */
export function keepConnectionsShort(): void {
  if (set) return;
  set = true;
  setGlobalDispatcher(new Agent({ keepAliveTimeout: PLANE_KEEP_ALIVE_MS, keepAliveMaxTimeout: PLANE_KEEP_ALIVE_MS }));
}
