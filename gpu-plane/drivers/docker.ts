/**
 * The sandboxed driver: each function container is a Docker container from
 * the base Node image, as nobody, with a read-only root, no capabilities, no
 * network unless asked, and cgroup limits on memory, CPU and processes. What
 * it mounts (the bundle, the control folder) it keeps on a tmpfs, so a
 * container's mountinfo shows no path of the plane's; how a container ended
 * (an OOM kill, a kill from outside) it takes from the engine's own events.
 * The only file of the plane that talks to the engine (base-image.ts and
 * image-builder.ts are handed the engine from here).
 */

import { accessSync, existsSync, constants as fsConstants, lstatSync, mkdirSync, statSync } from "node:fs";
import { chmod, copyFile, link, mkdir, readdir, realpath, rename, rm, stat, writeFile } from "node:fs/promises";
import { Module, createRequire } from "node:module";
import type { Socket } from "node:net";
import { constants as osConstants, tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { PassThrough } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import type Dockerode from "dockerode";
import { InternalError, InvalidOptionsError } from "../../sdk/errors.js";
import { CONTAINER_LABELS, type ImageBuildSpec } from "../../sdk/protocol.js";
import { LineSplitter } from "../../sdk/stream-lines.js";
import { trace } from "../../sdk/trace.js";
import { NODE_IN_IMAGE, ensureBaseImage } from "../base-image.js";
import { buildImage } from "../image-builder.js";
import {
  IN_CONTAINER,
  type ContainerDriver,
  type ContainerSpec,
  type ExitInfo,
  type ImageSecrets,
  type RemovedContainer,
  type StartedContainer,
} from "./driver.js";

type Docker = Dockerode;
const Docker = requireDockerode();

/** Options of {@link DockerDriver}. */
export interface DockerDriverOptions {
  /** The engine; the default socket (or `DOCKER_HOST`) when left out. */
  docker?: Docker;
  /**
   * The Docker runtime of function containers: `"runsc"` (gVisor) or `"runc"`, or another that `docker info` lists.
   * Left out: runsc where the engine lists it, else runc (said once, by `log`, when the driver is prepared).
   */
  runtime?: string;
  /** Where the driver says what it did (image builds, failures it recovered from). */
  log?: (line: string) => void;
  /** Rebuild every image step, cache or not (`TANDEM_FORCE_BUILD=1` on the plane). */
  forceBuild?: boolean;
  /**
   * Where the driver keeps what it mounts into containers: `/dev/shm` (a
   * tmpfs, whose paths a container's mountinfo shows from its own root only)
   * when it can write there, else the system's temporary folder.
   */
  stagingDir?: string;
}

/**
 * The plane cannot use the Docker engine: none is running, or it lacks the
 * runtime asked for. The message says how to fix it.
 */
export class DockerUnavailableError extends InternalError {}

/** Lines kept for a container nobody listens to yet; beyond it the oldest are dropped. */
const MAX_BUFFERED_LINES = 1000;
/** A line longer than this is delivered in pieces, so one newline-less stream cannot grow without end. */
const MAX_LINE_CHARS = 1 << 20;
/** How long `exited` waits for the last output once the container has stopped. */
const OUTPUT_DRAIN_MS = 2000;
/** How long `kill` waits for the exit to be read before removing the container anyway. */
const KILL_WAIT_MS = 5000;
/** How long an exit waits for the engine's `die` event, after which every event logged before it has arrived. */
const DIE_EVENT_WAIT_MS = 2000;
/**
 * How long a SIGKILL that no one sent through the engine waits for an `oom`
 * event: the runtime may report the OOM kill just after the exit.
 */
const LATE_OOM_WAIT_MS = 500;
/** How long the driver waits before it reopens a broken event stream. */
const EVENTS_RETRY_MS = 1000;

/**
 * Runs function containers on a Docker engine.
 * @example
 * const driver = new DockerDriver({ log: console.log });
 * await driver.prepare();
 * const container = await driver.start(spec);
 * container.onOutput((stream, line) => console.log(`[${container.id}] ${line}`));
 * console.log(await container.exited); // { code: 0, oomKilled: false }
 */
export class DockerDriver implements ContainerDriver {
  readonly name = "docker";
  readonly sandboxed = true;
  readonly pausable = true;

  readonly #docker: Docker;
  readonly #askedRuntime: string | undefined;
  /** The runtime in use, once `prepare` has read the engine's list. */
  #runtime: string | undefined;
  #gvisor = false;
  /** Under gVisor: the host's Node binary (the base image's, readable), bound over the image's execute-only one. */
  #readableNode: string | undefined;
  /** By image: whether it is the base image or built on it (its Node the base image's), as its layers say. */
  readonly #onBase = new Map<string, Promise<boolean>>();
  readonly #log: (line: string) => void;
  readonly #forceBuild: boolean;
  readonly #staging: string;
  /** Plane folders under the staging folder that this driver made or checked. */
  readonly #owned = new Set<string>();
  readonly #events: EngineEvents;
  #image: Promise<string> | undefined;
  /** Why memory snapshots cannot be taken here (read from the engine by `prepare`); undefined: they can. */
  #snapshotProblem: string | undefined = "the Docker engine has not been checked yet";
  /** The engine's data folder (`docker info`'s DockerRootDir), where a container's checkpoints must be to be restored. */
  #engineRoot: string | undefined;

  constructor(options: DockerDriverOptions = {}) {
    this.#docker = options.docker ?? new Docker();
    this.#askedRuntime = options.runtime;
    this.#log = options.log ?? (() => {});
    this.#forceBuild = options.forceBuild ?? false;
    this.#staging = options.stagingDir ?? defaultStagingDir();
    this.#events = new EngineEvents(this.#docker, this.#log);
  }

  /** A container's control folder, beside its staged bundle (see {@link DockerDriverOptions.stagingDir}). */
  controlDirFor(planeId: string, containerId: string): string {
    return join(this.#containerFolder(planeId, containerId), "control");
  }

  /** Checks the engine, picks the runtime (see {@link DockerDriverOptions.runtime}) and builds or finds the base image. */
  prepare(): Promise<void> {
    return this.#baseImage().then(() => {});
  }

  /** The Docker runtime function containers run under (`"runsc"`, `"runc"`); known once `prepare` has succeeded. */
  get runtime(): string | undefined {
    return this.#runtime;
  }

  /** Whether that runtime is gVisor: `runsc`, or another name the engine gives gVisor's program (its path ends in `runsc`). */
  get gvisor(): boolean {
    return this.#gvisor;
  }

  async start(spec: ContainerSpec): Promise<StartedContainer> {
    const image = await this.#baseImage();
    trace(`docker ${spec.id}: base image found`);
    await requireHostPath(spec.bundlePath, "file", "bundle");
    await requireHostPath(spec.controlDir, "folder", "control folder");
    // Before the container exists, so that no event about it is missed.
    await this.#events.ready();
    const readableNode = this.#readableNode && (await this.#builtOnBase(spec.image ?? image, image)) ? this.#readableNode : undefined;

    // The bundle is mounted from a copy on the staging tmpfs: a bind shows its source's path in the
    // container's mountinfo, and the bundle cache's path would say where the plane keeps its state.
    const folder = this.#containerFolder(spec.labels[CONTAINER_LABELS.plane] ?? "", spec.id);
    const bundle = join(folder, "bundle.mjs");
    await mkdir(folder, { recursive: true });
    await copyFile(spec.bundlePath, bundle);
    await chmod(bundle, 0o444);
    // A bundle that joins the runtime loads it from beside it, with its code cache once that is made (an empty file
    // until then: the same mounts either way, as a memory snapshot's resume needs).
    const beside: string[] = [];
    const runtime = join(folder, "runtime.js");
    if (
      await copyFile(join(dirname(spec.bundlePath), "runtime.js"), runtime).then(
        () => true,
        () => false,
      )
    ) {
      const cache = join(folder, "runtime.cache");
      await copyFile(join(dirname(spec.bundlePath), "runtime.cache"), cache).catch(() => writeFile(cache, ""));
      beside.push(`${runtime}:${IN_CONTAINER.runtime}:ro`, `${cache}:${IN_CONTAINER.runtimeCache}:ro`);
    }
    const forget = () => rm(folder, { recursive: true, force: true });
    trace(`docker ${spec.id}: bundle staged`);

    const name = `tandem-${spec.id}`;
    let container: Dockerode.Container;
    try {
      container = await this.#docker.createContainer({
        name,
        Image: spec.image ?? image,
        Cmd: [NODE_IN_IMAGE, IN_CONTAINER.bundle],
        Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
        Labels: { ...spec.labels, [CONTAINER_LABELS.container]: spec.id },
        User: "65534:65534",
        // A built image keeps its own working directory (Image.workdir).
        ...(spec.image ? {} : { WorkingDir: "/tmp" }),
        AttachStdout: true,
        AttachStderr: true,
        HostConfig: {
          NetworkMode: spec.network ? "host" : "none",
          ReadonlyRootfs: true,
          Tmpfs: { "/tmp": "rw,nosuid,nodev,size=64m" },
          CapDrop: ["ALL"],
          SecurityOpt: ["no-new-privileges"],
          PidsLimit: spec.pidsLimit,
          Memory: spec.memoryMiB * 1024 * 1024,
          // Equal to Memory: no swap, so the limit is a hard one and the OOM killer enforces it.
          MemorySwap: spec.memoryMiB * 1024 * 1024,
          NanoCpus: Math.round(spec.cpu * 1e9),
          // Both read-only: a unix socket can still be connected to through a read-only mount, and the container cannot replace it.
          Binds: [
            `${bundle}:${IN_CONTAINER.bundle}:ro`,
            ...beside,
            ...(readableNode ? [`${readableNode}:${NODE_IN_IMAGE}:ro`] : []),
            `${spec.controlDir}:${IN_CONTAINER.controlDir}:ro`,
            // A built image brings its own node_modules (Image.npmInstall).
            ...(spec.nodeModulesPath && !spec.image ? [`${spec.nodeModulesPath}:${IN_CONTAINER.nodeModules}:ro`] : []),
            // Volumes (gpu-plane/volume-mounts.ts): a read-only one is bound `:ro`, so every write to it is EROFS.
            ...(spec.mounts ?? []).map((m) => `${m.hostPath}:${m.containerPath}${m.readOnly ? ":ro" : ""}`),
          ],
          Runtime: this.#runtime,
          ...(spec.gpuDeviceIds.length > 0 ? { DeviceRequests: [{ Driver: "nvidia", DeviceIDs: spec.gpuDeviceIds, Capabilities: [["gpu"]] }] } : {}),
          AutoRemove: false,
          // The plane reads every line through its attach stream and keeps it (log-shipper.ts): the engine keeping a
          // copy of each too (json-file, on the plane's disk, unrotated) cost it a write per line.
          LogConfig: { Type: "none", Config: {} },
        },
      });
    } catch (err) {
      await forget();
      throw new InternalError(`could not create container ${name}: ${engineMessage(err)}`, { container: spec.id });
    }

    trace(`docker ${spec.id}: created`);
    const events = this.#events.watch(container.id);
    try {
      // Attached before it starts, so not one line of its output is missed.
      const output = await container.attach({ stream: true, stdout: true, stderr: true });
      const started = new DockerContainer(spec.id, container, this.#docker, output, this.#log, events, async () => {
        this.#events.forget(container.id);
        await forget();
      });
      trace(`docker ${spec.id}: attached`);
      if (spec.restoreFrom) await this.#placeCheckpoint(container.id, spec.restoreFrom);
      const starting = spec.restoreFrom ? container.start(RESTORE_QUERY as Dockerode.ContainerStartOptions) : container.start();
      spec.starting?.();
      await starting;
      trace(`docker ${spec.id}: started`);
      started.watch();
      return started;
    } catch (err) {
      await container.remove({ force: true }).catch(() => {});
      this.#events.forget(container.id);
      await forget();
      throw new InternalError(`could not start container ${name}: ${engineMessage(err)}`, { container: spec.id });
    }
  }

  snapshotsUnavailable(): string | undefined {
    return this.#snapshotProblem;
  }

  async checkpoint(container: StartedContainer, dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    try {
      // dockerode has the call (POST /containers/{id}/checkpoints); its typings do not.
      const engine = this.#docker.getContainer(container.runtimeId) as unknown as { createCheckpoint(options: object): Promise<unknown> };
      await engine.createCheckpoint({ CheckpointID: CHECKPOINT_NAME, CheckpointDir: dir, Exit: true });
    } catch (err) {
      throw new InternalError(`could not save the memory of container ${container.id}: ${engineMessage(err)}`, { container: container.id });
    }
  }

  /**
   * Puts a snapshot where the engine restores a container's checkpoints from: its own data folder (the engine
   * refuses `--checkpoint-dir` on start). A hard link where the snapshot is on the same disk, else a copy.
   *
   * The engine hands the folder to containerd's content store as a tar, named by its digest, and a second tar of the
   * same bytes fails there ("commit failed: content … already exists") while the first is held: another resume of
   * this snapshot, or the checkpoint's own copy, which containerd keeps until its next garbage collection. A file
   * naming the container (the runtime reads only its image) makes each resume's tar its own.
   */
  async #placeCheckpoint(dockerId: string, from: string): Promise<void> {
    const source = join(from, CHECKPOINT_NAME);
    const target = join(this.#engineRoot ?? "", "containers", dockerId, "checkpoints", CHECKPOINT_NAME);
    await mkdir(target, { recursive: true });
    for (const file of await readdir(source)) {
      await link(join(source, file), join(target, file)).catch(() => copyFile(join(source, file), join(target, file), fsConstants.COPYFILE_FICLONE));
    }
    await writeFile(join(target, RESUMED_BY), dockerId);
  }

  async cleanup(planeId: string, removed?: (container: RemovedContainer) => void): Promise<void> {
    await this.#ping();
    const left = await this.#docker.listContainers({ all: true, filters: { label: [`${CONTAINER_LABELS.plane}=${planeId}`] } });
    // Every one is tried, whichever fails: those removed are told to `removed` (their time is billed), and a pass that
    // fails leaves fewer for the next.
    const outcomes = await Promise.allSettled(
      left.map(async (info) => {
        const container = this.#docker.getContainer(info.Id);
        // Read before it goes: a removed container's times are gone with it.
        const state =
          removed &&
          (await container.inspect().then(
            ({ State }) => State,
            () => undefined,
          ));
        await removeContainer(container);
        if (!removed) return;
        const startedAt = engineTime(state?.StartedAt) ?? info.Created * 1000;
        const finishedAt = state && !state.Running ? engineTime(state.FinishedAt) : undefined;
        removed({ labels: info.Labels, startedAt, endedAt: Math.max(startedAt, finishedAt ?? Date.now()) });
      }),
    );
    const failed = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected");
    if (failed.length > 0) {
      const reason = failed[0]!.reason as Error;
      throw Object.assign(new Error(`${failed.length} of ${left.length} container(s) of plane ${planeId} could not be removed: ${reason.message}`), {
        cause: reason,
      });
    }
    const folder = this.#planeFolderPath(planeId);
    this.#owned.delete(folder);
    await rm(folder, { recursive: true, force: true });
  }

  /** Builds a function's image on the base image (see image-builder.ts); returns its tag. */
  async buildImage(spec: ImageBuildSpec, hash: string, secrets?: ImageSecrets): Promise<string> {
    const forced = spec.force || this.#forceBuild ? { ...spec, force: true } : spec;
    return (await buildImage(this.#docker, await this.#baseImage(), forced, hash, this.#log, secrets)).tag;
  }

  /**
   * Whether `tag` is the base image or built on it, so that its Node is the base image's (an `Image.fromRegistry`
   * image has its own): its layers start with the base image's. Asked once an image.
   */
  #builtOnBase(tag: string, base: string): Promise<boolean> {
    let known = this.#onBase.get(tag);
    if (!known) {
      known = (async () => {
        if (tag === base) return true;
        const layersOf = async (t: string) => ((await this.#docker.getImage(t).inspect()) as { RootFS?: { Layers?: string[] } }).RootFS?.Layers ?? [];
        const [mine, theirs] = await Promise.all([layersOf(tag), layersOf(base)]);
        return theirs.length > 0 && theirs.every((layer, i) => mine[i] === layer);
      })();
      known.catch(() => this.#onBase.delete(tag));
      this.#onBase.set(tag, known);
    }
    return known;
  }

  /** Everything staged for one plane's containers: removed by `cleanup`, so a crash leaves nothing for long. */
  #planeFolderPath(planeId: string): string {
    return join(this.#staging, `tandem-${planeId.replace(/[^\w.-]/g, "_") || "unlabelled"}`);
  }

  /**
   * The plane's staging folder, made when missing. `/dev/shm` is every local
   * user's to write in, so the folder must be this process's own and closed to
   * others (0700; the engine mounts from it as root), never a folder or a link
   * someone else put there to swap a bundle or a socket.
   */
  #planeFolder(planeId: string): string {
    const folder = this.#planeFolderPath(planeId);
    if (this.#owned.has(folder)) return folder;
    try {
      mkdirSync(folder, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw new InternalError(`could not make the staging folder ${folder}: ${(err as Error).message}`);
    }
    const found = lstatSync(folder);
    if (!found.isDirectory() || found.uid !== process.getuid?.() || (found.mode & 0o077) !== 0) {
      throw new InternalError(`${folder} is not this plane's own folder (a link, another user's, or open to others); remove it and try again`);
    }
    this.#owned.add(folder);
    return folder;
  }

  #containerFolder(planeId: string, containerId: string): string {
    return join(this.#planeFolder(planeId), containerId.replace(/[^\w.-]/g, "_"));
  }

  /** Prepares once; a failed attempt is forgotten so the next call tries again. */
  #baseImage(): Promise<string> {
    this.#image ??= this.#prepare().catch((err: unknown) => {
      this.#image = undefined;
      throw err;
    });
    return this.#image;
  }

  async #prepare(): Promise<string> {
    await this.#ping();
    const info = (await this.#docker.info()) as { Runtimes?: Record<string, EngineRuntime>; ExperimentalBuild?: boolean; DockerRootDir?: string };
    const choice = chooseRuntime(info.Runtimes ?? {}, this.#askedRuntime, await this.#engineAddress());
    if (choice.note && this.#runtime === undefined) this.#log(choice.note);
    this.#runtime = choice.runtime;
    this.#gvisor = choice.gvisor;
    this.#engineRoot = info.DockerRootDir;
    this.#snapshotProblem = snapshotProblem(choice, info);
    // gVisor loads a program itself, as the container's user, so it must be able to read it: the image's Node is
    // execute-only (base-image.ts). Under runsc the host's Node, the same file, is bound over it, readable; gVisor's
    // own ptrace rule (a process may trace only its descendants) keeps what a function spawns out of the runner.
    this.#readableNode = choice.gvisor ? await this.#hostVisibleNode() : undefined;
    return ensureBaseImage(this.#docker, { log: this.#log });
  }

  /**
   * The plane's Node at a path the engine can bind from: its own, or, for a plane that runs in a container (its
   * image, deploy/), a copy in the staging folder, which is bound at the same path on the host.
   */
  async #hostVisibleNode(): Promise<string> {
    const own = await realpath(process.execPath);
    if (!existsSync("/.dockerenv")) return own;
    const copy = join(this.#staging, `tandem-node-${process.version}`);
    if (!existsSync(copy)) {
      const partial = `${copy}.${process.pid}`;
      await copyFile(own, partial);
      await chmod(partial, 0o755);
      await rename(partial, copy);
    }
    return copy;
  }

  async #ping(): Promise<void> {
    try {
      await this.#docker.ping();
      trace("docker: engine answered");
    } catch (err) {
      throw new DockerUnavailableError(
        `no Docker engine at ${await this.#engineAddress()} (${engineMessage(err)}). ` +
          "Start one with `dockerd --bridge=none --iptables=false &` (Debian: apt-get install -y docker.io), " +
          "or run the plane with --runtime process for unsandboxed development",
      );
    }
  }

  async #engineAddress(): Promise<string> {
    // docker-modem keeps where it dials on the instance; its typings do not show it. Without DOCKER_HOST its socketPath
    // is a function that finds the default socket, which getSocketPath() resolves.
    const modem = this.#docker.modem as unknown as { getSocketPath?(): Promise<unknown> | undefined; host?: string; port?: string | number };
    const socketPath = await modem.getSocketPath?.();
    if (typeof socketPath === "string" && socketPath) return socketPath;
    return modem.host ? `${modem.host}${modem.port ? `:${modem.port}` : ""}` : "/var/run/docker.sock";
  }
}

/** One started container: its output as lines, its exit, and its removal. */
class DockerContainer implements StartedContainer {
  readonly runtimeId: string;
  readonly exited: Promise<ExitInfo>;

  readonly #container: Dockerode.Container;
  readonly #log: (line: string) => void;
  readonly #listeners: ((stream: "stdout" | "stderr", line: string) => void)[] = [];
  readonly #buffered: ["stdout" | "stderr", string][] = [];
  readonly #outputEnded: Promise<void>;
  readonly #events: ContainerEvents;
  readonly #removed: () => Promise<void>;
  #settle!: (exit: ExitInfo) => void;
  #removal: Promise<void> | undefined;
  /** The plane asked for this container's end: its SIGKILL is no one else's. */
  #killing = false;

  constructor(
    readonly id: string,
    container: Dockerode.Container,
    docker: Docker,
    output: NodeJS.ReadWriteStream,
    log: (line: string) => void,
    events: ContainerEvents,
    removed: () => Promise<void>,
  ) {
    this.runtimeId = container.id;
    this.#container = container;
    this.#log = log;
    this.#events = events;
    this.#removed = removed;
    this.exited = new Promise((resolve) => (this.#settle = resolve));

    const stdout = new PassThrough();
    const stderr = new PassThrough();
    docker.modem.demuxStream(output, stdout, stderr);
    const stdoutDone = splitLines(stdout, (line) => this.#emit("stdout", line));
    const stderrDone = splitLines(stderr, (line) => this.#emit("stderr", line));
    // demuxStream never ends its outputs; the attach stream ends (or breaks) when the container stops.
    const endBoth = (): void => {
      stdout.end();
      stderr.end();
    };
    for (const event of ["end", "close", "error"]) output.on(event, endBoth);
    this.#outputEnded = Promise.all([stdoutDone, stderrDone]).then(() => {});
  }

  onOutput(listener: (stream: "stdout" | "stderr", line: string) => void): void {
    this.#listeners.push(listener);
    for (const [stream, line] of this.#buffered) listener(stream, line);
    this.#buffered.length = 0;
  }

  async kill(options: { quick?: boolean } = {}): Promise<void> {
    this.#killing = true;
    // One request: the engine kills and removes it (its exit, read meanwhile, may find it gone, which is allowed for).
    if (options.quick) return this.#remove();
    try {
      await this.#container.kill();
    } catch (err) {
      // Not running (409), or already gone (404): either way it is stopped, which is what was asked.
      const status = (err as { statusCode?: number }).statusCode;
      if (status !== 404 && status !== 409 && status !== 304) this.#log(`kill ${this.id}: ${engineMessage(err)}`);
    }
    // Let the exit be read before the container (and its state) is removed.
    await Promise.race([this.exited, new Promise((resolve) => setTimeout(resolve, KILL_WAIT_MS).unref())]);
    await this.#remove();
  }

  async pause(): Promise<void> {
    await this.#container.pause();
  }

  async resume(): Promise<void> {
    await this.#container.unpause();
  }

  /** Follows the container to its exit; called once it has started. */
  watch(): void {
    void this.#readExit().then((exit) => {
      this.#settle(exit);
      return this.#remove();
    });
  }

  async #readExit(): Promise<ExitInfo> {
    let waited: { StatusCode?: number } | undefined;
    try {
      waited = (await this.#container.wait()) as { StatusCode?: number };
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) this.#log(`wait for ${this.id}: ${engineMessage(err)}`);
    }
    await Promise.all([
      Promise.race([this.#outputEnded, new Promise((resolve) => setTimeout(resolve, OUTPUT_DRAIN_MS).unref())]),
      // Once the engine's `die` event is in, so is every `oom` and `kill` it logged before it.
      this.#events.until((seen) => seen.died, DIE_EVENT_WAIT_MS),
    ]);
    let code = waited?.StatusCode ?? null;
    let oomKilled = false;
    try {
      const { State } = await this.#container.inspect();
      code = State.ExitCode;
      oomKilled = State.OOMKilled;
    } catch {
      // Removed before it could be inspected (a kill racing the exit): the wait's code and the events are all there is.
    }
    const seen = this.#events.seen;
    oomKilled ||= seen.oom;
    if (!oomKilled && code === 137 && !this.#killing && seen.signals.length === 0) {
      // A SIGKILL that neither the plane nor anyone through the engine sent: the OOM killer's, or one from the host.
      // Docker's OOMKilled flag can lose a race with the exit; the oom event may still be on its way.
      oomKilled = await this.#events.until((s) => s.oom, LATE_OOM_WAIT_MS);
    }
    const signal = signalOf(code, seen.signals);
    return { code, oomKilled, ...(signal ? { signal } : {}) };
  }

  #remove(): Promise<void> {
    this.#removal ??= removeContainer(this.#container)
      .catch((err: unknown) => {
        this.#log(`remove ${this.id}: ${engineMessage(err)}`);
      })
      .then(() => this.#removed());
    return this.#removal;
  }

  #emit(stream: "stdout" | "stderr", line: string): void {
    if (this.#listeners.length === 0) {
      this.#buffered.push([stream, line]);
      if (this.#buffered.length > MAX_BUFFERED_LINES) this.#buffered.shift();
      return;
    }
    for (const listener of this.#listeners) listener(stream, line);
  }
}

/** What the engine said about one container: an OOM kill, the signals sent to it through the engine, its death. */
interface ContainerEventLog {
  oom: boolean;
  signals: number[];
  died: boolean;
}

/** One container's view of {@link EngineEvents}. */
interface ContainerEvents {
  readonly seen: ContainerEventLog;
  /** Resolves true as soon as `test` holds for what was seen, false after `ms` (at once when no stream is open). */
  until(test: (seen: ContainerEventLog) => boolean, ms: number): Promise<boolean>;
}

/**
 * One stream of the engine's `oom`, `kill` and `die` events for the plane's
 * containers (by label), shared by all of them. The engine's word on how a
 * container ended: Docker's OOMKilled flag on inspect can lose a race with the
 * exit, and a kill from outside (`docker kill`) looks like an OOM kill by exit
 * code alone. A broken stream is reopened from where it broke.
 */
class EngineEvents {
  readonly #docker: Docker;
  readonly #log: (line: string) => void;
  readonly #watched = new Map<string, { seen: ContainerEventLog; wake: Set<() => void> }>();
  #open: Promise<void> | undefined;
  #connected = false;
  /** Said that the stream cannot be opened, once until it opens again. */
  #complained = false;
  /** Seconds: the time of the last event read, to resume from after a break. */
  #since: number | undefined;

  constructor(docker: Docker, log: (line: string) => void) {
    this.#docker = docker;
    this.#log = log;
  }

  /**
   * Resolves once the stream is open (opened on first use). Never fails: with
   * no stream, exits are read from inspect alone, and the next call tries again.
   */
  ready(): Promise<void> {
    this.#open ??= this.#connect().catch((err: unknown) => {
      this.#open = undefined;
      if (!this.#complained)
        this.#log(`could not follow the Docker engine's events (${engineMessage(err)}); until it can, an exit's cause comes from inspect alone`);
      this.#complained = true;
    });
    return this.#open;
  }

  /** Starts recording events for a container (by Docker id), before it starts. */
  watch(dockerId: string): ContainerEvents {
    const entry = { seen: { oom: false, signals: [], died: false }, wake: new Set<() => void>() };
    this.#watched.set(dockerId, entry);
    return {
      seen: entry.seen,
      until: (test, ms) => {
        if (test(entry.seen)) return Promise.resolve(true);
        if (!this.#connected) return Promise.resolve(false);
        return new Promise<boolean>((resolve) => {
          const check = () => {
            if (!test(entry.seen)) return;
            clearTimeout(timer);
            entry.wake.delete(check);
            resolve(true);
          };
          const timer = setTimeout(() => {
            entry.wake.delete(check);
            resolve(false);
          }, ms).unref();
          entry.wake.add(check);
        });
      },
    };
  }

  forget(dockerId: string): void {
    this.#watched.delete(dockerId);
  }

  async #connect(): Promise<void> {
    const since = this.#since;
    const stream = await this.#docker.getEvents({
      filters: { type: ["container"], event: ["oom", "kill", "die"], label: [CONTAINER_LABELS.container] },
      ...(since === undefined ? {} : { since }),
    });
    this.#connected = true;
    this.#complained = false;
    this.#since ??= Math.floor(Date.now() / 1000);
    // A stream that never ends must not keep the plane's process alive.
    (stream as { socket?: Socket }).socket?.unref();
    const decoder = new StringDecoder("utf8");
    const lines = new LineSplitter({ maxLineChars: MAX_LINE_CHARS });
    stream.on("data", (chunk: Buffer) => lines.push(decoder.write(chunk)).forEach((line) => this.#record(line)));
    let broken = false;
    const reopen = (why: string) => {
      if (broken) return;
      broken = true;
      this.#connected = false;
      this.#open = undefined;
      this.#log(`the Docker engine's event stream ended (${why}); reopening it`);
      const retry = () => void this.ready().then(() => this.#connected || setTimeout(retry, EVENTS_RETRY_MS).unref());
      setTimeout(retry, EVENTS_RETRY_MS).unref();
    };
    stream.on("end", () => reopen("end"));
    stream.on("close", () => reopen("closed"));
    stream.on("error", (err: Error) => reopen(err.message));
  }

  #record(line: string): void {
    let event: { Action?: string; Actor?: { ID?: string; Attributes?: Record<string, string> }; time?: number };
    try {
      event = JSON.parse(line) as typeof event;
    } catch {
      return;
    }
    // Resumed from the same second after a break: a repeated event changes nothing.
    if (typeof event.time === "number") this.#since = event.time;
    const entry = this.#watched.get(event.Actor?.ID ?? "");
    if (!entry) return;
    if (event.Action === "oom") entry.seen.oom = true;
    if (event.Action === "die") entry.seen.died = true;
    if (event.Action === "kill") {
      const signal = Number(event.Actor?.Attributes?.signal);
      if (Number.isInteger(signal)) entry.seen.signals.push(signal);
    }
    for (const wake of [...entry.wake]) wake();
  }
}

/**
 * The signal that ended a container, when one did: SIGKILL for exit code 137,
 * or a signal sent through the engine that its exit code (128 + n) matches.
 * A code like 134 alone is a process that aborted, not one that was killed.
 */
function signalOf(code: number | null, sent: number[]): string | undefined {
  const number = code === 137 ? 9 : code !== null && code > 128 && sent.includes(code - 128) ? code - 128 : undefined;
  if (number === undefined) return undefined;
  return Object.entries(osConstants.signals).find(([, n]) => n === number)?.[0] ?? `signal ${number}`;
}

/** The name of the one checkpoint a memory snapshot holds, in its folder and in a restored container's. */
const CHECKPOINT_NAME = "tandem";
/** The file in a resumed container's checkpoint folder that names the container (see `#placeCheckpoint`). */
const RESUMED_BY = "tandem-resumed-by";
/** `POST /containers/{id}/start?checkpoint=…` with no body (the engine refuses a start with one): docker-modem's split. */
const RESTORE_QUERY = { _query: { checkpoint: CHECKPOINT_NAME }, _body: {} };

/**
 * Why an engine cannot take memory snapshots, or undefined when it can: they need gVisor (runc's checkpoints go
 * through CRIU, which fails on these kernels), an engine started with `--experimental` (checkpoints are an
 * experimental API in Docker 20.10), and the engine's data folder on this machine (a snapshot is put there to be
 * restored into a new container).
 */
function snapshotProblem(
  { runtime, gvisor }: { runtime: string; gvisor: boolean },
  info: { ExperimentalBuild?: boolean; DockerRootDir?: string },
): string | undefined {
  if (!gvisor) return `function containers run under ${runtime}, not gVisor (runsc), which memory snapshots need`;
  if (!info.ExperimentalBuild) return "the Docker engine was started without --experimental, which checkpoints need";
  const root = info.DockerRootDir ? join(info.DockerRootDir, "containers") : undefined;
  try {
    if (!root) throw new Error("none given");
    accessSync(root, fsConstants.W_OK);
  } catch {
    return `the Docker engine's data folder (${root ?? "unknown"}) is not writable on this machine, where snapshots are put to be restored`;
  }
  return undefined;
}

/** What `docker info` must list for the plane to run functions under gVisor by default. */
export const GVISOR_RUNTIME = "runsc";

/**
 * gVisor as the engine must register it: its own network off (Docker's `--network none` alone fails under runsc) and
 * leave to connect to a host unix socket (the control and API sockets in a container's bound folder; by default
 * gVisor refuses with EPERM).
 */
export const GVISOR_DAEMON_CONFIG = '{"runtimes":{"runsc":{"path":"/usr/bin/runsc","runtimeArgs":["--network=none","--host-uds=open"]}}}';

/** A runtime as `docker info` lists it, under Runtimes. */
export interface EngineRuntime {
  path?: string;
  runtimeArgs?: string[];
}

/** Whether a runtime the engine lists is gVisor: registered as `runsc`, or under another name with `runsc` as its program. */
function isGvisor(name: string, runtime: EngineRuntime | undefined): boolean {
  return name === GVISOR_RUNTIME || basename(runtime?.path ?? "") === GVISOR_RUNTIME;
}

/** Whether gVisor's arguments let a container connect to a host unix socket (`--host-uds=open` or `all`). */
function gvisorOpensHostSockets(runtime: EngineRuntime | undefined): boolean {
  return (runtime?.runtimeArgs ?? []).some((arg) => /^--?(host-uds=(open|all)|fsgofer-host-uds(=true)?)$/.test(arg));
}

/**
 * The runtime function containers run under: the one asked for, which the engine must list; else gVisor where the
 * engine lists it, registered so that a container can reach the plane's sockets; else runc, with a note saying so
 * (and how to get gVisor). A runtime asked for that the engine lacks, or cannot use, is the plane's option at fault
 * (`InvalidOptionsError`): the plane does not start, where a missing engine leaves it waiting for one.
 */
export function chooseRuntime(
  listed: Record<string, EngineRuntime>,
  asked: string | undefined,
  engine: string,
): { runtime: string; gvisor: boolean; note?: string } {
  const names = Object.keys(listed);
  const howTo = `apt-get install -y runsc, register it in the engine's daemon.json as ${GVISOR_DAEMON_CONFIG}, and start dockerd with --config-file <that file> --experimental`;
  const gvisorUnfit = (name: string) =>
    `the Docker engine at ${engine} registers ${name === GVISOR_RUNTIME ? "runsc" : `gVisor as ${name}`} without leave to connect to a host unix socket (its runtimeArgs: ${JSON.stringify(
      listed[name]?.runtimeArgs ?? [],
    )}), so a container cannot reach its plane (EPERM). Add "--host-uds=open" to its runtimeArgs (${GVISOR_DAEMON_CONFIG}) and reload dockerd (kill -HUP)`;
  if (asked) {
    if (!names.includes(asked)) {
      const install = asked === GVISOR_RUNTIME ? `For gVisor: ${howTo}` : `Install it and register it in the engine's daemon.json under "runtimes"`;
      throw new InvalidOptionsError(
        `the Docker engine at ${engine} has no runtime "${asked}" (it has: ${names.join(", ") || "none"}). ${install}; or leave --docker-runtime out to use gVisor where the engine has it, else runc`,
      );
    }
    const gvisor = isGvisor(asked, listed[asked]);
    if (gvisor && !gvisorOpensHostSockets(listed[asked])) throw new InvalidOptionsError(gvisorUnfit(asked));
    return { runtime: asked, gvisor };
  }
  if (names.includes(GVISOR_RUNTIME)) {
    if (gvisorOpensHostSockets(listed[GVISOR_RUNTIME])) return { runtime: GVISOR_RUNTIME, gvisor: true };
    return {
      runtime: "runc",
      gvisor: false,
      note: `⚠ ${gvisorUnfit(GVISOR_RUNTIME)}. Until then function containers run under runc, sharing the host's kernel`,
    };
  }
  return {
    runtime: "runc",
    gvisor: false,
    note: `⚠ the Docker engine at ${engine} has no gVisor runtime (runsc): function containers run under runc, sharing the host's kernel. For gVisor: ${howTo} (docs/plane.md, gVisor)`,
  };
}

/** `/dev/shm` when it is a folder this process may write in (a tmpfs on Linux), else the temporary folder. */
function defaultStagingDir(): string {
  try {
    if (statSync("/dev/shm").isDirectory()) {
      accessSync("/dev/shm", fsConstants.W_OK);
      return "/dev/shm";
    }
  } catch {
    // No /dev/shm (or not ours to write): the temporary folder, whose path mountinfo then shows.
  }
  return tmpdir();
}

/** A time the engine reports (`State.StartedAt`, `FinishedAt`) in ms; undefined for its "never" (`0001-01-01T…`). */
function engineTime(text: string | undefined): number | undefined {
  const ms = text ? Date.parse(text) : NaN;
  return ms > 0 ? ms : undefined;
}

/** Force-removes a container; one that is already gone, or going, is not an error. */
async function removeContainer(container: Dockerode.Container): Promise<void> {
  try {
    await container.remove({ force: true });
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode;
    if (status === 404) return;
    // 409: another remove is in progress; wait until the engine no longer knows it.
    if (status === 409) {
      for (let attempt = 0; attempt < 50; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        try {
          await container.inspect();
        } catch (inspectErr) {
          if ((inspectErr as { statusCode?: number }).statusCode === 404) return;
        }
      }
    }
    throw err;
  }
}

/** Calls `onLine` for each line of `stream` (UTF-8, `\n` or `\r\n`); resolves when the stream ends. */
function splitLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): Promise<void> {
  const decoder = new StringDecoder("utf8");
  const lines = new LineSplitter({ maxLineChars: MAX_LINE_CHARS });
  return new Promise((resolve) => {
    stream.on("data", (chunk: Buffer) => lines.push(decoder.write(chunk)).forEach(onLine));
    stream.on("end", () => {
      [...lines.push(decoder.end()), ...lines.end()].forEach(onLine);
      resolve();
    });
  });
}

/** Checks a host path before Docker sees it: a missing bind source would be created as a root-owned folder. */
async function requireHostPath(path: string, kind: "file" | "folder", what: string): Promise<void> {
  const found = await stat(path).catch(() => undefined);
  const ok = found && (kind === "file" ? found.isFile() : found.isDirectory());
  if (!ok) throw new InternalError(`the container's ${what} is not a ${kind}: ${path}`);
}

/** The engine's own words: dockerode puts them in `json.message`, behind a generic `message`. */
function engineMessage(err: unknown): string {
  const json = (err as { json?: { message?: string } }).json;
  if (json?.message) return json.message;
  return err instanceof Error ? err.message : String(err);
}

/**
 * dockerode, required with what it requires for what a plane never does left to load when first used: gRPC and its
 * protobuf loader (BuildKit sessions, which only `buildImage` with `version: "2"` opens) and ssh2 (an engine at an
 * `ssh://` address). They are 0.3 s of the 0.4 s dockerode's require takes, which every plane's start waits for
 * (`tandem run` of a plane function among them). Each is the real package once anything is asked of it.
 */
function requireDockerode(): typeof Dockerode {
  type Load = (request: string, parent: unknown, isMain: boolean) => unknown;
  const loader = Module as unknown as { _load: Load };
  const load = loader._load;
  loader._load = function (this: unknown, request, parent, isMain) {
    const later = () => load.call(this, request, parent, isMain) as Record<PropertyKey, unknown>;
    if (request === "@grpc/grpc-js" || request === "@grpc/proto-loader") return onFirstUse(later);
    // docker-modem reads ssh2's `Client` as it loads, and constructs it only for an ssh:// engine.
    if (request === "ssh2") return { Client: onFirstConstruct(() => later().Client as new (...args: unknown[]) => object) };
    return load.call(this, request, parent, isMain);
  };
  try {
    return createRequire(import.meta.url)("dockerode") as typeof Dockerode;
  } finally {
    loader._load = load;
  }
}

/** A module object that loads the real one at the first property asked of it. */
function onFirstUse(load: () => Record<PropertyKey, unknown>): object {
  let real: Record<PropertyKey, unknown> | undefined;
  const module = () => (real ??= load());
  return new Proxy({}, { get: (_, key) => module()[key], has: (_, key) => key in module() });
}

/** A class that loads the real one when first constructed. */
function onFirstConstruct(load: () => new (...args: unknown[]) => object): unknown {
  return new Proxy(function deferred() {}, { construct: (_, args) => Reflect.construct(load(), args) });
}
