/**
 * The bare baseline of the edge benchmarks: a Worker bundled with esbuild and
 * run by miniflare on the same workerd as the gateway, with the same
 * compatibility settings, taking requests on its own socket as the gateway
 * does (see sdk/cli/workerd.ts), not through miniflare's entry Worker.
 */
import { build } from "esbuild";
import type * as MiniflareModule from "miniflare";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { COMPATIBILITY_DATE, COMPATIBILITY_FLAGS } from "../sdk/cli/workerd.js";

// Loaded as sdk/cli/workerd.ts loads it (required: an ES import of CommonJS miniflare takes longer), so that
// bench/cli-run compares start-ups on equal terms.
const { Miniflare } = createRequire(import.meta.url)("miniflare") as typeof MiniflareModule;

export async function startBareWorker(
  entry: string,
  outDir: string,
  extra: { durableObjects?: Record<string, { className: string; useSQLite?: boolean }>; bindings?: Record<string, string> } = {},
): Promise<{ url: string; dispose(): Promise<void> }> {
  const out = join(outDir, "worker.mjs");
  await build({
    entryPoints: [entry],
    outfile: out,
    bundle: true,
    format: "esm",
    platform: "neutral",
    mainFields: ["module", "main"],
    external: ["cloudflare:*"],
    logLevel: "silent",
  });
  const bare = new Miniflare({
    modules: true,
    scriptPath: out,
    modulesRoot: dirname(out),
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: COMPATIBILITY_FLAGS,
    ...extra,
    unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
    host: "127.0.0.1",
    port: 0,
    cf: false,
    // Its own requests go straight out, as the gateway's do (sdk/cli/workerd.ts): not through a Worker miniflare adds.
    stripCfConnectingIp: false,
  });
  await bare.ready;
  return { url: (await bare.unsafeGetDirectURL()).href.replace(/\/$/, ""), dispose: () => bare.dispose() };
}
