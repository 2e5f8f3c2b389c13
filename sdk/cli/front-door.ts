/**
 * The local front door of `tandem serve`: a small HTTP proxy on the public
 * port in front of the current workerd. A reload starts a new workerd, points
 * the front door at it, and lets the old one finish its requests in flight
 * before it is stopped, so no request fails because of a reload. When the two
 * share their state (`tandem serve`'s Durable Objects, in one folder), the
 * reload holds instead (`hold`): new requests wait here while the old workerd
 * finishes and stops, and go to the new one once it is swapped in; the local
 * plane's own requests (signed) go to the old one while it still runs. It keeps
 * the body limit itself, counting the bytes as they stream: workerd answers
 * 413 and closes while the body is still being sent, and the reset that
 * follows could lose its answer (a 502 instead); here the client gets the
 * 413 and the rest of its body is read and dropped, so it can read it.
 *
 * A WebSocket stays on the workerd it was opened on; once a reload has
 * drained that workerd of its requests, the front door ends each of its
 * WebSockets with a close frame of its own, 1012 (`AGENT_CLOSE.serviceRestart`,
 * sent between two of the gateway's frames), before stopping it: the client
 * reconnects to the new version and resumes its session, rather than see the
 * connection drop without a close.
 *
 * Nor because of a kept-alive connection: workerd closes a connection that
 * has been idle for 5 s, so the front door drops its idle connections before
 * that, and sends a request once more, on a new connection, when the one it
 * was sent on turned out to be closed (see `#proxy`).
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import net from "node:net";
import type { App } from "../app.js";
import { DELIVERY_DEFAULTS, DEPLOY_LIMITS, GATEWAY_DEFAULTS, VOLUME_LIMITS } from "../defaults.js";
import {
  CALL_BODY_NOTE,
  GatewayUnreachableError,
  InternalError,
  InvalidRequestError,
  bodyTooLarge,
  errorBody,
  hostNotHere,
  missingToken,
  unsignedPlaneRequest,
  type TandemError,
} from "../errors.js";
import { AGENT_CLOSE, DASHBOARD, HEADERS, PROTOCOL_VERSION } from "../protocol.js";
import { FRAME_END_WAIT_MS, Tunnel } from "./websocket-tunnel.js";

export interface Backend {
  url: URL;
  dispose(): Promise<void>;
  /** Resolves once the work its requests left behind them is done, or after `maxMs`; without it, a retired backend gets the whole grace. */
  settled?(maxMs: number): Promise<void>;
  /** Tells the gateway that the client of the web request sent with `HEADERS.clientWatch: watch` went (gateway/client-gone.ts). */
  clientGone?(watch: string): void;
}

interface Slot {
  backend: Backend;
  /**
   * Its requests in flight: whether the client sends each again once cut (`resumable`: a reload that holds cuts reads
   * at once, calls after a moment), how serve names one a reload waits for, and whether it is the local plane's own
   * (`plane`: short, never cut, and not named as what a reload or a stop waits for).
   */
  inflight: Map<http.ServerResponse, { resumes: "read" | "call" | undefined; name: string; plane: boolean }>;
  retired: boolean;
  agent: http.Agent;
  /** Its WebSockets, each ended with a 1012 close frame before the backend stops. */
  tunnels: Set<Tunnel>;
  /** Retired and drained: stopping once its grace has passed. */
  stopping?: boolean;
  /** Resolves once the backend is stopped (`hold` waits for it). */
  stopped: Promise<void>;
  markStopped: () => void;
}

/** How long `close` gives its 503 answers to requests in flight to be written before it closes their connections. */
const ANSWER_WRITE_WAIT_MS = 500;

/** How long a retired backend may take to finish its requests in flight. */
const DRAIN_LIMIT_MS = 5 * 60_000;

/** The largest request body kept to be sent again on a new connection (a call's arguments are rarely near it). */
const REPLAY_LIMIT = 1024 * 1024;
/** How long the gateway is given to answer a body that passed its limit (its 401, 403 or 413) before the 413 comes from here. */
const VERDICT_WAIT_MS = 2_000;

/** A `/v1` body over this many bytes (or streamed) is sent on only once the gateway has let its preflight in (`#preflight`). */
const PREFLIGHT_BODY_BYTES = 64 * 1024;
/** How long a preflight the gateway let in stands, for large bodies that follow to the same path and query (a volume file sent again, say). */
const PREFLIGHT_KEEP_MS = 30_000;
/** How many preflights let in are kept at most; past it they are forgotten all at once. */
const PREFLIGHT_KEEP_MAX = 1024;

/** How much of a refused body is read and dropped, so its client can read the 413, before the connection is closed instead. */
const DISCARD_LIMIT_BYTES = 256 * 1024 * 1024;

/** An answer of the gateway's, read whole, to pass on as it is. */
interface GatewayAnswer {
  status: number;
  headers: http.OutgoingHttpHeaders;
  body: Buffer;
}

/** A body limit and whose it is, as the 413 says. */
interface BodyLimit {
  maxBytes: number;
  whose?: string;
  /** What counts towards it, where that is not plain (`CALL_BODY_NOTE`). */
  note?: string;
}

export class FrontDoor {
  #slot: Slot | undefined;
  readonly #server: http.Server;
  readonly #draining = new Set<Promise<void>>();
  /** Every WebSocket open through the door, whichever workerd it is on. */
  readonly #tunnels = new Set<Tunnel>();
  /** Requests (`preflightKey`) whose preflight the gateway let in a moment ago (`#preflight`). */
  readonly #letIn = new Set<string>();
  /** While a reload holds (`hold`): the requests and upgrades that came meanwhile, each sent on at the next `swap`. */
  #held: (() => void)[] | undefined;
  /**
   * While a reload holds: the backend it retired, which still runs until its requests in flight have ended. The local
   * plane's own requests go there meanwhile (`#runningFor`).
   */
  #retiring: Slot | undefined;
  /** Serve is stopping (`drain`): no new request is taken. */
  #stopping = false;

  /**
   * Told of every request when it ends: method, path (its query's credentials left out: `loggedPath`), the status
   * answered (undefined: none was, the request was cut first), milliseconds, and whether the answer was cut before
   * its end (the client went away, or serve stopped), and whether a plane carried it for a function's container (its
   * dict, queue or volume operations).
   */
  onRequest: ((method: string, path: string, status: number | undefined, ms: number, cut: boolean, forContainer?: boolean) => void) | undefined;

  /**
   * Told what a reload's hold waits for, by name ("POST /shop/export"): at its start, the calls in flight it cuts after
   * `resumableWaitMs` (`until: "cut"`; their clients send them again); once that has passed, the requests it goes on
   * waiting for to their end (`until: "end"`: streams, web requests).
   */
  onHoldWaiting: ((requests: string[], until: "cut" | "end") => void) | undefined;

  /** How long a hold waits for calls in flight that their clients send again (with their key), before it cuts them. */
  resumableWaitMs: number = DELIVERY_DEFAULTS.frontDoorResumableWaitMs;

  /**
   * How long a request's body may go without a byte before it is answered 408 and its connection closed: a client
   * that stopped sending holds nothing, a reload's hold included, for longer.
   */
  bodyIdleMs: number = DELIVERY_DEFAULTS.frontDoorBodyIdleMs;

  /** The gateway's body limit, applied before forwarding. */
  maxBodyBytes: number = GATEWAY_DEFAULTS.maxBodyBytes;

  /** Web endpoints' own body limits (`maxBodyBytes`), by `/<app>/<label>`: the limit there instead (`endpointBodyLimits`). */
  endpointBodyLimits: ReadonlyMap<string, BodyLimit> = new Map();

  /** Web endpoints and agents that ask for a token (`auth: "token"`), by `/<app>/<label>`: a large body there waits for a preflight (`endpointsAskingToken`). */
  endpointsAskingToken: ReadonlySet<string> = new Set();
  /**
   * Web apps and endpoints, by `/<app>/<label>` (`webMounts`): a large body to any other path of an app (an agent,
   * which answers all but a WebSocket upgrade with 426, or a path that is no app's, the gateway's 404) waits for a
   * preflight. Unset: no path is known, and none waits.
   */
  webMounts: ReadonlySet<string> | undefined;

  private constructor() {
    // A request without a Host header is refused by `#forward` and `#upgrade`, saying why: Node's own refusal is an empty 400.
    this.#server = http.createServer({ requireHostHeader: false }, (req, res) => this.#forward(withEveryAuthorization(req), res));
    // A client that waits to send its body (`Expect: 100-continue`) is told to go on only once the request goes on to
    // the gateway: one refused here (a declared length over the limit, no token) sends none of it.
    this.#server.on("checkContinue", (req: http.IncomingMessage, res: http.ServerResponse) =>
      this.#forward(withEveryAuthorization(req), res, () => res.writeContinue()),
    );
    this.#server.on("upgrade", (req, socket, head) => this.#upgrade(withEveryAuthorization(req), socket as net.Socket, head));
    this.#server.on("clientError", (err: NodeJS.ErrnoException, socket: net.Socket) => refuseUnparsed(err, socket));
    // Node closes a CONNECT's socket without a word when nothing listens for it.
    this.#server.on("connect", (req: http.IncomingMessage, socket: net.Socket) => endSocket(socket, 400, "Bad Request", notATunnel(req.url)));
    // Node's own limits: idle connections close as workerd's do; headers get a minute; the whole request none (Node's
    // 300 s would cut a large upload on a slow link), as a body has `bodyIdleMs` between two bytes instead (`#proxy`).
    this.#server.keepAliveTimeout = DELIVERY_DEFAULTS.serverIdleCloseMs;
    this.#server.headersTimeout = DELIVERY_DEFAULTS.frontDoorHeadersMs;
    this.#server.requestTimeout = 0;
  }

  /** Listens before any backend exists, so a taken port is known before workerd starts. */
  static async listen(host: string, port: number): Promise<{ door: FrontDoor; url: URL }> {
    const door = new FrontDoor();
    await new Promise<void>((resolve, reject) => {
      door.#server.once("error", (err: NodeJS.ErrnoException) =>
        reject(
          err.code === "EADDRINUSE"
            ? new Error(`port ${port} on ${host} is already in use; is another \`tandem serve\` running? Pick another with --port`)
            : hostNotHere(err, host),
        ),
      );
      door.#server.listen(port, host, () => resolve());
    });
    const address = door.#server.address() as net.AddressInfo;
    return { door, url: new URL(`http://${host}:${address.port}/`) };
  }

  /** Sends new requests to `backend`, and those a `hold` kept; the old one is stopped once its requests have finished. */
  swap(backend: Backend): void {
    const old = this.#slot;
    this.#slot = slotFor(backend);
    this.#letIn.clear(); // the new version may not have the function a preflight found
    if (old) this.#retire(old);
    this.release();
  }

  /**
   * Keeps new requests (and WebSocket upgrades) here until the next `swap`, and stops the current backend once its
   * requests have finished; resolves once it has stopped. For a backend that must not run beside the next one: two
   * workerd on one state folder each open the same Durable Objects, and neither sees what the other writes. `dead`: the
   * backend died on its own, so its requests in flight fail with it, and `onHoldWaiting` says nothing of them.
   * @example
   * await door.hold(); // the old workerd has stopped; requests wait
   * door.swap(await startWorkerd(next)); // and go to the new one
   */
  async hold(dead = false): Promise<void> {
    this.#held ??= [];
    const old = this.#slot;
    if (!old) return;
    this.#slot = undefined;
    this.#retiring = old;
    this.#retire(old);
    // Every request waits meanwhile, but the local plane's own (`#runningFor`). One its client sends again goes to the
    // new workerd when it comes again: a read (a long poll, a log follow, a page's live stream, whose clients reconnect
    // when dropped) is cut at once, a keyed call after a moment (it may end by then), answered 503 where its answer has
    // not begun (curl shows why). A stream or a web request is waited for. Serve says which.
    for (const [res, { resumes }] of old.inflight) if (resumes === "read") res.destroy();
    // `dead`: its workerd died, and what it had in flight fails with it; nothing is waited for, and nothing said.
    const calls = [...old.inflight.values()].filter((r) => r.resumes === "call").map((r) => r.name);
    if (calls.length && !dead) this.onHoldWaiting?.(calls, "cut");
    const cut = setTimeout(() => {
      for (const [res, { resumes }] of old.inflight) if (resumes) void cutOff(res, RELOAD_CUT); // only calls are left of them
      const waitedFor = [...old.inflight.values()].filter((r) => !r.resumes && !r.plane).map((r) => r.name);
      if (waitedFor.length && !dead) this.onHoldWaiting?.(waitedFor, "end");
    }, this.resumableWaitMs);
    cut.unref();
    await old.stopped;
    clearTimeout(cut);
    if (this.#retiring === old) this.#retiring = undefined;
  }

  /**
   * Stops taking requests, for a serve that is stopping: one that comes now, or that a reload held, is answered 503
   * (`gateway_unreachable`: the SDK tries it again, and finds serve gone or started again), and a read in flight is
   * cut (its client would wait on it for nothing); the local plane's own (signed) requests still pass. Resolves once
   * the other requests in flight have ended; `cut` or `close` after it answers those still in flight.
   * @example
   * const ended = door.drain(); // door.waitingFor: what it waits for
   * await Promise.race([ended, grace]);
   * await door.close();
   */
  async drain(): Promise<void> {
    this.#stopping = true;
    this.release(); // what a reload held: refused now
    const slot = this.#slot;
    if (!slot) return;
    for (const [res, { resumes }] of slot.inflight) if (resumes === "read") res.destroy();
    while (slot.inflight.size > 0) await new Promise((resolve) => setTimeout(resolve, 50));
  }

  /** The requests in flight a `drain` waits for, by name ("POST /v1/apps/shop/functions/resize/call"). */
  get waitingFor(): string[] {
    return [...(this.#slot?.inflight.values() ?? [])].filter((r) => r.resumes !== "read" && !r.plane).map((r) => r.name);
  }

  /**
   * Takes no new request (as `drain`), and ends those in flight: each is answered 503 where no answer has begun (one
   * that has, a stream, is cut). The local plane's own requests still pass: its last log lines go to the gateway.
   */
  async cut(): Promise<void> {
    this.#stopping = true;
    this.release();
    const answered = [...(this.#slot?.inflight.keys() ?? [])].map((res) => cutOff(res, STOP_CUT));
    // Written before their connections close (a moment at most: a client that reads nothing is cut).
    await Promise.race([Promise.all(answered), new Promise((resolve) => setTimeout(resolve, ANSWER_WRITE_WAIT_MS))]);
  }

  /** Stops the door: what is in flight is ended (`cut`), then the backend is stopped. */
  async close(): Promise<void> {
    await this.cut();
    this.#held = undefined; // their connections close with the server's
    // Upgraded sockets are the server's no more: ended here (cut a moment later), or its close would wait for them.
    for (const tunnel of this.#tunnels) {
      tunnel.restart(AGENT_CLOSE.goingAway, "the gateway stopped");
      setTimeout(() => tunnel.destroy(), FRAME_END_WAIT_MS).unref();
    }
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    const slot = this.#slot;
    if (slot) {
      slot.retired = true;
      slot.agent.destroy();
    }
    await Promise.allSettled([...this.#draining, slot?.backend.dispose()]);
  }

  /** Ends a `hold` with no backend to swap in: the requests it kept, and those after, get 503 until the next `swap`. */
  release(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    for (const send of held) send();
  }

  #forward(req: http.IncomingMessage, res: http.ServerResponse, goOn: () => void = () => {}): void {
    const unreadable = !isPath(req.url) ? notAPath(req.url) : lacksHost(req) ? noHost() : undefined;
    if (unreadable) {
      refuse(req, res, unreadable);
      return this.onRequest?.(req.method ?? "GET", req.url ?? "", res.statusCode, 0, false);
    }
    if (this.#stopping && !isPlaneRequest(req)) {
      res.shouldKeepAlive = false;
      refuse(req, res, new GatewayUnreachableError("tandem serve is stopping: it takes no new request; send it again once serve runs"), 503);
      return this.onRequest?.(req.method ?? "GET", loggedPath(req.url ?? "/"), res.statusCode, 0, false);
    }
    const slot = this.#held ? this.#runningFor(req) : this.#slot;
    if (this.#held && !slot) return void this.#held.push(() => (req.destroyed ? undefined : this.#forward(req, res, goOn)));
    if (!slot) {
      res.writeHead(503, { "content-type": "application/json", "retry-after": "1" });
      res.end(JSON.stringify(errorBody(new GatewayUnreachableError("the local gateway is still starting"))));
      return;
    }
    // Refused here, before the body is sent on: workerd would answer 401 or 413 and close while we still write it,
    // and its answer would be lost to the reset. Credentials come first, as the gateway checks them.
    if (needsToken(req)) {
      // The planes' routes take a plane's signature, not a token: say so rather than ask for a token they do not take.
      refuse(req, res, (req.url ?? "").startsWith("/v1/planes/") ? unsignedPlaneRequest() : missingToken());
      return this.onRequest?.(req.method ?? "GET", loggedPath(req.url ?? "/"), res.statusCode, 0, false);
    }
    const limit = this.#bodyLimit(req.url ?? "/");
    const declared = Number(req.headers["content-length"] ?? "NaN");
    const tooLarge = declared > limit.maxBytes ? bodyTooLarge(limit.maxBytes, declared, limit.whose, limit.note) : undefined;
    // A declared length over the limit is refused here too, but after the credentials, as the gateway checks them.
    const askFirst = this.#needsPreflight(req) && !this.#letIn.has(preflightKey(req));
    if (tooLarge && !askFirst) {
      refuse(req, res, tooLarge);
      return this.onRequest?.(req.method ?? "GET", loggedPath(req.url ?? "/"), res.statusCode, 0, false);
    }
    slot.inflight.set(res, {
      resumes: resumable(req),
      name: `${req.method} ${loggedPath(req.url ?? "/").split("?")[0]}`,
      plane: isPlaneRequest(req),
    });
    const started = performance.now();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      // What the client got: no status when the request was cut before its answer began (200 is only Node's default).
      const status = res.headersSent ? res.statusCode : undefined;
      const forContainer = req.headers[HEADERS.containerApp] !== undefined;
      this.onRequest?.(req.method ?? "GET", loggedPath(req.url ?? "/"), status, performance.now() - started, !res.writableFinished, forContainer);
      slot.inflight.delete(res);
      this.#maybeStop(slot);
    };
    res.on("close", release);
    if (!askFirst) {
      goOn();
      return this.#proxy(slot, req, res, limit);
    }
    void this.#preflight(slot, req).then((refused) => {
      if (refused) {
        res.writeHead(refused.status, refused.headers);
        res.end(refused.body);
        return discardRest(req, this.bodyIdleMs);
      }
      if (tooLarge) return refuse(req, res, tooLarge);
      goOn();
      this.#proxy(slot, req, res, limit);
    });
  }

  /**
   * Where a request that comes while a reload holds goes now, if anywhere: the local plane's own (signed: heartbeats,
   * log lines, bundles, its containers' requests) to the retired backend while it still runs, since a stream the
   * reload waits for can hold it for minutes, and a plane whose heartbeats and log lines wait that long counts its
   * gateway as gone (and a container waiting on the gateway would hold the stream, and so the reload, for good). Only
   * one workerd runs at a time still: once the retired one begins to stop, these wait too, until the next `swap`.
   */
  #runningFor(req: http.IncomingMessage): Slot | undefined {
    const retiring = this.#retiring;
    return isPlaneRequest(req) && retiring && !retiring.stopping ? retiring : undefined;
  }

  /**
   * The gateway's refusal of a request, asked before its large body is sent on: the same method, path, query and
   * credentials with no body and `HEADERS.preflight`. The route's guard (or a web endpoint's check of its token)
   * answers it as it would the request (401 or 403), and so do the checks a route makes of its path and query before
   * it reads a body (404 for an unknown function, 400 for a bad `?path=`); 204 means the request would get as far as its body, and nothing ran. workerd
   * answers such a refusal before it reads the body and closes, and the reset that follows can take the answer with
   * it (the client got a reset in about 1 request of 10). Any 4xx is the client's to read, passed on here; a 204 is
   * kept for `PREFLIGHT_KEEP_MS` (or until the next reload); any other answer, or none, lets the request go on, and
   * the gateway checks it as always.
   */
  async #preflight(slot: Slot, req: http.IncomingMessage): Promise<GatewayAnswer | undefined> {
    const { [HEADERS.authorization]: authorization, [HEADERS.env]: env, origin } = req.headers;
    const headers = {
      // A web endpoint's request may carry none (its connect token is in the query, or it has no credentials at all).
      ...(authorization === undefined ? {} : { [HEADERS.authorization]: authorization }),
      ...(env === undefined ? {} : { [HEADERS.env]: env }),
      // A guarded web app's refusal carries its CORS for the origin that asks, so a page it lets in can read it.
      ...(origin === undefined ? {} : { origin }),
      [HEADERS.preflight]: "1",
      "content-length": "0",
    };
    try {
      const answer = await new Promise<GatewayAnswer>((resolve, reject) => {
        const { hostname: host, port } = slot.backend.url;
        const preflight = http.request({ host, port, method: req.method, path: req.url, headers, agent: slot.agent }, (up) => {
          const chunks: Buffer[] = [];
          up.on("data", (chunk: Buffer) => chunks.push(chunk));
          up.on("end", () => resolve({ status: up.statusCode ?? 502, headers: up.headers, body: Buffer.concat(chunks) }));
          up.on("error", reject);
        });
        preflight.on("error", reject);
        preflight.end();
      });
      if (answer.status >= 400 && answer.status < 500) return answer;
      if (answer.status === 204) {
        const key = preflightKey(req);
        if (this.#letIn.size >= PREFLIGHT_KEEP_MAX) this.#letIn.clear();
        this.#letIn.add(key);
        setTimeout(() => this.#letIn.delete(key), PREFLIGHT_KEEP_MS).unref();
      }
    } catch {
      // The request itself will meet whatever stopped this one.
    }
    return undefined;
  }

  /**
   * Sends the request to workerd, and its answer back, counting a streamed
   * body against its limit (past it, the rest is not sent on and the client
   * gets 413). A request sent on a kept-alive connection that workerd closed as
   * it went out (it closes connections idle for 5 s; the reset or broken pipe
   * comes before any byte of an answer) never reached the Worker: it is sent
   * once more on a new connection, its body replayed from memory. Bodies over
   * `REPLAY_LIMIT` are not kept, and such a failure answers 502 as any other.
   */
  #proxy(slot: Slot, req: http.IncomingMessage, res: http.ServerResponse, limit: BodyLimit): void {
    // A declared length frames the body (Node refuses one beside a transfer-encoding) and was checked already: only
    // a streamed body needs counting.
    const counted = limit.maxBytes !== Infinity && req.headers["transfer-encoding"] !== undefined;
    const body: Buffer[] = [];
    let kept = 0;
    let seen = 0;
    let replayable = true;
    let bodyEnded = false;
    // Once the body passed its limit, or the gateway's answer ended before the body did (an unknown route, a
    // handler that did not read it), the rest is not sent on: the upstream request is dropped on purpose.
    let stopped = false;
    let answered = false;
    // The wait for the body's next byte (`awaitNextByte`), and the bytes it has had.
    let idle: NodeJS.Timeout | undefined;
    let received = 0;
    // A web request, a call made without a key, or a stream is named to the gateway, so that it can be told if its
    // client goes (the `.remote()` calls its handler waits on, or the call, are cancelled; a streamed answer is): workerd
    // does not see a client go while a handler runs, nor while it writes to one. One a client named is dropped.
    const watch = isWebPath(req.url ?? "/") || (isCallPath(req.url ?? "/") && req.headers[HEADERS.idempotencyKey] === undefined) ? randomUUID() : undefined;
    let headers = req.headers;
    if (watch !== undefined || headers[HEADERS.clientWatch] !== undefined) {
      headers = { ...req.headers };
      delete headers[HEADERS.clientWatch];
      if (watch !== undefined) headers[HEADERS.clientWatch] = watch;
    }
    const send = (agent: http.Agent | false): http.ClientRequest => {
      const upstream = http.request(
        { host: slot.backend.url.hostname, port: slot.backend.url.port, method: req.method, path: req.url, headers, agent },
        (up) => {
          replayable = false;
          body.length = 0;
          clearTimeout(idle); // the gateway answers: the rest of the body, if any, is its to wait for
          if (res.headersSent) return void up.resume(); // answered already: serve stopped (`close`)
          if (isRuntimeFailure(up)) {
            // workerd's own page, not the gateway's: told in the API's shape, as every other error is.
            res.writeHead(500, { "content-type": "application/json", [HEADERS.protocol]: PROTOCOL_VERSION });
            res.end(JSON.stringify(errorBody(new InternalError(RUNTIME_FAILURE))));
            up.resume();
          } else {
            res.writeHead(up.statusCode ?? 502, up.statusMessage, up.rawHeaders);
            up.pipe(res);
          }
          up.on("end", () => {
            answered = true;
            if (!req.complete) stopSending();
          });
        },
      );
      upstream.on("error", (err: NodeJS.ErrnoException) => {
        if (upstream === current && overLimit && !answered) return overLimit();
        if (upstream !== current || stopped || answered) return;
        if (agent !== false && upstream.reusedSocket && replayable && !res.headersSent && (err.code === "ECONNRESET" || err.code === "EPIPE")) {
          current = send(false); // a new connection: one from the pool could be just as stale
          for (const chunk of body) current.write(chunk);
          if (bodyEnded) current.end();
          req.resume();
          return;
        }
        if (!res.headersSent) {
          // Mid-body: workerd refused the request before reading its body (a token it does not know, say) and closed,
          // and the reset took its answer with it.
          const message = bodyEnded
            ? // Its workerd died under it (killed, crashed): the address it had is workerd's own, not one the user chose.
              `the local gateway (workerd) broke off this request before answering it (${err.code ?? err.message}); if it stopped, tandem serve starts it again: ` +
              `send the request again (a call sent with an Idempotency-Key runs once however often it is sent)`
            : `the local gateway did not answer: ${err.message}, while the request's body was still being sent; the gateway closes so on a request it refuses before reading its body, such as one with a token it does not know`;
          res.writeHead(502, { "content-type": "application/json", [HEADERS.protocol]: PROTOCOL_VERSION });
          res.end(JSON.stringify(errorBody(new GatewayUnreachableError(message))));
        } else if (!res.writableEnded) {
          res.destroy(err);
        }
      });
      return upstream;
    };
    let current = send(slot.agent);
    /**
     * The body passed its limit before any answer: the gateway is sent the chunk that passed it, then the end, and
     * gives the verdict: 401 or 403 to a request it would not take (credentials come before size), else its own 413.
     * The rest is read and dropped. A gateway that closes first, or says nothing in time, gets the 413 from here.
     */
    const handOver = (chunk: Buffer) => {
      stopped = true;
      overLimit = () => {
        clearTimeout(verdict);
        if (!res.headersSent) answer(res, bodyTooLarge(limit.maxBytes, seen, limit.whose, limit.note));
        current.destroy();
      };
      const verdict = setTimeout(overLimit, VERDICT_WAIT_MS);
      res.once("close", () => clearTimeout(verdict));
      current.end(chunk);
      discardRest(req, this.bodyIdleMs);
    };
    let overLimit: (() => void) | undefined;
    const stopSending = () => {
      if (stopped) return;
      stopped = true;
      current.destroy();
      discardRest(req, this.bodyIdleMs);
    };
    // A body that stops coming before the gateway answers (a client that hung, or a raw socket left open) is answered
    // 408 after `bodyIdleMs` without a byte, and its connection closed; it would otherwise be in flight, and hold a
    // reload, until its client gave up.
    const awaitNextByte = () => {
      clearTimeout(idle);
      if (req.complete || stopped || res.headersSent) return;
      idle = setTimeout(() => {
        stopped = true;
        current.destroy();
        res.shouldKeepAlive = false;
        answer(res, bodyStalled(this.bodyIdleMs, received, req.headers["content-length"]), 408);
      }, this.bodyIdleMs);
    };
    awaitNextByte();
    req.on("data", (chunk: Buffer) => {
      received += chunk.length;
      awaitNextByte();
      if (stopped) return;
      if (counted) {
        seen += chunk.length;
        if (seen > limit.maxBytes) {
          if (res.headersSent) {
            stopSending();
            if (!answered) res.destroy(); // the gateway had begun answering a body it could not have read whole
          } else handOver(chunk);
          return;
        }
      }
      if (replayable) {
        kept += chunk.length;
        if (kept <= REPLAY_LIMIT) body.push(chunk);
        else {
          replayable = false;
          body.length = 0;
        }
      }
      const upstream = current;
      if (!upstream.write(chunk)) {
        // The gateway reads slowly: the body is not late meanwhile.
        clearTimeout(idle);
        req.pause();
        upstream.once("drain", () => {
          req.resume();
          awaitNextByte();
        });
      }
    });
    req.on("end", () => {
      bodyEnded = true;
      clearTimeout(idle);
      if (!stopped) current.end();
    });
    // The client went away before the answer ended: tell the gateway (a streaming generator stops). The reset this
    // destroy raises is the door's own, not a stale connection's: the request is not sent again (a call ran twice).
    res.on("close", () => {
      clearTimeout(idle);
      if (res.writableFinished && answered) return;
      stopped = true;
      current.destroy(); // also when the door answered in the gateway's stead (`cutOff`)
      // Its client went before its answer ended (not an answer the door gave in the gateway's stead, as serve stops).
      if (watch !== undefined && !res.writableFinished) slot.backend.clientGone?.(watch);
    });
  }

  /** The body limit of a path: a web endpoint's own (`/<app>/<label>/…`), else the gateway's. */
  #bodyLimit(url: string): BodyLimit {
    const key = endpointKey(url);
    // A volume file's upload streams up to the largest file; the gateway holds each volume route to its own limit.
    // A block is held to its own, smaller one: one past it refused here, as the gateway would before reading it (when
    // the gateway refused it, the connection it closed mid-body read as a 502 of an unreachable gateway).
    if (VOLUME_BLOCK_PATH.test(url)) return { maxBytes: VOLUME_LIMITS.blockBytes, whose: "a volume block holds" };
    if (key === "/v1/volumes") return { maxBytes: VOLUME_LIMITS.maxFileBytes, whose: "a volume holds in one file" };
    // So does a deployment's file (a plane bundle may be larger than a call's body): its route reads up to its own limit.
    if (DEPLOYMENT_FILE_PATH.test(url)) return { maxBytes: DEPLOY_LIMITS.maxFileBytes, whose: "a deployment's file holds" };
    // A call's body says, as the gateway does, that its arguments count as they travel.
    if (CALL_BODY_PATH.test(url)) return { maxBytes: this.maxBodyBytes, note: CALL_BODY_NOTE };
    return this.endpointBodyLimits.get(key) ?? { maxBytes: this.maxBodyBytes };
  }

  /**
   * A request whose body is large enough (or streamed) to be worth a preflight first (`#preflight`): on a `/v1`
   * route with a token, or on a web endpoint that asks for one, with or without it (the gateway refuses it before
   * reading the body when its credentials will not do, as a `/v1` route does), or on a path that is no web app's or
   * endpoint's (`webMounts`).
   */
  #needsPreflight(req: http.IncomingMessage): boolean {
    const large = req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? "0") > PREFLIGHT_BODY_BYTES;
    if (!large || isPlaneRequest(req)) return false;
    const url = req.url ?? "";
    if (url.startsWith("/v1/")) return req.headers[HEADERS.authorization] !== undefined;
    const key = endpointKey(url);
    if (this.endpointsAskingToken.has(key)) return true;
    // Answered before its body is read, so asked first (nothing runs): an agent's path, or one that is no app's. The
    // CLI's own routes (`/_local`) and the dashboard's read their bodies.
    return this.webMounts !== undefined && !this.webMounts.has(key) && !/^\/_(local|tandem)([/?#]|$)/.test(url);
  }

  #upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    if (!isPath(req.url)) return endSocket(socket, 400, "Bad Request", notAPath(req.url));
    if (lacksHost(req)) return endSocket(socket, 400, "Bad Request", noHost());
    if (this.#stopping)
      return endSocket(socket, 503, "Service Unavailable", new GatewayUnreachableError("tandem serve is stopping: it takes no new connection"));
    if (this.#held) return void this.#held.push(() => (socket.destroyed ? undefined : this.#upgrade(req, socket, head)));
    const slot = this.#slot;
    if (!slot) return void socket.destroy();
    const upstream = net.connect(Number(slot.backend.url.port), slot.backend.url.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(lines.join("\r\n") + "\r\n\r\n");
      if (head.length) upstream.write(head);
      socket.pipe(upstream);
    });
    const tunnel = new Tunnel(socket, upstream);
    slot.tunnels.add(tunnel);
    this.#tunnels.add(tunnel);
    const end = () => {
      slot.tunnels.delete(tunnel);
      this.#tunnels.delete(tunnel);
      socket.destroy();
      upstream.destroy();
    };
    upstream.on("error", end);
    socket.on("error", end);
    socket.on("close", end);
    upstream.on("close", () => {
      if (!tunnel.restarting) socket.end();
    });
  }

  #retire(old: Slot): void {
    old.retired = true;
    this.#maybeStop(old);
    // A backend that never drains (a request held open for good) is stopped anyway.
    setTimeout(() => {
      if (old.inflight.size > 0) {
        old.inflight.clear();
        this.#maybeStop(old);
      }
    }, DRAIN_LIMIT_MS).unref();
  }

  #maybeStop(slot: Slot): void {
    if (!slot.retired || slot.inflight.size > 0 || slot === this.#slot || slot.stopping) return;
    slot.stopping = true;
    slot.agent.destroy();
    // What its last requests left behind them (waitUntil) finishes first; then its WebSockets are told to reconnect.
    const grace = DELIVERY_DEFAULTS.frontDoorRetireGraceMs;
    const stopping = (slot.backend.settled ? slot.backend.settled(grace) : new Promise((resolve) => setTimeout(resolve, grace)))
      .then(() => {
        for (const tunnel of slot.tunnels) tunnel.restart();
        return slot.backend.dispose();
      })
      .catch(() => {})
      .finally(() => slot.markStopped());
    this.#draining.add(stopping);
    void stopping.finally(() => this.#draining.delete(stopping));
  }
}

/**
 * Whether the client of `req` sends it again when it is cut, so that a reload need not wait for its end: a read of
 * the API (the SDK and the CLI send one again; `tandem logs -f` follows on) or of the dashboard (a page's live stream
 * reconnects), or a call, spawn or map with its Idempotency-Key (sent again with it, the gateway answers with the call
 * it made, or goes on with it). A stream, an unkeyed call and a web endpoint's request are not.
 */
function resumable(req: http.IncomingMessage): "read" | "call" | undefined {
  if (isPlaneRequest(req)) return undefined; // sent on to the workerd that runs, never cut: see `#runningFor`
  const path = (req.url ?? "/").split("?")[0]!;
  const api = path.startsWith("/v1/");
  if (req.method === "GET" || req.method === "HEAD") return api || path === DASHBOARD.base || path.startsWith(`${DASHBOARD.base}/`) ? "read" : undefined;
  return api && req.method === "POST" && req.headers[HEADERS.idempotencyKey] !== undefined ? "call" : undefined;
}

function slotFor(backend: Backend): Slot {
  // `timeout` closes a connection idle that long in the pool (a busy one only hears of it): before workerd closes it.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256, timeout: DELIVERY_DEFAULTS.frontDoorIdleSocketMs });
  let markStopped = () => {};
  const stopped = new Promise<void>((resolve) => (markStopped = resolve));
  return { backend, inflight: new Map(), retired: false, agent, tunnels: new Set(), stopped, markStopped };
}

/**
 * The body limits `app.endpoint` and `app.web` set for themselves
 * (`maxBodyBytes`), by `/<app>/<label>`, as the front door takes them.
 *
 * @example door.endpointBodyLimits = endpointBodyLimits(built.apps);
 */
export function endpointBodyLimits(apps: readonly App[]): Map<string, BodyLimit> {
  const limits = new Map<string, BodyLimit>();
  for (const app of apps) {
    for (const { label, maxBodyBytes } of [...app.webMounts, ...app.endpoints]) {
      if (maxBodyBytes === undefined) continue;
      limits.set(`/${app.name}/${label}`, { maxBytes: maxBodyBytes, whose: `endpoint "${label}" of app "${app.name}" accepts (its maxBodyBytes option)` });
    }
  }
  return limits;
}

/**
 * The web endpoints, web apps and agents that ask for a token (`auth: "token"`), by `/<app>/<label>`, as the front
 * door takes them.
 *
 * @example door.endpointsAskingToken = endpointsAskingToken(built.apps);
 */
export function endpointsAskingToken(apps: readonly App[]): Set<string> {
  const asking = new Set<string>();
  for (const app of apps) {
    for (const { label, auth } of [...app.webMounts, ...app.endpoints, ...app.agents]) if (auth === "token") asking.add(`/${app.name}/${label}`);
  }
  return asking;
}

/** The web apps and endpoints of `apps`, by `/<app>/<label>`, as the front door takes them (`FrontDoor.webMounts`). */
export function webMounts(apps: readonly App[]): Set<string> {
  return new Set(apps.flatMap((app) => [...app.webMounts, ...app.endpoints].map(({ label }) => `/${app.name}/${label}`)));
}

/**
 * A request of the local plane's own (or of its containers'), signed with the plane secret: told apart by its
 * signature header. One that only claims to be is refused by the gateway, as anywhere else.
 */
function isPlaneRequest(req: http.IncomingMessage): boolean {
  return req.headers[HEADERS.signature] !== undefined;
}

/**
 * A request the gateway refuses for want of a token before it reads a byte of its body: one with a body, on a `/v1`
 * route, with no `Authorization` and no plane signature (the planes' routes are signed instead).
 */
function needsToken(req: http.IncomingMessage): boolean {
  const hasBody = req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? "0") > 0;
  return hasBody && (req.url ?? "").startsWith("/v1/") && req.headers[HEADERS.authorization] === undefined && req.headers[HEADERS.signature] === undefined;
}

/** The first two segments of a request's path, `/<app>/<label>` for a web endpoint (`/v1/volumes` for a volume route). */
/** `PUT /v1/apps/:app/deployments/files/:hash` (`ROUTES.deploymentFile`), whatever its query. */
const DEPLOYMENT_FILE_PATH = /^\/v1\/apps\/[^/?#]+\/deployments\/files\/[^/?#]+(?:[?#]|$)/;
/** `PUT /v1/volumes/:volume/blocks/:hash` (`ROUTES.volumeBlock`), not `…/blocks/missing`, whatever its query. */
const VOLUME_BLOCK_PATH = /^\/v1\/volumes\/[^/?#]+\/blocks\/(?!missing(?:[?#]|$))[^/?#]+(?:[?#]|$)/;
const CALL_BODY_PATH = /^\/v1\/apps\/[^/?#]+\/functions\/[^/?#]+\/(?:call|spawn|map)(?:[?#]|$)/;

/**
 * Whether a path is `POST /v1/apps/:app/functions/:fn/call`'s (one made without a key is cancelled when its client goes)
 * or `…/stream`'s (a stream takes no key; its answer is cancelled when its client goes).
 */
function isCallPath(url: string): boolean {
  return /^\/v1\/apps\/[^/?#]+\/functions\/[^/?#]+\/(call|stream)(\?|$)/.test(url);
}

/** Whether a path is an app's web route (an endpoint, web app or agent): not the API, the dashboard or the CLI's own. */
function isWebPath(url: string): boolean {
  return !/^\/(v1|_tandem|_local|cdn-cgi)(\/|\?|$)/.test(url) && url !== "/";
}

function endpointKey(url: string): string {
  const [, app, label] = url.split(/[/?#]/, 3);
  return `/${app}/${label}`;
}

/**
 * The answer workerd itself gives when it ends a request the gateway's code did not answer (a handler whose promise
 * could never settle, above all): a plain-text 500 with no content type. Every answer of the gateway's own, and of
 * hono's, names its content type.
 */
function isRuntimeFailure(up: http.IncomingMessage): boolean {
  return up.statusCode === 500 && up.headers["content-type"] === undefined && up.headers["content-length"] === String("Internal Server Error".length);
}

const RUNTIME_FAILURE =
  "the gateway ended this request without an answer: the code answering it could never answer (most often a handler whose promise waits on nothing that could settle it: no timer, fetch or other I/O); tandem serve's output says which";

/**
 * A request's path and query as a log may show it: a connect token (`?token=`) and a dashboard login code (`?code=`)
 * are credentials, kept to their kind.
 * @example loggedPath("/shop/chat?token=ct-eyJ….sig") // "/shop/chat?token=ct-…"
 */
export function loggedPath(url: string): string {
  return url.replace(/([?&](?:token|code)=)([a-z]{2}-)?[^&#]*/g, "$1$2…");
}

/** What a preflight's 204 stands for: the same token and environment on the same method, path and query (a route checks its query too). */
function preflightKey(req: http.IncomingMessage): string {
  return [req.headers[HEADERS.authorization], req.headers[HEADERS.env], req.method, req.url].join("\n");
}

/** Answers with an error of the gateway's shape, with its status or `status` (503 for an unreachable gateway that is stopping). */
function answer(res: http.ServerResponse, err: TandemError, status = err.status): void {
  res.writeHead(status, { "content-type": "application/json", [HEADERS.protocol]: PROTOCOL_VERSION });
  res.end(JSON.stringify(errorBody(err)));
}

/** Why a reload (`hold`) cut a request its client sends again, as its 503 says. */
const RELOAD_CUT =
  "tandem serve is reloading the app and cut this request to let the new version start: send it again (the SDK does; a call sent again with its Idempotency-Key goes on where it was)";
/** Why a stopping serve (`drain`, `cut`) ended a request in flight, as its 503 says. */
const STOP_CUT = "tandem serve stopped before the gateway answered this request; send it again once serve runs";

/**
 * Ends a request in flight in the gateway's stead: answered 503 (`gateway_unreachable`, which the SDK sends again, and
 * which curl shows) where its answer has not begun, else cut. Resolves once the answer is written.
 */
function cutOff(res: http.ServerResponse, why: string): Promise<void> {
  if (res.headersSent) {
    res.destroy();
    return Promise.resolve();
  }
  res.shouldKeepAlive = false;
  answer(res, new GatewayUnreachableError(why), 503);
  return new Promise((resolve) => res.once("close", () => resolve()));
}

/** Refuses a request before its body is sent on, then reads what the client still sends, so it can read the answer. */
function refuse(req: http.IncomingMessage, res: http.ServerResponse, err: TandemError, status = err.status): void {
  answer(res, err, status);
  discardRest(req);
}

/**
 * Reads and drops the rest of a body nobody will use. Closing the connection
 * while the client still sends would reset it, and a client can lose the
 * answer it has not read yet; past `DISCARD_LIMIT_BYTES`, or once no byte has
 * come for `idleMs`, it is closed all the same.
 */
function discardRest(req: http.IncomingMessage, idleMs: number = DELIVERY_DEFAULTS.frontDoorBodyIdleMs): void {
  let discarded = 0;
  let idle: NodeJS.Timeout | undefined;
  const awaitNextByte = () => {
    clearTimeout(idle);
    if (!req.complete) idle = setTimeout(() => req.socket.destroy(), idleMs);
  };
  awaitNextByte();
  req.on("data", (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > DISCARD_LIMIT_BYTES) req.socket.destroy();
    awaitNextByte();
  });
  req.on("end", () => clearTimeout(idle));
  req.on("close", () => clearTimeout(idle));
  req.resume();
}

/** Why a request whose body stopped coming was answered 408 (`FrontDoor.bodyIdleMs`). */
function bodyStalled(idleMs: number, received: number, declared: string | undefined): InvalidRequestError {
  const of = declared === undefined ? "" : ` of the ${declared} its Content-Length declares`;
  return new InvalidRequestError(
    `the request's body stopped coming: no byte for ${idleMs / 1000} s after ${received} bytes${of}; tandem serve ends such a request rather than hold it open`,
  );
}

/**
 * A request with its Authorization headers joined, as `fetch` and workerd join a repeated header: Node keeps only the
 * first, so two tokens would have been read as the first alone here and as neither (a 401) once deployed.
 */
function withEveryAuthorization(req: http.IncomingMessage): http.IncomingMessage {
  const all = req.headersDistinct[HEADERS.authorization];
  if (all && all.length > 1) req.headers[HEADERS.authorization] = all.join(", ");
  return req;
}

/**
 * A request Node's parser would not take (headers past `http.maxHeaderSize`, bytes that are not HTTP) is answered in
 * the gateway's error form, `{"error": …}`, where Node would answer a bare status line; a connection the client
 * already closed is let go.
 */
function refuseUnparsed(err: NodeJS.ErrnoException, socket: net.Socket): void {
  if (err.code === "ECONNRESET" || !socket.writable) return void socket.destroy();
  const [status, reason, message] =
    err.code === "HPE_HEADER_OVERFLOW"
      ? [431, "Request Header Fields Too Large", `request headers are larger than ${http.maxHeaderSize} bytes, the most tandem serve reads`]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "Request Timeout", "the request did not arrive in time"]
        : [400, "Bad Request", `the request is not HTTP this server can read (${err.code ?? err.message})`];
  endSocket(socket, status, reason, new InvalidRequestError(message));
}

/** Whether a request's target is a path (origin-form), the only form workerd reads: it fails any other with a bare 500. */
function isPath(target: string | undefined): boolean {
  return target?.startsWith("/") ?? false;
}

/** An HTTP/1.1 request without its Host header, which HTTP/1.1 requires (RFC 9112, 3.2); HTTP/1.0 may leave it out. */
function lacksHost(req: http.IncomingMessage): boolean {
  return req.httpVersionMinor !== 0 && !req.headers.host;
}

function noHost(): InvalidRequestError {
  return new InvalidRequestError("an HTTP/1.1 request needs a Host header (Host: 127.0.0.1:<port>)");
}

function notAPath(target: string | undefined): InvalidRequestError {
  return new InvalidRequestError(`the request target must be a path (/…), not "${target ?? ""}": tandem serve is no proxy`);
}

/** A CONNECT, which asks for a tunnel: to a host (authority-form, as a proxy is asked) or, malformed, to a path. */
function notATunnel(target: string | undefined): InvalidRequestError {
  return isPath(target) ? new InvalidRequestError("CONNECT asks for a tunnel to another host: tandem serve is no proxy") : notAPath(target);
}

/** Answers on a socket that no `http.ServerResponse` holds (a request Node could not parse, an upgrade), and closes it. */
function endSocket(socket: net.Socket, status: number, reason: string, err: TandemError): void {
  const body = JSON.stringify(errorBody(err));
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
