/**
 * The client side of WebSocket agents, for Node and browsers:
 * `connect(app, label)` gives a WebSocket-like object that keeps its session:
 * it reconnects with backoff when the connection drops and resumes the same
 * session (the same state) with its `sessionId`. It sends keep-alive pings the
 * edge answers without waking the session, and reconnects when they go
 * unanswered. Frames sent while it reconnects are queued and sent in order.
 */
import { resolveGatewayUrl } from "./client.js";
import { tokenFor } from "./credentials.js";
import { InvalidOptionsError } from "./errors.js";
import {
  AGENT_CLOSE,
  AGENT_FINAL_CLOSE_CODES,
  AGENT_PING,
  AGENT_PONG,
  CONNECT_TOKEN_PATTERN,
  HEADERS,
  NAME_PATTERN,
  SESSION_ID_PATTERN,
  TOKEN_PATTERN,
  paths,
} from "./protocol.js";
import { echoedText, valueText } from "./value-text.js";

export interface ConnectOptions {
  /** The gateway (default: TANDEM_GATEWAY, then a `tandem serve` running in this folder, then http://127.0.0.1:8787). */
  gateway?: string;
  /** Resume this session (same state); default: a new session with a fresh id. */
  sessionId?: string;
  /** Reconnect when the connection drops (default true). */
  reconnect?: boolean;
  /** The longest wait between reconnect attempts, in ms (default 10000); the first is 250 ms, doubling. */
  maxReconnectDelayMs?: number;
  /** How often to ping, in ms (default 30000); a ping unanswered by the next one drops the connection. 0: never. */
  pingIntervalMs?: number;
  /**
   * For an agent with `auth: "token"`. In Node: an API token (default: the one
   * found for the gateway, as `lookup` finds it), sent as `Authorization`. In a
   * browser: a connect token (`ct-…`, from `POST /v1/apps/:app/connect-token`,
   * minted by your backend), sent as `?token=`; give a function to mint a fresh
   * one for each reconnect.
   */
  token?: string | (() => string | Promise<string>);
}

type Data = string | ArrayBuffer | ArrayBufferView;

const MAX_QUEUED = 1000;

interface RawSocket {
  readyState: number;
  binaryType: string;
  send(data: Data): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: ((ev: { message?: string; error?: unknown }) => void) | null;
}
/** The browser's WebSocket takes a URL; the `ws` package also takes options (headers). */
type RawSocketClass = new (url: string, options?: { headers: Record<string, string> }) => RawSocket;

/** A message from the agent: text as a string, binary as bytes. */
export type AgentMessageEvent = Event & { data: string | Uint8Array };
/** The connection closed; `willReconnect` when the client is about to reconnect. */
export type AgentCloseEvent = Event & { code: number; reason: string; wasClean: boolean; willReconnect: boolean };
/** A connection opened; `resumed` when this client object had connected before (it reconnected). */
export type AgentOpenEvent = Event & { resumed: boolean };
/** The connection failed, or the gateway refused it (`status`: its HTTP status, where it can be read). */
export type AgentErrorEvent = Event & { message: string; error?: unknown; status?: number };

/** The events an `AgentSocket` dispatches, by type: what `addEventListener` hands each listener. */
export interface AgentSocketEventMap {
  open: AgentOpenEvent;
  message: AgentMessageEvent;
  close: AgentCloseEvent;
  error: AgentErrorEvent;
}

type ListenerOptions = Parameters<EventTarget["addEventListener"]>[2];
type AnyListener = Parameters<EventTarget["addEventListener"]>[1];

/**
 * A session with a WebSocket agent. Events: `open` (each connection, with
 * `resumed` after the first), `message`, `close` (each drop, with
 * `willReconnect`), `error`.
 */
export class AgentSocket extends EventTarget {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;

  readonly sessionId: string;
  readonly url: string;
  #socket: RawSocket | undefined;
  #closedByUser = false;
  #failures = 0;
  #connections = 0;
  #queue: Data[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #ping: ReturnType<typeof setInterval> | undefined;
  #state: number = AgentSocket.CONNECTING;
  readonly #options: Required<Omit<ConnectOptions, "gateway" | "sessionId" | "token">>;
  readonly #token: ConnectOptions["token"];
  readonly #gateway: string;

  constructor(app: string, label: string, options: ConnectOptions = {}) {
    super();
    // Checked before they make a URL: an empty app made `//label`, a URL of another host, sent the gateway's token.
    const shown = (value: unknown) => (typeof value === "string" ? echoedText(value) : valueText(value));
    if (typeof app !== "string" || !NAME_PATTERN.test(app)) throw new InvalidOptionsError(`connect: app name ${shown(app)} is not a valid name`);
    if (typeof label !== "string" || !NAME_PATTERN.test(label))
      throw new InvalidOptionsError(`connect: label ${shown(label)} is not a valid name (the websocket's label: 1-64 letters, digits, '-' or '_')`);
    if (options.sessionId !== undefined && !SESSION_ID_PATTERN.test(options.sessionId)) {
      throw new InvalidOptionsError(`connect: sessionId must be 8-128 letters, digits, '-' or '_' (got ${JSON.stringify(options.sessionId)})`);
    }
    this.sessionId = options.sessionId ?? crypto.randomUUID();
    this.#gateway = resolveGatewayUrl(options.gateway);
    this.#token = options.token;
    const url = new URL(paths.agent(app, label, this.sessionId), this.#gateway);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    this.url = url.href;
    this.#options = {
      reconnect: options.reconnect ?? true,
      maxReconnectDelayMs: options.maxReconnectDelayMs ?? 10_000,
      pingIntervalMs: options.pingIntervalMs ?? 30_000,
    };
    void this.#open();
  }

  /**
   * Listens for `open`, `message`, `close` or `error`, each listener given its own event type.
   * @example
   * chat.addEventListener("message", (e) => console.log(e.data)); // string, or Uint8Array
   */
  override addEventListener<K extends keyof AgentSocketEventMap>(
    type: K,
    listener: ((this: AgentSocket, event: AgentSocketEventMap[K]) => unknown) | null,
    options?: ListenerOptions,
  ): void;
  override addEventListener(type: string, listener: AnyListener, options?: ListenerOptions): void;
  // `never`: the two signatures above are what callers see; this one only hands the arguments on (its
  // own types differ between Node's EventTarget and workerd's).
  override addEventListener(type: string, listener: never, options?: never): void {
    super.addEventListener(type, listener, options);
  }

  override removeEventListener<K extends keyof AgentSocketEventMap>(
    type: K,
    listener: ((this: AgentSocket, event: AgentSocketEventMap[K]) => unknown) | null,
    options?: ListenerOptions,
  ): void;
  override removeEventListener(type: string, listener: AnyListener, options?: ListenerOptions): void;
  // `never`: the two signatures above are what callers see; this one only hands the arguments on (its
  // own types differ between Node's EventTarget and workerd's).
  override removeEventListener(type: string, listener: never, options?: never): void {
    super.removeEventListener(type, listener, options);
  }

  get readyState(): number {
    return this.#state;
  }

  /**
   * Sends a frame; while (re)connecting, frames queue and go out in order once open. Once closed for good, a frame is
   * dropped, as a browser's `WebSocket` drops it: the agent may close it at any moment, so a send racing its `close`
   * event must not throw (it did, and ended a Node process).
   */
  send(data: Data): void {
    if (this.#state >= AgentSocket.CLOSING) return;
    if (this.#state === AgentSocket.OPEN && this.#socket?.readyState === 1) return this.#socket.send(data);
    if (this.#queue.length >= MAX_QUEUED) throw new Error(`${MAX_QUEUED} frames are already waiting for the connection; not queueing more`);
    this.#queue.push(data);
  }

  /** Closes the connection for good (no reconnect); on a client that has closed already, does nothing, as a WebSocket's `close()` does. */
  close(code: number = AGENT_CLOSE.normal, reason = ""): void {
    if (this.#state === AgentSocket.CLOSED) return;
    this.#closedByUser = true;
    clearTimeout(this.#timer);
    clearInterval(this.#ping);
    if (this.#socket && this.#socket.readyState <= 1) {
      this.#state = AgentSocket.CLOSING;
      this.#socket.close(code, reason);
    } else {
      this.#finish(code, reason, true);
    }
  }

  async #open(): Promise<void> {
    let Socket: RawSocketClass;
    try {
      Socket = await webSocketClass();
    } catch (err) {
      return this.#fail(err);
    }
    let credentials: { url: string; headers?: Record<string, string> };
    try {
      credentials = await this.#credentials();
    } catch (err) {
      // A token function that throws while reconnecting (its backend restarting with the gateway, most often) is tried
      // again, as the connection is; on the first connection, or a token that is no token, it ends the client.
      if (!(err instanceof TokenFunctionFailed) || this.#connections === 0 || !this.#options.reconnect || this.#closedByUser)
        return this.#fail(err instanceof TokenFunctionFailed ? err.cause : err);
      this.dispatchEvent(Object.assign(new Event("error"), { message: `${err.message}; trying again`, error: err.cause }));
      return this.#retry();
    }
    if (this.#closedByUser) return;
    const socket = credentials.headers ? new Socket(credentials.url, { headers: credentials.headers }) : new Socket(credentials.url);
    socket.binaryType = "arraybuffer";
    this.#socket = socket;
    let answered = true;
    // A refused upgrade (a typo in the agent's name, say) would fail the same way on every retry: with the `ws`
    // package the answer can be read, so the gateway's message is shown and the client stops. Browsers do not
    // show it; there the client keeps retrying with backoff.
    let refused: { status: number; message: string } | undefined;
    onRefusedUpgrade(socket, (status, message) => {
      refused = { status, message: `the gateway refused the connection (HTTP ${status}): ${message}` };
      this.dispatchEvent(Object.assign(new Event("error"), { message: refused.message, status }));
    });
    socket.onopen = () => {
      this.#state = AgentSocket.OPEN;
      this.#failures = 0;
      this.dispatchEvent(Object.assign(new Event("open"), { resumed: this.#connections++ > 0 }));
      for (const data of this.#queue.splice(0)) socket.send(data);
      if (this.#options.pingIntervalMs > 0) {
        this.#ping = setInterval(() => {
          if (!answered) return socket.close(AGENT_CLOSE.pingUnanswered, "keep-alive ping unanswered"); // then reconnect
          answered = false;
          socket.send(AGENT_PING);
        }, this.#options.pingIntervalMs);
      }
    };
    socket.onmessage = (ev) => {
      if (ev.data === AGENT_PONG) {
        answered = true;
        return;
      }
      const data = typeof ev.data === "string" ? ev.data : new Uint8Array(ev.data as ArrayBuffer);
      this.dispatchEvent(Object.assign(new Event("message"), { data }));
    };
    socket.onerror = (ev) => {
      if (refused) return; // said already, with the gateway's own words
      this.dispatchEvent(Object.assign(new Event("error"), { message: ev.message ?? String(ev.error ?? "connection error"), error: ev.error }));
    };
    socket.onclose = (ev) => {
      clearInterval(this.#ping);
      const final = AGENT_FINAL_CLOSE_CODES.has(ev.code) || (refused !== undefined && refused.status < 500 && refused.status !== 408 && refused.status !== 429);
      const again = this.#options.reconnect && !this.#closedByUser && !final;
      const reason = refused?.message ?? ev.reason;
      this.dispatchEvent(Object.assign(new Event("close"), { code: ev.code, reason, wasClean: ev.wasClean, willReconnect: again }));
      if (!again) return this.#finish(ev.code, reason, false);
      this.#retry();
    };
  }

  /** Opens again after a backoff that grows with each failure in a row, up to `maxReconnectDelayMs`. */
  #retry(): void {
    this.#state = AgentSocket.CONNECTING;
    const delay = Math.min(this.#options.maxReconnectDelayMs, 250 * 2 ** this.#failures++) * (0.5 + Math.random() / 2);
    this.#timer = setTimeout(() => void this.#open(), delay);
  }

  /** The URL to open and the headers to send: a connect token goes in `?token=`, an API token in `Authorization` (Node only). */
  async #credentials(): Promise<{ url: string; headers?: Record<string, string> }> {
    let given: string | undefined;
    try {
      given = typeof this.#token === "function" ? await this.#token() : this.#token;
    } catch (err) {
      throw new TokenFunctionFailed(err);
    }
    const token = given ?? (inNode() ? tokenFor(this.#gateway) : undefined);
    if (token === undefined) return { url: this.url };
    if (CONNECT_TOKEN_PATTERN.test(token)) {
      const url = new URL(this.url);
      url.searchParams.set("token", token);
      return { url: url.href };
    }
    if (!TOKEN_PATTERN.test(token)) {
      // One that begins as a connect token is taken for one: say what it lacks, not that it should be one.
      throw new InvalidOptionsError(
        token.startsWith("ct-")
          ? "connect: token is no whole connect token (ct-<payload>.<signature>, as POST /v1/apps/:app/connect-token mints it): was it cut short?"
          : "connect: token must be an API token (tk-….ts-…) or a connect token (ct-…)",
      );
    }
    if (!inNode()) {
      throw new InvalidOptionsError(
        "connect: a browser cannot send an API token with a WebSocket (and should not hold one): give a connect token (ct-…) minted by your backend with POST /v1/apps/:app/connect-token",
      );
    }
    return { url: this.url, headers: { [HEADERS.authorization]: `Bearer ${token}` } };
  }

  /** Ends the client before a connection was made (a token that is not one, a token function that threw): `error`, then `close`, as a refused upgrade does. */
  #fail(err: unknown): void {
    const message = (err as Error).message;
    this.dispatchEvent(Object.assign(new Event("error"), { message, error: err }));
    this.#finish(AGENT_CLOSE.abnormal, message, false);
    this.dispatchEvent(Object.assign(new Event("close"), { code: AGENT_CLOSE.abnormal, reason: message, wasClean: false, willReconnect: false }));
  }

  #finish(code: number, reason: string, dispatch: boolean): void {
    this.#state = AgentSocket.CLOSED;
    this.#queue = [];
    if (dispatch) this.dispatchEvent(Object.assign(new Event("close"), { code, reason, wasClean: true, willReconnect: false }));
  }
}

/** The `token` function threw (or rejected): `cause` is what it threw. */
class TokenFunctionFailed extends Error {
  constructor(cause: unknown) {
    super(`connect: the token function threw: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/**
 * Connects to the WebSocket agent `label` of app `app`. Keep the `sessionId`
 * to resume the session later, from anywhere.
 * @example
 * const chat = connect("agent", "chat");
 * chat.addEventListener("message", (e) => console.log(e.data));
 * chat.send("hello");
 */
export function connect(app: string, label: string, options: ConnectOptions = {}): AgentSocket {
  return new AgentSocket(app, label, options);
}

/** The browser's WebSocket; in Node, the `ws` package, which (unlike Node's own) shows a refused upgrade's answer. */
async function webSocketClass(): Promise<RawSocketClass> {
  const native = (globalThis as unknown as { WebSocket?: RawSocketClass }).WebSocket;
  if (native && !inNode()) return native;
  const ws = (await import("ws")) as unknown as { default: RawSocketClass };
  return ws.default;
}

interface UpgradeAnswer {
  statusCode?: number;
  setEncoding(encoding: "utf8"): void;
  on(event: "data" | "end", listener: (chunk?: string) => void): void;
}

/**
 * Calls `refused` with the status and the gateway's error message when the
 * upgrade is answered with something other than 101 (the `ws` package only;
 * a browser's WebSocket has no such event), then drops the connection.
 */
function onRefusedUpgrade(socket: RawSocket, refused: (status: number, message: string) => void): void {
  const ws = socket as unknown as { on?: (event: "unexpected-response", listener: (req: unknown, res: UpgradeAnswer) => void) => void; terminate?: () => void };
  ws.on?.("unexpected-response", (_req, res) => {
    let body = "";
    res.setEncoding("utf8");
    res.on("data", (chunk) => (body += chunk ?? ""));
    res.on("end", () => {
      let message = body.trim().slice(0, 500) || "no message";
      try {
        message = (JSON.parse(body) as { error?: { message?: string } }).error?.message ?? message;
      } catch {
        // not the gateway's JSON: the text as it is
      }
      refused(res.statusCode ?? 0, message);
      ws.terminate?.();
    });
  });
}

function inNode(): boolean {
  return typeof process !== "undefined" && process.versions?.node !== undefined;
}
