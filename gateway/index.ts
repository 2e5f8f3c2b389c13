export { createGateway } from "./worker.js";
export type { AppModule, GatewayOptions } from "./worker.js";
export { CallLedger } from "./call-ledger.js";
export { PlaneRegistry } from "./plane-registry.js";
export { Scheduler } from "./scheduler.js";
export { AgentHub } from "./agents.js";
export { TokenStore } from "./token-store.js";
export { installSourceMap } from "./source-map.js";
export type { Env } from "./env.js";
