/**
 * The dashboard's pages, rendered on the server with hono's `html` helper:
 * one layout (a nav that folds on a phone-width screen, tables that scroll
 * inside their own box), and the fragments the live stream sends again as
 * they change (a call's row, a log line), so the page and its updates are
 * drawn by the same code. Charts are a `<div data-chart>` holding their data
 * as JSON; the page's script draws them with uPlot.
 */
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import type { DashboardCallRow, LogLine, TokenScope } from "../sdk/protocol.js";
import { DASHBOARD, scopeAllows } from "../sdk/protocol.js";
import { DASHBOARD_DEFAULTS, LOG_LIMITS } from "../sdk/defaults.js";
import { formatMs } from "../sdk/value-text.js";

export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** A chart: its x values (seconds since the epoch) and one series of y values per label. */
export interface ChartData {
  title: string;
  unit: string;
  x: number[];
  series: { label: string; values: (number | null)[] }[];
}

const base = DASHBOARD.base;

/** A path under the dashboard, each part encoded. */
export function dashboardPath(...parts: string[]): string {
  return `${base}/${parts.map(encodeURIComponent).join("/")}`;
}

/** The pages' icon, inline: without one a browser asks for /favicon.ico, a 404 in its console. */
const icon = html`<link
  rel="icon"
  href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Ccircle cx='8' cy='8' r='7' fill='%232f6fde'/%3E%3C/svg%3E"
/>`;

/**
 * The page around `body`; `live`: the URL of the page's event stream; `scope`: the viewer's, whose menu leaves out the
 * pages it would be refused (planes need admin, usage deploy, the stores a token for every app: `wholeGateway`).
 */
export function layout(title: string, body: Html, options: { who?: string; scope?: TokenScope; wholeGateway?: boolean; live?: string } = {}): Html {
  const may = (needs: TokenScope) => options.scope === undefined || scopeAllows(options.scope, needs);
  // The stores (volumes, dicts, queues) are the whole gateway's: a token for some apps only is refused them.
  const stores = options.wholeGateway !== false ? html`<a href="${base}/stores">Stores</a>` : "";
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title} · Tandem</title>
        ${icon}
        <link rel="stylesheet" href="${base}/assets/uplot.css" />
        <link rel="stylesheet" href="${base}/assets/dashboard.css" />
      </head>
      <body ${options.live ? raw(`data-live="${escapeAttr(options.live)}"`) : ""}>
        <a class="skip" href="#main">Skip to content</a>
        <header>
          <a class="brand" href="${base}/">Tandem</a>
          <nav>
            <a href="${base}/">Apps</a>${may("admin") ? html`<a href="${base}/planes">Planes</a>` : ""}<a href="${base}/schedules">Schedules</a
            ><a href="${base}/agents">Agents</a>${stores}${may("deploy") ? html`<a href="${base}/usage">Usage</a>` : ""}
          </nav>
          ${
            options.who
              ? html`<form method="post" action="${base}/logout" class="who"><span>${options.who}</span><button type="submit">Log out</button></form>`
              : ""
          }
        </header>
        <main id="main" tabindex="-1">
          <h1>${title}</h1>
          ${body}
        </main>
        <script src="${base}/assets/uplot.js"></script>
        <script src="${base}/assets/dashboard.js"></script>
      </body>
    </html>`;
}

/** The login page: a token to paste, and what went wrong with the last try. */
export function loginPage(problem?: string): Html {
  return loginShell(
    html`${problem ? html`<p class="problem" role="alert">${problem}</p>` : ""}
      <p>Run <code>tandem dashboard</code> for a link that logs you in, or paste an API token.</p>
      <form method="post" action="${DASHBOARD.login}">
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autocomplete="off" placeholder="tk-….ts-…" required />
        <button type="submit">Log in</button>
      </form>`,
  );
}

/**
 * The page a login link shows when another site's page led the browser to it: a button that logs in with its code
 * (posted from this page, so from the gateway's own site), as the link alone would have.
 */
export function loginConfirmPage(code: string): Html {
  return loginShell(
    html`<p>You came to this login link from another site's page. Log in only if you ran <code>tandem dashboard</code> for it yourself.</p>
      <form method="post" action="${DASHBOARD.login}">
        <input type="hidden" name="code" value="${code}" />
        <button type="submit">Log in</button>
      </form>`,
  );
}

/** A page of the login's own: no navigation, `body` under the dashboard's name. */
function loginShell(body: Html): Html {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>Log in · Tandem</title>
        ${icon}
        <link rel="stylesheet" href="${base}/assets/dashboard.css" />
      </head>
      <body>
        <main class="login">
          <h1>Tandem dashboard</h1>
          ${body}
        </main>
      </body>
    </html>`;
}

/** A table inside a box of its own that scrolls sideways, so a wide table never widens the page. */
export function table(headings: string[], rows: Html[], options: { id?: string; keep?: number; empty?: string } = {}): Html {
  return html`<div class="table">
    <table>
      <thead>
        <tr>
          ${headings.map((h) => html`<th>${h}</th>`)}
        </tr>
      </thead>
      <tbody ${options.id ? raw(`id="${escapeAttr(options.id)}"`) : ""} ${options.keep ? raw(`data-keep="${options.keep}"`) : ""}>
        ${rows}
      </tbody>
    </table>
    ${rows.length === 0 ? html`<p class="empty">${options.empty ?? "Nothing yet."}</p>` : ""}
  </div>`;
}

/**
 * Where a call's time went, as the dashboard shows it: queued (waiting to start at the gateway, and on its plane for a
 * container), its container's cold start, and its run. A plane call's come from its plane (its last attempt); an edge
 * call's from the gateway, whose "ran" holds any retries' waits.
 */
export function callTimes(call: Pick<DashboardCallRow, "createdAt" | "startedAt" | "finishedAt" | "plane">): {
  queued: string;
  coldStart: string;
  ran: string;
} {
  const { createdAt, startedAt, finishedAt, plane } = call;
  const queued = startedAt === null ? null : startedAt - createdAt + (plane?.queueMs ?? 0);
  const ran = plane?.runMs ?? (startedAt !== null && finishedAt !== null ? finishedAt - startedAt : null);
  const shown = (value: number | null | undefined) => (value === null || value === undefined ? "—" : ms(value));
  return { queued: shown(queued), coldStart: shown(plane?.coldStartMs), ran: shown(ran) };
}

/** One call's row in a calls table: the live stream sends it again whenever the call changes. */
export function callRow(call: DashboardCallRow): Html {
  const times = callTimes(call);
  return html`<tr data-call-id="${call.callId}" class="status-${call.status}">
    <td><a href="${dashboardPath("calls", call.callId)}">${call.callId}</a></td>
    <td class="name">${call.function}</td>
    <td><span class="badge ${call.status}">${call.status}</span></td>
    <td>${time(call.createdAt)}</td>
    <td>${times.queued}</td>
    <td>${times.coldStart}</td>
    <td>${times.ran}</td>
    <td>${Math.max(0, call.attempts - 1)}</td>
    <td class="error">${call.error ? errorCell(`${call.error.code}: ${visibleMarks(errorSummary(call.error.message))}`) : ""}</td>
  </tr>`;
}

/** An error in a table's cell: two lines at most (a row stays a row on a phone), all of it in its title. */
function errorCell(summary: string) {
  return html`<span title="${summary}">${summary}</span>`;
}

/** An error's first line, cut to `DASHBOARD_DEFAULTS.errorChars`, for a table's cell: the call's page has all of it. */
export function errorSummary(message: string): string {
  const first = message.split("\n")[0]!;
  return first.length > DASHBOARD_DEFAULTS.errorChars ? `${first.slice(0, DASHBOARD_DEFAULTS.errorChars)}…` : first;
}

export const CALL_HEADINGS = ["call", "function", "status", "created", "queued", "cold start", "ran", "retries", "error"];

/**
 * Text a function wrote (a log line, an error's message or stack) with each mark that reorders text shown as its
 * escape, `\u202e`, as `tandem logs` shows it: a bidi override would make `invoice\u202Efdp.exe` read as
 * `invoiceexe.pdf`. The page's markup is escaped apart from this (hono's `html`).
 * @example visibleMarks("a\u202Eb"); // "a\\u202eb"
 */
export function visibleMarks(text: string): string {
  return text.replace(/[\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

/** One log line: the live stream sends each new one. */
export function logLine(line: LogLine): Html {
  // One line of markup: the text keeps its own spaces and line breaks (pre-wrap), the markup around it adds none.
  const container = line.containerId
    ? html` <a class="container" href="${dashboardPath("apps", line.app, "containers", line.containerId)}">${line.containerId.slice(0, 12)}</a>`
    : "";
  return html`<li class="log ${line.source}">
    <time>${time(line.time)}</time> <span class="where">${line.tier}${line.function ? ` ${line.function}` : ""}</span>${container}${
      line.session ? html` <span class="session" title="the agent session's fingerprint">${line.session}</span>` : ""
    }
    <span class="text">${visibleMarks(line.text)}</span>
  </li>`;
}

/** A log: its lines, and where the live stream adds new ones, the oldest let go past `LOG_LIMITS.maxLimit` (a read's most). */
export function logList(lines: LogLine[], empty = "No lines yet."): Html {
  return html`<ol id="logs" class="logs" data-keep="${LOG_LIMITS.maxLimit}">
      ${lines.map(logLine)}
    </ol>
    ${lines.length === 0 ? html`<p class="empty" id="logs-empty">${empty}</p>` : ""}`;
}

/** A chart: uPlot draws it from the JSON it holds. */
export function chart(data: ChartData): Html {
  // `<` escaped so the data cannot close the script element.
  const json = JSON.stringify(data).replace(/</g, "\\u003c");
  // What a screen reader says of it: each series' latest and highest value, as the drawing shows them.
  const said = data.series
    .map((s) => {
      const values = s.values.filter((v): v is number => v !== null);
      return values.length ? `${s.label}: latest ${values.at(-1)}, highest ${Math.max(...values)}` : `${s.label}: none`;
    })
    .join("; ");
  return html`<figure class="chart">
    <figcaption>${data.title} <small>(${data.unit}; times in UTC)</small></figcaption>
    <div data-chart role="img" aria-label="${`${data.title} (${data.unit}), ${said || "no data"}`}">
      ${raw(`<script type="application/json">${json}</script>`)}
    </div>
  </figure>`;
}

/** A small fact: a label and its value, in a row of them. */
export function facts(pairs: [string, Html | string | number][]): Html {
  return html`<dl class="facts">
    ${pairs.map(
      ([k, v]) =>
        html`<div>
          <dt>${k}</dt>
          <dd>${v}</dd>
        </div>`,
    )}
  </dl>`;
}

export function time(at: number): string {
  return new Date(at)
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, "Z");
}

/** A duration as the CLI writes it (`formatMs`): `850 ms`, `4.65 s`, `61.2 s`. */
export function ms(value: number): string {
  return formatMs(Math.round(value));
}

/**
 * Container time, in seconds at any size: a column of it reads in one unit (`2.3 s` beside `60.5 s`, not `2331 ms`).
 * @example seconds(2.331); // "2.3 s"; seconds(86_400); // "86,400.0 s"
 */
export function seconds(value: number): string {
  return `${value.toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 })} s`;
}

function escapeAttr(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
}
