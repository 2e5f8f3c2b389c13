/**
 * The HTTP client of the gateway's `/v1` API, used by every process outside
 * the gateway (Node scripts, the CLI, browsers). Web-standard `fetch`, but
 * for requests answered with JSON in Node, which go over `node:http`
 * (sdk/transport.ts).
 *
 * A request that got no answer (the connection was refused or reset, or the
 * `tandem serve` front door answered 502/503 `gateway_unreachable`) is sent
 * again, a few times with backoff, when that is safe: reads, and `call`,
 * `spawn` and `map`, which carry an `Idempotency-Key` (one per logical call),
 * so the gateway answers a repeat with the call it already made.
 */
import { gatewayExchange, gatewayFetch } from "./transport.js";
import { toHex } from "./hex.js";
import { API_LIMITS, DELIVERY_DEFAULTS, GATEWAY_DEFAULTS, LOCAL_DEFAULTS, LOG_LIMITS } from "./defaults.js";
import { FollowedOnce } from "./log-follow.js";
import {
  CALL_BODY_NOTE,
  GatewayUnreachableError,
  InvalidArgumentError,
  InvalidOptionsError,
  PayloadTooLargeError,
  ProtocolError,
  TandemError,
  fromWireError,
  ofCall,
  type WireError,
} from "./errors.js";
import { findToken, localGatewayUrl, refusedTokenHint, type FoundToken } from "./credentials.js";
import type { Invoker, MapOutcome } from "./invoker.js";
import { ndjsonLines } from "./stream-lines.js";
import { checkSendable } from "./arguments.js";
import {
  HEADERS,
  PROTOCOL_VERSION,
  REGION_PATTERN,
  ENV_NAME_PATTERN,
  TERMINAL_STATUSES,
  decodeValue,
  encodeValue,
  isStackOverflow,
  paths,
  type CallRecord,
  type LogLine,
  type LogStreamEnd,
  type MapResultLine,
  type SpawnResponse,
  type StreamLine,
} from "./protocol.js";

export const DEFAULT_GATEWAY = LOCAL_DEFAULTS.gateway;

/** Inputs sent per `map` request, and how many such requests are in flight at once. */
const MAP_BATCH = 256;
const MAP_BATCHES_IN_FLIGHT = 4;
/**
 * The most results a map holds that its reader has not taken: past it no more batches are sent until the reader takes
 * some, so a slow reader holds a bounded number in memory (and a reader that stops has not run every input).
 */
const MAP_RESULTS_AHEAD = 16 * MAP_BATCH;
/**
 * The most bytes of inputs a `map` request carries, as JSON: below the gateway's default body limit
 * (`GATEWAY_DEFAULTS.maxBodyBytes`), with room for the request's own fields. A request the gateway refuses as too
 * large anyway (its limit set lower) is split in two and sent again; an input too large alone fails alone.
 */
const MAP_BATCH_BYTES = GATEWAY_DEFAULTS.maxBodyBytes - 64 * 1024;

/**
 * The error for a gateway that did not answer at `baseUrl`: it names where it looked and how to look elsewhere, since
 * a `tandem serve --port` other than 8787 is found only through the option or `TANDEM_GATEWAY`.
 */
export function gatewayUnreachable(baseUrl: string, err: unknown): GatewayUnreachableError {
  const cause = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
  // A page's fetch fails alike for a gateway that is down and one whose answer its CORS kept from another origin.
  const page = pageOrigin();
  if (page !== undefined && new URL(baseUrl).origin !== page) {
    return new GatewayUnreachableError(
      `could not reach the Tandem gateway at ${baseUrl} from this page (${cause}): either it is not running, or the browser kept its answer from this page's origin (${page}): the /v1 API answers no other origin (CORS); call it from a page the gateway serves, or through your own backend or web app (docs/security.md)`,
      { gateway: baseUrl },
    );
  }
  return new GatewayUnreachableError(
    `could not reach the Tandem gateway at ${baseUrl} (${cause}); is \`tandem serve\` running? One at another address: --gateway <url>, the gateway option or TANDEM_GATEWAY`,
    { gateway: baseUrl },
  );
}

/**
 * The gateway to talk to: the explicit option, then `TANDEM_GATEWAY`, then
 * the one a `tandem serve` running in this folder serves (`localGatewayUrl`),
 * then, in a browser, the page's own origin (a page the gateway serves), else
 * `http://127.0.0.1:8787`.
 */
export function resolveGatewayUrl(explicit?: string): string {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const raw = explicit ?? (env?.TANDEM_GATEWAY || undefined) ?? localGatewayUrl() ?? pageOrigin() ?? DEFAULT_GATEWAY;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InvalidOptionsError(`gateway "${raw}" is not a URL (set --gateway, the gateway option or TANDEM_GATEWAY to e.g. ${DEFAULT_GATEWAY})`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidOptionsError(`gateway "${raw}" must be an http:// or https:// URL`);
  }
  return url.href.replace(/\/+$/, "");
}

/** In a browser, the origin of the page (http or https): where a page the gateway serves finds it. */
function pageOrigin(): string | undefined {
  const page = globalThis as { document?: unknown; location?: { origin?: unknown } };
  const origin = page.document === undefined ? undefined : page.location?.origin;
  return typeof origin === "string" && /^https?:\/\//.test(origin) ? origin : undefined;
}

export class HttpInvoker implements Invoker {
  readonly #token: string | undefined;
  readonly #headers: Record<string, string>;
  #resolved = false;
  #found: FoundToken | undefined;

  /**
   * `token`: the API token to send; by default the one found for this gateway (`sdk/credentials.ts`). `region`:
   * the regions plane calls would rather run in, nearest first, each a region name or prefix (`Tandem-Region`).
   * `env`: the environment addressed (`Tandem-Env`); by default `TANDEM_ENV`, else none (the gateway's own).
   */
  constructor(
    readonly baseUrl: string,
    options: { token?: string; region?: readonly string[]; env?: string } = {},
  ) {
    this.#token = options.token;
    const bad = options.region?.find((r) => !REGION_PATTERN.test(r));
    if (bad !== undefined)
      throw new InvalidOptionsError(`option "region": "${bad}" is not a region name (lowercase letters, digits and '-', such as "eu-west")`);
    const env = options.env ?? ((globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.TANDEM_ENV || undefined);
    if (env !== undefined && !ENV_NAME_PATTERN.test(env)) {
      throw new InvalidOptionsError(
        `environment "${env}" (--env, the env option or TANDEM_ENV) must be lowercase letters, digits and '-', up to 32, such as dev`,
      );
    }
    this.#headers = {
      ...(options.region?.length ? { [HEADERS.region]: options.region.join(",") } : {}),
      ...(env === undefined ? {} : { [HEADERS.env]: env }),
    };
  }

  /** The token this client sends, looked up once. */
  get token(): string | undefined {
    if (!this.#resolved) {
      this.#found = findToken(this.baseUrl, this.#token);
      this.#resolved = true;
    }
    return this.#found?.token;
  }

  async call(app: string, fn: string, args: unknown[]): Promise<unknown> {
    const body = argsBody(args);
    const record = (await this.request("POST", paths.call(app, fn), body, newIdempotencyKey()).catch((err: unknown) => {
      throw withEncodedSize(err, body, `${app}.${fn}: its arguments`);
    })) as CallRecord;
    return decodeValue(record.result, record.meta);
  }

  async spawn(app: string, fn: string, args: unknown[]): Promise<string> {
    const body = argsBody(args);
    const res = (await this.request("POST", paths.spawn(app, fn), body, newIdempotencyKey()).catch((err: unknown) => {
      throw withEncodedSize(err, body, `${app}.${fn}: its arguments`);
    })) as SpawnResponse;
    return res.callId;
  }

  /**
   * Sends inputs in batches, several batches in flight at once (so the
   * gateway never idles between them), and yields results as they arrive.
   */
  async *map(app: string, fn: string, inputs: AsyncIterable<unknown[]>): AsyncIterable<MapOutcome> {
    const results: MapOutcome[] = [];
    let wake: (() => void) | undefined;
    let taken: (() => void) | undefined; // the producer, waiting for the reader to take results
    let failure: unknown;
    const stop = new AbortController(); // the consumer left early: no more batches, and the ones in flight end
    const unfinished = new Set<string>(); // the keys of the batches sent whose lines are not all in: cancelled if the consumer leaves
    const push = (outcome: MapOutcome) => {
      results.push(outcome);
      wake?.();
    };
    const runBatch = async (batch: unknown[][], offset: number): Promise<void> => {
      const { json, meta } = notTooDeep(() => encodeValue(batch, (inputs) => (inputs as unknown[][]).forEach(checkSendable)));
      const body = meta === undefined ? { inputs: json } : { inputs: json, meta };
      // A batch whose answer breaks off is sent again with its key: the gateway streams the same calls again, and the lines already had are skipped.
      const key = newIdempotencyKey();
      const had = new Set<number>();
      unfinished.add(key);
      let failedSince: number | undefined;
      for (let sent = 0; ; sent++) {
        const res = await this.send("POST", paths.map(app, fn), body, stop.signal, key, sent > 0);
        if (res.status === 413) {
          unfinished.delete(key); // refused unread: nothing of it ran
          // Refused unread, nothing ran: the halves go again, and an input too large alone fails alone.
          const tooLarge = await this.fail(res).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
          if (batch.length === 1) return push({ index: offset, ok: false, error: withEncodedSize(tooLarge, body, `${app}.${fn}: inputs[${offset}]`) as Error });
          const half = Math.ceil(batch.length / 2);
          await runBatch(batch.slice(0, half), offset);
          return runBatch(batch.slice(half), offset + half);
        }
        if (!res.ok || !res.body) await this.fail(res);
        try {
          for await (const line of ndjsonLines(res.body!)) {
            if (stop.signal.aborted) return;
            const r = line as MapResultLine;
            if (had.has(r.index)) continue;
            had.add(r.index);
            const index = offset + r.index;
            if (r.status === "succeeded") push({ index, ok: true, value: decodeValue(r.result, r.meta) });
            else
              push({
                index,
                ok: false,
                error: fromWireError(ofCall(r.error ?? { code: "internal", message: `call ${r.callId} ended as ${r.status}` }, r.callId || undefined)),
              });
          }
          if (had.size === batch.length) unfinished.delete(key);
          return;
        } catch (err) {
          failedSince ??= performance.now();
          if (stop.signal.aborted || err instanceof TandemError || !this.mayTryAgain(sent, failedSince)) throw err;
          await retryPause(sent);
        }
      }
    };
    let producing = true;
    const inFlight = new Set<Promise<void>>();
    const producer = (async () => {
      let offset = 0;
      for await (const batch of batches(inputs, MAP_BATCH, MAP_BATCH_BYTES)) {
        while (inFlight.size >= MAP_BATCHES_IN_FLIGHT) await Promise.race(inFlight);
        while (results.length >= MAP_RESULTS_AHEAD && !stop.signal.aborted) await new Promise<void>((resolve) => (taken = resolve));
        if (stop.signal.aborted) return;
        const running: Promise<void> = runBatch(batch, offset)
          .catch((err) => void (failure ??= err))
          .finally(() => {
            inFlight.delete(running);
            wake?.();
          });
        inFlight.add(running);
        offset += batch.length;
      }
    })()
      .catch((err) => void (failure ??= err))
      .finally(() => {
        producing = false;
        wake?.();
      });
    try {
      for (;;) {
        if (failure) throw failure;
        if (results.length) {
          const next = results.shift()!;
          if (results.length < MAP_RESULTS_AHEAD) taken?.();
          yield next;
          continue;
        }
        if (!producing && inFlight.size === 0) break;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
      await producer;
      if (failure) throw failure;
    } finally {
      stop.abort();
      taken?.();
      // Left early (a break, a return, a throw): what the batches in flight had not run yet is cancelled, not paid for.
      if (unfinished.size) await this.cancelMaps(app, fn, [...unfinished]);
    }
  }

  /**
   * Asks the gateway to cancel the inputs of these map requests that have not ended, by their keys
   * (`POST .../map/cancel`): best effort, for at most `DELIVERY_DEFAULTS.mapCancelWaitMs`, and never throws (a map
   * that could not be cancelled runs on, as it would have).
   */
  private async cancelMaps(app: string, fn: string, keys: string[]): Promise<void> {
    const signal = AbortSignal.timeout(DELIVERY_DEFAULTS.mapCancelWaitMs);
    const cancelled = Promise.allSettled(
      keys.map(async (key) => {
        const res = await this.send("POST", paths.mapCancel(app, fn), undefined, signal, key, true);
        await res.body?.cancel();
      }),
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([cancelled, new Promise<void>((resolve) => (timer = setTimeout(resolve, DELIVERY_DEFAULTS.mapCancelWaitMs)))]);
    clearTimeout(timer);
  }

  async *stream(app: string, fn: string, args: unknown[], onCallId?: (id: string) => void): AsyncIterable<unknown> {
    const res = await this.send("POST", paths.stream(app, fn), argsBody(args));
    if (!res.ok || !res.body) await this.fail(res);
    const callId = res.headers.get(HEADERS.callId);
    if (callId) onCallId?.(callId);
    // Leaving the loop early (break, or an error in the consumer) cancels the body: the gateway stops the generator.
    for await (const line of ndjsonLines(res.body!)) {
      const l = line as StreamLine;
      if ("chunk" in l) yield decodeValue(l.chunk, l.meta);
      else if ("error" in l) throw fromWireError(ofCall(l.error, res.headers.get(HEADERS.callId) ?? undefined));
      else if ("done" in l) return;
      else throw new ProtocolError(`the stream from ${this.baseUrl} sent a line that is no chunk, error or end: ${JSON.stringify(line).slice(0, 200)}`);
    }
    throw new GatewayUnreachableError(`the stream from ${this.baseUrl} ended without its last line`, { gateway: this.baseUrl });
  }

  /**
   * The log lines a log route answers (`paths.appLogs`, `paths.callLogs`), one at a time as they come: with
   * `follow`, until the loop stops (which closes the stream) or the gateway ends it. `onOpen`: called once the stream
   * has been answered, before its first line.
   * @example for await (const line of client.logLines(paths.appLogs("shop", { follow: true }))) console.log(line.text);
   */
  async *logLines(path: string, onOpen?: () => void): AsyncIterable<LogLine> {
    const res = await this.send("GET", path);
    if (!res.ok || !res.body) await this.fail(res);
    onOpen?.();
    let ended: LogStreamEnd | undefined;
    try {
      for await (const line of ndjsonLines(res.body!)) {
        // A follow the gateway ended (its token revoked) says why in its last line.
        if ("error" in (line as object)) {
          ended = line as LogStreamEnd;
          break;
        }
        yield line as LogLine;
      }
    } catch (err) {
      // A follow outlives many a gateway (`tandem serve` stopped): say which, not the transport's "terminated".
      const cause = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
      throw new GatewayUnreachableError(`the log stream from the Tandem gateway at ${this.baseUrl} broke off (${cause}); is \`tandem serve\` running?`, {
        gateway: this.baseUrl,
      });
    }
    if (ended) throw fromWireError(ended.error);
  }

  /**
   * The lines of a log follow (`path` with `follow`), as {@link logLines} yields them, going on across a restart of the
   * gateway: once it has opened, a follow that breaks off is opened again (for up to `LOG_LIMITS.followReconnectMs`),
   * from a little before its newest line, each line yielded once. `onLost`: told once each time it breaks off.
   */
  async *followLines(path: string, onLost?: () => void): AsyncIterable<LogLine> {
    const once = new FollowedOnce();
    for (let lostSince: number | undefined; ;) {
      try {
        for await (const line of this.logLines(lostSince === undefined ? path : once.resumed(path), () => ((lostSince = undefined), once.open()))) {
          if (once.first(line)) yield line;
        }
        return;
      } catch (err) {
        if (!(err instanceof GatewayUnreachableError) || !once.opened) throw err;
        if (lostSince === undefined) {
          lostSince = Date.now();
          onLost?.();
        } else if (Date.now() - lostSince > LOG_LIMITS.followReconnectMs) throw err;
        await new Promise((resolve) => setTimeout(resolve, LOG_LIMITS.followRetryMs));
      }
    }
  }

  async get(callId: string, timeoutMs: number | undefined): Promise<unknown> {
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    for (;;) {
      const wait = Math.max(0, Math.min(API_LIMITS.maxWaitMs, deadline - Date.now()));
      const record = (await this.request("GET", paths.callRecord(callId, wait))) as CallRecord;
      if (TERMINAL_STATUSES.has(record.status)) return decodeValue(record.result, record.meta);
      if (Date.now() >= deadline) {
        throw fromWireError({
          code: "get_timeout",
          message: `call ${callId} did not finish within ${timeoutMs} ms (it is still ${record.status})`,
          details: { callId },
        });
      }
    }
  }

  async cancel(callId: string, options: { terminateContainer?: boolean } = {}): Promise<void> {
    await this.request("POST", paths.cancel(callId), options.terminateContainer ? { terminateContainer: true } : undefined);
  }

  /**
   * Sends a request to the gateway and returns its JSON body; a body with
   * `error` is thrown as its typed error, an unreachable gateway as
   * `GatewayUnreachableError`. For routes the handle methods do not cover.
   * @example
   * const { apps } = (await new HttpInvoker(url).request("GET", paths.apps())) as { apps: AppManifest[] };
   */
  async request(method: string, path: string, body?: unknown, idempotencyKey?: string): Promise<unknown> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const answer = await this.deliver(
      method,
      { idempotencyKey, ...(text === undefined ? {} : { contentType: "application/json" }) },
      (headers) => gatewayExchange(this.baseUrl + path, { method, headers, ...(text === undefined ? {} : { body: text }) }),
      (a) => unansweredText(a.status, a.text),
    );
    const json = this.parseJson(answer.status, answer.text);
    if (answer.status < 200 || answer.status > 299 || (json && typeof json === "object" && "error" in json && json.error)) this.failWith(answer.status, json);
    return json;
  }

  /**
   * Sends bytes (or nothing) and returns the answer's bytes; an error answer is thrown as its typed error, as
   * `request` does. For the routes that carry files (a deployment's).
   * @example
   * const worker = await client.requestBytes("GET", paths.deploymentFile("hello", sha256));
   */
  async requestBytes(method: string, path: string, body?: Uint8Array): Promise<Uint8Array> {
    const res = await this.send(method, path, body);
    if (!res.ok) await this.fail(res);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** Sends a request through `fetch`, sent again as `deliver` says. */
  private send(method: string, path: string, body?: unknown, signal?: AbortSignal, idempotencyKey?: string, keySentBefore = false): Promise<Response> {
    const bytes = body instanceof Uint8Array;
    return this.deliver(
      method,
      {
        idempotencyKey,
        keySentBefore,
        ...(signal ? { signal } : {}),
        ...(body === undefined ? {} : { contentType: bytes ? "application/octet-stream" : "application/json" }),
      },
      (headers) =>
        gatewayFetch(this.baseUrl + path, {
          method,
          ...(signal ? { signal } : {}),
          headers,
          ...(body === undefined ? {} : { body: bytes ? (body as Uint8Array<ArrayBuffer>) : JSON.stringify(body) }),
        }),
      unanswered,
    );
  }

  /**
   * Sends a request with this client's headers; one that got no answer (`noAnswer`) is sent again when that is safe (a
   * read, or a request with an idempotency key). `keySentBefore`: the key went out on an earlier request already, so
   * no send of this one says it is fresh.
   */
  private async deliver<T>(
    method: string,
    options: { idempotencyKey?: string | undefined; keySentBefore?: boolean; signal?: AbortSignal; contentType?: string },
    go: (headers: Record<string, string>) => Promise<T>,
    noAnswer: (answer: T) => Promise<boolean>,
  ): Promise<T> {
    const { idempotencyKey, signal, contentType } = options;
    const safe = method === "GET" || idempotencyKey !== undefined;
    const token = this.token; // a malformed token option throws here, as itself, not as an unreachable gateway
    let failedSince: number | undefined;
    for (let sent = 0; ; sent++) {
      const again = safe && this.mayTryAgain(sent, failedSince);
      let answer: T;
      try {
        answer = await go({
          [HEADERS.protocol]: PROTOCOL_VERSION,
          ...this.#headers,
          ...(token === undefined ? {} : { [HEADERS.authorization]: `Bearer ${token}` }),
          ...(contentType === undefined ? {} : { "content-type": contentType }),
          ...(idempotencyKey === undefined ? {} : { [HEADERS.idempotencyKey]: idempotencyKey }),
          ...(idempotencyKey !== undefined && sent === 0 && !options.keySentBefore ? { [HEADERS.freshKey]: "1" } : {}), // the SDK makes each key for its request
        });
      } catch (err) {
        // A connection that was made and then lost (reset, closed) had a gateway at its end: one starting again now.
        if (connectionLost(err)) reachedBefore.add(this.baseUrl);
        if (again && !signal?.aborted) {
          failedSince ??= performance.now();
          await retryPause(sent);
          continue;
        }
        throw gatewayUnreachable(this.baseUrl, err);
      }
      // Answered, if only by `tandem serve`'s front door saying its gateway did not answer.
      reachedBefore.add(this.baseUrl);
      if (again && (await noAnswer(answer))) {
        failedSince ??= performance.now();
        await retryPause(sent);
        continue;
      }
      return answer;
    }
  }

  /**
   * Whether a request that got no answer (`failedSince`: its first such send) is sent again after its `sent`th send:
   * `clientRetries` times; and, to a gateway this process reached before (`reachedBefore`), which is then most likely
   * starting again (`tandem serve` stopped and started), for up to `clientRestartWaitMs` from that first failure.
   */
  private mayTryAgain(sent: number, failedSince: number | undefined): boolean {
    if (sent < DELIVERY_DEFAULTS.clientRetries) return true;
    return failedSince !== undefined && reachedBefore.has(this.baseUrl) && performance.now() - failedSince < DELIVERY_DEFAULTS.clientRestartWaitMs;
  }

  private async readJson(res: Response): Promise<unknown> {
    return this.parseJson(res.status, await res.text());
  }

  private parseJson(status: number, text: string): unknown {
    try {
      return JSON.parse(text);
    } catch {
      throw new GatewayUnreachableError(`${this.baseUrl} answered HTTP ${status} with a body that is not Tandem's JSON: ${text.slice(0, 200)}`, {
        gateway: this.baseUrl,
        status,
      });
    }
  }

  private async fail(res: Response): Promise<never> {
    return this.failWith(res.status, await this.readJson(res), res.headers.get(HEADERS.callId) ?? undefined);
  }

  /** Throws an error answer as its typed error; one about a call (a record's, or `callId`'s) carries its id. */
  private failWith(status: number, body: unknown, callId?: string): never {
    if (body && typeof body === "object" && "error" in body) {
      const recordId = "callId" in body && typeof body.callId === "string" && body.callId ? body.callId : callId;
      const error = ofCall(body.error as WireError, recordId);
      // A refused token that came from the profile file says so: it hides this folder's admin token.
      const hint = error.code === "unauthorized" || error.code === "forbidden" ? refusedTokenHint(this.#found, this.baseUrl) : "";
      throw fromWireError(hint ? { ...error, message: error.message + hint } : error);
    }
    throw new GatewayUnreachableError(`${this.baseUrl} answered HTTP ${status}`, { gateway: this.baseUrl, status });
  }
}

/**
 * A new idempotency key: 128 random bits (122 where `randomUUID` is there). `randomUUID` draws from a pool; Node's
 * `getRandomValues` makes a system call each time (18 µs of each call's client time). Pages not served over https
 * have only `getRandomValues`.
 */
function newIdempotencyKey(): string {
  return typeof crypto.randomUUID === "function" ? crypto.randomUUID().replaceAll("-", "") : toHex(crypto.getRandomValues(new Uint8Array(16)));
}

/** The `tandem serve` front door's answer for a gateway that did not answer (502) or is starting (503): nothing ran. */
async function unanswered(res: Response): Promise<boolean> {
  if (res.status !== 502 && res.status !== 503) return false;
  return unansweredText(
    res.status,
    await res
      .clone()
      .text()
      .catch(() => ""),
  ); // a body that breaks off says nothing
}

/** `unanswered`, for an answer read whole. */
async function unansweredText(status: number, text: string): Promise<boolean> {
  if (status !== 502 && status !== 503) return false;
  try {
    return (JSON.parse(text) as { error?: { code?: string } } | null)?.error?.code === "gateway_unreachable";
  } catch {
    return false;
  }
}

/**
 * The gateways (their base URLs) this process has reached: one that answered, or whose connection was made and then
 * lost (a request in flight as `tandem serve` stopped). One that then answers no more is most likely starting again,
 * and a request that can be sent again waits for it longer (`HttpInvoker.mayTryAgain`).
 */
const reachedBefore = new Set<string>();

/** Node's codes for a connection that was made and then lost, as against one never made (refused, no such host). */
const LOST_CONNECTION_CODES = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED", "UND_ERR_SOCKET", "UND_ERR_CLOSED"]);

/** Whether a request failed on a connection it had made (its gateway was there), by the error or its cause's code. */
function connectionLost(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && LOST_CONNECTION_CODES.has(code)) return true;
  }
  return false;
}

/** Waits before sending a request again: doubling from `clientRetryDelayMs`, with jitter so many clients do not come back at once. */
function retryPause(sent: number): Promise<void> {
  const ms = Math.min(DELIVERY_DEFAULTS.clientRetryDelayMs * 2 ** sent, DELIVERY_DEFAULTS.clientRetryMaxDelayMs);
  return new Promise((resolve) => setTimeout(resolve, ms / 2 + Math.random() * (ms / 2)));
}

/**
 * A call's body refused as too large, said with the size it encodes to: what counts is the arguments' JSON, with
 * binary data as base64, which the values' own sizes do not show (an 8 MiB Uint8Array is 11.2 MB).
 */
function withEncodedSize(err: unknown, body: unknown, what: string): unknown {
  if (!(err instanceof PayloadTooLargeError)) return err;
  const bytes = new TextEncoder().encode(JSON.stringify(body)).length;
  // A gateway says what counts itself; one from before it did is told here.
  const note = err.message.includes(CALL_BODY_NOTE) ? "" : `: ${CALL_BODY_NOTE}`;
  const size = bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${(bytes / 1e3).toFixed(1)} kB`;
  return new PayloadTooLargeError(`${what} encode to ${bytes} bytes (${size}): ${err.message}${note}`, {
    ...err.details,
    bodyBytes: bytes,
  });
}

function argsBody(args: unknown[]): { args: unknown; meta?: unknown } {
  const { json, meta } = notTooDeep(() => encodeValue(args, (values) => checkSendable(values as unknown[])));
  return meta === undefined ? { args: json } : { args: json, meta };
}

/**
 * `encode()` of a call's arguments (or a map's inputs); nested so deep that the codec ran out of stack (thousands of
 * levels), refused as the gateway refuses one past its depth limit, not as the codec's own RangeError.
 */
function notTooDeep<T>(encode: () => T): T {
  try {
    return encode();
  } catch (err) {
    if (!isStackOverflow(err)) throw err;
    throw new InvalidArgumentError(
      `the arguments nest arrays and objects more than ${API_LIMITS.maxJsonDepth} levels deep, the most a call takes: send them flatter (docs/api.md, "Values")`,
    );
  }
}

/**
 * `source` in batches of at most `size` items and about `maxBytes` of them as JSON (an item larger than that goes
 * alone).
 */
async function* batches<T>(source: AsyncIterable<T>, size: number, maxBytes: number): AsyncIterable<T[]> {
  let batch: T[] = [];
  let bytes = 0;
  for await (const item of source) {
    const itemBytes = jsonLength(item);
    if (batch.length > 0 && bytes + itemBytes > maxBytes) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(item);
    bytes += itemBytes + 1;
    if (batch.length === size) {
      yield batch;
      batch = [];
      bytes = 0;
    }
  }
  if (batch.length > 0) yield batch;
}

/** About how long `value` is as the JSON a request carries it in (its superjson form, `meta` included). */
function jsonLength(value: unknown): number {
  return notTooDeep(() => {
    const { json, meta } = encodeValue(value);
    return JSON.stringify(json).length + (meta === undefined ? 0 : JSON.stringify(meta).length);
  });
}
