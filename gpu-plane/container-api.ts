/**
 * A container's way to the gateway (docs/security.md). Containers have no
 * network; each gets a second unix socket beside its control socket,
 * `api.sock`, where the SDK inside it sends ordinary `/v1` requests. The plane
 * answers its own routes there (`CONTAINER_ROUTES`: a mount's commit and
 * reload), and carries the rest to the gateway, signed with the plane secret
 * and naming the container's app (`HEADERS.containerApp`, inside the
 * signature): the plane knows which app each container runs, the container
 * cannot choose. Only the route families of `CONTAINER_ROUTE_FAMILIES` go
 * through; the gateway checks the same list.
 */
import { chmod } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import { Readable } from "node:stream";
import { VOLUME_LIMITS } from "../sdk/defaults.js";
import { ForbiddenError, GatewayUnreachableError, InvalidRequestError, bodyTooLarge, errorBody, errorStatus } from "../sdk/errors.js";
import { GATEWAY_AUDIENCE, HEADERS, containerMayReach, containerRouteFamilies } from "../sdk/protocol.js";
import { signRequest } from "../sdk/signing.js";
import { networkReason, resending } from "./gateway-get.js";
import { containerRequests } from "./keep-alive.js";

/** Where the API socket is in a container's control folder, and so inside the container. */
export const API_SOCKET = "api.sock";

/** Requests to the gateway as a container of an app would send them: signed by the plane, naming the app. */
export class ContainerGateway {
  constructor(
    readonly gatewayUrl: string | Promise<string>,
    readonly secret: string,
  ) {}

  /**
   * `path` with its query; `body` bytes (none for a GET). `resend`: the request may be sent twice (a read, a
   * content-addressed block's upload), so it is sent again when its connection broke off unanswered. Throws
   * `GatewayUnreachableError` naming the gateway and why when no send got an answer; any answer is returned as it came.
   */
  async request(
    app: string,
    method: string,
    path: string,
    body?: Uint8Array,
    headers: Record<string, string> = {},
    { resend = false }: { resend?: boolean } = {},
  ): Promise<Response> {
    const gatewayUrl = await this.gatewayUrl;
    const send = async () =>
      fetch(gatewayUrl + path, {
        method,
        headers: {
          ...headers,
          ...(await signRequest(this.secret, { audience: GATEWAY_AUDIENCE, method, path, body: body ?? new Uint8Array(), containerApp: app })),
          [HEADERS.containerApp]: app,
        },
        ...(body && body.byteLength > 0 ? { body: body as Uint8Array<ArrayBuffer> } : {}),
        dispatcher: containerRequests, // as long as the gateway takes: see keep-alive.ts
      } as RequestInit);
    return (resend ? resending(send) : send()).catch((err: unknown) => {
      // As the front door answers for a gateway that did not answer: the container's SDK sends a read, or a request
      // with an idempotency key, again.
      throw new GatewayUnreachableError(`the plane could not reach the gateway at ${gatewayUrl}: ${networkReason(err)}`);
    });
  }
}

/** What the plane answers itself on a container's API socket. */
export interface ContainerApiHandlers {
  commit(volume: string): Promise<number>;
  reload(volume: string): Promise<number>;
}

const OWN_ROUTE = /^\/v1\/container\/volumes\/([^/]+)\/(commit|reload)$/;

/** Listens on `<controlDir>/api.sock` for the container of `app`; close the server when the container is gone. */
export async function openContainerApi(controlDir: string, app: string, gateway: ContainerGateway, own: ContainerApiHandlers): Promise<Server> {
  const server = createServer((req, res) => {
    void answer(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      res.writeHead(errorStatus(err), { "content-type": "application/json" }).end(JSON.stringify(errorBody(err)));
    });
  });
  const path = join(controlDir, API_SOCKET);
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(path, () => resolve()));
  await chmod(path, 0o666);
  return server;

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://container");
    const mine = OWN_ROUTE.exec(url.pathname);
    if (mine) {
      if (req.method !== "POST") throw new InvalidRequestError(`${url.pathname} takes POST`);
      req.resume();
      const volume = decodeURIComponent(mine[1]!);
      const version = await (mine[2] === "commit" ? own.commit(volume) : own.reload(volume));
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ volume, version }));
      return;
    }
    if (!containerMayReach(url.pathname, app)) {
      req.resume();
      throw new ForbiddenError(`a container reaches only ${containerRouteFamilies(app).join(", ")} through its plane, not ${url.pathname}`, { app });
    }
    const body = await readBody(req, VOLUME_LIMITS.maxContainerRequestBytes);
    const forwarded = await gateway.request(
      app,
      req.method ?? "GET",
      url.pathname + url.search,
      body,
      pick(req, ["content-type", HEADERS.protocol, HEADERS.idempotencyKey, HEADERS.freshKey]),
    );
    const headers: Record<string, string> = {};
    forwarded.headers.forEach((value, key) => {
      if (key === "content-type" || key === "content-length" || key.startsWith("tandem-")) headers[key] = value;
    });
    res.writeHead(forwarded.status, headers);
    if (!forwarded.body) return void res.end();
    await new Promise<void>((resolve, reject) => {
      Readable.fromWeb(forwarded.body as import("node:stream/web").ReadableStream<Uint8Array>)
        .on("error", reject)
        .pipe(res)
        .on("finish", resolve)
        .on("error", reject);
    });
  }
}

function pick(req: IncomingMessage, names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const value = req.headers[name];
    if (typeof value === "string") out[name] = value;
  }
  return out;
}

async function readBody(req: IncomingMessage, maxBytes: number): Promise<Uint8Array | undefined> {
  const declared = Number(req.headers["content-length"] ?? "NaN");
  if (declared > maxBytes) throw bodyTooLarge(maxBytes, declared, "a container sends through its plane");
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.byteLength;
    if (total > maxBytes) throw bodyTooLarge(maxBytes, total, "a container sends through its plane");
    chunks.push(chunk);
  }
  return total === 0 ? undefined : new Uint8Array(Buffer.concat(chunks));
}
