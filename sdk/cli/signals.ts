/**
 * Ctrl-C and SIGTERM for commands that hold containers. miniflare installs
 * handlers of its own that exit the process at once, which would leave the
 * local plane's containers behind; these replace them (miniflare's exit hook,
 * which stops workerd, stays). A second Ctrl-C while stopping exits at once.
 */
export function onStopSignal(stop: (signal: NodeJS.Signals) => Promise<void>): void {
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.removeAllListeners(signal);
    process.on(signal, () => {
      if (stopping) process.exit(130);
      stopping = true;
      void stop(signal);
    });
  }
}
