/**
 * `VolumeMounts` against a stand-in gateway (the manifest, blocks and commits it answers, the commits it records):
 * a file of the volume with a name reserved for the plane is neither placed nor taken for removed, and a failed
 * commit is told to the app's log, with its function and container, once per container and volume; links a
 * container plants in its mount are replaced by a reload, never followed to the host's files; a commit whose
 * requests' connections break off sends again those that may be sent twice (not the commit itself).
 */
import { createHash } from "node:crypto";
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { VOLUME_LIMITS } from "../sdk/defaults.js";
import type { VolumeChange, VolumeManifestFile } from "../sdk/protocol.js";
import { API_SOCKET, ContainerGateway } from "./container-api.js";
import type { PlaneLogLine } from "./log-shipper.js";
import { VolumeMounts, type MountRequest } from "./volume-mounts.js";

const bytes = new TextEncoder().encode("kept");
const hash = createHash("sha256").update(bytes).digest("hex");
const held = (path: string): VolumeManifestFile => ({ path, blocks: [hash], size: bytes.byteLength, mode: 0o644, version: 1, mtime: 0 });

/** The gateway as a container's requests meet it: one volume, "v", at version 1, or gone once `deleted`. */
class StandInGateway extends ContainerGateway {
  commits: VolumeChange[][] = [];
  deleted = false;
  conflict = false;
  version = 1;
  files = [held(".tandem-keep.txt"), held("a.txt")];

  constructor() {
    super("http://127.0.0.1:9", "s".repeat(32));
  }

  override async request(_app: string, method: string, path: string, body?: Uint8Array): Promise<Response> {
    if (this.deleted) return Response.json({ error: { code: "not_found", message: 'no volume named "v"' } }, { status: 404 });
    if (path.endsWith("/manifest")) return Response.json({ volume: "v", version: this.version, files: this.files });
    if (method === "GET" && path.includes("/blocks/")) return new Response(bytes);
    if (path.endsWith("/blocks/missing")) return Response.json({ missing: [] });
    if (path.endsWith("/commit") && this.conflict) {
      const error = {
        code: "volume_conflict",
        message: 'volume "v": "b.txt" was changed by version 2, after this write\'s base version 1; …',
        details: { volume: "v", path: "b.txt", version: 2, baseVersion: 1 },
      };
      return Response.json({ error }, { status: 409 });
    }
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

let control: string;
const attach = async (id: string) => {
  control = await mkdtemp(join(dir, "control-"));
  const { binds } = await mounts.attach(id, { app: "demo", function: "writer" }, control, [request]);
  return binds[0]!.hostPath;
};

/** `vol.reload()` as the SDK in the container asks it, on the container's API socket: the status and body. */
const reload = () =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpRequest({ socketPath: join(control, API_SOCKET), method: "POST", path: "/v1/container/volumes/v/reload" }, (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk.toString()));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    req.end();
  });

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

describe("a commit another commit got in before", () => {
  it("says what works in a mount (take the volume's, or force this container's through the volume and reload), not the API's words", async () => {
    const folder = await attach("ctr-5");
    await writeFile(join(folder, "b.txt"), "mine");
    gateway.conflict = true;
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ socketPath: join(control, API_SOCKET), method: "POST", path: "/v1/container/volumes/v/commit" }, (res) => {
        let body = "";
        res.on("data", (chunk: Buffer) => (body += chunk.toString()));
        res.on("end", () => resolve({ status: res.statusCode!, body }));
      });
      req.on("error", reject).end();
    });
    expect(answer.status).toBe(409);
    const error = (JSON.parse(answer.body) as { error: { code: string; message: string } }).error;
    expect(error.code).toBe("volume_conflict");
    expect(error.message).toBe(
      '"b.txt" in volume "v" was changed by version 2 since version 1, which this mount is at, so commit() cannot publish this container\'s: ' +
        "to take the volume's, delete /data/b.txt and reload(); to keep this container's, write it over the volume's (await vol.writeFile(\"b.txt\", bytes, { force: true })), then delete /data/b.txt and reload()",
    );
    gateway.conflict = false;
    await mounts.finish("ctr-5");
  });
});

describe("links a container plants in its mount", () => {
  it("are replaced by the volume's files a reload brings, and a reload's removal does not reach through one: the host's files stay", async () => {
    const host = join(dir, "host");
    const victim = join(host, "victim.txt");
    const hostDir = join(host, "folder");
    const hostKept = join(host, "kept");
    await mkdir(hostDir, { recursive: true });
    await mkdir(hostKept);
    await writeFile(victim, "the host's own");
    await chmod(victim, 0o600);
    await writeFile(join(hostKept, "x.txt"), "the host's too");
    gateway.files.push(held("d/x.txt"));
    const folder = await attach("ctr-3");
    // What a container may do in its mount: a link to a host file and one to a host folder where the volume's files
    // will come, and a folder of the volume's swapped for a link to a host folder holding a file of the same name.
    await symlink(victim, join(folder, "ow.txt"));
    await symlink(hostDir, join(folder, "sub"));
    await rename(join(folder, "d"), join(folder, "d-moved"));
    await symlink(hostKept, join(folder, "d"));
    gateway.files = [held("a.txt"), held("ow.txt"), held("sub/f.txt")]; // another's commit: two files put, d/x.txt removed
    gateway.version++;
    expect(await reload()).toEqual({ status: 200, body: expect.stringContaining('"version":2') });
    expect(await readFile(victim, "utf8")).toBe("the host's own");
    expect((await stat(victim)).mode & 0o777).toBe(0o600);
    expect(await readdir(hostDir)).toEqual([]);
    expect(await readFile(join(hostKept, "x.txt"), "utf8")).toBe("the host's too");
    expect((await lstat(join(folder, "ow.txt"))).isFile()).toBe(true);
    expect(await readFile(join(folder, "ow.txt"), "utf8")).toBe("kept");
    expect((await lstat(join(folder, "sub"))).isDirectory()).toBe(true);
    expect(await readFile(join(folder, "sub/f.txt"), "utf8")).toBe("kept");
    await mounts.finish("ctr-3");
    expect(await readFile(victim, "utf8")).toBe("the host's own");
    expect(await readdir(hostKept)).toEqual(["x.txt"]);
  });
});

describe("a commit whose connections to the gateway break off", () => {
  it("sends again the requests that may be sent twice (the manifest, the blocks query, each block's upload) and commits once", async () => {
    const sends: string[] = [];
    const cut = new Set<string>();
    const flaky = createServer((req, res) => {
      const route = `${req.method} ${req.url}`;
      sends.push(route);
      // The first send of each route but the commit breaks off unanswered, as a connection the gateway closed as it was reused.
      if (!route.endsWith("/commit") && !cut.has(route)) return void (cut.add(route), req.socket.destroy());
      const chunks: Buffer[] = [];
      req
        .on("data", (c: Buffer) => chunks.push(c))
        .on("end", () => {
          const json = (value: unknown) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(value));
          if (route.endsWith("/manifest")) return json({ volume: "v", version: 1, files: [] });
          if (route.endsWith("/blocks/missing")) return json({ missing: (JSON.parse(Buffer.concat(chunks).toString()) as { hashes: string[] }).hashes });
          if (req.method === "PUT") return json({});
          json({ volume: "v", version: 2 });
        });
    });
    await new Promise<void>((resolve) => flaky.listen(0, "127.0.0.1", resolve));
    try {
      mounts = new VolumeMounts(
        join(dir, "volumes"),
        new ContainerGateway(`http://127.0.0.1:${(flaky.address() as AddressInfo).port}`, "s".repeat(32)),
        () => {},
        (line) => appLog.push(line),
      );
      const folder = await attach("ctr-4");
      await writeFile(join(folder, "b.txt"), "sent again");
      await mounts.finish("ctr-4"); // the last commit
      expect(appLog).toEqual([]); // no failed commit
      const count = (pattern: RegExp) => sends.filter((s) => pattern.test(s)).length;
      expect(count(/^GET .*\/manifest$/)).toBe(3); // the mount's: cut, then answered; after the commit, answered

      expect(count(/^POST .*\/blocks\/missing$/)).toBe(2);
      expect(count(/^PUT .*\/blocks\/[0-9a-f]{64}$/)).toBe(2);
      expect(count(/^POST .*\/commit$/)).toBe(1);
    } finally {
      flaky.close();
    }
  });
});

describe("mount folders a killed plane left", () => {
  it("keeps a writable mount's files, what was not committed included, and says where, as the plane starts again", async () => {
    const folder = await attach("ctr-1");
    await writeFile(join(folder, "late.txt"), "written after the last commit"); // then the plane is killed: no finish
    // Before, the next start removed the container and left its folder without a word (and the folders piled up).
    const next = new VolumeMounts(
      join(dir, "volumes"),
      gateway,
      (line) => console_.push(line),
      (line) => appLog.push(line),
    );
    await next.keepLeftovers();
    expect(await readFile(join(folder, "late.txt"), "utf8")).toBe("written after the last commit");
    const said = console_.filter((l) => l.includes("stopped without its last commit"));
    expect(said).toEqual([
      expect.stringMatching(
        new RegExp(
          `^\\[plane\\] ctr-1: this plane was stopped without its last commit of volume "v" at /data \\(it was killed\\): what the container wrote after its last background commit is not in the volume; its files are kept in ${folder.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} until \\d{4}-\\d\\d-\\d\\d \\(put one back with tandem volume put v <file> <path>\\)$`,
        ),
      ),
    ]);
    expect(appLog).toContainEqual(expect.objectContaining({ app: "demo", function: "writer", containerId: "ctr-1", source: "system" }));
    expect(gateway.commits).toEqual([]); // nothing committed on a guess
  });

  it("says a mount whose last commit failed as its container stopped was kept for that, not for a killed plane", async () => {
    const folder = await attach("ctr-3");
    await writeFile(join(folder, "b.txt"), "mine");
    gateway.conflict = true;
    await mounts.finish("ctr-3"); // the last commit, refused: another container's got in first
    await mounts.idle();
    const next = new VolumeMounts(join(dir, "volumes"), gateway, (line) => console_.push(line));
    await next.keepLeftovers();
    expect(await readFile(join(folder, "b.txt"), "utf8")).toBe("mine");
    // Before: "this plane was stopped without its last commit … (it was killed)", after a plane stopped as asked.
    expect(console_.filter((l) => l.includes("killed"))).toEqual([]);
    expect(console_.filter((l) => l.includes("failed as its container stopped"))).toEqual([
      expect.stringMatching(
        /^\[plane\] ctr-3: the last commit of volume "v" at \/data failed as its container stopped \("b\.txt" in volume "v" was changed by version 2 since version 1, .+\): what the container wrote after its last commit is not in the volume; its files are kept in \S+ctr-3\/0 until \d{4}-\d\d-\d\d \(put one back with tandem volume put v <file> <path>\)$/,
      ),
    ]);
  });

  it("removes a read-only mount's folder, and a writable one kept past its time", async () => {
    const readOnly = await mounts.attach("ctr-ro", { app: "demo", function: "reader" }, await mkdtemp(join(dir, "control-")), [{ ...request, readOnly: true }]);
    const old = await attach("ctr-old");
    const week = (VOLUME_LIMITS.leftoverKeepMs + 60_000) / 1000;
    await utimes(join(dir, "volumes", "mounts", "ctr-old"), Date.now() / 1000 - week, Date.now() / 1000 - week);
    const next = new VolumeMounts(join(dir, "volumes"), gateway, (line) => console_.push(line));
    await next.keepLeftovers();
    await expect(stat(readOnly.binds[0]!.hostPath)).rejects.toThrow(/ENOENT/);
    await expect(stat(old)).rejects.toThrow(/ENOENT/);
    expect(console_.filter((l) => l.includes("stopped without its last commit"))).toEqual([]);
  });
});
