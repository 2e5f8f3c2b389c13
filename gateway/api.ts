/**
 * The `/v1` API: call, spawn, map, get, cancel, and the list of apps. Shapes
 * and routes come from `sdk/protocol.ts`; docs/api.md describes them.
 */
import { Hono, type Context, type MiddlewareHandler } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { CALL_BODY_NOTE, InvalidRequestError, MethodNotAllowedError, NotFoundError, errorBody, errorStatus, toWireError } from "../sdk/errors.js";
import {
  CALL_LIST_LIMITS,
  CallListQuerySchema,
  ConnectTokenRequestSchema,
  TERMINAL_STATUSES,
  CallRequestSchema,
  CancelRequestSchema,
  NoFieldsRequestSchema,
  HEADERS,
  IDEMPOTENCY_KEY_PATTERN,
  MapRequestSchema,
  NAME_PATTERN,
  PROTOCOL_VERSION,
  ROUTES,
  ROUTE_METHODS,
  UsageQuerySchema,
  newCallId,
  type AppsAnswer,
  type CallList,
  type ConnectTokenAnswer,
  type CallRecord,
  type MapCancelAnswer,
  type MapResultLine,
  type ScheduleInfo,
  type RolloverAnswer,
  type StopAnswer,
  type UsageAnswer,
} from "../sdk/protocol.js";
import { API_LIMITS, TOKEN_DEFAULTS } from "../sdk/defaults.js";
import { guard, mayReach, mayReachServed, mintConnectToken, principalOf, requestPrincipal, requireApp } from "./auth.js";
import { tokenRoutes } from "./token-routes.js";
import { mintLoginCode } from "./dashboard-auth.js";
import { secretRoutes } from "./secret-routes.js";
import { volumeRoutes } from "./volume-routes.js";
import { dictRoutes } from "./dict-routes.js";
import { queueRoutes } from "./queue-routes.js";
import { logRoutes } from "./log-routes.js";
import { deploymentRoutes } from "./deployment-routes.js";
import { metricsRoutes } from "./metrics-routes.js";
import { describeIssues } from "../sdk/zod-issues.js";
import { didYouMean } from "../sdk/nearest-name.js";
import { echoedText } from "../sdk/value-text.js";
import { recentCalls } from "./dashboard-data.js";
import { decodeBodyValue, readJsonBody } from "./body.js";
import { CallArgs } from "./call-args.js";
import { checkedCallId, keyScope, ledgerFor, ledgerShard, recordStatus, shardOfKey, toCallRecord, unknownCall } from "./call-ledger-client.js";
import { checkArguments } from "./check-arguments.js";
import { schedulerFor } from "./scheduler.js";
import type { RouteEnv } from "./env.js";
import { callNow, callOnce, mapCalls, mapCallsOnce, spawnCall, spawnCallOnce, stopMapHere } from "./executor.js";
import { nearRegionsOf } from "./plane-regions.js";
import { cancelledWhenClientGoes, clientWatch } from "./client-gone.js";
import { onceEach } from "./query.js";
import { gatewayConfig } from "./config.js";
import { appsOfThisEnvironment, inServedEnvironment } from "./environments.js";
import { cancelOnPlane, rolloverAppOnPlanes, roundedSeconds, roundedUsd, stopAppOnPlanes, usageFromPlanes } from "./plane-client.js";
import { registry, type RegisteredFunction } from "./registry.js";
import { streamCall, streamResponseBody } from "./stream.js";
import type { RunContext } from "./run-context.js";

type Api = RouteEnv;

/**
 * Every `/v1` answer names the protocol (`HEADERS.protocol`), its errors too, those of the checks before any route
 * (`Tandem-Env`, the protocol asked for) among them: mounted on `/v1/*` before everything else there.
 * @example router.use("/v1/*", protocolHeader());
 */
export function protocolHeader(): MiddlewareHandler<Api> {
  return async (c, next) => {
    // Set before the route answers, so that the answer it makes has it: set after, it made hono build the answer again.
    c.header(HEADERS.protocol, PROTOCOL_VERSION);
    const asked = c.req.header(HEADERS.protocol);
    if (asked !== undefined && asked !== PROTOCOL_VERSION) {
      throw new InvalidRequestError(`this gateway speaks protocol ${PROTOCOL_VERSION}, the request asked for ${asked}; upgrade the client or the gateway`);
    }
    await next();
    if (!c.res.headers.has(HEADERS.protocol)) c.header(HEADERS.protocol, PROTOCOL_VERSION); // an answer made as a `Response` of its own
  };
}

/** The longest error message `GET /v1/apps/:app/calls` lists a call with (`…` after it). */
const LISTED_ERROR_CHARS = 1_000;

/**
 * Refuses a path whose app is no name (`NAME_PATTERN`), after the token is checked, as a 400 that shows at most
 * 80 characters of it as a JSON string with its bidi marks escaped (`echoedText`): such a name was echoed whole (8,000
 * characters in a 403) and as it came (a right-to-left override reordering the message). A name goes on to `then`.
 */
function appNamed(then: MiddlewareHandler<Api>): MiddlewareHandler<Api> {
  return async (c, next) => {
    const app = c.req.param("app") ?? "";
    if (NAME_PATTERN.test(app)) return then(c, next);
    await requestPrincipal(c); // no token: its 401 first, as on every route
    throw new InvalidRequestError(`${echoedText(app)} is not an app name (1-64 letters, digits, '-' or '_', starting with a letter or digit)`);
  };
}

export function apiRoutes(): Hono<Api> {
  const api = new Hono<Api>();

  api.get(ROUTES.health, (c) => c.json({ ok: true, protocol: PROTOCOL_VERSION }));

  // Who may call what: every route below needs a token (gateway/auth.ts); the scope each needs is in docs/api.md.
  api.get(ROUTES.whoami, guard("call"), (c) => c.json(principalOf(c)));

  // A path's app that is no name is refused at once, its echo cut and its marks visible; another environment's apps
  // are not served here: their routes answer 404 naming the environments (environments.ts).
  const appGate = appNamed(appsOfThisEnvironment()); // one middleware on the call's path, not two
  for (const path of ["/v1/apps/:app", "/v1/apps/:app/*"]) api.use(path, appGate);

  api.route("/", tokenRoutes());
  api.route("/", secretRoutes());
  api.route("/", volumeRoutes());
  api.route("/", dictRoutes());
  api.route("/", queueRoutes());
  api.route("/", logRoutes());
  api.route("/", deploymentRoutes());
  api.route("/", metricsRoutes());

  // A login link for the dashboard, for the token that asks (`tandem dashboard`): docs/observability.md, "Dashboard".
  api.post(ROUTES.dashboardLogin, guard("call", { servedEnvironment: "dashboard" }), async (c) =>
    c.json(await mintLoginCode(c.env, principalOf(c), new URL(c.req.url).origin)),
  );

  api.get(ROUTES.apps, guard("call"), (c) => {
    const here = inServedEnvironment(c.env);
    const served = here ? registry().manifests() : [];
    const apps = served.filter((m) => mayReach(principalOf(c), m.name));
    // How many apps a token limited to some does not see: `tandem deploy` and `tandem app rollback` replace the whole
    // Worker, so such a token may not replace one that serves apps beyond its reach (their names stay hidden).
    return c.json({
      apps,
      ...(apps.length < served.length ? { othersServed: served.length - apps.length } : {}),
      ...(here ? {} : { servedEnvironment: gatewayConfig(c.env).environment }),
    } satisfies AppsAnswer);
  });

  api.get(ROUTES.app, guard("call"), (c) => c.json(registry().app(c.req.param("app")).manifest()));

  // An app's calls, latest first, of a function, status or kind: what `tandem calls` prints (docs/api.md, "Listing calls").
  api.get(ROUTES.appCalls, guard("call"), async (c) => {
    const app = registry().app(c.req.param("app"));
    const parsed = CallListQuerySchema.safeParse(c.req.query(), { reportInput: true });
    if (!parsed.success) throw new InvalidRequestError(`call list query: ${describeIssues(parsed.error, "field", CallListQuerySchema)}`);
    const { limit = CALL_LIST_LIMITS.defaultLimit, function: fn, status, since, kind, before, cursor } = parsed.data;
    // A class's name lists its methods' calls, as `tandem logs --function` takes it; a name the app has neither of
    // would list nothing, without a word: said, with the nearest (404, `function` in its details).
    const names = app.callables.map((f) => f.name);
    const classes = new Set(app.callables.filter((f) => f.kind === "method").map((f) => f.name.slice(0, f.name.indexOf("."))));
    if (fn !== undefined && !names.includes(fn) && !classes.has(fn)) {
      const known = [...names, ...classes];
      throw new NotFoundError(`app "${app.name}" has no function or class "${fn}" (functions: ${names.join(", ") || "none"})${didYouMean(fn, known)}`, {
        app: app.name,
        function: fn,
      });
    }
    const calls = await recentCalls(c.env, {
      app: app.name,
      limit,
      ...(fn === undefined ? {} : classes.has(fn) ? { functionPrefix: `${fn}.` } : { function: fn }),
      ...(status === undefined ? {} : { status }),
      ...(since === undefined ? {} : { since }),
      ...(kind === undefined ? {} : { kind }),
      ...(before === undefined ? {} : { before }),
      ...(cursor === undefined ? {} : { after: cursor }),
    });
    const last = calls.length === limit ? calls[calls.length - 1]! : undefined;
    // A summary: an error's message cut (its record, GET /v1/calls/:id, has it whole), so a page of 1,000 stays small.
    const listed = calls.map((call) =>
      call.error && call.error.message.length > LISTED_ERROR_CHARS
        ? { ...call, error: { ...call.error, message: `${call.error.message.slice(0, LISTED_ERROR_CHARS)}…` } }
        : call,
    );
    return c.json({ calls: listed, next: last ? `${last.createdAt}~${last.callId}` : null } satisfies CallList);
  });

  api.post(ROUTES.connectToken, guard("call"), async (c) => {
    const app = registry().app(c.req.param("app"));
    const body = await readJsonBody(c.req.raw, ConnectTokenRequestSchema, c.var.config.maxBodyBytes);
    const labels = [...app.webMounts.map((w) => w.label), ...app.endpoints.map((e) => e.label), ...app.agents.map((a) => a.label)];
    if (body.label !== undefined && !labels.includes(body.label)) {
      throw new NotFoundError(`app "${app.name}" has no web endpoint or agent "${body.label}" (labels: ${labels.join(", ") || "none"})`);
    }
    const guarded = [...app.webMounts, ...app.endpoints, ...app.agents].filter((w) => w.auth === "token").map((w) => w.label);
    if (body.label !== undefined && !guarded.includes(body.label)) {
      throw new InvalidRequestError(
        `"${body.label}" of app "${app.name}" is public (it does not ask for a token), so it opens without a connect token; ` +
          `those of the app that ask for one: ${guarded.join(", ") || "none"}`,
      );
    }
    const minted = await mintConnectToken(c.env, principalOf(c), app.name, body.label, body.ttlSeconds ?? TOKEN_DEFAULTS.connectTokenTtlSeconds);
    return c.json(minted satisfies ConnectTokenAnswer);
  });

  api.get(ROUTES.usage, guard("deploy"), async (c) => {
    const query = UsageQuerySchema.safeParse(c.req.query(), { reportInput: true });
    if (!query.success) throw new InvalidRequestError(`usage query: ${describeIssues(query.error, "field")}`);
    const principal = principalOf(c);
    if (query.data.app !== undefined) requireApp(principal, query.data.app);
    const usage = await usageFromPlanes(runContext(c), query.data);
    const rows = usage.rows.filter((r) => mayReachServed(principal, r.app, c.var.config.environment));
    // A name no app served has and no plane recorded: a typo, answered as every /v1 route answers an unknown app (404,
    // with the names there are), not as an app that used nothing. A removed app's usage stays readable.
    if (query.data.app !== undefined && rows.length === 0) registry().app(query.data.app);
    return c.json({
      rows,
      totalUsd: roundedUsd(rows.reduce((sum, r) => sum + r.costUsd, 0)),
      totalSeconds: roundedSeconds(rows.reduce((sum, r) => sum + r.seconds, 0)),
      notCounted: usage.notCounted,
    } satisfies UsageAnswer);
  });

  api.post(ROUTES.appStop, guard("deploy"), async (c) => {
    const app = registry().app(c.req.param("app")).name;
    await readJsonBody(c.req.raw, NoFieldsRequestSchema, c.var.config.maxBodyBytes);
    return c.json({ app, stopped: await stopAppOnPlanes(runContext(c), app) } satisfies StopAnswer);
  });

  // Restarts the app's plane containers so that they read its secrets afresh: each once its calls end (docs/secrets.md).
  api.post(ROUTES.appRollover, guard("deploy"), async (c) => {
    const app = registry().app(c.req.param("app")).name;
    await readJsonBody(c.req.raw, NoFieldsRequestSchema, c.var.config.maxBodyBytes);
    return c.json({ app, rolledOver: await rolloverAppOnPlanes(runContext(c), app) } satisfies RolloverAnswer);
  });

  api.post(ROUTES.call, guard("call", { checksBeforeBody: true }), async (c) => {
    const fn = notGenerator(registry().function(c.req.param("app"), c.req.param("fn")));
    const args = await readArgs(c);
    await checkArguments(fn, args); // a class method's parameters and the `input` schema: a 400 now, at either tier
    const key = idempotencyKey(c);
    const record =
      key === undefined
        ? // Made without a key, it is its caller's alone: one that goes can never collect it, so it is cancelled then.
          toCallRecord((await callNow({ ...runContext(c), clientGone: clientWatch(c.req.raw) }, fn, args)).row)
        : await callOnce(runContext(c), fn, args, key, c.req.header(HEADERS.freshKey) === "1");
    c.header(HEADERS.callId, record.callId);
    return c.json(record, recordStatus(record) as ContentfulStatusCode);
  });

  api.post(ROUTES.spawn, guard("call", { checksBeforeBody: true }), async (c) => {
    const fn = notGenerator(registry().function(c.req.param("app"), c.req.param("fn")));
    const args = await readArgs(c);
    await checkArguments(fn, args); // before the call is recorded
    const key = idempotencyKey(c);
    // The ledger keeps the arguments as they came.
    const { callId: id, sentAgain } =
      key === undefined ? { callId: await spawnCall(runContext(c), fn, args), sentAgain: false } : await spawnCallOnce(runContext(c), fn, args, key);
    c.header(HEADERS.callId, id);
    // Sent again: the call its key named, as it stands (it may have ended; before, always "pending").
    const status = sentAgain ? ((await ledgerFor(c.env, id).get(id, 0))?.status ?? "pending") : "pending";
    return c.json({ callId: id, status }, 202);
  });

  api.post(ROUTES.map, guard("call", { checksBeforeBody: true }), async (c) => {
    const fn = notGenerator(registry().function(c.req.param("app"), c.req.param("fn")));
    const body = await readJsonBody(c.req.raw, MapRequestSchema, c.var.config.maxBodyBytes, CALL_BODY_NOTE);
    // One meta describes every input (its paths start at the input's index), so the inputs are decoded here and
    // each one encoded again for a plane: splitting superjson's meta per input is not something it offers.
    // Each input's arguments are checked as it runs (gateway/executor.ts): a bad one fails that input alone.
    const inputs = (decodeBodyValue(body.inputs, body.meta, "inputs") as unknown[][]).map((input) => CallArgs.of(input));
    const rc = runContext(c);
    const key = idempotencyKey(c);
    const encoder = new TextEncoder();
    const stream = new TransformStream<Uint8Array, Uint8Array>();
    const writer = stream.writable.getWriter();
    // A client that went away stops the lines, not the map: its inputs run to their end and are recorded (a failed
    // write thrown into the map had ended it there, and a keyed map's inputs were then resumed, some run twice). No
    // input waits on its line being read, either: a reader gone without a word would hold every one. The lines wait
    // in the stream instead, at most one per input (`API_LIMITS.maxMapInputs`), as the map holds their rows anyway.
    let gone = false;
    const write = (line: MapResultLine) => {
      if (!gone) writer.write(encoder.encode(JSON.stringify(line) + "\n")).catch(() => void (gone = true));
    };
    const send = (index: number, { callId, status, result, meta, error }: CallRecord) => write({ index, callId, status, result, meta, error });
    rc.waitUntil(
      (key === undefined
        ? mapCalls(rc, fn, inputs, (index, row) => send(index, toCallRecord(row)))
        : mapCallsOnce(rc, fn, inputs, key, send, { fresh: c.req.header(HEADERS.freshKey) === "1" })
      )
        .catch((err) => write({ index: -1, callId: "", status: "failed", error: toWireError(err) }))
        .finally(() => void writer.close().catch(() => {})),
    );
    return c.body(stream.readable, 200, { "content-type": "application/x-ndjson" });
  });

  // The SDK's `.map` left early cancels the batches it had in flight, each by its key (docs/api.md, "Map").
  api.post(ROUTES.mapCancel, guard("call"), async (c) => {
    const fn = registry().function(c.req.param("app"), c.req.param("fn"));
    const key = idempotencyKey(c);
    if (key === undefined) {
      throw new InvalidRequestError(`cancelling a map needs the ${HEADERS.idempotencyKey} header its map request carried (the SDK sends one with each batch)`);
    }
    const scope = keyScope(fn.app, fn.name, key);
    const cancelled = await ledgerShard(c.env, shardOfKey(scope)).cancelMap(scope);
    const planesHere = stopMapHere(scope);
    const rc = runContext(c);
    const byPlane = new Map<string, string[]>(); // one request to each plane, naming all its inputs
    for (const { id, plane: noted } of cancelled) {
      const plane = noted ?? planesHere.get(id);
      if (plane) byPlane.set(plane, [...(byPlane.get(plane) ?? []), id]);
    }
    await Promise.all([...byPlane].map(([plane, ids]) => cancelOnPlane(rc, plane, ids, false)));
    return c.json({ cancelled: cancelled.length } satisfies MapCancelAnswer);
  });

  api.post(ROUTES.stream, guard("call", { checksBeforeBody: true }), async (c) => {
    const fn = streamable(registry().function(c.req.param("app"), c.req.param("fn")));
    if (c.req.header(HEADERS.idempotencyKey) !== undefined) {
      // Taken and ignored, it promised what a stream cannot keep: its chunks go once, to the one reader that asked.
      throw new InvalidRequestError(
        `a stream takes no ${HEADERS.idempotencyKey}: it runs once for the request that asks, and is never sent again (spawn the function, or call one that is not a generator, for delivery by key)`,
      );
    }
    const args = await readArgs(c);
    await checkArguments(fn, args);
    const id = newCallId();
    c.header(HEADERS.callId, id);
    const chunks = streamCall(runContext(c), fn, args, id);
    // The first chunk is awaited before answering, so a stream that fails before it (not a generator, no capacity,
    // a throw before the first yield) answers with its error's status, as a call does.
    const first = await chunks.next().then(
      (step) => ({ step }),
      (error: unknown) => ({ error }),
    );
    if ("error" in first) return c.json(errorBody(first.error), errorStatus(first.error) as ContentfulStatusCode);
    const answer = c.body(streamResponseBody(chunks, id, first.step), 200, { "content-type": "application/x-ndjson" });
    return cancelledWhenClientGoes(c.req.raw, clientWatch(c.req.raw), answer);
  });

  api.get(ROUTES.schedules, guard("call"), async (c) => {
    const { app } = onceEach(c.req.queries(), ["app"], "GET /v1/schedules");
    const principal = principalOf(c);
    if (app !== undefined) {
      requireApp(principal, app);
      registry().app(app); // 404 for an unknown app
    }
    if (!inServedEnvironment(c.env)) return c.json({ schedules: [] }); // another environment's apps have none here
    const listed = (await schedulerFor(c.env).list(app, Date.now())) as ScheduleInfo[];
    const schedules = listed.filter((s) => mayReach(principal, s.app));
    return c.json({ schedules });
  });

  api.post(ROUTES.trigger, guard("deploy"), async (c) => {
    const fn = registry().function(c.req.param("app"), c.req.param("fn"));
    if (!fn.spec.schedule)
      throw new InvalidRequestError(`${fn.app}.${fn.name} has no schedule; call it with .remote() or .spawn()`, { app: fn.app, function: fn.name });
    await readJsonBody(c.req.raw, NoFieldsRequestSchema, c.var.config.maxBodyBytes);
    const id = await schedulerFor(c.env).trigger(fn.app, fn.name, Date.now());
    c.header(HEADERS.callId, id);
    return c.json({ callId: id, status: "pending" }, 202);
  });

  api.get(ROUTES.callRecord, guard("call"), async (c) => {
    const id = callId(c);
    const { wait } = onceEach(c.req.queries(), ["wait"], "GET /v1/calls/:id");
    // Whole milliseconds, any number of digits (a longer wait is cut): Number() would also take "", " 5" and "0x10".
    if (wait !== undefined && !/^\d+$/.test(wait))
      throw new InvalidRequestError(
        `"wait" must be a whole number of milliseconds, 0 or more (got ${JSON.stringify(wait.slice(0, 40))}); a longer wait than ${API_LIMITS.maxWaitMs} is cut to ${API_LIMITS.maxWaitMs}`,
      );
    const waitMs = Math.min(Number(wait ?? 0), API_LIMITS.maxWaitMs);
    // Another app's call is as unknown as one that never was: a token restricted to apps cannot see it.
    const ledger = ledgerFor(c.env, id);
    const seen = await ledger.get(id, 0);
    if (!seen || !mayReachServed(principalOf(c), seen.app, c.var.config.environment)) throw unknownCall(id, c.var.config.resultTtlSeconds);
    const record = waitMs > 0 && !TERMINAL_STATUSES.has(seen.status) ? await ledger.get(id, Math.min(waitMs, API_LIMITS.maxWaitMs)) : seen;
    if (!record) throw unknownCall(id, c.var.config.resultTtlSeconds);
    return c.json(record, record.status === "pending" || record.status === "running" ? 202 : 200);
  });

  api.post(ROUTES.cancel, guard("call"), async (c) => {
    const id = callId(c);
    const { terminateContainer } = await readJsonBody(c.req.raw, CancelRequestSchema, c.var.config.maxBodyBytes);
    const seen = await ledgerFor(c.env, id).get(id, 0);
    if (!seen || !mayReachServed(principalOf(c), seen.app, c.var.config.environment)) throw unknownCall(id, c.var.config.resultTtlSeconds);
    const cancelled = await ledgerFor(c.env, id).cancel(id);
    if (!cancelled) throw unknownCall(id, c.var.config.resultTtlSeconds);
    if (cancelled.plane) await cancelOnPlane(runContext(c), cancelled.plane, [id], terminateContainer ?? false);
    return c.json({ callId: id, status: cancelled.record.status });
  });

  // A known route asked with the wrong method: say which methods it takes (every route in ROUTES, by ROUTE_METHODS).
  const allowed = new Map<string, string[]>();
  for (const [name, methods] of Object.entries(ROUTE_METHODS)) {
    const route = ROUTES[name as keyof typeof ROUTES];
    allowed.set(route, [...(allowed.get(route) ?? []), ...methods.flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m]))]);
  }
  for (const [route, methods] of allowed) {
    const allow = methods.join(", ");
    api.all(route, (c) => {
      c.header("allow", allow);
      // The path as sent: a URL reads "%2e%2e" as ".." (and hono's path decodes it), naming a path that is no route.
      const url = c.req.url;
      const path = url.slice(url.indexOf("/", url.indexOf("//") + 2)).split(/[?#]/)[0];
      throw new MethodNotAllowedError(`${path} takes ${allow}, not ${c.req.method}`);
    });
  }

  api.all("/v1/*", (c) => {
    // The path as routed: the URL parser would fold an encoded dot segment into a path that is a route.
    throw new NotFoundError(`no such API route: ${c.req.method} ${c.req.path} (see docs/api.md)`);
  });

  return api;
}

/** What a `/v1` request's work runs with; its plane calls prefer the regions nearest the request. */
function runContext(c: Context<Api>): RunContext {
  return { env: c.env, config: c.var.config, waitUntil: (p) => c.executionCtx.waitUntil(p), nearRegions: nearRegionsOf(c.req.raw, c.var.config) };
}

/** Refuses a function declared as a generator on the routes that call it (one found to be a generator only when it runs fails then). */
/** A WebAssembly function never streams (its result is its stdout, once it exits): refused before its module runs. */
function streamable(fn: RegisteredFunction): RegisteredFunction {
  if (fn.wasm)
    throw new InvalidRequestError(`${fn.app}.${fn.name} is a WebAssembly function, which does not stream; call it with .remote() (POST .../call)`, {
      app: fn.app,
      function: fn.name,
    });
  return fn;
}

function notGenerator(fn: RegisteredFunction): RegisteredFunction {
  if (fn.generator)
    throw new InvalidRequestError(`${fn.app}.${fn.name} is a generator function; stream it with .remoteGen() (POST .../stream)`, {
      app: fn.app,
      function: fn.name,
    });
  return fn;
}

/**
 * A call's arguments, kept as the body carried them. A `meta` is decoded once
 * here all the same: one that does not fit its `args` is the caller's 400
 * (docs/api.md), whichever tier would run the function, not a failure in a
 * container. Without `meta` the JSON is the values, and nothing is decoded.
 */
async function readArgs(c: Context<Api>): Promise<CallArgs> {
  const body = await readJsonBody(c.req.raw, CallRequestSchema, c.var.config.maxBodyBytes, CALL_BODY_NOTE);
  const json = body.args ?? [];
  if (body.meta === undefined) return CallArgs.received({ json }, json);
  const decoded = decodeBodyValue(json, body.meta, "args");
  if (!Array.isArray(decoded)) throw new InvalidRequestError(`"args" must be an array of arguments`);
  return CallArgs.received({ json, meta: body.meta }, decoded);
}

/** The request's `Idempotency-Key`, if it has one (docs/api.md, "Delivery"). */
function idempotencyKey(c: Context<Api>): string | undefined {
  const key = c.req.header(HEADERS.idempotencyKey);
  if (key !== undefined && !IDEMPOTENCY_KEY_PATTERN.test(key))
    throw new InvalidRequestError(`the ${HEADERS.idempotencyKey} header must be 1 to 255 visible ASCII characters (a UUID, say)`);
  return key;
}

function callId(c: Context<Api>): string {
  return checkedCallId(c.req.param("id"));
}
