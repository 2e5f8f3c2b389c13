/**
 * What a generator function returns, recognised the same way by every runtime
 * (the gateway and the plane's runner): an async iterable, or a (sync)
 * generator object. Arrays and other plain iterables are values, not streams.
 */

export type GeneratorResult = AsyncIterable<unknown> | Iterable<unknown>;

export function isGeneratorResult(value: unknown): value is GeneratorResult {
  return (
    value !== null &&
    typeof value === "object" &&
    (Symbol.asyncIterator in value || (Symbol.iterator in value && typeof (value as { next?: unknown }).next === "function"))
  );
}

/** The iterator to pull its chunks from; `await it.next()` works for both kinds. */
export function chunkIterator(value: GeneratorResult): AsyncIterator<unknown> | Iterator<unknown> {
  return Symbol.asyncIterator in value ? value[Symbol.asyncIterator]() : (value as Iterable<unknown>)[Symbol.iterator]();
}
