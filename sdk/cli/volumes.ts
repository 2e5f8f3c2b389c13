/**
 * `tandem volume create|list|ls|put|get|rm|cp|delete`: a gateway's volumes
 * from the shell (docs/volumes.md), through the SDK's `Volume` over
 * `/v1/volumes`. Puts and gets of more than a few MiB draw a progress bar on
 * stderr when it is a terminal.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { withGatewayOptions } from "./config.js";
import { chmod, mkdir, readdir, stat } from "node:fs/promises";
import { basename, dirname, join, relative } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Command } from "commander";
import { InvalidOptionsError } from "../errors.js";
import { reservedVolumeNameProblem, volumePath, type VolumeEntry } from "../protocol.js";
import { Volume, type VolumeOptions } from "../volume.js";
import { counted, progressBar } from "./progress.js";
import { addCreateCommand } from "./create-command.js";
import { listTime, style, visibleControls } from "./style.js";
import { formatBytes } from "../value-text.js";

type GatewayOpts = { gateway?: string; token?: string; env?: string };
type Options = Omit<VolumeOptions, "createIfMissing">;

/** Adds `tandem volume …` to `program`; `optionsOf` gives the SDK options for a command's `--gateway` and `--token`. */
export function addVolumeCommands(program: Command, optionsOf: (opts: GatewayOpts) => Options, tokenHelp: string): void {
  const volume = program.command("volume").description("volumes: files that outlive containers, kept by the gateway (docs/volumes.md)");
  const withGateway = (cmd: Command) => withGatewayOptions(cmd, tokenHelp);
  const open = (name: string, opts: GatewayOpts) => Volume.fromName(name, optionsOf(opts));

  addCreateCommand(
    volume,
    "volume",
    withGateway,
    (name, existOk, opts: GatewayOpts) => Volume.create(name, { ...optionsOf(opts), existOk }),
    (info) => `version ${info.version}, ${info.files} files`,
  );

  withGateway(volume.command("list").description("the gateway's volumes").option("--json", "print JSON")).action(
    async (opts: GatewayOpts & { json?: boolean }) => {
      const volumes = await Volume.list(optionsOf(opts));
      if (opts.json) return console.log(JSON.stringify(volumes, null, 2));
      if (volumes.length === 0) return console.log("no volumes yet; tandem volume create NAME makes one");
      console.log(`${"name".padEnd(24)} ${"version".padStart(8)} ${"files".padStart(8)} ${"size".padStart(10)}  created`);
      for (const v of volumes) {
        console.log(
          `${v.name.padEnd(24)} ${String(v.version).padStart(8)} ${String(v.files).padStart(8)} ${formatBytes(v.bytes).padStart(10)}  ${listTime(v.createdAt)}`,
        );
      }
    },
  );

  withGateway(
    volume
      .command("ls")
      .description("the files and directories in a volume's directory")
      .argument("<name>", "the volume")
      .argument("[path]", "a directory or file in it", "/")
      .option("-r, --recursive", "every file and directory under the path")
      .option("--json", "print JSON"),
  ).action(async (name: string, path: string, opts: GatewayOpts & { recursive?: boolean; json?: boolean }) => {
    const entries = await open(name, opts).listdir(path, { recursive: opts.recursive ?? false });
    if (opts.json) return console.log(JSON.stringify(entries, null, 2));
    for (const e of entries) console.log(formatEntry(e));
  });

  withGateway(
    volume
      .command("put")
      .description("upload a local file or directory into a volume, in one commit (only blocks the gateway lacks are sent)")
      .argument("<name>", "the volume")
      .argument("<local>", "a local file or directory (ending in /: the directory's contents, not the directory)")
      .argument("[remote]", "where in the volume (ending in /: into that directory)", "/")
      .option("-f, --force", "write over files another commit changed meanwhile"),
  ).action(async (name: string, local: string, remote: string, opts: GatewayOpts & { force?: boolean }) => {
    const files = await localFiles(local);
    // As rsync reads it: `./weights` into `/` is `/weights/…`, `./weights/` into `/` its files, `/config.json` and on.
    const contents = /[\\/]$/.test(local) && !(files.length === 1 && files[0]!.relative === "");
    const target = remote.endsWith("/") && !contents ? `${remote}${basename(local)}` : remote;
    const total = files.reduce((sum, f) => sum + f.size, 0);
    const bar = progressBar(`put ${basename(local)}`, total);
    const batch = open(name, opts).batchUpload({ force: opts.force ?? false });
    const paths = files.map((file) => (file.relative === "" ? target : `${target.replace(/\/+$/, "")}/${file.relative}`));
    // Said in the command's words, before a byte is read (the SDK's own refusal names its batch's putFile).
    for (const path of paths) {
      const checked = volumePath(path);
      const problem = "problem" in checked ? checked.problem : reservedVolumeNameProblem(checked.path);
      if (problem) throw new InvalidOptionsError(`cannot put ${path} in volume ${name}: path "${path}" ${problem}`);
    }
    files.forEach((file, i) => batch.putFile(counted(lazyRead(file.path), bar), paths[i]!, { mode: file.mode }));
    const version = await batch.commit().finally(() => bar?.end());
    console.log(
      `${style.ok("✓")} put ${files.length === 1 ? paths[0]!.replace(/^\/+/, "") : `${files.length} files under ${target.replace(/^\/+/, "") || "/"}`} (${formatBytes(total)}) in volume ${name}: version ${version}`,
    );
  });

  withGateway(
    volume
      .command("get")
      .description("download a file or directory from a volume (- writes a file to stdout)")
      .argument("<name>", "the volume")
      .argument("<remote>", "a file or directory in the volume")
      .argument("[local]", "where to write it (an existing directory: into it)", "."),
  ).action(async (name: string, remote: string, local: string, opts: GatewayOpts) => {
    const vol = open(name, opts);
    const [only] = await vol.listdir(remote);
    const isFile = only?.type === "file" && only.path === remote.replace(/^\/+|\/+$/g, "");
    if (local === "-") {
      if (!isFile) throw new InvalidOptionsError(`"${remote}" is a directory: give a local directory to write it to, not -`);
      const file = await vol.readFile(remote);
      await pipeline(Readable.from(file), process.stdout);
      return;
    }
    const base = remote.replace(/\/+$/, "").split("/").pop() || name;
    const localKind = await stat(local).then(
      (s) => (s.isDirectory() ? "directory" : "file"),
      () => undefined,
    );
    const into = localKind === "directory";
    // A directory of the volume goes to a directory (made where there is none): over a file it was a bare ENOTDIR.
    if (!isFile && localKind === "file")
      throw new InvalidOptionsError(
        `"${remote}" is a directory in volume ${name}, and ${local} is a file: give a directory to write it into (made where there is none)`,
      );
    const destination = into ? join(local, base) : local;
    const files = isFile ? [{ path: only!.path, size: only!.size, mode: only!.mode, to: destination }] : await remoteFiles(vol, remote, destination);
    const total = files.reduce((sum, f) => sum + f.size, 0);
    const bar = progressBar(`get ${base}`, total);
    try {
      for (const f of files) {
        await mkdir(dirname(f.to), { recursive: true });
        await pipeline(Readable.from(counted(await vol.readFile(f.path), bar)), createWriteStream(f.to));
        // Its mode as the volume keeps it (a private 600 stays private, a script keeps its x), without setuid, setgid
        // or sticky bits: a file fetched from a volume runs with no one's rights but its reader's.
        await chmod(f.to, f.mode & 0o777);
      }
    } finally {
      bar?.end();
    }
    console.log(`${style.ok("✓")} got ${files.length === 1 ? files[0]!.path : `${files.length} files`} (${formatBytes(total)}) into ${destination}`);
  });

  withGateway(
    volume
      .command("rm")
      .description("remove a file, or a directory with -r, in one commit")
      .argument("<name>", "the volume")
      .argument("<path>", "a file or directory in it")
      .option("-r, --recursive", "remove a directory and everything in it")
      .option("-f, --force", "remove even files another commit changed meanwhile"),
  ).action(async (name: string, path: string, opts: GatewayOpts & { recursive?: boolean; force?: boolean }) => {
    const version = await open(name, opts).remove(path, { recursive: opts.recursive ?? false, force: opts.force ?? false });
    console.log(`${style.ok("✓")} removed ${path} from volume ${name}: version ${version}`);
  });

  withGateway(
    volume
      .command("cp")
      .description("copy files or directories within a volume (no bytes move: copies share blocks), in one commit")
      .argument("<name>", "the volume")
      .argument("<paths...>", "sources, then the destination (an existing directory, or several sources: into it)"),
  ).action(async (name: string, paths: string[], opts: GatewayOpts) => {
    if (paths.length < 2) throw new InvalidOptionsError("cp needs a source and a destination: tandem volume cp NAME SRC... DST");
    const destination = paths.pop()!;
    const version = await open(name, opts).copyFiles(paths, destination);
    console.log(`${style.ok("✓")} copied ${paths.join(", ")} to ${destination} in volume ${name}: version ${version}`);
  });

  withGateway(
    volume
      .command("delete")
      .description("delete a volume and its files (needs a token of scope deploy)")
      .argument("<name>", "the volume")
      .option("-y, --yes", "yes, delete it: there is no undo"),
  ).action(async (name: string, opts: GatewayOpts & { yes?: boolean }) => {
    if (!opts.yes) throw new InvalidOptionsError(`deleting volume ${name} cannot be undone: run it again with --yes`);
    const info = await Volume.delete(name, optionsOf(opts));
    console.log(`${style.ok("✓")} deleted volume ${info.name} (${info.files} files, ${formatBytes(info.bytes)})`);
  });
}

/** A local file, or every file under a local directory, with its path relative to it. */
async function localFiles(local: string): Promise<{ path: string; relative: string; size: number; mode: number }[]> {
  const top = await stat(local).catch(() => {
    throw new InvalidOptionsError(`no local file or directory ${local}`);
  });
  if (!top.isDirectory()) return [{ path: local, relative: "", size: top.size, mode: top.mode & 0o777 }];
  const files = [];
  for (const entry of await readdir(local, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const s = await stat(path);
    files.push({ path, relative: relative(local, path).split("\\").join("/"), size: s.size, mode: s.mode & 0o777 });
  }
  if (files.length === 0) throw new InvalidOptionsError(`${local} holds no files`);
  return files;
}

/** The files under a volume's directory, each with where it goes under `destination`. */
async function remoteFiles(vol: Volume, remote: string, destination: string): Promise<{ path: string; size: number; mode: number; to: string }[]> {
  const dir = remote.replace(/^\/+|\/+$/g, "");
  const entries = await vol.listdir(remote, { recursive: true });
  return entries
    .filter((e) => e.type === "file") // a directory comes with the files under it
    .map((e) => ({ path: e.path, size: e.size, mode: e.mode, to: join(destination, dir === "" ? e.path : e.path.slice(dir.length + 1)) }));
}

async function* lazyRead(path: string): AsyncGenerator<Uint8Array> {
  yield* createReadStream(path, { highWaterMark: 1024 * 1024 });
}

function formatEntry(e: VolumeEntry): string {
  const mode = e.type === "directory" ? "d" : "-";
  const perms = [6, 3, 0].map((shift) => ((e.mode >> shift) & 7).toString(2).padStart(3, "0")).join("");
  const rwx = [...perms].map((bit, i) => (bit === "1" ? "rwx"[i % 3] : "-")).join("");
  // A name's line breaks and other controls as escapes: one entry, one line.
  const path = visibleControls(e.path);
  return `${mode}${rwx} ${String(e.size).padStart(12)}  ${listTime(e.mtime)}  ${e.type === "directory" ? style.bold(`${path}/`) : path}`;
}
