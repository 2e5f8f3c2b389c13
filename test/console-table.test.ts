/** The edge's `console.table` against Node's own, on the same data: the same text, cell for cell. */
import { Console } from "node:console";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { consoleTable } from "../gateway/console-table.js";

/** What Node's console (as a plane container's runner makes it: no colours) prints for `table(data, properties)`. */
function nodeTable(data: unknown, properties?: readonly string[]): string {
  let out = "";
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      out += chunk.toString();
      done();
    },
  });
  new Console({ stdout: sink, stderr: sink, colorMode: false }).table(data, properties);
  return out.replace(/\n$/, "");
}

const CASES: [string, unknown, (readonly string[])?][] = [
  [
    "rows of objects, their keys the columns",
    [
      { a: 1, b: "xy" },
      { a: 22, c: [1, 2, 3, 4] },
    ],
  ],
  ["an object of rows, objects and primitives", { r1: { x: 1 }, r2: 5, r3: null }],
  ["an array of primitives", [1, "two", true, undefined, 10n]],
  ["nested objects, small and large", [{ small: { a: 1 }, large: { a: 1, b: 2, c: 3 }, list: ["a", "b"] }]],
  [
    "a Map",
    new Map<unknown, unknown>([
      ["k", { v: 1 }],
      [2, "two"],
    ]),
  ],
  ["a Set", new Set([1, "a", { b: 2 }])],
  ["chosen columns", [{ a: 1, b: 2 }, { a: 3 }], ["a", "b", "c"]],
  ["chosen columns of primitives", [1, 2], ["a"]],
  ["wide and accented text", [{ name: "東京", city: "café" }]],
  ["an empty array", []],
  ["dates, functions and symbols", [{ when: new Date(0), f: function named() {}, s: Symbol("s") }]],
];

describe("consoleTable", () => {
  for (const [what, data, properties] of CASES) {
    it(`prints ${what} as Node does`, () => {
      expect(consoleTable(data, properties)).toBe(nodeTable(data, properties));
    });
  }

  it("leaves what is no object to be printed as it is", () => {
    for (const value of [5, "text", null, undefined]) expect(consoleTable(value)).toBeUndefined();
  });
});
