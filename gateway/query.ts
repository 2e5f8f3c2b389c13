/**
 * A request's query, read strictly: a field given twice (which would read as its first value alone, silently, where
 * its sender may have meant the other) and, where a route says which fields it takes, a field it does not take are
 * 400s that name the field, on every route alike.
 */
import type { MiddlewareHandler } from "hono";
import { InvalidRequestError } from "../sdk/errors.js";

/**
 * What is wrong with a query that gives a field more than once (`field "source" is given 2 times: give it once`), or
 * undefined.
 */
export function givenTwice(queries: Record<string, string[]>): string | undefined {
  const twice = Object.entries(queries).find(([, values]) => values.length > 1);
  return twice && `field "${twice[0]}" is given ${twice[1].length} times: give it once`;
}

/**
 * A query's fields, each given once and each one of `fields` (a 400 naming the field otherwise), by name. `what`
 * names the query in the message ("the logs page", "GET /v1/calls/:id").
 * @example const { wait } = onceEach(c.req.queries(), ["wait"], "GET /v1/calls/:id");
 */
export function onceEach<F extends string>(queries: Record<string, string[]>, fields: readonly F[], what: string): Partial<Record<F, string>> {
  const twice = givenTwice(queries);
  if (twice) throw new InvalidRequestError(`${what}: ${twice}`);
  const unknown = Object.keys(queries).find((field) => !(fields as readonly string[]).includes(field));
  if (unknown !== undefined) {
    const takes = fields.length ? `takes ${fields.join(", ")}` : "takes no query";
    throw new InvalidRequestError(`${what} ${takes}, not "${unknown.slice(0, 40)}"`);
  }
  return Object.fromEntries(Object.entries(queries).map(([field, [value]]) => [field, value])) as Partial<Record<F, string>>;
}

/**
 * Refuses a request whose query gives a field twice, whatever its route: mounted on `/v1/*`. A request with no query
 * costs a look for its `?`.
 * @example router.use("/v1/*", noFieldTwice());
 */
export function noFieldTwice(): MiddlewareHandler {
  return async (c, next) => {
    if (c.req.url.includes("?")) {
      const twice = givenTwice(c.req.queries());
      if (twice) throw new InvalidRequestError(`${c.req.method} ${c.req.path}: ${twice}`);
    }
    await next();
  };
}
