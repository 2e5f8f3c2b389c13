/**
 * The gateway Worker, and the composition root of the edge tier: loads the
 * bundled app files into the registry, wires the pieces that must not import
 * each other (the ledger resumes calls with the executor's `runSpawned`),
 * parses the configuration once per request at the entry, then serves the
 * `/v1` API and every app's web endpoints. `tandem serve` and `tandem deploy`
 * generate an entry module that calls `createGateway` with the app files' exports.
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { loadAppModule } from "../sdk/app.js";
import { InternalError, InvalidRequestError, NotFoundError, TandemError, errorBody } from "../sdk/errors.js";
import { CLIENT_CLOSED_REQUEST, DASHBOARD, type PlaneBundleRef } from "../sdk/protocol.js";
import { installInvoker } from "../sdk/invoker.js";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { apiRoutes, protocolHeader } from "./api.js";
import { noFieldTwice } from "./query.js";
import { ClientWentAway, PreflightPassed } from "./body.js";
import { setResumeCall } from "./call-ledger.js";
import { gatewayConfig } from "./config.js";
import { clientGoneRoutes } from "./client-gone.js";
import { dashboardRoutes } from "./dashboard-routes.js";
import type { Env, RouteEnv } from "./env.js";
import { runSpawned } from "./executor.js";
import { GatewayInvoker } from "./gateway-invoker.js";
import { GatewayVolumes } from "./gateway-volumes.js";
import { installVolumeBackend } from "../sdk/volume.js";
import { installStoreBackends } from "../sdk/store-client.js";
import { GatewayDicts, GatewayQueues } from "./gateway-stores.js";
import { planeRoutes } from "./plane-routes.js";
import { environments } from "./environments.js";
import { AppRegistry, setRegistry } from "./registry.js";
import { installCallEnv, prefixConsoleLines } from "./run-context.js";
import { localBlobRoutes } from "./local-blobs.js";
import { backgroundRoutes, countingBackground } from "./background.js";
import { schedulerFor } from "./scheduler.js";
import { webRoutes } from "./web.js";
import { echoedText } from "../sdk/value-text.js";

/** One bundled app file: its path (for messages) and its module exports. */
export interface AppModule {
  file: string;
  exports: Record<string, unknown>;
}

export interface GatewayOptions {
  /** Each app's plane bundle, for plane-tier functions. */
  planeBundles?: Record<string, PlaneBundleRef>;
  /** The compiled module of each WebAssembly function, by `app/name`. */
  wasm?: Record<string, WebAssembly.Module>;
  /** The bundled directories of each WebAssembly function that has `files` (a data module, wasm/files.ts), by `app/name`. */
  wasmFiles?: Record<string, ArrayBuffer>;
}

/**
 * The Worker for `modules` (each app file's exports), with the planes' bundles
 * and the WebAssembly modules the CLI built for them.
 *
 * @example export default createGateway([{ file: "app.ts", exports: appExports }], { planeBundles, wasm });
 */
export function createGateway(modules: AppModule[], options: GatewayOptions = {}): ExportedHandler<Env> {
  const apps = modules.map((m) => loadAppModule(m.file, m.exports));
  setRegistry(new AppRegistry(apps, options.wasm ?? {}, options.planeBundles ?? {}, options.wasmFiles ?? {}));
  setResumeCall(runSpawned);
  installInvoker(new GatewayInvoker());
  installVolumeBackend(new GatewayVolumes());
  installStoreBackends({ dicts: new GatewayDicts(), queues: new GatewayQueues() });
  prefixConsoleLines();
  installCallEnv();

  const router = new Hono<RouteEnv>({ strict: false });
  // The fetch entry: configuration parsed here (once per isolate and bindings; see gatewayConfig) and read by every route from c.var.
  router.use("*", async (c, next) => {
    c.set("config", gatewayConfig(c.env));
    await next();
  });
  // Each /v1 request in the environment it names (Tandem-Env), else this gateway's: the stores' objects are its.
  router.use("/v1/*", protocolHeader());
  router.use("/v1/*", noFieldTwice());
  router.use("/v1/*", environments());
  router.route("/", localBlobRoutes());
  router.route("/", backgroundRoutes());
  router.route("/", clientGoneRoutes());
  router.route("/", planeRoutes());
  router.route("/", apiRoutes());
  router.route("/", dashboardRoutes());
  router.route("/", webRoutes(apps));
  router.get("/", (c) => c.json({ gateway: "tandem", apps: apps.map((a) => a.name), api: "/v1/apps", dashboard: `${DASHBOARD.base}/` }));
  router.notFound((c) => {
    const first = new URL(c.req.url).pathname.split("/")[1] ?? "";
    return c.json(
      errorBody(
        new NotFoundError(`no app named ${echoedText(decodedOrAsSent(first))} is deployed here (apps: ${apps.map((a) => a.name).join(", ") || "none"})`),
      ),
      404,
    );
  });
  router.onError((err, c) => {
    if (err instanceof PreflightPassed) return c.body(null, 204);
    if (err instanceof ClientWentAway) return c.body(null, CLIENT_CLOSED_REQUEST as ContentfulStatusCode); // no one reads it
    // A 401 says how to authenticate, as HTTP asks of one (RFC 9110, 11.6.1).
    if (err instanceof TandemError)
      return c.json(errorBody(err), err.status as ContentfulStatusCode, err.status === 401 ? { "www-authenticate": 'Bearer realm="tandem"' } : {});
    // hono's own refusal of a request it was routed (a web app's mount, whose path keeps a dot segment sent encoded,
    // `/<app>/<label>/%2e%2e/…`, that would leave the mount once decoded): the client's mistake, not the gateway's.
    if (err instanceof HTTPException && err.status === 400) {
      const why = `${err.message}: ${c.req.path} has a dot segment sent encoded, or slashes, that would take it out of its web app's mount`;
      return c.json(errorBody(new InvalidRequestError(why)), 400);
    }
    // A fault of the gateway's own: its stack goes to the log only (it names this host's files). The answer has the
    // message's first line (V8's can go on to draw the value it choked on), as `internal`.
    console.error("gateway:", err);
    const message = (err instanceof Error ? err.message : String(err)).split("\n")[0]!;
    return c.json(errorBody(new InternalError(message)), 500);
  });
  const scheduled = apps.some((a) => a.callables.some((c) => c.spec.schedule));
  return {
    fetch: (request, env, ctx) => router.fetch(request, env, countingBackground(ctx)),
    // The cron trigger (every minute, when any function has a schedule): the Scheduler decides what is due.
    async scheduled(controller, env, ctx) {
      if (scheduled) countingBackground(ctx).waitUntil(schedulerFor(env).tick(controller.scheduledTime));
    },
  };
}

/** A path segment percent-decoded, or as it was sent when it is not valid percent-encoding (`%E0%A4%A`): a 404, not a 500. */
function decodedOrAsSent(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
