/**
 * A child process's end, with all it printed read: Node's `exit` may come before the last chunk of its stdout and
 * stderr is read, so a test that checks the output at `exit` can miss the lines printed just before it. This waits
 * for `close` (its pipes ended) and, should a grandchild still hold them open, gives up on them 2 s after `exit`.
 */
import type { ChildProcess } from "node:child_process";

/** Resolves with the exit code (null when a signal ended it) once the child has exited and its output has been read. */
export function childEnded(child: ChildProcess, graceMs = 2_000): Promise<number | null> {
  return new Promise((resolve) => {
    const done = () => resolve(child.exitCode);
    const giveUpLater = () => setTimeout(done, graceMs).unref();
    const exited = child.exitCode !== null || child.signalCode !== null;
    if (exited && !child.stdout?.readable && !child.stderr?.readable) return done();
    child.once("close", done);
    if (exited) giveUpLater();
    else child.once("exit", giveUpLater);
  });
}
