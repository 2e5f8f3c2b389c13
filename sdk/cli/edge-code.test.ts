import { describe, expect, it } from "vitest";
import { withoutEdgeHandlers } from "./edge-code.js";

// Code as esbuild prints an app into an unminified plane bundle (keepNames on).
const bundle = `var app = new App("shop");
var greet = app.function({ name: "greet", retries: Retries({ maxRetries: 2 }) }, async (name) => {
  const text = "Hello, " + name;
  return text;
});
var page = app.endpoint({ method: "GET", path: "/:name", label: "page" }, (c) => c.text("hi"));
var price = app.function({ gpu: "A100" }, (x) => x * 2);
app.web("api", () => new Hono().get("/", (c) => c.json({ ok: true })));
`;
const greet = { name: "shop.greet", source: 'async (name) => {\n  const text = "Hello, " + name;\n  return text;\n}' };

describe("leaving edge handlers out of a plane bundle", () => {
  it("replaces an inline edge handler with a stub that names it, every other line where it was", () => {
    const out = withoutEdgeHandlers(bundle, [greet]);
    expect(out).not.toContain("Hello, ");
    expect(out).toContain('throw new Error("shop.greet runs at the edge: its code is not in the plane bundle (call it with .remote())")');
    expect(out.split("\n").length).toBe(bundle.split("\n").length);
    expect(out.split("\n").slice(5)).toEqual(bundle.split("\n").slice(5));
    expect(out.split("\n")[4]).toBe(" );"); // the call's close, at the column it had
    expect(() => new Function(out)).not.toThrow(); // parsed, not run
  });

  it("replaces endpoints' handlers and web mounts' factories", () => {
    const out = withoutEdgeHandlers(bundle, [
      { name: 'endpoint "page"', source: '(c) => c.text("hi")' },
      { name: 'web mount "api"', source: '() => new Hono().get("/", (c) => c.json({ ok: true }))' },
    ]);
    expect(out).not.toContain('c.text("hi")');
    expect(out).not.toContain("new Hono()");
    expect(out).toContain('endpoint \\"page\\" runs at the edge');
  });

  it("keeps a handler written twice: it cannot tell which is the edge function's", () => {
    const twice = `${bundle}var again = app.function({ tier: "plane" }, async (name) => {\n  const text = "Hello, " + name;\n  return text;\n});\n`;
    expect(withoutEdgeHandlers(twice, [greet])).toBe(twice);
  });

  it("keeps a handler defined apart and named, which plane code may call too", () => {
    const named = `var fmt = /* @__PURE__ */ __name((x) => "#" + x, "fmt");\nvar show = app.function(fmt);\nvar heavy = app.function({ gpu: "T4" }, (x) => fmt(x * 2));\n`;
    expect(withoutEdgeHandlers(named, [{ name: "show", source: '(x) => "#" + x' }])).toBe(named);
  });

  it("keeps a function that is not an argument of a registration, or not its last", () => {
    const other = `var handlers = [(x) => x + 1];\nvar tripled = wrap((x) => x * 3);\nvar mounted = app.web("api", () => makeApi(), { auth: "token" });\n`;
    expect(
      withoutEdgeHandlers(other, [
        { name: "a", source: "(x) => x + 1" },
        { name: "b", source: "(x) => x * 3" },
        { name: "c", source: "() => makeApi()" },
      ]),
    ).toBe(other);
  });

  it("gives up on an options argument it would have to parse: a template", () => {
    const templated = "var f = app.function({ name: `n${1}` }, (x) => x - 1);\n";
    expect(withoutEdgeHandlers(templated, [{ name: "f", source: "(x) => x - 1" }])).toBe(templated);
  });
});
