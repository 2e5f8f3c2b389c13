// fib: the n-th Fibonacci number. Reads the call's arguments as JSON on stdin
// (`[50]`), writes the result as JSON on stdout (`12586269025`). Compiled to a
// WASI command by `tandem serve` / `deploy` (AssemblyScript, no runtime).
@external("wasi_snapshot_preview1", "fd_read")
declare function fd_read(fd: u32, iovs: usize, iovsLen: u32, nread: usize): u32;
@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovsLen: u32, nwritten: usize): u32;
@external("wasi_snapshot_preview1", "proc_exit")
declare function proc_exit(code: u32): void;

const iov = heap.alloc(8);
const count = heap.alloc(4);

function write(fd: u32, text: string): void {
  const bytes = String.UTF8.encode(text);
  store<u32>(iov, <u32>changetype<usize>(bytes));
  store<u32>(iov + 4, bytes.byteLength);
  fd_write(fd, iov, 1, count);
}

function fail(message: string): void {
  write(2, message + "\n");
  proc_exit(2);
}

export function _start(): void {
  const buf = heap.alloc(256);
  store<u32>(iov, <u32>buf);
  store<u32>(iov + 4, 256);
  fd_read(0, iov, 1, count);
  const length = load<u32>(count);

  // The input is `[n]`: one whole number, 0 to 78. fib(93) is the largest that fits in 64 bits, but the result is a
  // JSON number, which a caller reads as a double: past 2^53 (from fib(79)) it comes back rounded, so it is refused.
  let n: u64 = 0;
  let digits = 0;
  for (let i: u32 = 0; i < length; i++) {
    const c = load<u8>(buf + i);
    if (c >= 48 && c <= 57) {
      n = n * 10 + (c - 48);
      digits++;
    } else if (c != 91 && c != 93 && c != 32 && c != 10) {
      fail("fib takes one whole number, e.g. [50]");
      return;
    }
  }
  if (digits == 0 || digits > 3 || n > 78) {
    fail("fib takes a whole number from 0 to 78 (fib(79) and above do not fit a JSON number exactly)");
    return;
  }

  let a: u64 = 0;
  let b: u64 = 1;
  for (let i: u64 = 0; i < n; i++) {
    const next = a + b;
    a = b;
    b = next;
  }
  write(1, a.toString());
}
