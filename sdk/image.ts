/**
 * Container images for plane functions, described as data: a fluent,
 * immutable `Image` whose every step becomes one layer, built on the plane and
 * cached by content hash (an unchanged spec is never rebuilt; a changed step
 * rebuilds from that step on). The SDK only describes; the CLI reads the local
 * files into the spec; the plane builds (see docs/plane.md, "Images").
 */
import { InvalidOptionsError } from "./errors.js";
import { IMAGE_REPOSITORIES, type ImageStep } from "./protocol.js";
import { isSecret, type Secret } from "./secret.js";
import { valueText } from "./value-text.js";

export type { ImageStep };

const IMAGE_BRAND = Symbol.for("tandem.image");

/**
 * @example
 * const image = Image.node()
 *   .aptInstall("hello")
 *   .npmInstall("is-number@7.0.0")
 *   .env({ MODEL: "small" })
 *   .addLocalDir("./weights", "/srv/weights", { ignore: ["*.tmp"] })
 *   .runCommands("ls /srv/weights > /srv/index.txt");
 * export const infer = app.function({ gpu: "T4", image }, (x: string) => x);
 */
export class Image {
  readonly [IMAGE_BRAND] = true;
  readonly steps: readonly ImageStep[];
  /** Every step is rebuilt, cache or not (see `forceBuild()`; `TANDEM_FORCE_BUILD=1` where the plane starts does it for all). */
  readonly rebuild: boolean;

  private constructor(steps: readonly ImageStep[], rebuild = false) {
    this.steps = Object.freeze([...steps]);
    this.rebuild = rebuild;
  }

  /** The plane's Node runtime image, assembled locally. `version` (a major, e.g. "20") must match the plane's Node. */
  static node(version?: string): Image {
    if (version !== undefined && !/^\d+(\.\d+){0,2}$/.test(version)) throw new InvalidOptionsError(`Image.node("${version}"): give a version such as "20"`);
    return new Image([{ kind: "node", version: version ?? null }]);
  }

  /**
   * An image from a registry, where the plane can reach one (or the image is
   * already on its engine). Never one of the plane's own images: those hold
   * other apps' files (see {@link refusedImageRef}).
   */
  static fromRegistry(ref: string): Image {
    if (!/^[a-z0-9][a-z0-9._\-/:@]*$/i.test(ref)) throw new InvalidOptionsError(`Image.fromRegistry("${ref}"): not an image reference`);
    const refused = refusedImageRef(ref);
    if (refused) throw new InvalidOptionsError(`Image.fromRegistry("${ref}"): ${refused}`);
    return new Image([{ kind: "registry", ref }]);
  }

  /** npm packages (`name` or `name@version`), installed under the app's node_modules in the image. */
  npmInstall(...packages: string[]): Image {
    for (const p of packages)
      if (!/^(@[\w.-]+\/)?[\w.-]+(@[\w.^~<>=*|-]+)?$/.test(p)) throw new InvalidOptionsError(`Image.npmInstall: "${p}" is not an npm package name`);
    return this.#with({ kind: "npm", packages });
  }

  /** Debian packages, downloaded on the plane and unpacked into a layer (their dependencies are not followed; list them too). */
  aptInstall(...packages: string[]): Image {
    for (const p of packages)
      if (!/^[a-z0-9][a-z0-9+.-]*(=[\w.:~+-]+)?$/.test(p)) throw new InvalidOptionsError(`Image.aptInstall: "${p}" is not a Debian package name`);
    return this.#with({ kind: "apt", packages });
  }

  env(vars: Record<string, string>): Image {
    for (const [k, v] of Object.entries(vars)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
        throw new InvalidOptionsError(`Image.env: "${k}" is not an environment variable name (letters, digits and _, not starting with a digit)`);
      if (typeof v !== "string") throw new InvalidOptionsError(`Image.env: the value of ${k} must be a string (got ${valueText(v)})`);
      // An image's ENV line holds one line of text: a newline or tab would reach the function as "\n", "\t".
      if (/\p{Cc}/u.test(v))
        throw new InvalidOptionsError(
          `Image.env: the value of ${k} holds a control character (a newline, a tab), which an image's environment cannot keep as written: put the text in a file (addLocalFile) or a secret`,
        );
    }
    return this.#with({ kind: "env", vars });
  }

  workdir(path: string): Image {
    if (!path.startsWith("/")) throw new InvalidOptionsError(`Image.workdir("${path}"): the path must be absolute`);
    return this.#with({ kind: "workdir", path });
  }

  /** A local file (relative to the working directory of `tandem serve`/`deploy`), copied to `dst`. */
  addLocalFile(src: string, dst: string): Image {
    if (!dst.startsWith("/")) throw new InvalidOptionsError(`Image.addLocalFile: "${dst}" must be an absolute path`);
    return this.#with({ kind: "file", src, dst });
  }

  /**
   * A local folder, copied to `dst` (its files; not its symbolic links nor its empty folders), leaving out the files
   * and folders, at any depth, named as an `ignore` entry says: a name (`node_modules`) or an extension (`*.log`).
   */
  addLocalDir(src: string, dst: string, options: { ignore?: string[] } = {}): Image {
    if (!dst.startsWith("/")) throw new InvalidOptionsError(`Image.addLocalDir: "${dst}" must be an absolute path`);
    for (const pattern of options.ignore ?? []) {
      // Any other pattern (data*, dir/x, **) would match nothing, and leave out nothing, without a word.
      if (typeof pattern !== "string" || pattern === "" || /[/\\?[\]{}]/.test(pattern) || /\*/.test(pattern.startsWith("*.") ? pattern.slice(2) : pattern))
        throw new InvalidOptionsError(
          `Image.addLocalDir: ignore ${JSON.stringify(pattern)} is not one it takes: a name ("node_modules", "notes.txt") or an extension ("*.log"), matched at any depth`,
        );
    }
    return this.#with({ kind: "dir", src, dst, ignore: options.ignore ?? [] });
  }

  /** Shell commands (`/bin/sh -c`, busybox), each run in the image as it is built, as root. */
  runCommands(...commands: string[]): Image {
    if (commands.some((c) => typeof c !== "string" || !c.trim())) throw new InvalidOptionsError("Image.runCommands: each command must be a non-empty string");
    return this.#with({ kind: "run", commands });
  }

  /**
   * Named secrets for the build steps that follow: their keys are the environment of each later `runCommands` step
   * as it runs (and of the plane's npm for each later `npmInstall`, so `npm_config_*` variables reach it), and their
   * values remain in no layer, no image config and no history. Later secrets override earlier ones. Only named
   * secrets (`Secret.fromName`): the plane asks the gateway for them as it builds.
   * @example
   * Image.node().secrets([Secret.fromName("npm")]).runCommands("echo //npm.example.com/:_authToken=$NPM_TOKEN > ~/.npmrc && npm i private-pkg && rm ~/.npmrc")
   */
  secrets(secrets: Secret[]): Image {
    if (!Array.isArray(secrets) || secrets.length === 0)
      throw new InvalidOptionsError('Image.secrets: give a list of secrets, such as [Secret.fromName("npm")]');
    const named = secrets.map((secret, i) => {
      if (!isSecret(secret)) throw new InvalidOptionsError(`Image.secrets: entry ${i} is not a Secret`);
      const source = secret.source;
      if (source.kind !== "name")
        throw new InvalidOptionsError(
          `Image.secrets: ${secret.describe()} is a local secret; an image build takes named secrets (Secret.fromName), which the plane asks the gateway for`,
        );
      return { name: source.name, requiredKeys: [...source.requiredKeys] };
    });
    return this.#with({ kind: "secrets", secrets: named });
  }

  /** The same image, built again from scratch (no cached step) each time the plane first needs it. */
  forceBuild(): Image {
    return new Image(this.steps, true);
  }

  #with(step: ImageStep): Image {
    return new Image([...this.steps, step], this.rebuild);
  }
}

/** True for an `Image`, even one made by another copy of the SDK. */
export function isImage(value: unknown): value is Image {
  return typeof value === "object" && value !== null && IMAGE_BRAND in value;
}

/**
 * Why an image reference may not be a function's image, or undefined when it
 * may: a reference into the repositories the plane keeps its own images in
 * (however it is spelled: `docker.io/library/tandem-image:…`, a digest), or a
 * bare image id, which names whatever the plane's engine holds. The SDK
 * checks it when the app loads and the plane again before it builds, since a
 * spec reaches the plane over the wire.
 * @example
 * refusedImageRef("tandem-image:1a2b3c4d5e6f7a8b"); // "\"tandem-image\" is the repository …"
 * refusedImageRef("node:20-slim"); // undefined
 */
export function refusedImageRef(ref: string): string | undefined {
  if (/^(sha256:)?[0-9a-f]{64}$/i.test(ref)) {
    return "an image id names whatever image the plane's engine holds, other apps' images included; name the image by repository and tag";
  }
  const repository = repositoryOf(ref);
  const own = Object.values(IMAGE_REPOSITORIES).find((name) => name === repository);
  if (own) {
    return (
      `"${own}" is the repository where Tandem's planes keep the images they build, which hold other apps' files; ` +
      "a function may not run in one. Describe your image with Image.node() and its steps instead"
    );
  }
  return undefined;
}

/** The repository a reference names, as Docker resolves it locally: no tag, no digest, no Docker Hub prefix. */
function repositoryOf(ref: string): string {
  let name = ref.toLowerCase().split("@")[0]!;
  // A colon after the last slash starts the tag; one before it is a registry's port.
  if (name.lastIndexOf(":") > name.lastIndexOf("/")) name = name.slice(0, name.lastIndexOf(":"));
  return name.replace(/^(docker\.io|index\.docker\.io|registry-1\.docker\.io)\//, "").replace(/^library\//, "");
}
