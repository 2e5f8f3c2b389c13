/**
 * The lines a function writes to `process.stdout` and `process.stderr` (console.* included), taken in the runner and
 * sent to the plane as `log` frames on the control channel (sdk/protocol.ts `LogFrame`), each tagged with the call
 * that wrote it, instead of through the container's stdout pipe, the engine and the plane's attach stream: a line
 * then costs the call one socket write, or none when it goes out with the call's result. Output that does not pass
 * through those two streams (a child process, native code, a write to fd 1 itself) still leaves through the
 * container's stdout and stderr, as before, where the plane masks the container's secret values in it
 * (gpu-plane/container-start.ts).
 *
 * Coalesced: the first line after a quiet spell is sent at once (a container killed right after it, by the OOM
 * killer, still told it); the lines after it wait for the next frame the runner sends (the call's result), or, held
 * a whole `LOG_LIMITS.runnerFlushMs`, go at the end of the window they are in (so at most twice that late). A window
 * with a line in it begins another, so a function that prints a line a call sends each with its call's result, and
 * no frame of its own after the first; the spell ends with a window in which no line came. Bounded: at most
 * `LOG_LIMITS.runnerMaxFrameChars` held, at most `runnerMaxLinesPerSecond` lines a second (past that dropped, and
 * counted in the next frame), each line cut at `maxLineChars`, the container's secret values masked in it as `***`
 * (whether `console.*` wrote it or code wrote to the streams themselves). Lines still held when the process exits are
 * written to the container's stdout and stderr, so none is lost.
 */
import { writeSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import { LOG_LIMITS } from "../../sdk/defaults.js";
import { cutLogLine, type LogFrame } from "../../sdk/protocol.js";
import { secretMask } from "../../sdk/secret.js";
import { LineSplitter } from "../../sdk/stream-lines.js";

type Source = "stdout" | "stderr";
type Line = LogFrame["lines"][number];
type Write = typeof process.stdout.write;

/**
 * @example
 * const capture = new OutputCapture(() => calls.getStore()?.callId ?? null);
 * capture.attach((text) => socket.write(text)); // from now on, console.log("hi") is a log frame
 * socket.write(capture.take(callId) + JSON.stringify(output) + "\n"); // a call's lines go before its result
 */
export class OutputCapture {
  readonly #callNow: () => string | null;
  readonly #original: Record<Source, Write>;
  readonly #decoders: Record<Source, StringDecoder> = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
  /** Lines not ended yet, by source and call. */
  readonly #partial = new Map<string, { source: Source; callId: string | null; lines: LineSplitter }>();
  #send: ((text: string) => void) | undefined;
  #lines: Line[] = [];
  #chars = 0;
  #dropped = 0;
  /** The spell that began with a line sent at once; lines wait until its window ends or the next frame goes. */
  #spell: NodeJS.Timeout | undefined;
  /** A line came in the spell's current window: the spell goes on past it. */
  #lineInWindow = false;
  /** When the oldest line held (or dropped and not yet told) was written. */
  #heldSince = 0;
  #windowStart = 0;
  #inWindow = 0;

  /** The container's secret values, masked as `***` in every line kept (sdk/secret.ts `secretMask`); none: nothing to mask. */
  readonly #mask: ((text: string) => string) | undefined;

  constructor(callNow: () => string | null, secretValues: readonly string[] = []) {
    this.#callNow = callNow;
    this.#mask = secretValues.some((v) => v.length > 0) ? secretMask(secretValues) : undefined;
    this.#original = { stdout: process.stdout.write.bind(process.stdout), stderr: process.stderr.write.bind(process.stderr) };
    for (const source of ["stdout", "stderr"] as const) {
      process[source].write = ((chunk: string | Uint8Array, encoding?: BufferEncoding | ((err?: Error | null) => void), cb?: (err?: Error | null) => void) => {
        if (!this.#send) {
          // Not connected (yet, or any more): to the container's own output, where the plane reads it, masked all the same.
          const masked = this.#mask ? this.#mask(this.#text(source, chunk)) : chunk;
          return (this.#original[source] as (...a: unknown[]) => boolean)(masked, encoding, cb);
        }
        const done = typeof encoding === "function" ? encoding : cb;
        this.#write(source, this.#text(source, chunk));
        if (done) process.nextTick(done);
        return true;
      }) as Write;
    }
    process.on("exit", () => this.#spill());
  }

  /** From now on, lines go out through `send` (the control socket): the runner is connected. */
  attach(send: (text: string) => void): void {
    this.#send = send;
  }

  /** Lines held are sent, and writes go to the container's stdout and stderr again (the runner lets go of its plane). */
  detach(): void {
    this.#flush();
    this.#send = undefined;
    if (this.#spell) clearTimeout(this.#spell);
    this.#spell = undefined;
  }

  /**
   * The lines held, as a `log` frame's text (empty when there is none), for the runner to write before its next
   * frame; with `callId`, that call's unended lines first end (the call is over).
   */
  take(callId?: string): string {
    if (callId !== undefined && this.#partial.size > 0) {
      for (const source of ["stdout", "stderr"] as const) {
        const key = `${source} ${callId}`;
        const partial = this.#partial.get(key);
        if (!partial) continue;
        this.#partial.delete(key);
        for (const text of partial.lines.end()) this.#keep(callId, source, text);
      }
    }
    if (this.#lines.length === 0 && this.#dropped === 0) return "";
    const frame: LogFrame = { t: "log", lines: this.#lines, ...(this.#dropped ? { dropped: this.#dropped } : {}) };
    this.#lines = [];
    this.#chars = 0;
    this.#dropped = 0;
    return JSON.stringify(frame) + "\n";
  }

  #write(source: Source, text: string): void {
    const callId = this.#callNow();
    const newline = text.indexOf("\n");
    if (this.#partial.size === 0 && newline === text.length - 1) {
      // The usual write (console.log's): one whole line, and no line of this source and call under way.
      this.#keep(callId, source, text.charCodeAt(newline - 1) === 13 ? text.slice(0, -2) : text.slice(0, -1));
    } else {
      const key = `${source} ${callId ?? ""}`;
      let partial = this.#partial.get(key);
      if (!partial)
        this.#partial.set(key, (partial = { source, callId, lines: new LineSplitter({ maxLineChars: LOG_LIMITS.maxLineChars, overlong: cutLogLine }) }));
      for (const line of partial.lines.push(text)) this.#keep(callId, source, line);
      if (partial.lines.pendingLength === 0) this.#partial.delete(key);
    }
    if (this.#lines.length === 0 && this.#dropped === 0) return;
    if (!this.#spell) {
      // Quiet until now: this line goes at once, and the ones after it for a while wait for a frame to go with.
      this.#flush();
      this.#lineInWindow = false;
      this.#spell = setTimeout(() => this.#endWindow(), LOG_LIMITS.runnerFlushMs).unref();
    } else {
      this.#lineInWindow = true;
      if (this.#chars > LOG_LIMITS.runnerMaxFrameChars) this.#flush();
    }
  }

  /**
   * A window of the spell ends: lines held a whole window go; one written late in it waits for the next (its call's
   * result, most often). The spell goes on if a line came in the window or is held, and ends if not.
   */
  #endWindow(): void {
    const held = this.#lines.length > 0 || this.#dropped > 0;
    const busy = this.#lineInWindow || held;
    this.#lineInWindow = false;
    this.#spell = undefined;
    if (!busy) return;
    if (held && Date.now() - this.#heldSince >= LOG_LIMITS.runnerFlushMs) this.#flush();
    this.#spell = setTimeout(() => this.#endWindow(), LOG_LIMITS.runnerFlushMs).unref();
  }

  #keep(callId: string | null, source: Source, text: string): void {
    const now = Date.now();
    if (this.#lines.length === 0 && this.#dropped === 0) this.#heldSince = now;
    if (now - this.#windowStart >= 1_000) {
      this.#windowStart = now;
      this.#inWindow = 0;
    }
    if (++this.#inWindow > LOG_LIMITS.runnerMaxLinesPerSecond) {
      this.#dropped++;
      return;
    }
    const cut = cutLogLine(this.#mask ? this.#mask(text) : text);
    this.#lines.push({ callId, source, text: cut });
    this.#chars += cut.length;
  }

  /** A write's chunk as text: bytes decoded per stream, a character cut between two writes kept for the next. */
  #text(source: Source, chunk: string | Uint8Array): string {
    return typeof chunk === "string" ? chunk : this.#decoders[source].write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  }

  #flush(): void {
    const text = this.take();
    if (text) this.#send?.(text);
  }

  /** At exit: what is still held goes to the container's stdout and stderr, where the plane reads it as before. */
  #spill(): void {
    const held = [...this.#lines];
    for (const partial of this.#partial.values()) for (const text of partial.lines.end()) held.push({ callId: partial.callId, source: partial.source, text });
    this.#lines = [];
    this.#partial.clear();
    for (const line of held) {
      try {
        writeSync(line.source === "stdout" ? 1 : 2, line.text + "\n");
      } catch {
        // Nobody reads the container's output any more.
      }
    }
  }
}
