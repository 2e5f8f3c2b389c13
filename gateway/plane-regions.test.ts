import { describe, expect, it } from "vitest";
import { InvalidRequestError } from "../sdk/errors.js";
import type { PlaneInfo } from "../sdk/protocol.js";
import { parseGatewaySettings } from "../sdk/settings.js";
import { pickPlane } from "./plane-choice.js";
import { nearRegionsOf, regionRank } from "./plane-regions.js";

const plane = (planeId: string, region: string, cpuFree = 4, gpus: PlaneInfo["gpus"] = {}): PlaneInfo => ({
  planeId,
  url: "http://127.0.0.1:1",
  region,
  runtime: "docker",
  simulated: true,
  gpus,
  cpu: { total: 8, free: cpuFree },
  memoryMiB: { total: 8192, free: 8192 },
  protocol: 1 as PlaneInfo["protocol"],
  lastSeen: Date.now(),
  healthy: true,
});

const request = (headers: Record<string, string> = {}, cf?: { colo?: string; continent?: string }) =>
  Object.assign(new Request("http://gateway/v1/apps", { headers }), cf ? { cf } : {});

describe("regions nearest a request", () => {
  const config = parseGatewaySettings({ TANDEM_REGION_PREFERENCE: "FRA=eu-central,eu-west; EU=eu-west; *=us-east" });

  it("reads the Tandem-Region header first, then the colo, the continent and *", () => {
    expect(nearRegionsOf(request({ "tandem-region": "ap-south, eu" }, { colo: "FRA", continent: "EU" }), config)).toEqual(["ap-south", "eu"]);
    expect(nearRegionsOf(request({}, { colo: "FRA", continent: "EU" }), config)).toEqual(["eu-central", "eu-west"]);
    expect(nearRegionsOf(request({}, { colo: "CDG", continent: "EU" }), config)).toEqual(["eu-west"]);
    expect(nearRegionsOf(request({}, { colo: "IAD", continent: "NA" }), config)).toEqual(["us-east"]);
    expect(nearRegionsOf(request(), config)).toEqual(["us-east"]);
  });

  it("maps continents to region name prefixes when no preference is configured", () => {
    const plain = parseGatewaySettings({});
    expect(nearRegionsOf(request({}, { continent: "EU" }), plain)[0]).toBe("eu");
    expect(nearRegionsOf(request({}, { continent: "NA" }), plain)[0]).toBe("us");
    expect(nearRegionsOf(request(), plain)).toEqual([]);
  });

  it("refuses a malformed header, and a malformed preference, naming them", () => {
    expect(() => nearRegionsOf(request({ "tandem-region": "EU West" }), config)).toThrow(InvalidRequestError);
    expect(() => nearRegionsOf(request({ "tandem-region": " , " }), config)).toThrow("header Tandem-Region: names no region");
    expect(() => parseGatewaySettings({ TANDEM_REGION_PREFERENCE: "Europe=eu-west" })).toThrow(
      'setting "TANDEM_REGION_PREFERENCE" "Europe=eu-west" must be PLACE=region,region',
    );
  });

  it("ranks a region by the first entry it matches, by name or prefix before a '-'", () => {
    expect(regionRank("eu-west", ["us", "eu"])).toBe(1);
    expect(regionRank("eu-west", ["eu-west"])).toBe(0);
    expect(regionRank("europe", ["eu"])).toBe(1);
    expect(regionRank("ap-south", [])).toBe(0);
  });
});

describe("pickPlane with regions", () => {
  const planes = [plane("pl-eu1", "eu-west", 2), plane("pl-eu2", "eu-west", 6), plane("pl-us1", "us-east", 8)];

  it("keeps a restricted function in its regions, and prefers the nearest region for the rest", () => {
    expect(pickPlane(planes, [], new Set(), { regions: ["eu-west"], near: ["us-east"] })?.planeId).toBe("pl-eu2");
    expect(pickPlane(planes, [], new Set(), { regions: [], near: ["eu"] })?.planeId).toBe("pl-eu2");
    expect(pickPlane(planes, [], new Set(), { regions: [], near: [] })?.planeId).toBe("pl-us1");
    expect(pickPlane(planes, [], new Set(["pl-eu1", "pl-eu2"]), { regions: ["eu-west"], near: [] })).toBeUndefined();
    expect(pickPlane(planes, [], new Set(["pl-eu1", "pl-eu2"]), { regions: [], near: ["eu"] })?.planeId).toBe("pl-us1");
  });

  it("takes a free GPU further away before a queue nearby, and queues nearest first when none is free", () => {
    const gpuPlanes = [
      plane("pl-eu1", "eu-west", 4, { A100: { total: 1, free: 0 } }),
      plane("pl-us1", "us-east", 4, { A100: { total: 1, free: 1 } }),
      plane("pl-ap1", "ap-south", 4, { A100: { total: 1, free: 0 } }),
    ];
    const a100 = [{ type: "A100" as const, count: 1 }];
    expect(pickPlane(gpuPlanes, a100, new Set(), { regions: [], near: ["eu"] })?.planeId).toBe("pl-us1");
    expect(pickPlane(gpuPlanes, a100, new Set(["pl-us1"]), { regions: [], near: ["ap"] })?.planeId).toBe("pl-ap1");
    expect(pickPlane(gpuPlanes, a100, new Set(), { regions: ["eu-west"], near: [] })?.planeId).toBe("pl-eu1");
  });
});
