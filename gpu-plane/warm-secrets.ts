/**
 * Secrets a plane asks the gateway for: a warm container's, as the plane starts
 * it (`POST /v1/planes/secrets`, naming this plane and the pool), and an
 * image's build steps', as it builds (`POST /v1/planes/image-secrets`). The
 * request is signed for the gateway; the answer, signed for this plane alone,
 * is checked (signature over the body, audience, window, nonce) before a value
 * is used. A heartbeat answer, which is not signed, never carries one.
 */
import { PLANE_DEFAULTS } from "../sdk/defaults.js";
import { InternalError, UnauthorizedError } from "../sdk/errors.js";
import type { z } from "zod";
import {
  GATEWAY_AUDIENCE,
  PLANE_IMAGE_SECRETS_ANSWER,
  PLANE_SECRETS_ANSWER,
  PlaneImageSecretsAnswerSchema,
  PlaneSecretsAnswerSchema,
  paths,
  type PlaneImageSecretsRequest,
  type PlaneSecretsRequest,
} from "../sdk/protocol.js";
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
  const what = `the secrets of ${pool.app}.${pool.function}`;
  const answer = await signedAsk(source, paths.planeSecrets(), pool.planeId, pool, PLANE_SECRETS_ANSWER, PlaneSecretsAnswerSchema, what);
  return answer.secrets;
}

/**
 * The values of the named secrets image `image.imageHash` declares for its build steps (`Image.secrets`), by name.
 * @example const named = await fetchImageSecrets({ gatewayUrl, secret }, { planeId, imageHash }); // { npm: { NPM_TOKEN: "…" } }
 */
export async function fetchImageSecrets(source: WarmSecretsSource, image: PlaneImageSecretsRequest): Promise<Record<string, Record<string, string>>> {
  const what = `the secrets of image ${image.imageHash.slice(0, 12)}`;
  const answer = await signedAsk(source, paths.planeImageSecrets(), image.planeId, image, PLANE_IMAGE_SECRETS_ANSWER, PlaneImageSecretsAnswerSchema, what);
  return answer.named;
}

/** POSTs `ask` to `route`, signed for the gateway, and parses the answer once its signature for `planeId` checks. */
async function signedAsk<S extends z.ZodType>(
  source: WarmSecretsSource,
  route: string,
  planeId: string,
  ask: unknown,
  signedAs: { method: string; path: string },
  schema: S,
  what: string,
): Promise<z.infer<S>> {
  const body = JSON.stringify(ask);
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
  if (!res.ok) throw new InternalError(`the gateway did not give ${what}: HTTP ${res.status} ${text.slice(0, 300)}`);
  const verified = await verifyRequest(source.secret, { audience: planeId, ...signedAs, body: text }, res.headers, source.nonces ?? defaultNonces);
  if (!verified.ok) throw new UnauthorizedError(`refused the answer with ${what}: ${verified.reason}`);
  return parseSignedBody(text, schema, "secrets answer");
}

const defaultNonces = new NonceCache();
