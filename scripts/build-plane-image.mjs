#!/usr/bin/env node
// Builds the container image of a Tandem plane (`tandem plane` and what it needs) from this checkout, with no
// registry and no base image to pull: the CLI bundled by esbuild, its native and unbundled packages, this host's
// Node with the libraries `ldd` lists, and the few host tools the plane runs (bash and ldd to assemble its
// functions' base image, tar to import it), imported into the local Docker engine with `docker import`.
//
//   node scripts/build-plane-image.mjs [--tag registry.example.com/team/tandem-plane:0.1.0]
//
// Pushing it is the operator's step (`docker push <tag>`). It runs with the host's Docker socket mounted
// (deploy/README.md): the plane starts its functions' containers on the host's engine.
import { build } from "esbuild";
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

const root = join(dirname(new URL(import.meta.url).pathname), "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const args = process.argv.slice(2);
let tag = `tandem-plane:${pkg.version}`;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--tag" && args[i + 1]) tag = args[++i];
  else if (args[i].startsWith("--tag=")) tag = args[i].slice("--tag=".length);
  else {
    console.error(`error: unknown argument ${args[i]}. Usage: node scripts/build-plane-image.mjs [--tag REGISTRY/NAME:VERSION]`);
    process.exit(2);
  }
}
if (!/^[a-z0-9][a-z0-9._\-/:]*[a-z0-9._-]$/i.test(tag) || tag.includes("//")) {
  console.error(`error: --tag "${tag}" is not an image name, e.g. registry.example.com/team/tandem-plane:${pkg.version}`);
  process.exit(2);
}

/** Packages the bundle imports rather than holds: native code, or an executable of its own (esbuild). */
const UNBUNDLED = [
  "better-sqlite3",
  "bindings",
  "file-uri-to-path",
  "esbuild",
  `@esbuild/${process.platform}-${process.arch === "x64" ? "x64" : process.arch}`,
];
/**
 * Packages the plane requires at run time rather than from the bundle, with everything they depend on: dockerode is
 * required when the driver is first made, so that what it requires for what a plane never does (gRPC, ssh) loads only
 * if used (gpu-plane/drivers/docker.ts).
 */
const RUNTIME_REQUIRED = ["dockerode"];

/** `names` and their dependencies, each once, as npm placed them in the root's node_modules (a package's own nested copies travel with it). */
function dependencyClosure(names) {
  const seen = new Set();
  const visit = (name) => {
    if (seen.has(name)) return;
    const manifest = join(root, "node_modules", name, "package.json");
    if (!existsSync(manifest)) return; // nested under the package that needs it: copied with that package
    seen.add(name);
    const { dependencies = {}, optionalDependencies = {} } = JSON.parse(readFileSync(manifest, "utf8"));
    for (const dep of Object.keys({ ...dependencies, ...optionalDependencies })) visit(dep);
  };
  names.forEach(visit);
  return [...seen].filter((name) => !UNBUNDLED.includes(name));
}

/** Host tools the plane runs, with the libraries they link. */
const TOOLS = ["/bin/bash", "/usr/bin/ldd", "/bin/tar"];

const started = Date.now();
const rootfs = mkdtempSync(join(tmpdir(), "tandem-plane-image-"));
try {
  const app = join(rootfs, "opt/tandem");
  // The whole CLI in one file; commands the plane never runs (serve, deploy) import their packages only when run.
  await build({
    entryPoints: [join(root, "sdk/cli/main.ts")],
    outfile: join(app, "dist/cli.mjs"),
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    external: [...UNBUNDLED, "miniflare", "wrangler", "workerd", "assemblyscript", "binaryen", "cpu-features", "playwright-core", "onnxruntime-node"],
    // CommonJS packages in the bundle ask for require, __filename and __dirname.
    banner: {
      js: [
        'import { createRequire as __tandemRequire } from "node:module";',
        'import { fileURLToPath as __tandemPath } from "node:url";',
        "const require = __tandemRequire(import.meta.url);",
        "const __filename = __tandemPath(import.meta.url);",
        'const __dirname = __filename.slice(0, __filename.lastIndexOf("/"));',
      ].join("\n"),
    },
    logLevel: "error",
  });
  // The CLI finds its package root by these two (sdk/cli/paths.ts).
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: pkg.name, version: pkg.version, type: "module", private: true }, null, 2));
  mkdirSync(join(app, "sdk"), { recursive: true });
  for (const name of [...UNBUNDLED, ...dependencyClosure(RUNTIME_REQUIRED)]) {
    const from = join(root, "node_modules", name);
    if (!existsSync(from)) throw new Error(`node_modules/${name} is missing: run npm install first`);
    cpSync(realpathSync(from), join(app, "node_modules", name), { recursive: true, dereference: true });
  }

  // Node and the tools, each with the libraries it links (the dynamic loader included).
  const files = new Map([[realpathSync(process.execPath), "/usr/local/bin/node"]]);
  for (const tool of TOOLS) files.set(realpathSync(tool), tool);
  for (const binary of [process.execPath, "/bin/bash", "/bin/tar"]) {
    for (const line of execFileSync("ldd", [binary], { encoding: "utf8" }).split("\n")) {
      const match = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
      if (match) files.set(realpathSync(match[1]), match[1]);
    }
  }
  for (const [from, to] of files) {
    mkdirSync(dirname(join(rootfs, to)), { recursive: true });
    copyFileSync(from, join(rootfs, to));
    chmodSync(join(rootfs, to), 0o755);
  }
  symlinkSync("bash", join(rootfs, "bin/sh"));
  mkdirSync(join(rootfs, "etc"), { recursive: true });
  writeFileSync(join(rootfs, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n");
  writeFileSync(join(rootfs, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
  for (const folder of ["tmp", "root", "var/lib/tandem"]) mkdirSync(join(rootfs, folder), { recursive: true });
  chmodSync(join(rootfs, "tmp"), 0o1777);

  // Runs as root: it talks to the host's Docker socket. Its state (.tandem/ under the working folder) must be at the
  // same path on the host, since the engine binds folders of it into function containers (deploy/README.md).
  const changes = [
    'ENTRYPOINT ["/usr/local/bin/node", "/opt/tandem/dist/cli.mjs"]',
    'CMD ["plane", "--help"]',
    "WORKDIR /var/lib/tandem",
    "ENV NO_COLOR=1",
    `LABEL org.opencontainers.image.title=tandem-plane org.opencontainers.image.version=${pkg.version}`,
  ];
  const tar = spawn("tar", ["--create", "--numeric-owner", "--owner=0", "--group=0", "--sort=name", "-C", rootfs, "."], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const docker = spawn("docker", ["import", ...changes.flatMap((c) => ["--change", c]), "-", tag], { stdio: [tar.stdout, "pipe", "inherit"] });
  const code = await new Promise((resolve) => docker.on("close", resolve));
  if (code !== 0) throw new Error(`docker import failed (exit ${code}); is a Docker engine running (docker info)?`);
  const size = execFileSync("docker", ["image", "inspect", "--format", "{{.Size}}", tag], { encoding: "utf8" }).trim();
  console.log(`✓ built ${tag} (${Math.round(Number(size) / 1024 / 1024)} MB) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`  push it with: docker push ${tag}`);
} finally {
  rmSync(rootfs, { recursive: true, force: true });
}
