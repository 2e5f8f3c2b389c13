/**
 * A plane's printed lines, written in batches: the lines that come within
 * `flushMs` of the first go out in one write, and at once past `maxChars`;
 * `flush()` writes what waits (before the process's own lines, and at exit).
 * `tandem plane` prints every line its containers write, one line a call in
 * bench/plane-warm (c): a synchronous write each was most of what a logged
 * call cost the plane (its CPU profile: about 45 µs a line, on a loaded
 * machine), against well under a microsecond a line batched.
 *
 * @example
 * const printed = new PrintedLines((text) => process.stdout.write(text));
 * process.once("exit", () => printed.flush());
 * printed.line("[plane] ready");
 */
export class PrintedLines {
  readonly #write: (text: string) => void;
  readonly #flushMs: number;
  readonly #maxChars: number;
  #text = "";
  #timer: NodeJS.Timeout | undefined;

  constructor(write: (text: string) => void, flushMs = 20, maxChars = 64 * 1024) {
    this.#write = write;
    this.#flushMs = flushMs;
    this.#maxChars = maxChars;
  }

  /** Keeps a line for the next write. */
  readonly line = (line: string): void => {
    this.#text += `${line}\n`;
    if (this.#text.length >= this.#maxChars) return this.flush();
    this.#timer ??= setTimeout(() => this.flush(), this.#flushMs).unref();
  };

  /** Writes the lines that wait, now. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#text === "") return;
    const text = this.#text;
    this.#text = "";
    this.#write(text);
  }
}
