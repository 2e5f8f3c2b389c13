/** The numbers of WASI preview1 that the file system speaks (witx `wasi_snapshot_preview1`, typenames). */

export const ERRNO = {
  SUCCESS: 0,
  BADF: 8,
  EXIST: 20,
  INVAL: 28,
  ISDIR: 31,
  LOOP: 32,
  NAMETOOLONG: 37,
  NOENT: 44,
  NOTDIR: 54,
  NOTEMPTY: 55,
  NOTSUP: 58,
  PERM: 63,
  ROFS: 69,
  SPIPE: 70,
  NOTCAPABLE: 76,
} as const;
export type Errno = (typeof ERRNO)[keyof typeof ERRNO];

export const FILETYPE = { CHARACTER_DEVICE: 2, DIRECTORY: 3, REGULAR_FILE: 4, SYMBOLIC_LINK: 7 } as const;
export type Filetype = (typeof FILETYPE)[keyof typeof FILETYPE];

export const OFLAGS = { CREAT: 1, DIRECTORY: 2, EXCL: 4, TRUNC: 8 } as const;
export const FDFLAGS = { APPEND: 1, DSYNC: 2, NONBLOCK: 4, RSYNC: 8, SYNC: 16, ALL: 31 } as const;
export const LOOKUP_SYMLINK_FOLLOW = 1;
export const FSTFLAGS = { ATIM: 1, ATIM_NOW: 2, MTIM: 4, MTIM_NOW: 8, ALL: 15 } as const;
export const WHENCE = { SET: 0, CUR: 1, END: 2 } as const;
export const ADVICE_MAX = 5;

const bit = (n: number) => 1n << BigInt(n);
export const RIGHTS = {
  FD_DATASYNC: bit(0),
  FD_READ: bit(1),
  FD_SEEK: bit(2),
  FD_FDSTAT_SET_FLAGS: bit(3),
  FD_SYNC: bit(4),
  FD_TELL: bit(5),
  FD_WRITE: bit(6),
  FD_ADVISE: bit(7),
  FD_ALLOCATE: bit(8),
  FD_READDIR: bit(14),
  FD_FILESTAT_GET: bit(21),
  FD_FILESTAT_SET_SIZE: bit(22),
  FD_FILESTAT_SET_TIMES: bit(23),
  POLL_FD_READWRITE: bit(27),
} as const;
/** Every right of preview1 (bits 0 to 29). */
export const ALL_RIGHTS = bit(30) - 1n;
/** What a regular file's descriptor can do, at most. */
export const FILE_RIGHTS =
  RIGHTS.FD_DATASYNC |
  RIGHTS.FD_READ |
  RIGHTS.FD_SEEK |
  RIGHTS.FD_FDSTAT_SET_FLAGS |
  RIGHTS.FD_SYNC |
  RIGHTS.FD_TELL |
  RIGHTS.FD_WRITE |
  RIGHTS.FD_ADVISE |
  RIGHTS.FD_ALLOCATE |
  RIGHTS.FD_FILESTAT_GET |
  RIGHTS.FD_FILESTAT_SET_SIZE |
  RIGHTS.FD_FILESTAT_SET_TIMES |
  RIGHTS.POLL_FD_READWRITE;
/** What a directory's descriptor can do, at most: the path_* rights, reading entries, its own status and times. */
export const DIRECTORY_RIGHTS =
  (ALL_RIGHTS & ~FILE_RIGHTS) | RIGHTS.FD_FDSTAT_SET_FLAGS | RIGHTS.FD_SYNC | RIGHTS.FD_ADVISE | RIGHTS.FD_FILESTAT_GET | RIGHTS.FD_FILESTAT_SET_TIMES;
/** The rights that make an open an open for writing, which a directory refuses (EISDIR), as Node's node:wasi does. */
export const WRITE_RIGHTS = RIGHTS.FD_DATASYNC | RIGHTS.FD_WRITE | RIGHTS.FD_ALLOCATE | RIGHTS.FD_FILESTAT_SET_SIZE;
