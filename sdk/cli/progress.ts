/**
 * A progress bar on stderr for long transfers (`tandem volume put|get`):
 * drawn only when stderr is a terminal and the transfer is larger than
 * `VOLUME_LIMITS.progressBarBytes`, redrawn at most ten times a second, and
 * cleared when done so the command's own line follows.
 */
import { VOLUME_LIMITS } from "../defaults.js";

const WIDTH = 30;
const REDRAW_MS = 100;

export class ProgressBar {
  #done = 0;
  #drawnAt = 0;
  readonly #started = Date.now();

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {}

  /** Counts `bytes` more as transferred. */
  add(bytes: number): void {
    this.#done += bytes;
    const now = Date.now();
    if (now - this.#drawnAt < REDRAW_MS && this.#done < this.total) return;
    this.#drawnAt = now;
    const share = this.total === 0 ? 1 : Math.min(1, this.#done / this.total);
    const filled = Math.round(share * WIDTH);
    const seconds = Math.max(0.001, (now - this.#started) / 1000);
    const mib = (n: number) => (n / 1024 / 1024).toFixed(1);
    this.out.write(
      `\r${this.label} [${"#".repeat(filled)}${"-".repeat(WIDTH - filled)}] ${String(Math.floor(share * 100)).padStart(3)}%  ${mib(this.#done)}/${mib(this.total)} MiB  ${mib(this.#done / seconds)} MiB/s`,
    );
  }

  /** Clears the bar's line. */
  end(): void {
    this.out.write("\r\x1b[2K");
  }
}

/** A bar for a transfer of `total` bytes, or none: stderr is not a terminal, or the transfer is small. */
export function progressBar(label: string, total: number): ProgressBar | undefined {
  if (!process.stderr.isTTY || total <= VOLUME_LIMITS.progressBarBytes) return undefined;
  return new ProgressBar(label, total);
}

/** `source`'s chunks, each counted on `bar` as it passes. */
export async function* counted(source: AsyncIterable<Uint8Array>, bar: ProgressBar | undefined): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    bar?.add(chunk.byteLength);
    yield chunk;
  }
}
