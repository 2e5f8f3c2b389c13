/**
 * Sends a plane-tier call to a plane that fits: one that has the GPU type (in
 * the function's fallback order) and, preferably, capacity free now; healthy
 * (a recent heartbeat). The request is signed. A plane that cannot be reached
 * or dies mid-call is skipped and the next one that fits is tried; with none
 * that fits, the call waits until its timeout and then fails with
 * `no_capacity`. The arguments go as the gateway received them.
 *
 * A plane runs each attempt (call id and attempt number) once, and answers a
 * request for one it has seen with its outcome (gpu-plane/outcome-cache.ts).
 * So an attempt that may have reached a plane is only ever sent again to that
 * plane; sending it anywhere else would run it twice under one number, and a
 * run there is a new attempt (`AttemptLost`), which the executor numbers and
 * records.
 */
import { FUNCTION_DEFAULTS, PLANE_DEFAULTS } from "../sdk/defaults.js";
import { ndjsonLines } from "../sdk/stream-lines.js";
import { NoCapacityError, PlaneUnavailableError, ProtocolError, fromWireError, functionTimeout, type TandemError, type WireError } from "../sdk/errors.js";
import { PLANE_ROUTES, containerGroup, type PlaneInfo, type PlaneRunRequest, type PlaneRunTimings, type StreamLine } from "../sdk/protocol.js";
import type { CallArgs } from "./call-args.js";
import { clsParamsOf } from "./class-params.js";
import { keepEdgeLine } from "./log-sink.js";
import { EncodedResult } from "./encoded-result.js";
import { signedFetch } from "./plane-client.js";
import { runOnPlane, type RunBatch, type RunReply, type RunSend } from "./plane-runs.js";
import { choosePlane, resourcesToPlace, inputInFlight, knownPlanes, localPlaneBundle, noteUnreachable, type PlaneWants } from "./plane-choice.js";
import { defaultNearRegions } from "./plane-regions.js";
import { registry, type RegisteredFunction } from "./registry.js";
import type { RunContext } from "./run-context.js";

/**
 * Extra time the gateway gives a plane past the longest an attempt can take
 * there (waiting for a container, up to the timeout, then running, up to the
 * timeout), so the plane's own error arrives first.
 */
const TIMEOUT_MARGIN_MS = 10_000;

/**
 * The longest the gateway waits on a plane for one attempt of `fn`, a call's or a stream's: the plane times it out
 * first, and says so with its container.
 * @example const deadline = Date.now() + planeAttemptMs(fn);
 */
export function planeAttemptMs(fn: RegisteredFunction): number {
  return 2 * fn.spec.timeoutSeconds * 1000 + TIMEOUT_MARGIN_MS;
}

/** What sending one input to a plane needs: the secret, the request, what GPUs it wants, its deadline. */
interface PlaneSend extends PlaneWants {
  secret: string;
  request: PlaneRunRequest;
}

async function planeSend(rc: RunContext, fn: RegisteredFunction, args: CallArgs, callId: string, attempt: number): Promise<PlaneSend> {
  const { planeSecret } = rc.config;
  if (!planeSecret)
    throw new PlaneUnavailableError(`${fn.app}.${fn.name} runs on the GPU plane, and this gateway has no TANDEM_PLANE_SECRET, so no plane can connect`);
  const bundle = registry().planeBundle(fn.app) ?? (rc.env.LOCAL_PLANE ? await localPlaneBundle(rc.env.LOCAL_PLANE, fn) : undefined);
  if (!bundle) throw new PlaneUnavailableError(`app "${fn.app}" was not bundled for the plane; serve or deploy it with the tandem CLI`);
  // Only a class method's parameters are read here (they pick its pool); the rest go on encoded as they came.
  const encoded = args.encoded;
  const request: PlaneRunRequest = {
    callId,
    app: fn.app,
    function: fn.name,
    bundleHash: bundle.hash,
    ...(bundle.nodeModules ? { nodeModules: bundle.nodeModules } : {}),
    ...(bundle.strategy ? { strategy: bundle.strategy } : {}),
    ...(fn.clsMethod ? clsParamsOf(fn, args.values) : {}),
    attempt,
    timeoutSeconds: fn.spec.timeoutSeconds,
    args: encoded.json as unknown[],
    ...(encoded.meta === undefined ? {} : { meta: encoded.meta }),
    spec: fn.planeSpec,
    // Its secrets' values, for the container this input may start (and only that one): the body is signed, and never logged.
    ...(fn.spec.secrets.length ? { secrets: (await registry().processEnvOf(rc, fn)).env } : {}),
  };
  return {
    secret: planeSecret,
    request,
    wants: fn.spec.gpu ?? [],
    regions: fn.spec.regions,
    near: rc.nearRegions ?? defaultNearRegions(rc.config),
    // A class instance's pool is its parameters', which heartbeats do not name: only a plain function's (or a class
    // without parameters) warm containers are worth going to.
    ...(request.clsParams && Object.keys(request.clsParams).length ? {} : { warm: { app: fn.app, function: containerGroup(fn.name) } }),
    deadline: Date.now() + fn.spec.timeoutSeconds * 1000,
  };
}

/** The CPU cores a container of `fn` reserves on a plane. */
function containerCpu(fn: RegisteredFunction): number {
  return fn.planeSpec.cpu ?? FUNCTION_DEFAULTS.cpu;
}

/**
 * The attempt may have run, or may be running, where it cannot be asked for
 * again: on a plane that cannot be reached, or on one that ran it and lost
 * its outcome. Another run is a new attempt. `planes`: where it may be.
 */
export class AttemptLost extends Error {
  constructor(
    readonly planes: string[],
    message: string,
  ) {
    super(message);
    this.name = "AttemptLost";
  }
}

/**
 * The attempt was cut by its plane stopping together with this gateway (`tandem serve` stopping): neither failed nor
 * ended. A call the ledger can take over is left to it (its record stays as it is, and the ledger runs it again when
 * the gateway runs again, as for a runner lost in a restart); any other ends with `failure`, the plane's word for it.
 */
export class StoppedWithGateway extends Error {
  constructor(
    readonly failure: TandemError,
    message: string,
  ) {
    super(message);
    this.name = "StoppedWithGateway";
  }
}

/** How one attempt is sent. */
export interface ForwardOptions {
  /** Told which plane each try goes to, before it is sent (the ledger notes it, so a cancel, and a resumed runner, find it). */
  onPlane?: (planeId: string) => Promise<void>;
  /** Told which plane each try went to once its request is on its way: a note nothing waits for (see `onPlane`). */
  onSent?: (planeId: string) => void;
  /** This attempt was sent before, to this plane, by a runner that was lost: ask that plane for it again first. */
  sentTo?: string;
  /** Planes not to try first (where the previous attempt was lost). */
  avoid?: Iterable<string>;
  /** Sends the attempt with others of the same request that are ready at the same moment (a `.map`'s inputs). */
  batch?: RunBatch;
  /** Told where the attempt's time went on the plane that ran it, once it answers for it. */
  onTimings?: (timings: PlaneRunTimings) => void;
}

/**
 * The error of an attempt that found no plane after its own plane stopped answering (`mayHold`): a `no_capacity`
 * then says so, `its plane pl-… stopped answering during attempt 1; no other plane could take it: …`, rather than
 * reading as a call that never found one. Any other error is itself.
 */
function afterPlaneLost(err: unknown, mayHold: ReadonlySet<string>, attempt: number): unknown {
  if (!(err instanceof NoCapacityError) || mayHold.size === 0) return err;
  const planes = [...mayHold];
  return new NoCapacityError(`its plane ${planes.join(", ")} stopped answering during attempt ${attempt}; no other plane could take it: ${err.message}`, {
    ...err.details,
    lostPlanes: planes,
    attempt,
  });
}

/** A plane's answer worth trying elsewhere (it is full, or cannot run this app) while time is left. */
function tryElsewhere(error: WireError | undefined, send: PlaneSend): boolean {
  return (error?.code === "no_capacity" || error?.code === "plane_unavailable") && Date.now() < send.deadline;
}

/**
 * Runs one attempt of a plane-tier call on a plane that fits and returns its
 * result in wire form (an `EncodedResult`), or throws its error, or
 * `AttemptLost` when it may have run on a plane that can no longer answer for it.
 *
 * @example const result = await forwardToPlane(rc, fn, CallArgs.of([prompt]), callId, 1, { onPlane });
 */
export async function forwardToPlane(
  rc: RunContext,
  fn: RegisteredFunction,
  args: CallArgs,
  callId: string,
  attempt: number,
  options: ForwardOptions = {},
): Promise<unknown> {
  const send = await planeSend(rc, fn, args, callId, attempt);
  const skipped = new Set<string>(options.avoid);
  // Planes that may hold this attempt: while there is one, it goes nowhere else.
  const mayHold = new Set<string>();
  let next: PlaneInfo | undefined;
  if (options.sentTo) {
    mayHold.add(options.sentTo);
    next = await planeBack(rc, options.sentTo);
  }
  const waits = waitLine(rc, fn, callId);
  for (;;) {
    const plane =
      next ??
      (await choosePlane(rc.env, fn, send, skipped, waits).catch((err: unknown): never => {
        throw afterPlaneLost(err, mayHold, attempt);
      }));
    next = undefined;
    if (mayHold.size > 0 && !mayHold.has(plane.planeId)) {
      const where = [...mayHold].join(", ");
      throw new AttemptLost([...mayHold], `attempt ${attempt} of ${callId} may have run on plane ${where}, which cannot be reached`);
    }
    await options.onPlane?.(plane.planeId);
    let reply: RunReply;
    const answered = inputInFlight(
      plane.planeId,
      { app: fn.app, function: fn.name },
      resourcesToPlace(plane, send.warm, containerCpu(fn), send.wants, fn.spec.autoscaler.targetInputs),
    );
    try {
      const run: RunSend = {
        secret: send.secret,
        request: send.request,
        timeoutMs: planeAttemptMs(fn),
        ...(options.onSent ? { onSent: () => options.onSent!(plane.planeId) } : {}),
      };
      reply = options.batch ? await options.batch.run(plane, run) : await runOnPlane(plane, run);
    } catch (err) {
      if ((err as Error).name === "TimeoutError") {
        throw functionTimeout({
          app: fn.app,
          function: fn.name,
          timeoutSeconds: fn.spec.timeoutSeconds,
          callId,
          attempt,
          where: `on plane ${plane.planeId}`,
          plane: plane.planeId,
        });
      }
      // workerd's fetch says "Network connection lost." whether the request reached the plane or not: it may be running
      // there. That plane is asked again when it is back (it answers for what it ran); any other plane gets a new attempt.
      console.warn(`plane ${plane.planeId} (${plane.url}) could not be reached for ${callId} attempt ${attempt}: ${(err as Error).message}; trying another`);
      // The call's own log says so too: its attempt may have been cut off there.
      keepEdgeLine(
        rc,
        { app: fn.app, function: fn.name, callId },
        "system",
        `plane ${plane.planeId} stopped answering during attempt ${attempt}; trying another plane`,
      );
      noteUnreachable(plane.planeId);
      mayHold.add(plane.planeId);
      skipped.add(plane.planeId);
      continue;
    } finally {
      answered();
    }
    const answer = reply.answer;
    if (!answer) {
      console.warn(`plane ${plane.planeId} answered HTTP ${reply.status} without a result for ${callId}; trying another`);
      skipped.add(plane.planeId);
      continue;
    }
    if (answer.again === "lost") throw new AttemptLost([], answer.error?.message ?? `attempt ${attempt} of ${callId} was lost on plane ${plane.planeId}`);
    mayHold.delete(plane.planeId); // it answered for this attempt: whatever it says, it no longer may hold it unseen
    if (answer.stoppedWithGateway) {
      const what = `attempt ${attempt} was cut as plane ${plane.planeId} stopped with its gateway`;
      const error = answer.error ?? { code: "internal", message: `${what} (${callId})` };
      throw new StoppedWithGateway(fromWireError({ ...error, details: { ...error.details, callId, plane: plane.planeId } }), what);
    }
    if (tryElsewhere(answer.error, send)) {
      skipped.add(plane.planeId); // another plane, or this one again after a pause
      continue;
    }
    if (answer.timings) options.onTimings?.(answer.timings);
    if (answer.status === "succeeded")
      return new EncodedResult(answer.meta === undefined ? { json: answer.result } : { json: answer.result, meta: answer.meta });
    // The call's id and plane, unless the error is an inner call's that the function let through, which names its own.
    if (answer.error) throw fromWireError({ ...answer.error, details: { callId, plane: plane.planeId, ...answer.error.details } });
    throw new PlaneUnavailableError(`plane ${plane.planeId} answered HTTP ${reply.status} without a result`);
  }
}

/**
 * The plane `planeId`, once it reports (it is healthy), waiting for it as long
 * as a plane may go silent before it counts as gone. A gateway that restarted
 * resumes its calls at once, before its planes have reported to it again.
 */
async function planeBack(rc: RunContext, planeId: string): Promise<PlaneInfo | undefined> {
  const until = Date.now() + PLANE_DEFAULTS.staleMs;
  for (;;) {
    // The list cached for the isolate (a second): a restart resumes many calls at once, all asking.
    const plane = (await knownPlanes(rc.env)).find((p) => p.planeId === planeId && p.healthy);
    if (plane || Date.now() >= until) return plane;
    await new Promise((r) => setTimeout(r, PLANE_DEFAULTS.heartbeatMs / 6));
  }
}

/**
 * Streams a plane generator function: the same choice of plane as a call
 * (skipping planes that cannot be reached, are full or cannot run it, until
 * the deadline), then its chunks in wire form as the plane sends them. Once
 * chunks flow, a lost plane ends the stream with an error; it is not moved.
 *
 * @example for await (const chunk of forwardStreamToPlane(rc, fn, args, callId)) send(chunk.encoded);
 */
export async function* forwardStreamToPlane(
  rc: RunContext,
  fn: RegisteredFunction,
  args: CallArgs,
  callId: string,
  onSent?: (planeId: string) => void,
): AsyncGenerator<EncodedResult, void, undefined> {
  const send = await planeSend(rc, fn, args, callId, 1);
  const skipped = new Set<string>();
  const waits = waitLine(rc, fn, callId);
  for (;;) {
    const plane = await choosePlane(rc.env, fn, send, skipped, waits);
    // A stream keeps its container busy while it lasts (plane-choice.ts: idle containers draw only what they can take).
    const ended = inputInFlight(
      plane.planeId,
      { app: fn.app, function: fn.name },
      resourcesToPlace(plane, send.warm, containerCpu(fn), send.wants, fn.spec.autoscaler.targetInputs),
    );
    try {
      let response: Response;
      try {
        const sending = signedFetch(send.secret, plane, { method: "POST", route: PLANE_ROUTES.stream, body: JSON.stringify(send.request) });
        onSent?.(plane.planeId); // a stream recorded while it runs notes its plane, where a cancel reaches it
        response = await sending;
      } catch (err) {
        console.warn(`plane ${plane.planeId} (${plane.url}) could not be reached for ${callId}: ${(err as Error).message}; trying another`);
        noteUnreachable(plane.planeId);
        skipped.add(plane.planeId);
        continue;
      }
      if (!response.ok || !response.body) {
        const error = ((await response.json().catch(() => null)) as { error?: WireError } | null)?.error ?? {
          code: "internal" as const,
          message: `plane ${plane.planeId} answered HTTP ${response.status}`,
        };
        if (tryElsewhere(error, send)) {
          skipped.add(plane.planeId);
          continue;
        }
        throw fromWireError({ ...error, details: { ...error.details, callId, plane: plane.planeId } });
      }
      for await (const line of ndjsonLines(response.body)) {
        const l = line as StreamLine;
        if ("chunk" in l) yield new EncodedResult(l.meta === undefined ? { json: l.chunk } : { json: l.chunk, meta: l.meta });
        else if ("error" in l) throw fromWireError({ ...l.error, details: { ...l.error.details, callId, plane: plane.planeId } });
        else if ("done" in l) return;
        else
          throw new ProtocolError(
            `plane ${plane.planeId} sent a line in the stream of ${callId} that is no chunk, error or end: ${JSON.stringify(line).slice(0, 200)}`,
            {
              callId,
              plane: plane.planeId,
            },
          );
      }
      throw new PlaneUnavailableError(`plane ${plane.planeId} ended the stream of ${callId} without its last line`, { callId, plane: plane.planeId });
    } finally {
      ended();
    }
  }
}

/** What a call waiting for a plane says, once, in its log: why none takes it (`choosePlane`'s `onWait`). */
function waitLine(rc: RunContext, fn: RegisteredFunction, callId: string): (why: string) => void {
  return (why) => keepEdgeLine(rc, { app: fn.app, function: fn.name, callId }, "system", `waiting for a plane: ${why}`);
}
