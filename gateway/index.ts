export { createGateway } from "./worker.js";
export type { AppModule } from "./worker.js";
export { CallLedger } from "./call-ledger.js";
export { installSourceMap } from "./source-map.js";
export type { Env } from "./env.js";
