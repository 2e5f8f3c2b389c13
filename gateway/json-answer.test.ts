import { describe, expect, it } from "vitest";
import { unfaithfulJsonIn } from "./json-answer.js";

describe("unfaithfulJsonIn", () => {
  it("passes what JSON writes as it is, undefined fields and toJSON values included", () => {
    class Money {
      constructor(readonly cents: number) {}
      toJSON() {
        return { cents: this.cents };
      }
    }
    const bare = Object.assign(Object.create(null) as object, { a: 1 });
    for (const value of [null, 1, "a", [1, undefined], { a: undefined, d: new Date(0), m: new Money(5) }, bare, new String("s"), new URL("https://x.test")])
      expect(unfaithfulJsonIn(value)).toBeUndefined();
  });

  it("names what JSON would drop or change, with its path", () => {
    expect(unfaithfulJsonIn(Symbol("s"))).toMatchObject({ path: "", what: "a symbol" });
    expect(unfaithfulJsonIn({ n: [1n] })).toMatchObject({ path: ".n[0]", what: "a bigint" });
    expect(unfaithfulJsonIn({ r: -Infinity })).toMatchObject({ path: ".r", what: "-Infinity" });
    expect(unfaithfulJsonIn({ b: new ArrayBuffer(1) })).toMatchObject({ path: ".b", what: "an ArrayBuffer" });
    expect(unfaithfulJsonIn([{ e: new Error("x") }])).toMatchObject({ path: "[0].e", what: "an Error" });
    expect(unfaithfulJsonIn({ p: Promise.resolve(1) })).toMatchObject({ path: ".p", what: "a Promise" });
    // Any other class's instance is its own fields, as JSON writes it: those are checked.
    class Order {
      constructor(
        readonly id: number,
        readonly items: Map<string, number>,
      ) {}
    }
    expect(unfaithfulJsonIn({ order: new Order(1, new Map()) })).toMatchObject({ path: ".order.items", what: "a Map" });
    expect(unfaithfulJsonIn(new Order(1, undefined as unknown as Map<string, number>))).toBeUndefined();
    // What a toJSON returns is checked too.
    expect(unfaithfulJsonIn({ t: { toJSON: () => ({ f: () => 1 }) } })).toMatchObject({ path: ".t.f", what: "a function" });
  });

  it("names a cycle rather than looping, and lets a value shared by two fields be", () => {
    const loop: Record<string, unknown> = {};
    loop.self = { back: loop };
    expect(unfaithfulJsonIn(loop)).toMatchObject({ path: ".self.back", what: "a reference to a value that holds it" });
    const shared = { a: 1 };
    expect(unfaithfulJsonIn({ x: shared, y: [shared] })).toBeUndefined();
  });
});
