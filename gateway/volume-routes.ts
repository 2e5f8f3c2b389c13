/**
 * `/v1/volumes`: volumes and their files over HTTP, for the SDK outside the
 * gateway, the CLI and other languages (docs/volumes.md). Reading needs a
 * token of scope `call`, and so does writing files; making and deleting
 * volumes needs `deploy`. Volumes belong to the whole gateway, not to an app:
 * a token restricted to apps reaches none. Credentials, then sizes, are
 * checked before a body is read; a file streams through both ways.
 */
import { Hono, type Context } from "hono";
import { VOLUME_LIMITS } from "../sdk/defaults.js";
import { InvalidRequestError, PayloadTooLargeError } from "../sdk/errors.js";
import {
  BLOCK_HASH_PATTERN,
  BlocksMissingRequestSchema,
  HEADERS,
  ROUTES,
  VolumeCommitRequestSchema,
  VolumeCopyRequestSchema,
  VolumeCreateRequestSchema,
  type BlockPutAnswer,
  type BlocksMissingAnswer,
  type TokenScope,
  type VolumeCommitAnswer,
} from "../sdk/protocol.js";
import { gatewayWideGuard, type GuardOptions } from "./auth.js";
import { limitBody, passPreflight, readBodyBytes, readJsonBody } from "./body.js";
import type { RouteEnv } from "./env.js";
import { onceEach } from "./query.js";
import {
  checkedVolumeName,
  commit,
  createVolume,
  deleteVolume,
  listFiles,
  listVolumes,
  missingBlocks,
  putBlock,
  readBlock,
  readFile,
  volumeInfo,
  volumeManifest,
  writeFile,
  type CommitTerms,
} from "./volumes.js";

type Ctx = Context<RouteEnv>;

/** A token of at least `scope` that reaches every app: volumes are shared by all of them. */
const volumeGuard = (scope: TokenScope, options: Omit<GuardOptions, "check"> = {}) => gatewayWideGuard(scope, "volumes", options);

export function volumeRoutes(): Hono<RouteEnv> {
  const api = new Hono<RouteEnv>();

  api.get(ROUTES.volumes, volumeGuard("call"), async (c) => c.json({ volumes: await listVolumes(c.env) }));

  api.post(ROUTES.volumes, volumeGuard("deploy"), async (c) => {
    const body = await readJsonBody(c.req.raw, VolumeCreateRequestSchema, c.var.config.maxBodyBytes);
    const { created, info } = await createVolume(c.env, body.name, body.existOk ?? false);
    return c.json(info, created ? 201 : 200);
  });

  api.get(ROUTES.volume, volumeGuard("call"), async (c) => c.json(await volumeInfo(c.env, volumeOf(c))));

  api.delete(ROUTES.volume, volumeGuard("deploy"), async (c) => c.json(await deleteVolume(c.env, volumeOf(c))));

  api.get(ROUTES.volumeFiles, volumeGuard("call"), async (c) => {
    takesQuery(c, ["path", "recursive"]);
    const listing = await listFiles(c.env, volumeOf(c), pathQuery(c) ?? "", flag(c, "recursive"));
    c.header(HEADERS.volumeVersion, String(listing.version));
    return c.json(listing);
  });

  api.delete(ROUTES.volumeFiles, volumeGuard("call"), async (c) => {
    takesQuery(c, ["path", "recursive", "baseVersion", "force"]);
    const path = requiredPath(c);
    const answer = await commit(c.env, volumeOf(c), [{ op: "remove", path, recursive: flag(c, "recursive") }], commitTerms(c));
    return committed(c, answer);
  });

  api.get(ROUTES.volumeFile, volumeGuard("call"), async (c) => {
    takesQuery(c, ["path"]);
    const { version, file, body } = await readFile(c.env, volumeOf(c), requiredPath(c));
    // A fixed length, so a client knows the size (a progress bar) and a cut-off download shows as one.
    const sized = new FixedLengthStream(file.size);
    void body.pipeTo(sized.writable).catch(() => {});
    return c.body(sized.readable, 200, {
      "content-type": "application/octet-stream",
      [HEADERS.volumeVersion]: String(version),
      "tandem-file-mode": file.mode.toString(8),
    });
  });

  api.put(ROUTES.volumeFile, volumeGuard("call", { checksBeforeBody: true }), async (c) => {
    takesQuery(c, ["path", "baseVersion", "force", "mode"]);
    const name = volumeOf(c);
    const path = requiredPath(c);
    const terms = commitTerms(c);
    const mode = modeOf(c);
    const declared = Number(c.req.header("content-length") ?? "NaN");
    if (declared > VOLUME_LIMITS.maxFileBytes) throw fileTooLarge(declared);
    passPreflight(c.req.raw);
    const limited = c.req.raw.body ? limitBody(c.req.raw, VOLUME_LIMITS.maxFileBytes, "a volume holds in one file") : undefined;
    try {
      const answer = await writeFile(c.env, name, path, limited?.request.body ?? new Uint8Array(), { ...terms, ...(mode === undefined ? {} : { mode }) });
      return committed(c, answer);
    } catch (err) {
      throw limited?.passed() ?? err;
    }
  });

  api.post(ROUTES.volumeCopy, volumeGuard("call"), async (c) => {
    const body = await readJsonBody(c.req.raw, VolumeCopyRequestSchema, c.var.config.maxBodyBytes);
    const answer = await commit(c.env, volumeOf(c), [{ op: "copy", sources: body.sources, destination: body.destination }], termsOf(body));
    return committed(c, answer);
  });

  api.post(ROUTES.volumeBlocksMissing, volumeGuard("call"), async (c) => {
    const name = volumeOf(c);
    const body = await readJsonBody(c.req.raw, BlocksMissingRequestSchema, c.var.config.maxBodyBytes);
    await volumeInfo(c.env, name); // 404 for a missing volume
    return c.json({ missing: await missingBlocks(c.env, body.hashes) } satisfies BlocksMissingAnswer);
  });

  api.get(ROUTES.volumeManifest, volumeGuard("call"), async (c) => {
    const manifest = await volumeManifest(c.env, volumeOf(c));
    c.header(HEADERS.volumeVersion, String(manifest.version));
    return c.json(manifest);
  });

  // A block of a file in the volume (a plane fills its cache with them); any block the gateway has, by its hash.
  // GET .../blocks/missing goes on to the 405 it is (that route takes POST), past the credentials check as every 405 is;
  // any other name that is not a hash is a 400.
  const blockGuard = volumeGuard("call");
  api.get(
    ROUTES.volumeBlock,
    (c, next) => (c.req.param("hash") === "missing" ? next() : blockGuard(c, next)),
    async (c, next) => {
      if (c.req.param("hash") === "missing") return next();
      const hash = hashOf(c);
      await volumeInfo(c.env, volumeOf(c));
      const { size, body } = await readBlock(c.env, hash);
      const sized = new FixedLengthStream(size);
      void body.pipeTo(sized.writable).catch(() => {});
      return c.body(sized.readable, 200, { "content-type": "application/octet-stream" });
    },
  );

  api.put(ROUTES.volumeBlock, volumeGuard("call"), async (c) => {
    const name = volumeOf(c);
    const hash = hashOf(c);
    const declared = Number(c.req.header("content-length") ?? "NaN");
    if (declared > VOLUME_LIMITS.blockBytes) throw blockTooLarge(declared);
    await volumeInfo(c.env, name);
    const bytes = await readBodyBytes(c.req.raw, VOLUME_LIMITS.blockBytes, "a volume block holds");
    return c.json((await putBlock(c.env, hash, bytes)) satisfies BlockPutAnswer);
  });

  api.post(ROUTES.volumeCommit, volumeGuard("call"), async (c) => {
    const name = volumeOf(c);
    const body = await readJsonBody(c.req.raw, VolumeCommitRequestSchema, c.var.config.maxBodyBytes);
    return committed(c, await commit(c.env, name, body.changes, termsOf(body)));
  });

  return api;
}

/** The fields a route's query may give, each once: any other is a 400 naming it (a mistyped `?baseVerison=` would go unread). */
function takesQuery(c: Ctx, fields: readonly string[]): void {
  onceEach(c.req.queries(), fields, `${c.req.method} ${c.req.routePath}`);
}

function volumeOf(c: Ctx): string {
  return checkedVolumeName(c.req.param("volume") ?? "");
}

function hashOf(c: Ctx): string {
  const hash = c.req.param("hash") ?? "";
  if (!BLOCK_HASH_PATTERN.test(hash)) throw new InvalidRequestError(`"${hash}" is not a block's name: the SHA-256 of its bytes, 64 lowercase hex digits`);
  return hash;
}

function requiredPath(c: Ctx): string {
  const path = pathQuery(c);
  if (path === undefined || path.replace(/\//g, "") === "") throw new InvalidRequestError(`?path= must name a file or directory in the volume`);
  return path;
}

/**
 * `?path=`, decoded. An escape that is not UTF-8 (`%E9`, Latin-1's é) would stay in the path as it came, naming a
 * file "caf%E9" without a word: 400.
 */
function pathQuery(c: Ctx): string | undefined {
  const raw = /[?&]path=([^&#]*)/.exec(c.req.url)?.[1];
  if (raw !== undefined) {
    try {
      decodeURIComponent(raw.replace(/\+/g, " "));
    } catch {
      throw new InvalidRequestError(`?path= is not UTF-8 percent-encoded (got "${raw}"): encode the path's UTF-8 bytes (encodeURIComponent)`);
    }
  }
  return c.req.query("path");
}

function flag(c: Ctx, name: string): boolean {
  const value = c.req.query(name);
  if (value === undefined || value === "false" || value === "0") return false;
  if (value === "" || value === "true" || value === "1") return true;
  throw new InvalidRequestError(`?${name}= must be true or false (got "${value}")`);
}

function commitTerms(c: Ctx): CommitTerms {
  const base = c.req.query("baseVersion");
  if (base !== undefined && !/^\d{1,15}$/.test(base)) throw new InvalidRequestError(`?baseVersion= must be a version number (got "${base}")`);
  return { ...(base === undefined ? {} : { baseVersion: Number(base) }), force: flag(c, "force") };
}

function termsOf(body: { baseVersion?: number | undefined; force?: boolean | undefined }): CommitTerms {
  return { ...(body.baseVersion === undefined ? {} : { baseVersion: body.baseVersion }), force: body.force ?? false };
}

function modeOf(c: Ctx): number | undefined {
  const mode = c.req.query("mode");
  if (mode === undefined) return undefined;
  // Permission bits only: a volume keeps no setuid, setgid or sticky bit (4755 was taken, and dropped on the way out).
  if (!/^0?[0-7]{1,3}$/.test(mode))
    throw new InvalidRequestError(
      `?mode= must be a file's permission bits in octal, 0 to 777, like 644 or 755 (got "${mode}"): a volume keeps no setuid, setgid or sticky bit`,
    );
  return parseInt(mode, 8);
}

function committed(c: Ctx, answer: VolumeCommitAnswer): Response {
  c.header(HEADERS.volumeVersion, String(answer.version));
  return c.json(answer);
}

function fileTooLarge(declared: number): PayloadTooLargeError {
  return new PayloadTooLargeError(`request body is ${declared} bytes; a volume holds files of at most ${VOLUME_LIMITS.maxFileBytes} bytes`, {
    maxBytes: VOLUME_LIMITS.maxFileBytes,
  });
}

function blockTooLarge(declared: number): PayloadTooLargeError {
  return new PayloadTooLargeError(`request body is ${declared} bytes; a volume block holds at most ${VOLUME_LIMITS.blockBytes}`, {
    maxBytes: VOLUME_LIMITS.blockBytes,
  });
}
