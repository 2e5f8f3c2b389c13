/**
 * Builds a function's image on the plane, from its spec, as Docker layers:
 * one instruction a step on top of the base Node image, so Docker's build
 * cache reuses every step before the first changed one and rebuilds from
 * there. Nothing is pulled: npm packages come from the npm registry through
 * the plane's npm, Debian packages through its `apt-get download` (unpacked
 * into a layer; their dependencies are not followed), and `runCommands` run in
 * a busybox shell added as a layer. A finished image is tagged by the spec's
 * hash, so an unchanged spec is never built again. Takes the engine from the
 * Docker driver: this file does not make its own.
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import type Docker from "dockerode";
import { ImageBuildError } from "../sdk/errors.js";
import type { ImageBuildSpec, ResolvedImageStep } from "../sdk/protocol.js";

export const IMAGE_REPO = "tandem-image";
const LOG_TAIL = 20;

export interface BuiltImage {
  tag: string;
  /** Each Dockerfile step, and whether Docker's cache served it. */
  steps: { instruction: string; cached: boolean }[];
}

export async function buildImage(docker: Docker, base: string, spec: ImageBuildSpec, hash: string, log: (line: string) => void): Promise<BuiltImage> {
  const tag = `${IMAGE_REPO}:${hash.slice(0, 16)}`;
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
        lines.push(`FROM ${base}`);
        break;
      }
      case "registry":
        if (!(await exists(docker, step.ref))) {
          say(`pulling ${step.ref}`);
          const pulled = await pull(docker, step.ref);
          if (pulled !== true) {
            throw new ImageBuildError(
              `${where}: Image.fromRegistry("${step.ref}"): no image registry is reachable from this plane (${pulled}), and its Docker engine does not have that image; build from Image.node() instead`,
            );
          }
        }
        lines.push(`FROM ${step.ref}`);
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
  try {
    await docker.getImage(ref).inspect();
    return true;
  } catch {
    return false;
  }
}
