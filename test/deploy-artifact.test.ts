/**
 * The deployment itself, run offline: the `worker.mjs` and `wrangler.toml` that `tandem deploy --dry-run` wrote,
 * as they are, in workerd configured from that wrangler.toml by wrangler's own reading of it (what `wrangler dev
 * --local` runs), with the plane bundles put where deploy says it uploads them, and a real plane registered with
 * it: an edge function and a plane function answer through it, so deploy cannot drift from serve.
 */
import { createRequire } from "node:module";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type * as MiniflareModule from "miniflare";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Plane } from "../gpu-plane/plane.js";
import { lookup } from "../sdk/index.js";
import { PLANE_RUNTIME_MARKER } from "../sdk/protocol.js";
import { runCli } from "./helpers/cli.js";
import { ADMIN_TOKEN, authed, eventually } from "./helpers/gateway.js";

const require = createRequire(import.meta.url);
const { Miniflare } = require("miniflare") as typeof MiniflareModule;
const { unstable_getMiniflareWorkerOptions } = require("wrangler") as typeof import("wrangler");

const APP = new URL("./fixtures/deploy-app.ts", import.meta.url).pathname;
const SECRET = "deploy-artifact-secret-0123456789";

let dir: string;
let miniflare: MiniflareModule.Miniflare;
let plane: Plane | undefined;
let url: string;
let uploads: [file: string, key: string][];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tandem-deployed-"));
  const out = join(dir, "out");
  const { code, stdout, stderr } = await runCli(["deploy", APP, "--dry-run", "--outdir", out, "--name", "deployed-edge"], {
    env: { WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
  });
  expect(stderr).not.toMatch(/✘|\[ERROR\]/);
  expect(code).toBe(0);
  uploads = [...stdout.matchAll(/would upload (\S+) to r2:\/\/tandem-blobs\/(\S+)\n/g)].map((m) => [m[1]!, m[2]!]);
  // The Worker's secrets, as `wrangler dev` reads them: a .dev.vars file beside the configuration.
  await writeFile(join(out, ".dev.vars"), `TANDEM_PLANE_SECRET="${SECRET}"\nTANDEM_ADMIN_TOKEN="${ADMIN_TOKEN}"\n`);
  const config = join(out, "wrangler.toml");
  const { workerOptions, main } = unstable_getMiniflareWorkerOptions(config);
  miniflare = new Miniflare({
    ...workerOptions,
    name: "deployed-edge",
    modules: true,
    scriptPath: main!,
    modulesRoot: dirname(main!),
    cf: false,
    host: "127.0.0.1",
    port: 0,
    defaultPersistRoot: join(dir, "state"),
  } as MiniflareModule.MiniflareOptions);
  url = (await miniflare.ready).href.replace(/\/$/, "");
  const bucket = await miniflare.getR2Bucket("BLOBS");
  for (const [file, key] of uploads) await bucket.put(key, await readFile(file, "utf8")); // bundles and maps are text
  plane = await Plane.start({
    gatewayUrl: url,
    secret: SECRET,
    host: "127.0.0.1",
    port: 0,
    region: "test",
    runtime: "process",
    stateDir: join(dir, "plane"),
    log: () => {},
  });
  await eventually(async () => {
    const res = (await (await fetch(`${url}/v1/planes`, authed())).json()) as { planes: { planeId: string; healthy: boolean }[] };
    return res.planes.some((p) => p.planeId === plane!.planeId && p.healthy);
  }, 20_000);
}, 120_000);

afterAll(async () => {
  await plane?.close().catch(() => {});
  await miniflare?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

it("runs the bundle wrangler uploads, with the bindings wrangler.toml declares", async () => {
  const { main, workerOptions } = unstable_getMiniflareWorkerOptions(join(dir, "out", "wrangler.toml"));
  expect(main).toBe(join(dir, "out", "worker.mjs"));
  // The file wrangler's dry run would upload is the very file run here.
  expect(await readFile(join(dir, "out", "dist", "worker.mjs"))).toEqual(await readFile(main!));
  expect(Object.keys(workerOptions.durableObjects ?? {})).toEqual(expect.arrayContaining(["LEDGER", "PLANES", "TOKENS", "LOGS"]));
  expect(uploads.map(([, key]) => key)).toEqual([
    expect.stringMatching(/^bundles\/[0-9a-f]{64}\.mjs$/),
    expect.stringMatching(/^bundles\/[0-9a-f]{64}\.mjs\.map$/),
  ]);
});

it("calls an edge function through the deployed gateway", async () => {
  const greet = lookup<[string], string>("deployed", "greetEdge", { gateway: url, token: ADMIN_TOKEN });
  expect(await greet.remote("ada")).toBe("hello ada from the edge");
});

it("calls a plane function through the deployed gateway, on the plane registered with it, from the bundle deploy uploads", async () => {
  const greet = lookup<[string], string>("deployed", "greetPlane", { gateway: url, token: ADMIN_TOKEN });
  expect(await greet.remote("grace")).toBe("hello grace from plane true");
  const call = await greet.spawn("linus");
  expect(await call.get({ timeoutMs: 30_000 })).toBe("hello linus from plane true");
  // The bundle joins the runtime with the app's module and says so: the plane keeps the runtime apart, for its code cache.
  const [bundleFile] = uploads.find(([, key]) => key.endsWith(".mjs"))!;
  expect((await readFile(bundleFile, "utf8")).split("\n", 1)[0]).toMatch(new RegExp(`${PLANE_RUNTIME_MARKER}\\d+$`));
  const kept = (await readdir(join(dir, "plane", "bundles"))).filter((d) => /^[0-9a-f]{64}$/.test(d));
  expect(kept).toHaveLength(1);
  expect((await readdir(join(dir, "plane", "bundles", kept[0]!))).sort()).toEqual(["bundle.mjs", "runtime.cache", "runtime.js"]);
}, 60_000);
