/**
 * examples/agent through `tandem serve`, in real headless Chromium: the page
 * sends a message over its WebSocket, the edge agent calls the plane's
 * generator (real Docker), and the page shows the tokens as they stream in;
 * after a reload the conversation is still there (the same session).
 */
import { build } from "esbuild";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startServe, type Served } from "./helpers/cli.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
let served: Served;
let browser: Browser;
let dir: string;

beforeAll(async () => {
  // Its own folder (its own .tandem state and local plane): other test files serve from the repository at the same time.
  dir = await mkdtemp(join(tmpdir(), "tandem-agent-example-"));
  served = await startServe([join(ROOT, "examples/agent/app.ts")], dir);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
afterAll(async () => {
  await browser?.close();
  await served?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("examples/agent in a browser", () => {
  it("lists the websocket when served", async () => {
    await served.waitFor(/websocket\s+chat\s+ws:\/\/127\.0\.0\.1:\d+\/agent\/chat/);
  });

  it("streams the plane's tokens into the page one by one, and keeps the conversation across a reload", async () => {
    const page = await browser.newPage();
    await page.goto(`${served.url}/agent/ui`);
    await page.waitForSelector('#status[data-state="idle"]');
    await page.fill("#text", "hello from the browser");
    // Record the reply's text each time it changes, until the agent says it is done.
    await page.evaluate(() => {
      const seen: string[] = ((window as unknown as { seen: string[] }).seen = []);
      new MutationObserver(() => {
        const last = document.querySelector("#log p.assistant:last-child");
        if (last && seen[seen.length - 1] !== last.textContent) seen.push(last.textContent ?? "");
      }).observe(document.getElementById("log")!, { subtree: true, childList: true, characterData: true });
    });
    await page.click("button");
    await page.waitForSelector('#status[data-state="streaming"]', { timeout: 30_000 });
    await page.waitForSelector('#status[data-state="idle"]', { timeout: 30_000 });
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    const reply = 'You said "hello from the browser". That is message 1 of our conversation, and 4 words long.';
    expect(seen[seen.length - 1]).toBe(reply);
    // Token by token: many partial texts, each a prefix of the next.
    expect(seen.length).toBeGreaterThan(10);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.startsWith(seen[i - 1]!)).toBe(true);

    await page.reload();
    await page.waitForSelector('#status[data-state="idle"]');
    const texts = await page.$$eval("#log p", (ps) => ps.map((p) => `${p.className}: ${p.textContent}`));
    expect(texts).toEqual(["user: hello from the browser", `assistant: ${reply}`]);
    await page.close();
  });

  it("runs the SDK's connect() in the browser: tokens arrive, and the session resumes", async () => {
    // The SDK's client, bundled for the browser as an app's bundler would.
    const bundled = await build({
      stdin: {
        contents: `import { connect } from "./sdk/index.ts"; window.tandem = { connect };`,
        resolveDir: new URL("..", import.meta.url).pathname,
        loader: "ts",
      },
      bundle: true,
      write: false,
      format: "iife",
      platform: "browser",
      logLevel: "silent",
    });
    const page = await browser.newPage();
    await page.goto(`${served.url}/agent/ui`);
    await page.addScriptTag({ content: bundled.outputFiles[0]!.text });
    const result = await page.evaluate(async (gateway) => {
      const { connect } = (window as unknown as { tandem: typeof import("../sdk/index.js") }).tandem;
      const frames: string[] = [];
      // No gateway named: the page's own origin, which served it (before: 127.0.0.1:8787, where nothing listened).
      const chat = connect("agent", "chat");
      chat.addEventListener("message", (e) => frames.push((e as unknown as { data: string }).data));
      chat.send("from the sdk");
      while (!frames.some((f) => JSON.parse(f).type === "done")) await new Promise((r) => setTimeout(r, 20));
      chat.close();
      const again = connect("agent", "chat", { gateway, sessionId: chat.sessionId });
      const hello = await new Promise<string>((resolve) =>
        again.addEventListener("message", (e) => resolve((e as unknown as { data: string }).data), { once: true }),
      );
      again.close();
      return { frames: frames.map((f) => JSON.parse(f)), hello: JSON.parse(hello) };
    }, served.url);
    const tokens = result.frames.filter((f) => f.type === "token");
    expect(tokens.length).toBeGreaterThan(10);
    expect(result.frames.at(-1)).toEqual({ type: "done", text: tokens.map((t) => t.token).join("") });
    expect(result.hello).toMatchObject({
      type: "hello",
      resumed: true,
      history: [
        { role: "user", text: "from the sdk" },
        { role: "assistant", text: result.frames.at(-1).text },
      ],
    });
    await page.close();
  });
});
