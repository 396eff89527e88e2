/**
 * Smooth random fields for the synthetic EM generator (value noise: random values on a coarse
 * lattice, interpolated with a smoothstep), evaluated a row at a time so no full-size buffer.
 */
import type { Rng } from '../random.js';

function smooth(f: number): number {
  return f * f * (3 - 2 * f);
}

export class ValueNoise {
  private readonly lattice: Float32Array;
  private readonly cols: number;
  private readonly colIndex: Int32Array;
  private readonly colWeight: Float32Array;

  /**
   * A field over [0, width) x [0, height) varying on a length scale of `cell` pixels, with values
   * in [-1, 1].
   */
  constructor(
    rng: Rng,
    private readonly width: number,
    height: number,
    private readonly cell: number,
  ) {
    this.cols = Math.ceil(width / cell) + 2;
    const rows = Math.ceil(height / cell) + 2;
    this.lattice = new Float32Array(this.cols * rows);
    for (let i = 0; i < this.lattice.length; i++) this.lattice[i] = rng.uniform(-1, 1);
    this.colIndex = new Int32Array(width);
    this.colWeight = new Float32Array(width);
    for (let x = 0; x < width; x++) {
      const g = x / cell;
      this.colIndex[x] = Math.floor(g);
      this.colWeight[x] = smooth(g - Math.floor(g));
    }
  }

  /** Field values of row y (x = 0..width-1) into `out`. */
  row(y: number, out: Float32Array): Float32Array {
    const g = y / this.cell;
    const iy = Math.floor(g);
    const fy = smooth(g - iy);
    const l = this.lattice;
    const top = iy * this.cols;
    const bottom = top + this.cols;
    for (let x = 0; x < this.width; x++) {
      const ix = this.colIndex[x];
      const fx = this.colWeight[x];
      const a = l[top + ix] + fx * (l[top + ix + 1] - l[top + ix]);
      const b = l[bottom + ix] + fx * (l[bottom + ix + 1] - l[bottom + ix]);
      out[x] = a + fy * (b - a);
    }
    return out;
  }
}
