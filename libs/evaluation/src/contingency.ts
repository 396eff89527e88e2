/**
 * Foreground-restricted contingency table of two segmentations of the same image: a ground truth
 * (segments 1..A, background excluded) and a proposal (segments 1..B, its background 0). Only pixels
 * inside ground-truth segments count; those the proposal leaves at background (its boundaries) are
 * kept apart as `singletons`, since the ISBI 2012 metrics treat each such pixel as its own segment.
 */
import type { RunComponents } from './components.js';

export interface Contingency {
  /** Number of ground-truth foreground pixels (n). */
  n: number;
  /** Pixel count of each ground-truth segment (a_i, including its singleton pixels). */
  trueSizes: Float64Array;
  /** Pixels shared by ground-truth segment i and proposal segment j >= 1, as parallel lists. */
  overlapCounts: Float64Array;
  /** Proposal segment sizes restricted to ground-truth foreground (b_j, j >= 1). */
  proposalSizes: Float64Array;
  /** Ground-truth foreground pixels that are proposal background (sum_i p_i0 * n). */
  singletons: number;
}

/**
 * Build the table from the run representations of both segmentations (same width and height):
 * per row, each ground-truth run is intersected with the proposal runs it overlaps.
 */
export function foregroundContingency(truth: RunComponents, proposal: RunComponents): Contingency {
  const h = truth.height;
  const cells = new Map<number, number>();
  const stride = proposal.count + 1;
  const proposalSizes = new Float64Array(proposal.count + 1);
  let n = 0;
  let overlapped = 0;
  for (let y = 0; y < h; y++) {
    let b = proposal.rowStart[y];
    const bEnd = proposal.rowStart[y + 1];
    for (let a = truth.rowStart[y]; a < truth.rowStart[y + 1]; a++) {
      const s = truth.runStart[a];
      const e = truth.runEnd[a];
      n += e - s;
      const la = truth.runLabel[a];
      while (b < bEnd && proposal.runEnd[b] <= s) b++;
      for (let k = b; k < bEnd && proposal.runStart[k] < e; k++) {
        const len = Math.min(e, proposal.runEnd[k]) - Math.max(s, proposal.runStart[k]);
        const lb = proposal.runLabel[k];
        const key = la * stride + lb;
        cells.set(key, (cells.get(key) ?? 0) + len);
        proposalSizes[lb] += len;
        overlapped += len;
      }
    }
  }
  const overlapCounts = new Float64Array(cells.size);
  let k = 0;
  for (const c of cells.values()) overlapCounts[k++] = c;
  return { n, trueSizes: truth.sizes, overlapCounts, proposalSizes, singletons: n - overlapped };
}

/** sum of x^2 over an array (index 0 skipped when `fromOne`). */
function sumSquares(xs: Float64Array, fromOne: boolean): number {
  let s = 0;
  for (let i = fromOne ? 1 : 0; i < xs.length; i++) s += xs[i] * xs[i];
  return s;
}

/** sum of x log x over an array (zeros contribute 0; index 0 skipped when `fromOne`). */
function sumXLogX(xs: Float64Array, fromOne: boolean): number {
  let s = 0;
  for (let i = fromOne ? 1 : 0; i < xs.length; i++) if (xs[i] > 0) s += xs[i] * Math.log(xs[i]);
  return s;
}

/** Foreground-restricted Rand scores of Fiji's `getForegroundRestrictedRandIndexStatsN2`. */
export interface RandScores {
  /** V_Rand: harmonic mean of split and merge scores. */
  vRand: number;
  /** sum p_ij^2 / sum b_j^2 (high when the proposal does not merge). */
  merge: number;
  /** sum p_ij^2 / sum a_i^2 (high when the proposal does not split). */
  split: number;
}

/**
 * V_Rand with N^2 normalization: with counts c_ij, a_i, b_j and S singleton pixels,
 *   merge = (sum c_ij^2 + S) / (sum b_j^2 + S), split = (sum c_ij^2 + S) / sum a_i^2,
 * each 1 when its error term is exactly 0 (Fiji's ClassificationStatistics), and V_Rand their
 * harmonic mean. An empty ground-truth foreground scores 0 (Fiji computes NaN there, and its
 * maximum over thresholds skips it).
 */
export function randScores(t: Contingency): RandScores {
  if (t.n === 0) return { vRand: 0, merge: 0, split: 0 };
  const sumAB = sumSquares(t.overlapCounts, false) + t.singletons;
  const sumB = sumSquares(t.proposalSizes, true) + t.singletons;
  const sumA = sumSquares(t.trueSizes, true);
  const merge = sumB - sumAB === 0 ? 1 : sumAB / sumB;
  const split = sumA - sumAB === 0 ? 1 : sumAB / sumA;
  const vRand = merge + split > 0 ? (2 * merge * split) / (merge + split) : 0;
  return { vRand, merge, split };
}

/** Foreground-restricted information scores of Fiji's `foregroundRestrictedFscore`. */
export interface InfoScores {
  /** V_Info = 2 I / (H(T) + H(S)). */
  vInfo: number;
  /** I / H(T): high when the proposal does not merge (Fiji's "precision"). */
  merge: number;
  /** I / H(S): high when the proposal does not split (Fiji's "recall"). */
  split: number;
  /** Entropy of the ground truth H(T), in nats. */
  trueEntropy: number;
  /** Entropy of the proposal H(S), singletons included, in nats. */
  proposalEntropy: number;
  /** Mutual information I(S; T), in nats. */
  mutualInformation: number;
}

function countPositive(xs: Float64Array, fromOne: boolean): number {
  let k = 0;
  for (let i = fromOne ? 1 : 0; i < xs.length; i++) if (xs[i] > 0) k++;
  return k;
}

/**
 * V_Info from the same table, with p = c / n and each singleton pixel a segment of its own
 * (a singleton adds 1 log 1 = 0 to every sum of c log c, so it only enters through n):
 *   H(T) = log n - (1/n) sum a_i log a_i, H(S) = log n - (1/n) sum b_j log b_j,
 *   H(S,T) = log n - (1/n) sum c_ij log c_ij, I = H(T) + H(S) - H(S,T).
 * As in Fiji, a proposal with a single segment (H(S) = 0) scores merge 1, split 0, and otherwise a
 * ground truth with a single segment (H(T) = 0) scores merge 0, split 1: V_Info = 0 either way.
 * I = 0 (Fiji: 0/0 = NaN) and an empty ground-truth foreground also score 0.
 */
export function infoScores(t: Contingency): InfoScores {
  if (t.n === 0) return { vInfo: 0, merge: 0, split: 0, trueEntropy: 0, proposalEntropy: 0, mutualInformation: 0 };
  const n = t.n;
  const logN = Math.log(n);
  const trueSegments = countPositive(t.trueSizes, true);
  const proposalSegments = countPositive(t.proposalSizes, true) + t.singletons;
  const trueEntropy = trueSegments <= 1 ? 0 : logN - sumXLogX(t.trueSizes, true) / n;
  const proposalEntropy = proposalSegments <= 1 ? 0 : logN - sumXLogX(t.proposalSizes, true) / n;
  const jointEntropy = logN - sumXLogX(t.overlapCounts, false) / n;
  const mutualInformation = trueEntropy + proposalEntropy - jointEntropy;
  let merge: number;
  let split: number;
  if (proposalEntropy === 0) {
    merge = 1;
    split = 0;
  } else if (trueEntropy === 0) {
    merge = 0;
    split = 1;
  } else {
    merge = mutualInformation / trueEntropy;
    split = mutualInformation / proposalEntropy;
  }
  const vInfo = merge + split > 0 ? (2 * merge * split) / (merge + split) : 0;
  return { vInfo, merge, split, trueEntropy, proposalEntropy, mutualInformation };
}
