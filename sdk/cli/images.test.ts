/** An image's local files read into its build spec, and the most it can carry. */
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Image } from "../image.js";
import { MAX_LOCAL_BYTES, resolveImage } from "./images.js";

const dir = mkdtempSync(join(tmpdir(), "tandem-images-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("an image's local files", () => {
  it("travel in its spec, readable by the function (which runs as nobody), and are named for serve to watch", () => {
    const file = join(dir, "config.json");
    writeFileSync(file, '{"model":"small"}', { mode: 0o600 });
    const script = join(dir, "run.sh");
    writeFileSync(script, "echo hi", { mode: 0o700 });
    const { spec, localPaths } = resolveImage(Image.node().addLocalFile(file, "/srv/config.json").addLocalFile(script, "/srv/run.sh"), "app.f");
    // Before: 0600, which the function could not read (EACCES).
    expect(spec.steps.slice(-2)).toEqual([
      { kind: "files", dst: "/srv", files: [{ path: "config.json", content: Buffer.from('{"model":"small"}').toString("base64"), mode: 0o644 }] },
      { kind: "files", dst: "/srv", files: [{ path: "run.sh", content: Buffer.from("echo hi").toString("base64"), mode: 0o755 }] },
    ]);
    expect(localPaths).toEqual([file, script]);
  });

  it("are refused when the spec could not carry them, before anything is sent, pointing to a volume", () => {
    // Before: 256 MiB was the stated limit, but a spec over 64 MiB (48 MiB of files, in base64) failed as the gateway's 413.
    expect(MAX_LOCAL_BYTES).toBe(47 * 1024 * 1024);
    const weights = join(dir, "weights.bin");
    writeFileSync(weights, "");
    truncateSync(weights, 60 * 1024 * 1024);
    expect(() => resolveImage(Image.node().addLocalFile(weights, "/models/weights.bin"), "app.f")).toThrow(
      "app.f: the image's local files are over 47 MiB, more than an image carries; put large files such as model weights in a Volume and mount it (docs/volumes.md)",
    );
  });
});
