/**
 * Volumes in real workerd: blocks in R2 by content, manifests in the
 * `VolumeStore` Durable Object, commits as compare-and-swap; the
 * `/v1/volumes` API with its tokens, the SDK's `Volume` from Node and from an
 * edge function, and `tandem volume` as a subprocess.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ForbiddenError, InvalidOptionsError, NotFoundError, UnauthorizedError, Volume, VolumeConflictError, lookup } from "../sdk/index.js";
import { VOLUME_LIMITS } from "../sdk/defaults.js";
import type { TokenCreateAnswer, VolumeInfo } from "../sdk/protocol.js";
import { CLI, runCli } from "./helpers/cli.js";
import { childEnded } from "./helpers/child-exit.js";
import { ADMIN_TOKEN, startTestGateway, type TestGateway } from "./helpers/gateway.js";

let gw: TestGateway;
let dir: string;
const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const vol = (name: string, options: { createIfMissing?: boolean; token?: string } = {}) =>
  Volume.fromName(name, { gateway: gw.url, token: ADMIN_TOKEN, ...options });
const blockKeys = async () => (await gw.blobKeys()).filter((k) => k.startsWith("blocks/"));
const api = (path: string, init: RequestInit & { token?: string | null } = {}) => {
  const token = init.token === undefined ? ADMIN_TOKEN : init.token;
  return fetch(gw.url + path, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.headers as Record<string, string>) } });
};
const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

beforeAll(async () => {
  gw = await startTestGateway(fixture("volume-app.ts"));
  dir = await mkdtemp(join(tmpdir(), "tandem-volumes-"));
});
afterAll(async () => {
  await gw?.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe("storage", () => {
  it("writes a file larger than a block and reads it back with the same sha256", async () => {
    const data = randomBytes(2 * VOLUME_LIMITS.blockBytes + 12_345);
    const v = vol("big", { createIfMissing: true });
    const version = await v.writeFile("/models/weights.bin", data);
    expect(version).toBe(1);
    const file = await v.readFile("models/weights.bin");
    expect(file.size).toBe(data.length);
    const hash = createHash("sha256");
    for await (const chunk of file) hash.update(chunk);
    expect(hash.digest("hex")).toBe(sha256(data));
    expect(await blockKeys()).toHaveLength(3);
    // The same bytes over plain HTTP, with their length.
    const res = await api("/v1/volumes/big/file?path=models/weights.bin");
    expect(res.headers.get("content-length")).toBe(String(data.length));
    expect(res.headers.get("tandem-volume-version")).toBe("1");
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(data));
  });

  it("stores each block once: the same bytes again, in another file and another volume, add no block", async () => {
    const data = randomBytes(VOLUME_LIMITS.blockBytes + 99);
    await vol("dedup-a", { createIfMissing: true }).writeFile("one.bin", data);
    const before = await blockKeys();
    const written = await gw.blobWrites();
    await vol("dedup-a").writeFile("two.bin", data);
    await vol("dedup-b", { createIfMissing: true }).writeFile("copy/three.bin", data);
    // A streamed upload over HTTP is split the same way: its blocks are there already.
    const put = await api("/v1/volumes/dedup-b/file?path=four.bin", { method: "PUT", body: data });
    expect(put.status).toBe(200);
    expect(await blockKeys()).toEqual(before);
    const again = await gw.blobWrites();
    expect(before.map((key) => again.get(key))).toEqual(before.map((key) => written.get(key))); // not one block written again
    const three = await (await vol("dedup-b").readFile("copy/three.bin")).bytes();
    const four = await (await vol("dedup-b").readFile("four.bin")).bytes();
    expect([sha256(three), sha256(four)]).toEqual([sha256(data), sha256(data)]);
  });

  it("uploads over HTTP only the blocks the gateway lacks", async () => {
    const block = new Uint8Array(1000).fill(7);
    const hash = sha256(block);
    await vol("blocks", { createIfMissing: true }).info();
    const ask = () =>
      api("/v1/volumes/blocks/blocks/missing", { method: "POST", body: JSON.stringify({ hashes: [hash] }), headers: { "content-type": "application/json" } });
    expect(await (await ask()).json()).toEqual({ missing: [hash] });
    const put = await api(`/v1/volumes/blocks/blocks/${hash}`, { method: "PUT", body: block });
    expect(await put.json()).toEqual({ hash, size: 1000, stored: true });
    expect(await (await ask()).json()).toEqual({ missing: [] });
    const again = await api(`/v1/volumes/blocks/blocks/${hash}`, { method: "PUT", body: block });
    expect(await again.json()).toEqual({ hash, size: 1000, stored: false });
    const commit = await api("/v1/volumes/blocks/commit", {
      method: "POST",
      body: JSON.stringify({ changes: [{ op: "put", path: "sevens", blocks: [hash], size: 1000, mode: 0o600 }] }),
    });
    expect(await commit.json()).toEqual({ volume: "blocks", version: 1 });
    const [entry] = await vol("blocks").listdir("/");
    expect(entry).toMatchObject({ path: "sevens", type: "file", size: 1000, mode: 0o600, version: 1 });
  });

  it("commits different files from the same base; the same file is a conflict naming it, unless forced", async () => {
    await vol("shared", { createIfMissing: true }).writeFile("a.txt", "a0");
    const first = vol("shared");
    const second = vol("shared");
    expect(await first.reload()).toBe(1);
    expect(await second.reload()).toBe(1);
    expect(await first.writeFile("a.txt", "first")).toBe(2);
    const conflict = await second.writeFile("a.txt", "second").catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(VolumeConflictError);
    expect((conflict as VolumeConflictError).message).toContain('"a.txt" was changed by version 2');
    expect((conflict as VolumeConflictError).details).toMatchObject({ path: "a.txt", version: 2 });
    expect(await (await first.readFile("a.txt")).text()).toBe("first");
    expect(await second.writeFile("b.txt", "second")).toBe(3); // another file from the same base: it succeeds
    expect(await second.writeFile("a.txt", "forced", { force: true })).toBe(4);
    expect(await (await first.readFile("a.txt")).text()).toBe("forced");
    // Removing a file another commit changed is a conflict too, and over HTTP it is a 409.
    const res = await api("/v1/volumes/shared/files?path=a.txt&baseVersion=3", { method: "DELETE" });
    expect(res.status).toBe(409);
    expect(await errorOf(res)).toMatchObject({ code: "volume_conflict" });
  });

  it("reads the latest version through a handle whose writes keep their base until reload(), and its conflict says so", async () => {
    await vol("reread", { createIfMissing: true }).writeFile("a.txt", "a0");
    const reader = vol("reread");
    expect(await (await reader.readFile("a.txt")).text()).toBe("a0"); // base: version 1
    await vol("reread").writeFile("a.txt", "a1"); // version 2
    const again = await reader.readFile("a.txt");
    expect([await again.text(), again.version]).toEqual(["a1", 2]);
    const conflict = await reader.writeFile("a.txt", "mine").catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(VolumeConflictError);
    // Reading it again, as the reader just did, does not help: the message names what does.
    expect((conflict as VolumeConflictError).message).toBe(
      'volume "reread": "a.txt" was changed by version 2, after this write\'s base version 1; reads show the latest version, ' +
        "but writes keep their base until vol.reload() (over HTTP: a later baseVersion): reload and write again, or write with { force: true }",
    );
    expect(await reader.reload()).toBe(2);
    expect(await reader.writeFile("a.txt", "mine")).toBe(3);
  });

  it("takes the version a read found no file at as its base: creating that file after another did is a conflict", async () => {
    await vol("race", { createIfMissing: true }).writeFile("other.txt", "x"); // version 1
    const late = vol("race");
    await expect(late.readFile("new.txt")).rejects.toBeInstanceOf(NotFoundError); // base: version 1
    expect(await vol("race").writeFile("new.txt", "first")).toBe(2);
    // Before, a handle whose first read found nothing had no base, and overwrote the file made meanwhile.
    await expect(late.writeFile("new.txt", "second")).rejects.toBeInstanceOf(VolumeConflictError);
    expect(await (await vol("race").readFile("new.txt")).text()).toBe("first");
    const lister = vol("race");
    await expect(lister.listdir("nowhere")).rejects.toBeInstanceOf(NotFoundError); // base: version 2
    expect(await vol("race").writeFile("nowhere/f.txt", "made")).toBe(3);
    await expect(lister.writeFile("nowhere/f.txt", "mine")).rejects.toBeInstanceOf(VolumeConflictError);
    // At the edge: an edge function's read finds nothing, another writes the file, its write is a conflict.
    const atEdge = lookup<[string, string, number], number | string>("vols", "createLate", { gateway: gw.url, token: ADMIN_TOKEN }).remote(
      "race",
      "edge.txt",
      1_500,
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    await vol("race").writeFile("edge.txt", "first");
    expect(await atEdge).toBe("volume_conflict");
    expect(await (await vol("race").readFile("edge.txt")).text()).toBe("first");
  });

  it("refuses a write through the SDK to a name reserved for the plane, before sending it; the volume is unchanged", async () => {
    const v = vol("reserved", { createIfMissing: true });
    await expect(v.writeFile(".tandem-keep.txt", "keep me")).rejects.toThrow('names starting with ".tandem-" are reserved for the plane');
    expect(() => v.batchUpload().putFile(new Uint8Array(1), "x/.tandem-y")).toThrow("reserved for the plane");
    await expect(v.copyFiles(["a"], ".tandem-a")).rejects.toThrow("reserved for the plane");
    // The root is a directory: a file's path must name one, said before anything is sent (an InvalidOptionsError).
    for (const root of ["", "/"]) {
      await expect(v.writeFile(root, "x")).rejects.toThrow(InvalidOptionsError);
      await expect(v.readFile(root)).rejects.toThrow(`a file needs a path, like "models/weights.bin"; "${root}" is the volume's root, a directory`);
      expect(() => v.batchUpload().putFile(new Uint8Array(1), root)).toThrow(InvalidOptionsError);
    }
    expect(await v.info()).toMatchObject({ version: 0, files: 0 });
  });

  it("tells an old handle's write that its volume was deleted and made again, and how to start from it", async () => {
    const old = vol("remade", { createIfMissing: true });
    expect(await old.writeFile("a.txt", "before")).toBe(1);
    await Volume.delete("remade", { gateway: gw.url, token: ADMIN_TOKEN });
    await Volume.create("remade", { gateway: gw.url, token: ADMIN_TOKEN });
    const err = await old.writeFile("a.txt", "after").catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      'base version 1 is newer than volume "remade"\'s version 0: the volume was deleted and made again since that version was read; ' +
        "vol.reload() (or a new handle; over HTTP, no baseVersion) starts from its current version",
    );
    expect(await old.reload()).toBe(0);
    expect(await old.writeFile("a.txt", "after")).toBe(1);
  });

  it("lets many writers commit different files at once, each its own version", async () => {
    await vol("busy", { createIfMissing: true }).info();
    const writers = Array.from({ length: 12 }, () => vol("busy"));
    await Promise.all(writers.map((w) => w.reload()));
    const versions = await Promise.all(writers.map((w, i) => w.writeFile(`w/${i}.txt`, `writer ${i}`)));
    expect([...versions].sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect((await vol("busy").info()).files).toBe(12);
    // The same file from the same base, at once: one wins, the others are conflicts naming it.
    const racers = Array.from({ length: 6 }, () => vol("busy"));
    await Promise.all(racers.map((r) => r.reload()));
    const outcomes = await Promise.allSettled(racers.map((r, i) => r.writeFile("w/0.txt", `racer ${i}`)));
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    for (const o of outcomes.filter((o) => o.status === "rejected")) {
      expect((o as PromiseRejectedResult).reason).toBeInstanceOf(VolumeConflictError);
      expect(((o as PromiseRejectedResult).reason as Error).message).toContain('"w/0.txt" was changed by version 13');
    }
  });

  it("makes a volume on first use with createIfMissing, and names a missing one", async () => {
    const missing = await vol("never-made")
      .listdir("/")
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(NotFoundError);
    expect((missing as Error).message).toContain('no volume named "never-made"');
    expect((await vol("made-on-use", { createIfMissing: true }).listdir("/")).length).toBe(0);
    const names = (await Volume.list({ gateway: gw.url, token: ADMIN_TOKEN })).map((v) => v.name);
    expect(names).toContain("made-on-use");
    expect(names).not.toContain("never-made");
  });

  it("lists, copies and removes files and directories", async () => {
    const v = vol("tree", { createIfMissing: true });
    const batch = v.batchUpload();
    batch
      .putFile(new TextEncoder().encode("1"), "/d/one.txt")
      .putFile(new Blob(["2"]), "/d/sub/two.txt")
      .putFile(new TextEncoder().encode("top"), "top.txt");
    expect(await batch.commit()).toBe(1); // one commit for the batch
    expect((await v.listdir("/")).map((e) => [e.path, e.type])).toEqual([
      ["d", "directory"],
      ["top.txt", "file"],
    ]);
    // Recursive: every file and directory under it (as Modal's listdir(recursive=True)), each directory before its files.
    expect((await v.listdir("d", { recursive: true })).map((e) => [e.path, e.type])).toEqual([
      ["d/one.txt", "file"],
      ["d/sub", "directory"],
      ["d/sub/two.txt", "file"],
    ]);
    expect((await v.listdir("/", { recursive: true })).map((e) => e.path)).toEqual(["d", "d/one.txt", "d/sub", "d/sub/two.txt", "top.txt"]);
    await v.copyFiles(["d"], "e");
    await v.copyFiles(["top.txt", "d/one.txt"], "e/sub");
    const files = async (dir: string) => (await v.listdir(dir, { recursive: true })).filter((e) => e.type === "file").map((e) => e.path);
    expect(await files("e")).toEqual(["e/one.txt", "e/sub/one.txt", "e/sub/top.txt", "e/sub/two.txt"]);
    expect(await (await v.readFile("e/sub/top.txt")).text()).toBe("top");
    // A destination ending in "/" is a directory, made if it is not there yet (docs/volumes.md: copyFiles(["notes/hello.txt"], "backup/")).
    await v.copyFiles(["top.txt"], "backup/");
    await v.copyFiles(["d"], "/backup-d/");
    expect((await v.listdir("backup")).map((e) => [e.path, e.type])).toEqual([["backup/top.txt", "file"]]);
    expect(await files("backup-d")).toEqual(["backup-d/d/one.txt", "backup-d/d/sub/two.txt"]);
    await expect(v.copyFiles(["d/one.txt"], "top.txt/")).rejects.toThrow('"top.txt" is a file, not a directory');
    await v.remove("backup", { recursive: true });
    await v.remove("backup-d", { recursive: true });
    await expect(v.remove("d")).rejects.toThrow('"d" in volume "tree" is a directory: remove it with recursive');
    await v.remove("d", { recursive: true });
    await v.remove("top.txt");
    expect((await v.listdir("/")).map((e) => e.path)).toEqual(["e"]);
    await expect(v.readFile("top.txt")).rejects.toThrow('volume "tree" has no file "top.txt"');
  });

  it("uploads a local directory and file from Node in one batch", async () => {
    await mkdir(join(dir, "local/nested"), { recursive: true });
    await writeFile(join(dir, "local/a.txt"), "A");
    await writeFile(join(dir, "local/nested/b.txt"), "B");
    await writeFile(join(dir, "single.txt"), "S");
    const v = vol("from-disk", { createIfMissing: true });
    expect(await v.batchUpload().putDirectory(join(dir, "local"), "/up").putFile(join(dir, "single.txt"), "/s.txt").commit()).toBe(1);
    expect((await v.listdir("/", { recursive: true })).map((e) => e.path)).toEqual(["s.txt", "up", "up/a.txt", "up/nested", "up/nested/b.txt"]);
    expect(await (await v.readFile("up/nested/b.txt")).text()).toBe("B");
  });

  it("keeps a local directory's nested paths whole when it is named with ./ in it", async () => {
    await mkdir(join(dir, "dotted/sub"), { recursive: true });
    await writeFile(join(dir, "dotted/top.txt"), "T");
    await writeFile(join(dir, "dotted/sub/y.txt"), "Y");
    const v = vol("from-dotted", { createIfMissing: true });
    await v.batchUpload().putDirectory(`${dir}/./dotted`, "/tok").commit();
    expect((await v.listdir("/", { recursive: true })).map((e) => e.path)).toEqual(["tok", "tok/sub", "tok/sub/y.txt", "tok/top.txt"]);
  });

  it("refuses bad input with a 4xx that says what is wrong", async () => {
    await vol("strict", { createIfMissing: true }).writeFile("file", "x");
    const cases: [string, RequestInit, number, string][] = [
      ["/v1/volumes/bad name!", {}, 400, "is not a volume name"],
      ["/v1/volumes/strict/file?path=../etc/passwd", {}, 400, "must not hold `.` or `..`"],
      ["/v1/volumes/strict/file?path=a//b", { method: "PUT", body: "x" }, 400, "empty name"],
      ["/v1/volumes/strict/file?path=caf%E9", { method: "PUT", body: "x" }, 400, '?path= is not UTF-8 percent-encoded (got "caf%E9")'],
      ["/v1/volumes/strict/files?path=%C0%AE%C0%AE", {}, 400, '?path= is not UTF-8 percent-encoded (got "%C0%AE%C0%AE")'],
      ["/v1/volumes/strict/file?path=file/under", { method: "PUT", body: "x" }, 400, '"file" is a file, not a directory'],
      ["/v1/volumes/strict/file", {}, 400, "?path= must name a file"],
      ["/v1/volumes/strict/file?path=x&mode=999", { method: "PUT", body: "x" }, 400, "?mode= must be a file's permission bits"],
      // Before: taken (200), though no get ever gives a setuid bit back.
      ["/v1/volumes/strict/file?path=x&mode=4755", { method: "PUT", body: "x" }, 400, "a volume keeps no setuid, setgid or sticky bit"],
      [
        "/v1/volumes/strict/commit",
        { method: "POST", body: JSON.stringify({ changes: [{ op: "put", path: "p", blocks: [], size: 0, mode: 0o4755 }] }) },
        400,
        "must be a file's permission bits, at most 0o777",
      ],
      ["/v1/volumes/strict/blocks/nothex", { method: "PUT", body: "x" }, 400, "is not a block's name"],
      [`/v1/volumes/strict/blocks/${"0".repeat(64)}`, { method: "PUT", body: "x" }, 400, "the body's SHA-256 is"],
      [
        "/v1/volumes/strict/commit",
        { method: "POST", body: JSON.stringify({ changes: [{ op: "put", path: "p", blocks: ["1".repeat(64)], size: 3 }] }) },
        400,
        "is not uploaded",
      ],
      ["/v1/volumes/strict/commit", { method: "POST", body: JSON.stringify({ changes: [{ op: "move" }] }) }, 400, "must be a change"],
      ["/v1/volumes/strict/commit", { method: "POST", body: "{" }, 400, "not valid JSON"],
      ["/v1/volumes", { method: "POST", body: JSON.stringify({ name: "strict" }) }, 409, 'volume "strict" already exists (to use it as it is: --exist-ok'],
      ["/v1/volumes/nope/file?path=x", { method: "PUT", body: "x" }, 404, 'no volume named "nope"'],
      ["/v1/volumes/strict/file?path=missing", {}, 404, 'has no file "missing"'],
      ["/v1/volumes/strict/copy", { method: "PUT" }, 405, "takes POST"],
      // A block read by a name that is not one says what a block's name is (not a 405: the route takes GET).
      ["/v1/volumes/strict/blocks/nothex", {}, 400, `"nothex" is not a block's name: the SHA-256 of its bytes, 64 lowercase hex digits`],
      [`/v1/volumes/strict/blocks/${"AB".repeat(32)}`, {}, 400, "64 lowercase hex digits"],
      ["/v1/volumes/strict/blocks/missing", {}, 405, "takes POST"],
      // Names starting .tandem- are the plane's own in a mount, which never commits them: no write may make one.
      [
        "/v1/volumes/strict/file?path=.tandem-foo",
        { method: "PUT", body: "x" },
        400,
        'holds the name ".tandem-foo": names starting with ".tandem-" are reserved for the plane',
      ],
      ["/v1/volumes/strict/file?path=a/.tandem-keep/b.txt", { method: "PUT", body: "x" }, 400, "reserved for the plane"],
      ["/v1/volumes/strict/copy", { method: "POST", body: JSON.stringify({ sources: ["file"], destination: ".tandem-copy" }) }, 400, "reserved for the plane"],
      [
        "/v1/volumes/strict/commit",
        { method: "POST", body: JSON.stringify({ changes: [{ op: "put", path: "d/.tandem-x", blocks: [], size: 0 }] }) },
        400,
        "reserved for the plane",
      ],
    ];
    for (const [path, init, status, message] of cases) {
      const res = await api(path, init);
      expect(res.status, path).toBe(status);
      expect((await errorOf(res)).message, path).toContain(message);
    }
  });

  it("refuses a query field given twice, or one its route does not take, and writes nothing", async () => {
    const strict = vol("fields", { createIfMissing: true });
    await strict.writeFile("big.txt", "the whole file");
    const cases: [string, RequestInit, string][] = [
      // Read as its first ?path= alone, this put would have replaced big.txt with 5 bytes.
      ["/v1/volumes/fields/file?path=big.txt&path=other", { method: "PUT", body: "hello" }, 'field "path" is given 2 times: give it once'],
      ["/v1/volumes/fields/file?path=big.txt&baseVerison=1", { method: "PUT", body: "hello" }, 'takes path, baseVersion, force, mode, not "baseVerison"'],
      ["/v1/volumes/fields/file?path=big.txt&mode=644&force=true&x=1", { method: "PUT", body: "hello" }, 'not "x"'],
      ["/v1/volumes/fields/files?path=big.txt&recursve=true", { method: "DELETE" }, 'takes path, recursive, baseVersion, force, not "recursve"'],
      ["/v1/volumes/fields/files?path=&recurse=true", {}, 'takes path, recursive, not "recurse"'],
      ["/v1/volumes/fields/file?path=big.txt&force=true", {}, 'takes path, not "force"'],
    ];
    for (const [path, init, message] of cases) {
      const res = await api(path, init);
      expect(res.status, path).toBe(400);
      expect((await errorOf(res)).message, path).toContain(message);
    }
    expect(await (await strict.readFile("big.txt")).text()).toBe("the whole file");
  });

  /** Sends only a request's headers, declaring `length` bytes of body, and reads the answer: it comes without a byte of the body. */
  const headersOnly = (path: string, length: number, token?: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${gw.url}${path}`, {
        method: "PUT",
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), "content-length": String(length) },
      });
      req.on("response", (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => {
          resolve({ status: res.statusCode!, body });
          req.destroy();
        });
      });
      req.on("error", reject);
      req.flushHeaders();
    });

  it("checks the token, then the declared length, before reading a body", async () => {
    const block = `/v1/volumes/strict/blocks/${"0".repeat(64)}`;
    const tooBig = await headersOnly(block, VOLUME_LIMITS.blockBytes + 1, ADMIN_TOKEN);
    expect(tooBig.status).toBe(413);
    expect(tooBig.body).toContain(`a volume block holds at most ${VOLUME_LIMITS.blockBytes}`);
    const file = await headersOnly("/v1/volumes/strict/file?path=huge", VOLUME_LIMITS.maxFileBytes + 1, ADMIN_TOKEN);
    expect(file.status).toBe(413);
    expect(file.body).toContain(`a volume holds files of at most ${VOLUME_LIMITS.maxFileBytes} bytes`);
    const anonymous = await headersOnly(block, VOLUME_LIMITS.blockBytes + 1);
    expect(anonymous.status).toBe(401);
  });
});

describe("inside the gateway", () => {
  it("lets an edge function list a volume and read a file's first bytes", async () => {
    const data = randomBytes(VOLUME_LIMITS.blockBytes + 10);
    await vol("edge-read", { createIfMissing: true }).writeFile("data/blob.bin", data);
    const peek = lookup("vols", "peek", { gateway: gw.url, token: ADMIN_TOKEN });
    const seen = (await peek.remote("edge-read", "data/blob.bin", 16)) as { paths: string[]; size: number; first: number[] };
    expect(seen).toEqual({ paths: ["data", "data/blob.bin"], size: data.length, first: [...data.subarray(0, 16)] });
  });

  it("gives each call its own base through a handle kept at module scope: another's commit between calls is no conflict, one within a call is", async () => {
    const write = lookup<[string, string], { version: number }>("vols", "sharedWrite", { gateway: gw.url, token: ADMIN_TOKEN });
    const first = await write.remote("shared.txt", "edge 1");
    // Another writer (a plane function, a Node program) changes the file between two calls.
    const theirs = await vol("edge-shared").writeFile("shared.txt", "node");
    expect(theirs).toBe(first.version + 1);
    expect((await write.remote("shared.txt", "edge 2")).version).toBe(theirs + 1);
    expect(await (await vol("edge-shared").readFile("shared.txt")).text()).toBe("edge 2");
    // Within one call the base still holds: a change by another handle after the call's first read is a conflict.
    const race = lookup<[string], { code?: string; message?: string; version?: number }>("vols", "sharedRace", { gateway: gw.url, token: ADMIN_TOKEN });
    const raced = await race.remote("shared.txt");
    expect(raced.code).toBe("volume_conflict");
    expect(raced.message).toContain('"shared.txt" was changed by version');
  });

  it("lets an edge function make a volume, write and read it", async () => {
    const note = lookup("vols", "note", { gateway: gw.url, token: ADMIN_TOKEN });
    expect(await note.remote("edge-made", "hello.txt", "hi from the edge")).toEqual({ version: 1, text: "hi from the edge" });
    expect(await (await vol("edge-made").readFile("hello.txt")).text()).toBe("hi from the edge");
  });
});

describe("tokens", () => {
  async function token(body: Record<string, unknown>): Promise<string> {
    const res = await api("/v1/tokens", { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
    return ((await res.json()) as TokenCreateAnswer).token;
  }

  it("refuses the API without a token, and makes and deletes volumes only with scope deploy", async () => {
    const none = await api("/v1/volumes", { token: null });
    expect(none.status).toBe(401);
    expect((await errorOf(none)).message).toContain("Authorization: Bearer");
    await vol("guarded", { createIfMissing: true }).writeFile("x", "x");
    const call = await token({ scope: "call" });
    const reader = vol("guarded", { token: call });
    expect(await (await reader.readFile("x")).text()).toBe("x");
    expect(await reader.writeFile("y", "y")).toBe(2); // writing files: scope call
    await expect(Volume.create("by-caller", { gateway: gw.url, token: call })).rejects.toThrow(ForbiddenError);
    await expect(Volume.delete("guarded", { gateway: gw.url, token: call })).rejects.toThrow('needs "deploy"');
    const deploy = await token({ scope: "deploy" });
    expect((await Volume.create("by-deployer", { gateway: gw.url, token: deploy })).name).toBe("by-deployer");
    expect((await Volume.delete("by-deployer", { gateway: gw.url, token: deploy })).name).toBe("by-deployer");
  });

  it("refuses a token restricted to apps: volumes belong to the whole gateway", async () => {
    const scoped = await token({ scope: "deploy", apps: ["vols"] });
    const err = await vol("guarded", { token: scoped })
      .listdir("/")
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ForbiddenError);
    expect((err as Error).message).toContain("volumes belong to the whole gateway");
    await expect(vol("guarded", { token: "tk-0000000000000000.ts-00000000000000000000000000000000" }).listdir("/")).rejects.toThrow(UnauthorizedError);
  });
});

describe("tandem volume", () => {
  const cli = (...args: string[]) => runCli(["volume", ...args, "--gateway", gw.url]);

  it("creates, puts, lists, gets, copies, removes and deletes", async () => {
    expect((await cli("create", "cli-vol")).code).toBe(0);
    const data = randomBytes(VOLUME_LIMITS.blockBytes + 5);
    await writeFile(join(dir, "upload.bin"), data);
    const put = await cli("put", "cli-vol", join(dir, "upload.bin"), "/in/upload.bin");
    expect(put.code, put.stderr).toBe(0);
    expect(put.stdout).toContain("in/upload.bin");
    const ls = await cli("ls", "cli-vol", "/in");
    expect(ls.stdout).toContain("in/upload.bin");
    expect(ls.stdout).toContain(String(data.length));
    const get = await cli("get", "cli-vol", "/in/upload.bin", join(dir, "download.bin"));
    expect(get.code, get.stderr).toBe(0);
    expect(sha256(await readFile(join(dir, "download.bin")))).toBe(sha256(data));
    expect((await cli("cp", "cli-vol", "/in/upload.bin", "/copy.bin")).code).toBe(0);
    expect((await cli("rm", "cli-vol", "/in", "-r")).code).toBe(0);
    const after = await cli("ls", "cli-vol", "/", "--json");
    expect((JSON.parse(after.stdout) as { path: string }[]).map((e) => e.path)).toEqual(["copy.bin"]);
    const list = await cli("list", "--json");
    expect((JSON.parse(list.stdout) as VolumeInfo[]).find((v) => v.name === "cli-vol")).toMatchObject({ files: 1, bytes: data.length });
    expect((await cli("delete", "cli-vol", "--yes")).code).toBe(0);
    const gone = await cli("ls", "cli-vol");
    expect(gone.code).toBe(2);
    expect(gone.stderr).toContain('error: no volume named "cli-vol"');
  });

  it("says what is wrong in one line: a missing local file, a conflict-free put of a directory", async () => {
    await cli("create", "cli-two");
    const missing = await cli("put", "cli-two", join(dir, "no-such-file"), "/x");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^error: .*no-such-file/m);
    // A reserved name, said in the command's words (before: 'volume "cli-two" batch putFile: …', the SDK's).
    await writeFile(join(dir, "reserved.txt"), "r");
    const reserved = await cli("put", "cli-two", join(dir, "reserved.txt"), "/.tandem-x");
    expect(reserved.code).toBe(2);
    expect(reserved.stderr).toMatch(/^error: cannot put \/\.tandem-x in volume cli-two: path "\/\.tandem-x" holds the name "\.tandem-x"/m);
    expect(reserved.stderr).not.toContain("batch");
    await mkdir(join(dir, "tree/sub"), { recursive: true });
    await writeFile(join(dir, "tree/sub/f.txt"), "f");
    const put = await cli("put", "cli-two", join(dir, "tree"), "/t");
    expect(put.code, put.stderr).toBe(0);
    // Into a directory (a remote ending in /): the directory by its name, or with a trailing / its contents, as rsync.
    expect((await cli("put", "cli-two", join(dir, "tree"), "/in/")).code).toBe(0);
    const contents = await cli("put", "cli-two", `${join(dir, "tree")}/`, "/");
    expect(contents.code, contents.stderr).toBe(0);
    expect(contents.stdout).toContain("put sub/f.txt (1 B)"); // before: tree/sub/f.txt
    const ls = await cli("ls", "cli-two", "/", "-r", "--json");
    expect((JSON.parse(ls.stdout) as { path: string }[]).map((e) => e.path)).toEqual([
      "in",
      "in/tree",
      "in/tree/sub",
      "in/tree/sub/f.txt",
      "sub",
      "sub/f.txt",
      "t",
      "t/sub",
      "t/sub/f.txt",
    ]);
    // A directory over a local file: said (before: "error: ENOTDIR: not a directory, mkdir …").
    await writeFile(join(dir, "a-file"), "f");
    const overFile = await cli("get", "cli-two", "/t", join(dir, "a-file"));
    expect(overFile.code).toBe(2);
    expect(overFile.stderr).toContain(`error: "/t" is a directory in volume cli-two, and ${join(dir, "a-file")} is a file: give a directory to write it into`);
    // A directory got back is its files, the listing's directories made on the way.
    const got = await cli("get", "cli-two", "/t", join(dir, "got-t"));
    expect(got.code, got.stderr).toBe(0);
    expect(await readFile(join(dir, "got-t/sub/f.txt"), "utf8")).toBe("f");
  });

  it("ends a get to stdout quietly with 0 when its reader goes (| head -c 10)", async () => {
    await cli("create", "cli-piped");
    await vol("cli-piped").writeFile("big.bin", randomBytes(4 * 1024 * 1024));
    const child = spawn(process.execPath, [CLI, "volume", "get", "cli-piped", "/big.bin", "-", "--gateway", gw.url], {
      env: { ...process.env, NO_COLOR: "1" },
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const ended = childEnded(child);
    await new Promise((resolve) => child.stdout.once("data", resolve));
    child.stdout.destroy();
    expect(await ended).toBe(0); // before: "error: write EPIPE", exit 2
    expect(stderr).toBe("");
  });

  it("gets files back with their modes (a private file stays private, a script runnable), and lists a name's line break as \\n", async () => {
    await cli("create", "cli-modes");
    await mkdir(join(dir, "modes"), { recursive: true });
    await writeFile(join(dir, "modes/secret.txt"), "s");
    await writeFile(join(dir, "modes/run.sh"), "#!/bin/sh\n");
    await chmod(join(dir, "modes/secret.txt"), 0o600);
    await chmod(join(dir, "modes/run.sh"), 0o755);
    expect((await cli("put", "cli-modes", join(dir, "modes"), "/m")).code).toBe(0);
    await vol("cli-modes").writeFile("m/two\nlines.txt", "x");
    const got = await cli("get", "cli-modes", "/m", join(dir, "got-modes"));
    expect(got.code, got.stderr).toBe(0);
    expect((await stat(join(dir, "got-modes/secret.txt"))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, "got-modes/run.sh"))).mode & 0o777).toBe(0o755);
    const ls = await cli("ls", "cli-modes", "/m");
    expect(ls.stdout).toContain("m/two\\x0alines.txt");
    expect(ls.stdout.trim().split("\n")).toHaveLength(3);
  });

  it("puts a directory of many small files, each back whole", async () => {
    await cli("create", "cli-many");
    await mkdir(join(dir, "many"), { recursive: true });
    await Promise.all(Array.from({ length: 200 }, (_, i) => writeFile(join(dir, `many/f${i}.txt`), `file ${i}`)));
    const put = await cli("put", "cli-many", join(dir, "many"), "/many");
    expect(put.code, put.stderr).toBe(0);
    const listed = (JSON.parse((await cli("ls", "cli-many", "/many", "--json")).stdout) as { path: string; size: number }[]).filter((e) =>
      e.path.endsWith(".txt"),
    );
    expect(listed).toHaveLength(200);
    for (const i of [0, 57, 199]) expect(await (await vol("cli-many").readFile(`many/f${i}.txt`)).text()).toBe(`file ${i}`);
  });
});
