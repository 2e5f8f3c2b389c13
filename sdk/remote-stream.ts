/**
 * What `.remoteGen()` answers: the chunks, as they come, and the stream's call id once its call has begun (it begins
 * as the loop first asks for a chunk): for `FunctionCall.fromId(id).logs()`, the dashboard, or a cancel from elsewhere.
 * @example
 * const tokens = generate.remoteGen("Once upon");
 * for await (const t of tokens) console.log(tokens.callId, t); // "fc-…" from the first chunk on
 */
export interface CallStream<T> extends AsyncIterable<T> {
  /** The call's id (`fc-…`), once the gateway has answered the stream; undefined before. */
  readonly callId: string | undefined;
}

/**
 * What `.remoteGen()` answers: the chunks a generator function yields, as they come, an async iterator over the
 * stream under it. One thing more than the stream: a web route that returns it where a Response is due gets an error
 * naming the mistake, even behind middleware. hono's middleware (`cors()`, anything that sets a header) rebuilds the
 * value a route returned as a Response from its `body`, which a stream has none of: an empty 200, the stream left
 * running. Here reading `body` stops the stream and throws, so the route answers 500 with this message in its log.
 */
export class RemoteStream<T> implements CallStream<T>, AsyncIterableIterator<T> {
  readonly [Symbol.toStringTag] = "RemoteStream";
  readonly #inner: AsyncIterator<T>;
  readonly #name: string;
  #callId: string | undefined;

  /** `open` starts the stream when it is first read, telling this stream its call's id once the call has one. */
  constructor(open: (onCallId: (id: string) => void) => AsyncIterable<T>, name: string) {
    this.#inner = open((id) => (this.#callId = id))[Symbol.asyncIterator]();
    this.#name = name;
  }

  get callId(): string | undefined {
    return this.#callId;
  }

  next(): Promise<IteratorResult<T>> {
    return this.#inner.next();
  }

  return(value?: unknown): Promise<IteratorResult<T>> {
    return this.#inner.return ? this.#inner.return(value) : Promise.resolve({ done: true, value: undefined as T });
  }

  throw(err?: unknown): Promise<IteratorResult<T>> {
    return this.#inner.throw ? this.#inner.throw(err) : Promise.reject(err);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Read as a Response's body: the stream was returned where a Response was due. Stops it, and says so. */
  get body(): never {
    void this.return().catch(() => {});
    throw new TypeError(
      `${this.#name}.remoteGen() was returned where a Response was due (from a web route, say): return a Response (c.body(...), c.json(...), c.text(...), hono's streamSSE), or serve it from app.endpoint, which answers an async iterable with Server-Sent Events`,
    );
  }
}
