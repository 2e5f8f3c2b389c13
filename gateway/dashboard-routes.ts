/**
 * The dashboard at `/_tandem/`: apps → functions → calls → containers,
 * planes, schedules, agents and usage, rendered on the server
 * (gateway/dashboard-pages.ts) from the Durable Objects that hold the facts
 * (gateway/dashboard-data.ts), with a live stream per page (server-sent
 * events: calls as they change, log lines as they are stored, through the
 * logs' own follow). Behind the API's credentials (gateway/dashboard-auth.ts):
 * scope `call` to look, `deploy` for usage, `admin` for the planes' inventory,
 * and a token restricted to apps sees only those apps.
 */
import { Hono, type Context } from "hono";
import { html } from "hono/html";
import { secureHeaders } from "hono/secure-headers";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { DASHBOARD_DEFAULTS, LOG_LIMITS, PLANE_DEFAULTS } from "../sdk/defaults.js";
import { InvalidRequestError, MethodNotAllowedError, NotFoundError, TandemError } from "../sdk/errors.js";
import { formatUsd } from "../sdk/pricing.js";
import {
  CALL_ID_PATTERN,
  DASHBOARD,
  LOG_SOURCES,
  LogQuerySchema,
  containerGroup,
  logFunctionNames,
  planeState,
  scopeAllows,
  type CallRecord,
  type DashboardCallRow,
  type DashboardSeriesPoint,
  type PlaneInfo,
  type PlaneNotCounted,
  type ScheduleInfo,
  type TokenScope,
} from "../sdk/protocol.js";
import { didYouMean } from "../sdk/nearest-name.js";
import { describeIssues } from "../sdk/zod-issues.js";
import { mayReach, principalIsLive, principalOf, requireApp, revokedWhileOpen, type Principal } from "./auth.js";
import type { App } from "../sdk/app.js";
import { readBodyBytes } from "./body.js";
import { checkedCallId, ledgerFor, unknownCall } from "./call-ledger-client.js";
import { DASHBOARD_ASSETS } from "./dashboard-assets.js";
import { dashboardGuard, fromOtherSite, logInWithCode, logInWithToken, logOut, refuseOtherSites } from "./dashboard-auth.js";
import {
  agentSessions,
  callDurations,
  callSeries,
  pricePerSecond,
  recentCalls,
  totalsByFunction,
  visibleApps,
  type CallDurations,
  type CallSeries,
} from "./dashboard-data.js";
import {
  CALL_HEADINGS,
  callRow,
  callTimes,
  errorSummary,
  chart,
  dashboardPath,
  facts,
  layout,
  logLine,
  logList,
  loginConfirmPage,
  loginPage,
  ms,
  seconds,
  table,
  time,
  visibleMarks,
  type ChartData,
  type Html,
} from "./dashboard-pages.js";
import type { Env, RouteEnv } from "./env.js";
import { environmentOf } from "./environments.js";
import { isolateShared } from "./isolate-shared.js";
import { readLog } from "./log-archive.js";
import { LogFollower, logFilterOf } from "./log-routes.js";
import { onceEach } from "./query.js";
import { logStoreFor } from "./log-sink.js";
import type { LogFilter } from "./log-store.js";
import { knownPlanes } from "./plane-choice.js";
import { usageFromPlanes } from "./plane-client.js";
import { registry } from "./registry.js";
import { schedulerFor } from "./scheduler.js";
import { listDicts } from "./dicts.js";
import { listQueues } from "./queues.js";
import { listVolumes } from "./volumes.js";
import { echoedText, formatBytes } from "../sdk/value-text.js";

type Ctx = Context<RouteEnv>;

export function dashboardRoutes(): Hono<RouteEnv> {
  const routes = new Hono<RouteEnv>().basePath(DASHBOARD.base);

  // No page, the login form included, may sit in another site's frame (whose buttons it could lay over ours), and a
  // page runs only the dashboard's own scripts, whatever a function printed. HSTS is the host's to set, not a path's;
  // the public assets may be loaded from anywhere, as before.
  routes.use(
    "*",
    secureHeaders({
      xFrameOptions: "DENY",
      strictTransportSecurity: false,
      crossOriginResourcePolicy: false,
      contentSecurityPolicy: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"], // uPlot sizes its elements with style attributes
        imgSrc: ["'self'", "data:"],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    }),
  );

  // Public: the script and styles (nothing in them is anyone's), and the login.
  routes.get("/assets/:name", (c) => {
    const asset = DASHBOARD_ASSETS[c.req.param("name")];
    if (!asset) throw new NotFoundError(`no dashboard asset "${c.req.param("name")}"`);
    return c.body(asset.body, 200, { "content-type": asset.type, "cache-control": "public, max-age=300" });
  });
  routes.get("/login", async (c) => {
    const code = c.req.query("code");
    if (code === undefined) return c.html(loginPage(), 200);
    // A link followed from another site's page could be the other site's own code, logging this browser into a
    // session of its choosing: the code is not spent, and the page asks before logging in (its form posts it here).
    if (fromOtherSite(c)) return c.html(loginConfirmPage(code), 200);
    try {
      await logInWithCode(c, code);
    } catch (err) {
      if (err instanceof TandemError) return c.html(loginPage(err.message), 401);
      throw err;
    }
    return c.redirect(`${DASHBOARD.base}/`, 303); // the code leaves the address bar: it is spent anyway
  });
  routes.post("/login", async (c) => {
    // The login page's form is sent as a browser sends a form; another body (a multipart upload, JSON) is no login.
    const type = c.req.header("content-type")?.split(";")[0]?.trim().toLowerCase();
    if (type !== undefined && type !== "application/x-www-form-urlencoded")
      return c.html(loginPage(`The login form is sent as application/x-www-form-urlencoded, as a browser sends it, not ${type}.`), 400);
    // Anyone may post here, so the form is read as any body is: no further than the gateway's limit (413).
    const bytes = await readBodyBytes(c.req.raw, c.var.config.maxBodyBytes);
    const form = new URLSearchParams(new TextDecoder().decode(bytes));
    refuseOtherSites(c);
    const code = form.get("code");
    try {
      await (code !== null ? logInWithCode(c, code) : logInWithToken(c, form.get("token") ?? ""));
    } catch (err) {
      if (err instanceof TandemError) return c.html(loginPage(err.message), 401);
      throw err;
    }
    return c.redirect(`${DASHBOARD.base}/`, 303);
  });
  routes.post("/logout", async (c) => {
    refuseOtherSites(c);
    await logOut(c);
    return c.redirect(DASHBOARD.login, 303);
  });

  routes.use(
    "*",
    dashboardGuard((c) => c.html(loginPage("Log in to see this gateway's dashboard."), 401)),
  );
  // A page's failure (another app's call, a scope it lacks) is a page too, with the error's status.
  routes.onError((err, c) => {
    if (!(err instanceof TandemError)) throw err;
    return c.html(layout(`${err.status} ${err.code}`, html`<p class="problem">${err.message}</p>`, viewer(c)), err.status as ContentfulStatusCode);
  });

  routes.get("/", async (c) => {
    const allowed = principalOf(c).apps;
    const apps = visibleApps(allowed);
    const rows = await Promise.all(
      apps.map(async (app) => {
        const totals = totalsByFunction((await callSeries(c.env, { app: app.name })).points);
        const calls = totals.reduce((n, t) => n + t.calls, 0);
        const errors = totals.reduce((n, t) => n + t.errors, 0);
        return html`<tr>
          <td class="name"><a href="${dashboardPath("apps", app.name)}">${app.name}</a></td>
          <td>${app.callables.length}</td>
          <td>${app.agents.length + app.webMounts.length + app.endpoints.length}</td>
          <td>${calls}</td>
          <td>${errors}</td>
        </tr>`;
      }),
    );
    return c.html(layout("Apps", table(["app", "functions", "endpoints", "calls (1 h)", "errors (1 h)"], rows, { empty: noAppsText(allowed) }), viewer(c)));
  });

  routes.get("/apps/:app", async (c) => {
    const app = appOf(c);
    const [series, calls] = await Promise.all([callSeries(c.env, { app: app.name }), recentCalls(c.env, { app: app.name, limit: 10 })]);
    const body = html`${activityCharts(series)}
      <h2>Functions <small>(last hour)</small></h2>
      ${functionsTable(app.name, app.callables, series, "This app has no functions.")}
      <h2>Latest calls</h2>
      ${table(CALL_HEADINGS, calls.map(callRow), { id: "calls", keep: 10, empty: "No calls yet." })}
      <p><a href="${dashboardPath("apps", app.name, "calls")}">All calls, live</a> · <a href="${dashboardPath("apps", app.name, "logs")}">Logs, live</a></p>`;
    return c.html(layout(`App ${app.name}`, body, { ...viewer(c), live: liveUrl(app.name, {}) }));
  });

  routes.get("/apps/:app/calls", async (c) => {
    const app = appOf(c);
    // A filter it would ignore without a word (`?status=failed` listed every call): refused, saying what filters calls.
    const asked = Object.keys(c.req.queries())[0];
    if (asked !== undefined)
      throw new InvalidRequestError(
        `the calls page takes no query, not "${asked.slice(0, 40)}": \`tandem calls ${app.name} --status failed\` (GET /v1/apps/${app.name}/calls?status=failed) lists calls by function, status or kind`,
      );
    const calls = await recentCalls(c.env, { app: app.name, limit: DASHBOARD_DEFAULTS.callsShown });
    const body = html`<p><a href="${dashboardPath("apps", app.name)}">← ${app.name}</a></p>
      ${table(CALL_HEADINGS, calls.map(callRow), { id: "calls", empty: "No calls yet." })}`;
    return c.html(layout(`Calls of ${app.name}`, body, { ...viewer(c), live: liveUrl(app.name, {}) }));
  });

  routes.get("/apps/:app/functions/:fn", async (c) => {
    const app = appOf(c);
    // A class's name alone: its page lists its methods (each a function of its own) and the containers they share.
    const asked = c.req.param("fn");
    const methods = app.callables.filter((f) => f.name.startsWith(`${asked}.`));
    if (methods.length && !app.callables.some((f) => f.name === asked)) return c.html(await classPage(c, app.name, asked, methods));
    const registered = registry().function(app.name, asked);
    const fn = registered.name;
    const onPlanes = registered.spec.tier === "plane"; // an edge function runs in the gateway's isolate: no containers to show
    const [series, durations, calls, usage, planes] = await Promise.all([
      callSeries(c.env, { app: app.name, function: fn }),
      callDurations(c.env, { app: app.name, function: fn }),
      recentCalls(c.env, { app: app.name, function: fn, limit: DASHBOARD_DEFAULTS.callsShown }),
      onPlanes && mayUse(principalOf(c), "deploy") ? usageRows(c, app.name) : Promise.resolve(undefined),
      onPlanes ? knownPlanes(c.env) : Promise.resolve([]),
    ]);
    const containers = usage?.rows.filter((r) => r.function === containerGroup(fn)) ?? []; // a class method's are its class's
    const now = warmNow(planes, app.name, fn);
    const totals = totalsByFunction(series.points)[0];
    const shown = (value: number | undefined) => (value === undefined ? "—" : ms(value));
    const body = html`<p><a href="${dashboardPath("apps", app.name)}">← ${app.name}</a></p>
      ${activityCharts(series, durations)}
      <h2>Time from start to end <small>(calls ended in the last hour)</small></h2>
      <div id="durations">
        ${facts([
          ["ended", durations.window?.calls ?? 0],
          ["p50", shown(durations.window?.p50)],
          ["p95", shown(durations.window?.p95)],
          ["p99", shown(durations.window?.p99)],
          ["mean", shown(totals?.ended ? totals.meanRunMs : undefined)],
          ["longest", shown(totals?.ended ? totals.maxRunMs : undefined)],
        ])}
      </div>
      ${warmSection(onPlanes, now, "")}
      ${
        usage === undefined
          ? ""
          : html`<h2>
                Containers
                <small>(on the planes, last 24 h${registered.clsMethod ? `; class ${containerGroup(fn)}'s, which serve all its methods` : ""})</small>
              </h2>
              ${table(
                ["plane", "GPU", "containers", "container time", "cost"],
                containers.map(
                  (r) =>
                    html`<tr>
                      <td>${r.plane}</td>
                      <td>${r.gpu ?? "—"}</td>
                      <td>${r.containers}</td>
                      <td>${seconds(r.seconds)}</td>
                      <td>${formatUsd(r.costUsd)}</td>
                    </tr>`,
                ),
                { empty: "No plane containers." },
              )}`
      }
      <h2>Calls</h2>
      ${table(CALL_HEADINGS, calls.map(callRow), { id: "calls", empty: "No calls yet." })}`;
    return c.html(layout(`${app.name}.${fn}`, body, { ...viewer(c), live: liveUrl(app.name, { function: fn }) }));
  });

  routes.get("/apps/:app/logs", async (c) => {
    const app = appOf(c);
    const { filter, given } = pageLogFilter(onceEach(c.req.queries(), PAGE_LOG_FIELDS, "the logs page"));
    const { lines } = await readLog(c.env, app.name, filter);
    const labels = [...app.webMounts, ...app.endpoints, ...app.agents].map((w) => w.label);
    // No line of a function the app does not have: the page says so, as `tandem logs --function` does, with the name
    // nearest (a class's name selects its methods' lines, `Class.method`, and its containers').
    const { known, listed } = logFunctionNames(
      app.callables.map((f) => f.name),
      labels,
    );
    const names = [...known];
    const unknown = lines.length === 0 && given.function !== undefined && !known.has(given.function);
    const empty = unknown
      ? `App "${app.name}" has no function, class or web label "${given.function}" (${listed}), so it has no lines to show${didYouMean(given.function!, known)}`
      : Object.keys(given).length
        ? "No lines match these filters yet."
        : undefined;
    const body = html`<p><a href="${dashboardPath("apps", app.name)}">← ${app.name}</a></p>
      ${logFilterForm(given, names)} ${logList(lines, empty)}`;
    // New lines as the same filters choose them (all but since: they are new).
    return c.html(layout(`Logs of ${app.name}`, body, { ...viewer(c), live: liveUrl(app.name, { logs: "1", ...liveLogFields(given) }) }), unknown ? 404 : 200);
  });

  routes.get("/apps/:app/containers/:container", async (c) => {
    const app = appOf(c);
    const container = checkedContainerId(c.req.param("container"));
    const { lines } = await readLog(c.env, app.name, { containerId: container, limit: 500 });
    // Every container of an app has a line in its log (its start, at least) once it has started.
    if (lines.length === 0)
      throw new NotFoundError(
        `app "${app.name}" has no line from container ${container} in the time its lines are kept: the id is mistyped, the container is another app's, or it started moments ago (reload to see it then)`,
        { app: app.name, containerId: container },
      );
    const body = html`<p><a href="${dashboardPath("apps", app.name)}">← ${app.name}</a></p>
      ${facts([["container", container]])}
      <h2>Logs, live</h2>
      ${logList(lines)}`;
    return c.html(layout(`Container ${container.slice(0, 12)}`, body, { ...viewer(c), live: liveUrl(app.name, { container }) }));
  });

  routes.get("/calls/:id", async (c) => {
    const id = checkedCallId(c.req.param("id"));
    const record = await ledgerFor(c.env, id).get(id, 0);
    // Another app's call is as unknown as one that never was.
    if (!record || !mayReach(principalOf(c), record.app)) throw unknownCall(id, c.var.config.resultTtlSeconds);
    const { lines } = await readLog(c.env, record.app, { callId: id, limit: LOG_LIMITS.maxLimit });
    const body = html`<p>
        <a href="${dashboardPath("apps", record.app)}">← ${record.app}</a> ·
        <a href="${dashboardPath("apps", record.app, "functions", record.function)}">${record.function}</a>
      </p>
      <div id="call-state" data-call="${id}">${callFacts(record)} ${callError(record)}</div>
      <h2>Logs</h2>
      ${logList(lines)}`;
    return c.html(layout(`Call ${id}`, body, { ...viewer(c), live: liveUrl(record.app, { call: id }) }));
  });

  // A token short of the scope a page needs gets 403 with a page that says so, as one restricted to other apps does.
  routes.get("/planes", async (c) => {
    const principal = principalOf(c);
    if (!mayUse(principal, "admin")) {
      return c.html(
        layout("Planes", html`<p class="problem">The planes' inventory needs an admin token; this one has scope "${principal.scope}".</p>`, viewer(c)),
        403,
      );
    }
    const [planes, usage] = await Promise.all([knownPlanes(c.env, true), usageRows(c)]);
    const sections = planes.map((p) => {
      const gpus = Object.entries(p.gpus).map(
        ([type, cap]) =>
          html`<tr>
            <td>${type}</td>
            <td>${cap.total}</td>
            <td>${cap.total - cap.free}</td>
            <td>${cap.free}</td>
          </tr>`,
      );
      const running = usage.rows.filter((r) => r.plane === p.planeId);
      return html`<h2>${p.planeId} ${p.simulated ? html`<span class="simulated">simulated GPUs</span>` : ""}</h2>
        ${facts([
          ["region", p.region],
          ["health", planeHealthWord(p)],
          ["last heartbeat", time(p.lastSeen)],
          ["CPU free", cpuFree(p.cpu)],
          ["memory free", `${p.memoryMiB.free} of ${p.memoryMiB.total} MiB`],
        ])}
        ${table(["GPU", "total", "used", "free"], gpus, { empty: "No GPUs." })}
        <h3>What ran here <small>(last 24 h)</small></h3>
        ${table(
          ["app", "function", "GPU", "containers", "container time", "cost"],
          running.map(
            (r) =>
              html`<tr>
                <td>${r.app}</td>
                <td>${r.function}</td>
                <td>${r.gpu ?? "—"}</td>
                <td>${r.containers}</td>
                <td>${seconds(r.seconds)}</td>
                <td>${formatUsd(r.costUsd)}</td>
              </tr>`,
          ),
          { empty: "No containers." },
        )}`;
    });
    return c.html(layout("Planes", planes.length ? html`${sections}` : html`<p class="empty">No plane has registered with this gateway.</p>`, viewer(c)));
  });

  routes.get("/schedules", async (c) => {
    const body = html`<div id="schedules">${schedulesTable(await liveSchedules(c.env, viewerKey(c)))}</div>`;
    return c.html(layout("Schedules", body, { ...viewer(c), live: dashboardPath("schedules", "events") }));
  });
  routes.get("/schedules/events", (c) => liveSection(c, "the schedules page's live stream", "schedules", liveSchedules, schedulesTable));

  routes.get("/agents", async (c) => {
    const sessions = await agentSessionsOf(c.env, principalOf(c).apps);
    const body = html`<div id="sessions">${sessionsTable(sessions)}</div>`;
    return c.html(layout("Agents", body, { ...viewer(c), live: dashboardPath("agents", "events") }));
  });
  routes.get("/agents/events", (c) => liveSection(c, "the agents page's live stream", "sessions", liveSessions, sessionsTable));

  routes.get("/stores", async (c) => {
    const principal = principalOf(c);
    if (principal.apps !== null) {
      const problem = html`<p class="problem">
        The volumes, dicts and queues belong to the whole gateway; this token may reach only ${principal.apps.join(", ")}.
      </p>`;
      return c.html(layout("Stores", problem, viewer(c)), 403);
    }
    const [volumes, dicts, queues] = await Promise.all([listVolumes(c.env), listDicts(c.env), listQueues(c.env)]);
    const byName = <T extends { name: string }>(list: T[]) => [...list].sort((a, b) => a.name.localeCompare(b.name));
    const made = (at: number) => new Date(at).toISOString().replace(/\.\d+Z$/, "Z");
    const body = html`<h2>Volumes</h2>
      ${table(
        ["name", "files", "size", "version", "made"],
        byName(volumes).map(
          (v) =>
            html`<tr>
              <td class="name">${v.name}</td>
              <td>${v.files}</td>
              <td>${formatBytes(v.bytes)}</td>
              <td>${v.version}</td>
              <td>${made(v.createdAt)}</td>
            </tr>`,
        ),
        { empty: "No volumes." },
      )}
      <h2>Dicts</h2>
      ${table(
        ["name", "entries", "made"],
        byName(dicts).map(
          (d) =>
            html`<tr>
              <td class="name">${d.name}</td>
              <td>${d.len}</td>
              <td>${made(d.createdAt)}</td>
            </tr>`,
        ),
        { empty: "No dicts." },
      )}
      <h2>Queues</h2>
      ${table(
        ["name", "waiting", "leased", "partitions", "made"],
        byName(queues).map(
          (q) =>
            html`<tr>
              <td class="name">${q.name}</td>
              <td>${q.len}</td>
              <td>${q.leased}</td>
              <td>${q.partitions}</td>
              <td>${made(q.createdAt)}</td>
            </tr>`,
        ),
        { empty: "No queues." },
      )}`;
    return c.html(layout("Stores", body, viewer(c)));
  });

  routes.get("/usage", async (c) => {
    const principal = principalOf(c);
    if (!mayUse(principal, "deploy")) {
      return c.html(layout("Usage", html`<p class="problem">Usage needs a deploy token; this one has scope "${principal.scope}".</p>`, viewer(c)), 403);
    }
    const apps = visibleApps(principal.apps);
    const windowMs = DASHBOARD_DEFAULTS.usageWindowMs;
    const [series, planeRows] = await Promise.all([Promise.all(apps.map((app) => callSeries(c.env, { app: app.name, windowMs }))), usageRows(c)]);
    // Cost over time: each function's run time in each bucket at its price per second, then summed by app and by GPU.
    const xs = series[0]?.buckets ?? [];
    const byFunction = apps.flatMap((app, i) => costByFunction(app.name, series[i]!.points, xs));
    const x = xs.map((t) => t / 1000);
    const costChart = (by: string, labelOf: (f: FunctionCost) => string): ChartData => ({
      title: `Cost of calls' run time, by ${by}`,
      unit: "USD",
      x,
      series: summedBy(byFunction, labelOf, "cost"),
    });
    const runTime: ChartData = { title: "Run time, by function", unit: "seconds", x, series: summedBy(byFunction, (f) => f.label, "seconds") };
    const byGpu = summedBy(byFunction, (f) => f.kind, "cost");
    const body = html`${
        byFunction.length
          ? html`${chart(costChart("function", (f) => f.label))} ${chart(costChart("app", (f) => f.app))} ${chart(costChart("GPU type", (f) => f.kind))}
            ${chart(runTime)}`
          : html`<p class="empty">No calls in the last 24 hours.</p>`
      }
      <h2>By GPU <small>(calls' run time, last 24 h)</small></h2>
      ${table(
        ["GPU", "cost"],
        byGpu.map(
          (s) =>
            html`<tr>
              <td>${s.label}</td>
              <td>${formatUsd(s.values.reduce<number>((n, v) => n + (v ?? 0), 0))}</td>
            </tr>`,
        ),
        { empty: "No calls." },
      )}
      <h2>Plane containers <small>(their whole lives, idle time included; last 24 h)</small></h2>
      ${table(
        ["app", "function", "GPU", "plane", "containers", "container time", "cost"],
        planeRows.rows.map(
          (r) =>
            html`<tr>
              <td>${r.app}</td>
              <td>${r.function}</td>
              <td>${r.gpu ?? "—"}</td>
              <td>${r.plane}</td>
              <td>${r.containers}</td>
              <td>${seconds(r.seconds)}</td>
              <td>${formatUsd(r.costUsd)}</td>
            </tr>`,
        ),
        { empty: "No plane containers." },
      )}
      ${notCountedNote(planeRows.notCounted)}`;
    return c.html(layout("Usage", body, viewer(c)));
  });

  routes.get("/apps/:app/events", (c) => liveEvents(c, appOf(c).name));

  // Any other path here is no page of the dashboard's (else the gateway's 404 would call "_tandem" an app); a page
  // asked with another method than GET is one the method does not fit, not a page that is missing.
  routes.all("*", (c) => {
    const base = DASHBOARD.base;
    if (c.req.method !== "GET" && c.req.method !== "HEAD") {
      throw new MethodNotAllowedError(`the dashboard's pages take GET, not ${c.req.method} (${base}/login also takes POST, ${base}/logout only POST)`);
    }
    throw new NotFoundError(
      `the dashboard has no page ${c.req.path} (pages: ${base}/, ${base}/apps/<app>, ${base}/planes, ${base}/schedules, ${base}/agents, ${base}/stores, ${base}/usage)`,
    );
  });

  return routes;
}

/**
 * The calls every open page of one app (or function) in this isolate shows: one read of the ledger's shards each
 * `DASHBOARD_DEFAULTS.livePollMs`, however many pages watch (gateway/isolate-shared.ts), keyed by environment, app
 * and function.
 */
const liveCalls = isolateShared(DASHBOARD_DEFAULTS.livePollMs, (env: Env, key: string) => {
  const [, app, fn] = JSON.parse(key) as [string, string, string | null];
  return recentCalls(env, { app, ...(fn === null ? {} : { function: fn }), limit: DASHBOARD_DEFAULTS.callsShown });
});

/**
 * A page's live stream (server-sent events): `call` with a call's row whenever it changes (an app's or one
 * function's calls, or one call), `log` with each new log line (the logs' follow: gateway/log-routes.ts).
 */
async function liveEvents(c: Ctx, app: string): Promise<Response> {
  const q = onceEach(c.req.queries(), EVENT_FIELDS, "a page's live stream");
  const callId = q.call;
  if (callId !== undefined && !CALL_ID_PATTERN.test(callId)) throw new InvalidRequestError(`"call": ${echoedText(callId)} is not a call id`);
  if (q.logs !== undefined && q.logs !== "1")
    throw new InvalidRequestError(`"logs": ${echoedText(q.logs)} is not 1: ask for the logs page's lines with logs=1`);
  const filter: LogFilter | undefined =
    callId !== undefined
      ? { callId, limit: 1 }
      : q.container !== undefined
        ? { containerId: checkedContainerId(q.container), limit: 1 }
        : q.logs === "1"
          ? // The logs page's filters but since and limit (its new lines): the stream's own `since` is when the page was drawn.
            { ...pageLogFilter(liveLogFields(q)).filter, limit: 1 }
          : undefined;
  const watchCalls = q.container === undefined && q.logs !== "1";
  // What the page already shows: calls created and ended before it was drawn (a little slack for clocks that differ).
  if (q.since !== undefined && !/^\d{1,15}$/.test(q.since))
    throw new InvalidRequestError(`"since": "${q.since.slice(0, 40)}" is not a time: give milliseconds since the epoch, as the page's own stream does`);
  const since = Number(q.since ?? 0) - 1000;
  const store = logStoreFor(c.env, app);
  const follower = filter ? new LogFollower(store, filter, (await store.read(filter)).lastSeq) : undefined;
  const sent = new Map<string, string>();
  const env = c.env;
  return eventStream(
    c,
    (live) => {
      const calls = async () => {
        while (live.open) {
          if (await live.revoked()) return;
          const rows: DashboardCallRow[] =
            callId !== undefined
              ? await ledgerFor(env, callId)
                  .get(callId, 0)
                  .then((r) => (r && r.app === app ? [rowOf(r)] : []))
              : await liveCalls(env, JSON.stringify([environmentOf(env), app, q.function ?? null]));
          for (const row of [...rows].reverse()) {
            if (row.createdAt < since && (row.finishedAt ?? since) < since && !sent.has(row.callId)) continue;
            const state = `${row.status}/${row.attempts}/${row.finishedAt}`;
            if (sent.get(row.callId) === state) continue;
            sent.set(row.callId, state);
            live.send("call", { callId: row.callId, html: String(await callRow(row)) });
          }
          await new Promise((resolve) => setTimeout(resolve, DASHBOARD_DEFAULTS.livePollMs));
        }
      };
      const logs = async () => {
        for (;;) {
          const lines = await follower!.next();
          if (lines === undefined || (await live.revoked())) return;
          if (lines.length === 0) live.keepAlive();
          for (const { seq: _seq, ...line } of lines) live.send("log", { html: String(await logLine(line)) });
        }
      };
      if (watchCalls) calls().catch(live.fail);
      if (follower) logs().catch(live.fail);
    },
    () => follower?.stop(),
  );
}

/**
 * The agents page's live stream: `sessions` with the sessions' table whenever it changes (a socket opens or closes, a
 * session joins a room or is active), from every agent hub of the apps the viewer may see, each `livePollMs`.
 */
/**
 * A page's live stream of one section (the element of id `id`): drawn with `draw` from what `read` answers (shared by
 * the isolate's pages of the same viewer), and sent as a `section` event each time it reads otherwise.
 */
function liveSection<T>(c: Ctx, what: string, id: string, read: (env: Env, key: string) => Promise<T>, draw: (data: T) => Html): Response {
  onceEach(c.req.queries(), [], what);
  const env = c.env;
  const key = viewerKey(c);
  return eventStream(c, (live) => {
    const section = async () => {
      let shown: string | undefined;
      while (live.open) {
        if (await live.revoked()) return;
        // The first read is sent too: something may have changed between the page's read and this one.
        const drawn = String(await draw(await read(env, key)));
        if (drawn !== shown) live.send("section", { id, html: drawn });
        shown = drawn;
        await new Promise((resolve) => setTimeout(resolve, DASHBOARD_DEFAULTS.livePollMs));
      }
    };
    section().catch(live.fail);
  });
}

/** What a live section's shared read is keyed by: the environment and the apps the viewer may see. */
function viewerKey(c: Ctx): string {
  return JSON.stringify([environmentOf(c.env), principalOf(c).apps]);
}

/** What a page's live stream's events are sent with: see `eventStream`. */
interface LiveStream {
  /** False once the stream ended (the page went, its token was revoked, a read failed): stop sending. */
  readonly open: boolean;
  send(event: string, data: unknown): void;
  /** A comment that keeps an idle connection from being taken for a dead one. */
  keepAlive(): void;
  /** Whether the token behind the page was revoked; if so the stream ends, saying why. */
  revoked(): Promise<boolean>;
  /** Ends the stream with `err` (a read that failed): the page's EventSource reconnects. */
  fail(err: unknown): void;
}

/**
 * A page's live stream (server-sent events) that `start` sends on; `stop` runs once it ends, however it ends. Once the
 * token behind the page is revoked (its sessions with it), the stream ends, saying why (an `ended` event: the page
 * shows it and stops); a reconnect gets 401.
 */
function eventStream(c: Ctx, start: (live: LiveStream) => void, stop: () => void = () => {}): Response {
  const encoder = new TextEncoder();
  const env = c.env;
  const principal = principalOf(c);
  let stopped = false;
  const end = () => {
    stopped = true;
    stop();
  };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const live: LiveStream = {
        get open() {
          return !stopped;
        },
        send: (event, data) => {
          if (!stopped) controller.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
        },
        keepAlive: () => {
          if (!stopped) controller.enqueue(encoder.encode(": keep-alive\n\n"));
        },
        revoked: async () => {
          if (stopped || (await principalIsLive(env, principal))) return false;
          live.send("ended", { message: revokedWhileOpen(principal).message });
          end();
          controller.close();
          return true;
        },
        fail: (err) => {
          if (stopped) return;
          end();
          controller.error(err);
        },
      };
      controller.enqueue(encoder.encode(": live\n\n"));
      start(live);
    },
    cancel: end,
  });
  return new Response(body, { headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store" } });
}

/** The agents' sessions of the apps `apps` allows (null: all), each with its app. */
/** An app's functions (or a class's methods) with their calls, errors, retries and times over the last hour. */
function functionsTable(app: string, fns: App["callables"], series: Awaited<ReturnType<typeof callSeries>>, empty: string): Html {
  const totals = new Map(totalsByFunction(series.points).map((t) => [t.function, t]));
  const rows = fns.map((fn) => {
    const t = totals.get(fn.name);
    return html`<tr>
      <td class="name"><a href="${dashboardPath("apps", app, "functions", fn.name)}">${fn.name}</a></td>
      <td>${fn.spec.tier}</td>
      <td>${t?.calls ?? 0}</td>
      <td>${t?.errors ?? 0}</td>
      <td>${t?.retries ?? 0}</td>
      <td>${t ? ms(t.meanRunMs) : "—"}</td>
      <td>${t ? ms(t.maxRunMs) : "—"}</td>
    </tr>`;
  });
  return table(["function", "tier", "calls", "errors", "retries", "mean start to end", "longest start to end"], rows, { empty });
}

/**
 * A class's page (`…/functions/Model`): its methods, each with its own page, and its warm containers, which serve them
 * all (a method's page shows the same); the logs and usage that name the class by itself link here.
 */
async function classPage(c: Ctx, app: string, cls: string, methods: App["callables"]): Promise<Html> {
  const onPlanes = methods[0]!.spec.tier === "plane";
  const [series, planes] = await Promise.all([callSeries(c.env, { app }), onPlanes ? knownPlanes(c.env) : Promise.resolve([])]);
  const now = warmNow(planes, app, methods[0]!.name);
  const body = html`<p><a href="${dashboardPath("apps", app)}">← ${app}</a></p>
    <h2>Methods <small>(last hour)</small></h2>
    ${functionsTable(app, methods, series, "This class has no methods.")} ${warmSection(onPlanes, now, "; each serves every method")}
    <p><a href="${dashboardPath("apps", app, "logs")}?function=${encodeURIComponent(cls)}">Its logs, live</a></p>`;
  return layout(`Class ${app}.${cls}`, body, viewer(c));
}

/** A function's (or class's) warm containers now, from the planes' last heartbeats; an edge one has none. */
function warmSection(onPlanes: boolean, now: ReturnType<typeof warmNow>, note: string): Html {
  if (!onPlanes) return html`<p class="empty">Runs at the edge, in the gateway's isolate: no containers.</p>`;
  return html`<h2>Warm containers now <small>(from the planes' last heartbeats${note})</small></h2>
    ${facts([
      ["warm now", now.busy + now.idle],
      ["busy", now.busy],
      ["idle", now.idle],
      ["planes", now.planes],
    ])}`;
}

/** The home page's empty state: a token limited to some apps is told which, as none of them may be deployed yet. */
function noAppsText(allowed: string[] | null): string {
  if (allowed === null) return "No apps are deployed here.";
  if (allowed.length === 0) return "This token may see no apps.";
  return `None of the apps this token may see (${allowed.join(", ")}) is deployed here.`;
}

async function agentSessionsOf(env: Env, apps: string[] | null): Promise<AgentSession[]> {
  const withAgents = visibleApps(apps).filter((a) => a.agents.length > 0);
  return (await Promise.all(withAgents.map(async (app) => (await agentSessions(env, app)).map((s) => ({ ...s, app: app.name }))))).flat();
}
type AgentSession = Awaited<ReturnType<typeof agentSessions>>[number] & { app: string };

/**
 * The sessions the agents pages open in this isolate show: one read of the hubs each `DASHBOARD_DEFAULTS.livePollMs`
 * however many pages watch, keyed by environment and the apps the viewer may see.
 */
const liveSessions = isolateShared(DASHBOARD_DEFAULTS.livePollMs, (env: Env, key: string) => {
  const [, apps] = JSON.parse(key) as [string, string[] | null];
  return agentSessionsOf(env, apps);
});

/**
 * The schedules the schedules pages open in this isolate show: one read of the scheduler each
 * `DASHBOARD_DEFAULTS.livePollMs` however many pages watch, keyed as `liveSessions` is.
 */
const liveSchedules = isolateShared(DASHBOARD_DEFAULTS.livePollMs, async (env: Env, key: string) => {
  const [, apps] = JSON.parse(key) as [string, string[] | null];
  const listed = (await schedulerFor(env).list(undefined, Date.now())) as ScheduleInfo[];
  return listed.filter((s) => apps === null || apps.includes(s.app));
});

/** The schedules page's table: the page and its live stream draw it with this. */
function schedulesTable(listed: ScheduleInfo[]): Html {
  const rows = listed.map(
    (s) =>
      html`<tr>
        <td class="name"><a href="${dashboardPath("apps", s.app, "functions", s.function)}">${s.app}.${s.function}</a></td>
        <td>${s.schedule}</td>
        <td>${s.nextRuns.map(time).join(", ")}</td>
        <td>
          ${
            s.lastRun
              ? html`<a href="${dashboardPath("calls", s.lastRun.callId)}">${time(s.lastRun.scheduledAt)}</a>
                  <span class="badge ${s.lastRun.status}">${s.lastRun.status}</span>`
              : "not yet"
          }
        </td>
        <td title="runs skipped while the previous one ran; runs missed while nothing ticked">${s.skipped} / ${s.missed}</td>
        <td class="error">${s.lastRun?.error ? visibleMarks(errorSummary(s.lastRun.error.message)) : ""}</td>
      </tr>`,
  );
  return table(["function", "schedule", "next runs", "last run", "skipped / missed", "last error"], rows, { empty: "No scheduled functions." });
}

/** The agents page's table: the page and its live stream draw it with this. */
function sessionsTable(sessions: AgentSession[]): Html {
  const rows = sessions.map(
    (s) =>
      html`<tr data-session="${s.fingerprint}">
        <td>${s.app}</td>
        <td>${s.label}</td>
        <td>
          <a href="${dashboardPath("apps", s.app, "logs")}?session=${s.fingerprint}" title="its log lines"
            ><code title="the first 12 hex digits of the SHA-256 of the session's id">${s.fingerprint}</code></a
          >
        </td>
        <td><span class="badge ${s.sockets ? "running" : ""}">${s.sockets ? `live (${s.sockets})` : "idle"}</span></td>
        <td>${s.rooms.join(", ")}</td>
        <td>${time(s.lastActive)}</td>
      </tr>`,
  );
  return table(["app", "agent", "session", "sockets", "rooms", "last active"], rows, { empty: "No agent sessions." });
}

/**
 * A function's containers up now, summed over the planes that reported lately (a plane that stopped reporting is
 * not counted: its containers may be gone), from each plane's last heartbeat.
 */
function warmNow(planes: PlaneInfo[], app: string, fn: string, at = Date.now()): { busy: number; idle: number; planes: number } {
  const now = { busy: 0, idle: 0, planes: 0 };
  for (const plane of planes) {
    if (at - plane.lastSeen >= PLANE_DEFAULTS.staleMs) continue; // a draining plane's containers still count
    const mine = plane.warm?.find((w) => w.app === app && w.function === containerGroup(fn)); // a class method's are its class's
    if (!mine || mine.busy + mine.idle === 0) continue;
    now.busy += mine.busy;
    now.idle += mine.idle;
    now.planes++;
  }
  return now;
}

/**
 * A plane's free cores. CPU is shared (a plane never refuses a container for it), so its containers may reserve more
 * cores than it has: that reads as none free and what they reserve, not as a negative count.
 */
function cpuFree({ total, free }: PlaneInfo["cpu"]): string {
  const cores = (n: number) => String(Math.round(n * 100) / 100);
  return free >= 0 ? `${cores(free)} of ${total}` : `0 of ${total} (shared: its containers reserve ${cores(total - free)})`;
}

function rowOf(r: CallRecord): DashboardCallRow {
  return {
    callId: r.callId,
    app: r.app,
    function: r.function,
    kind: r.kind,
    status: r.status,
    attempts: r.attempts,
    createdAt: r.createdAt,
    startedAt: r.startedAt ?? null,
    finishedAt: r.finishedAt ?? null,
    error: r.error ? { code: r.error.code, message: r.error.remote ? `${r.error.remote.name}: ${r.error.remote.message}` : r.error.message } : null,
    plane: r.plane ?? null,
  };
}

function callFacts(r: CallRecord) {
  const times = callTimes(rowOf(r));
  return facts([
    ["status", html`<span class="badge ${r.status}" data-call-status="${r.callId}">${r.status}</span>`],
    ["function", r.function],
    ["kind", r.kind],
    ["created", time(r.createdAt)],
    ["queued", times.queued],
    ["cold start", times.coldStart],
    ["ran", times.ran],
    ["attempts", r.attempts],
    ["retries", Math.max(0, r.attempts - 1)],
    ...(r.scheduledAt !== undefined ? [["scheduled for", time(r.scheduledAt)] as [string, string]] : []),
  ]);
}

function callError(r: CallRecord) {
  if (!r.error) return "";
  const remote = r.error.remote;
  return html`<h2>Error</h2>
    <p class="problem">${r.error.code}: ${visibleMarks(remote ? `${remote.name}: ${remote.message}` : r.error.message)}</p>
    ${remote?.stack ? html`<pre class="stack">${visibleMarks(remote.stack)}</pre>` : ""}`;
}

/**
 * Calls, errors and the mean time from a call's start to its end (its queue, cold start, run and retries' waits, as the
 * gateway saw them: a call's "ran" is its run alone) over the chart window, one series per function; a bucket without
 * calls is 0 (time: none). Given one function's `durations`, the time chart is its p50, p95 and p99 instead.
 */
function activityCharts({ buckets, points }: CallSeries, durations?: CallDurations) {
  if (points.length === 0) return html`<p class="empty">No calls in the last hour.</p>`;
  const functions = [...new Set(points.map((p) => p.function))].sort();
  const at = new Map(points.map((p) => [`${p.function}@${p.t}`, p]));
  const chartOf = (title: string, unit: string, value: (p: DashboardSeriesPoint | undefined) => number | null): ChartData => ({
    title,
    unit,
    x: buckets.map((t) => t / 1000),
    series: functions.map((fn) => ({ label: fn, values: buckets.map((t) => value(at.get(`${fn}@${t}`))) })),
  });
  // One function's page: its times' percentiles per minute (a minute without ended calls: none).
  const times: ChartData = durations
    ? {
        title: "Time from start to end: p50, p95, p99",
        unit: "ms",
        x: buckets.map((t) => t / 1000),
        series: (["p50", "p95", "p99"] as const).map((p) => ({ label: p, values: buckets.map((t) => durations.buckets.get(t)?.[p] ?? null) })),
      }
    : chartOf("Mean time from start to end", "ms", (p) => (p?.ended ? Math.round(p.runMsSum / p.ended) : null));
  return html`${chart(chartOf("Calls", "per minute", (p) => p?.calls ?? 0))} ${chart(chartOf("Errors", "per minute", (p) => p?.errors ?? 0))} ${chart(times)}`;
}

/**
 * One function's calls' run time over the usage window, bucket by bucket (a plane call's time in its container, not its
 * wait for one: `workMsSum`), and what it cost by its price per second.
 */
interface FunctionCost {
  app: string;
  /** `app.function`, with its GPU when it asks for one. */
  label: string;
  /** What it runs on, as the price table names it: a GPU type, "plane, no GPU", or "edge (not charged)". */
  kind: string;
  seconds: number[];
  cost: number[];
}

/** Each function of `app` with calls in `points`, its run time and cost in each of `buckets`. */
function costByFunction(app: string, points: DashboardSeriesPoint[], buckets: number[]): FunctionCost[] {
  const byFn = new Map<string, Map<number, number>>();
  for (const p of points) byFn.set(p.function, (byFn.get(p.function) ?? new Map<number, number>()).set(p.t, p.workMsSum / 1000));
  return [...byFn].map(([fn, at]) => {
    const price = pricePerSecond(app, fn);
    const seconds = buckets.map((t) => at.get(t) ?? 0);
    return { app, label: `${app}.${fn}${price.gpu ? ` (${price.gpu})` : ""}`, kind: price.kind, seconds, cost: seconds.map((s) => s * price.usd) };
  });
}

/** A chart's series: each function's `field` summed bucket by bucket under its label (`labelOf`), in the order labels first come. */
function summedBy(functions: FunctionCost[], labelOf: (f: FunctionCost) => string, field: "seconds" | "cost"): ChartData["series"] {
  const sums = new Map<string, number[]>();
  for (const f of functions) {
    const sum = sums.get(labelOf(f));
    if (!sum) sums.set(labelOf(f), [...f[field]]);
    else f[field].forEach((v, i) => (sum[i]! += v));
  }
  return [...sums].map(([label, summed]) => ({ label, values: summed }));
}

/** What the logs page may be asked to show, as the logs API takes each (`LogQuerySchema`). */
const PAGE_LOG_FIELDS = ["function", "session", "source", "search", "since", "limit"] as const;
type PageLogFields = Partial<Record<(typeof PAGE_LOG_FIELDS)[number], string>>;
/** Those of `query` that choose a logs page's new lines too (all but since and limit: they are new). */
function liveLogFields(query: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries((["function", "session", "source", "search"] as const).flatMap((f) => (query[f] === undefined ? [] : [[f, query[f]]])));
}

/** What a page's live stream may be asked: a call's, a container's, the logs page's (`logs=1`) or an app's calls. */
const EVENT_FIELDS = ["call", "container", "logs", ...PAGE_LOG_FIELDS] as const;

/**
 * The logs page's filters from its query (`onceEach` took it), each read as the logs API reads it: a bad value is a 400
 * that names it. A field left empty in the form is none. The page shows the last 200 lines unless `limit` says.
 */
function pageLogFilter(query: PageLogFields): { filter: LogFilter; given: PageLogFields } {
  const given = Object.fromEntries(Object.entries(query).filter(([, value]) => value !== "")) as PageLogFields;
  const parsed = LogQuerySchema.safeParse(given, { reportInput: true });
  if (!parsed.success) throw new InvalidRequestError(describeIssues(parsed.error, "field", LogQuerySchema));
  return { filter: logFilterOf(parsed.data, DASHBOARD_DEFAULTS.logLinesShown), given };
}

/** The logs page's filters, as a form that asks the page again (a GET: the address says what is shown). */
function logFilterForm(given: PageLogFields, names: string[]): Html {
  return html`<form class="filters" method="get">
    <label>function <input name="function" list="log-functions" value="${given.function ?? ""}" placeholder="any" /></label>
    <datalist id="log-functions">${names.map((n) => html`<option value="${n}"></option>`)}</datalist>
    <label
      >source
      <select name="source">
        <option value="">any</option>
        ${LOG_SOURCES.map((s) => html`<option value="${s}" ${given.source === s ? "selected" : ""}>${s}</option>`)}
      </select></label
    >
    <label>text <input name="search" type="search" value="${given.search ?? ""}" placeholder="contains" /></label>
    <label>since <input name="since" value="${given.since ?? ""}" placeholder="2h, 30m, a date" /></label>
    ${given.session ? html`<input type="hidden" name="session" value="${given.session}" />` : ""}
    <button type="submit">Show</button>
  </form>`;
}

/** A container id as the logs API takes it (`LogQuerySchema`): 400 for one no container could have, as that API answers. */
function checkedContainerId(container: string): string {
  const parsed = LogQuerySchema.safeParse({ container }, { reportInput: true });
  if (!parsed.success) throw new InvalidRequestError(describeIssues(parsed.error, "field", LogQuerySchema));
  return container;
}

/** The page's app: 403 for a token restricted to other apps (before whether it exists), 404 for none. */
function appOf(c: Ctx) {
  const name = c.req.param("app") ?? "";
  requireApp(principalOf(c), name);
  return registry().app(name);
}

function mayUse(principal: Principal, scope: "deploy" | "admin"): boolean {
  return scopeAllows(principal.scope, scope);
}

/** A plane's health as the planes page says it (`planeState`): an unavailable or not yet ready plane's with why. */
function planeHealthWord(p: PlaneInfo, now = Date.now()): string {
  const state = planeState(p, p.lastSeen, now);
  if (state === "unavailable") return `unavailable: ${p.unavailable}`;
  return state === "not ready" ? `not ready: ${p.notReady}` : state;
}

/** The planes a usage table lacks, and why (each keeps its own ledger, read only from a plane that answers). */
function notCountedNote(planes: readonly PlaneNotCounted[]) {
  if (planes.length === 0) return "";
  return html`<p class="empty">
    Not counted: ${planes.map((p, i) => html`${i ? "; " : ""}plane ${p.planeId} (${p.region}), ${p.why}`)}. A plane keeps its own usage; it is counted again
    once the plane runs and answers.
  </p>`;
}

async function usageRows(c: Ctx, app?: string) {
  const since = Date.now() - DASHBOARD_DEFAULTS.usageWindowMs;
  const { rows, notCounted } = await usageFromPlanes({ env: c.env, config: c.var.config }, { since, ...(app ? { app } : {}) });
  return { rows: rows.filter((r) => mayReach(principalOf(c), r.app)), notCounted };
}

/** A page's live stream, from the time the page was drawn (`since`): what changed after that. */
function liveUrl(app: string, query: Record<string, string>): string {
  const q = new URLSearchParams({ ...query, since: String(Date.now()) });
  return `${dashboardPath("apps", app, "events")}${q.size ? `?${q}` : ""}`;
}

/** Who is logged in, and their scope, for the page's header; none on a page answered before the guard knew (a bad token's 401). */
function viewer(c: Ctx): { who?: string; scope?: TokenScope; wholeGateway?: boolean } {
  const p = c.get("principal");
  return p ? { who: `${p.name} (${p.scope}${p.apps ? `, ${p.apps.join(", ")}` : ""})`, scope: p.scope, wholeGateway: p.apps === null } : {};
}
