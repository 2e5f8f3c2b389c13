/**
 * The runner's side of the container's API socket (gpu-plane/container-api.ts):
 * the SDK's requests to the gateway go over the unix socket to the plane
 * (there is no network here), and `vol.commit()` and `vol.reload()` of a
 * mounted volume ask the plane to commit or reload its mounts.
 */
import { request } from "node:http";
import { Readable } from "node:stream";
import { fromWireError, InternalError, type WireError } from "../../sdk/errors.js";
import { CONTAINER_ENV, CONTAINER_ROUTES, type ContainerMount } from "../../sdk/protocol.js";
import { installGatewayFetch, type GatewayFetch } from "../../sdk/transport.js";
import { installMountedVolumes } from "../../sdk/volume.js";
import { IN_CONTAINER } from "../drivers/driver.js";

/** Installs the socket as the SDK's way to the gateway, and the container's mounts (from its environment). */
export function installPlaneApi(env: NodeJS.ProcessEnv): void {
  const socketPath = env[CONTAINER_ENV.apiSocket] ?? IN_CONTAINER.apiSocket;
  const send = socketFetch(socketPath);
  installGatewayFetch(send);
  const mounts = JSON.parse(env[CONTAINER_ENV.volumes] ?? "[]") as ContainerMount[];
  if (mounts.length === 0) return;
  const ask = async (path: string): Promise<number> => {
    const res = await send(`http://plane${path}`, { method: "POST" });
    const body = (await res.json()) as { version?: number; error?: WireError };
    if (body.error) throw fromWireError(body.error);
    if (!res.ok || typeof body.version !== "number") throw new InternalError(`the plane answered HTTP ${res.status} to ${path}`);
    return body.version;
  };
  installMountedVolumes({
    mounted: (name) => {
      const of = mounts.filter((m) => m.volume === name);
      return of.length === 0 ? undefined : { readOnly: of.every((m) => m.readOnly) };
    },
    commit: (name) => ask(CONTAINER_ROUTES.commit(name)),
    reload: (name) => ask(CONTAINER_ROUTES.reload(name)),
  });
}

/** A `fetch` over a unix socket: the URL's path and query are sent; its host is not. */
function socketFetch(socketPath: string): GatewayFetch {
  return (url, init) =>
    new Promise<Response>((resolve, reject) => {
      const target = new URL(url);
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((value, key) => (headers[key] = value));
      const body = init.body;
      const bytes = typeof body === "string" ? Buffer.from(body) : body instanceof Uint8Array ? body : undefined;
      if (body !== undefined && body !== null && bytes === undefined) return reject(new InternalError("the plane's socket takes bodies of text or bytes"));
      const req = request(
        {
          socketPath,
          method: init.method ?? "GET",
          path: target.pathname + target.search,
          headers: { ...headers, ...(bytes ? { "content-length": String(bytes.byteLength) } : {}) },
        },
        (res) => {
          const answer = new Headers();
          for (const [key, value] of Object.entries(res.headers)) if (typeof value === "string") answer.set(key, value);
          const status = res.statusCode ?? 500;
          const stream = status === 204 || status === 304 ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
          resolve(new Response(stream, { status, headers: answer }));
        },
      );
      req.on("error", reject);
      init.signal?.addEventListener("abort", () => req.destroy(new Error("aborted")));
      req.end(bytes);
    });
}
