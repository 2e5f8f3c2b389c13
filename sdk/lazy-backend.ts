/**
 * How a named store's handle (`Dict`, `Queue`, `Volume`) reaches its backend:
 * made on first use, and, when the handle was asked for with
 * `createIfMissing`, the store made once before the first operation that
 * needs it (a make that failed is tried again by the next one).
 *
 * @example
 * const store = new LazyBackend(() => dictBackend(options), "cache", true);
 * await (await store.ready()).get("cache", key);
 */
export class LazyBackend<B extends { create(name: string, existOk: boolean): Promise<unknown> }> {
  readonly #make: () => B;
  readonly #name: string;
  readonly #createIfMissing: boolean;
  #backend: B | undefined;
  #made: Promise<void> | undefined;

  constructor(make: () => B, name: string, createIfMissing: boolean) {
    this.#make = make;
    this.#name = name;
    this.#createIfMissing = createIfMissing;
  }

  /** The backend, with nothing sent yet. */
  backend(): B {
    this.#backend ??= this.#make();
    return this.#backend;
  }

  /** The backend, once the store is made if `createIfMissing` asks for it. */
  async ready(): Promise<B> {
    const backend = this.backend();
    if (!this.#createIfMissing) return backend;
    this.#made ??= backend.create(this.#name, true).then(
      () => undefined,
      (err: unknown) => {
        this.#made = undefined;
        throw err;
      },
    );
    await this.#made;
    return backend;
  }
}
