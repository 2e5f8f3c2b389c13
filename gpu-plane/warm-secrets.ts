/**
 * The secrets of a warm container, fetched from the gateway as the plane starts
 * it: a request signed for the gateway (`POST /v1/planes/secrets`, naming this
 * plane and the pool), and an answer the gateway signs for this plane alone,
 * checked (signature over the body, audience, window, nonce) before a value is
 * used. A heartbeat answer, which is not signed, never carries one.
 */
import { PLANE_DEFAULTS } from "../sdk/defaults.js";
import { InternalError, UnauthorizedError } from "../sdk/errors.js";
import { GATEWAY_AUDIENCE, PLANE_SECRETS_ANSWER, PlaneSecretsAnswerSchema, paths, type PlaneSecretsRequest } from "../sdk/protocol.js";
import { parseSignedBody } from "../sdk/signed-body.js";
import { NonceCache, signRequest, verifyRequest, type NonceStore } from "../sdk/signing.js";

/** Where the plane asks, and how it signs and checks. */
export interface WarmSecretsSource {
  gatewayUrl: string;
  /** The plane secret, shared with the gateway. */
  secret: string;
  /** Remembers the answers' nonces: an answer seen once is refused again. */
  nonces?: NonceStore;
}

/**
 * The environment (secrets included) for one container of the warm pool `pool` on plane `pool.planeId`.
 * Throws when the gateway refuses, or when its answer is not signed for this plane.
 * @example const env = await fetchWarmSecrets({ gatewayUrl, secret }, { planeId, app: "shop", function: "embed", bundleHash });
 */
export async function fetchWarmSecrets(source: WarmSecretsSource, pool: PlaneSecretsRequest): Promise<Record<string, string>> {
  const route = paths.planeSecrets();
  const body = JSON.stringify(pool);
  const res = await fetch(source.gatewayUrl + route, {
    method: "POST",
    body,
    headers: {
      "content-type": "application/json",
      ...(await signRequest(source.secret, { audience: GATEWAY_AUDIENCE, method: "POST", path: route, body })),
    },
    signal: AbortSignal.timeout(PLANE_DEFAULTS.staleMs),
  });
  const text = await res.text();
  const what = `the secrets of ${pool.app}.${pool.function}`;
  if (!res.ok) throw new InternalError(`the gateway did not give ${what}: HTTP ${res.status} ${text.slice(0, 200)}`);
  const verified = await verifyRequest(
    source.secret,
    { audience: pool.planeId, ...PLANE_SECRETS_ANSWER, body: text },
    res.headers,
    source.nonces ?? defaultNonces,
  );
  if (!verified.ok) throw new UnauthorizedError(`refused the answer with ${what}: ${verified.reason}`);
  return parseSignedBody(text, PlaneSecretsAnswerSchema, "secrets answer").secrets;
}

const defaultNonces = new NonceCache();
