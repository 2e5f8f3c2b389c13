/**
 * How run requests travel from the gateway to a plane: one by one
 * (`runOnPlane`, `POST /v1/plane/run`), or, for a `.map`, the inputs that are
 * ready in the same turn of the isolate's event loop together (`RunBatch`,
 * `POST /v1/plane/run-many`): one signed request, one copy of what they share
 * (the spec, the bundle, the secrets) and one parse of it on the plane, and
 * each input's answer on its own NDJSON line as it ends. Either way an input
 * is one attempt with its own call id, run once by the plane and answered for
 * again when sent again (gpu-plane/outcome-cache.ts), so retries, lost
 * attempts and records are the same for a batched input as for a lone one.
 *
 * A batch lives within one API request: workerd ties a fetch and its body to
 * the request that made it, so inputs of different requests never share one.
 */
import { PLANE_DEFAULTS } from "../sdk/defaults.js";
import { PLANE_ROUTES, type PlaneInfo, type PlaneRunManyLine, type PlaneRunRequest, type PlaneRunResponse } from "../sdk/protocol.js";
import { ndjsonLines } from "../sdk/stream-lines.js";
import type { WireError } from "../sdk/errors.js";
import { signedFetch } from "./plane-client.js";

/** A plane's answer to one input: the HTTP status it came with, and its body (null: none could be read). */
export interface RunReply {
  status: number;
  answer: (PlaneRunResponse & { error?: WireError }) | null;
}

/** One input for a plane: the request, how to sign it, how long to wait for its answer. */
export interface RunSend {
  secret: string;
  request: PlaneRunRequest;
  timeoutMs: number;
  /** Called once the request carrying this input is on its way (see `PlaneRequest.onSent`). */
  onSent?: () => void;
}

type Plane = Pick<PlaneInfo, "planeId" | "url">;

/**
 * Sends one input in a request of its own. Throws when the plane cannot be
 * reached (the input may have reached it), or `TimeoutError` after `timeoutMs`.
 *
 * @example const { status, answer } = await runOnPlane(plane, { secret, request, timeoutMs: 70_000 });
 */
export async function runOnPlane(plane: Plane, send: RunSend): Promise<RunReply> {
  const response = await signedFetch(send.secret, plane, {
    method: "POST",
    route: PLANE_ROUTES.run,
    body: JSON.stringify(send.request),
    timeoutMs: send.timeoutMs,
    ...(send.onSent ? { onSent: send.onSent } : {}),
  });
  return { status: response.status, answer: (await response.json().catch(() => null)) as RunReply["answer"] };
}

interface Waiting {
  send: RunSend;
  /** The input's own fields, as JSON (the rest is its batch's `base`). */
  item: string;
  resolve(reply: RunReply | Promise<RunReply>): void;
  reject(err: unknown): void;
}

interface Batch {
  plane: Plane;
  base: string;
  waiting: Waiting[];
  bytes: number;
}

/**
 * The inputs of one API request (a `.map`'s), sent to their planes in
 * batches: those for the same plane and the same function, bundle and
 * secrets, made ready in one turn of the event loop, go in one run-many
 * request, up to `PLANE_DEFAULTS.maxRunsPerRequest` inputs and
 * `maxRunRequestBytes` of body. A batch of one goes as a lone run. A plane
 * that does not know run-many (an older one: 404) gets its inputs one by one.
 *
 * @example const batch = new RunBatch(); const reply = await batch.run(plane, send); // as runOnPlane, sent with others
 */
export class RunBatch {
  readonly #open = new Map<string, Batch>();
  readonly #alone = new Set<string>();

  /** Sends `send` with the others ready now for `plane`, and answers as `runOnPlane` does. */
  run(plane: Plane, send: RunSend): Promise<RunReply> {
    if (this.#alone.has(plane.planeId)) return runOnPlane(plane, send);
    const { callId, attempt, args, meta, clsParams, ...shared } = send.request;
    const item = JSON.stringify({ callId, attempt, args, ...(meta === undefined ? {} : { meta }), ...(clsParams ? { clsParams } : {}) });
    const base = JSON.stringify(shared);
    const key = `${plane.planeId}\n${send.timeoutMs}\n${base}`;
    let batch = this.#open.get(key);
    const room = PLANE_DEFAULTS.maxRunRequestBytes - base.length - 64;
    if (batch && (batch.waiting.length >= PLANE_DEFAULTS.maxRunsPerRequest || batch.bytes + item.length + 1 > room)) {
      this.#open.delete(key);
      void this.#send(batch);
      batch = undefined;
    }
    if (!batch) {
      const opened: Batch = { plane, base, waiting: [], bytes: 0 };
      this.#open.set(key, opened);
      setTimeout(() => {
        if (this.#open.get(key) !== opened) return; // sent when it filled
        this.#open.delete(key);
        void this.#send(opened);
      }, 0);
      batch = opened;
    }
    const into = batch;
    return new Promise<RunReply>((resolve, reject) => {
      into.waiting.push({ send, item, resolve, reject });
      into.bytes += item.length + 1;
    });
  }

  async #send(batch: Batch): Promise<void> {
    const { plane, waiting } = batch;
    if (waiting.length === 1) {
      const lone = waiting[0]!;
      runOnPlane(plane, lone.send).then(lone.resolve, lone.reject);
      return;
    }
    const first = waiting[0]!.send;
    let response: Response;
    try {
      response = await signedFetch(first.secret, plane, {
        method: "POST",
        route: PLANE_ROUTES.runMany,
        body: `{"base":${batch.base},"runs":[${waiting.map((w) => w.item).join(",")}]}`,
        timeoutMs: first.timeoutMs,
        onSent: () => waiting.forEach((w) => w.send.onSent?.()),
      });
    } catch (err) {
      for (const w of waiting) w.reject(err); // any of them may have reached the plane
      return;
    }
    if (response.status === 404) {
      // A plane from before run-many: nothing ran; these inputs, and this request's later ones, go one by one.
      await response.body?.cancel().catch(() => {});
      this.#alone.add(plane.planeId);
      for (const w of waiting) w.resolve(runOnPlane(plane, w.send));
      return;
    }
    if (!response.ok || !response.body || !response.headers.get("content-type")?.startsWith("application/x-ndjson")) {
      // Refused as a whole (its signature, size or shape): each input gets the plane's answer, as a lone run would.
      const answer = (await response.json().catch(() => null)) as RunReply["answer"];
      for (const w of waiting) w.resolve({ status: response.status, answer });
      return;
    }
    const answered = new Array<boolean>(waiting.length).fill(false);
    let ended: unknown = new Error(`Network connection lost. (plane ${plane.planeId} ended its answer to a batch of ${waiting.length} inputs early)`);
    try {
      for await (const value of ndjsonLines(response.body)) {
        const { i, ...answer } = value as PlaneRunManyLine;
        const w = waiting[i];
        if (!w || answered[i]) continue;
        answered[i] = true;
        w.resolve({ status: 200, answer: answer as RunReply["answer"] });
      }
    } catch (err) {
      ended = err;
    }
    // An input left without its line may be running on the plane: as a lone run whose connection was lost.
    waiting.forEach((w, i) => {
      if (!answered[i]) w.reject(ended);
    });
  }
}
