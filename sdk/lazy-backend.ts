import { NotFoundError } from "./errors.js";

/**
 * How a named store's handle (`Dict`, `Queue`, `Volume`) reaches its backend:
 * made on first use, and, when the handle was asked for with
 * `createIfMissing`, the store made once before the first operation that
 * needs it (a make that failed is tried again by the next one).
 *
 * @example
 * const store = new LazyBackend(() => dictBackend(options), "cache", true);
 * await store.use((backend) => backend.get("cache", key));
 */
export class LazyBackend<B extends { create(name: string, existOk: boolean): Promise<unknown> }> {
  readonly #make: () => B;
  readonly #name: string;
  readonly #createIfMissing: boolean;
  #backend: B | undefined;
  #made: Promise<void> | undefined;
  /** Whether the store is known to exist: made here, or not this handle's to make. */
  #there: boolean;

  constructor(make: () => B, name: string, createIfMissing: boolean) {
    this.#make = make;
    this.#name = name;
    this.#createIfMissing = createIfMissing;
    this.#there = !createIfMissing;
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
      () => {
        this.#there = true;
      },
      (err: unknown) => {
        this.#made = undefined;
        throw err;
      },
    );
    await this.#made;
    return backend;
  }

  /**
   * Runs `work` on the backend once the store is made if it must be; at once (no wait in between) once it is. With
   * `createIfMissing`, a store deleted since this handle made it (`tandem dict delete`, a reset) is made again and the
   * work run once more: the store's 404 (`missing` in its details) means the work did nothing.
   */
  use<T>(work: (backend: B) => Promise<T>): Promise<T> {
    const first = this.#there ? work(this.backend()) : this.ready().then(work);
    if (!this.#createIfMissing) return first;
    return first.catch((err: unknown) => {
      if (!storeMissing(err)) throw err;
      this.#made = undefined;
      this.#there = false;
      return this.ready().then(work);
    });
  }
}

/** Whether `err` is the 404 of a store that is not there (gateway/dict-store.ts `missingDict`, and the queue's and volume's). */
function storeMissing(err: unknown): boolean {
  return err instanceof NotFoundError && err.details?.missing === true;
}
