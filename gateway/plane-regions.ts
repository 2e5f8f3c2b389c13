/**
 * Regions: which planes a function's calls may go to (its `region` option),
 * and which regions are nearest the request that made them: the
 * `Tandem-Region` header a client sends, else the request's Cloudflare
 * location (`request.cf`: colo, then continent) through
 * `TANDEM_REGION_PREFERENCE`, else a built-in mapping of continents to the
 * usual region name prefixes. docs/deploy.md, "Regions", documents both.
 */
import { InvalidRequestError } from "../sdk/errors.js";
import { HEADERS, REGION_PATTERN } from "../sdk/protocol.js";
import type { GatewayConfig } from "./config.js";

/**
 * Where a request from each continent goes without `TANDEM_REGION_PREFERENCE`: region name prefixes, nearest
 * first (`eu` is `eu-west`, `eu-central-1` and `eu` itself). Continent codes are Cloudflare's (`request.cf.continent`).
 */
export const CONTINENT_REGIONS: Readonly<Record<string, readonly string[]>> = {
  EU: ["eu", "me", "us", "na"],
  NA: ["us", "na", "ca", "eu"],
  SA: ["sa", "us", "na"],
  AS: ["ap", "asia", "as", "me", "eu"],
  OC: ["au", "oc", "ap", "asia"],
  AF: ["af", "eu", "me"],
  AN: [],
};

/** The part of `request.cf` read here. */
interface CfLocation {
  colo?: unknown;
  continent?: unknown;
}

/**
 * The regions nearest the request, nearest first (entries are names or name prefixes): its `Tandem-Region`
 * header, else its Cloudflare location. Throws `invalid_request` (400) for a malformed header.
 *
 * @example nearRegionsOf(c.req.raw, c.var.config); // ["eu", "me", "us", "na"] for a request from Europe
 */
export function nearRegionsOf(request: Request, config: GatewayConfig): string[] {
  const header = request.headers.get(HEADERS.region);
  if (header !== null) {
    const entries = header
      .split(",")
      .map((r) => r.trim())
      .filter(Boolean);
    const bad = entries.find((r) => !REGION_PATTERN.test(r));
    if (bad !== undefined || entries.length === 0) {
      throw new InvalidRequestError(
        `header Tandem-Region: ${bad === undefined ? "names no region" : `"${bad}" is not a region name`}; send region names, nearest first, such as "eu-west,us-east" (lowercase letters, digits and '-')`,
      );
    }
    return entries;
  }
  const cf = (request as { cf?: CfLocation }).cf;
  const colo = typeof cf?.colo === "string" ? cf.colo : undefined;
  const continent = typeof cf?.continent === "string" ? cf.continent : undefined;
  const preference = config.regionPreference;
  if (colo !== undefined && preference[colo]) return preference[colo];
  if (continent !== undefined && preference[continent]) return preference[continent];
  if (continent !== undefined && !preference["*"] && CONTINENT_REGIONS[continent]) return [...CONTINENT_REGIONS[continent]];
  return defaultNearRegions(config);
}

/**
 * The regions preferred for work no request placed (scheduled runs, calls resumed after a lost runner, warm
 * pools): `TANDEM_REGION_PREFERENCE`'s `*` entry, else none (every allowed region alike).
 *
 * @example defaultNearRegions(config); // ["us-east"] with TANDEM_REGION_PREFERENCE="*=us-east"
 */
export function defaultNearRegions(config: GatewayConfig): string[] {
  return config.regionPreference["*"] ?? [];
}

/**
 * How near `region` is: the index of the first entry of `near` it matches (the name itself, or a prefix of it
 * before a `-`), or `near.length` when none does.
 *
 * @example regionRank("eu-west", ["us", "eu"]); // 1
 */
export function regionRank(region: string, near: readonly string[]): number {
  const i = near.findIndex((entry) => region === entry || region.startsWith(`${entry}-`));
  return i < 0 ? near.length : i;
}

/**
 * Whether a plane in `region` may take a function's calls: `allowed` empty means any region.
 *
 * @example inAllowedRegion("eu-west", ["eu-west", "eu-central"]); // true
 */
export function inAllowedRegion(region: string, allowed: readonly string[]): boolean {
  return allowed.length === 0 || allowed.includes(region);
}

/** `region eu-west` or `regions eu-west, eu-central`, for messages. */
export function describeRegions(regions: readonly string[]): string {
  return `${regions.length > 1 ? "regions" : "region"} ${regions.join(", ")}`;
}
