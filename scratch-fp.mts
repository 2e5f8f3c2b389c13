import { buildApps } from "./sdk/cli/local-stack.js";
import { BuildCache } from "./sdk/cli/build-cache.js";
const opts = { runtimeApart: new BuildCache("/tmp/fp/cache") };
await buildApps(["/tmp/fpapp/app.ts"], "/tmp/fp/current", opts);
await buildApps(["/tmp/fpapp/app.ts"], "/tmp/fp/gen-1", opts);
