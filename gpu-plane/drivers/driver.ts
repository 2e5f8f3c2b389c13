/**
 * The one interface every container runtime of the plane implements. The
 * plane decides what runs where; a driver only starts a container from a
 * spec, reports its output and its exit, and kills it. `docker.ts` (the
 * sandboxed default, and the only file that imports dockerode) and
 * `process.ts` (unsandboxed, development only) are the two drivers a plane
 * runs; `memory.ts` is a fake for unit tests of the dispatcher, never run by
 * a plane.
 */

import type { ImageBuildSpec } from "../../sdk/protocol.js";

/** The values of the named secrets an image's steps declare, by name, fetched when its build needs them. */
export type ImageSecrets = () => Promise<Record<string, Record<string, string>>>;

/** What to start. Paths are on the plane's host. */
export interface ContainerSpec {
  /** The plane's id for this container, e.g. `ctr-1a2b3c4d`. Used in names, labels and log tags. */
  id: string;
  /** The app's plane bundle: one self-contained ES module that runs the function runner. */
  bundlePath: string;
  /** A node_modules folder for the bundle's native packages, mounted read-only beside it; none when it has none. */
  nodeModulesPath: string | undefined;
  /**
   * A folder holding the control socket `control.sock`, mounted read-only. The
   * plane makes the socket connectable by the container's user (0666) and
   * keeps the folder its own (0755).
   */
  controlDir: string;
  /** Environment of the function (its `env` option, `CUDA_VISIBLE_DEVICES`, the runner's settings). */
  env: Record<string, string>;
  /** CPU cores (fractions allowed). */
  cpu: number;
  /** Memory limit in MiB. */
  memoryMiB: number;
  /** Most processes and threads inside the container. */
  pidsLimit: number;
  /** `false` (the default for functions): no network at all. */
  network: boolean;
  /** Real GPU device ids to hand to the container (empty for CPU functions and simulated GPUs). */
  gpuDeviceIds: string[];
  /** Labels to find the container by (app, function, plane). */
  labels: Record<string, string>;
  /** The function's built image (a tag from `buildImage`); none: the base Node image. */
  image?: string;
  /** Volume mounts: folders of the plane's bound at `containerPath`, read-only (`EROFS` for every write) or not. */
  mounts?: { hostPath: string; containerPath: string; readOnly: boolean }[];
  /**
   * Told once the runtime has been asked to run the container, before it answers: from then until the container's
   * runner is ready, this process's thread is not on the container's way (see `StartAhead.asked` in plane.ts).
   */
  starting?: () => void;
  /**
   * A memory snapshot to resume instead of starting fresh: a folder `checkpoint` wrote, of a container started from
   * the same spec. Its runner goes on from where the snapshot was taken (see `SnapshotFrame`).
   */
  restoreFrom?: string;
}

/** Where the control socket and the bundle appear inside a container. */
export const IN_CONTAINER = {
  bundle: "/tandem/app/bundle.mjs",
  /** Beside the bundle, when it joins the runtime: the runtime's lines and their V8 code cache (gpu-plane/runtime-code.ts). */
  runtime: "/tandem/app/runtime.js",
  runtimeCache: "/tandem/app/runtime.cache",
  nodeModules: "/tandem/app/node_modules",
  controlDir: "/tandem/control",
  controlSocket: "/tandem/control/control.sock",
  /** Where the SDK sends its `/v1` requests, for the plane to answer or carry to the gateway (gpu-plane/container-api.ts). */
  apiSocket: "/tandem/control/api.sock",
} as const;

export interface ExitInfo {
  /** Exit code, or null when killed by a signal the driver could not read a code for. */
  code: number | null;
  /** The kernel's OOM killer stopped it (memory limit), as the runtime reports it; never guessed from the exit code. */
  oomKilled: boolean;
  /** The signal that ended it (`"SIGKILL"`), when the runtime knows one did: the OOM killer's, the plane's, or one from outside. */
  signal?: string;
}

export interface StartedContainer {
  readonly id: string;
  /** Docker's container id, or the process id. */
  readonly runtimeId: string;
  /** Each line the container writes on stdout or stderr, as it comes. */
  onOutput(listener: (stream: "stdout" | "stderr", line: string) => void): void;
  /** Settles once when the container stops, for whatever reason. */
  readonly exited: Promise<ExitInfo>;
  /**
   * Stops the container at once (SIGKILL) and removes it. Safe to call twice. `quick`: removed without waiting for
   * its exit to be read first (the plane is going away, and reads nothing more of it).
   */
  kill(options?: { quick?: boolean }): Promise<void>;
  /**
   * Freezes every process of the container (the engine's pause): it holds its memory and uses no CPU until `resume`.
   * Only where the driver is `pausable`.
   */
  pause?(): Promise<void>;
  /** Thaws a paused container: its processes go on where they stopped. */
  resume?(): Promise<void>;
}

/** A container `cleanup` removed, and when it ran as the engine saw it. */
export interface RemovedContainer {
  /** Its labels (`CONTAINER_LABELS`): the plane's id for it, its app, function and resources. */
  labels: Record<string, string>;
  /** When it started (ms since the epoch). */
  startedAt: number;
  /** When it stopped: when it ended on its own, or, still running, when `cleanup` removed it. */
  endedAt: number;
}

export interface ContainerDriver {
  /** The runtime, as heartbeats and `status` name it; `"memory"` only for the unit tests' fake. */
  readonly name: "docker" | "process" | "memory";
  /** False only for the development-only process driver. */
  readonly sandboxed: boolean;
  /** Its containers can be paused and resumed (`StartedContainer.pause`): the plane may keep prepared containers (prepared-containers.ts). */
  readonly pausable?: boolean;
  /** The Docker driver's engine runtime once prepared: `"runsc"` (gVisor, its default where the engine lists it) or `"runc"`. */
  readonly runtime?: string | undefined;
  /** Whether that engine runtime is gVisor (`runsc`, or gVisor registered under another name). */
  readonly gvisor?: boolean;
  /** Readies the runtime (checks the engine, builds or finds the base image). Throws a readable error when it cannot. */
  prepare(): Promise<void>;
  start(spec: ContainerSpec): Promise<StartedContainer>;
  /**
   * Removes every container this plane left behind (by label), e.g. after a crash, and what the driver kept for them;
   * tells `removed` of each container as it is removed, with when it ran (its time is billed: usage-ledger.ts). Every
   * one is tried; when some could not be removed it throws once the others are, saying how many. It says nothing
   * itself: a caller that tries again counts the removals of every pass with `removed`, and says the total once.
   */
  cleanup(planeId: string, removed?: (container: RemovedContainer) => void): Promise<void>;
  /**
   * Where the plane should open a container's control folder, when the
   * driver has a place for it (the Docker driver keeps it off the plane's
   * state folder, whose path a mount would show inside the container);
   * otherwise the plane keeps it under its state folder.
   */
  controlDirFor?(planeId: string, containerId: string): string;
  /**
   * Builds (or finds, by hash) a function's image; returns its tag. `secrets` gives the values of the named secrets
   * its steps declare (`Image.secrets`), asked for only when a build needs them.
   */
  buildImage(spec: ImageBuildSpec, hash: string, secrets?: ImageSecrets): Promise<string>;
  /**
   * Why this driver cannot take memory snapshots, in words; undefined when it can (the Docker driver under gVisor).
   * A driver without it cannot.
   */
  snapshotsUnavailable?(): string | undefined;
  /**
   * Saves a running container's memory into the folder `dir` (made if missing) and stops it: a memory snapshot that
   * `ContainerSpec.restoreFrom` resumes in new containers. The container must hold no connected host socket.
   */
  checkpoint?(container: StartedContainer, dir: string): Promise<void>;
}
