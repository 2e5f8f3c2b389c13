/**
 * `tandem dashboard`: asks the gateway for a login link (with the command's
 * token; single-use, short-lived, so the printed URL holds no lasting secret),
 * prints it, and opens it in a browser when there is one (`open` on macOS,
 * `xdg-open` where a display is set, `start` on Windows). Never fails for want
 * of a browser: the URL is printed either way.
 */
import { GATEWAY_HELP } from "./config.js";
import { spawn } from "node:child_process";
import type { Command } from "commander";
import type { HttpInvoker } from "../client.js";
import { DASHBOARD_DEFAULTS } from "../defaults.js";
import { paths, type DashboardLoginAnswer } from "../protocol.js";

/** Adds `tandem dashboard` to `program`; `clientOf` makes a client for the command's `--gateway` and `--token`. */
export function addDashboardCommand(program: Command, clientOf: (opts: { gateway?: string; token?: string }) => HttpInvoker, tokenHelp: string): void {
  program
    .command("dashboard")
    .description("open the gateway's dashboard: apps, functions, calls and their logs, planes, schedules, agents, usage")
    .option("--no-open", "print the login link only; do not start a browser")
    .option("-g, --gateway <url>", GATEWAY_HELP)
    .option("--token <token>", tokenHelp)
    .addHelpText(
      "after",
      `\nThe link logs one browser in (an HttpOnly cookie, ${DASHBOARD_DEFAULTS.sessionTtlSeconds / 3600} h, ended when the token is revoked); ` +
        `it works once, within ${DASHBOARD_DEFAULTS.loginCodeTtlSeconds} s. The dashboard shows what the token may see.`,
    )
    .action(async (opts: { open: boolean; gateway?: string; token?: string }) => {
      const { url, expiresAt } = (await clientOf(opts).request("POST", paths.dashboardLogin())) as DashboardLoginAnswer;
      console.log(url);
      const seconds = Math.round((expiresAt - Date.now()) / 1000);
      const opened = opts.open && openBrowser(url);
      console.error(opened ? `opened in your browser (the link works once, for ${seconds} s)` : `open it in a browser within ${seconds} s (it works once)`);
    });
}

/** Starts the platform's opener on `url`, detached; false when there is none to start (no display, say). */
export function openBrowser(url: string, platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): boolean {
  const opener =
    platform === "darwin"
      ? { command: "open", args: [url] }
      : platform === "win32"
        ? { command: "cmd", args: ["/c", "start", "", url] }
        : env.DISPLAY || env.WAYLAND_DISPLAY
          ? { command: "xdg-open", args: [url] }
          : undefined;
  if (!opener) return false;
  try {
    const child = spawn(opener.command, opener.args, { detached: true, stdio: "ignore" });
    child.on("error", () => {}); // no opener installed: the URL is printed anyway
    child.unref();
    return true;
  } catch {
    return false;
  }
}
