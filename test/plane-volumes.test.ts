/**
 * Volumes mounted into plane containers, in real Docker with the gateway in
 * real workerd: commit from inside a function, a cold container of another
 * function reading the same bytes from the plane's cache, an edge function
 * reading them, read-only mounts (EROFS), subPath, reload, background commits
 * and the last one when a container stops, conflicts, a missing volume; and
 * the gateway's side of a container's requests carried by its plane.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Volume, lookup } from "../sdk/index.js";
import { GATEWAY_AUDIENCE, HEADERS, paths } from "../sdk/protocol.js";
import { signRequest } from "../sdk/signing.js";
import { bytesOf } from "./fixtures/volume-bytes.js";
import { ADMIN_TOKEN, authed, eventually } from "./helpers/gateway.js";
import { SECRET, startTestStack, type TestStack } from "./helpers/stack.js";

let stack: TestStack;
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const fn = <A extends unknown[], R>(name: string) => lookup<A, R>("volplane", name, { gateway: stack.url });
const vol = () => Volume.fromName("pv-data", { gateway: stack.url, token: ADMIN_TOKEN });
const text = async (path: string) => (await (await vol().readFile(path)).text()) as string;
const mountLines = () => stack.planeOutput.filter((l) => / mounts "pv-data"/.test(l));

beforeAll(async () => {
  stack = await startTestStack(new URL("./fixtures/volume-plane-app.ts", import.meta.url).pathname, { scaledownWindowSeconds: 30 });
}, 120_000);
afterAll(async () => {
  await stack?.dispose();
});

describe("volumes mounted on the plane", () => {
  it("a function writes a file and commits; a cold container of another function reads the same bytes from the cache; the edge reads it too", async () => {
    const written = await fn<[string, number, number], { sha256: string; version: number }>("put").remote("models/weights.bin", 12, 7);
    const expected = bytesOf(12, 7);
    expect(written.sha256).toBe(sha256(expected));
    expect(written.version).toBeGreaterThanOrEqual(1);

    const before = mountLines().length;
    const read = await fn<[string], { sha256: string; size: number; files: string[]; write: string; overwrite: string; remove: string }>("get").remote(
      "models/weights.bin",
    );
    expect(read.sha256).toBe(sha256(expected));
    expect(read.size).toBe(expected.byteLength);
    expect(read.files).toEqual(expect.arrayContaining(["models", "models/weights.bin"]));
    // Mounted read-only: every write, in place or not, is refused: EROFS, but for the file itself (root's, 0644) under
    // gVisor, which checks the permission before the mount's read-only flag (docs/plane.md, gVisor).
    const gvisor = stack.planes[0]!.status().dockerRuntime === "runsc";
    expect([read.write, read.overwrite, read.remove]).toEqual(["EROFS", gvisor ? "EACCES" : "EROFS", "EROFS"]);
    // The writer's plane kept the bytes it uploaded: the reader's container downloaded nothing.
    const mounted = mountLines().slice(before);
    expect(mounted.some((l) => l.includes('"pv-data"') && l.includes("(read-only)") && l.includes(" 0 block(s) downloaded"))).toBe(true);

    const edge = await fn<[string, number], { paths: string[]; size: number; first: number[] }>("peek").remote("models/weights.bin", 16);
    expect(edge.paths).toContain("models/weights.bin");
    expect(edge.size).toBe(expected.byteLength);
    expect(edge.first).toEqual([...expected.subarray(0, 16)]);

    const file = await vol().readFile("models/weights.bin");
    expect(sha256(await file.bytes())).toBe(sha256(expected));
  }, 120_000);

  it("mounts one directory of the volume with subPath, and commits back into it", async () => {
    await vol().writeFile("nested/a.txt", "aye");
    const out = await fn<[string, string], { before: string[]; version: number }>("nested").remote("b.txt", "bee");
    expect(out.before).toEqual(["a.txt"]);
    expect(await text("nested/b.txt")).toBe("bee");
    expect((await vol().info()).version).toBeGreaterThanOrEqual(out.version);
  }, 60_000);

  it("commits in the background what a function only wrote", async () => {
    expect(await fn<[string, string], string>("scribble").remote("notes/bg.txt", "hello")).toBe("written");
    await eventually(async () => (await text("notes/bg.txt").catch(() => "")) === "hello", 15_000);
  }, 60_000);

  it("says in the app's log which files a commit leaves out, as their paths cannot be a volume's, and commits the rest", async () => {
    await fn<[string], number>("unfit").remote("fits.txt");
    expect(await text("fits.txt")).toBe("fits");
    await expect(vol().listdir("deep")).rejects.toThrow('has no file or directory "deep"');
    // Before, it was left out without a word.
    const line = /commit\(\) leaves out "deep\/d{115}…" at \/data: a path in volume "pv-data" must be at most 1024 bytes long/;
    await eventually(() => stack.planeOutput.some((l) => line.test(l)));
    // In the app's log too, once the plane's next batch of lines reaches the gateway.
    const texts = async () =>
      (await (await fetch(`${stack.url}/v1/apps/volplane/logs?function=unfit&source=system`, authed())).text())
        .split("\n")
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { text: string }).text);
    await eventually(async () => (await texts()).some((t) => line.test(t)));
  }, 60_000);

  it("commits a file made executable in the container, though a chmod changes no inode, size or mtime", async () => {
    const [written, after] = await fn<[string], [number, number]>("makeExecutable").remote("tool.sh");
    expect(after).toBeGreaterThan(written); // before: nothing to commit, the volume kept 0o644
    expect((await vol().listdir("tool.sh"))[0]).toMatchObject({ path: "tool.sh", mode: 0o755 });
  }, 60_000);

  it("commits once more when the container stops", async () => {
    expect(await fn<[string, string], string>("scribble").remote("notes/exit.txt", "bye")).toBe("written");
    const res = await fetch(`${stack.url}${paths.appStop("volplane")}`, authed({ method: "POST" }));
    expect(res.status).toBe(200);
    await eventually(async () => (await text("notes/exit.txt").catch(() => "")) === "bye", 10_000);
  }, 60_000);

  it("keeps a stopped container's files on the plane when its last commit cannot reach the gateway", async () => {
    const container = await fn<[string, string, number], string>("scribbleLater").remote("notes/late.txt", "late", 1_000);
    let kept: string | undefined;
    await stack.restartGateway(0, async () => {
      await new Promise((r) => setTimeout(r, 1_500)); // the file is written while the gateway is down
      execFileSync("docker", ["kill", "--signal", "KILL", `tandem-${container}`]);
      await eventually(() => (kept = stack.planeOutput.find((l) => l.includes(`${container}: the last commit of volume "pv-data"`))) !== undefined, 15_000);
      await stack.planes[0]!.volumeCommitsDone();
    });
    const folder = /its files are kept in (\S+)$/.exec(kept!)?.[1];
    expect(folder, kept).toBeDefined();
    expect(await readFile(join(folder!, "notes/late.txt"), "utf8")).toBe("late");
  }, 60_000);

  it("commits the writable mount of a volume mounted twice, and reload brings the commit into the read-only one", async () => {
    const out = await fn<[string], { version: number; before: string; after: string; reloaded: number }>("twice").remote("both ways");
    expect(out.before).toBe("ENOENT");
    expect(out.after).toBe("both ways");
    expect(out.reloaded).toBe(out.version);
    expect(await text("twice.txt")).toBe("both ways");
  }, 60_000);

  it("reload brings in another's commit", async () => {
    const following = fn<[string, number], { first: string; now: string; version: number }>("follow").remote("live.txt", 20_000);
    const before = mountLines().length;
    await eventually(() => mountLines().length > before, 30_000);
    const version = await vol().writeFile("live.txt", "fresh");
    const out = await following;
    expect(out.first).toBe("ENOENT");
    expect(out.now).toBe("fresh");
    expect(out.version).toBeGreaterThanOrEqual(version);
  }, 60_000);

  it("a file from the cache is replaced, never written through: the cache keeps its bytes", async () => {
    const big = bytesOf(2, 11); // over VOLUME_LIMITS.copyBelowBytes: linked (or cloned) from the cache, not copied
    await vol().writeFile("big.bin", big);
    await vol().writeFile("big-copy.bin", big); // the same blocks: the same file in the cache
    await vol().writeFile("small.txt", "small");
    const out = await fn<[string, string], { inPlace: string; version: number; size: number }>("change").remote("big.bin", "small.txt");
    // A hard link is read-only in place (EACCES); a reflink clone is the container's own.
    expect(["EACCES", "written"]).toContain(out.inPlace);
    expect(await text("big.bin")).toBe("replaced");
    expect(await text("small.txt")).toBe("small, changed in place");
    const copy = await fn<[string], { sha256: string }>("get").remote("big-copy.bin");
    expect(copy.sha256).toBe(sha256(big));
  }, 60_000);

  it("a commit over another's change to the same file is a volume_conflict naming it", async () => {
    const stale = fn<[string, number], { code?: string; message?: string; path?: string; version?: number }>("stale").remote("contested.txt", 4_000);
    const before = mountLines().length;
    await eventually(() => mountLines().length > before, 30_000);
    await vol().writeFile("contested.txt", "theirs");
    const out = await stale;
    expect(out.code).toBe("volume_conflict");
    expect(out.path).toBe("contested.txt");
    expect(out.message).toContain('"contested.txt"');
    expect(await text("contested.txt")).toBe("theirs");
  }, 60_000);

  it("a missing volume fails the call, naming it", async () => {
    const err = await fn<[], string>("lost")
      .remote()
      .catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain('no volume named "pv-nobody-made-this"');
  }, 60_000);
});

describe("killed mid-commit", () => {
  it("a container SIGKILLed while its commit runs leaves the volume at the version before or after, never between; a later commit works", async () => {
    const large = Volume.fromName("pv-large", { gateway: stack.url, token: ADMIN_TOKEN });
    const seen = stack.planeOutput.length;
    const call = fn<[string, number, number], { sha256: string; version: number }>("putLarge")
      .remote("pair/a.bin", 24, 5)
      .catch((err: Error) => err);
    let line: string | undefined;
    await eventually(() => (line = stack.planeOutput.slice(seen).find((l) => l.endsWith("] committing pair/a.bin"))) !== undefined, 30_000);
    const container = /(ctr-[0-9a-f]{8})\]/.exec(line!)![1]!;
    execFileSync("docker", ["kill", "--signal", "KILL", `tandem-${container}`]);
    expect(await call).toBeInstanceOf(Error);
    await stack.planes[0]!.volumeCommitsDone(); // the plane's last commit of the killed container's mount, if it had one to make
    // Both files (one commit) or neither, and the bytes whole.
    const paths = (await large.listdir("/", { recursive: true }).catch(() => [])).map((e) => e.path).filter((p) => p.startsWith("pair/"));
    expect([[], ["pair/a.bin", "pair/a.bin.sha256"]]).toContainEqual(paths.sort());
    if (paths.length) expect(sha256(await (await large.readFile("pair/a.bin")).bytes())).toBe(await (await large.readFile("pair/a.bin.sha256")).text());
    const again = await fn<[string, number, number], { sha256: string; version: number }>("putLarge").remote("pair/after.bin", 1, 6);
    expect(again.sha256).toBe(sha256(bytesOf(1, 6)));
    expect((await large.info()).version).toBe(again.version);
  }, 90_000);
});

describe("links a container plants in its writable mount", () => {
  it("are replaced, never followed, when the volume's files at their paths come in: the host's file and folder they point at stay as they were", async () => {
    const host = await mkdtemp(join(tmpdir(), "tandem-host-"));
    try {
      const hostFile = join(host, "victim.txt");
      const hostDir = join(host, "folder");
      await writeFile(hostFile, "the host's own", { mode: 0o600 });
      await chmod(hostFile, 0o600);
      await mkdir(hostDir);
      const links = Volume.fromName("pv-links", { gateway: stack.url, token: ADMIN_TOKEN });
      const seen = stack.planeOutput.length;
      const planting = fn<
        [string, string, number],
        { ow: string; owText: string; sub: string; subText: string; stay: string; version: number; error?: string }
      >("plant").remote(hostFile, hostDir, 20_000);
      await eventually(() => stack.planeOutput.slice(seen).some((l) => l.endsWith("] planted links")), 30_000);
      // Written as anyone who may write the volume would (the SDK here; `tandem volume put` is the same request).
      await links.writeFile("ow.txt", "from the volume");
      await links.writeFile("sub/f.txt", "from the volume too");
      const out = await planting;
      expect(out.error).toBeUndefined();
      // The host's file and folder are untouched: its bytes, its mode, nothing made in the folder.
      expect(await readFile(hostFile, "utf8")).toBe("the host's own");
      expect((await stat(hostFile)).mode & 0o777).toBe(0o600);
      expect(await readdir(hostDir)).toEqual([]);
      // In the mount, the links were replaced by the volume's file and a folder holding its file.
      expect(out).toMatchObject({ ow: "file", owText: "from the volume", sub: "directory", subText: "from the volume too", stay: "symlink" });
      expect(out.version).toBeGreaterThanOrEqual(2);
      // The container's folder goes when it stops, the link left in it with it, and what it pointed at stays.
      const res = await fetch(`${stack.url}${paths.appStop("volplane")}`, authed({ method: "POST" }));
      expect(res.status).toBe(200);
      const container = stack.planeOutput
        .slice(seen)
        .map((l) => /\] (ctr-[0-9a-f]+) mounts "pv-links"/.exec(l)?.[1])
        .find(Boolean);
      expect(container).toBeDefined();
      await eventually(async () => !(await stat(join(stack.dir, "plane-0", "volumes", "mounts", container!)).catch(() => false)), 15_000);
      expect(await readFile(hostFile, "utf8")).toBe("the host's own");
      expect(await readdir(hostDir)).toEqual([]);
      expect(await readdir(host)).toEqual(["folder", "victim.txt"]);
    } finally {
      await rm(host, { recursive: true, force: true });
    }
  }, 90_000);
});

describe("a container's requests carried by its plane", () => {
  const carried = async (method: string, path: string, app = "volplane", secret = SECRET) => {
    const headers = await signRequest(secret, { audience: GATEWAY_AUDIENCE, method, path, body: new Uint8Array(), containerApp: app });
    return fetch(stack.url + path, { method, headers: { ...headers, [HEADERS.containerApp]: app } });
  };

  it("reaches volumes, signed by the plane for the container's app", async () => {
    const res = await carried("GET", paths.volume("pv-data"));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { name: string }).name).toBe("pv-data");
  });

  it("is refused off the allow-list, with another secret, or for another app than the one signed", async () => {
    const apps = await carried("GET", "/v1/apps");
    expect(apps.status).toBe(403);
    expect(((await apps.json()) as { error: { message: string } }).error.message).toContain("a container reaches only /v1/volumes");
    expect((await carried("GET", paths.volume("pv-data"), "volplane", "another-secret-0123456789abcdefgh")).status).toBe(401);
    const headers = await signRequest(SECRET, {
      audience: GATEWAY_AUDIENCE,
      method: "GET",
      path: paths.volume("pv-data"),
      body: new Uint8Array(),
      containerApp: "volplane",
    });
    const swapped = await fetch(stack.url + paths.volume("pv-data"), { headers: { ...headers, [HEADERS.containerApp]: "other" } });
    expect(swapped.status).toBe(401);
  });
});
