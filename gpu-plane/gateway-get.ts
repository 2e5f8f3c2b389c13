/**
 * Signed reads a plane makes of its gateway (a bundle, its source map, an
 * image spec), sent again when they got no answer: a kept-alive connection
 * the gateway closed as it was reused, or a gateway restarting, costs a read
 * a few tenths of a second rather than the run that needed it. `resending`
 * does the same for any request that may be sent twice.
 */
import { PLANE_DEFAULTS } from "../sdk/defaults.js";
import { GATEWAY_AUDIENCE } from "../sdk/protocol.js";
import { signRequest } from "../sdk/signing.js";

/** Sends of one read before it fails, and the pause before the first resend (doubling after). */
const TRIES = 3;
const FIRST_PAUSE_MS = 100;

/**
 * GETs `route` of the gateway at `gatewayUrl`, signed with `secret`. Throws
 * the last network error when no send got an answer; any answer, an error
 * status too, is returned as it came.
 *
 * @example const res = await gatewayGet(gatewayUrl, secret, paths.planeBundle(hash));
 */
export async function gatewayGet(gatewayUrl: string, secret: string, route: string, headers: Record<string, string> = {}): Promise<Response> {
  return resending(async () =>
    fetch(gatewayUrl + route, {
      headers: { ...headers, ...(await signRequest(secret, { audience: GATEWAY_AUDIENCE, method: "GET", path: route })) },
    }),
  );
}

/**
 * Runs `send` until it gets an answer, at most 3 times, pausing 100 ms, then 200, between: for a request that may be
 * sent twice (a read, or a content-addressed block's upload). `send` signs its request each time. Throws the last
 * network error.
 *
 * @example const res = await resending(async () => fetch(url, { method: "PUT", body, headers: await sign() }));
 */
export async function resending(send: () => Promise<Response>): Promise<Response> {
  for (let sent = 1; ; sent++) {
    try {
      return await send();
    } catch (err) {
      if (sent >= TRIES) throw err;
      await new Promise((resolve) => setTimeout(resolve, FIRST_PAUSE_MS * 2 ** (sent - 1)));
    }
  }
}

/** Why a request got no answer, in a few words: `connection refused (ECONNREFUSED)`, `no answer in 15 s`. */
export function networkReason(err: unknown, timeoutMs = PLANE_DEFAULTS.staleMs): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e.name === "TimeoutError") return `no answer in ${timeoutMs / 1000} s`;
  const code = e.cause?.code;
  const words: Record<string, string> = {
    ECONNREFUSED: "connection refused",
    ENOTFOUND: "no such host",
    ECONNRESET: "connection reset",
    EHOSTUNREACH: "host unreachable",
  };
  if (code) return words[code] ? `${words[code]} (${code})` : code;
  return e.cause?.message ?? e.message;
}
