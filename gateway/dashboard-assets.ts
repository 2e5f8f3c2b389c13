/**
 * The files the dashboard's pages load: uPlot (bundled as text from the
 * package, `import … with { type: "text" }`), the stylesheet, and the page
 * script, which draws each chart and applies the live stream's updates.
 * Nothing is built for the browser: what is here is what it runs.
 */
import uplotScript from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import uplotStyle from "uplot/dist/uPlot.min.css" with { type: "text" };
import { DASHBOARD_DEFAULTS } from "../sdk/defaults.js";

const STYLE = `
*, *::before, *::after { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; padding: .6rem 1rem; background: #1d2330; color: #fff; }
.skip { position: absolute; left: -999px; top: .4rem; padding: .3rem .6rem; background: #fff; color: #2457c5; border-radius: 4px; z-index: 2; }
.skip:focus { left: .5rem; }
main:focus { outline: none; }
header a { color: #cfd6e4; text-decoration: none; }
header a:hover { color: #fff; }
.brand { font-weight: 700; color: #fff; }
nav { display: flex; flex-wrap: wrap; gap: .25rem .9rem; flex: 1 1 auto; }
.who { display: flex; gap: .5rem; align-items: center; font-size: .85rem; color: #cfd6e4; }
.who button { font-size: .8rem; white-space: nowrap; }
main { padding: 1rem; max-width: 1400px; margin: 0 auto; }
h1 { font-size: 1.35rem; margin: .2rem 0 1rem; overflow-wrap: anywhere; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
a { color: #2457c5; }
/* A table wider than the screen scrolls in its box; a shadow at an edge says more columns are there (it goes at the end). */
.table { overflow-x: auto; border: 1px solid #dde1e8; border-radius: 6px; background:
  linear-gradient(to right, #fff 30%, #fff0) left / 2.5rem 100% no-repeat local,
  linear-gradient(to left, #fff 30%, #fff0) right / 2.5rem 100% no-repeat local,
  radial-gradient(farthest-side at 0 50%, #0002, #0000) left / .8rem 100% no-repeat scroll,
  radial-gradient(farthest-side at 100% 50%, #0002, #0000) right / .8rem 100% no-repeat scroll, #fff; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #eef0f4; white-space: nowrap; }
td.error { white-space: normal; overflow-wrap: anywhere; min-width: 8rem; max-width: 32rem; color: #a12a2a; }
td.name { white-space: normal; overflow-wrap: anywhere; min-width: 6rem; }
/* Room for two readable lines of an error beside a call's eight other columns, where the page has it. */
@media (min-width: 1240px) { td.error { min-width: 14rem; } }
td.error span { display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 2; line-clamp: 2; overflow: hidden; }
.empty { padding: .5rem .8rem; color: #5d6577; margin: 0; }
.badge { padding: .05rem .45rem; border-radius: 9px; font-size: .8rem; background: #e8ebf1; }
.badge.succeeded { background: #ddf3e4; color: #17663a; }
.badge.failed, .badge.timed_out { background: #fbe1e1; color: #a12a2a; }
.badge.running, .badge.pending { background: #e2ecfb; color: #2457c5; }
.facts { display: flex; flex-wrap: wrap; gap: .5rem; margin: 0 0 1rem; }
.facts div { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: .4rem .7rem; min-width: 7rem; }
dt { font-size: .75rem; color: #5d6577; } dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.chart { margin: 0 0 1rem; background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: .5rem; }
.chart figcaption { font-weight: 600; margin-bottom: .3rem; }
[data-chart] { width: 100%; min-height: 200px; overflow: hidden; }
/* The legend wraps inside its chart, a long name too (on a phone it ran past the box, its entries out of reach). */
[data-chart] .u-legend { max-width: 100%; }
[data-chart] .u-legend th, [data-chart] .u-legend td { white-space: normal; overflow-wrap: anywhere; border: 0; padding: .1rem .25rem; }
[data-chart] .u-legend.u-inline tr { max-width: 100%; }
pre { background: #1d2330; color: #f1f3f7; padding: .8rem; border-radius: 6px; white-space: pre-wrap; overflow-wrap: anywhere; font-size: .82rem; }
.logs { list-style: none; margin: 0; padding: .4rem .6rem; background: #10141c; color: #e2e6ee; border-radius: 6px;
  font: .8rem/1.5 ui-monospace, monospace; max-height: 60vh; overflow-y: auto; }
.log { overflow-wrap: anywhere; } .log .text { white-space: pre-wrap; }
.log time { color: #7d8799; } .log .where { color: #8fb4ff; } .log .container { color: #d5a8ff; } .log .session { color: #9fd39f; }
.log.stderr .text { color: #ff9d9d; } .log.system .text { color: #ffd27d; }
.problem { background: #fbe1e1; color: #a12a2a; padding: .5rem .8rem; border-radius: 6px; overflow-wrap: anywhere; }
.login { max-width: 26rem; }
.login form { display: flex; flex-direction: column; gap: .5rem; }
.login input { font: inherit; padding: .45rem; }
.filters { display: flex; flex-wrap: wrap; gap: .5rem .9rem; align-items: flex-end; margin: .4rem 0 .9rem; font-size: .85rem; }
.filters label { display: flex; flex-direction: column; gap: .15rem; color: #5d6577; }
.filters input, .filters select, .filters button { font: inherit; padding: .25rem .4rem; max-width: 12rem; }
.simulated { background: #fff3d6; color: #7a5200; padding: .05rem .45rem; border-radius: 9px; font-size: .8rem; }
code { overflow-wrap: anywhere; }
@media (max-width: 600px) { main { padding: .6rem; } th, td { padding: .35rem .45rem; } }
`;

/**
 * Draws every `[data-chart]` (uPlot, sized to its box: a phone gets a narrow chart) and, when the page has a
 * live stream (`<body data-live>`), puts each call row it sends in place (or at the top), adds each log line, and
 * puts each section it sends (the agents' sessions, the schedules) in place of the element of its id.
 */
const SCRIPT = `
(() => {
  const charts = [];
  // uPlot's own number format keeps 3 decimals: a function's cost per minute ($0.00004) would read 0 on the axis.
  const number = (v) => (v == null ? "--" : v.toLocaleString("en-US", { maximumSignificantDigits: 4 }));
  // uPlot scales a flat 0 (no errors all hour) from 0 to 100, which reads as a percentage: 0 to 1 instead.
  const yRange = (u, min, max) => (min === 0 && max === 0 ? [0, 1] : min == null ? [null, null] : uPlot.rangeNum(min, max, 0.1, true));
  // Dollars as tandem usage writes them, with their sign: a cost axis reads as one.
  const usd = (v) => (v == null ? "--" : "$" + number(v));
  // The y-axis as wide as its longest label: a fixed width cut small costs. uPlot asks again as the plot's height
  // settles, and the labels may change with it (0.00002 … 0.00008 for a first guess, then 0.000025 … 0.000075): the
  // widest asked is kept, so the last labels fit and the sizes still settle.
  const axisWidth = (u, values, i, cycle) => {
    const axis = u.axes[i];
    const longest = (values || []).reduce((a, v) => (v != null && String(v).length > a.length ? String(v) : a), "");
    u.ctx.font = axis.font[0];
    const width = Math.ceil(axis.ticks.size + axis.gap + u.ctx.measureText(longest).width / devicePixelRatio) + 4;
    return cycle > 1 ? Math.max(axis._size, width) : width;
  };
  // Seven colours, then the same seven dashed, then dotted: a chart of up to 21 series (a usage chart's functions)
  // draws each its own way, its legend's mark with it; past 21 they come round again.
  const colours = ["#2457c5", "#c53a24", "#17863a", "#8a3fc5", "#c58a24", "#24a5c5", "#5a6275"];
  const dashes = [undefined, [8, 4], [2, 3]];
  const lineOf = (i) => {
    const round = Math.floor(i / colours.length) % dashes.length;
    return { stroke: colours[i % colours.length], dash: dashes[round], markerDash: ["solid", "dashed", "dotted"][round] };
  };
  // Times in UTC, as the tables beside the charts write them (2026-12-07 13:07:14Z): the browser's own zone and
  // date order made a spike hard to line up with its calls. An axis over a day long shows the date too.
  const iso = (ts) => new Date(ts * 1000).toISOString();
  const utcTicks = (u, splits) => {
    const long = u.scales.x.max - u.scales.x.min > 86400;
    return splits.map((ts) => (long ? iso(ts).slice(5, 10) + " " : "") + iso(ts).slice(11, 16));
  };
  const utcValue = (u, ts) => (ts == null ? "--" : iso(ts).slice(0, 16).replace("T", " ") + "Z");
  // A count (calls, errors a minute) has whole ticks: 0.25 of a call reads as nonsense.
  const wholeSteps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];
  function draw(box) {
    const data = JSON.parse(box.querySelector("script").textContent);
    const width = Math.max(200, box.clientWidth);
    const format = data.unit === "USD" ? usd : number;
    const counts = data.unit === "per minute";
    const opts = {
      width, height: 200,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      scales: { x: { time: true }, y: { range: counts ? (u, min, max) => [0, Math.max(1, max ?? 0)] : yRange } },
      series: [{ value: utcValue }, ...data.series.map((s, i) => ({ label: s.label, ...lineOf(i), width: 2, points: { show: true, size: 5 }, value: (u, v) => format(v) }))],
      axes: [{ values: utcTicks }, { size: axisWidth, values: (u, splits) => splits.map(format), ...(counts ? { incrs: wholeSteps } : {}) }],
      // Each legend's mark drawn as its line is: solid, dashed or dotted.
      legend: { show: true, markers: { dash: (u, i) => u.series[i].markerDash || "solid" } },
    };
    const plot = new uPlot(opts, [data.x, ...data.series.map((s) => s.values)], box);
    box.dataset.points = String(data.series.reduce((n, s) => n + s.values.filter((v) => v !== null).length, 0));
    charts.push({ box, plot });
  }
  document.querySelectorAll("[data-chart]").forEach(draw);
  let resizing;
  addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => charts.forEach(({ box, plot }) => plot.setSize({ width: Math.max(200, box.clientWidth), height: 200 })), 100);
  });

  // A log reads as a tail, as \`tandem logs -f\` prints it: it opens at its newest line, where live ones are added.
  const log = document.getElementById("logs");
  if (log) log.scrollTop = log.scrollHeight;

  const live = document.body.dataset.live;
  if (!live) return;
  let source;
  let tries = 0;
  function fragment(markup, tag) {
    const holder = document.createElement(tag);
    holder.innerHTML = markup.trim();
    return holder.firstElementChild;
  }
  function onCall(event) {
    const { callId, html } = JSON.parse(event.data);
    const row = fragment(html, "tbody");
    const status = row.querySelector(".badge")?.textContent;
    const calls = document.getElementById("calls");
    if (calls) {
      const known = calls.querySelector('tr[data-call-id="' + callId + '"]');
      if (known) known.replaceWith(row); else calls.prepend(row);
      const keep = Number(calls.dataset.keep || ${DASHBOARD_DEFAULTS.callsShown});
      while (calls.rows.length > keep) calls.lastElementChild.remove();
      calls.closest(".table")?.querySelector(".empty")?.remove();
    }
    // A call's own page: its facts and its error, as the page would show them now, once its status changes.
    const state = document.getElementById("call-state");
    if (state && state.dataset.call === callId && state.querySelector("[data-call-status]")?.textContent !== status) refreshCallState(state);
  }
  let refreshing = false;
  async function refreshCallState(state) {
    if (refreshing) return;
    refreshing = true;
    try {
      const res = await fetch(location.href, { headers: { accept: "text/html" } });
      const fresh = res.ok ? new DOMParser().parseFromString(await res.text(), "text/html").getElementById("call-state") : null;
      if (fresh) state.replaceWith(document.adoptNode(fresh));
    } finally {
      refreshing = false;
    }
  }
  function onLog(event) {
    const logs = document.getElementById("logs");
    if (!logs) return;
    const stick = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
    logs.append(fragment(JSON.parse(event.data).html, "ol"));
    // A page left open on a busy app would grow without end: the oldest lines go, as the calls table's do.
    const keep = Number(logs.dataset.keep);
    while (logs.children.length > keep) logs.firstElementChild.remove();
    document.getElementById("logs-empty")?.remove();
    if (stick) logs.scrollTop = logs.scrollHeight;
  }
  // A page's section as it is now: the agents' sessions (a socket opened or closed), the schedules (a run ended).
  function onSection(event) {
    const { id, html } = JSON.parse(event.data);
    const section = document.getElementById(id);
    if (section) section.innerHTML = html;
  }
  // A note at the top of the page about its live stream; none once it flows again.
  function note(message) {
    let p = document.getElementById("live-ended");
    if (!message) return p?.remove();
    if (!p) {
      p = document.createElement("p");
      p.id = "live-ended";
      p.className = "problem";
      p.setAttribute("role", "status");
      document.querySelector("main")?.prepend(p);
    }
    p.textContent = message;
  }
  // The stream ended for good (its token revoked, the gateway refusing it): the page says so, rather than go quiet.
  function ended(message) {
    source.close();
    document.body.dataset.liveState = "ended";
    note(message);
  }
  function open() {
    source = new EventSource(live);
    source.addEventListener("call", onCall);
    source.addEventListener("log", onLog);
    source.addEventListener("section", onSection);
    source.addEventListener("open", () => {
      tries = 0;
      document.body.dataset.liveState = "open";
      note(null);
    });
    source.addEventListener("ended", (event) => ended("Live updates stopped: " + JSON.parse(event.data).message + ". Reload the page to sign in again."));
    source.addEventListener("error", async () => {
      if (source.readyState !== EventSource.CLOSED) return; // the browser tries again by itself
      // Closed for good by the browser: an answer other than the stream. A refused login ends it; anything else (a
      // gateway restarting answers 503 a moment, and the browser gives up on any such answer) is tried again.
      source.close();
      let status = 0;
      try {
        const probe = new AbortController();
        status = (await fetch(live, { headers: { accept: "text/event-stream" }, signal: probe.signal })).status;
        probe.abort();
      } catch {}
      if (status === 401 || status === 403) return ended("Live updates stopped: the gateway refused this page's stream. Reload the page to sign in again.");
      document.body.dataset.liveState = "retrying";
      note("Live updates paused: the gateway did not answer this page's stream; trying again…");
      setTimeout(open, Math.min(10000, 500 * 2 ** tries++));
    });
  }
  open();
})();
`;

/** The dashboard's static files, by name under `/_tandem/assets/`. */
export const DASHBOARD_ASSETS: Record<string, { type: string; body: string }> = {
  "uplot.js": { type: "text/javascript; charset=utf-8", body: uplotScript },
  "uplot.css": { type: "text/css; charset=utf-8", body: uplotStyle },
  "dashboard.css": { type: "text/css; charset=utf-8", body: STYLE },
  "dashboard.js": { type: "text/javascript; charset=utf-8", body: SCRIPT },
};
