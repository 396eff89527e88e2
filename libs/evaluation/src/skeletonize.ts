/**
 * ImageJ's binary skeletonization (`ij.process.BinaryProcessor.skeletonize`), which Fiji's ISBI
 * 2012 metrics use to thin proposal boundaries to one pixel. A lookup table over the 8-neighbourhood
 * says, for each of the 256 configurations, whether the centre pixel is deleted on even passes (1),
 * odd passes (2) or both (3). Passes alternate even/odd, each deciding every pixel from the state
 * before the pass, until a pair of passes removes nothing; then a second table removes "stuck"
 * pixels the same way. Pixels outside the image count as background (ImageJ pads the image when
 * foreground touches its edge). The tables are ImageJ's (public domain), as of ImageJ 1.54.
 *
 * Only pixels on the object contour can ever be deleted (a pixel whose 8 neighbours are all set has
 * table entry 0), so each pass visits a queue of contour pixels whose neighbourhood changed since
 * they were last checked for that pass parity, instead of the whole image.
 */
import { assertImage, type Mask } from './image.js';

// Neighbourhood index bits: NW 1, N 2, NE 4, E 8, SE 16, S 32, SW 64, W 128.
// prettier-ignore
const TABLE1 = Uint8Array.of(
  0,0,0,0,0,0,1,3,0,0,3,1,1,0,1,3,0,0,0,0,0,0,0,0,0,0,2,0,3,0,3,3,
  0,0,0,0,0,0,0,0,3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,0,0,3,0,2,2,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
  2,0,0,0,0,0,0,0,2,0,0,0,2,0,0,0,3,0,0,0,0,0,0,0,3,0,0,0,3,0,2,0,
  0,0,3,1,0,0,1,3,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,
  3,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
  2,3,1,3,0,0,1,3,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
  2,3,0,1,0,0,0,1,0,0,0,0,0,0,0,0,3,3,0,1,0,0,0,0,2,2,0,0,2,0,0,0,
);
// prettier-ignore
const TABLE2 = Uint8Array.of(
  0,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,2,2,0,0,0,0,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,2,0,0,0,0,0,0,0,0,0,2,0,0,0,0,0,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
  0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,0,0,0,0,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,0,0,0,0,0,0,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
  0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
);

/** Contour-pixel queue with per-parity "needs a check" flags. */
class ThinningState {
  readonly fg: Uint8Array;
  readonly w: number;
  readonly h: number;
  /** bit 0: check on the next even pass, bit 1: on the next odd pass. */
  readonly dirty: Uint8Array;
  readonly queued: Uint8Array;
  queue: Int32Array;
  queueLength = 0;

  constructor(fg: Uint8Array, w: number, h: number) {
    this.fg = fg;
    this.w = w;
    this.h = h;
    this.dirty = new Uint8Array(fg.length);
    this.queued = new Uint8Array(fg.length);
    this.queue = new Int32Array(1024);
  }

  /** 8-neighbourhood index of pixel (x, y); outside the image is background. */
  index(x: number, y: number): number {
    const { fg, w, h } = this;
    const i = y * w + x;
    const up = y > 0;
    const down = y < h - 1;
    const left = x > 0;
    const right = x < w - 1;
    let k = 0;
    if (up) {
      if (left && fg[i - w - 1]) k |= 1;
      if (fg[i - w]) k |= 2;
      if (right && fg[i - w + 1]) k |= 4;
    }
    if (right && fg[i + 1]) k |= 8;
    if (down) {
      if (right && fg[i + w + 1]) k |= 16;
      if (fg[i + w]) k |= 32;
      if (left && fg[i + w - 1]) k |= 64;
    }
    if (left && fg[i - 1]) k |= 128;
    return k;
  }

  private enqueue(i: number): void {
    if (this.queued[i]) return;
    if (this.queueLength === this.queue.length) {
      const next = new Int32Array(this.queue.length * 2);
      next.set(this.queue);
      this.queue = next;
    }
    this.queued[i] = 1;
    this.queue[this.queueLength++] = i;
  }

  /** Queue every set pixel that has a background 8-neighbour, flagged for both parities. */
  queueContour(): void {
    const { fg, w, h } = this;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        if (fg[i] && this.index(x, y) !== 255) {
          this.dirty[i] = 3;
          this.enqueue(i);
        }
      }
    }
  }

  /** One thinning pass; returns the number of pixels deleted. */
  pass(parity: 0 | 1, table: Uint8Array): number {
    const { fg, w, h, dirty } = this;
    const bit = parity === 0 ? 1 : 2;
    const deleted: number[] = [];
    for (let q = 0; q < this.queueLength; q++) {
      const i = this.queue[q];
      if (!fg[i] || !(dirty[i] & bit)) continue;
      const code = table[this.index(i % w, (i / w) | 0)];
      if (code === 3 || code === (parity === 0 ? 1 : 2)) deleted.push(i);
      else dirty[i] &= ~bit;
    }
    for (const i of deleted) {
      fg[i] = 0;
      dirty[i] = 0;
    }
    for (const i of deleted) {
      const x = i % w;
      const y = (i / w) | 0;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= w) continue;
          const j = yy * w + xx;
          if (fg[j]) {
            dirty[j] = 3;
            this.enqueue(j);
          }
        }
      }
    }
    // Drop pixels that are gone or need no further check.
    let kept = 0;
    for (let q = 0; q < this.queueLength; q++) {
      const i = this.queue[q];
      if (fg[i] && dirty[i]) this.queue[kept++] = i;
      else this.queued[i] = 0;
    }
    this.queueLength = kept;
    return deleted.length;
  }

  /** Passes with one table, alternating parity, until a pair of passes removes nothing. */
  run(table: Uint8Array): void {
    let removed: number;
    do {
      removed = this.pass(0, table);
      removed += this.pass(1, table);
    } while (removed > 0);
  }
}

/** Skeletonize the set pixels of `data` (0/nonzero, width x height) in place, leaving 0/1 values. */
export function skeletonizeInPlace(data: Uint8Array, width: number, height: number): void {
  for (let i = 0; i < data.length; i++) data[i] = data[i] !== 0 ? 1 : 0;
  const state = new ThinningState(data, width, height);
  state.queueContour();
  state.run(TABLE1);
  state.queueContour();
  state.run(TABLE2);
}

/**
 * ImageJ's skeleton of the set pixels of a mask (returns a new 0/1 mask).
 * @example skeletonize(membraneMask) // 1-pixel-wide, 8-connected membranes
 */
export function skeletonize(mask: Mask): Mask {
  assertImage(mask, 'mask');
  const data = Uint8Array.from(mask.data);
  skeletonizeInPlace(data, mask.width, mask.height);
  return { width: mask.width, height: mask.height, data };
}
