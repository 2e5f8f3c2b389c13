/**
 * The files in deploy/ that run planes where GPU fleets run: the Kubernetes
 * manifests validated against the Kubernetes API schemas (kubernetes-models),
 * the compose file by `docker compose config` (or `docker-compose config`,
 * which checks it against the Compose specification's schema), the systemd
 * unit by `systemd-analyze verify`; and each gives the plane longer to stop
 * than the drain it asks of it, and probes the route the plane answers.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { PLANE_DEFAULTS } from "../sdk/defaults.js";
import { PLANE_ROUTES } from "../sdk/protocol.js";

const DEPLOY = new URL("../deploy/", import.meta.url).pathname;
const read = (file: string) => readFileSync(join(DEPLOY, file), "utf8");
/** The seconds after `--drain-timeout` in a command line. */
const drainOf = (args: string[]) => Number(args[args.indexOf("--drain-timeout") + 1]);

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "v1/Namespace": Namespace,
  "apps/v1/DaemonSet": DaemonSet,
};

function validateManifest(text: string): { kind: string; data: Record<string, unknown> }[] {
  return parseAllDocuments(text).map((doc) => {
    const data = doc.toJS() as { apiVersion: string; kind: string };
    const Model = MODELS[`${data.apiVersion}/${data.kind}`];
    if (!Model) throw new Error(`no model for ${data.apiVersion} ${data.kind}`);
    new Model(data as never).validate();
    return { kind: data.kind, data: data as unknown as Record<string, unknown> };
  });
}

describe("the Kubernetes manifest", () => {
  it("is valid against the Kubernetes API schemas", () => {
    expect(validateManifest(read("kubernetes/plane.yaml")).map((d) => d.kind)).toEqual(["Namespace", "DaemonSet"]);
  });

  it("fails validation when broken, so the check above can fail", () => {
    const broken = read("kubernetes/plane.yaml").replace("terminationGracePeriodSeconds: 330", 'terminationGracePeriodSeconds: "soon"');
    expect(() => validateManifest(broken)).toThrow(/terminationGracePeriodSeconds/);
    const unnamed = read("kubernetes/plane.yaml").replace("        - name: plane\n          image:", "        - image:");
    expect(unnamed).not.toBe(read("kubernetes/plane.yaml"));
    expect(() => validateManifest(unnamed)).toThrow(/name/);
  });

  it("runs one plane per labelled GPU node with the NVIDIA runtime, its secret from a Secret, probed, drained within its grace period", () => {
    const ds = new DaemonSet(parseAllDocuments(read("kubernetes/plane.yaml"))[1]!.toJS() as never);
    const pod = ds.spec!.template.spec!;
    const plane = pod.containers[0]!;
    expect(pod.nodeSelector).toEqual({ "nvidia.com/gpu.present": "true" });
    expect(pod.runtimeClassName).toBe("nvidia");
    expect(plane.env!.find((e) => e.name === "TANDEM_PLANE_SECRET")!.valueFrom!.secretKeyRef).toEqual({ name: "tandem-plane", key: "secret" });
    expect(plane.readinessProbe!.httpGet).toMatchObject({ path: `${PLANE_ROUTES.status}?probe=ready`, port: PLANE_DEFAULTS.port });
    expect(plane.livenessProbe!.httpGet).toMatchObject({ path: `${PLANE_ROUTES.status}?probe=live`, port: PLANE_DEFAULTS.port });
    expect(plane.args!.slice(0, 1)).toEqual(["plane"]);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(drainOf(plane.args!));
    const mounts = Object.fromEntries(plane.volumeMounts!.map((m) => [m.name, m.mountPath]));
    for (const volume of pod.volumes!) expect(volume.hostPath!.path).toBe(mounts[volume.name]); // the same path inside and out
  });
});

/** `docker compose` when the plugin is there, else `docker-compose`, else none. */
function composeCommand(): string[] | undefined {
  if (spawnSync("docker", ["compose", "version"]).status === 0) return ["docker", "compose"];
  if (spawnSync("docker-compose", ["version"]).status === 0) return ["docker-compose"];
  return undefined;
}
const compose = composeCommand();
const ENV = { TANDEM_PLANE_HOST: "10.0.0.12", TANDEM_GATEWAY: "https://tandem.example.workers.dev", TANDEM_PLANE_SECRET: "0123456789abcdef0123" };

describe("the compose file", () => {
  // Without either (no registry here to fetch the plugin), the check is skipped, and says so; Debian's docker-compose
  // package (apt-get install -y docker-compose) validates against the Compose specification's JSON schema.
  it.skipIf(!compose)("is valid by docker compose config, resolved with the settings it needs", () => {
    const run = (file: string, env: Record<string, string>) =>
      spawnSync(compose![0]!, [...compose!.slice(1), "-f", file, "config"], { env: { ...process.env, ...env }, encoding: "utf8" });
    const good = run(join(DEPLOY, "compose/compose.yaml"), ENV);
    expect(good.stderr).not.toMatch(/invalid|error/i);
    expect(good.status).toBe(0);
    const plane = (parse(good.stdout) as { services: Record<string, Record<string, unknown>> }).services.plane!;
    expect(plane).toMatchObject({ network_mode: "host", stop_signal: "SIGTERM", working_dir: "/var/lib/tandem" });
    expect(Number(String(plane.stop_grace_period).replace(/s$/, ""))).toBeGreaterThan(drainOf(plane.command as string[]));
    expect(plane.command).toEqual([
      "plane",
      "--host",
      ENV.TANDEM_PLANE_HOST,
      "--port",
      String(PLANE_DEFAULTS.port),
      "--region",
      "local",
      "--drain-timeout",
      "300",
    ]);

    // A setting left out is named; a key the specification does not have is refused.
    const missing = run(join(DEPLOY, "compose/compose.yaml"), { ...ENV, TANDEM_GATEWAY: "" });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain("set TANDEM_GATEWAY");
    const dir = mkdtempSync(join(tmpdir(), "tandem-compose-"));
    writeFileSync(join(dir, "compose.yaml"), read("compose/compose.yaml").replace("stop_grace_period:", "stop_grace:"));
    const broken = run(join(dir, "compose.yaml"), ENV);
    expect(broken.status).not.toBe(0);
    expect(broken.stderr).toContain("stop_grace");
  });
});

describe("the systemd unit", () => {
  const unit = read("systemd/tandem-plane.service");
  it("stops the plane with SIGTERM and gives it longer than its drain", () => {
    const exec = /^ExecStart=(.*)$/m.exec(unit)![1]!.split(" ");
    expect(exec.slice(0, 2)).toEqual(["/usr/local/bin/tandem", "plane"]);
    expect(unit).toMatch(/^KillSignal=SIGTERM$/m);
    expect(Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)![1])).toBeGreaterThan(drainOf(exec));
  });

  const analyze = spawnSync("systemd-analyze", ["--version"]).status === 0;
  it.skipIf(!analyze)("passes systemd-analyze verify (but for tandem itself, where it is not installed)", () => {
    const result = spawnSync("systemd-analyze", ["verify", join(DEPLOY, "systemd/tandem-plane.service")], { encoding: "utf8" });
    const installed = spawnSync("test", ["-x", "/usr/local/bin/tandem"]).status === 0;
    const complaints = (result.stderr + result.stdout)
      .split("\n")
      .filter(Boolean)
      .filter((line) => installed || !line.includes("/usr/local/bin/tandem is not executable"));
    expect(complaints).toEqual([]);
    expect(execFileSync("systemd-analyze", ["--version"], { encoding: "utf8" })).toMatch(/systemd/);
  });
});
