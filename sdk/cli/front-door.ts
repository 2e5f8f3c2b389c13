/**
 * The local front door of `tandem serve`: a small HTTP proxy on the public
 * port in front of the current workerd. A reload starts a new workerd, points
 * the front door at it, and lets the old one finish its requests in flight
 * before it is stopped, so no request fails because of a reload.
 *
 * Nor because of a kept-alive connection: workerd closes a connection that
 * has been idle for 5 s, so the front door drops its idle connections before
 * that, and sends a request once more, on a new connection, when the one it
 * was sent on turned out to be closed (see `#proxy`).
 */
import http from "node:http";
import net from "node:net";
import { DELIVERY_DEFAULTS, GATEWAY_DEFAULTS } from "../defaults.js";
import { GatewayUnreachableError, bodyTooLarge, errorBody } from "../errors.js";
import { HEADERS, PROTOCOL_VERSION } from "../protocol.js";

export interface Backend {
  url: URL;
  dispose(): Promise<void>;
}

interface Slot {
  backend: Backend;
  inflight: number;
  retired: boolean;
  agent: http.Agent;
}

/** How long a retired backend may take to finish its requests in flight. */
const DRAIN_LIMIT_MS = 5 * 60_000;

/** The largest request body kept to be sent again on a new connection (a call's arguments are rarely near it). */
const REPLAY_LIMIT = 1024 * 1024;

export class FrontDoor {
  #slot: Slot | undefined;
  readonly #server: http.Server;
  readonly #draining = new Set<Promise<void>>();

  /** Told of every request when it ends: method, path, status, milliseconds. */
  onRequest: ((method: string, path: string, status: number, ms: number) => void) | undefined;

  /** The gateway's body limit, applied before forwarding. */
  maxBodyBytes: number = GATEWAY_DEFAULTS.maxBodyBytes;

  private constructor() {
    this.#server = http.createServer((req, res) => this.#forward(req, res));
    this.#server.on("upgrade", (req, socket, head) => this.#upgrade(req, socket as net.Socket, head));
    this.#server.keepAliveTimeout = 5_000;
  }

  /** Listens before any backend exists, so a taken port is known before workerd starts. */
  static async listen(host: string, port: number): Promise<{ door: FrontDoor; url: URL }> {
    const door = new FrontDoor();
    await new Promise<void>((resolve, reject) => {
      door.#server.once("error", (err: NodeJS.ErrnoException) =>
        reject(
          err.code === "EADDRINUSE"
            ? new Error(`port ${port} on ${host} is already in use; is another \`tandem serve\` running? Pick another with --port`)
            : err,
        ),
      );
      door.#server.listen(port, host, () => resolve());
    });
    const address = door.#server.address() as net.AddressInfo;
    return { door, url: new URL(`http://${host}:${address.port}/`) };
  }

  /** Sends new requests to `backend`; the old one is stopped once its requests have finished. */
  swap(backend: Backend): void {
    const old = this.#slot;
    this.#slot = slotFor(backend);
    if (!old) return;
    old.retired = true;
    this.#maybeStop(old);
    // A backend that never drains (a request held open for good) is stopped anyway.
    setTimeout(() => {
      if (old.inflight > 0) {
        old.inflight = 0;
        this.#maybeStop(old);
      }
    }, DRAIN_LIMIT_MS).unref();
  }

  async close(): Promise<void> {
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

  #forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const slot = this.#slot;
    if (!slot) {
      res.writeHead(503, { "content-type": "application/json", "retry-after": "1" });
      res.end(JSON.stringify(errorBody(new GatewayUnreachableError("the local gateway is still starting"))));
      return;
    }
    // Refused here, before the body is sent on: workerd would answer 413 and close while we still write it.
    // The body is read and dropped, so the client can finish sending it and read the answer.
    const declared = Number(req.headers["content-length"] ?? "NaN");
    if (declared > this.maxBodyBytes) {
      res.writeHead(413, { "content-type": "application/json" });
      res.end(JSON.stringify(errorBody(bodyTooLarge(this.maxBodyBytes))));
      req.resume();
      return;
    }
    slot.inflight++;
    const started = performance.now();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.onRequest?.(req.method ?? "GET", req.url ?? "/", res.statusCode, performance.now() - started);
      slot.inflight--;
      this.#maybeStop(slot);
    };
    res.on("close", release);
    this.#proxy(slot, req, res);
  }

  /**
   * Sends the request to workerd, and its answer back. A request sent on a
   * kept-alive connection that workerd closed as it went out (it closes
   * connections idle for 5 s; the reset or broken pipe comes before any byte
   * of an answer) never reached the Worker: it is sent once more on a new
   * connection, its body replayed from memory. Bodies over `REPLAY_LIMIT` are
   * not kept, and such a failure answers 502 as any other.
   */
  #proxy(slot: Slot, req: http.IncomingMessage, res: http.ServerResponse): void {
    const body: Buffer[] = [];
    let kept = 0;
    let replayable = true;
    let bodyEnded = false;
    const send = (agent: http.Agent | false): http.ClientRequest => {
      const upstream = http.request(
        { host: slot.backend.url.hostname, port: slot.backend.url.port, method: req.method, path: req.url, headers: req.headers, agent },
        (up) => {
          replayable = false;
          body.length = 0;
          res.writeHead(up.statusCode ?? 502, up.statusMessage, up.rawHeaders);
          up.pipe(res);
        },
      );
      upstream.on("error", (err: NodeJS.ErrnoException) => {
        if (upstream !== current) return;
        if (agent !== false && upstream.reusedSocket && replayable && !res.headersSent && (err.code === "ECONNRESET" || err.code === "EPIPE")) {
          current = send(false); // a new connection: one from the pool could be just as stale
          for (const chunk of body) current.write(chunk);
          if (bodyEnded) current.end();
          req.resume();
          return;
        }
        if (!res.headersSent) {
          res.writeHead(502, { "content-type": "application/json", [HEADERS.protocol]: PROTOCOL_VERSION });
          res.end(JSON.stringify(errorBody(new GatewayUnreachableError(`the local gateway did not answer: ${err.message}`))));
        } else {
          res.destroy(err);
        }
      });
      return upstream;
    };
    let current = send(slot.agent);
    req.on("data", (chunk: Buffer) => {
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
        req.pause();
        upstream.once("drain", () => req.resume());
      }
    });
    req.on("end", () => {
      bodyEnded = true;
      current.end();
    });
    // The client went away before the answer ended: tell the gateway (a streaming generator stops).
    res.on("close", () => {
      if (!res.writableFinished) current.destroy();
    });
  }

  #upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    const slot = this.#slot;
    if (!slot) return void socket.destroy();
    const upstream = net.connect(Number(slot.backend.url.port), slot.backend.url.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(lines.join("\r\n") + "\r\n\r\n");
      if (head.length) upstream.write(head);
      upstream.pipe(socket).pipe(upstream);
    });
    const end = () => {
      socket.destroy();
      upstream.destroy();
    };
    upstream.on("error", end);
    socket.on("error", end);
  }

  #maybeStop(slot: Slot): void {
    if (!slot.retired || slot.inflight > 0 || slot === this.#slot) return;
    slot.agent.destroy();
    const stopping = slot.backend.dispose().catch(() => {});
    this.#draining.add(stopping);
    void stopping.finally(() => this.#draining.delete(stopping));
  }
}

function slotFor(backend: Backend): Slot {
  // `timeout` closes a connection idle that long in the pool (a busy one only hears of it): before workerd closes it.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256, timeout: DELIVERY_DEFAULTS.frontDoorIdleSocketMs });
  return { backend, inflight: 0, retired: false, agent };
}
