/**
 * `tandem planes`: the planes a gateway knows (`GET /v1/planes`, an admin token of the gateway's environment), one
 * row each: id, region, whether it is healthy (or draining, unavailable, stale, stopped) and since when, its GPUs by
 * type, its containers, its URL. `--json` prints the list as the gateway answers it. `tandem plane` starts a plane;
 * this one lists them.
 */
import type { Command } from "commander";
import type { HttpInvoker } from "../client.js";
import { paths, planeState, type PlaneInfo } from "../protocol.js";
import { formatDuration } from "../schedule.js";
import { GATEWAY_HELP } from "./config.js";
import { listTime, style } from "./style.js";

/** Adds `tandem planes` to `program`; `clientOf` makes a client for the command's `--gateway` and `--token`. */
export function addPlanesCommand(program: Command, clientOf: (opts: { gateway?: string; token?: string }) => HttpInvoker, tokenHelp: string): void {
  program
    .command("planes")
    .description("list the planes a gateway knows: region, health, GPUs free and used, containers, URL (needs an admin token)")
    .option("-g, --gateway <url>", GATEWAY_HELP)
    .option("--token <token>", tokenHelp)
    .option("--json", "print JSON")
    .action(async (opts: { gateway?: string; token?: string; json?: boolean }) => {
      const { planes } = (await clientOf(opts).request("GET", paths.planes())) as { planes: PlaneInfo[] };
      if (opts.json) return console.log(JSON.stringify(planes, null, 2));
      if (planes.length === 0) return console.log("no plane has registered with this gateway (tandem plane --gateway <it> starts one; docs/fleet.md)");
      const now = Date.now();
      const rows = planes.map((p) => [p.planeId, p.region, ...healthOf(p, now), gpusOf(p), containersOf(p, now), p.url]);
      const header = ["plane", "region", "health", "since", "GPUs", "containers", "url"];
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
      console.log(style.bold(line(header)));
      for (const [i, p] of planes.entries()) {
        console.log(line(rows[i]!));
        if (p.unavailable) console.log(style.dim(`  ${p.planeId} cannot start containers: ${p.unavailable}`));
        else if (p.notReady) console.log(style.dim(`  ${p.planeId} takes no calls yet: ${p.notReady}`));
      }
    });
}

/**
 * Whether a plane takes inputs, and since when (`planeState`): a healthy one since its process started; a stopped one
 * since it said so, a stale one since its last heartbeat; a draining, unavailable or not yet ready one reports still (last
 * heartbeat).
 */
function healthOf(p: PlaneInfo, now: number): [health: string, since: string] {
  const heartbeat = `last heartbeat ${span(p.lastSeen, now)} ago`;
  const state = planeState(p, p.lastSeen, now);
  if (state === "stopped") return [state, `${listTime(p.lastSeen)} (${span(p.lastSeen, now)} ago)`];
  if (state === "stale") return [state, `${listTime(p.lastSeen)} (${heartbeat})`];
  if (state !== "healthy") return [state, heartbeat];
  return ["healthy", p.startedAt === undefined ? heartbeat : `${listTime(p.startedAt)} (up ${span(p.startedAt, now)})`];
}

/** Its GPUs by type: free and used of each, "none" for a CPU-only plane; declared (`--gpus`) ones say so. */
function gpusOf(p: PlaneInfo): string {
  const types = Object.entries(p.gpus).filter(([, c]) => c.total > 0);
  if (types.length === 0) return "none";
  const each = types.map(([type, c]) => `${type} ${c.free} free ${c.total - c.free} used`).join(", ");
  return p.simulated ? `${each} (simulated)` : each;
}

/** Its containers up now: running an input, and warm and waiting; a stale plane's as it last reported them, said so. */
function containersOf(p: PlaneInfo, now: number): string {
  const busy = (p.warm ?? []).reduce((n, w) => n + w.busy, 0);
  const idle = (p.warm ?? []).reduce((n, w) => n + w.idle, 0);
  if (busy + idle === 0) return "none";
  return planeState(p, p.lastSeen, now) === "stale" ? `${busy} busy, ${idle} idle at its last heartbeat` : `${busy} busy, ${idle} idle`;
}

/** The time from `ms` to `now`, in whole seconds: "1h2m5s". */
function span(ms: number, now: number): string {
  return formatDuration(Math.max(0, Math.round((now - ms) / 1000)) * 1000) || "0s";
}
