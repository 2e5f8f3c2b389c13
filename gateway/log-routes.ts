/**
 * Reading logs: `GET /v1/apps/:app/logs` and `GET /v1/calls/:id/logs`, NDJSON
 * `LogLine`s from the app's `LogStore` and, for lines older than it keeps, R2
 * (`readLog`), oldest first. `follow=1` keeps the
 * stream open and sends new lines as they are stored (asked for every
 * `LOG_LIMITS.followPollMs`), each held back `LOG_LIMITS.followHoldMs` so that
 * a plane's line, which arrives a little after the edge's, still comes out in
 * time order; an empty line every few seconds while there is none keeps the
 * stream from looking idle. A read of one call's lines (the call's route, or
 * `?call=`) that ended just now waits until they are stored: a plane's until
 * its plane has shipped them (`LOG_LIMITS.planeLinesLateMs`), an edge call's
 * until its isolate's batch is written (`LOG_LIMITS.edgeLinesLateMs`); a follow
 * of one call ends once the call has ended and that much has passed, its last
 * lines sent. Scope `call`, and a token restricted to apps reads only theirs.
 */
import { Hono, type Context } from "hono";
import { LOG_LIMITS } from "../sdk/defaults.js";
import { InvalidRequestError, errorBody } from "../sdk/errors.js";
import type { z } from "zod";
import { LogQuerySchema, ROUTES, TERMINAL_STATUSES, type CallRecord, type LogLine } from "../sdk/protocol.js";
import { describeIssues } from "../sdk/zod-issues.js";
import { guard, mayReach, mayReachServed, principalIsLive, principalOf, revokedWhileOpen } from "./auth.js";
import { checkedCallId, ledgerFor, unknownCall } from "./call-ledger-client.js";
import type { Env, RouteEnv } from "./env.js";
import { readLog } from "./log-archive.js";
import { logStoreFor } from "./log-sink.js";
import type { LogFilter, LogStore, StoredLogLine } from "./log-store.js";
import { registry } from "./registry.js";

type Api = RouteEnv;

export function logRoutes(): Hono<Api> {
  const routes = new Hono<Api>();

  routes.get(ROUTES.appLogs, guard("call"), async (c) => {
    const app = registry().app(c.req.param("app")).name;
    const { filter, follow } = logQuery(c);
    if (filter.callId) {
      // A follow does not wait for a call just answered to be recorded: a running call is not, and its lines come.
      const seen = follow ? await ledgerFor(c.env, filter.callId).get(filter.callId, 0) : await recordOf(c.env, filter.callId, true);
      // Another app's call would match no line here, without a word; one the token may not reach stays unknown.
      if (seen && seen.app !== app && mayReach(principalOf(c), seen.app))
        throw new InvalidRequestError(`log query: call ${filter.callId} is of app "${seen.app}", not "${app}"`, { callId: filter.callId, app: seen.app });
      if (!follow && seen?.app === app) await callLinesIn(seen);
    }
    return logAnswer(c, app, filter, follow, follow && filter.callId !== undefined ? callLinesStoredBy(c.env, app, filter.callId) : undefined);
  });

  routes.get(ROUTES.callLogs, guard("call"), async (c) => {
    const id = checkedCallId(c.req.param("id"));
    const { filter, follow } = logQuery(c);
    // Read as the path's call, another would be dropped without a word.
    if (filter.callId !== undefined) throw new InvalidRequestError(`log query: field "call" is the call in the path here: leave it out`);
    // Another app's call is as unknown as one that never was.
    const seen = await recordOf(c.env, id, !follow);
    const app = seen ? seen.app : await appPrinting(c, id);
    if (app === undefined || !mayReachServed(principalOf(c), app, c.var.config.environment)) throw unknownCall(id, c.var.config.resultTtlSeconds);
    if (!follow && seen) await callLinesIn(seen);
    return logAnswer(c, app, { ...filter, callId: id }, follow, follow ? callLinesStoredBy(c.env, app, id) : undefined);
  });

  return routes;
}

/**
 * The ledger's record of call `id`. A call answered at once (`.remote()`, `POST …/call`) is recorded when it ends, in
 * a batch written just after its answer, so a read made right then asks again for a moment
 * (`LOG_LIMITS.edgeLinesLateMs`) before it takes the call for unknown; for a read of its lines (`untilEnded`), one
 * recorded as running is asked again for as long, since its end may be in that batch (a failed keyed call read at
 * once missed the gateway's line about its failure).
 */
async function recordOf(env: Env, id: string, untilEnded = false): Promise<CallRecord | undefined> {
  const ledger = ledgerFor(env, id);
  const until = Date.now() + LOG_LIMITS.edgeLinesLateMs;
  for (;;) {
    const seen = await ledger.get(id, 0);
    if ((seen && (!untilEnded || TERMINAL_STATUSES.has(seen.status))) || Date.now() >= until) return seen ?? undefined;
    await new Promise((resolve) => setTimeout(resolve, LOG_LIMITS.edgeBatchMs));
  }
}

/**
 * The app whose log holds lines of call `id`, among those the request may reach. A call made without an
 * Idempotency-Key and answered at once is recorded in the ledger only when it ends: while it runs, its lines are
 * all there is of it.
 */
async function appPrinting(c: Context<Api>, id: string): Promise<string | undefined> {
  for (const app of registry().apps) {
    if (!mayReach(principalOf(c), app.name)) continue;
    if ((await logStoreFor(c.env, app.name).read({ callId: id, limit: 1 })).lines.length) return app.name;
  }
  return undefined;
}

/**
 * Waits, when `call` ended less than its tier's lateness ago, until that much has passed: a plane ships its lines
 * after its result, in a batch every `LOG_LIMITS.planeFlushMs` (`planeLinesLateMs`); an edge isolate writes a call's
 * last lines, and the gateway's line about its failure, `LOG_LIMITS.edgeBatchMs` after the response
 * (`edgeLinesLateMs`). A read made at once would miss them.
 */
async function callLinesIn(call: CallRecord): Promise<void> {
  if (call.finishedAt === undefined) return;
  const waitMs = call.finishedAt + linesLateMs(call) - Date.now();
  if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
}

/** How long after `call` ended its last lines may still be on their way to the log store, by the tier that ran it. */
function linesLateMs(call: CallRecord): number {
  return registry().find(call.app, call.function)?.spec.tier === "plane" ? LOG_LIMITS.planeLinesLateMs : LOG_LIMITS.edgeLinesLateMs;
}

/**
 * For a follow of call `id` of `app`: asks the ledger whether the call has ended, and answers the time by which all
 * its lines are stored (its end and its tier's lateness, as {@link callLinesIn} waits), or undefined while it runs. A
 * call the ledger does not know (yet: one answered at once is recorded when it ends), or of another app, never ends
 * the follow.
 */
function callLinesStoredBy(env: Env, app: string, id: string): () => Promise<number | undefined> {
  const ledger = ledgerFor(env, id);
  return async () => {
    const call = await ledger.get(id, 0);
    if (!call || call.app !== app || !TERMINAL_STATUSES.has(call.status)) return undefined;
    return (call.finishedAt ?? Date.now()) + linesLateMs(call);
  };
}

/**
 * The request's query as a read of the log store; a bad parameter is a 400 that names it (one given twice, as
 * `source=stdout&source=stderr`, every `/v1` route refuses before it comes here: gateway/query.ts `noFieldTwice`).
 */
export function logQuery(c: Context<Api>): { filter: LogFilter; follow: boolean } {
  const parsed = LogQuerySchema.safeParse(c.req.query(), { reportInput: true });
  if (!parsed.success) throw new InvalidRequestError(`log query: ${describeIssues(parsed.error, "field", LogQuerySchema)}`);
  return { filter: logFilterOf(parsed.data, LOG_LIMITS.defaultLimit), follow: parsed.data.follow ?? false };
}

/** A log query as a read of the log store: its last `defaultLimit` matching lines, unless its `limit` says. */
export function logFilterOf(q: z.output<typeof LogQuerySchema>, defaultLimit: number): LogFilter {
  const filter: LogFilter = { limit: q.limit ?? defaultLimit };
  if (q.function !== undefined) filter.function = q.function;
  if (q.call !== undefined) filter.callId = q.call;
  if (q.container !== undefined) filter.containerId = q.container;
  if (q.session !== undefined) filter.session = q.session;
  if (q.source !== undefined) filter.source = q.source;
  if (q.since !== undefined) filter.since = q.since;
  if (q.search !== undefined) filter.search = q.search;
  return filter;
}

/**
 * The lines `filter` reads, as NDJSON; with `follow`, the stream stays open for new ones, until the client closes it,
 * its token is revoked, or `callEnd` (a follow of one call: `callLinesStoredBy`) says the call's last lines are in.
 */
async function logAnswer(c: Context<Api>, app: string, filter: LogFilter, follow: boolean, callEnd?: () => Promise<number | undefined>): Promise<Response> {
  const store = logStoreFor(c.env, app);
  const first = await readLog(c.env, app, filter);
  const headers = { "content-type": "application/x-ndjson; charset=utf-8", "cache-control": "no-store" };
  if (!follow) return new Response(first.lines.map(ndjson).join(""), { headers });

  const encoder = new TextEncoder();
  const follower = new LogFollower(store, filter, first.lastSeq, callEnd);
  const env = c.env;
  const principal = principalOf(c);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      if (first.lines.length) controller.enqueue(encoder.encode(first.lines.map(ndjson).join("")));
    },
    // Each pull waits for the next lines due (held long enough), so a reader that stops reading stops the polls.
    // None goes out once the token that opened the follow is revoked: its last line is then the error (`LogStreamEnd`).
    async pull(controller) {
      const lines = await follower.next();
      if (!lines) {
        // The call followed has ended and its last lines went out: so does the stream. (Stopped: the client left.)
        if (follower.ended) controller.close();
        return;
      }
      if (!(await principalIsLive(env, principal))) {
        follower.stop();
        controller.enqueue(encoder.encode(JSON.stringify(errorBody(revokedWhileOpen(principal))) + "\n"));
        controller.close();
        return;
      }
      controller.enqueue(encoder.encode(lines.length ? lines.map(ndjson).join("") : "\n"));
    },
    cancel() {
      follower.stop();
    },
  });
  return new Response(body, { headers });
}

/**
 * A follow of an app's log from line `after`: each `next()` waits for the
 * lines that are due (stored, and held back `LOG_LIMITS.followHoldMs` so both
 * tiers come out in time order) and answers them, or an empty list after
 * `LOG_LIMITS.followKeepAliveMs` without any (a keep-alive), or undefined once stopped.
 * With `callEnd` (a follow of one call), it asks at each poll whether the call has ended; once it has and a read
 * made after the time `callEnd` answers found the last lines, it answers every line it still holds, and then
 * undefined (`ended`). The NDJSON follow and the dashboard's live stream both read one.
 *
 * @example const follower = new LogFollower(store, { callId, limit: 100 }, lastSeq); for (;;) send(await follower.next());
 */
export class LogFollower {
  #held: StoredLogLine[] = [];
  #stopped = false;
  #ended = false;
  #sentAt = Date.now();
  /** When the call followed has ended: the time by which its last lines are stored. */
  #linesStoredBy: number | undefined;

  constructor(
    private readonly store: DurableObjectStub<LogStore>,
    private readonly filter: LogFilter,
    private after: number,
    private readonly callEnd?: () => Promise<number | undefined>,
  ) {}

  /** Whether the call followed has ended and every line of it went out: `next()` answers nothing more. */
  get ended(): boolean {
    return this.#ended;
  }

  async next(): Promise<StoredLogLine[] | undefined> {
    for (;;) {
      if (this.#stopped || this.#ended) return undefined;
      const now = Date.now();
      const due = this.#held.filter((l) => l.time <= now - LOG_LIMITS.followHoldMs);
      if (due.length) {
        this.#held = this.#held.filter((l) => l.time > now - LOG_LIMITS.followHoldMs);
        due.sort((a, b) => a.time - b.time || a.seq - b.seq);
        this.#sentAt = now;
        return due;
      }
      if (now - this.#sentAt >= LOG_LIMITS.followKeepAliveMs) {
        this.#sentAt = now;
        return [];
      }
      await new Promise((resolve) => setTimeout(resolve, LOG_LIMITS.followPollMs));
      if (this.#stopped) return undefined;
      const readAt = Date.now();
      const [next, linesStoredBy] = await Promise.all([
        this.store.read({ ...this.filter, after: this.after, limit: LOG_LIMITS.maxLimit }),
        this.#linesStoredBy ?? this.callEnd?.(),
      ]);
      this.#linesStoredBy = linesStoredBy;
      this.#held.push(...next.lines);
      const full = next.lines.length === LOG_LIMITS.maxLimit;
      this.after = full ? next.lines.at(-1)!.seq : next.lastSeq;
      // The call's last lines are in this read: none is held back to wait for another tier's.
      if (linesStoredBy !== undefined && readAt >= linesStoredBy && !full) {
        this.#ended = true;
        const rest = this.#held.sort((a, b) => a.time - b.time || a.seq - b.seq);
        this.#held = [];
        return rest.length ? rest : undefined;
      }
    }
  }

  stop(): void {
    this.#stopped = true;
  }
}

/** A stored line as the API answers it (its `seq` is the store's own), one NDJSON line. */
function ndjson({ seq: _seq, ...line }: StoredLogLine): string {
  return JSON.stringify(line satisfies LogLine) + "\n";
}
