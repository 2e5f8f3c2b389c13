/**
 * Every `tandem` command: its arguments, options, help and action, on a program made for one configuration (the
 * TANDEM_* settings, read once by main.ts). Made apart from its parsing so that its help can be read without a process
 * per command (test/cli.test.ts).
 */
import { Command, InvalidArgumentError } from "commander";
import { InvalidOptionsError } from "../errors.js";
import { HttpInvoker, resolveGatewayUrl } from "../client.js";
import {
  DEFAULT_ENV,
  DEPLOY_STRATEGIES,
  REGION_PATTERN,
  paths,
  sinceTime,
  sinceInSpan,
  SINCE_FORMS,
  SINCE_SPAN,
  type AppsAnswer,
  type DeployStrategy,
  type ScheduleInfo,
  type RolloverAnswer,
  type SecretInfo,
  type StopAnswer,
  type UsageAnswer,
} from "../protocol.js";
import { existsSync } from "node:fs";
import { FUNCTION_DEFAULTS, LOCAL_DEFAULTS, PLANE_DEFAULTS } from "../defaults.js";
import { formatUsd } from "../pricing.js";
import { ENV_HELP, GATEWAY_HELP, parseEnvName, withGatewayOptions, type CliConfig } from "./config.js";
import { formatCommanderError, printFailure } from "./failure.js";
import { parseChoice, parseAppName } from "./choice-option.js";
import { addTokenCommands } from "./tokens.js";
import { addSecretCommands } from "./secrets.js";
import { addVolumeCommands } from "./volumes.js";
import { addDictQueueCommands } from "./dict-queue.js";
import { addLogsCommand, bareSinceProblem } from "./logs.js";
import { addCallsCommand } from "./calls.js";
import { addDashboardCommand } from "./dashboard.js";
import { addPlanesCommand } from "./planes.js";
import { addDeploymentCommands } from "./deployments.js";
import { onStopSignal } from "./signals.js";
import { parseGpuInventory } from "../gpu.js";
import { style, visibleControls } from "./style.js";
import { formatMs } from "../value-text.js";
import { trace } from "../trace.js";

// A command loads what it runs (init, serve, run, deploy, plane) when it runs: miniflare, esbuild, the plane and
// their packages take a second to load, which `tandem run` and a command that only asks a gateway should not wait for.

type GatewayOpts = { gateway?: string; token?: string; env?: string };

/** The `tandem` program for the configuration given: parse it with `parseAsync()` (main.ts). */
export function tandemProgram(config: CliConfig): Command {
  const gatewayOf = (opts: GatewayOpts) => resolveGatewayUrl(opts.gateway ?? config.gateway);
  /**
   * A client of the gateway a command names, sending its token (`--token`, then TANDEM_TOKEN, then the one saved for
   * that gateway: the client looks past `--token` itself, so an error names where the token came from) and its
   * environment (`--env`, then TANDEM_ENV, else none: the gateway's own).
   */
  const clientOf = (opts: GatewayOpts) => {
    const token = opts.token;
    const env = opts.env ?? config.env;
    return new HttpInvoker(gatewayOf(opts), { ...(token === undefined ? {} : { token }), ...(env === undefined ? {} : { env }) });
  };
  const STRATEGY_HELP = "how the new version replaces the old one's plane containers: rolling (they finish their inputs first) or recreate (they stop at once)";
  const TOKEN_HELP = "API token (default: TANDEM_TOKEN, then the one saved for the gateway, then .tandem/token for a local gateway)";
  /** `--gateway`, `--token` and `--env` on a command that asks a gateway, as every such command takes them. */
  const gatewayOptions = (command: Command) => withGatewayOptions(command, TOKEN_HELP);
  const PREPARED_HELP = "most containers kept started and paused, per function whose containers keep starting cold, for its next cold starts (0: none)";

  const program = new Command("tandem")
    .description("Serverless compute for TypeScript: edge functions in workerd, GPU functions in containers, one SDK.")
    .version("0.1.0")
    // Commander's own errors (an unknown flag, a bad value) in the format of every other failure.
    .configureOutput({ outputError: (text, write) => write(formatCommanderError(text)) });

  program
    .command("init")
    .description("start a project: app.ts (an edge function, a plane function, a web endpoint), a client, Tandem in package.json; then npm install")
    .argument("[dir]", "the project's folder, new or empty (default: this one); its name is the app's")
    .option("--link", "depend on this checkout of Tandem through a file: path, instead of a tarball of it in vendor/")
    .option("--no-install", "do not run npm install")
    .action(async (dir: string | undefined, opts: { link?: boolean; install: boolean }) => {
      const { initProject } = await import("./init.js");
      await initProject({ dir: dir ?? ".", link: opts.link ?? false, install: opts.install });
    });

  program
    .command("pack")
    .description("pack this Tandem, built and without build scripts, into a tarball a project depends on: npm install ./tandem-<version>.tgz")
    .argument("[dir]", "where the tarball goes (default: this folder)")
    .action(async (dir: string | undefined) => {
      const { packTandem } = await import("./init.js");
      const tarball = await packTandem(dir ?? ".");
      console.log(`${style.ok("✓")} ${tarball}`);
      console.log(style.dim(`  in a project: npm install ${tarball}  (README: "Tandem in an existing project")`));
    });

  program
    .command("serve")
    .description("serve app files locally: the gateway in workerd, state in .tandem/, reload on change")
    .argument("[app-files...]", "app files that default-export an App (default: app.ts)")
    .option("-p, --port <port>", "port of the local gateway", parsePort, LOCAL_DEFAULTS.port)
    .option("--host <host>", "address to listen on", hostOption, LOCAL_DEFAULTS.host)
    .option("--no-watch", "do not reload when files change")
    .option("--gpus <inventory>", 'the local plane\'s simulated GPUs, e.g. "A100:2,T4:1" (default: real GPUs, else one of each type)', gpuInventory)
    .option("--runtime <runtime>", "the local plane's container runtime: docker, or process (unsandboxed, development only)", parseRuntime, "docker")
    .option(
      "--scaledown-window <seconds>",
      "seconds a plane container may sit idle before it is stopped",
      parseSeconds,
      FUNCTION_DEFAULTS.scaledownWindowSeconds,
    )
    .option("--prepared <count>", PREPARED_HELP, parseWhole, PLANE_DEFAULTS.preparedPerFunction)
    .option("--env <name>", "the environment the apps are served in (default: TANDEM_ENV, then main)", parseEnvName)
    .option("--strategy <strategy>", STRATEGY_HELP, parseStrategy, "rolling")
    .option("--plane-port <port>", "port of the local plane's API, on the same address as the gateway (default: any free port)", parsePort)
    .option("--metrics-port <port>", "serve the local plane's Prometheus metrics (GET /metrics) on this port of 127.0.0.1", parsePort)
    .action(
      async (
        appFiles: string[],
        opts: {
          port: number;
          host: string;
          watch: boolean;
          gpus?: string;
          runtime: "docker" | "process";
          scaledownWindow: number;
          prepared: number;
          env?: string;
          strategy: DeployStrategy;
          planePort?: number;
          metricsPort?: number;
        },
      ) => {
        if (appFiles.length === 0 && !existsSync("app.ts"))
          throw new InvalidArgumentError("no app file given, and no app.ts here: tandem serve <app files>, or tandem init to start a project");
        portsApart({ "--port": opts.port, "--plane-port": opts.planePort, "--metrics-port": opts.metricsPort });
        const { serve } = await import("./serve.js");
        const serving = await serve({
          appFiles: appFiles.length > 0 ? appFiles : ["app.ts"],
          config: inEnvironment(opts.env),
          port: opts.port,
          host: opts.host,
          watch: opts.watch,
          runtime: opts.runtime,
          scaledownWindowSeconds: opts.scaledownWindow,
          preparedPerFunction: opts.prepared,
          strategy: opts.strategy,
          ...(opts.gpus !== undefined ? { gpus: opts.gpus } : {}),
          ...(opts.planePort !== undefined ? { planePort: opts.planePort } : {}),
          ...(opts.metricsPort !== undefined ? { metricsPort: opts.metricsPort } : {}),
        });
        console.log(style.dim(opts.watch ? "Watching for changes. Ctrl-C to stop." : "Ctrl-C to stop."));
        // workerd kept dying as soon as it started: said, and serve stops (2: the command failed, README "Exit codes").
        serving.failed.catch(async (err: unknown) => {
          printFailure(err);
          await serving.close();
          process.exit(2);
        });
        // Ctrl-C: requests in flight get a moment to end; a second Ctrl-C stops at once, a third quits. A stop hurried so
        // exits 130, as `tandem plane` cut short does; one that left a part behind, 2.
        let hurried = false;
        onStopSignal(
          async () => {
            const stopped = await serving.stop();
            process.exit(!stopped ? 2 : hurried ? 130 : 0);
          },
          () => {
            if (!serving.stopNow()) return false; // nothing left to hurry: this signal quits at once
            hurried = true;
            return true;
          },
        );
      },
    );

  program
    .command("run")
    .description(
      "run one function once on an ephemeral gateway and print its result (a generator's chunks one a line, as they come); it has tandem serve's secrets, and volumes, dicts and queues of its own that end with it",
    )
    .argument("<target>", "app file and function: app.ts::function")
    .argument(
      "[args...]",
      "arguments, each parsed as JSON (a bare word is a string; 12345678901234567890n a BigInt; an integer a number would round is refused)",
    )
    .option("--json", "print the result as JSON, a generator's chunks as JSON lines (NDJSON); a BigInt as its digits in a string, a Map as its entries")
    .option("--gpus <inventory>", 'the ephemeral plane\'s simulated GPUs, e.g. "H100:2" (default: real GPUs, else one of each type)', gpuInventory)
    .option("--env <name>", "the environment the app runs in: whose secrets it reads (default: TANDEM_ENV, then main)", parseEnvName)
    .action(async (target: string, args: string[], opts: { json?: boolean; gpus?: string; env?: string }) => {
      const { runOnce } = await import("./run.js");
      trace("run: its modules loaded");
      const code = await runOnce(target, args, inEnvironment(opts.env), { json: opts.json ?? false, ...(opts.gpus !== undefined ? { gpus: opts.gpus } : {}) });
      // Everything the run started has stopped: it exits now, its output written, rather than wait for what others
      // left behind them (miniflare's removal of its folder, idle sockets; 0.1-0.8 s measured on this machine).
      await Promise.all([process.stdout, process.stderr].map((stream) => new Promise((written) => stream.write("", written))));
      trace("run: exit");
      process.exit(code);
    });

  program
    .command("deploy")
    .description("bundle the gateway with app files, deploy it to Cloudflare with wrangler, and record it in the gateway as the apps' next version")
    .argument("<app-files...>", "app files that default-export an App")
    .option("--dry-run", "bundle and check the configuration without deploying (works offline)")
    .option("--name <name>", "the Worker's name (default tandem-gateway)")
    .option("--outdir <dir>", "where the bundle and its wrangler.toml go, a new or empty folder or an earlier deploy's, emptied first (default .tandem/deploy)")
    .option(
      "-g, --gateway <url>",
      "the deployed gateway: the app's named secrets are checked against it first, and the deployment recorded in it (default TANDEM_GATEWAY)",
    )
    .option("--token <token>", TOKEN_HELP)
    .option(
      "--env <name>",
      "the environment to deploy into: a Worker of its own, <name>-<env>, unless it is main (default: TANDEM_ENV, then main)",
      parseEnvName,
    )
    .option("--strategy <strategy>", STRATEGY_HELP, parseStrategy, "rolling")
    .action(
      async (
        appFiles: string[],
        opts: { dryRun?: boolean; name?: string; outdir?: string; gateway?: string; token?: string; env?: string; strategy: DeployStrategy },
      ) => {
        const { deploy } = await import("./deploy.js");
        const gatewayNamed = (opts.gateway ?? config.gateway) !== undefined;
        // The environment deployed into, named to the gateway too: without --env that is main, not the gateway's own.
        const env = opts.env ?? config.env ?? DEFAULT_ENV;
        const gateway = clientOf({ ...opts, env });
        process.exitCode = await deploy({
          appFiles,
          dryRun: opts.dryRun ?? false,
          ...(gatewayNamed
            ? { heldSecrets: async () => ((await gateway.request("GET", paths.secrets())) as { secrets: SecretInfo[] }).secrets, recordAt: gateway }
            : {}),
          ...(config.wrangler ? { wrangler: config.wrangler } : {}),
          ...(opts.name ? { name: opts.name } : {}),
          env,
          ...(opts.outdir ? { outDir: opts.outdir } : {}),
          strategy: opts.strategy,
        });
      },
    );

  program
    .command("plane")
    .description(
      "start a GPU plane node that runs plane-tier functions in containers for a gateway. It signs with the gateway's plane secret: " +
        "TANDEM_PLANE_SECRET (16 characters or more), else .tandem/plane-secret of the folder it runs in (docs/plane.md)",
    )
    .option("-p, --port <port>", "port of the plane's API", parsePort, PLANE_DEFAULTS.port)
    .option("--host <host>", "address to listen on and to give the gateway: one it reaches this machine at (not 0.0.0.0)", hostOption, LOCAL_DEFAULTS.host)
    .option(
      "--region <region>",
      "the region this plane is in: functions with a region option run only on planes in theirs (docs/deploy.md)",
      parseRegion,
      "local",
    )
    .option("-g, --gateway <url>", GATEWAY_HELP)
    .option("--gpus <inventory>", 'declare a simulated GPU inventory, e.g. "A100:2,T4:1" (default: real GPUs from nvidia-smi)', gpuInventory)
    .option("--runtime <runtime>", "container runtime: docker, or process (unsandboxed, development only)", parseRuntime, "docker")
    .option(
      "--docker-runtime <name>",
      "the Docker runtime of function containers: runsc (gVisor) or runc (default: runsc where the engine lists it, else runc)",
      dockerRuntimeName,
    )
    .option("--scaledown-window <seconds>", "seconds a container may sit idle before it is stopped", parseSeconds, FUNCTION_DEFAULTS.scaledownWindowSeconds)
    .option("--prepared <count>", PREPARED_HELP, parseWhole, PLANE_DEFAULTS.preparedPerFunction)
    .option("--snapshot-max <count>", "most memory snapshots kept on this plane's disk (snapshot: true functions)", parseWhole, PLANE_DEFAULTS.snapshotMax)
    .option("--snapshot-max-bytes <bytes>", "most bytes of memory snapshots kept on this plane's disk", parseWhole, PLANE_DEFAULTS.snapshotMaxBytes)
    .option("--metrics-port <port>", "serve Prometheus metrics (GET /metrics) on a listener of their own on this port", parsePort)
    .option(
      "--metrics-host <host>",
      "the address of the metrics listener (anyone who reaches it may scrape it unless TANDEM_METRICS_TOKEN is set)",
      "127.0.0.1",
    )
    .option(
      "--drain-timeout <seconds>",
      "on SIGTERM or Ctrl-C, seconds to wait for the inputs in flight to end before their containers are stopped",
      parseSeconds,
      PLANE_DEFAULTS.drainTimeoutSeconds,
    )
    .option(
      "--version-drain-timeout <seconds>",
      "when a new version of a function goes live, seconds its old version's containers may take to finish their inputs before they are stopped",
      parseSeconds,
      PLANE_DEFAULTS.versionDrainTimeoutSeconds,
    )
    .action(
      async (opts: {
        port: number;
        host: string;
        region: string;
        gateway?: string;
        gpus?: string;
        runtime: "docker" | "process";
        dockerRuntime?: string;
        scaledownWindow: number;
        prepared: number;
        snapshotMax: number;
        snapshotMaxBytes: number;
        metricsPort?: number;
        metricsHost: string;
        drainTimeout: number;
        versionDrainTimeout: number;
      }) => {
        portsApart({ "--port": opts.port, "--metrics-port": opts.metricsPort });
        if (opts.dockerRuntime !== undefined && opts.runtime !== "docker")
          throw new InvalidArgumentError(`--docker-runtime ${opts.dockerRuntime} is for --runtime docker; --runtime ${opts.runtime} runs no Docker containers`);
        const { startPlaneNode } = await import("./plane.js");
        await startPlaneNode({
          gateway: gatewayOf(opts),
          config,
          host: opts.host,
          port: opts.port,
          region: opts.region,
          runtime: opts.runtime,
          scaledownWindowSeconds: opts.scaledownWindow,
          preparedPerFunction: opts.prepared,
          snapshotMax: opts.snapshotMax,
          snapshotMaxBytes: opts.snapshotMaxBytes,
          drainTimeoutSeconds: opts.drainTimeout,
          versionDrainTimeoutSeconds: opts.versionDrainTimeout,
          ...(opts.gpus !== undefined ? { gpus: opts.gpus } : {}),
          ...(opts.dockerRuntime ? { dockerRuntime: opts.dockerRuntime } : {}),
          ...(opts.metricsPort !== undefined ? { metricsListen: { host: opts.metricsHost, port: opts.metricsPort } } : {}),
        });
      },
    );

  const appCommand = program.command("app").description("manage a deployed app");
  gatewayOptions(
    appCommand
      .command("stop")
      .description("stop every plane container of an app (and its warm pools, until it is served or deployed again)")
      .argument("<app>", "the app's name", parseAppName),
  ).action(async (app: string, opts: { gateway?: string; token?: string }) => {
    const body = (await clientOf(opts).request("POST", paths.appStop(app))) as StopAnswer;
    console.log(`stopped ${body.stopped} container${body.stopped === 1 ? "" : "s"} of app ${app}`);
  });
  gatewayOptions(
    appCommand
      .command("rollover")
      .description("restart an app's plane containers, each once its calls end, so new ones read its secrets' current values")
      .argument("<app>", "the app's name", parseAppName),
  ).action(async (app: string, opts: { gateway?: string; token?: string }) => {
    const body = (await clientOf(opts).request("POST", paths.appRollover(app))) as RolloverAnswer;
    const n = body.rolledOver;
    console.log(`rolling over ${n} container${n === 1 ? "" : "s"} of app ${app}: new calls start new containers; running calls finish first`);
  });

  addDeploymentCommands(appCommand, clientOf, TOKEN_HELP, ENV_HELP, config.wrangler);

  gatewayOptions(
    program
      .command("usage")
      .description("container time and cost on the planes, by app, function, GPU type and plane")
      .option("--app <app>", "only this app", parseAppName)
      .option("--since <when>", 'only time after this: a duration ("1h", "30m", "7d") or a date', parseSince),
  )
    .option("--json", "print JSON")
    .action(async (opts: { app?: string; since?: number; gateway?: string; token?: string; json?: boolean }) => {
      const query = { ...(opts.app ? { app: opts.app } : {}), ...(opts.since !== undefined ? { since: opts.since } : {}) };
      const body = (await clientOf(opts).request("GET", paths.usage(query))) as UsageAnswer;
      if (opts.json) return console.log(JSON.stringify(body, null, 2));
      // A plane keeps its own ledger: one stopped or silent is not in the rows, and the total says so (before: its rows
      // went, and the total fell, without a word).
      const notCounted = () => {
        for (const p of body.notCounted ?? [])
          console.log(style.warn(`not counted: plane ${p.planeId} (${p.region}), ${p.why}: its usage stays in its own ledger, counted again once it runs`));
      };
      if (body.rows.length === 0) {
        const since = opts.since === undefined ? "" : ` since ${new Date(opts.since).toISOString()}`;
        console.log(`no container time recorded${opts.app ? ` for app ${opts.app}` : ""}${since} on the planes the gateway knows`);
        return notCounted();
      }
      // One row per plane that ran the function: with a fleet, the same app, function and GPU come once per plane.
      console.log(
        `${"app".padEnd(16)} ${"function".padEnd(20)} ${"gpu".padEnd(10)} ${"containers".padStart(10)} ${"container s".padStart(12)} ${"cost".padStart(12)}  plane`,
      );
      for (const r of body.rows) {
        console.log(
          `${r.app.padEnd(16)} ${r.function.padEnd(20)} ${(r.gpu ?? "-").padEnd(10)} ${String(r.containers).padStart(10)} ${r.seconds.toFixed(1).padStart(12)} ${formatUsd(r.costUsd).padStart(12)}  ${r.plane}`,
        );
      }
      console.log(
        `${"total".padEnd(16)} ${"".padEnd(20)} ${"".padEnd(10)} ${"".padStart(10)} ${body.totalSeconds.toFixed(1).padStart(12)} ${formatUsd(body.totalUsd).padStart(12)}`,
      );
      const prepared = body.rows.reduce((sum, r) => sum + (r.preparedSeconds ?? 0), 0);
      if (prepared > 0) console.log(style.dim(`and ${prepared.toFixed(1)} s of prepared containers, kept paused for cold starts: not billed`));
      notCounted();
    });

  gatewayOptions(program.command("apps").description("list the apps, functions and web endpoints a gateway serves"))
    .option("--json", "print JSON")
    .action(async (opts: { gateway?: string; token?: string; env?: string; json?: boolean }) => {
      const base = gatewayOf(opts);
      const { apps, othersServed, servedEnvironment } = (await clientOf(opts).request("GET", paths.apps())) as AppsAnswer;
      if (opts.json) return console.log(JSON.stringify(apps, null, 2));
      if (apps.length === 0) {
        // Said, not an empty output: why there is nothing, and what would list something.
        if (servedEnvironment !== undefined)
          return console.log(
            `no apps in environment "${opts.env ?? config.env ?? DEFAULT_ENV}": the gateway at ${base} serves environment "${servedEnvironment}" (--env ${servedEnvironment})`,
          );
        if (othersServed) return console.log(`no app this token reaches (the gateway at ${base} serves ${othersServed})`);
        return console.log(`the gateway at ${base} serves no apps`);
      }
      for (const app of apps) {
        console.log(style.bold(`app ${app.name}`));
        for (const f of app.functions) {
          const gpu = f.gpu ? `, GPU ${f.gpu.join(" or ")}` : "";
          const regions = f.regions ? `, region${f.regions.length === 1 ? "" : "s"} ${f.regions.join(", ")}` : "";
          console.log(
            `  ${(f.kind ?? "function").padEnd(9)} ${f.name.padEnd(20)} ${f.tier}${gpu}${regions}, timeout ${f.timeoutSeconds} s, retries ${f.retries.maxRetries}${f.generator ? ", generator (stream it)" : ""}`,
          );
        }
        for (const e of app.endpoints) {
          const guarded = e.auth === "token" ? "  (needs a token)" : "";
          if (e.kind === "websocket") console.log(`  websocket ${e.label.padEnd(20)} ${base.replace(/^http/, "ws")}${paths.web(app.name, e.label)}${guarded}`);
          else
            console.log(
              `  ${e.kind.padEnd(9)} ${e.label.padEnd(20)} ${e.method ?? "*"} ${base}${paths.web(app.name, e.label, e.path === "/*" ? "/" : e.path)}${guarded}`,
            );
        }
      }
    });

  addPlanesCommand(program, clientOf, TOKEN_HELP);
  addTokenCommands(program, clientOf, TOKEN_HELP, config.wrangler);
  addLogsCommand(program, clientOf, TOKEN_HELP);
  addCallsCommand(program, clientOf, TOKEN_HELP);
  addDashboardCommand(program, clientOf, TOKEN_HELP);
  addSecretCommands(program, clientOf, TOKEN_HELP);
  const storeOptionsOf = (opts: GatewayOpts) => {
    const token = opts.token;
    const env = opts.env ?? config.env;
    return { gateway: gatewayOf(opts), ...(token === undefined ? {} : { token }), ...(env === undefined ? {} : { env }) };
  };
  addVolumeCommands(program, storeOptionsOf, TOKEN_HELP);
  addDictQueueCommands(program, storeOptionsOf, TOKEN_HELP);

  const scheduleCommand = program.command("schedule").description("scheduled functions (Cron and Period) and their runs");
  gatewayOptions(
    scheduleCommand
      .command("list")
      .description("each scheduled function: its schedule, the next three runs, and the last run's outcome and duration")
      .argument("[app]", "only this app", parseAppName),
  )
    .option("--json", "print JSON")
    .action(async (app: string | undefined, opts: { gateway?: string; token?: string; json?: boolean }) => {
      const { schedules } = (await clientOf(opts).request("GET", paths.schedules(app))) as { schedules: ScheduleInfo[] };
      if (opts.json) return console.log(JSON.stringify(schedules, null, 2));
      if (schedules.length === 0) return console.log(app ? `app ${app} has no scheduled functions` : "no scheduled functions");
      for (const s of schedules) {
        console.log(`${style.bold(`${s.app}::${s.function}`)}  ${s.schedule}${s.overlap === "allow" ? ", overlap allowed" : ""}`);
        console.log(`  next      ${s.nextRuns.map((t) => new Date(t).toISOString()).join("  ")}`);
        const last = s.lastRun;
        const outcome = last
          ? `${last.status}${last.durationMs !== undefined ? ` in ${formatMs(last.durationMs)}` : ""}${(last.attempts ?? 1) > 1 ? ` after ${last.attempts} attempts` : ""} (${last.callId}, due ${new Date(last.scheduledAt).toISOString()})${last.error ? `: ${visibleControls(last.error.message)}` : ""}`
          : "none yet";
        console.log(`  last run  ${outcome}`);
        if (s.skipped || s.missed) console.log(style.dim(`  ${s.skipped} skipped while the previous run was running, ${s.missed} missed while nothing ticked`));
      }
    });
  gatewayOptions(
    scheduleCommand
      .command("trigger")
      .description("fire one run of a scheduled function now, as its schedule would")
      .argument("<target>", "app and function: app::function"),
  ).action(async (target: string, opts: { gateway?: string; token?: string }) => {
    const [app, fn, extra] = target.split("::");
    if (!app || !fn || extra !== undefined) throw new InvalidArgumentError(`"${target}" must be app::function, e.g. cron::refresh`);
    const { callId } = (await clientOf(opts).request("POST", paths.trigger(app, fn))) as { callId: string };
    console.log(`fired ${app}::${fn}: ${callId}  (tandem schedule list ${app} shows its outcome)`);
  });

  /** The configuration with the local gateway's environment set to `env` (`--env`), when given. */
  function inEnvironment(env: string | undefined): CliConfig {
    return env === undefined ? config : { ...config, env, gatewayVars: { ...config.gatewayVars, TANDEM_ENV: env } };
  }

  return program;
}

/**
 * Refuses two of a command's listeners given one port (0, any free port, aside): the second would fail to listen with
 * EADDRINUSE, as if another program held the port.
 * @example portsApart({ "--port": 9520, "--metrics-port": 9520 }) // throws: --metrics-port 9520 is --port's too
 */
function portsApart(ports: Record<string, number | undefined>): void {
  const seen = new Map<number, string>();
  for (const [flag, port] of Object.entries(ports)) {
    if (port === undefined || port === 0) continue;
    const other = seen.get(port);
    if (other) throw new InvalidArgumentError(`${flag} ${port} is ${other}'s too: each listener needs a port of its own`);
    seen.set(port, flag);
  }
}

function parseSince(value: string): number {
  const bare = bareSinceProblem(value);
  if (bare) throw new InvalidArgumentError(bare);
  const now = Date.now();
  const time = sinceTime(value, now);
  if (time === undefined) throw new InvalidArgumentError(`must be ${SINCE_FORMS}`);
  if (!sinceInSpan(time, now)) throw new InvalidArgumentError(`must be ${SINCE_SPAN}`);
  return time;
}

function parseRegion(value: string): string {
  if (!REGION_PATTERN.test(value))
    throw new InvalidArgumentError('must be a region name: lowercase letters, digits and "-", not "-" first, up to 64 characters, such as eu-west');
  return value;
}

function parseStrategy(value: string): DeployStrategy {
  return parseChoice(DEPLOY_STRATEGIES)(value);
}

function parseRuntime(value: string): "docker" | "process" {
  return parseChoice(["docker", "process"])(value);
}

/** A Docker runtime's name as the engine lists it (`docker info`): not empty, which would quietly mean the default. */
function dockerRuntimeName(value: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value))
    throw new InvalidArgumentError("must name a runtime the Docker engine lists (docker info), such as runsc or runc");
  return value;
}

function parseSeconds(value: string): number {
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 86_400)
    throw new InvalidArgumentError("must be a number of seconds, more than 0 and at most 86400");
  return seconds;
}

function parseWhole(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError("must be a whole number, 0 or more");
  return n;
}

/**
 * A `--gpus` checked as it is read, so a bad one is a usage mistake (2) in every command (`run` said 1, as for a call
 * that failed); its error (an `InvalidOptionsError`, which commander passes on) is printed as it is, naming the
 * option and its value (an unknown GPU's said neither).
 */
function gpuInventory(value: string): string {
  try {
    parseGpuInventory(value);
  } catch (err) {
    if (err instanceof InvalidOptionsError && !err.message.startsWith("--gpus "))
      throw new InvalidOptionsError(`--gpus ${JSON.stringify(value)}: ${err.message}`);
    throw err;
  }
  return value;
}

/** A `--host`: an address or a name, not empty nor holding a scheme, port or path (`Invalid URL`, or a listen that failed, said less). */
function hostOption(value: string): string {
  if (!/^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$/.test(value))
    throw new InvalidArgumentError("must be an address or a host name this machine has, such as 127.0.0.1 or localhost (no scheme, port or path)");
  return value;
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError("must be a port number, 0 to 65535");
  return port;
}
