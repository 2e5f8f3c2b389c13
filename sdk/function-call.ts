/**
 * A handle on a spawned call. It holds only the call id, so it can be rebuilt
 * from any process with `FunctionCall.fromId(id)`.
 */
import { InvalidOptionsError, InvalidRequestError } from "./errors.js";
import { didYouMean } from "./nearest-name.js";
import type { ClientOptions } from "./app.js";
import { HttpInvoker, resolveGatewayUrl } from "./client.js";
import { invokerFor } from "./invoker.js";
import { parseGetOptions } from "./options.js";
import { CALL_ID_FORM, CALL_ID_PATTERN, paths, type LogLine, type LogQueryOptions } from "./protocol.js";
import { valueText } from "./value-text.js";

/** What `logs()` and `followLogs()` may narrow: the call's lines from one container, of one source, since a time, with a text. */
export type CallLogOptions = Omit<LogQueryOptions, "call" | "follow" | "function">;

const CALL_LOG_OPTIONS = ["container", "source", "since", "search", "limit"] as const satisfies readonly (keyof CallLogOptions)[];

/** Refuses an option `logs()` does not take (a misspelt one would be dropped, and the lines not narrowed, without a word). */
function checkedLogOptions(options: CallLogOptions, where: string): CallLogOptions {
  if (typeof options !== "object" || options === null) throw new InvalidOptionsError(`${where}: options must be an object`);
  for (const key of Object.keys(options)) {
    if (!(CALL_LOG_OPTIONS as readonly string[]).includes(key))
      throw new InvalidOptionsError(`${where}: unknown option "${key}" (it takes ${CALL_LOG_OPTIONS.join(", ")})${didYouMean(key, CALL_LOG_OPTIONS)}`);
  }
  return options;
}

/**
 * @example
 * const call = await square.spawn(4);
 * const again = FunctionCall.fromId(call.id);   // in another process
 * console.log(await again.get({ timeoutMs: 10_000 }));
 */
export class FunctionCall<R = unknown> {
  readonly id: string;
  readonly #client: ClientOptions;

  constructor(id: string, options: ClientOptions = {}) {
    if (!CALL_ID_PATTERN.test(id)) throw new InvalidRequestError(`"${id}" is not a call id (${CALL_ID_FORM})`);
    this.id = id;
    this.#client = options;
  }

  /** A handle on an existing call, from its id. */
  static fromId<R = unknown>(id: string, options: ClientOptions = {}): FunctionCall<R> {
    return new FunctionCall<R>(id, options);
  }

  /**
   * Waits for the result. Throws the call's error (`RemoteError`,
   * `FunctionTimeoutError`, `CancelledError`), or `GetTimeoutError` when
   * `timeoutMs` passes first (the call goes on). No `timeoutMs`: wait as long as it takes.
   */
  async get(options: { timeoutMs?: number } = {}): Promise<R> {
    const { timeoutMs } = parseGetOptions(options, `call ${this.id}: get`);
    return (await invokerFor(this.#client).get(this.id, timeoutMs)) as R;
  }

  /**
   * Cancels the call if it has not finished; `get()` then throws
   * `CancelledError` at once. The function sees `currentCall().signal` abort,
   * in either tier (at the edge it then has 10 s to clean up: docs/api.md,
   * "A call's signal"); with `terminateContainer` a plane container is
   * stopped too (for a function that does not watch the signal).
   */
  async cancel(options: { terminateContainer?: boolean } = {}): Promise<void> {
    const terminate: unknown = options?.terminateContainer;
    if (terminate !== undefined && typeof terminate !== "boolean") {
      throw new InvalidOptionsError(`cancel(): option "terminateContainer" must be true or false (got ${valueText(terminate)})`);
    }
    await invokerFor(this.#client).cancel(this.id, options);
  }

  /**
   * The call's log lines so far, oldest first (the last `limit`, 100 unless it says): what it printed in either
   * tier, and Tandem's own lines about it (cold start, retries, its failure, timeout), each with its time, tier, container
   * and source. Right after a call ends, the read waits for the lines still on their way (at most 600 ms after a
   * plane call's end, 300 ms after an edge call's).
   * @example
   * for (const line of await FunctionCall.fromId(id).logs()) console.log(line.source, line.text);
   */
  async logs(options: CallLogOptions = {}): Promise<LogLine[]> {
    const lines: LogLine[] = [];
    for await (const line of this.#http().logLines(paths.callLogs(this.id, checkedLogOptions(options, "logs()")))) lines.push(line);
    return lines;
  }

  /**
   * The call's log lines as they come: the last `limit` first, then each new one, within a second of being printed,
   * until the call has ended and its last lines came (300 ms after an edge call's end, 600 ms after a plane call's),
   * or the loop stops (`break` closes the stream).
   * @example
   * for await (const line of FunctionCall.fromId(id).followLogs()) if (line.text.includes("done")) break;
   */
  followLogs(options: CallLogOptions = {}): AsyncIterable<LogLine> {
    return this.#http().followLines(paths.callLogs(this.id, { ...checkedLogOptions(options, "followLogs()"), follow: true }));
  }

  /** Logs are read from the gateway's API, also from code that runs inside it. */
  #http(): HttpInvoker {
    const invoker = invokerFor(this.#client);
    if (invoker instanceof HttpInvoker) return invoker;
    return new HttpInvoker(resolveGatewayUrl(this.#client.gateway), this.#client.token === undefined ? {} : { token: this.#client.token });
  }

  toJSON(): { id: string } {
    return { id: this.id };
  }
}
