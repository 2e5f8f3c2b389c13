/**
 * Builds a function's image on the plane, from its spec, as Docker layers:
 * one instruction a step on top of the base Node image, so Docker's build
 * cache reuses every step before the first changed one and rebuilds from
 * there. Nothing is pulled: npm packages come from the npm registry through
 * the plane's npm, Debian packages through its `apt-get download` (unpacked
 * into a layer; their dependencies are not followed), and `runCommands` run in
 * a busybox shell added as a layer. A finished image is tagged by the spec's
 * hash and the base image's, so an unchanged spec is never built again and a
 * new base rebuilds it. Every image it makes is labelled as the plane's, and a
 * `registry` step that names one of the plane's own images (by repository or
 * by id) fails: those hold other apps' files. Takes the engine from the Docker
 * driver: this file does not make its own.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import type Docker from "dockerode";
import { ImageBuildError } from "../sdk/errors.js";
import { refusedImageRef } from "../sdk/image.js";
import { IMAGE_LABELS, IMAGE_REPOSITORIES, type ImageBuildSpec, type ResolvedImageStep } from "../sdk/protocol.js";

/** The repository built images are tagged in: `tandem-image:<hash>`. */
export const IMAGE_REPO = IMAGE_REPOSITORIES.built;
const LOG_TAIL = 20;

export interface BuiltImage {
  tag: string;
  /** Each Dockerfile step, and whether Docker's cache served it. */
  steps: { instruction: string; cached: boolean }[];
}

/**
 * Builds the image of `spec` (named by `hash`, the sha256 of its JSON) on
 * `base`, or finds it built; returns its tag.
 * @example
 * const { tag } = await buildImage(docker, await ensureBaseImage(docker), spec, hash, console.log);
 * // "tandem-image:5d41402abc4b2a76"
 */
export async function buildImage(docker: Docker, base: string, spec: ImageBuildSpec, hash: string, log: (line: string) => void): Promise<BuiltImage> {
  // The base is part of the name: an image built on another Node (or base layout) is not this one.
  const tag = `${IMAGE_REPO}:${createHash("sha256").update(`${base}\n${hash}`).digest("hex").slice(0, 16)}`;
  const force = spec.force;
  if (!force && (await exists(docker, tag))) return { tag, steps: [] };
  const context = await mkdtemp(join(tmpdir(), "tandem-image-"));
  const tail: string[] = [];
  const say = (line: string) => {
    tail.push(line);
    if (tail.length > LOG_TAIL) tail.shift();
    log(`[image ${hash.slice(0, 12)}] ${line}`);
  };
  try {
    const { lines, stepOf } = await dockerfile(docker, base, spec.steps, context, say);
    await writeFile(join(context, "Dockerfile"), lines.join("\n") + "\n");
    say(`building ${tag}: ${lines.length} steps${force ? " (forced)" : ""}`);
    const tar = spawn("tar", ["-C", context, "-c", "."], { stdio: ["ignore", "pipe", "inherit"] });
    const stream = await docker.buildImage(tar.stdout as unknown as NodeJS.ReadableStream, {
      t: tag,
      networkmode: "none",
      nocache: force,
      rm: true,
      forcerm: true,
    });
    const steps: BuiltImage["steps"] = [];
    let failure: string | undefined;
    await new Promise<void>((resolve) =>
      docker.modem.followProgress(
        stream,
        () => resolve(),
        (event: { stream?: string; error?: string }) => {
          for (const line of (event.stream ?? "")
            .split("\n")
            .map((l) => l.trimEnd())
            .filter(Boolean)) {
            const step = /^Step \d+\/\d+ : (.*)$/.exec(line);
            if (step) steps.push({ instruction: step[1]!, cached: false });
            if (line.includes("Using cache") && steps.length) steps[steps.length - 1]!.cached = true;
            say(line);
          }
          if (event.error) failure = event.error;
        },
      ),
    );
    if (failure) {
      // Named as the user wrote it: their step (one may make several Dockerfile instructions), then the instruction.
      const mine = steps.length ? stepOf[steps.length - 1]! : 0;
      const at = steps.length ? `step ${mine + 1} (${spec.steps[mine]!.kind}), at ${steps[steps.length - 1]!.instruction}` : "its first step";
      throw new ImageBuildError(`the image failed to build at ${at}: ${failure.trim()}\n${tail.slice(-10).join("\n")}`, {
        step: mine + 1,
        logTail: tail.slice(),
      });
    }
    say(`built ${tag} (${steps.filter((s) => s.cached).length} of ${steps.length} steps from cache)`);
    return { tag, steps };
  } finally {
    await rm(context, { recursive: true, force: true });
  }
}

/** The Dockerfile for the steps, with what each needs laid out in `context`. */
async function dockerfile(
  docker: Docker,
  base: string,
  steps: ResolvedImageStep[],
  context: string,
  say: (line: string) => void,
): Promise<{ lines: string[]; stepOf: number[] }> {
  const lines: string[] = [];
  /** The index of the step each line comes from. */
  const stepOf: number[] = [];
  let shell = false;
  for (const [i, step] of steps.entries()) {
    const where = `step ${i + 1} (${step.kind})`;
    switch (step.kind) {
      case "node": {
        const have = process.versions.node.split(".")[0];
        if (step.version !== null && step.version.split(".")[0] !== have) {
          throw new ImageBuildError(
            `${where}: Image.node("${step.version}") asks for Node ${step.version}, and this plane builds on its own Node ${process.versions.node}`,
          );
        }
        lines.push(`FROM ${base}`, MADE_BY_PLANE);
        break;
      }
      case "registry":
        lines.push(`FROM ${await registryImage(docker, step.ref, where, say)}`, MADE_BY_PLANE);
        break;
      case "npm": {
        const dir = join(context, `npm-${i}`);
        await mkdir(dir, { recursive: true });
        say(`npm install ${step.packages.join(" ")}`);
        await run(
          "npm",
          ["install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", dir, ...step.packages],
          where,
          say,
        );
        lines.push(`COPY ["npm-${i}/node_modules/", "/tandem/app/node_modules/"]`);
        break;
      }
      case "apt": {
        const root = await aptLayer(step.packages, join(context, `apt-${i}`), where, say);
        lines.push(`COPY ["${posix.relative(context, root)}/", "/"]`);
        break;
      }
      case "env":
        for (const [k, v] of Object.entries(step.vars)) lines.push(`ENV ${k}=${JSON.stringify(v)}`);
        break;
      case "workdir":
        lines.push(`WORKDIR ${JSON.stringify(step.path)}`);
        break;
      case "files": {
        const dir = join(context, `files-${i}`);
        for (const file of step.files) {
          const target = join(dir, file.path);
          await mkdir(join(target, ".."), { recursive: true });
          await writeFile(target, Buffer.from(file.content, "base64"), { mode: file.mode });
        }
        await mkdir(dir, { recursive: true });
        lines.push(`COPY ["files-${i}/", ${JSON.stringify(step.dst.endsWith("/") ? step.dst : `${step.dst}/`)}]`);
        break;
      }
      case "run":
        if (!shell) {
          // The base image has no shell: busybox (Debian's static build) provides one, as a layer of its own.
          const root = await aptLayer(["busybox-static"], join(context, "shell"), `${where}: the shell for runCommands`, say);
          lines.push(`COPY ["${posix.relative(context, root)}/bin/busybox", "/bin/busybox"]`, `RUN ["/bin/busybox", "--install", "-s", "/bin"]`);
          shell = true;
        }
        for (const command of step.commands) lines.push(`RUN ["/bin/sh", "-c", ${JSON.stringify(command)}]`);
        break;
    }
    while (stepOf.length < lines.length) stepOf.push(i);
  }
  return { lines, stepOf };
}

/**
 * The first instruction after FROM: every step from it on, intermediate images
 * included (the build log prints their ids), carries the plane's label.
 */
const MADE_BY_PLANE = `LABEL ${IMAGE_LABELS.madeBy}=built`;

/**
 * The id of the image a `registry` step names, pulled if the engine lacks it;
 * refused when it is one of the plane's own images. The id, not the name, goes
 * into FROM, so the image checked is the image built on.
 */
async function registryImage(docker: Docker, ref: string, where: string, say: (line: string) => void): Promise<string> {
  const refuse = (why: string) => new ImageBuildError(`${where}: Image.fromRegistry("${ref}") is refused: ${why}`);
  // The SDK refuses these when the app loads; a spec reaches the plane over the wire, so the plane checks again.
  const refused = refusedImageRef(ref);
  if (refused) throw refuse(refused);
  let image = await inspect(docker, ref);
  if (!image) {
    say(`pulling ${ref}`);
    const pulled = await pull(docker, ref);
    image = pulled === true ? await inspect(docker, ref) : undefined;
    if (!image) {
      throw new ImageBuildError(
        `${where}: Image.fromRegistry("${ref}"): no image registry is reachable from this plane (${pulled === true ? "the pull left no image" : pulled}), and its Docker engine does not have that image; build from Image.node() instead`,
      );
    }
  }
  // A short id, or another tag on the same image, resolves to an image of the plane's all the same.
  const own = (image.RepoTags ?? []).find((t) => Object.values(IMAGE_REPOSITORIES).some((repo) => t.startsWith(`${repo}:`)));
  if (image.Config?.Labels?.[IMAGE_LABELS.madeBy] !== undefined || own) {
    throw refuse(`it resolves to ${own ?? image.Id}, an image this plane made (it may hold another app's files); a function may not run in one`);
  }
  return image.Id;
}

/** Downloads Debian packages and unpacks them into `<dir>/root`; runs `apt-get update` once if the lists lack them. */
async function aptLayer(packages: string[], dir: string, where: string, say: (line: string) => void): Promise<string> {
  const debs = join(dir, "debs");
  const root = join(dir, "root");
  await mkdir(debs, { recursive: true });
  await mkdir(root, { recursive: true });
  say(`apt-get download ${packages.join(" ")}`);
  // Downloads go to a folder of the plane's own: apt's sandbox user need not (and often cannot) write there.
  const download = ["-o", "APT::Sandbox::User=root", "download", ...packages];
  try {
    await run("apt-get", download, where, say, debs);
  } catch {
    say("the package lists do not have them: apt-get update");
    await run("apt-get", ["update", "-qq"], where, say);
    await run("apt-get", download, where, say, debs);
  }
  for (const deb of (await readdir(debs)).filter((f) => f.endsWith(".deb"))) await run("dpkg-deb", ["-x", join(debs, deb), root], where, say);
  return root;
}

function run(command: string, args: string[], where: string, say: (line: string) => void, cwd?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    const out: string[] = [];
    const collect = (d: Buffer) => {
      for (const line of d.toString().split("\n").filter(Boolean)) {
        out.push(line);
        say(line);
      }
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    child.on("error", (err) => reject(new ImageBuildError(`${where}: ${command} could not run: ${err.message}`)));
    child.on("exit", (code) =>
      code === 0
        ? resolve()
        : reject(
            new ImageBuildError(`${where}: ${command} ${args.join(" ")} failed (exit ${code}):\n${out.slice(-10).join("\n")}`, { logTail: out.slice(-20) }),
          ),
    );
  });
}

/** Pulls an image: true, or why it could not. */
async function pull(docker: Docker, ref: string): Promise<true | string> {
  try {
    const stream = await docker.pull(ref);
    return await new Promise<true | string>((resolve) => docker.modem.followProgress(stream, (err: Error | null) => resolve(err ? err.message : true)));
  } catch (err) {
    return (err as Error).message.split("\n")[0]!;
  }
}

async function exists(docker: Docker, ref: string): Promise<boolean> {
  return (await inspect(docker, ref)) !== undefined;
}

/** The engine's record of an image, or undefined when it has none by that reference. */
async function inspect(docker: Docker, ref: string): Promise<Docker.ImageInspectInfo | undefined> {
  try {
    return await docker.getImage(ref).inspect();
  } catch {
    return undefined;
  }
}
