/** `Image` as the SDK records it: which registry images a function may name when its app loads. */
import { describe, expect, it } from "vitest";
import { InvalidOptionsError } from "./errors.js";
import { Image } from "./image.js";
import { Secret } from "./secret.js";

describe("Image.fromRegistry", () => {
  it("refuses the repositories a plane keeps its own images in, however the reference spells them", () => {
    for (const ref of [
      "tandem-image:1a2b3c4d5e6f7a8b",
      "tandem-node:08267b7d9111d47b",
      "tandem-image",
      "docker.io/library/tandem-image:1a2b3c4d5e6f7a8b",
      "index.docker.io/tandem-node:latest",
      `tandem-image@sha256:${"a".repeat(64)}`,
      "TANDEM-IMAGE:1A2B",
    ]) {
      let err: unknown;
      try {
        Image.fromRegistry(ref);
      } catch (e) {
        err = e;
      }
      expect(err, ref).toBeInstanceOf(InvalidOptionsError);
      expect((err as Error).message).toContain(`Image.fromRegistry("${ref}"): "tandem-`);
      expect((err as Error).message).toContain("is the repository where Tandem's planes keep the images they build, which hold other apps' files");
    }
  });

  it("refuses a bare image id, which names whatever the plane's engine holds", () => {
    for (const ref of [`sha256:${"b".repeat(64)}`, "c".repeat(64)]) {
      expect(() => Image.fromRegistry(ref)).toThrow(`Image.fromRegistry("${ref}"): an image id names whatever image the plane's engine holds`);
    }
  });

  it("takes any other image, a registry's port or a look-alike name included", () => {
    for (const ref of [
      "node:20-slim",
      "ghcr.io/acme/tandem-image-tools:1",
      "localhost:5000/tandem-image:1",
      "acme/tandem-node",
      `python@sha256:${"d".repeat(64)}`,
    ]) {
      expect(Image.fromRegistry(ref).steps, ref).toEqual([{ kind: "registry", ref }]);
    }
  });
});

describe("Image.secrets", () => {
  it("records named secrets (name and required keys) as a step, never a value", () => {
    const image = Image.node()
      .secrets([Secret.fromName("npm", { requiredKeys: ["NPM_TOKEN"] })])
      .runCommands("true");
    expect(image.steps).toEqual([
      { kind: "node", version: null },
      { kind: "secrets", secrets: [{ name: "npm", requiredKeys: ["NPM_TOKEN"] }] },
      { kind: "run", commands: ["true"] },
    ]);
  });

  it("refuses local secrets, which never reach a plane's builder, and anything that is not a secret", () => {
    expect(() => Image.node().secrets([Secret.fromDict({ NPM_TOKEN: "t-123456" })])).toThrow(
      "Image.secrets: Secret.fromDict is a local secret; an image build takes named secrets (Secret.fromName)",
    );
    expect(() => Image.node().secrets(["npm" as never])).toThrow("Image.secrets: entry 0 is not a Secret");
    expect(() => Image.node().secrets([])).toThrow(InvalidOptionsError);
  });

  it("takes as addLocalDir's ignore a name or an extension, and refuses a pattern it would match nothing with", () => {
    expect(
      Image.node()
        .addLocalDir("assets", "/srv/assets", { ignore: ["node_modules", "*.log"] })
        .steps.at(-1),
    ).toMatchObject({ ignore: ["node_modules", "*.log"] });
    // Before: taken, and it left out nothing.
    for (const pattern of ["data*", "logs/*.log", "**", "*.t*"])
      expect(() => Image.node().addLocalDir("assets", "/srv/assets", { ignore: [pattern] })).toThrow(
        `Image.addLocalDir: ignore ${JSON.stringify(pattern)} is not one it takes: a name ("node_modules", "notes.txt") or an extension ("*.log"), matched at any depth`,
      );
  });
});

describe("Image.env", () => {
  it("refuses what an image's environment cannot keep as written, naming the variable", () => {
    expect(() => Image.node().env({ "BAD-NAME": "x" })).toThrow(
      'Image.env: "BAD-NAME" is not an environment variable name (letters, digits and _, not starting with a digit)',
    );
    expect(() => Image.node().env({ N: 5 as unknown as string })).toThrow("Image.env: the value of N must be a string (got 5)");
    // A newline reached the function as the two characters "\n" (before).
    expect(() => Image.node().env({ PEM: "line1\nline2" })).toThrow("Image.env: the value of PEM holds a control character");
    expect(() => Image.node().env({ OK: 'p$HOME "q" \\ z' })).not.toThrow();
  });
});
