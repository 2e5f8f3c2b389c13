/** The work every side of the edge benchmark does: a little arithmetic and an object. */
export function work(n: number): { n: number; sum: number } {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += i % 7;
  return { n, sum };
}
