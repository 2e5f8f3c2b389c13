/**
 * What a descriptor points at: an open file (a position, append mode, the rights it was opened
 * with), an open directory (a preopen is one with a name), or an output stream that hands every
 * write to a callback (stdout, stderr).
 */
import { DIRECTORY_RIGHTS, FILE_RIGHTS, FILETYPE, RIGHTS, WRITE_RIGHTS } from "./constants.js";
import { Directory, File, Inode, type Entries } from "./tree.js";

export abstract class Fd {
  /** FDFLAGS: append, dsync, nonblock, rsync, sync. */
  flags = 0;
  constructor(
    public rightsBase: bigint,
    public rightsInheriting: bigint,
  ) {}
  abstract readonly inode: Inode;
}

export interface OpenOptions {
  flags?: number;
  /** The rights asked for (default: all a file has); masked to what a file can do. */
  rights?: bigint;
}

export class OpenFile extends Fd {
  position = 0n;
  constructor(
    readonly file: File,
    options: OpenOptions = {},
  ) {
    super((options.rights ?? FILE_RIGHTS) & (file.readonly ? FILE_RIGHTS & ~WRITE_RIGHTS : FILE_RIGHTS), 0n);
    this.flags = options.flags ?? 0;
  }
  get inode(): Inode {
    return this.file;
  }
}

export class OpenDirectory extends Fd {
  constructor(
    readonly dir: Directory,
    /** The directory above, for the `..` entry fd_readdir lists; the directory itself at the top. */
    readonly parent: Directory = dir,
    rights: bigint = DIRECTORY_RIGHTS,
    inheriting: bigint = FILE_RIGHTS | DIRECTORY_RIGHTS,
  ) {
    super(rights & DIRECTORY_RIGHTS, inheriting);
  }
  get inode(): Inode {
    return this.dir;
  }
}

/** A directory handed to the module at start, under `name` (fd_prestat_get); `readonly`, one whose entries never change. */
export class PreopenDirectory extends OpenDirectory {
  constructor(
    readonly name: string,
    contents: Map<string, Inode> | Entries | [string, Inode][],
    options?: { readonly?: boolean },
  ) {
    super(new Directory(contents, options));
  }
}

/** A character device that takes writes only, each handed to `write`. */
export class ConsoleStdout extends Fd {
  readonly inode: Inode = new Device();
  constructor(readonly write: (data: Uint8Array) => void) {
    super(RIGHTS.FD_WRITE | RIGHTS.FD_FILESTAT_GET | RIGHTS.POLL_FD_READWRITE, 0n);
  }
}

class Device extends Inode {
  readonly filetype = FILETYPE.CHARACTER_DEVICE;
  get size(): bigint {
    return 0n;
  }
}
