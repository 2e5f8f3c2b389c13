/**
 * "Did you mean …?": the known name nearest to one that is not known, so that
 * a message about a misspelt option, field or setting can name the right one.
 * Distance is Damerau-Levenshtein (optimal string alignment: a swap of two
 * neighbours is one edit), case aside, with commander's limits for its own
 * suggestions: at most 3 edits, and more than 40% of the longer name kept.
 */

const MAX_EDITS = 3;
const MIN_SIMILARITY = 0.4;

/**
 * The nearest of `known` to `name`, or undefined when none is near.
 * @example
 * nearestName("gpus", ["gpu", "cpu", "memory"]) // "gpu"
 * nearestName("foo", ["gpu", "cpu"]) // undefined
 */
export function nearestName(name: string, known: Iterable<string>): string | undefined {
  let best: { name: string; distance: number; similarity: number } | undefined;
  for (const candidate of known) {
    if (candidate === name) continue;
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    const longer = Math.max(name.length, candidate.length);
    const similarity = (longer - distance) / longer;
    if (distance > MAX_EDITS || similarity <= MIN_SIMILARITY) continue;
    // Fewest edits first; between equals, the one that keeps more of itself ("retry": "retries" over "memory").
    if (!best || distance < best.distance || (distance === best.distance && similarity > best.similarity)) best = { name: candidate, distance, similarity };
  }
  return best?.name;
}

/**
 * A message's ending that names the nearest of `known` to `name`, or nothing when none is near.
 * @example
 * `must be one of ${choices.join(", ")}${didYouMean("stdrr", choices)}` // "…; did you mean \"stderr\"?"
 */
export function didYouMean(name: string, known: Iterable<string>): string {
  const near = nearestName(name, known);
  return near === undefined ? "" : `; did you mean "${near}"?`;
}

/** Edits (insert, delete, substitute, swap neighbours) that turn `a` into `b`. */
function editDistance(a: string, b: string): number {
  // rows[i][j]: the distance between the first i characters of a and the first j of b.
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}
