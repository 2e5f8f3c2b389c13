/**
 * The tier rules in eslint.config.js, through ESLint's Node API: an import that breaks one fails
 * the lint with the rule's reason, and the imports each folder is allowed pass. The files linted
 * here exist only as text; nothing starts workerd or Docker.
 */
import { fileURLToPath } from "node:url";
import { ESLint } from "eslint";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const eslint = new ESLint({ cwd: ROOT });

/** The messages ESLint gives `filePath` (relative to the root) for a file that imports `from`. */
async function lintImport(filePath: string, from: string): Promise<{ ruleId: string | null; message: string }[]> {
  const code = `import { x } from "${from}";\nexport const y = x;\n`;
  const [result] = await eslint.lintText(code, { filePath, warnIgnored: true });
  return result!.messages.map(({ ruleId, message }) => ({ ruleId, message }));
}

const refused = (reason: string) => [{ ruleId: "no-restricted-imports", message: expect.stringContaining(reason) }];

describe("an import across a tier fails the lint", () => {
  it("sdk/ importing gateway/", async () => {
    expect(await lintImport("sdk/example.ts", "../gateway/api.js")).toEqual(refused("gateway/ runs only in workerd"));
  });

  it("sdk/ importing sdk/cli/", async () => {
    expect(await lintImport("sdk/example.ts", "./cli/serve.js")).toEqual(refused("the rest of sdk/ never imports it"));
  });

  it("sdk/ importing gpu-plane/", async () => {
    expect(await lintImport("sdk/example.ts", "../gpu-plane/plane.js")).toEqual(refused("only sdk/cli/ (the composition root) imports it"));
  });

  it("sdk/ importing a node:* module", async () => {
    expect(await lintImport("sdk/example.ts", "node:fs")).toEqual(refused("no node:* modules"));
  });

  it("gateway/ importing gpu-plane/", async () => {
    expect(await lintImport("gateway/example.ts", "../gpu-plane/scheduler.js")).toEqual(refused("only sdk/cli/ (the composition root) imports it"));
  });

  it("gateway/ importing sdk/cli/", async () => {
    expect(await lintImport("gateway/example.ts", "../sdk/cli/workerd.js")).toEqual(refused("nothing but itself imports it"));
  });

  it("gateway/ importing a node:* module other than node:async_hooks", async () => {
    expect(await lintImport("gateway/example.ts", "node:fs")).toEqual(refused("of nodejs_compat only node:async_hooks"));
  });

  it("gpu-plane/ importing gateway/", async () => {
    expect(await lintImport("gpu-plane/example.ts", "../gateway/api.js")).toEqual(refused("gateway/ runs only in workerd"));
    expect(await lintImport("gpu-plane/runner/example.ts", "../../gateway/api.js")).toEqual(refused("gateway/ runs only in workerd"));
  });

  it("wasm/ importing a tier, and its runtime-neutral host importing a node:* module", async () => {
    expect(await lintImport("wasm/example.ts", "../gpu-plane/plane.js")).toEqual(refused("only sdk/cli/ (the composition root) imports it"));
    expect(await lintImport("wasm/example.ts", "node:fs")).toEqual(refused("no node:* modules"));
    expect(await lintImport("wasm/wasi/example.ts", "node:fs")).toEqual(refused("no node:* modules"));
  });

  it("dockerode imported outside gpu-plane/", async () => {
    for (const file of ["sdk/example.ts", "sdk/cli/example.ts", "gateway/example.ts", "wasm/example.ts", "test/example.ts"]) {
      expect(await lintImport(file, "dockerode")).toEqual(refused("Only gpu-plane/ talks to Docker"));
    }
  });
});

describe("the imports each folder may make pass the lint", () => {
  it.each([
    ["sdk/example.ts", "./protocol.js"],
    ["sdk/example.test.ts", "node:fs"],
    ["sdk/cli/example.ts", "../../gpu-plane/plane.js"],
    ["sdk/cli/example.ts", "../../wasm/prepare.js"],
    ["sdk/cli/example.ts", "node:child_process"],
    ["gateway/example.ts", "../sdk/protocol.js"],
    ["gateway/example.ts", "../wasm/function.js"],
    ["gateway/example.ts", "node:async_hooks"],
    ["gpu-plane/example.ts", "../sdk/protocol.js"],
    ["gpu-plane/drivers/example.ts", "dockerode"],
    ["wasm/prepare.ts", "node:fs"],
    ["test/example.ts", "../gateway/shard.js"],
  ])("%s importing %s", async (file, from) => {
    expect(await lintImport(file, from)).toEqual([]);
  });
});

describe("the CLI never calls miniflare's binding proxies", () => {
  it("fails the lint in sdk/cli/, and not in tests", async () => {
    const code = 'export async function put(mf: { getR2Bucket(name: string): Promise<unknown> }) {\n  return mf.getR2Bucket("BLOBS");\n}\n';
    const lint = async (filePath: string) => (await eslint.lintText(code, { filePath, warnIgnored: true }))[0]!.messages.map((m) => m.ruleId);
    expect(await lint("sdk/cli/example.ts")).toEqual(["no-restricted-properties"]);
    expect(await lint("test/example.test.ts")).toEqual([]);
  });
});
