/**
 * Volumes over the gateway's `/v1/volumes` API, for handles outside the
 * gateway (Node programs, the CLI). A write splits each file into blocks as
 * it reads it, asks which blocks the gateway lacks and uploads only those
 * (a few at once), then commits every file in one request.
 */
import { gatewayFetch } from "./transport.js";
import { eachAtOnce, slotsOf, type Slots } from "./at-once.js";
import { VOLUME_LIMITS } from "./defaults.js";
import { GatewayUnreachableError, InvalidOptionsError, fromWireError, type WireError } from "./errors.js";
import { HttpInvoker, gatewayUnreachable, resolveGatewayUrl } from "./client.js";
import {
  HEADERS,
  PROTOCOL_VERSION,
  paths,
  type BlocksMissingAnswer,
  type VolumeChange,
  type VolumeCommitAnswer,
  type VolumeInfo,
  type VolumeListing,
} from "./protocol.js";
import { blocksOf, sha256Hex } from "./volume-blocks.js";
import type { CommitTerms, FileRead, FileUpload, VolumeBackend } from "./volume.js";

const clients = new Map<string, HttpVolumes>();

/** The HTTP backend for a gateway (option, `TANDEM_GATEWAY`, the local one) and token (option, else as `lookup` finds one). */
export function httpVolumes(gateway: string | undefined, token: string | undefined, env?: string): VolumeBackend {
  const url = resolveGatewayUrl(gateway);
  const key = `${url} ${token ?? ""} ${env ?? ""}`;
  let client = clients.get(key);
  if (!client) {
    client = new HttpVolumes(new HttpInvoker(url, { ...(token === undefined ? {} : { token }), ...(env === undefined ? {} : { env }) }));
    clients.set(key, client);
  }
  return client;
}

export class HttpVolumes implements VolumeBackend {
  constructor(readonly http: HttpInvoker) {}

  async create(name: string, existOk: boolean): Promise<VolumeInfo> {
    return (await this.http.request("POST", paths.volumes(), { name, existOk })) as VolumeInfo;
  }

  async info(name: string): Promise<VolumeInfo> {
    return (await this.http.request("GET", paths.volume(name))) as VolumeInfo;
  }

  async delete(name: string): Promise<VolumeInfo> {
    return (await this.http.request("DELETE", paths.volume(name))) as VolumeInfo;
  }

  async list(): Promise<VolumeInfo[]> {
    return ((await this.http.request("GET", paths.volumes())) as { volumes: VolumeInfo[] }).volumes;
  }

  async listdir(name: string, path: string, recursive: boolean): Promise<VolumeListing> {
    return (await this.http.request("GET", paths.volumeFiles(name, path, recursive))) as VolumeListing;
  }

  async read(name: string, path: string): Promise<FileRead> {
    const res = await this.#fetch("GET", paths.volumeFile(name, path));
    if (!res.ok || !res.body) await this.#fail(res);
    return {
      size: Number(res.headers.get("content-length") ?? 0),
      mode: parseInt(res.headers.get("tandem-file-mode") ?? "644", 8),
      version: Number(res.headers.get(HEADERS.volumeVersion) ?? 0),
      body: res.body!,
    };
  }

  async write(name: string, files: FileUpload[], changes: VolumeChange[], terms: CommitTerms): Promise<VolumeCommitAnswer> {
    // Several files at once (a directory of small files waited on one round trip after another: 2,000 took 19 s), their
    // blocks in flight together no more than `uploadConcurrency`, so memory stays as it was for one large file.
    const slots = slotsOf(VOLUME_LIMITS.uploadConcurrency);
    const puts = new Array<VolumeChange>(files.length);
    await eachAtOnce(files, VOLUME_LIMITS.uploadConcurrency, async (file, i) => void (puts[i] = await this.#upload(name, file, slots)));
    return (await this.http.request("POST", paths.volumeCommit(name), { changes: [...puts, ...changes], ...terms })) as VolumeCommitAnswer;
  }

  /** One file's blocks, each sent unless the gateway has it, as `slots` allow; its `put` change. */
  async #upload(name: string, file: FileUpload, slots: Slots): Promise<VolumeChange> {
    const blocks: string[] = [];
    let size = 0;
    const inFlight = new Set<Promise<void>>();
    let failed: unknown;
    for await (const block of blocksOf(file.source)) {
      size += block.byteLength;
      if (size > VOLUME_LIMITS.maxFileBytes) {
        throw new InvalidOptionsError(`"${file.path}" is larger than ${VOLUME_LIMITS.maxFileBytes} bytes, the largest file a volume holds`);
      }
      const hash = await sha256Hex(block);
      blocks.push(hash);
      await slots.take();
      const sending: Promise<void> = this.#sendBlock(name, hash, block)
        .catch((err: unknown) => void (failed ??= err))
        .finally(() => {
          inFlight.delete(sending);
          slots.give();
        });
      inFlight.add(sending);
      if (failed) break;
    }
    await Promise.all(inFlight);
    if (failed) throw failed;
    return { op: "put", path: file.path, blocks, size, ...(file.mode === undefined ? {} : { mode: file.mode }) };
  }

  async #sendBlock(name: string, hash: string, block: Uint8Array): Promise<void> {
    const { missing } = (await this.http.request("POST", paths.volumeBlocksMissing(name), { hashes: [hash] })) as BlocksMissingAnswer;
    if (missing.length === 0) return;
    const res = await this.#fetch("PUT", paths.volumeBlock(name, hash), block);
    if (!res.ok) await this.#fail(res);
    await res.body?.cancel();
  }

  async #fetch(method: string, path: string, body?: Uint8Array): Promise<Response> {
    const token = this.http.token;
    try {
      return await gatewayFetch(this.http.baseUrl + path, {
        method,
        headers: {
          [HEADERS.protocol]: PROTOCOL_VERSION,
          ...(token === undefined ? {} : { [HEADERS.authorization]: `Bearer ${token}` }),
          ...(body ? { "content-type": "application/octet-stream" } : {}),
        },
        ...(body ? { body: body as Uint8Array<ArrayBuffer> } : {}),
      });
    } catch (err) {
      throw gatewayUnreachable(this.http.baseUrl, err);
    }
  }

  async #fail(res: Response): Promise<never> {
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new GatewayUnreachableError(`${this.http.baseUrl} answered HTTP ${res.status} with a body that is not Tandem's JSON: ${text.slice(0, 200)}`, {
        gateway: this.http.baseUrl,
        status: res.status,
      });
    }
    if (body && typeof body === "object" && "error" in body) throw fromWireError(body.error as WireError);
    throw new GatewayUnreachableError(`${this.http.baseUrl} answered HTTP ${res.status}`, { gateway: this.http.baseUrl, status: res.status });
  }
}
