/**
 * The work requests leave behind them (`waitUntil`: a call's end record, log lines, a spawned call's run), counted
 * for the isolate, and `GET /_local/background` (`LOCAL_BACKGROUND_ROUTE`), which answers how much of it is still
 * under way. `tandem serve` asks it on a reload: its old workerd stops as soon as that work is done (most often a few
 * tens of milliseconds after its last request), not after a fixed grace, while the new one waits to start (both
 * cannot run on one state folder). Like `LOCAL_BLOBS_ROUTE`, only a gateway the CLI started, with its key, has it.
 */
import { Hono } from "hono";
import { LOCAL_BACKGROUND_ROUTE } from "../sdk/protocol.js";
import type { RouteEnv } from "./env.js";
import { requireLocalKey } from "./local-blobs.js";

let pending = 0;

/**
 * `ctx` with its `waitUntil` counted, for the isolate's entry points to hand on.
 *
 * @example fetch: (request, env, ctx) => router.fetch(request, env, countingBackground(ctx)),
 */
export function countingBackground(ctx: ExecutionContext): ExecutionContext {
  return {
    waitUntil(promise: Promise<unknown>) {
      pending++;
      ctx.waitUntil(promise.finally(() => pending--));
    },
    passThroughOnException: () => ctx.passThroughOnException(),
    props: ctx.props,
  } as ExecutionContext;
}

/** @example router.route("/", backgroundRoutes()); */
export function backgroundRoutes(): Hono<RouteEnv> {
  const routes = new Hono<RouteEnv>();
  routes.get(LOCAL_BACKGROUND_ROUTE, (c) => {
    requireLocalKey(c, LOCAL_BACKGROUND_ROUTE);
    return c.json({ pending });
  });
  return routes;
}
