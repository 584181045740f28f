/** "Did you mean": the known word nearest to a mistyped one, for error messages. */

/**
 * Edit distance with adjacent transpositions counted as one edit (optimal string alignment), so
 * `prot` is one edit from `port` and `websocket` one from `websockets`.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array(rows * cols).fill(0);
  const at = (i: number, j: number) => d[i * cols + j] as number;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, at(i - 2, j - 2) + 1);
      d[i * cols + j] = best;
    }
  }
  return at(a.length, b.length);
}

/**
 * The candidate `word` was most likely meant as, or undefined when none is close: the same word in
 * another case, a candidate it begins (`env` for `environments`), or one within a couple of edits
 * (one for words of four letters or fewer).
 */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  if (w.length === 0) return undefined;
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const lc = c.toLowerCase();
    if (lc === w) return c;
    const distance = editDistance(w, lc);
    if (distance < bestDistance) {
      best = c;
      bestDistance = distance;
    }
  }
  const allowed = w.length <= 4 ? 1 : w.length <= 9 ? 2 : 3;
  if (best !== undefined && bestDistance <= allowed) return best;
  if (w.length >= 3) return candidates.find((c) => c.toLowerCase().startsWith(w));
  return undefined;
}
