/**
 * A log follow that outlives its gateway's restart (`tandem serve` stopped and started again, or a reload that cut
 * the follow): what it printed lately, so that one that follows again from a little before its newest line (lines of
 * two tiers' clocks come a little out of time order) yields each line once.
 */
import { LOG_LIMITS } from "./defaults.js";
import type { LogLine } from "./protocol.js";

export class FollowedOnce {
  /** Whether a stream of lines has opened: a gateway that never answered is an error, not one to wait for. */
  opened = false;
  #openedAt = 0;
  #newest = 0;
  readonly #recent = new Map<string, number>();

  /** A stream of lines opened (again). */
  open(): void {
    this.opened = true;
    this.#openedAt ||= Date.now();
  }

  /** Whether `line` is new here; keeps it as seen. */
  first(line: LogLine): boolean {
    const key = JSON.stringify(line);
    if (this.#recent.has(key)) return false;
    this.#recent.set(key, line.time);
    if (line.time > this.#newest) {
      this.#newest = line.time;
      for (const [k, time] of this.#recent) if (time < this.#newest - 2 * LOG_LIMITS.followOverlapMs) this.#recent.delete(k);
    }
    return true;
  }

  /**
   * The log route `path` followed again: every line from a little before the newest seen (or before the follow
   * opened), as many as the route answers.
   * @example once.resumed("/v1/apps/shop/logs?follow=1&limit=5"); // "/v1/apps/shop/logs?follow=1&limit=10000&since=1796…"
   */
  resumed(path: string): string {
    const url = new URL(path, "http://gateway");
    url.searchParams.set("limit", String(LOG_LIMITS.maxLimit));
    url.searchParams.set("since", String((this.#newest || this.#openedAt) - LOG_LIMITS.followOverlapMs));
    return `${url.pathname}?${url.searchParams}`;
  }
}
