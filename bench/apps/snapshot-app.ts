// The Tandem side of bench/plane-cold's snapshot rows: a class whose enter() builds a large in-memory table
// (about 2 s here), once started fresh on every cold start and once resumed from its memory snapshot.
import { createHash } from "node:crypto";
import { App } from "tandem";

const app = new App("snapbench");

/** Rows of the table enter() builds: each a hash of its index, chained so that none can be skipped. */
const ROWS = 300_000;

/** The same class for both sides (a fresh one each: a class's methods are read from its own prototype). */
const table = () =>
  class {
    rows = new Map<number, string>();
    enter() {
      let previous = "";
      for (let i = 0; i < ROWS; i++) {
        previous = createHash("sha256").update(`${i}:${previous}`).digest("hex");
        this.rows.set(i, previous);
      }
    }
    lookup(i: number) {
      return this.rows.get(i) ?? null;
    }
  };

export const Fresh = app.cls({ tier: "plane", cpu: 1, memory: 1024, timeout: 120 }, table());
export const Snapped = app.cls({ tier: "plane", cpu: 1, memory: 1024, timeout: 120, snapshot: true }, table());

export default app;
