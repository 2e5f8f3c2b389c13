/**
 * `VolumeMounts` against a stand-in gateway (the manifest, blocks and commits it answers, the commits it records):
 * a file of the volume with a name reserved for the plane is neither placed nor taken for removed, and a failed
 * commit is told to the app's log, with its function and container, once per container and volume.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { VOLUME_LIMITS } from "../sdk/defaults.js";
import type { VolumeChange, VolumeManifestFile } from "../sdk/protocol.js";
import { ContainerGateway } from "./container-api.js";
import type { PlaneLogLine } from "./log-shipper.js";
import { VolumeMounts, type MountRequest } from "./volume-mounts.js";

const bytes = new TextEncoder().encode("kept");
const hash = createHash("sha256").update(bytes).digest("hex");
const held = (path: string): VolumeManifestFile => ({ path, blocks: [hash], size: bytes.byteLength, mode: 0o644, version: 1, mtime: 0 });

/** The gateway as a container's requests meet it: one volume, "v", at version 1, or gone once `deleted`. */
class StandInGateway extends ContainerGateway {
  commits: VolumeChange[][] = [];
  deleted = false;
  version = 1;

  constructor() {
    super("http://127.0.0.1:9", "s".repeat(32));
  }

  override async request(_app: string, method: string, path: string, body?: Uint8Array): Promise<Response> {
    if (this.deleted) return Response.json({ error: { code: "not_found", message: 'no volume named "v"' } }, { status: 404 });
    if (path.endsWith("/manifest")) return Response.json({ volume: "v", version: this.version, files: [held(".tandem-keep.txt"), held("a.txt")] });
    if (method === "GET" && path.includes("/blocks/")) return new Response(bytes);
    if (path.endsWith("/blocks/missing")) return Response.json({ missing: [] });
    if (path.endsWith("/commit")) {
      this.commits.push((JSON.parse(new TextDecoder().decode(body)) as { changes: VolumeChange[] }).changes);
      return Response.json({ volume: "v", version: ++this.version });
    }
    return Response.json({ error: { code: "not_found", message: `no route ${method} ${path}` } }, { status: 404 });
  }
}

let dir: string;
let gateway: StandInGateway;
let console_: string[];
let appLog: PlaneLogLine[];
let mounts: VolumeMounts;
const request: MountRequest = { path: "/data", volume: "v", readOnly: false, subPath: "", createIfMissing: false };

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tandem-mounts-"));
  gateway = new StandInGateway();
  console_ = [];
  appLog = [];
  mounts = new VolumeMounts(
    join(dir, "volumes"),
    gateway,
    (line) => console_.push(line),
    (line) => appLog.push(line),
  );
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const attach = async (id: string) => {
  const control = await mkdtemp(join(dir, "control-"));
  const { binds } = await mounts.attach(id, { app: "demo", function: "writer" }, control, [request]);
  return binds[0]!.hostPath;
};

describe("a volume's file with a name reserved for the plane", () => {
  it("is not placed in a mount, and a commit of the mount does not remove it from the volume", async () => {
    const folder = await attach("ctr-1");
    expect(await readdir(folder)).toEqual(["a.txt"]);
    await writeFile(join(folder, "b.txt"), "new");
    await mounts.finish("ctr-1"); // the last commit
    expect(gateway.commits).toEqual([[{ op: "put", path: "b.txt", blocks: [expect.any(String)], size: 3, mode: 0o644 }]]);
  });
});

describe("a failed commit", () => {
  it("goes to the app's log as a system line naming its function and container, once however often it fails, and once more when the last one fails", async () => {
    const every = VOLUME_LIMITS.backgroundCommitMs;
    (VOLUME_LIMITS as { backgroundCommitMs: number }).backgroundCommitMs = 20;
    try {
      const folder = await attach("ctr-2");
      await writeFile(join(folder, "b.txt"), "never committed");
      gateway.deleted = true;
      await new Promise((r) => setTimeout(r, 300)); // many background commits, each failing
    } finally {
      (VOLUME_LIMITS as { backgroundCommitMs: number }).backgroundCommitMs = every;
    }
    await mounts.finish("ctr-2");
    expect(appLog.map((l) => [l.app, l.function, l.containerId, l.callId, l.source])).toEqual([
      ["demo", "writer", "ctr-2", null, "system"],
      ["demo", "writer", "ctr-2", null, "system"],
    ]);
    expect(appLog[0]!.text).toBe('a background commit of volume "v" at /data failed: no volume named "v"');
    expect(appLog[1]!.text).toMatch(/^the last commit of volume "v" at \/data failed \(no volume named "v"\); its files are kept in \S+ctr-2\/0$/);
    expect(console_.filter((l) => l.includes("failed"))).toEqual(appLog.map((l) => `[plane] ctr-2: ${l.text}`));
  });
});
