/**
 * An app's older log lines, in R2: its `LogStore` keeps the last
 * `TANDEM_LOG_RECENT_HOURS` of lines in SQLite and its alarm moves older ones
 * into objects of gzipped NDJSON (`BLOB_KEYS.logArchive`: by store, then hour,
 * one object per hour or per `LOG_LIMITS.archiveObjectLines`), kept until
 * their retention ends. A read asks the store first and reads R2 only when the
 * store holds fewer matching lines than asked for, newest object first, until
 * enough are found; a read of one call's lines opens only the objects from
 * the time in its id on.
 */
import { LOG_LIMITS } from "../sdk/defaults.js";
import { BLOB_KEYS, callIdTime, logLineOfFunction } from "../sdk/protocol.js";
import type { Env } from "./env.js";
import { logStoreFor } from "./log-sink.js";
import type { LogFilter, StoredLogLine } from "./log-store.js";

/** One object of older lines, as the store lists it: its key and the times of its first and last line. */
export interface LogArchiveRef {
  key: string;
  firstTime: number;
  lastTime: number;
}

/**
 * An R2 object's key and body for lines of one hour, oldest first: NDJSON, gzipped (CompressionStream, in workerd).
 * @example const { key, body } = await encodeLogArchive(ctx.id.toString(), rows); await env.BLOBS.put(key, body);
 */
export async function encodeLogArchive(storeId: string, lines: StoredLogLine[]): Promise<{ key: string; body: ArrayBuffer }> {
  const firstSeq = lines.reduce((min, l) => Math.min(min, l.seq), Infinity);
  const text = lines.map((l) => JSON.stringify(l) + "\n").join("");
  const body = await new Response(new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer();
  return { key: BLOB_KEYS.logArchive(storeId, lines[0]!.time, firstSeq), body };
}

/** The lines of an object `encodeLogArchive` made. */
export async function decodeLogArchive(body: ReadableStream<Uint8Array>): Promise<StoredLogLine[]> {
  const text = await new Response(body.pipeThrough(new DecompressionStream("gzip"))).text();
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as StoredLogLine);
}

/** Whether a line passes a read's filters (`after` and `limit` aside): the store's SQL `WHERE`, for lines read from R2. */
export function matchesLogFilter(line: StoredLogLine, filter: LogFilter): boolean {
  if (filter.function !== undefined && !logLineOfFunction(line.function, filter.function)) return false;
  if (filter.callId !== undefined && line.callId !== filter.callId) return false;
  if (filter.containerId !== undefined && line.containerId !== filter.containerId) return false;
  if (filter.session !== undefined && line.session !== filter.session) return false;
  if (filter.source !== undefined && line.source !== filter.source) return false;
  if (filter.since !== undefined && line.time < filter.since) return false;
  if (filter.search !== undefined && !line.text.toLowerCase().includes(filter.search.toLowerCase())) return false;
  return true;
}

/**
 * The last `filter.limit` lines of an app that match, oldest first, from its store and (when the store holds
 * fewer) from R2; `lastSeq` as the store answers it, for a follow to go on from.
 *
 * @example const { lines } = await readLog(env, "shop", { since: Date.now() - 3 * 86_400_000, limit: 100 });
 */
export async function readLog(env: Env, app: string, filter: LogFilter): Promise<{ lines: StoredLogLine[]; lastSeq: number }> {
  // A call's lines are printed after its id was made (a plane's clock a little behind aside): only objects from then on.
  const madeAt = filter.callId === undefined ? undefined : callIdTime(filter.callId);
  if (madeAt !== undefined) filter = { ...filter, since: Math.max(filter.since ?? 0, madeAt - LOG_LIMITS.callLinesLeadMs) };
  const recent = await logStoreFor(env, app).read(filter);
  if (!recent.archives.length) return { lines: recent.lines, lastSeq: recent.lastSeq };
  const need = filter.limit - recent.lines.length;
  const inStore = new Set(recent.lines.map((l) => l.seq));
  let older: StoredLogLine[] = [];
  for (const archive of recent.archives) {
    // Objects come newest first; once `need` lines are found, an object that ends before the oldest of them adds none.
    if (older.length >= need && archive.lastTime < older[older.length - need]!.time) break;
    const object = await env.BLOBS.get(archive.key);
    if (!object) continue; // deleted past its retention since the store listed it
    for (const line of await decodeLogArchive(object.body)) if (!inStore.has(line.seq) && matchesLogFilter(line, filter)) older.push(line);
    older.sort(byTime);
  }
  older = older.slice(-need);
  return { lines: [...older, ...recent.lines].sort(byTime), lastSeq: recent.lastSeq };
}

function byTime(a: StoredLogLine, b: StoredLogLine): number {
  return a.time - b.time || a.seq - b.seq;
}
