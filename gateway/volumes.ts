/**
 * Volumes at the edge: what the `/v1/volumes` routes and the SDK's `Volume`
 * inside the gateway both do. Blocks go to R2 by content (a block already
 * there is not written again, whichever file, version or volume it came
 * from); manifests and commits go to each volume's `VolumeStore`. A file's
 * bytes stream through one block at a time, both ways.
 */
import { VOLUME_LIMITS } from "../sdk/defaults.js";
import { AlreadyExistsError, fromWireError, InternalError, InvalidRequestError, NotFoundError, PayloadTooLargeError } from "../sdk/errors.js";
import {
  BLOB_KEYS,
  VOLUME_NAME_PATTERN,
  reservedVolumeNameProblem,
  volumePath,
  type VolumeChange,
  type VolumeCommitAnswer,
  type VolumeInfo,
  type VolumeListing,
  type VolumeManifest,
} from "../sdk/protocol.js";
import { blocksOf, sha256Hex, type ByteSource } from "../sdk/volume-blocks.js";
import type { Env } from "./env.js";
import { inEnvironment, lookedIn } from "./environments.js";
import { missingVolume, VOLUME_CATALOG, type ManifestFile, type Outcome } from "./volume-store.js";

/** A commit's base version and whether it overrides conflicts. */
export interface CommitTerms {
  baseVersion?: number;
  force?: boolean;
}

/** A volume's name, checked: a 400 naming the rule otherwise. */
export function checkedVolumeName(name: string): string {
  if (!VOLUME_NAME_PATTERN.test(name)) {
    throw new InvalidRequestError(`"${name}" is not a volume name: letters, digits, '-' and '_', up to 64, starting with a letter or digit`, { volume: name });
  }
  return name;
}

/** A path in a volume in its one form (`volumePath`), or a 400 saying what is wrong with it. */
export function checkedPath(given: string): string {
  const checked = volumePath(given);
  if ("problem" in checked) throw new InvalidRequestError(`path "${given}" ${checked.problem}`, { path: given });
  return checked.path;
}

/** A path a write puts a file at: checked as any path, and not holding a name reserved for the plane (a 400 naming it). */
export function checkedWritePath(given: string): string {
  const path = checkedPath(given);
  const reserved = reservedVolumeNameProblem(path);
  if (reserved) throw new InvalidRequestError(`path "${given}" ${reserved}`, { path: given });
  return path;
}

/** A copy's destination, checked: a trailing `/` is kept, since it says "into this directory", as it does to `cp`. */
function checkedDestination(given: string): string {
  const path = checkedWritePath(given);
  return path !== "" && given.endsWith("/") ? `${path}/` : path;
}

function store(env: Env, name: string) {
  return env.VOLUMES.get(env.VOLUMES.idFromName(inEnvironment(env, `volume:${checkedVolumeName(name)}`)));
}

function catalog(env: Env) {
  return env.VOLUMES.get(env.VOLUMES.idFromName(inEnvironment(env, VOLUME_CATALOG)));
}

function unwrap<T>(env: Env, outcome: Outcome<T>): T {
  if (!("error" in outcome)) return outcome.ok;
  const missing = outcome.error.code === "not_found" && outcome.error.details?.path === undefined ? outcome.error.details?.volume : undefined;
  // The object knows the volume's name, not the environment it was looked for in: said again with it.
  throw typeof missing === "string" ? missingVolume(missing, lookedIn(env)) : fromWireError(outcome.error);
}

/** Makes a volume; an existing one is answered as it is when `existOk`, else refused. */
export async function createVolume(env: Env, name: string, existOk: boolean): Promise<{ created: boolean; info: VolumeInfo }> {
  const made = unwrap(env, await store(env, name).create(name));
  if (!made.created && !existOk)
    throw new AlreadyExistsError(`volume "${name}" already exists (to use it as it is: --exist-ok, or existOk: true)`, { volume: name });
  if (!(await catalog(env).catalogAdd(name, made.info.createdAt))) {
    if (made.created) await store(env, name).drop(name);
    throw new InvalidRequestError(`this gateway holds ${VOLUME_LIMITS.maxVolumes} volumes, the most it keeps; delete one first`, {
      maxVolumes: VOLUME_LIMITS.maxVolumes,
    });
  }
  return made;
}

export async function volumeInfo(env: Env, name: string): Promise<VolumeInfo> {
  return unwrap(env, await store(env, name).info(name));
}

/** Deletes a volume's manifest (its blocks stay: other volumes may hold them). */
export async function deleteVolume(env: Env, name: string): Promise<VolumeInfo> {
  const info = unwrap(env, await store(env, name).drop(name));
  await catalog(env).catalogRemove(name);
  return info;
}

/** Every volume, by name. */
export async function listVolumes(env: Env): Promise<VolumeInfo[]> {
  const names = await catalog(env).catalogList();
  const infos: VolumeInfo[] = [];
  for (let i = 0; i < names.length; i += 32) {
    const outcomes = await Promise.all(names.slice(i, i + 32).map((name) => store(env, name).info(name)));
    for (const outcome of outcomes) if ("ok" in outcome) infos.push(outcome.ok); // a volume deleted meanwhile is left out
  }
  return infos;
}

export async function listFiles(env: Env, name: string, path: string, recursive: boolean): Promise<VolumeListing> {
  return unwrap(env, await store(env, name).list(name, checkedPath(path), recursive));
}

/** Every file of a volume with its blocks, at its latest version (what a plane mounts). */
export async function volumeManifest(env: Env, name: string): Promise<VolumeManifest> {
  return unwrap(env, await store(env, name).manifest(name));
}

/** One block's bytes, by its hash; a 404 when R2 lacks it. */
export async function readBlock(env: Env, hash: string): Promise<{ size: number; body: ReadableStream<Uint8Array> }> {
  const object = await env.BLOBS.get(BLOB_KEYS.volumeBlock(hash));
  if (!object) throw new NotFoundError(`no volume block ${hash}`, { block: hash });
  return { size: object.size, body: object.body as ReadableStream<Uint8Array> };
}

/**
 * A file's bytes as a stream that fetches one block at a time, with its
 * manifest entry and the volume version it was read at.
 */
export async function readFile(env: Env, name: string, path: string): Promise<{ version: number; file: ManifestFile; body: ReadableStream<Uint8Array> }> {
  const { version, file } = unwrap(env, await store(env, name).stat(name, checkedPath(path)));
  return { version, file, body: blockStream(env, name, file) };
}

function blockStream(env: Env, name: string, file: ManifestFile): ReadableStream<Uint8Array> {
  let next = 0;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        if (!reader) {
          if (next === file.blocks.length) return controller.close();
          const hash = file.blocks[next++]!;
          const object = await env.BLOBS.get(BLOB_KEYS.volumeBlock(hash));
          if (!object) {
            throw new InternalError(`block ${hash} of "${file.path}" in volume "${name}" is missing from blob storage`, {
              volume: name,
              path: file.path,
              block: hash,
            });
          }
          reader = object.body.getReader() as ReadableStreamDefaultReader<Uint8Array>;
        }
        const { done, value } = await reader.read();
        if (done) {
          reader = undefined;
          continue;
        }
        return controller.enqueue(value);
      }
    },
    async cancel(reason) {
      await reader?.cancel(reason);
    },
  });
}

/** Stores one block unless R2 has it: true when it was written. */
async function storeBlock(env: Env, hash: string, bytes: Uint8Array): Promise<boolean> {
  const key = BLOB_KEYS.volumeBlock(hash);
  if (await env.BLOBS.head(key)) return false;
  await env.BLOBS.put(key, bytes); // named by the hash of these very bytes, taken here: no need for R2 to hash them again
  return true;
}

/** Stores a block a client uploaded, after checking its bytes are the block it names. */
export async function putBlock(env: Env, hash: string, bytes: Uint8Array): Promise<{ hash: string; size: number; stored: boolean }> {
  if (bytes.byteLength > VOLUME_LIMITS.blockBytes) {
    throw new PayloadTooLargeError(`a block is at most ${VOLUME_LIMITS.blockBytes} bytes`, { maxBytes: VOLUME_LIMITS.blockBytes });
  }
  const actual = await sha256Hex(bytes);
  if (actual !== hash) throw new InvalidRequestError(`the body's SHA-256 is ${actual}, not the block's name ${hash}`, { block: hash });
  return { hash, size: bytes.byteLength, stored: await storeBlock(env, hash, bytes) };
}

/** Which of `hashes` R2 lacks. */
export async function missingBlocks(env: Env, hashes: string[]): Promise<string[]> {
  const unique = [...new Set(hashes)];
  const sizes = await blockSizes(env, unique);
  return unique.filter((hash) => sizes.get(hash) === undefined);
}

async function blockSizes(env: Env, hashes: string[]): Promise<Map<string, number | undefined>> {
  const sizes = new Map<string, number | undefined>();
  for (let i = 0; i < hashes.length; i += 32) {
    const slice = hashes.slice(i, i + 32);
    const heads = await Promise.all(slice.map((hash) => env.BLOBS.head(BLOB_KEYS.volumeBlock(hash))));
    slice.forEach((hash, j) => sizes.set(hash, heads[j]?.size));
  }
  return sizes;
}

/**
 * Writes `source` as the file at `path` in one commit: split into blocks as it
 * streams, each stored unless R2 has it.
 */
export async function writeFile(
  env: Env,
  name: string,
  path: string,
  source: ByteSource,
  options: CommitTerms & { mode?: number } = {},
): Promise<VolumeCommitAnswer> {
  await volumeInfo(env, name); // a missing volume is refused before any block is stored
  const change = await storeFile(env, { path, source, ...(options.mode === undefined ? {} : { mode: options.mode }) });
  return commitChecked(env, name, [change], options);
}

/** Stores a file's blocks as they stream (each unless R2 has it, one in memory at a time): its `put` change. */
export async function storeFile(env: Env, file: { path: string; source: ByteSource; mode?: number }): Promise<VolumeChange> {
  const target = checkedWritePath(file.path);
  if (target === "") throw new InvalidRequestError(`a file needs a path: the volume's root is a directory`);
  const blocks: string[] = [];
  let size = 0;
  for await (const block of blocksOf(file.source)) {
    size += block.byteLength;
    if (size > VOLUME_LIMITS.maxFileBytes) {
      throw new PayloadTooLargeError(`"${target}" is larger than ${VOLUME_LIMITS.maxFileBytes} bytes, the largest file a volume holds`, {
        maxBytes: VOLUME_LIMITS.maxFileBytes,
      });
    }
    const hash = await sha256Hex(block);
    await storeBlock(env, hash, block);
    blocks.push(hash);
  }
  return { op: "put", path: target, blocks, size, ...(file.mode === undefined ? {} : { mode: file.mode }) };
}

/** Commits changes whose blocks this isolate stored itself (`storeFile`): no need to look them up again. */
export async function commitStored(env: Env, name: string, changes: VolumeChange[], terms: CommitTerms): Promise<VolumeCommitAnswer> {
  return commitChecked(
    env,
    name,
    changes.map((change): VolumeChange => {
      if (change.op === "put") return change;
      if (change.op === "remove") return { ...change, path: checkedPath(change.path) };
      return { ...change, sources: change.sources.map(checkedPath), destination: checkedDestination(change.destination) };
    }),
    terms,
  );
}

/**
 * Publishes `changes` as one version: paths put in their one form, every
 * block a put names checked to be stored with the sizes its file's size
 * implies, then the compare-and-swap.
 */
export async function commit(env: Env, name: string, changes: VolumeChange[], terms: CommitTerms): Promise<VolumeCommitAnswer> {
  const checked = changes.map((change): VolumeChange => {
    if (change.op === "put") return { ...change, path: checkedWritePath(change.path) };
    if (change.op === "remove") return { ...change, path: checkedPath(change.path) };
    return { ...change, sources: change.sources.map(checkedPath), destination: checkedDestination(change.destination) };
  });
  if (checked.length > VOLUME_LIMITS.maxChangesPerCommit) throw tooManyChanges(checked.length);
  const puts = checked.filter((c) => c.op === "put");
  const sizes = await blockSizes(env, [...new Set(puts.flatMap((p) => p.blocks))]);
  for (const put of puts) {
    const whole = Math.floor(put.size / VOLUME_LIMITS.blockBytes);
    const expected = Math.ceil(put.size / VOLUME_LIMITS.blockBytes);
    if (put.blocks.length !== expected) {
      throw new InvalidRequestError(
        `"${put.path}": a file of ${put.size} bytes has ${expected} blocks of ${VOLUME_LIMITS.blockBytes} bytes (the last shorter), not ${put.blocks.length}`,
        { path: put.path },
      );
    }
    put.blocks.forEach((hash, i) => {
      const size = sizes.get(hash);
      if (size === undefined) throw new InvalidRequestError(`"${put.path}": block ${hash} is not uploaded (PUT it first)`, { path: put.path, block: hash });
      const want = i < whole ? VOLUME_LIMITS.blockBytes : put.size - whole * VOLUME_LIMITS.blockBytes;
      if (size !== want) throw new InvalidRequestError(`"${put.path}": block ${i} (${hash}) holds ${size} bytes, not ${want}`, { path: put.path, block: hash });
    });
  }
  return commitChecked(env, name, checked, terms);
}

async function commitChecked(env: Env, name: string, changes: VolumeChange[], terms: CommitTerms): Promise<VolumeCommitAnswer> {
  const { version } = unwrap(env, await store(env, name).commit(name, changes, terms));
  return { volume: name, version };
}

function tooManyChanges(count: number): InvalidRequestError {
  return new InvalidRequestError(`a commit carries at most ${VOLUME_LIMITS.maxChangesPerCommit} changes (this one ${count})`, {
    maxChanges: VOLUME_LIMITS.maxChangesPerCommit,
  });
}
