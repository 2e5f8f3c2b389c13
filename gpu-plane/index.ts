export { Plane } from "./plane.js";
export type { PlaneOptions } from "./plane.js";
