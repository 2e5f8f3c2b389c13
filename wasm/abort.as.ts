// What an AssemblyScript function's `throw` (and the standard library's own errors: an index out of range, an
// allocation too large) calls: asc is told to use it as `abort` (wasm/prepare.ts). It writes the message and where it
// was thrown to stderr, then traps, so the call fails with `WasmTrapError: <name> trapped: unreachable: <message>
// (at <file>:<line>:<column>)` rather than a bare "unreachable". A module that never throws does not keep it.
@external("wasi_snapshot_preview1", "fd_write")
declare function tandem_abort_fd_write(fd: u32, iovs: usize, iovsLen: u32, nwritten: usize): u32;

// @ts-ignore: decorator
@global function tandem_abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const where = fileName !== null ? " (at " + fileName + ":" + line.toString() + ":" + column.toString() + ")" : "";
  const bytes = String.UTF8.encode((message !== null ? message : "abort") + where + "\n");
  const iov = memory.data(8);
  store<u32>(iov, <u32>changetype<usize>(bytes));
  store<u32>(iov + 4, <u32>bytes.byteLength);
  tandem_abort_fd_write(2, iov, 1, iov);
  unreachable();
}
