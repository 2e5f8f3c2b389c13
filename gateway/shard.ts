/** Which shard of a sharded WebSocket agent holds a session: FNV-1a of the session id, modulo the shards. */
export function shardOf(sessionId: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < sessionId.length; i++) hash = Math.imul(hash ^ sessionId.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % shards;
}
