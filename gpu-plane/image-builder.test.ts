/**
 * The image builder against the real Docker engine: layers cached by content
 * (a changed file rebuilds from its step on), an unchanged spec never built
 * again, a failing step named with its log tail while the previous image
 * stays, no registry, and no image of the plane's own (another app's) as a
 * function's base, however it is named.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ImageBuildSpec } from "../sdk/protocol.js";
import { ensureBaseImage } from "./base-image.js";
import { buildImage, dockerfileQuoted } from "./image-builder.js";

const docker = new Docker();
const tags: string[] = [];
const log: string[] = [];
const spec = (fileContent: string, tail = "wc -c /srv/app/data.txt > /srv/size.txt"): ImageBuildSpec => ({
  force: false,
  steps: [
    { kind: "node", version: null },
    { kind: "env", vars: { STAGE: "test" } },
    { kind: "workdir", path: "/srv" },
    { kind: "files", dst: "/srv/app", files: [{ path: "data.txt", content: Buffer.from(fileContent).toString("base64"), mode: 0o644 }] },
    { kind: "run", commands: [tail] },
  ],
});
const build = async (s: ImageBuildSpec, hash: string) => {
  const built = await buildImage(docker, await ensureBaseImage(docker), s, hash, (l) => log.push(l));
  tags.push(built.tag);
  return built;
};
// Fresh hashes each run: a tag from an earlier run would be found and not built.
const run = randomBytes(8).toString("hex");
const hash = (n: number) => createHash("sha256").update(`${run}-${n}`).digest("hex");

// Clean-up, bounded: on this engine a removal has been seen not to answer at all (the images it leaves are this run's
// tags, of a few kilobytes over the base image); the tests' results do not depend on it.
afterAll(async () => {
  const removals = Promise.all(
    [...new Set(tags)].map((tag) =>
      docker
        .getImage(tag)
        .remove({ force: true })
        .catch(() => {}),
    ),
  );
  await Promise.race([removals, new Promise((resolve) => setTimeout(resolve, 30_000))]);
}, 60_000);

describe("the image builder", () => {
  it("caches each step: a changed file rebuilds from its step on, the steps before it come from cache", async () => {
    const first = await build(spec(`one ${Date.now()}`), hash(1));
    expect(first.steps.length).toBeGreaterThanOrEqual(6);
    const second = await build(spec(`two ${Date.now()}`), hash(2));
    const copyAt = second.steps.findIndex((s) => s.instruction.startsWith('COPY ["files-3/"'));
    expect(copyAt).toBeGreaterThan(0);
    expect(second.steps.slice(1, copyAt).every((s) => s.cached)).toBe(true); // ENV, WORKDIR
    expect(second.steps.slice(copyAt).some((s) => s.cached)).toBe(false); // the file, the shell, the command
  });

  it("never builds an unchanged spec again", async () => {
    const again = await build(spec("unchanged"), hash(3));
    const cached = await build(spec("unchanged"), hash(3));
    expect(again.steps.length).toBeGreaterThan(0);
    expect(cached).toEqual({ tag: again.tag, steps: [] });
  });

  it("names the failing step with its log tail, and the previous image stays usable", async () => {
    const good = await build(spec("fine"), hash(4));
    const failed = await build(spec("fine", "echo broken on purpose && exit 7"), hash(5)).catch((e) => e);
    expect(failed.code).toBe("image_build_failed");
    expect(failed.message).toContain("returned a non-zero code: 7");
    expect(failed.message).toContain("broken on purpose");
    await expect(docker.getImage(good.tag).inspect()).resolves.toBeTruthy();
  });

  it("names the failing step without the engine's colour codes, in its message and its log tail", async () => {
    // The engine wraps what a step writes to stderr in colour codes (\x1b[91m…\x1b[0m), which an error's text showed.
    const failed = await build(spec("fine", "echo about to fail >&2 && exit 3"), hash(6)).catch((e) => e);
    expect(failed.code).toBe("image_build_failed");
    expect(failed.message).toContain("about to fail");
    expect(failed.message).not.toContain("\u001b");
    expect(failed.details.step).toBe(5);
    expect((failed.details.logTail as string[]).some((l) => l.includes("\u001b"))).toBe(false);
  });

  it("says there is no registry for an image it does not have", async () => {
    const err = await build({ force: false, steps: [{ kind: "registry", ref: "127.0.0.1:9/tandem-missing:1" }] }, hash(6)).catch((e) => e);
    expect(err.code).toBe("image_build_failed");
    expect(err.message).toContain("no image registry is reachable from this plane");
  });
});

describe("the image builder, with Image.secrets", () => {
  const TOKEN = `npm-tok-${randomBytes(12).toString("hex")}-it's`; // a quote too: the values pass through a shell
  const OTHER = `other-${randomBytes(12).toString("hex")}`;
  const withSecrets = (tail: string): ImageBuildSpec => ({
    force: false,
    steps: [
      { kind: "node", version: null },
      // This run's own: a step with secrets is cached by the image it runs on, its command and keys, not its values.
      { kind: "env", vars: { STAGE: "test", RUN: run } },
      { kind: "run", commands: ["echo before > /srv-before.txt || true"] },
      {
        kind: "secrets",
        secrets: [
          { name: "npm", requiredKeys: ["NPM_TOKEN"] },
          { name: "other", requiredKeys: [] },
        ],
      },
      // A step that needs the token: it proves it had it (its length and hash) without writing it anywhere.
      { kind: "run", commands: ['printf %s "$NPM_TOKEN" | sha256sum | cut -c1-64 > /token.sha && echo ${#NPM_TOKEN} $STAGE > /token.len', tail] },
      { kind: "workdir", path: "/srv" },
    ],
  });
  const values = async () => ({ npm: { NPM_TOKEN: TOKEN }, other: { OTHER } });
  const sh = (args: string[]) =>
    new Promise<Buffer>((resolve, reject) => {
      const child = spawn("docker", args, { stdio: ["ignore", "pipe", "inherit"] });
      const chunks: Buffer[] = [];
      child.stdout.on("data", (d: Buffer) => chunks.push(d));
      child.on("error", reject);
      child.on("exit", (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`docker ${args.join(" ")} exited ${code}`))));
    });

  it("gives a later step the values as its environment, and leaves them in no layer, history line or config", async () => {
    const built = await buildImage(docker, await ensureBaseImage(docker), withSecrets('test -n "$OTHER"'), hash(20), (l) => log.push(l), values);
    tags.push(built.tag);
    expect(built.steps.some((s) => s.instruction.startsWith("RUN (with secrets)"))).toBe(true);
    const read = async (file: string) => (await sh(["run", "--rm", "--network", "none", built.tag, "/bin/cat", file])).toString().trim();
    expect(await read("/token.sha")).toBe(createHash("sha256").update(TOKEN).digest("hex"));
    expect(await read("/token.len")).toBe(`${TOKEN.length} test`);
    const image = await docker.getImage(built.tag).inspect();
    expect(image.Config.WorkingDir).toBe("/srv"); // the step after the secret one built on it
    expect(image.Config.Labels).toMatchObject({ "tandem.image": "built" });
    for (const secret of [TOKEN, OTHER]) {
      expect((await sh(["history", "--no-trunc", built.tag])).toString()).not.toContain(secret);
      expect((await sh(["inspect", built.tag])).toString()).not.toContain(secret);
      expect((await sh(["save", built.tag])).includes(secret)).toBe(false); // every layer, every config, the manifest
    }
    expect(log.join("\n")).not.toContain(TOKEN);
    // The container that ran the step is gone. (Other files' builds, running beside this one, leave the engine's own
    // step containers, which carry the label too: only one running this step's command is this build's.)
    const left = await docker.listContainers({ all: true, filters: { label: ["tandem.image=built"] } });
    expect(left.filter((c) => c.Command.includes('test -n "$OTHER"'))).toEqual([]);
  });

  it("reuses a step run with secrets from cache, and names a failing one without its values", async () => {
    await buildImage(docker, await ensureBaseImage(docker), withSecrets("true"), hash(21), (l) => log.push(l), values);
    const lines = log.length;
    const again = await buildImage(docker, await ensureBaseImage(docker), withSecrets("true"), hash(22), (l) => log.push(l), values);
    tags.push(again.tag);
    expect(log.slice(lines).some((l) => l.includes(": from cache"))).toBe(true);
    const build = buildImage(docker, await ensureBaseImage(docker), withSecrets("echo failing on purpose; exit 3"), hash(23), () => {}, values);
    const failed = (await build.catch((e: unknown) => e)) as Error & { code: string };
    expect(failed.code).toBe("image_build_failed");
    expect(failed.message).toContain("step 5 (run), at RUN (with secrets NPM_TOKEN, OTHER)");
    expect(failed.message).toContain("returned a non-zero code: 3");
    expect(failed.message).toContain("failing on purpose");
    expect(failed.message).not.toContain(TOKEN);
    // A step that prints a value (a half line first, so the value comes in a line of its own write): masked in the
    // build's log and in the failure's last lines, as a function's output is. A stderr line written between the half
    // line and the value is a line of its own (stdout and stderr had one line buffer: "token is other ***").
    const printed: string[] = [];
    const printing = buildImage(
      docker,
      await ensureBaseImage(docker),
      withSecrets('printf "token is "; sleep 0.3; echo "other $OTHER" >&2; sleep 0.3; echo "$NPM_TOKEN"; exit 4'),
      hash(25),
      (l) => printed.push(l),
      values,
    );
    const shown = (await printing.catch((e: unknown) => e)) as Error & { details: { logTail: string[] } };
    expect(shown.message).toContain("token is ***");
    expect(printed.some((l) => l.endsWith("] token is ***"))).toBe(true); // each line tagged with its image
    expect(printed.some((l) => l.endsWith("] other ***"))).toBe(true);
    for (const text of [shown.message, JSON.stringify(shown.details), printed.join("\n")]) {
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain(OTHER);
    }
    const none = (await buildImage(docker, await ensureBaseImage(docker), withSecrets("true"), hash(24), () => {}).catch((e: unknown) => e)) as Error;
    expect(none.message).toContain("the image's steps declare secrets (Image.secrets), and this build was given no way to read them");
  });
});

describe("the image builder, given an image the plane made", () => {
  const registry = (ref: string): ImageBuildSpec => ({ force: false, steps: [{ kind: "registry", ref }] });
  const refusal = async (ref: string) => {
    const err = await build(registry(ref), hash(Math.random() * 1e9)).catch((e) => e);
    expect(err.code, `${ref} was not refused`).toBe("image_build_failed");
    return err.message as string;
  };
  let made: Awaited<ReturnType<typeof build>>;
  let madeId: string;

  beforeAll(async () => {
    made = await build(spec(`another app's secret ${Date.now()}`), hash(7));
    madeId = (await docker.getImage(made.tag).inspect()).Id;
  });

  it("refuses it by its tag, as a spec from the wire may name it", async () => {
    expect(await refusal(made.tag)).toMatch(
      /Image\.fromRegistry\("tandem-image:[0-9a-f]{16}"\) is refused: "tandem-image" is the repository where Tandem's planes keep/,
    );
    expect(await refusal(`docker.io/library/${made.tag}`)).toContain("is refused");
  });

  it("refuses it by its id, whole or short, and the base image too", async () => {
    expect(await refusal(madeId)).toContain("an image id names whatever image");
    expect(await refusal(madeId.slice("sha256:".length, "sha256:".length + 12))).toContain("an image this plane made");
    const base = await ensureBaseImage(docker);
    expect(await refusal(base)).toContain('"tandem-node" is the repository');
    const baseId = (await docker.getImage(base).inspect()).Id;
    expect(await refusal(baseId.slice("sha256:".length, "sha256:".length + 12))).toContain("an image this plane made");
  });

  it("refuses each intermediate image of its build, whose ids its build log printed", async () => {
    const history = (await docker.getImage(made.tag).history()) as { Id: string }[];
    const intermediates = history.map((h) => h.Id).filter((id) => id.startsWith("sha256:") && id !== madeId);
    expect(intermediates.length).toBeGreaterThan(0);
    for (const id of intermediates) {
      const short = id.slice("sha256:".length, "sha256:".length + 12);
      const labels = (await docker.getImage(id).inspect()).Config.Labels ?? {};
      // The base's own layer (FROM) is the base image; every step after it carries the plane's label.
      expect(labels["tandem.image"], short).toMatch(/^(base|built)$/);
      expect(await refusal(short)).toContain("an image this plane made");
    }
  });

  it("still builds on an image the plane did not make", async () => {
    const plain = `tandem-test-plain:${run}`;
    const dir = await mkdtemp(join(tmpdir(), "tandem-plain-"));
    await writeFile(join(dir, "hello.txt"), "hello");
    const tar = spawn("tar", ["-C", dir, "-c", "."], { stdio: ["ignore", "pipe", "inherit"] });
    const [repo, version] = plain.split(":");
    await new Promise((resolve, reject) =>
      docker
        .importImage(tar.stdout as unknown as NodeJS.ReadableStream, { repo, tag: version })
        .then((stream) => docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve(undefined))), reject),
    );
    tags.push(plain);
    await rm(dir, { recursive: true, force: true });
    const built = await build(registry(plain), hash(8));
    expect(built.steps[0]!.instruction).toMatch(/^FROM sha256:[0-9a-f]{64}$/);
    expect((await docker.getImage(built.tag).inspect()).Config.Labels).toEqual({ "tandem.image": "built" });
  });
});

describe("dockerfileQuoted", () => {
  it("quotes a value so that Docker's ENV line reads it back as written, its $ not expanded", () => {
    expect(dockerfileQuoted('p$HOME "q" \\ ${X}z')).toBe('"p\\$HOME \\"q\\" \\\\ \\${X}z"');
    expect(dockerfileQuoted("/srv/app")).toBe('"/srv/app"');
  });
});
