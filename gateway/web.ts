/**
 * Web endpoints: each app's `app.web` mounts and `app.endpoint` handlers,
 * routed at `/<app>/<label>/...`. Routes are built once, when the Worker loads.
 */
import { Hono, type Context, type HonoRequest } from "hono";
import type { AgentDefinition, App, EndpointHandle, WebApp, WebMount } from "../sdk/app.js";
import {
  InvalidRequestError,
  MethodNotAllowedError,
  NotFoundError,
  RemoteError,
  TandemError,
  UpgradeRequiredError,
  callFailure,
  errorBody,
  remoteErrorFrom,
  toWireError,
  withoutLogTail,
  type WireError,
} from "../sdk/errors.js";
import { maskedError } from "../sdk/secret.js";
import { HEADERS, SESSION_ID_PATTERN, paths } from "../sdk/protocol.js";
import type { GatewayConfig } from "./config.js";
import type { Env, RouteEnv } from "./env.js";
import { secretEnv } from "./secret-env.js";
import { asksWebSocket, hubFor } from "./agents.js";
import { authorizeWeb } from "./auth.js";
import { limitBody, parseJsonText, utf8Text } from "./body.js";
import { shardOf } from "./shard.js";
import { runStore, withCallEnv, type RunContext } from "./run-context.js";
import { EncodedResult } from "./encoded-result.js";
import { mapStack } from "./source-map.js";
import { chunkIterator, isGeneratorResult, type GeneratorResult } from "../sdk/generator-result.js";
import { nearRegionsOf } from "./plane-regions.js";
import { cancelledWhenClientGoes, clientWatch } from "./client-gone.js";
import { unfaithfulJsonIn } from "./json-answer.js";

type Web = RouteEnv;

export function webRoutes(apps: readonly App[]): Hono<Web> {
  const web = new Hono<Web>({ strict: false });
  for (const app of apps) {
    for (const mount of app.webMounts) mountWebApp(web, app.name, mount);
    for (const endpoint of app.endpoints) addEndpoint(web, app.name, endpoint);
    for (const agent of app.agents) addAgent(web, app.name, agent);
    web.all(`/${app.name}/:label/*`, (c) => {
      const label = c.req.param("label");
      const served = app.endpoints.filter((e) => e.label === label).map((e) => `${e.method} ${e.path}`);
      if (served.length) {
        // The path as routed (c.req.path), not as the URL parser normalises it: `%2e%2e` there would eat the label.
        const rest = c.req.path.slice(`/${app.name}/${label}`.length) || "/";
        throw new NotFoundError(`endpoint "${label}" of app "${app.name}" does not serve ${c.req.method} ${rest} (it serves ${served.join(", ")})`, {
          app: app.name,
          label,
        });
      }
      if (app.agents.some((a) => a.label === label)) {
        const rest = c.req.path.slice(`/${app.name}/${label}`.length);
        throw new NotFoundError(
          `websocket "${label}" of app "${app.name}" takes WebSocket connections at /${app.name}/${label}?session=<id> only, not at a path under it (${rest})`,
          { app: app.name, label },
        );
      }
      // An app with agents says so: an agent's label is asked for here too.
      const what = app.agents.length ? ["web endpoint or agent", "labels"] : ["web endpoint", "endpoints"];
      throw new NotFoundError(`app "${app.name}" has no ${what[0]} "${label}" (${what[1]}: ${labels(app)})`, { app: app.name });
    });
    // The app's root, and a path under it with an empty label (`/<app>//x`).
    web.all(`/${app.name}/*`, () => {
      throw new NotFoundError(`app "${app.name}" serves its endpoints under /${app.name}/<label> (endpoints: ${labels(app)})`, { app: app.name });
    });
  }
  return web;
}

function mountWebApp(web: Hono<Web>, appName: string, mount: WebMount): void {
  let instance: Promise<WebApp> | undefined;
  const prefix = `[${appName}/${mount.label}]`;
  // The mounted app is called as a Worker is (request, env, ctx); the configuration comes along for the run context.
  const withConfig = (c: Context<Web>) => [c.env, c.executionCtx, c.var.config];
  web.mount(
    paths.web(appName, mount.label),
    async (request, env, ctx, config: GatewayConfig) => {
      // A browser's CORS preflight carries no credentials, by the standard: it goes to the app's own CORS handling, and
      // the request it clears is the one checked.
      if (mount.auth === "token" && !isCorsPreflight(request)) {
        try {
          await authorizeWeb(env as Env, request, appName, mount.label);
        } catch (err) {
          if (!(err instanceof TandemError && request.headers.has("origin"))) throw err;
          // The refusal of a cross-origin request: the origins the app's CORS lets read its answers may read this one
          // too (a page told its connect token expired can mint another), as they could had the app refused it.
          const cors = await serve(corsPreflightFor(request)).catch(() => undefined);
          return withCorsOf(Response.json(errorBody(err), { status: err.status }), cors);
        }
      }
      return serve(request);

      async function serve(request: Request): Promise<Response> {
        let body: ReturnType<typeof limitBody>;
        try {
          body = limitBody(request, mount.maxBodyBytes ?? config.maxBodyBytes, whoseLimit("web", appName, mount.label, mount.maxBodyBytes));
        } catch (err) {
          return Response.json(errorBody(err), { status: 413 });
        }
        // Called in a promise: a factory that throws fails this request as the app's error (`function_failed`), not the gateway's.
        instance ??= (async () => mount.factory())();
        const rc: RunContext = {
          env: env as Env,
          config,
          waitUntil: (p) => (ctx as ExecutionContext).waitUntil(p),
          nearRegions: nearRegionsOf(request, config),
          logPrefix: prefix,
          logTo: { app: appName, function: mount.label, callId: null },
          clientGone: clientWatch(request),
        };
        return runStore.run(rc, async () => {
          let webApp: WebApp;
          try {
            withCallEnv(
              rc,
              await secretEnv(rc, {
                app: appName,
                holder: `web/${mount.label}`,
                where: `web "${mount.label}" of app "${appName}"`,
                secrets: mount.secrets,
              }),
            );
            webApp = await instance!;
            if (typeof (webApp as Partial<WebApp> | null)?.fetch !== "function") throw notAWebApp(webApp, `web "${mount.label}" of app "${appName}"`);
          } catch (err) {
            instance = undefined; // the factory failed: try it again on the next request
            return failed(err);
          }
          try {
            const response: unknown = await webApp.fetch(body.request, APP_BINDINGS, ctx);
            if (response instanceof Response) return tooLarge(body.passed()) ?? cancelledWhenClientGoes(request, rc.clientGone, response);
            stopStream(response, rc);
            return tooLarge(body.passed()) ?? failed(notAResponse(response, `web "${mount.label}" of app "${appName}"`, request));
          } catch (err) {
            return tooLarge(body.passed()) ?? failed(err);
          }
        });
      }
    },
    withConfig,
  );
}

/** A web app's factory that gave no app to route requests to (plain JS, or past a cast): said, where `webApp.fetch is not a function` was. */
function notAWebApp(value: unknown, who: string): RemoteError {
  const message = `${who}: its factory returned ${returnedKind(value)}, not a web app (an object with a fetch method): return the hono app, new Hono() with its routes`;
  return new RemoteError({ name: "TypeError", message, stack: `TypeError: ${message}` });
}

/**
 * What a mounted app answered that is not a Response (a handler that returned `fn.remoteGen()` as it is, say), as a 500
 * naming it and what to return instead; workerd would refuse it with a TypeError that names neither.
 */
function notAResponse(value: unknown, who: string, request: Request): RemoteError {
  const message = `${who} answered ${request.method} ${new URL(request.url).pathname} with ${returnedKind(value)}, not a Response: return a Response (c.body(...), c.json(...), c.text(...)), or serve it from app.endpoint, which answers an async iterable with Server-Sent Events`;
  return new RemoteError({ name: "TypeError", message, stack: `TypeError: ${message}` });
}

/** A value as `notAResponse` names it: `an async iterable (AsyncGenerator)`, `an object (Object)`, `a string`. */
function returnedKind(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value !== "object") return `${/^[aeiou]/.test(typeof value) ? "an" : "a"} ${typeof value}`;
  const tag = Object.prototype.toString.call(value).slice("[object ".length, -1);
  if (Symbol.asyncIterator in value) return `an async iterable (${tag})`;
  if (isGeneratorResult(value)) return `an iterator (${tag})`;
  return `an object (${tag})`;
}

/**
 * A stream answered where a Response was due is stopped, as a client that goes away stops one: a generator's `return()`
 * runs its `finally`, and a function's stream behind it (`.remoteGen()`) ends, recorded as cancelled, its container
 * freed rather than run to its end with nobody reading.
 */
function stopStream(value: unknown, rc: RunContext): void {
  const stop = typeof value === "object" && value !== null ? (value as { return?: unknown }).return : undefined;
  if (typeof stop !== "function") return;
  rc.waitUntil(
    runStore
      .run(rc, async () => {
        await stop.call(value);
      })
      .catch(() => {}),
  );
}

/**
 * A preflight for `request`'s origin and method, no credentials: the app's CORS answers it with the origin it lets read
 * its answers, and a browser reads a response (not a preflight) by that alone.
 */
function corsPreflightFor(request: Request): Request {
  const headers = { origin: request.headers.get("origin")!, "access-control-request-method": request.method };
  return new Request(request.url, { method: "OPTIONS", headers });
}

/** `response` with the CORS headers of the app's answer to a preflight, those that let a page read a response. */
function withCorsOf(response: Response, preflight: Response | undefined): Response {
  const allowed = preflight?.headers.get("access-control-allow-origin");
  if (!allowed) return response;
  response.headers.set("access-control-allow-origin", allowed);
  const credentials = preflight!.headers.get("access-control-allow-credentials");
  if (credentials) response.headers.set("access-control-allow-credentials", credentials);
  response.headers.set("vary", "Origin");
  return response;
}

/** A browser asking whether it may send a cross-origin request: `OPTIONS` with `Access-Control-Request-Method`. */
function isCorsPreflight(request: Request): boolean {
  return request.method === "OPTIONS" && request.headers.has("access-control-request-method");
}

/**
 * What an app's endpoint or web app sees as its bindings (`c.env`): none. The gateway's are its own (its admin token,
 * the plane secret, the secrets key, its Durable Objects); an app's code reaches secrets through `process.env` and the
 * stores through the SDK, and a debug route that answers with `c.env` tells nothing.
 */
const APP_BINDINGS = Object.freeze({}) as Web["Bindings"];

function addEndpoint(web: Hono<Web>, appName: string, endpoint: EndpointHandle): void {
  const prefix = `[${appName}/${endpoint.label}]`;
  const path = paths.web(appName, endpoint.label, endpoint.path);
  web.on(endpoint.method, path, async (c: Context<Web>) => {
    if (endpoint.auth === "token") await authorizeWeb(c.env, c.req.raw, appName, endpoint.label);
    // A WebSocket's upgrade (a client that took the endpoint for an agent) would run the handler for an answer the
    // client cannot read as one: said at once, and the handler does not run.
    if (asksWebSocket(c.req.raw.headers)) {
      throw new InvalidRequestError(
        `"${endpoint.label}" of app "${appName}" is a web endpoint (${endpoint.method} ${endpoint.path}), not a WebSocket agent: it takes HTTP requests, not a WebSocket's upgrade`,
        { app: appName, label: endpoint.label },
      );
    }
    const request = c.req.raw;
    const clientGone = clientWatch(request); // the request as it came: the body's limit makes another
    const body = limitBody(
      c.req.raw,
      endpoint.maxBodyBytes ?? c.var.config.maxBodyBytes,
      whoseLimit("endpoint", appName, endpoint.label, endpoint.maxBodyBytes),
    );
    c.req.raw = body.request;
    answerUnparsedBodies(c.req);
    const rc: RunContext = {
      env: c.env,
      config: c.var.config,
      waitUntil: (p) => c.executionCtx.waitUntil(p),
      nearRegions: nearRegionsOf(c.req.raw, c.var.config),
      logPrefix: prefix,
      logTo: { app: appName, function: endpoint.label, callId: null },
      clientGone,
    };
    return runStore.run(rc, async () => {
      try {
        const where = `endpoint "${endpoint.label}" of app "${appName}"`;
        try {
          withCallEnv(rc, await secretEnv(rc, { app: appName, holder: `web/${endpoint.label}`, where, secrets: endpoint.secrets }));
        } catch (err) {
          return failed(err);
        }
        c.env = APP_BINDINGS; // the gateway's own uses of its bindings are over; the app's code gets none of them
        const out = await endpoint.handler(c);
        const refused = tooLarge(body.passed());
        if (refused) return refused;
        if (out instanceof Response) return c.req.method === "HEAD" ? await measuredForHead(out) : cancelledWhenClientGoes(request, clientGone, out);
        if (isGeneratorResult(out))
          return cancelledWhenClientGoes(request, clientGone, serverSentEvents(c, out, `endpoint "${endpoint.label}" of app "${appName}" yielded`));
        if (out === undefined) return c.body(null, 204);
        // What JSON would drop or change without a word (a function, a Map) fails the request, rather than answer a 200
        // with other data than the handler returned.
        const json = c.json(faithfulJson(out, `endpoint "${endpoint.label}" of app "${appName}" returned`) as never);
        return c.req.method === "HEAD" ? await measuredForHead(json) : json;
      } catch (err) {
        return tooLarge(body.passed()) ?? ownAnswer(c, err) ?? failed(err, true);
      }
    });
  });
  // The endpoint's path asked with another method: 405, naming the methods it takes (hono answers HEAD with GET's handler).
  const allow = endpoint.method === "GET" ? "GET, HEAD" : endpoint.method;
  web.all(path, (c) => {
    c.header("allow", allow);
    const rest = new URL(c.req.url).pathname.slice(`/${appName}/${endpoint.label}`.length) || "/";
    throw new MethodNotAllowedError(`endpoint "${endpoint.label}" of app "${appName}" takes ${allow} at ${rest}, not ${c.req.method}`, {
      app: appName,
      label: endpoint.label,
    });
  });
}

/** How long a HEAD request's answer waits for its GET's body to end, to say its length (`measuredForHead`). */
const HEAD_MEASURE_MS = 1_000;

/**
 * A HEAD request's answer, from the GET's answer `res`: its status and headers, with the Content-Length the GET's
 * has, and no body. hono answers HEAD with the GET's handler and drops the body, and workerd sends a bodiless answer
 * no Content-Length of its own: the body is read here to measure it. One that has not ended within
 * `HEAD_MEASURE_MS` (a stream) is cancelled, and the answer has no Content-Length, as that GET's, sent chunked, has none.
 * @example return c.req.method === "HEAD" ? await measuredForHead(c.text("Hello, Ada!")) : c.text("Hello, Ada!");
 */
async function measuredForHead(res: Response): Promise<Response> {
  if (!res.body || res.headers.has("content-length")) return res;
  const reader = res.body.getReader();
  let length = 0;
  const deadline = Date.now() + HEAD_MEASURE_MS;
  for (;;) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), Math.max(0, deadline - Date.now()))));
    const step = await Promise.race([reader.read(), late]).finally(() => clearTimeout(timer));
    if (step === "late") {
      void reader.cancel().catch(() => {});
      return new Response(null, { status: res.status, statusText: res.statusText, headers: res.headers });
    }
    if (step.done) break;
    length += step.value.byteLength;
  }
  const headers = new Headers(res.headers);
  headers.set("content-length", String(length));
  return new Response(null, { status: res.status, statusText: res.statusText, headers });
}

/** Whose body limit a 413 names: an endpoint's or an `app.web` mount's own option (said as each is elsewhere), or the gateway's setting. */
function whoseLimit(kind: "endpoint" | "web", appName: string, label: string, own: number | undefined): string | undefined {
  return own === undefined ? undefined : `${kind} "${label}" of app "${appName}" accepts (its maxBodyBytes option)`;
}

/** A body past its limit answers 413, whatever the handler made of the error its read threw (or returned meanwhile). */
function tooLarge(passed: TandemError | undefined): Response | undefined {
  return passed && Response.json(errorBody(passed), { status: passed.status });
}

/** What each of hono's body parsers expects a body to be, as a 400 names it. */
const PARSED_AS = { json: "valid JSON", parseBody: "a form its content-type describes", formData: "a form its content-type describes" } as const;

/**
 * A body the handler asks hono to parse (`c.req.json()`, `c.req.parseBody()`, `c.req.formData()`) that does not
 * parse is the client's mistake: its error carries a `400 invalid_request` naming the problem (`ownAnswer`), where it
 * was the handler's 500. A handler that catches it sees the error it saw before (a `SyntaxError`, a `TypeError`).
 * `c.req.json()` also refuses bytes that are not UTF-8, with `/v1`'s 400 (an `InvalidRequestError`), where hono's
 * read them with U+FFFD in their place and the handler got other text than was sent; and, as `/v1` does, JSON nested
 * deeper than 512 levels (parsed, 4,000,000 levels held the isolate for most of a second) and a number read as
 * Infinity (`1e999`, which the handler got as Infinity, and an echo of it failed as the endpoint's own 500).
 */
function answerUnparsedBodies(req: HonoRequest): void {
  for (const [method, what] of Object.entries(PARSED_AS) as [keyof typeof PARSED_AS, string][]) {
    const parse =
      method === "json"
        ? () => req.arrayBuffer().then((bytes) => parseJsonText(utf8Text(bytes)))
        : (req[method].bind(req) as (...args: unknown[]) => Promise<unknown>);
    const answered = (err: object, refusal: TandemError) =>
      Object.defineProperty(err, "getResponse", { value: () => Response.json(errorBody(refusal), { status: refusal.status }) });
    const parsed = (...args: unknown[]) =>
      parse(...args).catch((err: unknown) => {
        if (err instanceof InvalidRequestError) throw answered(err, err); // not UTF-8 (`utf8Text`), too deep, out of range (`parseJsonText`)
        // A body past its limit is the 413's (`tooLarge`), and any other error is not the body's.
        if (err instanceof TandemError || !(err instanceof SyntaxError || err instanceof TypeError)) throw err;
        throw answered(err, new InvalidRequestError(`request body is not ${what}: ${err.message}`));
      });
    Object.defineProperty(req, method, { value: parsed });
  }
}

/**
 * An error that carries its answer (hono's `HTTPException`, or any error with a `getResponse` method, as hono itself
 * tells one apart): answered with it, as a hono app would, keeping the headers the handler set on the context.
 */
function ownAnswer(c: Context<Web>, err: unknown): Response | undefined {
  if (typeof err !== "object" || err === null || typeof (err as { getResponse?: unknown }).getResponse !== "function") return undefined;
  const res = (err as { getResponse(): Response }).getResponse();
  return c.newResponse(res.body, res);
}

/** A WebSocket agent: an upgrade goes to the agent's Durable Object (gateway/agents.ts), with its session. */
function addAgent(web: Hono<Web>, appName: string, agent: AgentDefinition): void {
  web.all(paths.agent(appName, agent.label), async (c: Context<Web>) => {
    const vouchedBy = agent.auth === "token" ? await authorizeWeb(c.env, c.req.raw, appName, agent.label) : undefined;
    if (!asksWebSocket(c.req.raw.headers)) {
      const message = `websocket "${agent.label}" of app "${appName}" takes WebSocket connections: connect("${appName}", "${agent.label}") from the SDK, or ws://…${paths.agent(appName, agent.label)}?session=<id>`;
      return c.json(errorBody(new UpgradeRequiredError(message, { app: appName, label: agent.label })), 426, { upgrade: "websocket" });
    }
    // A handshake is a GET (RFC 6455, 4.1); the hub is sent one whatever came, so it is checked here.
    if (c.req.method !== "GET") throw new InvalidRequestError(`not a WebSocket handshake RFC 6455 allows: its method must be GET, not ${c.req.method}`);
    const sessions = c.req.queries("session") ?? [];
    if (sessions.length > 1) throw new InvalidRequestError(`"session" is given ${sessions.length} times; give it once`);
    const given = sessions[0];
    if (given !== undefined && !SESSION_ID_PATTERN.test(given)) {
      const shown = given.length > 40 ? `${given.slice(0, 40)}…` : given;
      throw new InvalidRequestError(
        `session ids are 8-128 letters, digits, '-' or '_' (got ${JSON.stringify(shown)}${given.length > 40 ? `, ${given.length} characters` : ""})`,
      );
    }
    const sessionId = given ?? crypto.randomUUID();
    const shard = shardOf(sessionId, agent.shards);
    const headers = new Headers(c.req.raw.headers);
    headers.set(HEADERS.agentApp, appName);
    headers.set(HEADERS.agentLabel, agent.label);
    headers.set(HEADERS.agentSession, sessionId);
    headers.set(HEADERS.agentShard, String(shard));
    // The hub closes the socket once this token is revoked; a client's own header of that name never reaches it.
    headers.delete(HEADERS.agentToken);
    if (vouchedBy) headers.set(HEADERS.agentToken, vouchedBy);
    return hubFor(c.env, appName, agent.label, shard, agent.shards).fetch(new Request(c.req.url, { headers }));
  });
}

/**
 * An endpoint that returns an async iterable (a generator function's chunks,
 * say) answers with Server-Sent Events: one `data:` event a chunk (JSON), then
 * `event: done`, or `event: error` with the error. A client that goes away
 * stops the iterable: a generator is returned, so its `finally` runs.
 */
function serverSentEvents(c: Context<Web>, source: GeneratorResult, yielded: string): Response {
  const iterator = chunkIterator(source);
  const encoder = new TextEncoder();
  const event = (name: string | undefined, data: unknown) => encoder.encode(`${name ? `event: ${name}\n` : ""}data: ${JSON.stringify(data)}\n\n`);
  const rc = runStore.getStore();
  // Held open from the first read until the events end: a client that goes away otherwise ends the request's work
  // with it, and the iterable was never returned (a generator's `finally` did not run), as with a function's stream
  // (gateway/stream.ts). A body never read (a HEAD request's) holds nothing.
  let ended: (() => void) | undefined;
  const end = () => ended?.();
  // In the handler's context, as its chunks are made: what its `finally` prints is its lines.
  const stop = () => (rc ? runStore.run(rc, () => Promise.resolve(iterator.return?.())) : Promise.resolve(iterator.return?.()));
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (!ended) rc?.waitUntil(new Promise<void>((resolve) => (ended = resolve)));
        try {
          const step = await (rc ? runStore.run(rc, () => Promise.resolve(iterator.next())) : iterator.next());
          if (step.done) {
            controller.enqueue(event("done", null));
            controller.close();
            end();
          } else {
            // A function's chunk was checked as the wire's; the handler's own is checked as JSON, as a returned value is.
            controller.enqueue(event(undefined, step.value instanceof EncodedResult ? step.value.encoded.json : faithfulJson(step.value, yielded)));
          }
        } catch (err) {
          controller.enqueue(event("error", forPublic(toWireError(maskedError(callFailure(err, undefined, mapStack), rc?.secretValues)))));
          controller.close();
          // A chunk the events could not carry ended them, not the iterable: it is returned, as for a client that goes
          // (before: left at its yield for good, and a remote stream it read ran on, recorded running). One that threw
          // has ended already: returning it does nothing.
          await stop().catch(() => {});
          end();
        }
      },
      async cancel() {
        try {
          await stop();
        } finally {
          end();
        }
      },
    },
    { highWaterMark: 0 },
  );
  return c.body(body, 200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
}

/**
 * `value`, which JSON writes as it is; otherwise a TypeError naming where in it JSON would not and what to send instead,
 * after `what` (`endpoint "feed" of app "shop" yielded`).
 */
function faithfulJson(value: unknown, what: string): unknown {
  const unfaithful = unfaithfulJsonIn(value);
  if (!unfaithful) return value;
  // A chunk is yielded, not returned: what to do instead in the word the handler uses.
  const instead = what.endsWith(" yielded") ? unfaithful.instead.replace(/\breturn\b/g, "yield") : unfaithful.instead;
  throw new TypeError(`${what} ${unfaithful.what}${unfaithful.path ? ` (at ${unfaithful.path})` : ""}, which ${instead}`);
}

/**
 * A web handler threw: log the stack (the console prefix says where), answer 500 without it. With `passOn` (an
 * endpoint's handler, not its set-up: a secret it lacks is the endpoint's fault), a Tandem error it let through (a
 * call it made that timed out, was refused or named no call) answers with its own code and status (504
 * `function_timeout`, 400 `invalid_request`), as `/v1` would, and is logged in one line.
 */
function failed(err: unknown, passOn = false): Response {
  const secretValues = runStore.getStore()?.secretValues;
  if (passOn && err instanceof TandemError && !(err instanceof RemoteError)) {
    const error = maskedError(err, secretValues);
    console.error(`${error.name}: ${error.message}`);
    return Response.json({ error: forPublic(toWireError(error)) }, { status: error.status });
  }
  const remote = maskedError(remoteErrorFrom(err, undefined, mapStack), secretValues) as RemoteError;
  console.error(remote.remoteStack ?? err);
  return Response.json({ error: forPublic(toWireError(remote)) }, { status: 500 });
}

/**
 * An error as a web endpoint tells it, since an endpoint may be public: its code, its message without a failed
 * container's last log lines (maybe other calls'), a function error's name; not its stack, nor its details (a
 * timed-out container's last log lines, the call's id, its plane), which only a token should read.
 */
function forPublic(error: WireError): WireError {
  return {
    code: error.code,
    message: error.code === "container_failed" ? withoutLogTail(error.message) : error.message,
    ...(error.remote ? { remote: { name: error.remote.name, message: error.remote.message } } : {}),
  };
}

function labels(app: App): string {
  return [...app.webMounts.map((m) => m.label), ...app.endpoints.map((e) => e.label), ...app.agents.map((a) => a.label)].join(", ") || "none";
}
