/** Tandem's WASI preview1: the shim's calls, with a file system of its own (README.md). */
export { WASI, type WasiInstance } from "./wasi.js";
export { ConsoleStdout, Fd, OpenDirectory, OpenFile, PreopenDirectory, type OpenOptions } from "./fds.js";
export { Directory, File, Inode, Symlink } from "./tree.js";
export { WASIProcExit } from "@bjorn3/browser_wasi_shim";
