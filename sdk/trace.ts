/**
 * A timing trace of one process's steps, for finding where its time goes:
 * `TANDEM_TRACE=1 tandem run app.ts::fn` prints, on stderr, each step's mark
 * with the milliseconds since the process started. Off (the default), a mark
 * costs a function call. The CLI turns it on once, from its configuration
 * (`cli/config.ts`); the modules it runs (the plane among them) only mark.
 */

let write: ((line: string) => void) | undefined;

/**
 * Prints every later mark through `to`, starting with how long Node itself took to start.
 * @example
 * traceTo((line) => process.stderr.write(line + "\n"));
 */
export function traceTo(to: (line: string) => void): void {
  write = to;
  const node = (performance as Performance & { nodeTiming?: { bootstrapComplete?: number } }).nodeTiming;
  if (node?.bootstrapComplete !== undefined) to(traceLine(node.bootstrapComplete, "node started"));
}

/**
 * Marks a step, when the trace is on.
 * @example
 * trace("plane: docker ready");
 */
export function trace(mark: string): void {
  if (write) write(traceLine(performance.now(), mark));
}

/** Whether marks are printed: for a mark whose text takes work to make. */
export function tracing(): boolean {
  return write !== undefined;
}

function traceLine(ms: number, mark: string): string {
  return `[trace] ${ms.toFixed(0).padStart(6)} ms  ${mark}`;
}
