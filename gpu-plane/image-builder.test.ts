/**
 * The image builder against the real Docker engine: layers cached by content
 * (a changed file rebuilds from its step on), an unchanged spec never built
 * again, a failing step named with its log tail while the previous image
 * stays, and no registry.
 */
import { createHash, randomBytes } from "node:crypto";
import Docker from "dockerode";
import { afterAll, describe, expect, it } from "vitest";
import type { ImageBuildSpec } from "../sdk/protocol.js";
import { ensureBaseImage } from "./base-image.js";
import { buildImage } from "./image-builder.js";

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

afterAll(async () => {
  for (const tag of new Set(tags))
    await docker
      .getImage(tag)
      .remove({ force: true })
      .catch(() => {});
});

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

  it("says there is no registry for an image it does not have", async () => {
    const err = await build({ force: false, steps: [{ kind: "registry", ref: "127.0.0.1:9/tandem-missing:1" }] }, hash(6)).catch((e) => e);
    expect(err.code).toBe("image_build_failed");
    expect(err.message).toContain("no image registry is reachable from this plane");
  });
});
