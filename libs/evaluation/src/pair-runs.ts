/**
 * One pass over two equally long label arrays that groups runs of equal (a, b) pairs: the counting
 * step of every contingency-style metric (class maps, instance overlaps), one comparison per pixel
 * plus one update per run.
 */

/**
 * Calls `check(i)` at the first index of every run and `add(a, b, n)` once per run of `n`
 * consecutive indices with `t[i] === a` and `p[i] === b`, in order. Nothing for empty arrays.
 *
 * @example forEachPairRun([1, 1, 2], [0, 0, 0], () => {}, (a, b, n) => console.log(a, b, n)) // 1 0 2, then 2 0 1
 */
export function forEachPairRun(t: ArrayLike<number>, p: ArrayLike<number>, check: (i: number) => void, add: (a: number, b: number, n: number) => void): void {
  if (t.length === 0) return;
  check(0);
  let runA = t[0];
  let runB = p[0];
  let runStart = 0;
  for (let i = 1; i < t.length; i++) {
    if (t[i] === runA && p[i] === runB) continue;
    check(i);
    add(runA, runB, i - runStart);
    runA = t[i];
    runB = p[i];
    runStart = i;
  }
  add(runA, runB, t.length - runStart);
}
