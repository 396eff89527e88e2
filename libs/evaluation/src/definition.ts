/**
 * Image definition (sharpness) criteria of the U-RISC paper (DESIGN.md section 4), on the grey
 * values f(x, y) of an M x N image (x = column < M = width, y = row < N = height) with mean mu:
 *   Brenner  = sum_{x < M-2} (f(x+2, y) - f(x, y))^2
 *   SMD2     = sum_{x < M-1, y < N-1} |f(x, y) - f(x+1, y)| * |f(x, y) - f(x, y+1)|
 *   Variance = sum (f(x, y) - mu)^2
 *   Vollath  = sum_{x < M-1} f(x, y) f(x+1, y) - M N mu^2
 * Per-pixel means divide each sum by the number of terms it adds ((M-2) N, (M-1)(N-1), M N) and
 * Vollath by M N, so images of different sizes compare.
 */
import { assertImage, EvaluationInputError, type Image2D } from './image.js';

export interface DefinitionCriteria {
  brenner: number;
  smd2: number;
  variance: number;
  vollath: number;
  /** The sums above divided by their term counts (Vollath by M N). */
  brennerMean: number;
  smd2Mean: number;
  varianceMean: number;
  vollathMean: number;
}

/**
 * The four definition criteria of a grey image (any numeric pixel type, e.g. 8-bit 0..255).
 * @example definitionCriteria(grey).brennerMean
 */
export function definitionCriteria(img: Image2D): DefinitionCriteria {
  assertImage(img, 'image');
  const { width: M, height: N, data: f } = img;
  if (M < 3 || N < 2) {
    throw new EvaluationInputError(`definitionCriteria needs an image of at least 3 x 2 pixels, got ${M} x ${N}`);
  }
  let sum = 0;
  let brenner = 0;
  let smd2 = 0;
  let neighbourProducts = 0;
  for (let y = 0; y < N; y++) {
    const row = y * M;
    for (let x = 0; x < M; x++) {
      const v = f[row + x];
      sum += v;
      if (x < M - 2) {
        const d = f[row + x + 2] - v;
        brenner += d * d;
      }
      if (x < M - 1) {
        neighbourProducts += v * f[row + x + 1];
        if (y < N - 1) smd2 += Math.abs(v - f[row + x + 1]) * Math.abs(v - f[row + M + x]);
      }
    }
  }
  const count = M * N;
  const mu = sum / count;
  let variance = 0;
  for (let i = 0; i < count; i++) {
    const d = f[i] - mu;
    variance += d * d;
  }
  const vollath = neighbourProducts - count * mu * mu;
  return {
    brenner,
    smd2,
    variance,
    vollath,
    brennerMean: brenner / ((M - 2) * N),
    smd2Mean: smd2 / ((M - 1) * (N - 1)),
    varianceMean: variance / count,
    vollathMean: vollath / count,
  };
}
