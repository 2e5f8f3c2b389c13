import { describe, expect, it } from "vitest";
import { z } from "zod";
import { checkClassParams, checkSendable, checkedHandler, isArgumentsSchema, parseArguments, unsendableIn } from "./arguments.js";
import { InvalidArgumentError, fromWireError, toWireError } from "./errors.js";

const pair = z.tuple([z.string(), z.number().int().min(0)]);
const refused = (schema: z.core.$ZodType<readonly unknown[], readonly unknown[]>, args: unknown[]) =>
  parseArguments(schema, args, "demo.add").then(
    () => {
      throw new Error("accepted");
    },
    (err: unknown) => err as InvalidArgumentError,
  );

describe("arguments checked against an input schema", () => {
  it("returns the schema's output: defaults filled in, transforms applied", async () => {
    expect(await parseArguments(pair, ["a", 1], "demo.add")).toEqual(["a", 1]);
    const shaped = z.tuple([z.string().trim(), z.number().default(3)]).transform(([s, n]) => [s.repeat(n)]);
    expect(await parseArguments(shaped, [" ab "], "demo.f")).toEqual(["ababab"]);
    expect(await parseArguments(z.array(z.coerce.number()), ["1", "2"], "demo.f")).toEqual([1, 2]);
  });

  it("names the argument (from 1) and what was expected, with what was given", async () => {
    const err = await refused(pair, ["a", "two"]);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.code).toBe("invalid_argument");
    expect(err.status).toBe(400);
    expect(err.message).toBe('demo.add: argument 2: Invalid input: expected number, received string (got "two")');
    expect(err.details).toEqual({ argument: 2, issues: [{ argument: 2, path: [], message: "Invalid input: expected number, received string" }] });
  });

  it("names every bad argument, a field inside one, a missing one and too many", async () => {
    expect((await refused(pair, [1, -1])).message).toBe(
      "demo.add: argument 1: Invalid input: expected string, received number (got 1); argument 2: Too small: expected number to be >=0 (got -1)",
    );
    const user = z.tuple([z.strictObject({ name: z.string(), age: z.number() })]);
    const nested = await refused(user, [{ name: "Ada", age: "36", extra: 1 }]);
    expect(nested.message).toBe(
      'demo.add: argument 1: field "age" Invalid input: expected number, received string (got "36"); argument 1: unknown field "extra"',
    );
    expect(nested.details?.issues).toContainEqual({ argument: 1, path: ["age"], message: "Invalid input: expected number, received string" });
    // An unknown key in the same words as the message, not zod's "Unrecognized key".
    expect(nested.details?.issues).toContainEqual({ argument: 1, path: [], message: 'unknown field "extra"' });
    // A list's items counted from 1, as arguments are (before: `argument 1: field "0" Invalid input…`).
    const lists = z.tuple([z.array(z.string()), z.array(z.strictObject({ id: z.number() }))]);
    expect((await refused(lists, [[1], [{ id: 1 }, { id: "2" }]])).message).toBe(
      'demo.add: argument 1: item 1: Invalid input: expected string, received number (got 1); argument 2: item 2: field "id" Invalid input: expected number, received string (got "2")',
    );
    expect((await refused(pair, ["a"])).message).toBe("demo.add: argument 2: Invalid input: expected number, received undefined");
    const tooMany = await refused(pair, ["a", 1, 2]);
    expect(tooMany.message).toBe("demo.add: takes at most 2 arguments (got 3)");
    expect(tooMany.details).toEqual({ issues: [{ path: [], message: "takes at most 2 arguments (got 3)" }] });
    expect((await refused(z.array(z.number()).min(2), [1])).message).toBe("demo.add: takes at least 2 arguments (got 1)");
  });

  it("runs async refinements", async () => {
    const known = z.tuple([z.string().refine(async (s) => s === "ada", "must be a known user")]);
    expect((await refused(known, ["bob"])).message).toBe('demo.add: argument 1: must be a known user (got "bob")');
  });

  it("travels the wire and comes back as the same class", async () => {
    const err = await refused(pair, ["a", "two"]);
    const revived = fromWireError(JSON.parse(JSON.stringify(toWireError(err))));
    expect(revived).toBeInstanceOf(InvalidArgumentError);
    expect(revived.details).toEqual(err.details);
  });

  it("wraps a handler so that it gets the checked values", async () => {
    const run = checkedHandler(
      (s: string, n: number) => s.repeat(n),
      pair,
      () => "demo.repeat",
    );
    expect(await run("ab", 2)).toBe("abab");
    await expect(run("ab", -1)).rejects.toThrow("demo.repeat: argument 2: Too small");
  });

  it("refuses a transform that puts out something other than a list, naming the option", async () => {
    const single = z.tuple([z.string()]).transform(([s]) => s) as unknown as z.core.$ZodType<readonly unknown[], readonly unknown[]>;
    await expect(parseArguments(single, ["a"], "demo.f")).rejects.toThrow('demo.f: option "input" must put out an argument list (an array), not string');
  });

  it("takes schemas of a list only", () => {
    expect(isArgumentsSchema(pair)).toBe(true);
    expect(isArgumentsSchema(z.array(z.string()))).toBe(true);
    expect(isArgumentsSchema(pair.transform(([s]) => [s]))).toBe(true);
    expect(isArgumentsSchema(z.string())).toBe(false);
    expect(isArgumentsSchema(z.object({}))).toBe(false);
    expect(isArgumentsSchema({ parse: () => [] })).toBe(false);
    expect(isArgumentsSchema(undefined)).toBe(false);
  });
});

describe("a class method's parameters", () => {
  it("says in one sentence that the first argument is the class's parameters, and what is wrong with it", () => {
    expect(() => checkClassParams("demo.Model.predict", 3)).toThrow(
      "demo.Model.predict is a class method, called with the class's parameters first: .remote(parameters, ...args) or .starmap([[parameters, ...args], …]) from the SDK, tandem run FILE::Class.method '{}' ARGS… from the CLI, \"args\": [parameters, ...args] over HTTP: parameters must be an object ({} for none; got number)",
    );
    expect(() => checkClassParams("demo.Model.predict", { size: [1] })).toThrow('demo.Model.predict: class parameter "size" must be a string');
    expect(() => checkClassParams("demo.Model.predict", { size: "small" })).not.toThrow();
  });
});

describe("arguments the wire can carry", () => {
  it("take an array's holes as undefined, and still find a function beside them", () => {
    /* eslint-disable no-sparse-arrays -- the holes are the point */
    expect(() => checkSendable([[1, , 3], new Array(3), { a: [undefined, , 2] }])).not.toThrow();
    expect(unsendableIn([, () => 1])).toEqual({ kind: "function", path: "[1]" });
    expect(() => checkSendable([{ a: [, Symbol("s")] }])).toThrow("argument 1 (at .a[1]) is a symbol, which a call cannot carry");
    /* eslint-enable no-sparse-arrays */
  });

  it("look into a shared or cyclic value once, not once a path (before: 2³² steps for an array holding itself twice)", () => {
    const twice: unknown[] = [];
    twice.push(twice, twice);
    expect(() => checkSendable([twice])).not.toThrow(); // before: this thread held for good
    // 30 levels, each holding the next twice: 2³⁰ paths to the bottom, where a function is, found by the first path.
    let level: unknown = { f: () => 1 };
    for (let i = 0; i < 30; i++) level = [level, level];
    expect(unsendableIn(level)).toEqual({ kind: "function", path: `${"[0]".repeat(30)}.f` });
    // One met first too deep to look into, then nearer the top, is looked into again from there.
    const deep: unknown = { g: () => 2 };
    let chain: unknown = deep;
    for (let i = 0; i < 40; i++) chain = [chain];
    expect(unsendableIn({ far: chain, near: deep })).toEqual({ kind: "function", path: ".near.g" });
  });
});
