/**
 * The dashboard at /_tandem/ in real headless Chromium against the gateway in
 * real workerd: a login link works once and leaves an HttpOnly, SameSite=Strict
 * cookie; a call made by the test appears on the calls page within 2 s without
 * a reload, and its page shows its log lines and its stack mapped to this
 * test's app file; the usage charts (cost by function, app and GPU type) draw
 * their points, their dollar axes uncut; a function's p50/p95/p99 match its
 * calls' times; an agent session shows idle within 2 s of its socket closing;
 * nothing overflows a
 * 390 px wide screen; a token restricted to one app sees only that app; a page
 * with 10,000 calls recorded loads in under a second. Screenshots are kept
 * under test-results/dashboard/.
 */
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import {
  DASHBOARD,
  GATEWAY_AUDIENCE,
  HEADERS,
  PROTOCOL_VERSION,
  ROUTES,
  type DashboardLoginAnswer,
  type PlaneHeartbeat,
  type PlaneLogBatch,
} from "../sdk/protocol.js";
import { LOG_LIMITS } from "../sdk/defaults.js";
import { signRequest } from "../sdk/signing.js";
import { runCli } from "./helpers/cli.js";
import { ADMIN_TOKEN, authed, eventually, startTestGateway, type TestGateway } from "./helpers/gateway.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const APP_FILE = fileURLToPath(new URL("./fixtures/dashboard-app.ts", import.meta.url));
const SHOTS = fileURLToPath(new URL("../test-results/dashboard/", import.meta.url));

const PLANE_SECRET = "dashboard-test-plane-secret";

let gateway: TestGateway;
let browser: Browser;
let admin: BrowserContext;

beforeAll(async () => {
  await mkdir(SHOTS, { recursive: true });
  const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
  gateway = await startTestGateway([APP_FILE, fixture("edge-app.ts"), fixture("dashboard-class-app.ts")], {
    bindings: { TANDEM_PLANE_SECRET: PLANE_SECRET },
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  admin = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await admin.newPage();
  await page.goto(await loginLink(ADMIN_TOKEN));
  await page.close();
});
afterAll(async () => {
  await browser?.close();
  await gateway?.dispose();
});

async function loginLink(token: string): Promise<string> {
  const res = await fetch(`${gateway.url}/v1/dashboard/login-code`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return ((await res.json()) as DashboardLoginAnswer).url;
}

/** A new token made as `made` asks, pasted into the login form of a browser context of its own, which lands on the apps page. */
async function pastedLogin(made: { name: string; scope: string; apps: string[] }): Promise<{ token: string; context: BrowserContext; page: Page }> {
  const created = await fetch(`${gateway.url}/v1/tokens`, authed({ method: "POST", body: JSON.stringify(made) }));
  const { token } = (await created.json()) as { token: string };
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${gateway.url}${DASHBOARD.login}`);
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForURL(`${gateway.url}${DASHBOARD.base}/`);
  return { token, context, page };
}

async function call(fn: string, args: unknown[]): Promise<string> {
  const res = await fetch(`${gateway.url}/v1/apps/shop/functions/${fn}/call`, authed({ method: "POST", body: JSON.stringify({ args }) }));
  return res.headers.get(HEADERS.callId)!;
}

async function shot(page: Page, name: string, fullPage = true): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
}

/** Another site, on loopback (so Chromium's local network checks let its requests through), serving one page. */
async function otherSite(markup: string): Promise<{ url: string; close: () => void }> {
  const server = http.createServer((_req, res) => res.writeHead(200, { "content-type": "text/html" }).end(markup));
  await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
  // localhost, not 127.0.0.1: another site than the gateway's for the browser.
  return { url: `http://localhost:${(server.address() as AddressInfo).port}/`, close: () => server.close() };
}

/** A page script that keeps each text written on a canvas in `window.labels`: uPlot writes its axes' labels there. */
const KEEP_CANVAS_TEXT = `window.labels = [];
  const fillText = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) { labels.push(text); return fillText.call(this, text, ...rest); };`;

/** Sends a plane's heartbeat, signed with the plane secret, as a plane would. */
/**
 * Draws one chart of `data` on `page` with the dashboard's own scripts, and answers each text it drew with its left
 * edge as drawn (uPlot draws the y-axis's labels right-aligned, on the canvas's own pixels).
 */
async function drawnLabels(page: Page, data: unknown): Promise<{ text: string; left: number }[]> {
  await page.setContent(`<!doctype html><link rel="stylesheet" href="${gateway.url}${DASHBOARD.base}/assets/uplot.css"><body style="margin:0">
      <div data-chart><script type="application/json">${JSON.stringify(data)}</script></div>
      <script>window.edges = [];
        const fillText = CanvasRenderingContext2D.prototype.fillText;
        CanvasRenderingContext2D.prototype.fillText = function (text, x, ...rest) {
          const w = this.measureText(text).width;
          edges.push({ text, left: this.textAlign === "right" || this.textAlign === "end" ? x - w : this.textAlign === "center" ? x - w / 2 : x });
          return fillText.call(this, text, x, ...rest);
        };</script>
      <script src="${gateway.url}${DASHBOARD.base}/assets/uplot.js"></script><script src="${gateway.url}${DASHBOARD.base}/assets/dashboard.js"></script></body>`);
  await page.waitForSelector("[data-chart][data-points] .u-over");
  return page.evaluate(() => (window as unknown as { edges: { text: string; left: number }[] }).edges);
}

async function beat(
  planeId: string,
  warm: PlaneHeartbeat["warm"],
  cpu: PlaneHeartbeat["cpu"] = { total: 1, free: 1 },
  url = "http://127.0.0.1:9",
): Promise<void> {
  const body = JSON.stringify({
    planeId,
    url,
    region: "test",
    runtime: "docker",
    simulated: true,
    gpus: {},
    cpu,
    memoryMiB: { total: 1024, free: 1024 },
    warm,
    protocol: PROTOCOL_VERSION,
  } satisfies PlaneHeartbeat);
  const headers = await signRequest(PLANE_SECRET, { audience: GATEWAY_AUDIENCE, method: "POST", path: ROUTES.planeHeartbeat, body });
  const res = await fetch(`${gateway.url}${ROUTES.planeHeartbeat}`, { method: "POST", body, headers });
  expect(res.status).toBe(200);
  await res.text();
}

describe("the dashboard", () => {
  it("answers 401 with the login page without credentials, and to a token it does not know", async () => {
    for (const path of ["/", "/apps/shop", "/apps/shop/events", "/usage"]) {
      const res = await fetch(`${gateway.url}${DASHBOARD.base}${path}`);
      expect(res.status, path).toBe(401);
      expect(await res.text()).toContain('name="token"');
    }
    const res = await fetch(`${gateway.url}${DASHBOARD.base}/`, {
      headers: { authorization: "Bearer tk-unknown000000000.ts-unknown0000000000000000000000000" },
    });
    expect(res.status).toBe(401);
  });

  it("answers a login post that is no form 400, saying what the form is sent as (before: 401, paste a token)", async () => {
    const multipart = new FormData();
    multipart.set("token", "not-a-token");
    for (const body of [multipart, JSON.stringify({ token: ADMIN_TOKEN })]) {
      const res = await fetch(`${gateway.url}${DASHBOARD.login}`, { method: "POST", body, redirect: "manual" });
      const text = await res.text();
      expect(res.status, text).toBe(400);
      expect(text).toMatch(/The login form is sent as application\/x-www-form-urlencoded, as a browser sends it, not (multipart\/form-data|text\/plain)\./);
      expect(res.headers.get("set-cookie")).toBeNull();
    }
  });

  it("answers a path that is no page 404, and a page asked with a method it does not take 405, each as a page", async () => {
    const missing = await fetch(`${gateway.url}${DASHBOARD.base}/nope`, authed());
    expect(missing.status).toBe(404);
    expect(await missing.text()).toContain("the dashboard has no page /_tandem/nope");
    for (const method of ["DELETE", "PUT", "POST"]) {
      const res = await fetch(`${gateway.url}${DASHBOARD.base}/apps/shop`, authed({ method }));
      expect(res.status, method).toBe(405);
      expect(await res.text(), method).toContain(`the dashboard&#39;s pages take GET, not ${method}`);
    }
  });

  it("shows a class's page by its name alone: its methods, each linked to its own page (before: a 404)", async () => {
    const quoted = await fetch(`${gateway.url}/v1/apps/pricing/functions/Pricer.quote/call`, authed({ method: "POST", body: '{"args":[{},5]}' }));
    expect(quoted.status).toBe(200);
    await quoted.text();
    const page = await admin.newPage();
    const answer = await page.goto(`${gateway.url}${DASHBOARD.base}/apps/pricing/functions/Pricer`);
    expect(answer!.status()).toBe(200);
    expect(await page.textContent("h1")).toBe("Class pricing.Pricer");
    expect(await page.$$eval("tbody td.name a", (links) => links.map((a) => [a.textContent, a.getAttribute("href")]))).toEqual([
      ["Pricer.quote", `${DASHBOARD.base}/apps/pricing/functions/Pricer.quote`],
      ["Pricer.refund", `${DASHBOARD.base}/apps/pricing/functions/Pricer.refund`],
    ]);
    await expect.poll(async () => (await page.reload(), page.textContent("tbody tr:first-child td:nth-child(3)")), { timeout: 5_000 }).toBe("1");
    // A name that is neither a function nor a class is still the 404 it was.
    expect((await page.goto(`${gateway.url}${DASHBOARD.base}/apps/pricing/functions/Pric`))!.status()).toBe(404);
    await page.close();
  });

  it("answers a container id no container could have 400, on its page and its live stream, as the logs API does", async () => {
    const long = "c".repeat(300);
    for (const path of [`/apps/shop/containers/${long}`, `/apps/shop/events?container=${long}`]) {
      const res = await fetch(`${gateway.url}${DASHBOARD.base}${path}`, authed());
      expect(res.status, path.slice(0, 30)).toBe(400);
      expect(await res.text(), path.slice(0, 30)).toContain("must be a container id");
    }
    const api = await fetch(`${gateway.url}/v1/apps/shop/logs?container=${long}`, authed());
    expect(api.status).toBe(400);
    await api.text();
  });

  it("answers a container page 404 for a container that printed no line in the app, and shows one that did", async () => {
    const missing = await fetch(`${gateway.url}${DASHBOARD.base}/apps/shop/containers/ctr-nope0000`, authed());
    expect(missing.status).toBe(404);
    expect(await missing.text()).toContain("app &quot;shop&quot; has no line from container ctr-nope0000 in the time its lines are kept");
    const body = JSON.stringify({
      planeId: "pl-dashctr00001",
      lines: [
        {
          time: Date.now(),
          app: "shop",
          function: "slow",
          callId: null,
          containerId: "ctr-da5b0a4d",
          tier: "plane",
          region: "test",
          source: "stdout",
          text: "warming up",
        },
      ],
    } satisfies PlaneLogBatch);
    const headers = await signRequest(PLANE_SECRET, { audience: GATEWAY_AUDIENCE, method: "POST", path: ROUTES.planeLogs, body });
    const sent = await fetch(`${gateway.url}${ROUTES.planeLogs}`, { method: "POST", body, headers });
    expect(sent.status).toBe(204);
    const shown = await fetch(`${gateway.url}${DASHBOARD.base}/apps/shop/containers/ctr-da5b0a4d`, authed());
    expect(shown.status).toBe(200);
    expect(await shown.text()).toContain("warming up");
  });

  it("answers a live stream's since that is not a time 400, saying what it takes", async () => {
    for (const since of ["abc", "-5", "1.5", "9".repeat(20)]) {
      const res = await fetch(`${gateway.url}${DASHBOARD.base}/apps/shop/events?since=${since}`, authed());
      expect(res.status, since).toBe(400);
      const text = await res.text();
      expect(text, since).toContain("is not a time: give milliseconds since the epoch");
      expect(text, since).toContain(since);
    }
  });

  it("answers a pasted text that is not a token with what a token looks like, not with a header it never got", async () => {
    for (const [token, message] of [
      ["bogus", "that is not a Tandem API token: they look like tk-"],
      ["  ", "paste an API token: they look like tk-"],
    ] as const) {
      const res = await fetch(`${gateway.url}${DASHBOARD.login}`, { method: "POST", body: new URLSearchParams({ token }) });
      expect(res.status, token).toBe(401);
      const page = await res.text();
      expect(page, token).toContain(message);
      expect(page, token).not.toContain("Authorization header");
    }
  });

  it("logs a browser in once with a login link: an HttpOnly, SameSite=Strict cookie, the code gone from the address", async () => {
    const link = await loginLink(ADMIN_TOKEN);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(link);
    expect(new URL(page.url()).pathname).toBe(`${DASHBOARD.base}/`);
    expect(await page.textContent("h1")).toBe("Apps");
    const cookie = (await context.cookies()).find((c) => c.name === DASHBOARD.cookie)!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Strict", path: DASHBOARD.base });
    // Spent: the same link in another browser is refused.
    const other = await browser.newContext();
    const again = await other.newPage();
    const answer = await again.goto(link);
    expect(answer!.status()).toBe(401);
    expect(await again.textContent(".problem")).toContain("used already or has expired");
    // Logging out ends the session.
    await page.click(".who button");
    expect((await page.goto(`${gateway.url}${DASHBOARD.base}/`))!.status()).toBe(401);
    await Promise.all([context.close(), other.close()]);
  });

  it("`tandem dashboard` prints a login link that opens the dashboard, and succeeds where no browser can be started", async () => {
    // No display and no opener: the link is printed, nothing fails.
    const run = await runCli(["dashboard", "--gateway", gateway.url], { env: { DISPLAY: "", WAYLAND_DISPLAY: "", PATH: "/nonexistent" } });
    expect(run.code, run.stderr).toBe(0);
    const link = run.stdout.trim();
    expect(link).toMatch(new RegExp(`^${gateway.url}${DASHBOARD.login}\\?code=lc-[0-9a-f]{32}$`));
    expect(run.stderr).toContain("it works once");
    const context = await browser.newContext();
    const page = await context.newPage();
    expect((await page.goto(link))!.status()).toBe(200);
    expect(await page.textContent("h1")).toBe("Apps");
    await context.close();
    const help = await runCli(["dashboard", "--help"]);
    expect(help.stdout).toContain("--no-open");
    expect(help.stdout).toContain("works once");
  });

  it("shows a new call on the calls page within 2 s without a reload; its page has its log lines and its mapped stack", async () => {
    const page = await admin.newPage();
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/calls`);
    await page.waitForSelector('body[data-live-state="open"]');
    const started = Date.now();
    const id = await call("checkout", ["bad-42"]);
    await page.waitForSelector(`tr[data-call-id="${id}"] .badge.failed`, { timeout: 2000 });
    const seenMs = Date.now() - started;
    console.log(`dashboard: a failed call on the calls page ${seenMs} ms after the test made it`);
    expect(seenMs).toBeLessThan(2000);
    await shot(page, "calls");

    await page.click(`tr[data-call-id="${id}"] a`);
    await page.waitForSelector("pre.stack");
    expect(await page.textContent(".problem")).toContain("PaymentDeclined: card declined for order bad-42");
    const throwLine = (await readFile(APP_FILE, "utf8")).split("\n").findIndex((l) => l.includes("throw new PaymentDeclined")) + 1;
    expect(await page.textContent("pre.stack")).toMatch(new RegExp(`dashboard-app\\.ts:${throwLine}:\\d+`));
    await page.waitForSelector("#logs li", { timeout: 5000 }); // the edge's lines are written a moment after the answer
    expect(await page.textContent("#logs")).toContain("checking out order bad-42");
    await shot(page, "call");
    await page.close();
  });

  it("shows a long call made without an Idempotency-Key on the calls page within 2 s while it runs, then its end and timings, without a reload", async () => {
    const page = await admin.newPage();
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/edge/calls`);
    await page.waitForSelector('body[data-live-state="open"]');
    await page.evaluate(() => Object.assign(window, { sameDocument: true })); // gone if the page were loaded again
    const started = Date.now();
    // As curl sends it: no key, so nothing records the call before it has run a while (before: not until it ended).
    const answer = fetch(`${gateway.url}/v1/apps/edge/functions/napping/call`, authed({ method: "POST", body: JSON.stringify({ args: [3_000] }) }));
    const row = await page.waitForSelector('tr.status-running:has(td:text-is("napping"))', { timeout: 2000 });
    const seenMs = Date.now() - started;
    console.log(`dashboard: a running call made without a key on the calls page ${seenMs} ms after the test made it`);
    expect(seenMs).toBeLessThan(2000);
    const id = (await row.getAttribute("data-call-id"))!;
    expect(await row.$eval(".badge", (badge) => badge.textContent)).toBe("running");

    const res = await answer;
    expect(res.headers.get(HEADERS.callId)).toBe(id);
    await page.waitForSelector(`tr[data-call-id="${id}"] .badge.succeeded`, { timeout: 5000 });
    // Its times, as its end row wrote them into the record its running row began: it ran its 3 s.
    const ran = await page.$eval(`tr[data-call-id="${id}"] td:nth-child(7)`, (cell) => cell.textContent!);
    expect(Number(/^(\d+\.\d\d) s$/.exec(ran)?.[1])).toBeGreaterThanOrEqual(3); // as the CLI writes it: 3.01 s
    expect(await page.$$(`tr[data-call-id="${id}"]`)).toHaveLength(1);
    expect(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(true);
    await page.close();
  });

  it("updates a call's own page when the call ends, without a reload: its status, its times and its error", async () => {
    const res = await fetch(`${gateway.url}/v1/apps/shop/functions/slowDecline/spawn`, authed({ method: "POST", body: JSON.stringify({ args: [2500] }) }));
    const { callId } = (await res.json()) as { callId: string };
    const page = await admin.newPage();
    await page.goto(`${gateway.url}${DASHBOARD.base}/calls/${callId}`);
    await page.waitForSelector('body[data-live-state="open"]');
    expect(await page.textContent("[data-call-status]")).toMatch(/^(pending|running)$/);
    expect(await page.$(".problem")).toBeNull();
    await page.evaluate(() => Object.assign(window, { sameDocument: true })); // gone if the page were loaded again
    await page.waitForSelector("[data-call-status].badge.failed", { timeout: 10_000 });
    expect(await page.textContent(".problem")).toContain("PaymentDeclined: declined after 2500 ms");
    expect(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(true);
    await page.close();
  });

  it("shows a mark that reorders text, in a log line and an error, as its escape, so the text reads as it was written", async () => {
    const id = await call("checkout", ["bad-invoice\u202Efdp.exe"]);
    const page = await admin.newPage();
    await page.goto(`${gateway.url}${DASHBOARD.base}/calls/${id}`);
    await page.waitForSelector("#logs li", { timeout: 5000 });
    for (const where of ["#logs", ".problem", "pre.stack"]) {
      const text = (await page.textContent(where))!;
      expect(text).toContain("bad-invoice\\u202efdp.exe");
      expect(text).not.toContain("\u202E");
    }
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/calls`);
    expect(await page.textContent(`tr[data-call-id="${id}"] .error`)).toContain("order bad-invoice\\u202efdp.exe");
    await page.close();
  });

  it("lists a call whose error is long and unbroken by its first line, cut, without widening the calls table", async () => {
    const id = await call("checkout", [`bad-${"y".repeat(20_000)}\nsecond line`]);
    const page = await admin.newPage();
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/calls`);
    const error = (await page.textContent(`tr[data-call-id="${id}"] .error`))!;
    expect(error).toMatch(/^function_failed: PaymentDeclined: card declined for order bad-y+…$/);
    expect(error.length).toBeLessThan(400);
    const { scroll, width } = await page.$eval(".table", (box) => ({ scroll: box.scrollWidth, width: box.clientWidth }));
    expect(scroll).toBeLessThanOrEqual(width);
    // The call's own page has all of it.
    await page.goto(`${gateway.url}${DASHBOARD.base}/calls/${id}`);
    expect(await page.textContent(".problem")).toContain(`${"y".repeat(20_000)}\nsecond line`);
    await page.close();
  });

  it("shows a scheduled run's end on the schedules page without a reload, with the runs skipped and missed", async () => {
    const page = await admin.newPage();
    await page.goto(`${gateway.url}${DASHBOARD.base}/schedules`);
    await page.waitForFunction(() => document.body.dataset.liveState === "open");
    const cells = async () =>
      page.$$eval("#schedules tbody tr", (rows) => rows.map((row) => Array.from(row.querySelectorAll("td"), (td) => td.textContent?.trim())));
    const before = (await cells()).find((row) => row[0] === "shop.nightly")!;
    expect(before[4]).toBe("0 / 0");
    const fired = await fetch(`${gateway.url}/v1/apps/shop/functions/nightly/trigger`, authed({ method: "POST" }));
    expect(fired.status).toBe(202);
    const { callId } = (await fired.json()) as { callId: string };
    // Before: the page showed what it read when it opened, however many runs ended.
    await page.waitForSelector(`#schedules a[href$="/calls/${callId}"]`, { timeout: 5_000 });
    expect((await cells()).find((row) => row[0] === "shop.nightly")![3]).toContain("failed");
    await page.close();
  });

  it("shows a scheduled run's error on the schedules page by its first line, cut, with a mark that reorders text as its escape", async () => {
    const fired = await fetch(`${gateway.url}/v1/apps/shop/functions/nightly/trigger`, authed({ method: "POST" }));
    expect(fired.status).toBe(202);
    await fired.text();
    const page = await admin.newPage();
    const lastError = async () => {
      await page.goto(`${gateway.url}${DASHBOARD.base}/schedules`);
      return (await page.textContent("td.error")) ?? "";
    };
    await expect.poll(lastError, { timeout: 5000, interval: 300 }).toContain("invoice\\u202efdp.exe");
    const text = await lastError();
    expect(text).not.toContain("\u202E");
    expect(text).toMatch(/ z+…$/);
    expect(text.length).toBeLessThan(400);
    await page.close();
  });

  it("shows a new call within 2 s on each of several pages open on the same app, which share one poll of the ledger", async () => {
    const pages = await Promise.all([0, 1, 2].map(() => admin.newPage()));
    for (const [i, page] of pages.entries()) {
      await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop${i === 0 ? "" : "/calls"}`);
      await page.waitForSelector('body[data-live-state="open"]');
    }
    const started = Date.now();
    const id = await call("checkout", ["shared-1"]);
    await Promise.all(pages.map((page) => page.waitForSelector(`tr[data-call-id="${id}"] .badge.succeeded`, { timeout: 2000 })));
    expect(Date.now() - started).toBeLessThan(2000);
    await Promise.all(pages.map((page) => page.close()));
  });

  it("tries a live stream the gateway answered 503 (a serve restarting) again, and goes on live, not ended as refused", async () => {
    const page = await admin.newPage();
    let answered503 = 0;
    // The page's stream and the probe after it, answered as `tandem serve` answers while it stops; then let through.
    await page.route(/\/apps\/shop\/events\?/, async (route) => {
      if (answered503 < 2) {
        answered503++;
        await route.fulfill({
          status: 503,
          contentType: "application/json",
          body: '{"error":{"code":"gateway_unreachable","message":"tandem serve is stopping"}}',
        });
      } else await route.continue();
    });
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/calls`);
    await page.waitForSelector('body[data-live-state="open"]', { timeout: 10_000 });
    expect(answered503).toBe(2);
    expect(await page.locator("#live-ended").count()).toBe(0); // the paused note is gone once it flows again
    const id = await call("checkout", ["after-restart-1"]);
    await page.waitForSelector(`tr[data-call-id="${id}"] .badge.succeeded`, { timeout: 2000 });
    await page.close();
  });

  it("adds a call's log lines to the app's live log without a reload", async () => {
    const page = await admin.newPage();
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/logs`);
    await page.waitForSelector('body[data-live-state="open"]');
    await call("checkout", ["live-7"]);
    await page.waitForFunction(() => document.getElementById("logs")!.textContent!.includes("checking out order live-7"), undefined, { timeout: 3000 });
    await page.close();
  });

  it("counts a stream of a function that turns out not to be a generator as its call, not as its error", async () => {
    const res = await fetch(
      `${gateway.url}/v1/apps/edge/functions/square/stream`,
      authed({ method: "POST", body: JSON.stringify({ args: [3] }), headers: { "content-type": "application/json" } }),
    );
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { code: string; details: { callId: string } } };
    expect(error.code).toBe("invalid_request");
    // Known only once it ran: the call is recorded (its lines name it), failed as the caller's mistake.
    await eventually(
      async () => ((await (await fetch(`${gateway.url}/v1/calls/${error.details.callId}`, authed())).json()) as { status: string }).status === "failed",
    );
    const row = /functions\/square">square<\/a><\/td>\s*<td>edge<\/td>\s*<td>(\d+)<\/td>\s*<td>(\d+)<\/td>/;
    await eventually(async () => row.exec(await (await fetch(`${gateway.url}${DASHBOARD.base}/apps/edge`, authed())).text())?.[1] === "1");
    const page = await (await fetch(`${gateway.url}${DASHBOARD.base}/apps/edge`, authed())).text();
    expect(row.exec(page)?.slice(1)).toEqual(["1", "0"]);
  });

  it("filters the app's logs page by its form (function, source, text, since), new lines too, and refuses a bad filter 400", async () => {
    await call("checkout", ["sieve-a1"]);
    await call("checkout", ["sieve-b1"]);
    const page = await admin.newPage();
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/logs`);
    await page.fill('form.filters input[name="search"]', "sieve-a");
    await page.selectOption('form.filters select[name="source"]', "stdout");
    await Promise.all([page.waitForURL(/search=sieve-a/), page.click('form.filters button[type="submit"]')]);
    const texts = () => page.$$eval("#logs li .text", (ts) => ts.map((t) => t.textContent ?? ""));
    expect(await texts()).toEqual(["checking out order sieve-a1"]);
    expect(await page.inputValue('form.filters input[name="search"]')).toBe("sieve-a"); // the form shows what is shown
    await page.waitForSelector('body[data-live-state="open"]');
    await call("checkout", ["sieve-b2"]);
    await call("checkout", ["sieve-a2"]);
    await page.waitForFunction(() => document.getElementById("logs")!.textContent!.includes("sieve-a2"), undefined, { timeout: 3000 });
    expect(await texts()).toEqual(["checking out order sieve-a1", "checking out order sieve-a2"]);
    await shot(page, "logs-filtered", false);
    await page.close();
    const none = await fetch(`${gateway.url}${DASHBOARD.base}/apps/shop/logs?search=no-line-says-this&function=`, authed());
    expect(none.status).toBe(200); // a field left empty is none
    expect(await none.text()).toContain("No lines match these filters yet.");
    for (const [query, says] of [
      ["since=soonish", "since"],
      ["source=stdrr", "must be one of stdout, stderr, system"],
      ["bogus=1", "the logs page takes function, session, source, search, since, limit, not &quot;bogus&quot;"],
      // A field given twice, as the logs API refuses it: it read as the first alone.
      ["source=stdout&source=stderr", "the logs page: field &quot;source&quot; is given 2 times: give it once"],
    ]) {
      const res = await fetch(`${gateway.url}${DASHBOARD.base}/apps/shop/logs?${query}`, authed());
      expect(res.status, query).toBe(400);
      expect(await res.text(), query).toContain(says);
    }
    // The page's live stream takes the same filters, checked the same way, and nothing else.
    for (const [query, says] of [
      ["logs=1&source=stdout&source=stderr", 'field "source" is given 2 times'],
      ["logs=1&source=stdrr", "must be one of stdout, stderr, system"],
      ["bogus=1", 'not "bogus"'],
    ]) {
      const res = await fetch(`${gateway.url}${DASHBOARD.base}/apps/shop/events?${query}`, authed());
      expect(res.status, query).toBe(400);
      expect((await res.text()).replaceAll("&quot;", '"'), query).toContain(says);
    }
    // A function the app does not have: the page says so, with the nearest name, as `tandem logs --function` does.
    const unknown = await fetch(`${gateway.url}${DASHBOARD.base}/apps/shop/logs?function=chekout`, authed());
    expect(unknown.status).toBe(404);
    expect((await unknown.text()).replaceAll("&quot;", '"')).toMatch(
      /App "shop" has no function, class or web label "chekout" \(functions: checkout, .*\), so it has no lines to show; did you mean "checkout"\?/,
    );
  });

  it("opens a live log longer than its box at its newest line, and keeps each new line in sight", async () => {
    // One call's 120 lines fill the box (60% of the window's height) several times over.
    const filler = await call("checkout", [Array.from({ length: 120 }, (_, i) => `filler-${i}`).join("\n")]);
    const stored = await fetch(`${gateway.url}/v1/calls/${filler}/logs`, authed()); // waits for the call's last lines
    expect(await stored.text()).toContain("filler-119");
    const page = await admin.newPage();
    const newestInSight = () =>
      page.$eval("#logs", (box) => {
        const last = box.lastElementChild!.getBoundingClientRect();
        const shown = box.getBoundingClientRect();
        return box.scrollHeight > box.clientHeight && last.bottom <= shown.bottom + 1 && last.top >= shown.top - 1;
      });
    for (const path of ["/apps/shop/logs", `/calls/${filler}`]) {
      await page.goto(`${gateway.url}${DASHBOARD.base}${path}`);
      await page.waitForSelector('body[data-live-state="open"]');
      expect(await newestInSight(), path).toBe(true);
    }
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/logs`);
    await page.waitForSelector('body[data-live-state="open"]');
    await call("checkout", ["in-sight-1"]);
    await page.waitForFunction(() => document.getElementById("logs")!.lastElementChild!.textContent!.includes("in-sight-1"), undefined, { timeout: 3000 });
    expect(await newestInSight()).toBe(true);
    await shot(page, "logs-live", false);
    await page.close();
  });

  it("lets a live log's oldest lines go past its most, so a page left open on a busy app does not grow without end", async () => {
    const page = await admin.newPage();
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/logs`);
    await page.waitForSelector('body[data-live-state="open"]');
    expect(await page.getAttribute("#logs", "data-keep")).toBe(String(LOG_LIMITS.maxLimit));
    // A most of 3, to see it at work without 10,000 lines.
    await page.$eval("#logs", (box) => void ((box as HTMLElement).dataset.keep = "3"));
    await call("checkout", ["keep-1\nkeep-2\nkeep-3\nkeep-4"]);
    await page.waitForFunction(() => document.getElementById("logs")!.lastElementChild?.textContent?.includes("keep-4"), undefined, { timeout: 3000 });
    expect(await page.$$eval("#logs li .text", (texts) => texts.map((t) => t.textContent))).toEqual(["keep-2", "keep-3", "keep-4"]);
    await page.close();
  });

  it("writes a chart's small values (a minute's cost in dollars) as they are, not rounded to 0", async () => {
    const page = await browser.newPage();
    const data = { x: [1_796_400_000, 1_796_400_060, 1_796_400_120], series: [{ label: "shop.checkout", values: [0.00002, 0.00004, 0.00003] }] };
    await page.setContent(`<!doctype html><link rel="stylesheet" href="${gateway.url}${DASHBOARD.base}/assets/uplot.css"><body style="width:600px">
      <div data-chart><script type="application/json">${JSON.stringify(data)}</script></div>
      <script src="${gateway.url}${DASHBOARD.base}/assets/uplot.js"></script><script src="${gateway.url}${DASHBOARD.base}/assets/dashboard.js"></script></body>`);
    await page.waitForSelector("[data-chart][data-points] .u-over");
    const over = (await page.locator(".u-over").boundingBox())!;
    await page.mouse.move(over.x + over.width / 2, over.y + over.height / 2); // the cursor on the middle minute
    expect(await page.locator(".u-legend .u-series").nth(1).locator(".u-value").textContent()).toBe("0.00004");
    await page.close();
  });

  it("draws each of a chart's series its own way past its seven colours (dashed, then dotted), its legend's mark too", async () => {
    const page = await browser.newPage();
    const x = [1_796_400_000, 1_796_400_060, 1_796_400_120];
    const series = Array.from({ length: 16 }, (_, k) => ({ label: `shop.fn${k}`, values: [k, k + 1, k] }));
    await page.setContent(`<!doctype html><link rel="stylesheet" href="${gateway.url}${DASHBOARD.base}/assets/uplot.css"><body style="width:900px">
      <div data-chart><script type="application/json">${JSON.stringify({ x, series })}</script></div>
      <script src="${gateway.url}${DASHBOARD.base}/assets/uplot.js"></script><script src="${gateway.url}${DASHBOARD.base}/assets/dashboard.js"></script></body>`);
    await page.waitForSelector("[data-chart][data-points] .u-over");
    const marks = await page.$$eval(".u-legend .u-series .u-marker", (markers) =>
      markers.slice(1).map((m) => `${getComputedStyle(m).borderTopColor} ${getComputedStyle(m).borderTopStyle}`),
    );
    expect(marks).toHaveLength(16);
    expect(new Set(marks).size).toBe(16);
    expect(marks[7]).toContain("dashed");
    expect(marks[14]).toContain("dotted");
    await page.close();
  });

  it("makes a chart's y-axis as wide as its longest label, so small costs are not cut off on a phone", async () => {
    const page = await browser.newPage({ viewport: { width: 375, height: 700 } });
    const data = { x: [1_796_400_000, 1_796_400_060, 1_796_400_120], series: [{ label: "shop.checkout", values: [0.0000213, 0.0000437, 0.0000371] }] };
    const yLabels = (await drawnLabels(page, data)).filter((e) => /^0\.0000\d+$/.test(e.text));
    expect(yLabels.length).toBeGreaterThan(1);
    for (const label of yLabels) expect(label.left, label.text).toBeGreaterThanOrEqual(0);
    await page.close();
  });

  it("fits a cost axis's labels that change as the chart settles (a flat day, then a spike), each with its dollar sign", async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
    // The usage page's shape: a day in minutes, 12 functions, costs only in the last bucket.
    const x = Array.from({ length: 61 }, (_, i) => 1_796_400_000 + i * 1440);
    const series = Array.from({ length: 12 }, (_, k) => ({ label: `shop.fn${k}`, values: x.map((_, i) => (i === 60 ? (0.00009 * (k + 1)) / 12 : 0)) }));
    const data = { title: "Cost", unit: "USD", x, series };
    const yLabels = (await drawnLabels(page, data)).filter((e) => /^\$?0\.0000\d+$/.test(e.text));
    expect(yLabels.map((e) => e.text.replace("$", ""))).toContain("0.000075");
    for (const label of yLabels) expect(label.left, label.text).toBeGreaterThanOrEqual(0);
    for (const label of yLabels) expect(label.text).toMatch(/^\$/);
    await page.close();
  });

  it("scales a chart whose values are all 0 (a function that never failed) from 0 to 1, not to 100", async () => {
    const page = await browser.newPage();
    const data = { x: [1_796_400_000, 1_796_400_060, 1_796_400_120], series: [{ label: "shop.checkout", values: [0, 0, 0] }] };
    await page.setContent(`<!doctype html><link rel="stylesheet" href="${gateway.url}${DASHBOARD.base}/assets/uplot.css"><body style="width:600px">
      <div data-chart><script type="application/json">${JSON.stringify(data)}</script></div>
      <script>${KEEP_CANVAS_TEXT}</script>
      <script src="${gateway.url}${DASHBOARD.base}/assets/uplot.js"></script><script src="${gateway.url}${DASHBOARD.base}/assets/dashboard.js"></script></body>`);
    await page.waitForSelector("[data-chart][data-points] .u-over");
    const labels = await page.evaluate(() => (window as unknown as { labels: string[] }).labels);
    expect(labels).not.toContain("100");
    expect(labels).toContain("1");
    await page.close();
  });

  it("draws the function's charts and the usage charts with their points", async () => {
    for (let i = 0; i < 5; i++) await call("checkout", [`ok-${i}`]);
    const page = await admin.newPage();
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/functions/checkout`);
    await page.waitForSelector("[data-chart][data-points] canvas");
    expect(Number(await page.getAttribute("[data-chart]", "data-points"))).toBeGreaterThan(0);
    await shot(page, "function");

    await page.goto(`${gateway.url}${DASHBOARD.base}/usage`);
    await page.waitForSelector("[data-chart][data-points] canvas");
    const drawn = await page.$$eval("figure.chart", (figures) =>
      figures.map((figure) => {
        const box = figure.querySelector<HTMLElement>("[data-chart]")!;
        const canvas = box.querySelector("canvas")!;
        const pixels = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
        let inked = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i]! > 0) inked++;
        const data = JSON.parse(box.querySelector("script")!.textContent!) as { series: { label: string }[] };
        return {
          caption: figure.querySelector("figcaption")!.textContent!.trim(),
          labels: data.series.map((s) => s.label),
          points: Number(box.dataset.points),
          inked,
        };
      }),
    );
    expect(drawn.map((c) => c.caption)).toEqual([
      "Cost of calls' run time, by function (USD; times in UTC)",
      "Cost of calls' run time, by app (USD; times in UTC)",
      "Cost of calls' run time, by GPU type (USD; times in UTC)",
      "Run time, by function (seconds; times in UTC)",
    ]);
    for (const chart of drawn) {
      expect(chart.points, chart.caption).toBeGreaterThan(0);
      expect(chart.inked, chart.caption).toBeGreaterThan(100); // lines and points drawn, not a blank canvas
    }
    // One line per app, and per GPU type (shop's calls so far ran at the edge, which is not charged).
    expect(drawn[1]!.labels).toContain("shop");
    expect(drawn[1]!.labels).not.toContainEqual(expect.stringContaining("."));
    expect(drawn[2]!.labels).toContain("edge (not charged)");
    expect(drawn[0]!.labels).toContain("shop.checkout");
    await shot(page, "usage");
    await page.close();
  });

  it("shows a function's p50, p95 and p99 time from start to end, over the hour and per minute, as its calls took them", async () => {
    const sleeps = Array.from({ length: 20 }, (_, i) => 40 * (i + 1)); // 40 … 800 ms
    const ids = await Promise.all(sleeps.map((ms) => call("nap", [ms])));
    const page = await admin.newPage();
    // Each call's time as its row shows it (an edge call's "ran": its start to its end), once all are recorded.
    const ranOfEach = async () => {
      await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/functions/nap`);
      const rows = await page.$$eval("tbody#calls tr", (trs) => trs.map((r) => [r.querySelector("td a")!.textContent!, r.children[6]!.textContent!]));
      return rows.filter(([id, t]) => ids.includes(id!) && t !== "—").map(([, t]) => Number(/^(\d+) ms$/.exec(t!)![1]));
    };
    await expect.poll(async () => (await ranOfEach()).length, { timeout: 5000, interval: 200 }).toBe(20);
    const took = await ranOfEach();
    took.sort((a, b) => a - b);
    sleeps.forEach((ms, i) => expect(took[i]).toBeGreaterThanOrEqual(ms - 1));
    const nearestRank = (p: number) => took[Math.ceil((p / 100) * took.length) - 1]!;
    const shown = await page.$$eval("#durations dl.facts div", (items) =>
      Object.fromEntries(items.map((d) => [d.querySelector("dt")!.textContent, d.querySelector("dd")!.textContent])),
    );
    expect(shown).toMatchObject({ ended: "20", p50: `${nearestRank(50)} ms`, p95: `${nearestRank(95)} ms`, p99: `${nearestRank(99)} ms` });
    expect(nearestRank(50)).toBeLessThan(400 + 300); // the 10th call slept 400 ms
    // The time chart: p50, p95 and p99 per minute; of 20 calls, p99 is the slowest, whichever minute it ended in.
    const times = await page.$$eval("figure.chart", (figures) => {
      const figure = figures.find((f) => f.querySelector("figcaption")!.textContent!.includes("p50, p95, p99"))!;
      const box = figure.querySelector<HTMLElement>("[data-chart]")!;
      return {
        points: Number(box.dataset.points),
        data: JSON.parse(box.querySelector("script")!.textContent!) as { series: { label: string; values: (number | null)[] }[] },
      };
    });
    expect(times.data.series.map((s) => s.label)).toEqual(["p50", "p95", "p99"]);
    expect(times.points).toBeGreaterThanOrEqual(3);
    expect(Math.max(...times.data.series[2]!.values.map((v) => v ?? 0))).toBe(nearestRank(99));
    await shot(page, "function-percentiles");
    await page.close();
  });

  it("shows an agent's session live on the agents page, and idle within 2 s of its socket closing, without a reload", async () => {
    const page = await admin.newPage();
    await page.goto(`${gateway.url}${DASHBOARD.base}/agents`);
    await page.waitForFunction(() => document.body.dataset.liveState === "open");
    const ws = new WebSocket(`${gateway.url.replace(/^http/, "ws")}/shop/chat?session=dashboard-live-1`);
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    // Known by its fingerprint: the id itself would let whoever reads the page resume the session.
    const fingerprint = createHash("sha256").update("dashboard-live-1").digest("hex").slice(0, 12);
    const sockets = () => page.locator(`tr[data-session="${fingerprint}"] .badge`);
    await expect
      .poll(
        () =>
          sockets()
            .textContent()
            .catch(() => null),
        { timeout: 2000, interval: 50 },
      )
      .toBe("live (1)");
    expect(await page.locator(`tr[data-session="${fingerprint}"] code`).textContent()).toBe(fingerprint);
    expect(await page.content()).not.toContain("dashboard-live-1");
    const echoed = new Promise((resolve) => ws.once("message", resolve));
    ws.send("hello there");
    await echoed;
    const closed = new Promise((resolve) => ws.once("close", resolve));
    ws.close();
    await closed;
    const started = Date.now();
    await expect.poll(() => sockets().textContent(), { timeout: 2000, interval: 50 }).toBe("idle");
    console.log(`dashboard: the agents page showed a closed session idle ${Date.now() - started} ms after its socket closed`);
    // Its fingerprint leads to its log lines, each marked with it.
    await page.click(`tr[data-session="${fingerprint}"] a`);
    expect(new URL(page.url()).searchParams.get("session")).toBe(fingerprint);
    await expect.poll(() => page.locator("#logs li .text").allTextContents(), { timeout: 3000 }).toEqual(["chat got hello there"]);
    expect(await page.textContent("#logs li .session")).toBe(fingerprint);
    await page.close();
  });

  it("fits a 390 px wide screen: no page overflows sideways", async () => {
    const id = await call("checkout", ["bad-phone"]);
    await call("aFunctionWhoseNameIsAsLongAsAnyNameMayBeSoItsLegendMustWrapOkay", []);
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true });
    await phone.addCookies((await admin.cookies()).map((c) => ({ ...c })));
    const page = await phone.newPage();
    for (const path of [
      "/",
      "/apps/shop",
      "/apps/shop/calls",
      "/apps/shop/functions/checkout",
      `/calls/${id}`,
      "/usage",
      "/planes",
      "/schedules",
      "/agents",
      "/stores",
    ]) {
      await page.goto(`${gateway.url}${DASHBOARD.base}${path}`);
      const { scroll, inner } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
      expect(scroll, path).toBeLessThanOrEqual(inner);
      expect(inner).toBe(390);
      // Each chart's legend fits its box, each entry in sight (before: 661 px wide in a 353 px box, its entries cut off).
      const legends = await page.$$eval("[data-chart]", (boxes) =>
        boxes.map((box) => ({ box: box.clientWidth, legend: box.querySelector(".u-legend")?.getBoundingClientRect().width ?? 0 })),
      );
      for (const { box, legend } of legends) expect(legend, path).toBeLessThanOrEqual(box + 1);
    }
    // A failed call's row is as tall as two lines of its error at most, not its whole error wrapped in a narrow column.
    const order = `bad-phone-${"long ".repeat(40)}`;
    const failed = await call("checkout", [order]);
    const ok = await call("checkout", ["fine-phone"]);
    const rows = () => page.locator(`tr[data-call-id="${failed}"], tr[data-call-id="${ok}"]`).count();
    await expect.poll(async () => (await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/calls`), rows()), { timeout: 5000 }).toBe(2);
    const height = (callId: string) => page.locator(`tr[data-call-id="${callId}"]`).evaluate((row) => row.getBoundingClientRect().height);
    expect(await height(failed)).toBeLessThan((await height(ok)) * 2.5);
    expect(await page.locator(`tr[data-call-id="${failed}"] td.error span`).getAttribute("title")).toContain(order.trim());
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop`);
    await shot(page, "phone-app", false);
    await phone.close();
  });

  it("fits a 375 px screen where a call's error is long and unbroken, and where a page names a long unknown app, function or call", async () => {
    const id = await call("checkout", [`bad-${"w".repeat(5_000)}`]);
    const phone = await browser.newContext({ viewport: { width: 375, height: 812 } });
    await phone.addCookies((await admin.cookies()).map((c) => ({ ...c })));
    const page = await phone.newPage();
    const long = "q".repeat(3_000);
    for (const [path, status] of [
      [`/calls/${id}`, 200],
      [`/apps/${long}`, 404],
      [`/apps/shop/functions/${long}`, 404],
      [`/calls/fc-${long}`, 400],
    ] as const) {
      const answer = await page.goto(`${gateway.url}${DASHBOARD.base}${path}`);
      expect(answer!.status(), path.slice(0, 40)).toBe(status);
      expect(await page.evaluate(() => document.documentElement.scrollWidth), path.slice(0, 40)).toBeLessThanOrEqual(375);
    }
    await phone.close();
  });

  it("fits a 1280 px screen: a 63-character function name wraps in its cell, and a call's error keeps a readable width", async () => {
    const long = "aFunctionWhoseNameIsAsLongAsAnyNameMayBeSoItsLegendMustWrapOkay";
    await call(long, []);
    const failed = await call("checkout", [`bad-wide-${"word ".repeat(30)}`]);
    const page = await admin.newPage();
    await page.setViewportSize({ width: 1280, height: 800 });
    for (const path of ["/apps/shop", "/apps/shop/calls"]) {
      await page.goto(`${gateway.url}${DASHBOARD.base}${path}`);
      // Each table fits its box (before: the app page's scrolled sideways for the long name's cell).
      const tables = await page.$$eval(".table", (boxes) => boxes.map((box) => ({ scroll: box.scrollWidth, box: box.clientWidth })));
      for (const { scroll, box } of tables) expect(scroll, path).toBeLessThanOrEqual(box);
    }
    // The error column, squeezed to 185 px beside eight unbroken columns in a page 1200 px wide at most, keeps 14rem.
    await page.locator(`tr[data-call-id="${failed}"]`).waitFor();
    const width = await page.locator(`tr[data-call-id="${failed}"] td.error`).evaluate((cell) => cell.getBoundingClientRect().width);
    expect(width).toBeGreaterThanOrEqual(14 * 16);
    await page.close();
  });

  it("lets a keyboard skip the menu to the page's content, and writes its grey text at a contrast of 4.5:1 or more", async () => {
    const id = await call("checkout", ["contrast"]);
    const page = await admin.newPage();
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/logs`);
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Skip to content");
    await page.keyboard.press("Enter");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("main");
    // The grey of labels, terms and empty states against what is behind it (the logs filters' labels were 4.44:1).
    const contrasts = async () =>
      page.$$eval(".filters label, dt, .empty", (elements) => {
        const rgb = (colour: string) => colour.match(/[\d.]+/g)!.map(Number);
        const luminance = (colour: string) => {
          const [r, g, b] = rgb(colour).map((v) => (v / 255 <= 0.03928 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4));
          return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
        };
        const behind = (element: Element | null): string => {
          for (; element; element = element.parentElement) {
            const colour = getComputedStyle(element).backgroundColor;
            if (rgb(colour)[3] !== 0) return colour;
          }
          return "rgb(255, 255, 255)";
        };
        return elements.map((element) => {
          const [a, b] = [luminance(getComputedStyle(element).color), luminance(behind(element))];
          return { text: element.textContent?.trim().slice(0, 20), ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05) };
        });
      });
    const seen = await contrasts();
    await page.goto(`${gateway.url}${DASHBOARD.base}/calls/${id}`);
    seen.push(...(await contrasts()));
    expect(seen.length).toBeGreaterThan(3);
    for (const { text, ratio } of seen) expect(ratio, text).toBeGreaterThanOrEqual(4.5);
    await page.close();
  });

  it("cannot be framed by another page: its pages and its login form say so, and Chromium shows nothing of them in a frame", async () => {
    for (const path of ["/", "/login", "/apps/shop", "/nope"]) {
      const res = await fetch(`${gateway.url}${DASHBOARD.base}${path}`, authed());
      expect(res.headers.get("x-frame-options"), path).toBe("DENY");
      expect(res.headers.get("content-security-policy"), path).toContain("frame-ancestors 'none'");
      await res.text();
    }
    const framer = await otherSite(`<iframe src="${gateway.url}${DASHBOARD.login}"></iframe>`);
    const page = await admin.newPage();
    try {
      const framed = page.waitForEvent("framenavigated", (f) => f !== page.mainFrame());
      await page.goto(framer.url);
      const frame = await framed;
      await frame.waitForLoadState().catch(() => undefined);
      // A refused frame holds Chromium's error page, never the form a page could lay its own buttons over.
      expect(await frame.evaluate(() => document.querySelector('input[name="token"]') !== null).catch(() => false)).toBe(false);
    } finally {
      await page.close();
      framer.close();
    }
  });

  it("refuses a log in or a log out that another site's page posts: the browser's session stays as it was", async () => {
    const created = await fetch(`${gateway.url}/v1/tokens`, authed({ method: "POST", body: JSON.stringify({ name: "someone else", scope: "call" }) }));
    const { token } = (await created.json()) as { token: string };
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(await loginLink(ADMIN_TOKEN));
    const session = async () => (await context.cookies()).find((c) => c.name === DASHBOARD.cookie)?.value;
    const before = await session();
    expect(before).toBeDefined();
    for (const [action, fields] of [
      ["login", `<input name="token" value="${token}">`],
      ["logout", ""],
    ] as const) {
      const site = await otherSite(
        `<form method="post" action="${gateway.url}${DASHBOARD.base}/${action}">${fields}</form><script>document.forms[0].submit()</script>`,
      );
      const other = await context.newPage();
      try {
        const answer = other.waitForResponse((res) => res.url().endsWith(`${DASHBOARD.base}/${action}`));
        await other.goto(site.url);
        expect((await answer).status(), action).toBe(403);
        expect(await other.textContent(".problem"), action).toContain("another site");
      } finally {
        await other.close();
        site.close();
      }
      expect(await session(), action).toBe(before);
      expect((await page.goto(`${gateway.url}${DASHBOARD.base}/`))!.status(), action).toBe(200);
      expect(await page.textContent(".who span"), action).toContain("(admin)");
    }
    // The dashboard's own button still logs out.
    await page.click(".who button");
    expect((await page.goto(`${gateway.url}${DASHBOARD.base}/`))!.status()).toBe(401);
    await context.close();
  });

  it("asks before a login link followed from another site's page logs in, so no site can log a browser into its own token's session", async () => {
    const created = await fetch(`${gateway.url}/v1/tokens`, authed({ method: "POST", body: JSON.stringify({ name: "a site's own", scope: "call" }) }));
    const theirs = await loginLink(((await created.json()) as { token: string }).token);
    const context = await browser.newContext();
    const session = async () => (await context.cookies()).find((c) => c.name === DASHBOARD.cookie)?.value;
    const site = await otherSite(`<script>location.href = ${JSON.stringify(theirs)}</script>`);
    try {
      const page = await context.newPage();
      const landed = page.waitForResponse((res) => res.url() === theirs);
      await page.goto(site.url);
      expect((await landed).status()).toBe(200);
      await page.waitForSelector("form button");
      expect(await page.textContent("main")).toContain("from another site's page");
      expect(await session()).toBeUndefined(); // not logged in, and the code not spent:
      await Promise.all([page.waitForURL(`${gateway.url}${DASHBOARD.base}/`), page.click("form button")]);
      expect(await session()).toBeDefined();
      expect(await page.textContent(".who span")).toContain("a site's own");
    } finally {
      site.close();
      await context.close();
    }
    // A browser too old to say Sec-Fetch-Site still says where its post came from.
    const posted = await fetch(`${gateway.url}${DASHBOARD.login}`, {
      method: "POST",
      headers: { origin: "http://evil.example", "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: ADMIN_TOKEN }),
      redirect: "manual",
    });
    expect(posted.status).toBe(403);
    expect(posted.headers.get("set-cookie")).toBeNull();
  });

  it("loads its pages with nothing failed in the browser's console, each with an inline icon (no request for /favicon.ico)", async () => {
    const id = await call("checkout", ["bad-console"]);
    const page = await admin.newPage();
    const problems: string[] = [];
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`${page.url()}: ${message.text()}`);
    });
    page.on("pageerror", (error) => problems.push(`${page.url()}: ${error.message}`));
    for (const path of ["/", "/apps/shop", "/apps/shop/logs", `/calls/${id}`, "/usage", "/planes", "/login"]) {
      await page.goto(`${gateway.url}${DASHBOARD.base}${path}`);
      // Playwright does not report a browser's request for its icon, so the page must name one that needs no request.
      const icons = await page.$$eval("link[rel~=icon]", (links) => links.map((l) => l.getAttribute("href") ?? ""));
      expect(icons.length, path).toBe(1);
      expect(icons[0], path).toMatch(/^data:/);
    }
    await page.close();
    expect(problems).toEqual([]);
  });

  it("shows a token restricted to one app only that app: others are 403, their calls unknown", async () => {
    const shopCall = await call("checkout", ["ok-hidden"]);
    const { token, context, page } = await pastedLogin({ name: "edge only", scope: "call", apps: ["edge"] });
    const apps = await page.$$eval("tbody a", (links) => links.map((a) => a.textContent));
    expect(apps).toEqual(["edge"]);
    // Its menu leaves out the pages it would be refused.
    expect(await page.$$eval("header nav a", (links) => links.map((a) => a.textContent))).toEqual(["Apps", "Schedules", "Agents"]);
    expect((await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop`))!.status()).toBe(403);
    expect(await page.textContent(".problem")).toContain('not "shop"');
    expect((await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/calls`))!.status()).toBe(403);
    expect((await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/events`))!.status()).toBe(403);
    expect((await page.goto(`${gateway.url}${DASHBOARD.base}/calls/${shopCall}`))!.status()).toBe(404);
    // Scope call: no usage, no planes; 403 as for another app, with a page that says which scope each needs.
    expect((await page.goto(`${gateway.url}${DASHBOARD.base}/usage`))!.status()).toBe(403);
    expect(await page.textContent(".problem")).toContain("needs a deploy token");
    expect((await page.goto(`${gateway.url}${DASHBOARD.base}/planes`))!.status()).toBe(403);
    expect(await page.textContent(".problem")).toContain("needs an admin token");
    // A revoked token's session ends with it, and a page left open on its live stream says so, and stops.
    const open = await context.newPage();
    await open.goto(`${gateway.url}${DASHBOARD.base}/apps/edge`);
    await open.waitForFunction(() => document.body.dataset.liveState === "open");
    const id = token.split(".")[0]!;
    expect((await fetch(`${gateway.url}/v1/tokens/${id}`, authed({ method: "DELETE" }))).status).toBe(200);
    expect((await page.goto(`${gateway.url}${DASHBOARD.base}/`))!.status()).toBe(401);
    await open.waitForFunction(() => document.body.dataset.liveState === "ended", undefined, { timeout: 20_000 });
    expect(await open.textContent("#live-ended")).toMatch(new RegExp(`Live updates stopped: the token that opened this stream, ${id}, was revoked`));
    await context.close();
  });

  it("tells a deploy token for an app not deployed yet which apps it may see, not that none is deployed", async () => {
    const { context, page } = await pastedLogin({ name: "future app", scope: "deploy", apps: ["not-yet"] });
    expect(await page.textContent("main .empty")).toBe("None of the apps this token may see (not-yet) is deployed here.");
    await context.close();
  });

  it("loads an app's pages in under a second with 10,000 calls recorded", async () => {
    const inputs = Array.from({ length: 1000 }, (_, i) => [i]);
    for (let batch = 0; batch < 10; batch++) {
      const res = await fetch(`${gateway.url}/v1/apps/shop/functions/double/map`, authed({ method: "POST", body: JSON.stringify({ inputs }) }));
      expect(res.status).toBe(200);
      await res.text();
    }
    const page = await admin.newPage();
    // Every map call recorded (batched writes land a moment after the answers).
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop`);
    // The gateway's answer (fetch), and the page loaded in the browser with its script and charts drawn.
    const timings: Record<string, { answer: number; load: number }> = {};
    for (const path of ["/apps/shop", "/apps/shop/calls", "/apps/shop/functions/double", "/", "/usage"]) {
      let started = Date.now();
      const answer = await fetch(`${gateway.url}${DASHBOARD.base}${path}`, authed());
      await answer.text();
      const answerMs = Date.now() - started;
      started = Date.now();
      const res = await page.goto(`${gateway.url}${DASHBOARD.base}${path}`, { waitUntil: "load" });
      timings[path] = { answer: answerMs, load: Date.now() - started };
      expect(res!.status()).toBe(200);
    }
    const calls = await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/functions/double`);
    expect(calls!.status()).toBe(200);
    const counted = await page.$$eval("tbody#calls tr", (rows) => rows.length);
    expect(counted).toBe(50);
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop`);
    const doubleCalls = await page.$$eval("tr", (rows) => rows.find((r) => r.querySelector("td a")?.textContent === "double")?.children[2]?.textContent);
    expect(Number(doubleCalls)).toBeGreaterThanOrEqual(10_000);
    console.log(`dashboard: pages with 10,000 calls recorded loaded in ${JSON.stringify(timings)} (ms)`);
    for (const [path, { answer, load }] of Object.entries(timings)) {
      expect(answer, path).toBeLessThan(1000);
      expect(load, path).toBeLessThan(1000);
    }
    await shot(page, "app");
    await page.close();
  });

  // Last: the plane it registers is listed (and asked for its usage, unreachable) until its heartbeat is stale.
  it("shows a function's warm containers now, from the planes' last heartbeats", async () => {
    const page = await admin.newPage();
    const warmNow = async () => {
      await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/functions/embed`);
      return page.$$eval("dl.facts div", (items) =>
        Object.fromEntries(items.map((d) => [d.querySelector("dt")!.textContent, d.querySelector("dd")!.textContent])),
      );
    };
    expect(await warmNow()).toMatchObject({ "warm now": "0", busy: "0", idle: "0", planes: "0" });
    await beat("pl-warmone1", [
      { app: "shop", function: "embed", busy: 1, idle: 2 },
      { app: "shop", function: "double", busy: 0, idle: 5 },
    ]);
    await beat("pl-warmtwo2", [{ app: "shop", function: "embed", busy: 0, idle: 1 }]);
    // The planes' list is kept a second per isolate.
    await expect.poll(warmNow, { timeout: 5000, interval: 300 }).toMatchObject({ "warm now": "4", busy: "1", idle: "3", planes: "2" });
    await shot(page, "function-warm");
    // An edge function runs in the gateway's isolate: its page says so, with no containers' sections.
    await page.goto(`${gateway.url}${DASHBOARD.base}/apps/shop/functions/checkout`);
    expect(await page.$$eval("main h2", (hs) => hs.map((h) => h.textContent))).not.toContainEqual(expect.stringMatching(/containers/i));
    expect(await page.textContent("main")).toContain("Runs at the edge, in the gateway's isolate: no containers.");
    await page.close();
  });

  // After it, for the same reason.
  it("shows a plane whose containers reserve more cores than it has (CPU is shared) with none free, not a negative count", async () => {
    await beat("pl-cpushared", [], { total: 2, free: -1.5 });
    const page = await admin.newPage();
    const planeFacts = async () => {
      await page.goto(`${gateway.url}${DASHBOARD.base}/planes`);
      return page.$eval("main", (main) => {
        const heading = Array.from(main.querySelectorAll("h2")).find((h) => h.textContent!.includes("pl-cpushared"));
        const items = heading ? Array.from(heading.nextElementSibling!.querySelectorAll("div")) : [];
        return Object.fromEntries(items.map((d) => [d.querySelector("dt")!.textContent, d.querySelector("dd")!.textContent]));
      });
    };
    // The planes' list is kept a second per isolate.
    await expect.poll(planeFacts, { timeout: 5000, interval: 300 }).toMatchObject({ "CPU free": "0 of 2 (shared: its containers reserve 3.5)" });
    await page.close();
  });

  // After them: a plane that answers for its usage (its rows as a plane sends them), listed from then on.
  it("writes a cost as tandem usage does, to the millionth of a dollar whatever its size, on the planes and usage pages", async () => {
    const rows = [
      { app: "shop", function: "embed", gpu: "A100", containers: 2, seconds: 71.2, costUsd: 0.0280331 },
      { app: "shop", function: "double", gpu: null, containers: 1, seconds: 485.3, costUsd: 0.006603 },
    ];
    const plane = http.createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ rows })));
    await new Promise<void>((listening) => plane.listen(0, "127.0.0.1", listening));
    try {
      await beat("pl-usagerow", [], undefined, `http://127.0.0.1:${(plane.address() as AddressInfo).port}`);
      const costs = async (path: string) => {
        const page = (await (await fetch(`${gateway.url}${DASHBOARD.base}${path}`, authed())).text()).replace(/\s+/g, " ");
        return rows.map((r) => new RegExp(`<td>${r.function}</td>.*?<td>(\\$[\\d.]+)</td>`).exec(page)?.[1]);
      };
      // The planes' list is kept a second per isolate.
      await expect.poll(() => costs("/planes"), { timeout: 5000, interval: 300 }).toEqual(["$0.028033", "$0.006603"]);
      expect(await costs("/usage")).toEqual(["$0.028033", "$0.006603"]);
      // The same rows, as tandem usage prints them.
      const usage = await runCli(["usage", "--app", "shop", "--gateway", gateway.url, "--token", ADMIN_TOKEN]);
      expect(usage.stdout).toMatch(/^app +function +gpu +containers +container s +cost +plane\n/);
      expect(usage.stdout).toMatch(/shop +embed +A100 +2 +71\.2 +\$0\.028033 +pl-usagerow\n/);
      expect(usage.stdout).toMatch(/shop +double +- +1 +485\.3 +\$0\.006603 +pl-usagerow\n/);
    } finally {
      plane.close();
    }
  });
});
