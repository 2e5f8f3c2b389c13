/**
 * The WASI calls the host answers itself instead of the shim's: `poll_oneoff`
 * (clock and stdio subscriptions, several at once, with the run's deadline
 * applied to every wait), the `sock_*` calls (a module is given no socket:
 * ENOTSUP) and `proc_raise` (a signal whose default action ends a process ends
 * the run). Runtime-neutral, like host.ts: a wait spins, because workerd
 * refuses `Atomics.wait` on its main thread and a module's call cannot yield.
 */
import { wasi as defs } from "@bjorn3/browser_wasi_shim";
import { OpenFile, type Fd } from "./wasi/index.js";

/** The preview1 error numbers these calls answer with. */
export const ERRNO = {
  SUCCESS: defs.ERRNO_SUCCESS,
  BADF: defs.ERRNO_BADF,
  FAULT: defs.ERRNO_FAULT,
  INVAL: defs.ERRNO_INVAL,
  NOTSUP: defs.ERRNO_NOTSUP,
} as const;

const EVENTTYPE = { CLOCK: defs.EVENTTYPE_CLOCK, FD_READ: defs.EVENTTYPE_FD_READ, FD_WRITE: defs.EVENTTYPE_FD_WRITE } as const;
const CLOCK = { REALTIME: defs.CLOCKID_REALTIME, MONOTONIC: defs.CLOCKID_MONOTONIC } as const;
// The shim reads this flag 4 bytes early (@36): an absolute time there became a relative sleep of decades.
const SUBSCRIPTION_CLOCK_ABSTIME = defs.SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME;
const SUBSCRIPTION_SIZE = 48;
const EVENT_SIZE = 32;

/** Signal names by preview1 number (0 is "no signal"). */
export const SIGNALS = [
  "",
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGILL",
  "SIGTRAP",
  "SIGABRT",
  "SIGBUS",
  "SIGFPE",
  "SIGKILL",
  "SIGUSR1",
  "SIGSEGV",
  "SIGUSR2",
  "SIGPIPE",
  "SIGALRM",
  "SIGTERM",
  "SIGCHLD",
  "SIGCONT",
  "SIGSTOP",
  "SIGTSTP",
  "SIGTTIN",
  "SIGTTOU",
  "SIGURG",
  "SIGXCPU",
  "SIGXFSZ",
  "SIGVTALRM",
  "SIGPROF",
  "SIGWINCH",
  "SIGPOLL",
  "SIGPWR",
  "SIGSYS",
] as const;
/** Signals a POSIX process ignores unless it asks otherwise: raising one does nothing. */
const IGNORED_SIGNALS = new Set(["SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH"]);

/** What the calls need from the run they belong to (wasm/host.ts). */
export interface WasiCallsContext {
  /** The module's memory, as it is now (it may have grown since the last call). */
  memory(): ArrayBuffer;
  /** The run's open file descriptors, by number. */
  fds: ReadonlyArray<Fd | undefined>;
  /** Throws (ends the run) when it is past its time or memory limit. */
  checkLimits(): void;
  /** Bytes `fd` may still write (stdout and stderr share the output limit); undefined when it has no such limit. */
  writableBytes(fd: Fd): number | undefined;
  /**
   * Waits `ms` (spinning) until `done()` says the wait is over. Throws (ends
   * the run) at once when the wait would end past the run's time limit, and
   * as soon as the run is past it.
   */
  sleep(ms: number, done: () => boolean): void;
  /** Ends the run: the module raised `signal`, whose default action ends a process. */
  raise(signal: number, name: string): never;
}

/** A clock's reading in ns, as the shim's `clock_time_get` reports it, so that an absolute deadline means what the module read. */
function clockNow(clock: number): bigint {
  return clock === CLOCK.REALTIME ? BigInt(Date.now()) * 1_000_000n : BigInt(Math.round(performance.now() * 1e6));
}

type Subscription =
  | { userdata: bigint; type: typeof EVENTTYPE.CLOCK; clock: number; deadline: bigint }
  | { userdata: bigint; type: typeof EVENTTYPE.FD_READ | typeof EVENTTYPE.FD_WRITE; fd: number };

interface Event {
  userdata: bigint;
  error: number;
  type: number;
  nbytes: bigint;
}

/**
 * The calls, as `wasi_snapshot_preview1` imports that replace the shim's.
 * @example
 * const imports = { ...wasi.wasiImport, ...wasiCalls(context) };
 */
export function wasiCalls(context: WasiCallsContext) {
  const notSupported = (fd: number) => (context.fds[fd] ? ERRNO.NOTSUP : ERRNO.BADF);
  return {
    poll_oneoff: (inPtr: number, outPtr: number, count: number, neventsPtr: number): number =>
      pollOneoff(context, inPtr >>> 0, outPtr >>> 0, count >>> 0, neventsPtr >>> 0),
    // No socket is ever given to a module, so every descriptor is either closed or not a socket.
    sock_accept: (fd: number) => notSupported(fd),
    sock_recv: (fd: number) => notSupported(fd),
    sock_send: (fd: number) => notSupported(fd),
    sock_shutdown: (fd: number) => notSupported(fd),
    proc_raise(signal: number): number {
      const name = SIGNALS[signal >>> 0];
      if (name === undefined) return ERRNO.INVAL;
      if (name === "" || IGNORED_SIGNALS.has(name)) return ERRNO.SUCCESS;
      return context.raise(signal, name);
    },
  };
}

/**
 * `poll_oneoff`: waits until the earliest clock subscription's time comes,
 * unless an fd subscription is ready (stdio and files always are), and writes
 * an event for each subscription that is ready then. Layout of a subscription
 * (48 bytes): userdata u64 @0, tag u8 @8; for a clock, id u32 @16, timeout u64
 * ns @24, precision u64 @32, flags u16 @40 (1: the timeout is an absolute time
 * on that clock); for an fd, the fd u32 @16. An event (32 bytes): userdata
 * u64 @0, error u16 @8, type u8 @10, nbytes u64 @16, flags u16 @24.
 */
function pollOneoff(context: WasiCallsContext, inPtr: number, outPtr: number, count: number, neventsPtr: number): number {
  context.checkLimits();
  if (count === 0) return ERRNO.INVAL;
  const size = context.memory().byteLength;
  if (inPtr + count * SUBSCRIPTION_SIZE > size || outPtr + count * EVENT_SIZE > size || neventsPtr + 4 > size) return ERRNO.FAULT;
  // Every subscription is read before anything is waited for or written: a bad one fails the call, and the events
  // may overwrite the subscriptions.
  const subscriptions: Subscription[] = [];
  let view = new DataView(context.memory());
  for (let i = 0; i < count; i++) {
    if (i % 65536 === 65535) context.checkLimits(); // millions of subscriptions take a while to read
    const at = inPtr + i * SUBSCRIPTION_SIZE;
    const userdata = view.getBigUint64(at, true);
    const type = view.getUint8(at + 8);
    if (type === EVENTTYPE.CLOCK) {
      const clock = view.getUint32(at + 16, true);
      const timeout = view.getBigUint64(at + 24, true);
      const flags = view.getUint16(at + 40, true);
      if ((clock !== CLOCK.REALTIME && clock !== CLOCK.MONOTONIC) || (flags & ~SUBSCRIPTION_CLOCK_ABSTIME) !== 0) return ERRNO.INVAL;
      const deadline = flags & SUBSCRIPTION_CLOCK_ABSTIME ? timeout : clockNow(clock) + timeout;
      subscriptions.push({ userdata, type, clock, deadline });
    } else if (type === EVENTTYPE.FD_READ || type === EVENTTYPE.FD_WRITE) {
      subscriptions.push({ userdata, type, fd: view.getUint32(at + 16, true) });
    } else return ERRNO.INVAL;
  }

  const events: Event[] = [];
  for (const s of subscriptions) if (s.type !== EVENTTYPE.CLOCK) events.push(fdEvent(context, s.userdata, s.type, s.fd));
  if (events.length === 0) {
    let earliest: { clock: number; deadline: bigint; ms: number } | undefined;
    for (const s of subscriptions) {
      if (s.type !== EVENTTYPE.CLOCK) continue;
      const ms = Number(s.deadline - clockNow(s.clock)) / 1e6;
      if (!earliest || ms < earliest.ms) earliest = { clock: s.clock, deadline: s.deadline, ms };
    }
    if (earliest && earliest.ms > 0) {
      const { clock, deadline } = earliest;
      context.sleep(earliest.ms, () => clockNow(clock) >= deadline);
    }
  }
  for (const s of subscriptions) {
    if (s.type === EVENTTYPE.CLOCK && clockNow(s.clock) >= s.deadline) events.push({ userdata: s.userdata, error: ERRNO.SUCCESS, type: s.type, nbytes: 0n });
  }

  view = new DataView(context.memory());
  new Uint8Array(context.memory(), outPtr, events.length * EVENT_SIZE).fill(0);
  events.forEach((e, i) => {
    const at = outPtr + i * EVENT_SIZE;
    view.setBigUint64(at, e.userdata, true);
    view.setUint16(at + 8, e.error, true);
    view.setUint8(at + 10, e.type);
    view.setBigUint64(at + 16, e.nbytes, true);
  });
  view.setUint32(neventsPtr, events.length, true);
  return ERRNO.SUCCESS;
}

/**
 * An fd subscription is ready at once: reading gives what is left of a file
 * (stdin is one), writing is never blocked. `nbytes`: the bytes left to read,
 * or those stdout and stderr may still write before the output limit.
 */
function fdEvent(context: WasiCallsContext, userdata: bigint, type: number, fdNumber: number): Event {
  const fd = context.fds[fdNumber];
  if (!fd) return { userdata, error: ERRNO.BADF, type, nbytes: 0n };
  let nbytes = 0n;
  if (type === EVENTTYPE.FD_WRITE) nbytes = BigInt(Math.max(0, context.writableBytes(fd) ?? 0));
  else if (fd instanceof OpenFile && fd.file.size > fd.position) nbytes = fd.file.size - fd.position;
  return { userdata, error: ERRNO.SUCCESS, type, nbytes };
}
