/**
 * How a secret's values are kept at rest: AES-GCM (Web Crypto) under the
 * gateway's `TANDEM_SECRETS_KEY`, a fresh 96-bit IV per write, and the
 * secret's name as additional data, so a sealed value copied onto another
 * name's row does not open.
 */

/** The sealed form of one secret's values: what the store writes. */
export interface Sealed {
  iv: Uint8Array<ArrayBuffer>;
  ciphertext: Uint8Array<ArrayBuffer>;
}

const encoder = new TextEncoder();

/**
 * The AES-GCM key in `hex` (64 hex digits, as `TANDEM_SECRETS_KEY` holds it).
 * @example const key = await importSecretsKey(config.secretsKey!);
 */
export async function importSecretsKey(hex: string): Promise<CryptoKey> {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error("a secrets key is 32 bytes as 64 hex digits");
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return crypto.subtle.importKey("raw", bytes, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

/**
 * Encrypts `values` for the secret `name`.
 * @example const sealed = await sealSecret(key, "api", { API_KEY: "…" });
 */
export async function sealSecret(key: CryptoKey, name: string, values: Record<string, string>): Promise<Sealed> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ciphertext = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: encoder.encode(name) }, key, encoder.encode(JSON.stringify(values)));
  return { iv, ciphertext: new Uint8Array(ciphertext) };
}

/**
 * Decrypts the values of the secret `name`. Throws when the key is not the one
 * it was sealed with, or the row was altered or belongs to another name.
 * @example const { API_KEY } = await openSecret(key, "api", sealed);
 */
export async function openSecret(key: CryptoKey, name: string, sealed: Sealed): Promise<Record<string, string>> {
  const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: sealed.iv, additionalData: encoder.encode(name) }, key, sealed.ciphertext);
  return JSON.parse(new TextDecoder().decode(plain)) as Record<string, string>;
}
