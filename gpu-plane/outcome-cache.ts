/**
 * What a plane remembers of the attempts it ran, so that one attempt (a call
 * id and an attempt number) runs here at most once. A gateway that restarted
 * sends the attempts it had in flight again: the plane answers one still
 * running when it ends (attached), one that ended with its kept outcome
 * (replayed), and one whose outcome it no longer has (it restarted, or the
 * outcome was dropped to stay within its bounds) as lost, so the gateway runs
 * and records a new attempt rather than the plane running the old one twice.
 *
 * Outcomes are kept in memory for a while, bounded in count and bytes, oldest
 * first out. Which attempts reached a container is also appended to a journal
 * in the plane's folder, so a plane that restarts knows what its previous
 * process ran. Everything is forgotten after `planeAttemptTtlMs`.
 */
import { closeSync, existsSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import { DELIVERY_DEFAULTS } from "../sdk/defaults.js";

/** What the plane knows of an attempt it was sent before. */
export type KnownAttempt<T> = { state: "running"; outcome: Promise<T> } | { state: "ended"; outcome: T } | { state: "lost"; why: string };

export interface OutcomeCacheOptions {
  /** The folder of the journal (`attempts.log`); none keeps it in memory only. */
  dir?: string;
  ttlMs?: number;
  maxAttempts?: number;
  maxOutcomes?: number;
  maxBytes?: number;
  /** Told when the journal cannot be written (the cache goes on in memory). */
  log?: (line: string) => void;
  now?: () => number;
}

interface Ran {
  at: number;
  /** Ran in the plane's previous process: its outcome died with it. */
  before: boolean;
}

const JOURNAL = "attempts.log";

/**
 * The attempts a plane is running or ran, and their outcomes.
 * @example
 * const outcomes = new OutcomeCache<PlaneRunResponse>({ dir: stateDir });
 * const known = outcomes.lookup(req.callId, req.attempt); // undefined: never here, so run it
 * const running = dispatcher.run(req, bundle);
 * outcomes.running(req.callId, req.attempt, running);
 * outcomes.ended(req.callId, req.attempt, await running, bytes);
 */
export class OutcomeCache<T> {
  readonly #ttlMs: number;
  readonly #maxAttempts: number;
  readonly #maxOutcomes: number;
  readonly #maxBytes: number;
  readonly #now: () => number;
  readonly #log: (line: string) => void;
  readonly #running = new Map<string, Promise<T>>();
  /** Kept outcomes, oldest first. */
  readonly #outcomes = new Map<string, { outcome: T; bytes: number; at: number }>();
  /** Attempts that reached a container here, oldest first. */
  readonly #ran = new Map<string, Ran>();
  /** How many of each call's attempts `#ran` holds: whether a call ran here, without a scan. */
  readonly #ranAttempts = new Map<string, number>();
  #bytes = 0;
  #journal: { fd: number; path: string; openedAt: number } | undefined;

  constructor(options: OutcomeCacheOptions = {}) {
    this.#ttlMs = options.ttlMs ?? DELIVERY_DEFAULTS.planeAttemptTtlMs;
    this.#maxAttempts = options.maxAttempts ?? DELIVERY_DEFAULTS.planeAttemptsRemembered;
    this.#maxOutcomes = options.maxOutcomes ?? DELIVERY_DEFAULTS.planeOutcomesKept;
    this.#maxBytes = options.maxBytes ?? DELIVERY_DEFAULTS.planeOutcomeBytesKept;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? ((line) => console.warn(line));
    if (options.dir) this.#openJournal(options.dir);
  }

  /** What is known of attempt `attempt` of `callId`; undefined when it never reached this plane (or was forgotten). */
  lookup(callId: string, attempt: number): KnownAttempt<T> | undefined {
    this.#prune();
    const key = keyOf(callId, attempt);
    const running = this.#running.get(key);
    if (running) return { state: "running", outcome: running };
    const kept = this.#outcomes.get(key);
    if (kept) return { state: "ended", outcome: kept.outcome };
    const ran = this.#ran.get(key);
    if (ran) return { state: "lost", why: ran.before ? "it ran on this plane before the plane restarted" : "the plane no longer keeps its outcome" };
    return undefined;
  }

  /** An attempt starts here: later requests for it wait for `outcome`. A rejected `outcome` is forgotten (nothing ran). */
  running(callId: string, attempt: number, outcome: Promise<T>): void {
    const key = keyOf(callId, attempt);
    this.#running.set(key, outcome);
    outcome.catch(() => this.#running.delete(key));
  }

  /** The attempt reached a container: from now on it has run here, whatever becomes of its answer. */
  ran(callId: string, attempt: number): void {
    const key = keyOf(callId, attempt);
    const at = this.#now();
    this.#forget(key);
    this.#remember(key, { at, before: false });
    while (this.#ran.size > this.#maxAttempts) this.#forget(this.#ran.keys().next().value!);
    if (this.#journal) this.#append(`${at} ${callId} ${attempt}\n`);
  }

  /**
   * The attempt's answer (`bytes`: its size as JSON). Kept when it ran in a
   * container and fits; an answer from before that (no capacity, the app's
   * bundle or image failed) is forgotten, so the attempt may be sent again.
   */
  ended(callId: string, attempt: number, outcome: T, bytes: number): void {
    const key = keyOf(callId, attempt);
    this.#running.delete(key);
    if (!this.#ran.has(key) || bytes > this.#maxBytes) return;
    this.#outcomes.set(key, { outcome, bytes, at: this.#now() });
    this.#bytes += bytes;
    while (this.#outcomes.size > this.#maxOutcomes || this.#bytes > this.#maxBytes) this.#dropOldest();
  }

  /** Whether an attempt of `callId` reached a container here and none is running now: it ended here. */
  endedHere(callId: string): boolean {
    if (!this.#ranAttempts.has(callId)) return false;
    for (const key of this.#running.keys()) if (key.startsWith(`${callId}#`)) return false;
    return true;
  }

  /** How many attempts are running, kept with their outcome, and remembered as run. */
  sizes(): { running: number; outcomes: number; bytes: number; attempts: number } {
    return { running: this.#running.size, outcomes: this.#outcomes.size, bytes: this.#bytes, attempts: this.#ran.size };
  }

  close(): void {
    if (this.#journal) closeSync(this.#journal.fd);
    this.#journal = undefined;
  }

  #dropOldest(): void {
    const [key, kept] = this.#outcomes.entries().next().value!;
    this.#outcomes.delete(key);
    this.#bytes -= kept.bytes;
  }

  #prune(): void {
    const oldest = this.#now() - this.#ttlMs;
    for (const kept of this.#outcomes.values()) {
      if (kept.at > oldest) break;
      this.#dropOldest();
    }
    for (const [key, ran] of this.#ran) {
      if (ran.at > oldest) break;
      this.#forget(key);
    }
  }

  #remember(key: string, ran: Ran): void {
    if (!this.#ran.has(key)) {
      const callId = callOf(key);
      this.#ranAttempts.set(callId, (this.#ranAttempts.get(callId) ?? 0) + 1);
    }
    this.#ran.set(key, ran);
  }

  #forget(key: string): void {
    if (!this.#ran.delete(key)) return;
    const callId = callOf(key);
    const left = this.#ranAttempts.get(callId)! - 1;
    if (left > 0) this.#ranAttempts.set(callId, left);
    else this.#ranAttempts.delete(callId);
  }

  /**
   * Reads what the previous process ran (within the TTL) and starts the
   * journal again with just those lines; once it is older than the TTL it is
   * started again with what memory still holds (#append), so it never holds
   * much more than a TTL of attempts.
   */
  #openJournal(dir: string): void {
    const path = join(dir, JOURNAL);
    const oldest = this.#now() - this.#ttlMs;
    try {
      if (existsSync(path)) {
        for (const line of readFileSync(path, "utf8").split("\n")) {
          const [at, callId, attempt] = line.split(" ");
          if (!at || !callId || !attempt || !(Number(at) > oldest)) continue;
          this.#remember(keyOf(callId, Number(attempt)), { at: Number(at), before: true });
        }
      }
      this.#startJournal(path);
    } catch (err) {
      this.#log(`[plane] cannot keep the journal of attempts in ${path} (${(err as Error).message}); a restart of this plane will forget what it ran`);
    }
  }

  /** Writes what memory holds to a new journal, put in place in one rename (a crash leaves the old or the new one), and appends from there. */
  #startJournal(path: string): void {
    if (this.#journal) closeSync(this.#journal.fd);
    this.#journal = undefined;
    const fresh = `${path}.new`;
    const fd = openSync(fresh, "w");
    writeSync(fd, [...this.#ran].map(([key, ran]) => `${ran.at} ${key.replace("#", " ")}\n`).join(""));
    closeSync(fd);
    renameSync(fresh, path);
    this.#journal = { fd: openSync(path, "a"), path, openedAt: this.#now() };
  }

  /** Appends a line: a write to the file, so it outlives this process if it is killed. */
  #append(line: string): void {
    const journal = this.#journal!;
    try {
      if (this.#now() - journal.openedAt > this.#ttlMs) {
        this.#prune();
        this.#startJournal(journal.path); // with this line: it is in memory already
      } else writeSync(journal.fd, line);
    } catch (err) {
      this.#log(`[plane] stopped keeping the journal of attempts (${(err as Error).message})`);
      this.close();
    }
  }
}

function keyOf(callId: string, attempt: number): string {
  return `${callId}#${attempt}`;
}

function callOf(key: string): string {
  return key.slice(0, key.lastIndexOf("#"));
}
