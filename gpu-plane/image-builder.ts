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
import { Writable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { setTimeout as delay } from "node:timers/promises";
import { stripVTControlCharacters } from "node:util";
import type Docker from "dockerode";
import { LOG_LIMITS } from "../sdk/defaults.js";
import { ImageBuildError } from "../sdk/errors.js";
import { refusedImageRef } from "../sdk/image.js";
import { IMAGE_LABELS, IMAGE_REPOSITORIES, cutLogLine, type ImageBuildSpec, type ResolvedImageStep } from "../sdk/protocol.js";
import { secretMask } from "../sdk/secret.js";
import { LineSplitter } from "../sdk/stream-lines.js";

/** The repository built images are tagged in: `tandem-image:<hash>`. */
export const IMAGE_REPO = IMAGE_REPOSITORIES.built;
const LOG_TAIL = 20;

export interface BuiltImage {
  tag: string;
  /** Each Dockerfile step, and whether Docker's cache served it. */
  steps: { instruction: string; cached: boolean }[];
}

/** A `runCommands` command run with secrets (`Image.secrets`): outside the Dockerfile, its values given on stdin. */
interface SecretRun {
  command: string;
  env: Record<string, string>;
  /** The user's step it comes from, from 0. */
  step: number;
}

/** A Dockerfile line, or a command run with secrets between two Dockerfile parts. */
type BuildLine = string | SecretRun;

/** The form of the Dockerfile `buildImage` writes, in each image's name: raised when a spec's image would differ. */
const DOCKERFILE_FORM = 2;

/**
 * Builds the image of `spec` (named by `hash`, the sha256 of its JSON) on
 * `base`, or finds it built; returns its tag. A spec whose steps declare
 * secrets (`Image.secrets`) asks `secrets` for their values, once, and runs
 * each later command in a container of its own that reads them on stdin, then
 * commits it: the values are in no layer, no image config and no history line.
 * The Dockerfile parts between such commands build as usual, cached by Docker.
 * @example
 * const { tag } = await buildImage(docker, await ensureBaseImage(docker), spec, hash, console.log);
 * // "tandem-image:5d41402abc4b2a76"
 */
export async function buildImage(
  docker: Docker,
  base: string,
  spec: ImageBuildSpec,
  hash: string,
  log: (line: string) => void,
  secrets?: () => Promise<Record<string, Record<string, string>>>,
): Promise<BuiltImage> {
  // The base is part of the name: an image built on another Node (or base layout) is not this one; so is the form of
  // the Dockerfile written for it: one of an earlier form (ENV lines that expanded `$`) is built again.
  const tag = `${IMAGE_REPO}:${createHash("sha256").update(`${base}\n${DOCKERFILE_FORM}\n${hash}`).digest("hex").slice(0, 16)}`;
  const force = spec.force;
  if (!force && (await exists(docker, tag))) return { tag, steps: [] };
  const context = await mkdtemp(join(tmpdir(), "tandem-image-"));
  const tail: string[] = [];
  const say = (written: string) => {
    const line = stripVTControlCharacters(written); // the engine's and npm's colours: codes, in an error's text
    tail.push(line);
    if (tail.length > LOG_TAIL) tail.shift();
    log(`[image ${hash.slice(0, 12)}] ${line}`);
  };
  try {
    let named: Record<string, Record<string, string>> = {};
    if (spec.steps.some((step) => step.kind === "secrets")) {
      if (!secrets) throw new ImageBuildError("the image's steps declare secrets (Image.secrets), and this build was given no way to read them");
      named = await secrets();
    }
    const { lines, stepOf } = await dockerfile(docker, base, spec.steps, context, say, named);
    const withSecrets = lines.filter((l) => typeof l !== "string").length;
    say(`building ${tag}: ${lines.length} steps${withSecrets ? `, ${withSecrets} of them with secrets` : ""}${force ? " (forced)" : ""}`);
    const steps: BuiltImage["steps"] = [];
    let from: string | undefined; // the image the next part builds on, which a command run with secrets left
    let at = 0;
    for (;;) {
      const next = lines.findIndex((l, i) => i >= at && typeof l !== "string");
      const end = next < 0 ? lines.length : next;
      const last = end === lines.length;
      const own = lines.slice(at, end) as string[];
      if (own.length > 0) {
        const partTag = last ? tag : undefined; // a part before a command run with secrets is known by its id
        const first = at;
        const stepAt = (instructions: number) => {
          // Named as the user wrote it: their step (one may make several Dockerfile instructions), then the instruction.
          const mine = stepOf[Math.min(first + Math.max(0, instructions - (from ? 2 : 1)), stepOf.length - 1)] ?? 0;
          return { step: mine + 1, where: `step ${mine + 1} (${spec.steps[mine]!.kind})` };
        };
        from = await buildPart(docker, context, [...(from ? [`FROM ${from}`] : []), ...own], { tag: partTag, force, say, steps, stepAt, tail });
      }
      if (last) break;
      const run = lines[end] as SecretRun;
      from = await runWithSecrets(docker, from!, run, { force, say, where: `step ${run.step + 1} (${spec.steps[run.step]!.kind})`, tail });
      steps.push({ instruction: `RUN (with secrets) ${run.command}`, cached: false });
      at = end + 1;
      if (at === lines.length) await docker.getImage(from).tag({ repo: IMAGE_REPO, tag: tag.slice(IMAGE_REPO.length + 1) });
    }
    say(`built ${tag} (${steps.filter((s) => s.cached).length} of ${steps.length} steps from cache)`);
    return { tag, steps };
  } finally {
    await rm(context, { recursive: true, force: true });
  }
}

/** How one part of a build goes: its tag (none for a part a command run with secrets follows), and where its steps and log lines go. */
interface PartOptions {
  tag: string | undefined;
  force: boolean;
  say: (line: string) => void;
  steps: BuiltImage["steps"];
  /** The user's step the part's `n`th instruction comes from. */
  stepAt: (n: number) => { step: number; where: string };
  tail: string[];
}

/** Builds one Dockerfile `lines` in `context` (as `o.tag`), adding its steps to `o.steps`; returns the image's id. A failure names the user's step. */
async function buildPart(docker: Docker, context: string, lines: string[], o: PartOptions): Promise<string> {
  await writeFile(join(context, "Dockerfile"), lines.join("\n") + "\n");
  const tar = spawn("tar", ["-C", context, "-c", "."], { stdio: ["ignore", "pipe", "inherit"] });
  const stream = await docker.buildImage(tar.stdout as unknown as NodeJS.ReadableStream, {
    ...(o.tag ? { t: o.tag } : {}),
    networkmode: "none",
    nocache: o.force,
    rm: true,
    forcerm: true,
  });
  const mine: BuiltImage["steps"] = [];
  let failure: string | undefined;
  let id: string | undefined;
  await new Promise<void>((resolve) =>
    docker.modem.followProgress(
      stream,
      () => resolve(),
      (event: { stream?: string; error?: string; aux?: { ID?: string } }) => {
        if (event.aux?.ID) id = event.aux.ID;
        for (const line of (event.stream ?? "")
          .split("\n")
          .map((l) => l.trimEnd())
          .filter(Boolean)) {
          const step = /^Step \d+\/\d+ : (.*)$/.exec(line);
          if (step) mine.push({ instruction: step[1]!, cached: false });
          if (line.includes("Using cache") && mine.length) mine[mine.length - 1]!.cached = true;
          o.say(line);
        }
        if (event.error) failure = event.error;
      },
    ),
  );
  o.steps.push(...mine);
  if (failure) {
    const { step, where } = o.stepAt(mine.length);
    const at = mine.length ? `${where}, at ${mine[mine.length - 1]!.instruction}` : "its first step";
    throw new ImageBuildError(`the image failed to build at ${at}: ${stripVTControlCharacters(failure).trim()}\n${o.tail.slice(-10).join("\n")}`, {
      step,
      logTail: o.tail.slice(),
    });
  }
  id ??= o.tag ? (await inspect(docker, o.tag))?.Id : undefined;
  if (!id) throw new ImageBuildError(`the Docker engine built ${o.tag ?? "a part of the image"} and did not say its id`);
  return id;
}

/**
 * Runs `run.command` in a container of `image` with the secrets' values as its environment, read from stdin (never
 * in the container's config, so in neither the commit's config nor its history), commits it and removes the
 * container. A commit made before from the same image, command and keys is reused unless `force`.
 */
async function runWithSecrets(
  docker: Docker,
  image: string,
  run: SecretRun,
  o: { force: boolean; say: (line: string) => void; where: string; tail: string[] },
): Promise<string> {
  const key = createHash("sha256")
    .update([image, run.command, ...Object.keys(run.env).sort()].join("\n"))
    .digest("hex");
  const cacheTag = `step-${key.slice(0, 16)}`;
  const instruction = `RUN (with secrets ${Object.keys(run.env).join(", ")}) ${run.command}`;
  if (!o.force) {
    const cached = await inspect(docker, `${IMAGE_REPO}:${cacheTag}`);
    if (cached) {
      o.say(`${o.where}: ${instruction}: from cache`);
      return cached.Id;
    }
  }
  o.say(`${o.where}: ${instruction}`);
  const script = Object.entries(run.env)
    .map(([name, value]) => `export ${name}='${value.split("'").join("'\\''")}'\n`)
    .join("");
  const container = await docker.createContainer({
    Image: image,
    // The values come on stdin, so that they are in no argument, no configured environment, no history line.
    Cmd: ["/bin/sh", "-c", 'eval "$(cat)" && exec /bin/sh -c "$1"', "sh", run.command],
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: true,
    StdinOnce: true,
    NetworkDisabled: true,
    Labels: { [IMAGE_LABELS.madeBy]: "built" },
    HostConfig: { NetworkMode: "none" },
  });
  try {
    const stream = await container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true });
    const out: string[] = [];
    // Whole lines, each with the step's secret values masked as a function's output is (a value cut between two
    // chunks of the stream is still one line's): the build's log and a failure's last lines are shown to people.
    // stdout and stderr each have their own lines: the engine sends their chunks in the order it read them, which is
    // not the order they were written, so one stream's half line would take in the other's.
    const mask = secretMask(Object.values(run.env));
    const keep = (line: string) => {
      if (line === "") return;
      const masked = mask(stripVTControlCharacters(line));
      out.push(masked);
      o.say(masked);
    };
    const lineSink = () => {
      const lines = new LineSplitter({ maxLineChars: LOG_LIMITS.maxLineChars, overlong: cutLogLine });
      const decoder = new StringDecoder("utf8");
      const sink = new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(decoder.write(chunk)).forEach(keep);
          done();
        },
      });
      const end = () => {
        lines.push(decoder.end()).forEach(keep);
        lines.end().forEach(keep);
      };
      return { sink, end };
    };
    const stdout = lineSink();
    const stderr = lineSink();
    docker.modem.demuxStream(stream, stdout.sink, stderr.sink);
    // The engine may answer the wait before the last of the output has come: the lines are read to the stream's end.
    const drained = new Promise<void>((resolve) => {
      stream.once("end", resolve);
      stream.once("close", resolve);
      stream.once("error", () => resolve());
    });
    await container.start();
    stream.end(script);
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    await Promise.race([drained, delay(2_000)]);
    stdout.end();
    stderr.end();
    if (StatusCode !== 0) {
      throw new ImageBuildError(
        `the image failed to build at ${o.where}, at ${instruction}: it returned a non-zero code: ${StatusCode}\n${out.slice(-10).join("\n")}`,
        {
          step: Number(/^step (\d+)/.exec(o.where)?.[1] ?? 1),
          logTail: out.slice(-20),
        },
      );
    }
    const committed = (await container.commit({ repo: IMAGE_REPO, tag: cacheTag, comment: "runCommands with secrets" })) as { Id: string };
    return committed.Id;
  } finally {
    await container.remove({ force: true }).catch(() => {});
  }
}

/** The Dockerfile for the steps, with what each needs laid out in `context`; a command run with secrets is a {@link SecretRun}. */
async function dockerfile(
  docker: Docker,
  base: string,
  steps: ResolvedImageStep[],
  context: string,
  say: (line: string) => void,
  named: Record<string, Record<string, string>>,
): Promise<{ lines: BuildLine[]; stepOf: number[] }> {
  const lines: BuildLine[] = [];
  /** The index of the step each line comes from. */
  const stepOf: number[] = [];
  let shell = false;
  /** The environment the `Image.secrets` steps so far give, later ones overriding earlier ones. */
  let secretEnv: Record<string, string> = {};
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
      case "secrets":
        for (const { name } of step.secrets) {
          const values = named[name];
          if (!values) throw new ImageBuildError(`${where}: the gateway gave no values for secret "${name}"`);
          secretEnv = { ...secretEnv, ...values };
        }
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
          dir, // not the plane's own folder (npm reads an .npmrc, a package.json where it runs)
          secretEnv,
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
        // `$` escaped: Docker expands `$VAR` in an ENV line, and `$HOME` in a token reached the function as "".
        for (const [k, v] of Object.entries(step.vars)) lines.push(`ENV ${k}=${dockerfileQuoted(v)}`);
        break;
      case "workdir":
        lines.push(`WORKDIR ${dockerfileQuoted(step.path)}`);
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
        for (const command of step.commands) {
          if (Object.keys(secretEnv).length) lines.push({ command, env: secretEnv, step: i });
          else lines.push(`RUN ["/bin/sh", "-c", ${JSON.stringify(command)}]`);
        }
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

function run(command: string, args: string[], where: string, say: (line: string) => void, cwd?: string, env: Record<string, string> = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
    const out: string[] = [];
    const collect = (d: Buffer) => {
      for (const line of stripVTControlCharacters(d.toString()).split("\n").filter(Boolean)) {
        out.push(line);
        say(line);
      }
    };
    const step = /^step (\d+)/.exec(where)?.[1]; // the user's step, as a Dockerfile step's failure names it
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    child.on("error", (err) => reject(new ImageBuildError(`${where}: ${command} could not run: ${err.message}`)));
    child.on("exit", (code) =>
      code === 0
        ? resolve()
        : reject(
            new ImageBuildError(`${where}: ${command} ${args.join(" ")} failed (exit ${code}):\n${out.slice(-10).join("\n")}`, {
              ...(step ? { step: Number(step) } : {}),
              logTail: out.slice(-20),
            }),
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

/**
 * A value as a Dockerfile's ENV or WORKDIR line reads it back as written: in double quotes, `"` and `\` escaped as JSON
 * escapes them, and `$` as `\$` (else Docker expands it). Control characters are refused before (`Image.env`).
 * @example dockerfileQuoted('a "b" $HOME'); // '"a \\"b\\" \\$HOME"'
 */
export function dockerfileQuoted(value: string): string {
  return JSON.stringify(value).replace(/\$/g, "\\$");
}
