import { describe, expect, it } from "vitest";
import { beatRunners, holdRunner, runnerAliveHere } from "./live-runners.js";

describe("live runners", () => {
  it("takes a held call for alive while its runner beats within the silence, and not once it is released", () => {
    const release = holdRunner(["fc-a"]);
    const now = Date.now();
    expect(runnerAliveHere("fc-a", now + 1_000, 2_000)).toBe(true);
    release();
    expect(runnerAliveHere("fc-a", now + 1_000, 2_000)).toBe(false);
    expect(runnerAliveHere("fc-never-held", now, 2_000)).toBe(false);
  });

  it("lets go of a hold silent past the silence, so a beat after it (a runner cut off, then resumed elsewhere) does not revive it", () => {
    holdRunner(["fc-b"]); // never released: a request workerd ended without its finally
    const now = Date.now();
    expect(runnerAliveHere("fc-b", now + 5_000, 2_000)).toBe(false);
    beatRunners(["fc-b"]);
    expect(runnerAliveHere("fc-b", Date.now(), 2_000)).toBe(false);
  });

  it("keeps a call alive while any of its holds beats", () => {
    const first = holdRunner(["fc-c"]);
    holdRunner(["fc-c", "fc-d"]);
    first();
    beatRunners(["fc-c"]);
    expect(runnerAliveHere("fc-c", Date.now() + 1_000, 2_000)).toBe(true);
    expect(runnerAliveHere("fc-d", Date.now() + 1_000, 2_000)).toBe(true);
  });
});
