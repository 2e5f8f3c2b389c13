/**
 * The dashboard once an app no longer has a function that was called: its pages still answer, the function's time
 * counted but not priced. Real workerd, one state folder for two versions of the app; pages read over HTTP.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { buildApps } from "../sdk/cli/local-stack.js";
import { startWorkerd } from "../sdk/cli/workerd.js";
import { lookup } from "../sdk/index.js";
import { DASHBOARD } from "../sdk/protocol.js";
import { ADMIN_TOKEN } from "./helpers/tokens.js";

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
let dir: string | undefined;

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function serve(appFile: string, state: string) {
  const { worker } = await buildApps([appFile], join(state, "..", `build-${appFile.length}`));
  return startWorkerd({ port: 0, worker, persistDir: state, bindings: { TANDEM_ADMIN_TOKEN: ADMIN_TOKEN } });
}

it("answers the usage and app pages once a function that was called is gone, its time counted, not priced", { timeout: 90_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), "tandem-removed-"));
  const state = join(dir, "state");
  const first = await serve(fixture("renamed-app-v1.ts"), state);
  const url = first.url.href.replace(/\/$/, "");
  expect(await lookup<[string], string>("renamed", "greet", { gateway: url, token: ADMIN_TOKEN }).remote("Ada")).toBe("hello Ada");
  await first.settled(2_000); // the call's record and its minute's counts are written after its answer
  await first.dispose();
  const next = await serve(fixture("renamed-app-v2.ts"), state);
  try {
    const page = async (path: string) => {
      const res = await fetch(`${next.url.href.replace(/\/$/, "")}${DASHBOARD.base}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      return { status: res.status, body: await res.text() };
    };
    // Before: a 404, `app "renamed" has no function "greet" (functions: square)`.
    const usage = await page("/usage");
    expect(usage.status).toBe(200);
    expect(usage.body).toContain("no longer served (not priced)");
    expect((await page("/apps/renamed")).status).toBe(200);
  } finally {
    await next.dispose();
  }
});
