/**
 * 2-D affine maps `[a, b, c, d, e, f]`: (x, y) -> (a x + b y + c, d x + e y + f), in continuous
 * pixel coordinates where pixel i spans [i, i + 1) (its centre is i + 0.5).
 * Augmentation builds one map from output coordinates back to source coordinates, so a whole
 * chain of rotations, crops, zooms and flips costs a single resampling pass.
 */
export type Affine = readonly [number, number, number, number, number, number];

export const IDENTITY: Affine = [1, 0, 0, 0, 1, 0];

/** `compose(A, B, C)` applies C first, then B, then A (like A * B * C on column vectors). */
export function compose(...maps: readonly Affine[]): Affine {
  const product = maps.reduce(
    (m, n) => [
      m[0] * n[0] + m[1] * n[3],
      m[0] * n[1] + m[1] * n[4],
      m[0] * n[2] + m[1] * n[5] + m[2],
      m[3] * n[0] + m[4] * n[3],
      m[3] * n[1] + m[4] * n[4],
      m[3] * n[2] + m[4] * n[5] + m[5],
    ],
    IDENTITY,
  );
  // No negative zeros, so parameters survive a JSON round trip unchanged.
  return product.map((v) => v + 0) as unknown as Affine;
}

export function translation(tx: number, ty: number): Affine {
  return [1, 0, tx, 0, 1, ty];
}

export function scaling(sx: number, sy: number): Affine {
  return [sx, 0, 0, 0, sy, 0];
}

/** Rotation by `radians` (counter-clockwise in a y-up frame, clockwise on screen) about (cx, cy). */
export function rotationAbout(radians: number, cx: number, cy: number): Affine {
  const cos = Math.cos(radians);
  const sin = Math.sin(radians);
  // Exact values for multiples of 90 degrees keep flips/rot90 resampling exact.
  const c = Math.abs(cos) < 1e-12 ? 0 : Math.round(cos * 1e12) / 1e12;
  const s = Math.abs(sin) < 1e-12 ? 0 : Math.round(sin * 1e12) / 1e12;
  return compose(translation(cx, cy), [c, -s, 0, s, c, 0], translation(-cx, -cy));
}

/** Applies `m` to a point. */
export function applyAffine(m: Affine, x: number, y: number): [number, number] {
  return [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]];
}

/** The inverse map; throws if `m` is singular. */
export function invertAffine(m: Affine): Affine {
  const det = m[0] * m[4] - m[1] * m[3];
  if (Math.abs(det) < 1e-15) throw new Error(`affine map ${JSON.stringify(m)} is not invertible`);
  const a = m[4] / det;
  const b = -m[1] / det;
  const d = -m[3] / det;
  const e = m[0] / det;
  return [a, b, -(a * m[2] + b * m[5]), d, e, -(d * m[2] + e * m[5])];
}
