/**
 * Ctrl-C and SIGTERM for commands that hold containers. miniflare installs
 * handlers of its own that exit the process at once, which would leave the
 * local plane's containers behind; these replace them (miniflare's exit hook,
 * which stops workerd, stays). A second Ctrl-C while stopping calls `hurry`
 * (`tandem serve`: stop waiting for requests in flight), and exits at once
 * when there is nothing to hurry (`hurry` says false, or there is none).
 */
export function onStopSignal(stop: (signal: NodeJS.Signals) => Promise<void>, hurry?: () => boolean): void {
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.removeAllListeners(signal);
    const handler = () => {
      if (stopping && hurry?.()) return;
      if (stopping) process.exit(130);
      stopping = true;
      void stop(signal);
    };
    process.on(signal, handler);
    ours.set(signal, handler);
  }
}

/** The handlers `onStopSignal` installed, by signal. */
const ours = new Map<NodeJS.Signals, () => void>();

/**
 * Removes the signal handlers added since `onStopSignal`, keeping its own: miniflare adds its handlers again when a
 * workerd starts after every earlier one has stopped (a `tandem serve` reload), and they would exit at once on
 * Ctrl-C, leaving the plane's containers behind. Nothing to do before `onStopSignal`.
 * @example
 * const backend = await startWorkerd(options);
 * keepStopSignals();
 */
export function keepStopSignals(): void {
  for (const [signal, handler] of ours) {
    for (const listener of process.listeners(signal)) if (listener !== handler) process.removeListener(signal, listener);
  }
}

/** Whether stdout's reader has gone (`watchReaderGone`). */
let gone = false;
let readerGone: () => void = () => {
  // A command that holds containers (serve, plane) stops as on SIGTERM, draining and stopping them; any other, at once.
  const stop = ours.get("SIGTERM");
  if (stop) stop();
  else process.exit(0);
};

/**
 * What a command does once the reader of its output has gone (`tandem run … | head -1`): there is no one to print for,
 * so it ends, quietly: by default at once with 0, or as on SIGTERM where `onStopSignal` set a stop (serve, plane).
 * @example onReaderGone(async () => { await stop(); process.exit(0); });
 */
export function onReaderGone(handler: () => void): void {
  readerGone = handler;
}

/**
 * Watches stdout for its reader going away (EPIPE, on every write after it), calling what `onReaderGone` set, once;
 * any other error is thrown, as an unwatched stream's is.
 */
export function watchReaderGone(): void {
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
    if (!gone) {
      gone = true;
      readerGone();
    }
  });
}

/** Whether stdout's reader has gone: a command's failure then is only that (`write EPIPE`), and not worth a word. */
export function readerHasGone(): boolean {
  return gone;
}
