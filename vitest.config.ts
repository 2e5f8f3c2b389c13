import { configDefaults, defineConfig } from "vitest/config";

/**
 * Four projects by what a suite needs, so the fast ones run alone: `npx vitest run --project unit`.
 * `npx vitest run` runs every project, each file once. A suite's project is what it starts (test/README.md):
 * one that starts workerd and Docker is in `docker`; a new suite in test/ lands in `docker` unless listed,
 * a new one beside the code in `unit` unless listed. Together they include what the root once did
 * (BESIDE_CODE and test/): a root `include` would be added to every project's, so there is none.
 */
const WORKERD = [
  "wasm/host.test.ts",
  "wasm/wasi-calls.test.ts",
  "wasm/conformance.test.ts",
  "test/agents.test.ts",
  "test/arguments.test.ts",
  "test/deploy.test.ts", // wrangler's dry run of the edge bundle: no Docker, too slow for unit
  "test/front-door.test.ts",
  "test/gateway.test.ts",
  "test/ledger.test.ts",
  "test/calls-list.test.ts",
  "test/tokens.test.ts",
  "test/secret-routes.test.ts",
  "test/volumes.test.ts",
  "test/dict-queue.test.ts",
  "test/delivery.test.ts",
  "test/wasm-functions.test.ts",
  "test/wasm-gateway-guard.test.ts",
  "test/environments.test.ts",
  "test/logs-archive.test.ts",
  "test/edge-metrics.test.ts",
  "test/deploy-artifact.test.ts", // the dry run's files in workerd, with a process-runtime plane: no Docker
  "test/deployments.test.ts", // deploy, history and rollback against the gateway in workerd, wrangler stood in for
  "test/plane-restart.test.ts", // a plane started again where the gateway knew it, with the process runtime: no Docker
  "test/plane-process-mounts.test.ts", // a volume mount on a plane of the process runtime: no Docker
  "test/dashboard-removed.test.ts", // the dashboard's pages over HTTP, two versions of an app on one state: no browser
  "test/dashboard-stores.test.ts", // the dashboard's stores page over HTTP: no browser
];
const BROWSER = ["test/agent-example.test.ts", "test/dashboard.test.ts"];
const DOCKER_BESIDE_CODE = ["gpu-plane/drivers/docker.test.ts", "gpu-plane/image-builder.test.ts"];
const UNIT_IN_TEST = ["test/tier-rules.test.ts", "test/plane-runner.test.ts", "test/deploy-files.test.ts", "test/console-table.test.ts"];
const BESIDE_CODE = ["sdk/**/*.test.ts", "gateway/**/*.test.ts", "gpu-plane/**/*.test.ts", "wasm/**/*.test.ts"];

export default defineConfig({
  test: {
    environment: "node",
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
    // Tests call gateways the way users do, with a token in the environment (test/helpers/setup.ts).
    setupFiles: ["test/helpers/setup.ts"],
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          sequence: { groupOrder: 0 },
          include: [...BESIDE_CODE, ...UNIT_IN_TEST],
          exclude: [...configDefaults.exclude, ...WORKERD, ...DOCKER_BESIDE_CODE],
        },
      },
      { extends: true, test: { name: "workerd", include: WORKERD, sequence: { groupOrder: 0 } } },
      {
        extends: true,
        test: {
          name: "docker",
          sequence: { groupOrder: 0 },
          include: [...DOCKER_BESIDE_CODE, "test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, ...WORKERD, ...BROWSER, ...UNIT_IN_TEST],
        },
      },
      // The pages' "within 2 s" checks run with nothing beside them but each other: run beside the Docker suites on two
      // cores, a page's renderer once went without CPU past its 2 s. They run last, in about 45 s.
      { extends: true, test: { name: "browser", include: BROWSER, sequence: { groupOrder: 1 } } },
    ],
  },
});
