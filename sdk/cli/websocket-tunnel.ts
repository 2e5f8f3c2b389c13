/**
 * A WebSocket through `tandem serve`'s front door (front-door.ts): the gateway's bytes passed on as they come, read
 * just enough to know where each of its frames ends, so that a reload or a stop can end the socket with a close frame
 * of its own between two of the gateway's.
 */
import type net from "node:net";
import { AGENT_CLOSE } from "../protocol.js";

/** How long a WebSocket being ended waits for the gateway's frame in progress to end before it is cut. */
export const FRAME_END_WAIT_MS = 1_000;

/**
 * One WebSocket through the front door. The gateway's bytes are passed on as they come, and read just enough to
 * know where each of its frames ends (RFC 6455 section 5.2: the upgrade's answer, then frames), so that `restart`
 * can send the client a close frame of its own between two of the gateway's.
 */
export class Tunnel {
  /** The upgrade's answer, until its blank line: `undefined` once it has ended. */
  #head: string | undefined = "";
  /** The gateway said 101: what follows is frames. */
  #upgraded = false;
  /** The frame header read so far, and the payload bytes of the current frame still to come. */
  #header: number[] = [];
  #payloadLeft = 0;
  restarting = false;
  #close = { code: AGENT_CLOSE.serviceRestart as number, reason: "" };

  constructor(
    private readonly socket: net.Socket,
    private readonly upstream: net.Socket,
  ) {
    upstream.on("data", (chunk: Buffer) => this.#pass(chunk));
  }

  /** Ends the WebSocket with 1012 ("service restart") at the end of the gateway's frame in progress; the client reconnects. */
  restart(code: number = AGENT_CLOSE.serviceRestart, reason = "the gateway is restarting; reconnect to resume the session"): void {
    this.#close = { code, reason };
    if (this.restarting) return;
    this.restarting = true;
    if (!this.#upgraded) return void this.socket.destroy();
    if (this.#atFrameEnd()) return this.#sendClose();
    setTimeout(() => this.socket.destroy(), FRAME_END_WAIT_MS).unref(); // a frame that never ends: cut
  }

  /** Cuts both connections. */
  destroy(): void {
    this.socket.destroy();
    this.upstream.destroy();
  }

  #atFrameEnd(): boolean {
    return this.#head === undefined && this.#header.length === 0 && this.#payloadLeft === 0;
  }

  #sendClose(): void {
    this.socket.unpipe(this.upstream);
    this.upstream.destroy();
    const reason = Buffer.from(this.#close.reason);
    const payload = Buffer.alloc(2 + reason.length);
    payload.writeUInt16BE(this.#close.code, 0);
    reason.copy(payload, 2);
    this.socket.end(Buffer.concat([Buffer.from([0x88, payload.length]), payload])); // FIN + close, unmasked (server to client)
  }

  /** Passes the gateway's bytes on, up to the end of the frame in progress once restarting. */
  #pass(chunk: Buffer): void {
    let i = 0;
    if (this.#head !== undefined) {
      const text = this.#head + chunk.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      if (end === -1) {
        this.#head = text;
        return void this.socket.write(chunk);
      }
      this.#upgraded = /^HTTP\/1\.1 101 /.test(text);
      i = end + 4 - this.#head.length;
      this.#head = undefined;
    }
    if (!this.#upgraded) return void this.socket.write(chunk);
    while (i < chunk.length) {
      if (this.#payloadLeft > 0) {
        const take = Math.min(this.#payloadLeft, chunk.length - i);
        this.#payloadLeft -= take;
        i += take;
      } else {
        this.#header.push(chunk[i++]!);
        const needed = frameHeaderLength(this.#header);
        if (this.#header.length === needed) {
          this.#payloadLeft = framePayloadLength(this.#header);
          this.#header = [];
        }
      }
      if (this.restarting && this.#atFrameEnd()) {
        this.socket.write(chunk.subarray(0, i));
        return this.#sendClose();
      }
    }
    if (!this.restarting || !this.socket.writableEnded) this.socket.write(chunk);
  }
}

/** A WebSocket frame header's length, as far as the bytes so far tell (at least 2). */
function frameHeaderLength(header: number[]): number {
  if (header.length < 2) return 2;
  const len7 = header[1]! & 0x7f;
  const masked = (header[1]! & 0x80) !== 0;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
}

/** A complete frame header's payload length. */
function framePayloadLength(header: number[]): number {
  const len7 = header[1]! & 0x7f;
  if (len7 < 126) return len7;
  if (len7 === 126) return (header[2]! << 8) | header[3]!;
  let n = 0;
  for (let k = 2; k < 10; k++) n = n * 256 + header[k]!;
  return n;
}
