import { describe, expect, it } from "vitest";
import type { PlaneInfo } from "../sdk/protocol.js";
import { inputInFlight, pickPlane, resourcesToPlace } from "./plane-choice.js";

const plane = (planeId: string, region: string, options: { cpuFree?: number; gpus?: PlaneInfo["gpus"]; warm?: PlaneInfo["warm"] } = {}): PlaneInfo => ({
  planeId,
  url: "http://127.0.0.1:1",
  region,
  runtime: "docker",
  simulated: true,
  gpus: options.gpus ?? {},
  cpu: { total: 8, free: options.cpuFree ?? 4 },
  memoryMiB: { total: 8192, free: 8192 },
  ...(options.warm ? { warm: options.warm } : {}),
  protocol: 1 as PlaneInfo["protocol"],
  lastSeen: Date.now(),
  healthy: true,
});

const fn = { app: "shop", function: "resize" };
const idle = (n: number, busy = 0) => [{ ...fn, busy, idle: n }];
/** The plane picked, asked 20 times: one id when the choice is not left to chance. */
const picked = (...args: Parameters<typeof pickPlane>) => [...new Set(Array.from({ length: 20 }, () => pickPlane(...args)?.planeId))];

describe("pickPlane and warm containers", () => {
  it("sends a CPU input to the plane with an idle warm container of its function, not the roomiest", () => {
    const planes = [plane("pl-warm", "eu", { cpuFree: 3, warm: idle(1) }), plane("pl-cold", "eu", { cpuFree: 4 })];
    expect(picked(planes, [], new Set(), { regions: [], near: [], warm: fn })).toEqual(["pl-warm"]);
    // Another function's input, or one whose warm containers are not asked for, goes to the roomiest.
    expect(picked(planes, [], new Set(), { regions: [], near: [], warm: { app: "shop", function: "other" } })).toEqual(["pl-cold"]);
    expect(picked(planes, [], new Set(), { regions: [], near: [] })).toEqual(["pl-cold"]);
  });

  it("sends a GPU input to the plane whose GPU an idle container of its function holds, though none is free there", () => {
    const planes = [
      plane("pl-warm", "eu", { gpus: { T4: { total: 1, free: 0 } }, warm: idle(1) }),
      plane("pl-cold", "eu", { gpus: { T4: { total: 1, free: 1 } } }),
      plane("pl-small", "eu", { gpus: { A10G: { total: 1, free: 0 } }, warm: idle(3) }),
    ];
    expect(picked(planes, [{ type: "T4", count: 1 }], new Set(), { regions: [], near: [], warm: fn })).toEqual(["pl-warm"]);
    // pl-small has warm containers but not the GPU asked for; with pl-warm skipped, the free one.
    expect(picked(planes, [{ type: "T4", count: 1 }], new Set(["pl-warm"]), { regions: [], near: [], warm: fn })).toEqual(["pl-cold"]);
  });

  it("prefers the most idle containers, counts busy ones for nothing, and keeps to the nearest region first", () => {
    const planes = [
      plane("pl-busy", "eu", { cpuFree: 6, warm: idle(0, 4) }),
      plane("pl-one", "eu", { cpuFree: 2, warm: idle(1) }),
      plane("pl-two", "eu", { cpuFree: 1, warm: idle(2) }),
      plane("pl-far", "us", { cpuFree: 8, warm: idle(5) }),
    ];
    expect(picked(planes, [], new Set(), { regions: [], near: ["eu"], warm: fn })).toEqual(["pl-two"]);
    expect(picked(planes, [], new Set(), { regions: [], near: ["us"], warm: fn })).toEqual(["pl-far"]);
    // Containers all busy draw nothing: the roomiest takes it.
    expect(picked([planes[0]!, plane("pl-free", "eu", { cpuFree: 7 })], [], new Set(), { regions: [], near: [], warm: fn })).toEqual(["pl-free"]);
  });

  it("draws as many inputs at once to a plane as it reported idle containers, and more once they are answered", () => {
    const warm = plane("pl-warm2", "eu", { cpuFree: 2, warm: idle(2) });
    const planes = [warm, plane("pl-room", "eu", { cpuFree: 6 })];
    const placement = { regions: [], near: [], warm: fn };
    const running: (() => void)[] = [];
    for (let i = 0; i < 2; i++) {
      expect(pickPlane(planes, [], new Set(), placement)?.planeId).toBe("pl-warm2");
      running.push(inputInFlight("pl-warm2", fn));
    }
    expect(picked(planes, [], new Set(), placement)).toEqual(["pl-room"]); // both busy: the roomiest, as without them
    running[0]!();
    running[0]!(); // told twice: counted once
    expect(picked(planes, [], new Set(), placement)).toEqual(["pl-warm2"]);
    running[1]!();
  });
});

describe("pickPlane within a burst", () => {
  it("counts the CPU it sent to a plane since its last heartbeat: a burst spreads over the planes with room", () => {
    // Before, every input of the burst went to the plane that was roomiest at its last heartbeat (which then ran
    // more containers than it has cores), though the other had a core free.
    const planes = [plane("pl-a", "eu", { cpuFree: 2 }), plane("pl-b", "eu", { cpuFree: 1.5 })];
    const sent: string[] = [];
    const running: (() => void)[] = [];
    for (let i = 0; i < 4; i++) {
      const chosen = pickPlane(planes, [], new Set())!;
      sent.push(chosen.planeId);
      running.push(inputInFlight(chosen.planeId, fn, resourcesToPlace(chosen, undefined, 1)));
    }
    expect(sent.filter((id) => id === "pl-a")).toHaveLength(2);
    expect(sent.filter((id) => id === "pl-b")).toHaveLength(2);
    // Answered inputs free their CPU again; a newer heartbeat counts what it holds, and what was sent before it is not counted twice.
    for (const done of running) done();
    expect(picked(planes, [], new Set())).toEqual(["pl-a"]);
    running.push(inputInFlight("pl-a", fn, { cpu: 1 }));
    expect(picked([{ ...planes[0]!, lastSeen: Date.now() + 1 }, planes[1]!], [], new Set())).toEqual(["pl-a"]);
    for (const done of running) done();
  });

  it("counts the GPUs it sent to a plane since its last heartbeat: a burst of GPU inputs spreads over the planes with GPUs free", () => {
    // Before: all four went to pl-two (two A100s free at its last heartbeat), two of them to queue there, though
    // pl-one's A100 was free.
    const a100 = [{ type: "A100" as const, count: 1 }];
    const planes = [plane("pl-two", "eu", { gpus: { A100: { total: 2, free: 2 } } }), plane("pl-one", "eu", { gpus: { A100: { total: 1, free: 1 } } })];
    const sent: string[] = [];
    const running: (() => void)[] = [];
    for (let i = 0; i < 3; i++) {
      const chosen = pickPlane(planes, a100, new Set())!;
      sent.push(chosen.planeId);
      running.push(inputInFlight(chosen.planeId, fn, resourcesToPlace(chosen, undefined, 1, a100)));
    }
    expect(sent.sort()).toEqual(["pl-one", "pl-two", "pl-two"]);
    // None free now: the fourth queues on a plane that has the type.
    expect(["pl-one", "pl-two"]).toContain(pickPlane(planes, a100, new Set())!.planeId);
    // Answered, their GPUs count as free again.
    for (const done of running) done();
    expect(picked(planes, a100, new Set())).toEqual(["pl-two"]);
  });

  it("places nothing for an input an idle warm container takes, else its CPU and the first GPU it asks for that the plane has free", () => {
    const warm = plane("pl-warm", "eu", { cpuFree: 1, warm: idle(1) });
    expect(resourcesToPlace(warm, fn, 1)).toEqual({ cpu: 0 });
    expect(resourcesToPlace(warm, { app: "shop", function: "other" }, 1)).toEqual({ cpu: 1 });
    expect(resourcesToPlace(warm, undefined, 0.5)).toEqual({ cpu: 0.5 });
    const gpus = plane("pl-gpus", "eu", { gpus: { H100: { total: 1, free: 0 }, A100: { total: 2, free: 1 } } });
    const wants = [
      { type: "H100" as const, count: 1 },
      { type: "A100" as const, count: 1 },
    ];
    expect(resourcesToPlace(gpus, undefined, 2, wants)).toEqual({ cpu: 2, gpu: { type: "A100", count: 1 } });
    expect(resourcesToPlace(plane("pl-full", "eu", { gpus: { H100: { total: 1, free: 0 } } }), undefined, 2, wants)).toEqual({ cpu: 2, gpu: wants[0] });
    // A container that takes 100 inputs: each input a hundredth of one.
    expect(resourcesToPlace(gpus, undefined, 2, wants, 100)).toEqual({ cpu: 0.02, gpu: { type: "A100", count: 0.01 } });
  });

  it("keeps a burst of a function whose containers take many inputs on the plane with the most free, as its containers would", () => {
    // 200 inputs of a function whose containers take 100 each: two containers' worth, which the plane with eight
    // A100s holds; counted a GPU an input, the ninth and later went to the plane with one.
    const a100 = [{ type: "A100" as const, count: 1 }];
    const planes = [plane("pl-eight", "eu", { gpus: { A100: { total: 8, free: 8 } } }), plane("pl-one", "eu", { gpus: { A100: { total: 1, free: 1 } } })];
    const running: (() => void)[] = [];
    const sent = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const chosen = pickPlane(planes, a100, new Set())!;
      sent.add(chosen.planeId);
      running.push(inputInFlight(chosen.planeId, fn, resourcesToPlace(chosen, undefined, 1, a100, 100)));
    }
    expect([...sent]).toEqual(["pl-eight"]);
    for (const done of running) done();
  });
});
