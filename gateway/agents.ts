/**
 * WebSocket agents (`app.websocket`): one Durable Object per agent (app and
 * label) holds its sessions' sockets through the WebSocket Hibernation API, so
 * an idle connection costs nothing and outlives the object being evicted. A
 * session's durable state and rooms live in the object's storage, saved after
 * every handler; a socket's attachment (app, label, session, rooms) survives
 * hibernation, so a broadcast finds its room's sockets without waking anyone's
 * state. An agent with `shards` > 1 spreads its sessions over that many
 * objects by session id (`hubFor`); a broadcast is delivered by each shard to
 * its own sockets. Limits: a frame over `maxMessageBytes` closes its socket with 1009, a
 * flood (a token bucket of `maxMessagesPerSecond`) with 1008, a handler that
 * throws (or leaves state that cannot be saved) with 1011; other sockets carry
 * on. A client's close frame is answered as RFC 6455 section 7.4 asks (its
 * code echoed, or 1002 for one that may not be sent). A session with no socket
 * for `sessionTtl` seconds is deleted by the object's alarm.
 */
import { DurableObject } from "cloudflare:workers";
import type { AgentContext, AgentDefinition } from "../sdk/app.js";
import { InvalidRequestError, errorBody, remoteErrorFrom, type RemoteError } from "../sdk/errors.js";
import { maskedError } from "../sdk/secret.js";
import { AGENT_CLOSE, AGENT_PING, AGENT_PONG, HEADERS, MAX_CLOSE_REASON_BYTES, isValidCloseCode } from "../sdk/protocol.js";
import { tokenEndedHow, tokenIsLive, tokenLivenessKnown } from "./auth.js";
import { gatewayConfig, type GatewayConfig } from "./config.js";
import type { Env } from "./env.js";
import { inEnvironment } from "./environments.js";
import { sha256Hex } from "../sdk/hex.js";
import { secretEnv } from "./secret-env.js";
import { registry } from "./registry.js";
import { runStore, withCallEnv, type RunContext } from "./run-context.js";
import { ClientGone, ClientWentError, type ClientWatch } from "./client-gone.js";
export { shardOf } from "./shard.js";
import { mapStack } from "./source-map.js";

interface Attachment {
  app: string;
  label: string;
  sessionId: string;
  rooms: string[];
  /** For an agent that asks for a token: the API token that let the socket in (`HEADERS.agentToken`). */
  token?: string;
  /** The session's fingerprint, which its log lines carry (a socket accepted before it was kept has none). */
  fingerprint?: string;
}

/** Which agent and shard an object serves; kept in its storage for the alarm and broadcasts, which have no request to say. */
interface Where {
  app: string;
  label: string;
  shard: number;
}

/**
 * What a session's printed lines are tagged with: `[app/label <fingerprint>]`, never its id, which would let whoever
 * reads the terminal (or `wrangler tail`) resume the session, as its kept lines never carry it either.
 * @example linePrefix({ app: "chat", label: "room", sessionId: "s-1", rooms: [], fingerprint: "3f1a…" }) // "[chat/room 3f1a…]"
 */
function linePrefix({ app, label, fingerprint }: Attachment): string {
  return `[${app}/${label} ${fingerprint ?? "session"}]`;
}

/**
 * A session as the dashboard lists it: live while it has open sockets. Known by its fingerprint, never its id, which
 * resumes the session for whoever has it (docs/agents.md): a token that may read the dashboard may not take it over.
 */
export interface AgentSessionInfo {
  /** The first 12 hex digits of the SHA-256 of the session's id (`sessionFingerprint`). */
  fingerprint: string;
  sockets: number;
  rooms: string[];
  lastActive: number;
}

interface Session {
  state: unknown;
  rooms: string[];
  /** When its last socket closed (or it opened); what `sessionTtl` counts from. */
  lastActive: number;
}

/** A session in memory, with what storage holds for it (to skip writes that would change nothing). */
interface Loaded {
  session: Session;
  stored: string;
}

type Frame = string | ArrayBuffer | ArrayBufferView;

const ROOM_PATTERN = /^[^\s]{1,128}$/;
const encoder = new TextEncoder();
const sessionTag = (id: string) => `session:${id}`;

/** Where an agent hub keeps its count of sockets ended by close code. */
const CLOSES_KEY = "metrics:closes";

/** An agent hub's counts, as `/v1/metrics` reads them (gateway/edge-metrics.ts, `agentMetricFamilies`). */
export interface AgentHubMetrics {
  /** Sockets open now. */
  sockets: number;
  /** Sessions kept (live, or within their time to live). */
  sessions: number;
  /** Sockets ended, by close code. */
  closes: Record<string, number>;
}

/**
 * How the dashboard names a session: the first 12 hex digits of the SHA-256 of its id, which an app can work out
 * from an id it has, and nobody can turn back into one.
 * @example await sessionFingerprint("dashboard-live-1") // 12 hex digits
 */
export async function sessionFingerprint(sessionId: string): Promise<string> {
  return (await sha256Hex(sessionId)).slice(0, 12);
}

export class AgentHub extends DurableObject<Env> {
  /** Sessions whose state is in memory; after hibernation they are read again from storage. */
  readonly #sessions = new Map<string, Promise<Loaded>>();
  readonly #buckets = new WeakMap<WebSocket, { tokens: number; at: number }>();
  /** Sockets whose end has been handled: the runtime may report one both as an error and as a close. */
  readonly #endedSockets = new WeakSet<WebSocket>();
  /** The calls each socket's handlers wait on (`#socketWatch`), told when it ends. */
  readonly #watchers = new WeakMap<WebSocket, ClientGone>();
  /** Tokens being checked again beside a send (`#mayReceive`), so a broadcast asks once for each. */
  readonly #checking = new Set<string>();
  #where: Where | undefined;
  readonly #config: GatewayConfig;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#config = gatewayConfig(env); // this object's entry: handlers that call functions run with it
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(AGENT_PING, AGENT_PONG));
  }

  /** A WebSocket upgrade, forwarded by the gateway's web routes with the app, label and session in headers. */
  override async fetch(request: Request): Promise<Response> {
    // Refused before anything is stored or run: workerd would refuse it too, but only after this answered 101, by
    // which time a session was kept and onOpen had run for a socket that never opened.
    const fault = handshakeFault(request.headers);
    if (fault) return Response.json(errorBody(new InvalidRequestError(`not a WebSocket handshake RFC 6455 allows: ${fault}`)), { status: 400 });
    const app = request.headers.get(HEADERS.agentApp)!;
    const label = request.headers.get(HEADERS.agentLabel)!;
    const sessionId = request.headers.get(HEADERS.agentSession)!;
    const shard = Number(request.headers.get(HEADERS.agentShard) ?? 0);
    const agent = agentOf(app, label);
    if (this.#where?.shard !== shard) {
      this.#where = { app, label, shard };
      await this.ctx.storage.put("agent", this.#where);
    }
    const stored = await this.ctx.storage.get<Session>(`session:${sessionId}`);
    const token = request.headers.get(HEADERS.agentToken);
    const attachment: Attachment = {
      app,
      label,
      sessionId,
      rooms: stored?.rooms ?? [],
      fingerprint: await sessionFingerprint(sessionId),
      ...(token ? { token } : {}),
    };
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    let session = stored;
    if (!session) {
      // Like a handler that throws, an initialState that does closes the socket with 1011; no session is kept.
      const rc = this.#runContext(attachment);
      try {
        session = { state: runStore.run(rc, () => agent.handlers.initialState?.() ?? {}), rooms: [], lastActive: Date.now() };
      } catch (err) {
        const remote = logFailure(rc, "initialState", err);
        server.accept();
        closeWith(server, AGENT_CLOSE.handlerFailed, `initialState failed: ${remote.remoteName}: ${remote.message}`);
        return new Response(null, { status: 101, webSocket: client });
      }
    }
    session.lastActive = Date.now();
    await this.ctx.storage.put(`session:${sessionId}`, session);
    this.#sessions.set(sessionId, Promise.resolve({ session, stored: JSON.stringify(session) }));
    this.ctx.acceptWebSocket(server, [sessionTag(sessionId)]);
    server.serializeAttachment(attachment);
    this.ctx.waitUntil(this.#handle(server, attachment, agent, "onOpen", { resumed: stored !== undefined }));
    return new Response(null, { status: 101, webSocket: client });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const attachment = ws.deserializeAttachment() as Attachment;
    const agent = deployedAgent(ws, attachment);
    if (!agent) return;
    // A string's UTF-8 length is at most three bytes a character: encode it only when that could pass the limit.
    const size =
      typeof message === "string" ? (message.length * 3 <= agent.maxMessageBytes ? message.length : encoder.encode(message).length) : message.byteLength;
    if (size > agent.maxMessageBytes) return void closeWith(ws, AGENT_CLOSE.tooBig, `message too big: ${size} bytes, the limit is ${agent.maxMessageBytes}`);
    if (!this.#allow(ws, agent.maxMessagesPerSecond))
      return void closeWith(ws, AGENT_CLOSE.policyViolation, `too many messages: the limit is ${agent.maxMessagesPerSecond} a second`);
    if (attachment.token && !(await tokenIsLive(this.env, attachment.token))) return closeTokenEnded(ws, attachment.token);
    await this.#handle(ws, attachment, agent, "onMessage", typeof message === "string" ? message : new Uint8Array(message));
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    // Counted by the code answered: a client's forbidden code (2000, 65535) is a protocol error, 1002, not a label of its
    // own (before: any number a client sent became one).
    await this.#countClose(answerClose(ws, code, reason));
    await this.#ended(ws, code, reason);
  }

  /**
   * The runtime ended the socket for a protocol error (a malformed frame, one over its 32 MiB): it closes the socket
   * itself and calls this, not `webSocketClose`. The agent sees it as a connection that dropped without a close frame.
   */
  override async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    const attachment = ws.deserializeAttachment() as Attachment;
    const message = (error as Error)?.message ?? String(error);
    console.warn(`${linePrefix(attachment)} socket error: ${message}`);
    await this.#countClose(AGENT_CLOSE.abnormal);
    await this.#ended(ws, AGENT_CLOSE.abnormal, message);
  }

  /**
   * Counts a socket's end by its close code (`tandem_agent_socket_closes_total`): a close the gateway sent ends with
   * the client's answer, which repeats its code (1011 a handler's failure, 1008 and 1009 a limit); a socket that
   * dropped, 1006. Kept in storage: the object may hibernate between sockets.
   */
  async #countClose(code: number): Promise<void> {
    const closes = (await this.ctx.storage.get<Record<string, number>>(CLOSES_KEY)) ?? {};
    closes[code] = (closes[code] ?? 0) + 1;
    await this.ctx.storage.put(CLOSES_KEY, closes);
  }

  /** What `/v1/metrics` counts of this object's sockets: open now, sessions kept, and ended ones by close code. */
  async metrics(): Promise<AgentHubMetrics> {
    const [sessions, closes] = await Promise.all([this.ctx.storage.list({ prefix: "session:" }), this.ctx.storage.get<Record<string, number>>(CLOSES_KEY)]);
    const sockets = this.ctx.getWebSockets().filter((ws) => ws.readyState === WebSocket.OPEN).length;
    return { sockets, sessions: sessions.size, closes: closes ?? {} };
  }

  /**
   * A socket ended: the calls its handlers wait on are cancelled, its session's `onClose` runs once, and the session's
   * time to live starts when it was its last.
   */
  async #ended(ws: WebSocket, code: number, reason: string): Promise<void> {
    if (this.#endedSockets.has(ws)) return;
    this.#endedSockets.add(ws);
    this.#watchers.get(ws)?.tell();
    const attachment = ws.deserializeAttachment() as Attachment;
    const agent = deployedAgent(ws, attachment);
    if (!agent) return;
    await this.#handle(ws, attachment, agent, "onClose", { code, reason });
    // Its last socket: the session's time to live starts now.
    if (this.ctx.getWebSockets(sessionTag(attachment.sessionId)).every((s) => s === ws || s.readyState >= WebSocket.CLOSING)) {
      const loaded = await this.#session(attachment.sessionId);
      loaded.session.lastActive = Date.now();
      await this.#save(ws, attachment.sessionId, loaded);
      const expiry = Date.now() + agent.sessionTtl * 1000;
      const alarm = await this.ctx.storage.getAlarm();
      if (alarm === null || alarm > expiry) await this.ctx.storage.setAlarm(expiry);
    }
  }

  /** The dashboard's view: each session this object keeps, with its open sockets and rooms. */
  async sessions(): Promise<AgentSessionInfo[]> {
    const stored = await this.ctx.storage.list<Session>({ prefix: "session:" });
    return Promise.all(
      [...stored].map(async ([key, session]) => {
        const sessionId = key.slice("session:".length);
        const sockets = this.ctx.getWebSockets(sessionTag(sessionId)).filter((ws) => ws.readyState === WebSocket.OPEN).length;
        return { fingerprint: await sessionFingerprint(sessionId), sockets, rooms: session.rooms, lastActive: session.lastActive };
      }),
    );
  }

  /** Deletes the sessions that have had no socket for longer than their agent's `sessionTtl`. */
  override async alarm(): Promise<void> {
    const where = await this.#whereAmI();
    if (!where) return;
    const ttlMs = agentOf(where.app, where.label).sessionTtl * 1000;
    const now = Date.now();
    let next = Infinity;
    for (const [key, session] of await this.ctx.storage.list<Session>({ prefix: "session:" })) {
      const id = key.slice("session:".length);
      if (this.ctx.getWebSockets(sessionTag(id)).length > 0) continue; // connected: it expires after its last socket closes
      const expiry = (session.lastActive ?? 0) + ttlMs;
      if (expiry <= now) {
        await this.ctx.storage.delete(key);
        this.#sessions.delete(id);
      } else next = Math.min(next, expiry);
    }
    if (next !== Infinity) await this.ctx.storage.setAlarm(next);
  }

  /** Runs one handler with the session's context, then saves the session, whether the handler threw or not. */
  async #handle(ws: WebSocket, attachment: Attachment, agent: AgentDefinition, hook: "onOpen" | "onMessage" | "onClose", arg: unknown): Promise<void> {
    const handler = agent.handlers[hook] as ((ctx: AgentContext<unknown>, arg: unknown) => unknown) | undefined;
    if (!handler) return;
    const { sessionId } = attachment;
    const loaded = await this.#session(sessionId);
    const { session } = loaded;
    // The calls onOpen and onMessage wait on are cancelled if the socket ends meanwhile: nobody reads their answer.
    const rc: RunContext = hook === "onClose" ? this.#runContext(attachment) : { ...this.#runContext(attachment), clientGone: this.#socketWatch(ws) };
    try {
      const where = `websocket "${attachment.label}" of app "${attachment.app}"`;
      withCallEnv(rc, await secretEnv(rc, { app: attachment.app, holder: `web/${attachment.label}`, where, secrets: agent.secrets }));
      await runStore.run(rc, async () => handler(this.#context(sessionId, session), arg));
    } catch (err) {
      if (err instanceof ClientWentError) return; // its socket ended while it waited on a call: nobody to tell, nothing failed
      const remote = logFailure(rc, hook, err);
      if (hook !== "onClose") closeWith(ws, AGENT_CLOSE.handlerFailed, `${hook} failed: ${remote.remoteName}: ${remote.message}`);
    } finally {
      await runStore.run(rc, () => this.#save(ws, sessionId, loaded));
    }
  }

  /** What a handler running for a socket asks whether it ended (`RunContext.clientGone`): told by `#ended`. */
  #socketWatch(ws: WebSocket): ClientWatch {
    let watch = this.#watchers.get(ws);
    if (!watch) {
      this.#watchers.set(ws, (watch = new ClientGone()));
      if (this.#endedSockets.has(ws)) watch.tell();
    }
    return watch;
  }

  /** What a session's handlers run with: the gateway's call context, their console lines tagged and kept as the agent's. */
  #runContext(attachment: Attachment): RunContext {
    const { app, label, fingerprint } = attachment;
    return {
      env: this.env,
      config: this.#config,
      waitUntil: (p) => this.ctx.waitUntil(p),
      logPrefix: linePrefix(attachment),
      logTo: { app, function: label, callId: null, ...(fingerprint ? { session: fingerprint } : {}) },
    };
  }

  /**
   * Writes the session when it changed. State that cannot be saved (a cycle,
   * a function) closes the socket with 1011, and the session goes back to its
   * last saved state, so the session's other sockets carry on from there.
   */
  async #save(ws: WebSocket, sessionId: string, loaded: Loaded): Promise<void> {
    try {
      const now = savedForm(loaded.session);
      if (now === loaded.stored) return;
      await this.ctx.storage.put(`session:${sessionId}`, loaded.session);
      loaded.stored = now;
    } catch (err) {
      loaded.session = JSON.parse(loaded.stored) as Session;
      const why = (err as Error).message.split("\n")[0]; // V8's cycle message goes on to draw the cycle over several lines
      // Inside a handler's run context (see #handle) the console adds the session's prefix and keeps the line in the app's log.
      const prefix = runStore.getStore()?.logPrefix === undefined ? `${linePrefix(ws.deserializeAttachment() as Attachment)} ` : "";
      console.error(`${prefix}the session's state could not be saved, so it is back to its last saved state: ${(err as Error).message}`);
      closeWith(ws, AGENT_CLOSE.handlerFailed, `the session's state could not be saved: ${why}`);
    }
  }

  #session(id: string): Promise<Loaded> {
    let loaded = this.#sessions.get(id);
    if (!loaded) {
      loaded = this.ctx.storage.get<Session>(`session:${id}`).then((s) => {
        const session = s ?? { state: {}, rooms: [], lastActive: Date.now() };
        return { session, stored: JSON.stringify(session) };
      });
      this.#sessions.set(id, loaded);
    }
    return loaded;
  }

  #context(sessionId: string, session: Session): AgentContext<unknown> {
    const sockets = () => this.ctx.getWebSockets(sessionTag(sessionId));
    const setRooms = (rooms: string[]) => {
      session.rooms = rooms;
      for (const ws of sockets()) ws.serializeAttachment({ ...(ws.deserializeAttachment() as Attachment), rooms });
    };
    const checkRoom = (room: string) => {
      if (typeof room !== "string" || !ROOM_PATTERN.test(room))
        throw new TypeError(`a room's name is 1-128 characters without spaces (got ${JSON.stringify(room)})`);
    };
    return {
      sessionId,
      get state() {
        return session.state;
      },
      set state(value) {
        session.state = value;
      },
      get rooms() {
        return [...session.rooms];
      },
      send: (data) => {
        for (const ws of sockets()) if (this.#mayReceive(ws)) sendTo(ws, data);
      },
      close: (code: number = AGENT_CLOSE.normal, reason = "") => {
        for (const ws of sockets()) closeWith(ws, code, reason);
      },
      join: (room) => {
        checkRoom(room);
        if (!session.rooms.includes(room)) setRooms([...session.rooms, room]);
      },
      leave: (room) => setRooms(session.rooms.filter((r) => r !== room)),
      broadcast: async (room, data, options = {}) => {
        checkRoom(room);
        const except = options.exceptSelf ? sessionId : undefined;
        const frame = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice() : data;
        let reached = this.deliver(room, frame, except);
        const where = await this.#whereAmI();
        const agent = where && agentOf(where.app, where.label);
        if (where && agent && agent.shards > 1) {
          const others = Array.from({ length: agent.shards }, (_, i) => i).filter((i) => i !== where.shard);
          const counts = await Promise.all(others.map((i) => hubFor(this.env, where.app, where.label, i, agent.shards).deliver(room, frame, except)));
          reached += counts.reduce((a, b) => a + b, 0);
        }
        return reached;
      },
    };
  }

  /** Sends a frame to this object's sockets in `room` (not `exceptSession`'s); returns how many it reached. */
  deliver(room: string, data: string | ArrayBuffer | Uint8Array, exceptSession?: string): number {
    let reached = 0;
    for (const ws of this.ctx.getWebSockets()) {
      const to = ws.deserializeAttachment() as Attachment | null;
      if (!to?.rooms.includes(room) || to.sessionId === exceptSession) continue;
      if (this.#mayReceive(ws, to) && sendTo(ws, data)) reached++;
    }
    return reached;
  }

  /**
   * Whether a socket may be sent a frame: one let in by a token known to be revoked is closed (1008) instead. A token
   * not checked within `TOKEN_DEFAULTS.cacheMs` is checked again beside the send, so a socket that only receives is
   * closed too, at the first frame for it after that check.
   */
  #mayReceive(ws: WebSocket, { token }: Attachment = ws.deserializeAttachment() as Attachment): boolean {
    if (!token) return true;
    const live = tokenLivenessKnown(this.env, token);
    if (live === false) {
      closeTokenEnded(ws, token);
      return false;
    }
    if (live === undefined && !this.#checking.has(token)) {
      this.#checking.add(token);
      // What it learns is kept for the isolate (auth.ts), and the next frame for a revoked token's socket closes it.
      const check = tokenIsLive(this.env, token)
        .catch(() => {}) // the token store did not answer: the next frame asks again
        .finally(() => this.#checking.delete(token));
      this.ctx.waitUntil(check);
    }
    return true;
  }

  async #whereAmI(): Promise<Where | undefined> {
    this.#where ??= await this.ctx.storage.get<Where>("agent");
    return this.#where;
  }

  /** A token bucket per socket: `rate` a second, bursts of twice that. */
  #allow(ws: WebSocket, rate: number): boolean {
    const now = Date.now();
    const bucket = this.#buckets.get(ws) ?? { tokens: rate * 2, at: now };
    bucket.tokens = Math.min(rate * 2, bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
    this.#buckets.set(ws, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}

/** Whether a request asks to become a WebSocket (`Upgrade: websocket`, in any case). */
export function asksWebSocket(headers: Headers): boolean {
  return headers.get("upgrade")?.toLowerCase() === "websocket";
}

/**
 * What makes an upgrade's headers other than an RFC 6455 handshake (section 4.2.1): `Upgrade: websocket`, version 13,
 * and a key of 16 bytes in base64; undefined when they are one.
 * @example handshakeFault(new Headers({ upgrade: "websocket", "sec-websocket-version": "8" })) // "Sec-WebSocket-Version must be 13, not \"8\""
 */
export function handshakeFault(headers: Headers): string | undefined {
  if (!asksWebSocket(headers)) return "it lacks Upgrade: websocket";
  const version = headers.get("sec-websocket-version");
  if (version !== "13") return version === null ? "it lacks Sec-WebSocket-Version: 13" : `Sec-WebSocket-Version must be 13, not ${JSON.stringify(version)}`;
  const key = headers.get("sec-websocket-key");
  if (key === null) return "it lacks a Sec-WebSocket-Key";
  if (!/^[A-Za-z0-9+/]{22}==$/.test(key)) return `Sec-WebSocket-Key must be 16 bytes in base64, not ${JSON.stringify(key.slice(0, 40))}`;
  return undefined;
}

/** The object holding a session's sockets: one per agent, or one per shard, chosen by the session id. */
export function hubFor(env: Env, app: string, label: string, shard: number, shards: number): DurableObjectStub<AgentHub> {
  // One shard keeps the name an unsharded agent always had, so its sessions stay where they are.
  return env.AGENTS.get(env.AGENTS.idFromName(inEnvironment(env, shards === 1 ? `${app}/${label}` : `${app}/${label}#${shard}`)));
}

/** The socket's agent as deployed now; a socket whose agent was removed by a redeploy is closed with 1001. */
function deployedAgent(ws: WebSocket, { app, label }: Attachment): AgentDefinition | undefined {
  try {
    return agentOf(app, label);
  } catch {
    closeWith(ws, AGENT_CLOSE.goingAway, `websocket "${label}" of app "${app}" is no longer deployed`);
    return undefined;
  }
}

function agentOf(app: string, label: string): AgentDefinition {
  const agent = registry()
    .app(app)
    .agents.find((a) => a.label === label);
  if (!agent) throw new Error(`app "${app}" has no websocket "${label}"`);
  return agent;
}

/** Closes a socket whose token was revoked, or expired, after it let the socket in. */
function closeTokenEnded(ws: WebSocket, token: string): void {
  closeWith(ws, AGENT_CLOSE.policyViolation, `the token that opened this socket, ${token}, ${tokenEndedHow(token)}; connect again with another`);
}

function sendTo(ws: WebSocket, data: Frame): boolean {
  if (ws.readyState !== WebSocket.OPEN) return false;
  ws.send(ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice() : data);
  return true;
}

/**
 * Answers a client's close frame as RFC 6455 section 7.4 asks: a valid code is
 * echoed with its reason; no code at all (reported as 1005) gets 1000; a code
 * that may not be sent, or a reason over 123 bytes, gets 1002 (protocol error).
 * Returns the code answered, which the socket's end is counted by.
 */
function answerClose(ws: WebSocket, code: number, reason: string): number {
  if (code === AGENT_CLOSE.noStatus) return closeWith(ws, AGENT_CLOSE.normal, "");
  if (!isValidCloseCode(code)) return closeWith(ws, AGENT_CLOSE.protocolError, `close code ${code} may not be sent (RFC 6455 section 7.4)`);
  const bytes = encoder.encode(reason).length;
  if (bytes > MAX_CLOSE_REASON_BYTES) {
    return closeWith(ws, AGENT_CLOSE.protocolError, `a close reason is at most ${MAX_CLOSE_REASON_BYTES} bytes (this one had ${bytes})`);
  }
  return closeWith(ws, code, reason);
}

/**
 * The session as JSON, to tell whether it changed. A function in it would be left out of the JSON (so a state whose
 * only change is one would look unchanged) and cannot be stored: it is refused here, named by where it is.
 */
function savedForm(session: Session): string {
  const paths = new WeakMap<object, string>();
  return JSON.stringify(session, function (this: object, key: string, value: unknown) {
    const parent = paths.get(this);
    const at = parent ? `${parent}.${key}` : key;
    if (typeof value === "function") throw new TypeError(`a function (at ${at}) cannot be saved`);
    if (typeof value === "object" && value !== null) paths.set(value, at);
    return value;
  });
}

/**
 * Logs a handler's error in its run context, as its own lines: kept in the app's log and printed after them, with
 * their prefix, the stack mapped to the app's files and secret values masked. Returns the error as the client is told it.
 */
function logFailure(rc: RunContext, hook: string, err: unknown): RemoteError {
  const remote = maskedError(remoteErrorFrom(err, undefined, mapStack), rc.secretValues) as RemoteError;
  runStore.run(rc, () => console.error(`${hook} threw: ${remote.remoteStack ?? remote.message}`));
  return remote;
}

/** Closes a socket with a code and a reason cut to the 123 bytes a close frame allows; a closed socket is left alone. Returns the code. */
function closeWith(ws: WebSocket, code: number, reason: string): number {
  let cut = reason.slice(0, 200);
  while (encoder.encode(cut).length > MAX_CLOSE_REASON_BYTES) cut = cut.slice(0, -2) + "…";
  try {
    ws.close(code, cut);
  } catch {
    // already closed
  }
  return code;
}
