/**
 * Validation overlays, so users look instead of read: four panels of one crop side by side,
 *   image | truth (membrane black) | prediction (membrane probability, dark = membrane) | errors
 * where errors shows the image dimmed with true positives green, false positives red and false
 * negatives blue.
 */
import type { GreyImage, Mask, Rect } from '@emseg/data';
import { encodeRgbPng } from './png.js';

export const OVERLAY_COLOURS = {
  truePositive: [0, 200, 0],
  falsePositive: [230, 0, 0],
  falseNegative: [0, 90, 255],
} as const;

const GAP = 4;

/** A centred square crop of at most `size` pixels. */
export function centreCrop(width: number, height: number, size: number): Rect {
  const w = Math.min(size, width);
  const h = Math.min(size, height);
  return { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), width: w, height: h };
}

/**
 * RGB pixels of the four-panel overlay of `rect` (width 4 * rect.width + 3 gaps).
 * `probability` is the full image's membrane probability; membrane where it is >= threshold.
 */
export function overlayPixels(
  image: GreyImage,
  truth: Mask,
  probability: Float32Array,
  threshold: number,
  rect: Rect,
): { width: number; height: number; rgb: Uint8Array } {
  const panelW = rect.width;
  const width = 4 * panelW + 3 * GAP;
  const height = rect.height;
  const rgb = new Uint8Array(width * height * 3).fill(255);
  const scale = 255 / (image.bitDepth === 16 ? 65535 : 255);
  const put = (panel: number, x: number, y: number, r: number, g: number, b: number) => {
    const o = (y * width + panel * (panelW + GAP) + x) * 3;
    rgb[o] = r;
    rgb[o + 1] = g;
    rgb[o + 2] = b;
  };
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < panelW; x++) {
      const i = (rect.y + y) * image.width + rect.x + x;
      const grey = Math.round(image.data[i] * scale);
      const isTrue = truth.data[i] !== 0;
      const p = probability[i];
      const isPred = p >= threshold;
      put(0, x, y, grey, grey, grey);
      const t = isTrue ? 0 : 255;
      put(1, x, y, t, t, t);
      const q = Math.round((1 - Math.min(1, Math.max(0, p))) * 255);
      put(2, x, y, q, q, q);
      const colour = isTrue && isPred ? OVERLAY_COLOURS.truePositive : isPred ? OVERLAY_COLOURS.falsePositive : isTrue ? OVERLAY_COLOURS.falseNegative : null;
      if (colour) put(3, x, y, colour[0], colour[1], colour[2]);
      else {
        const dim = Math.round(grey * 0.6);
        put(3, x, y, dim, dim, dim);
      }
    }
  }
  return { width, height, rgb };
}

/** The overlay of `rect` as PNG bytes. */
export function overlayPng(image: GreyImage, truth: Mask, probability: Float32Array, threshold: number, rect: Rect): Buffer {
  const { width, height, rgb } = overlayPixels(image, truth, probability, threshold, rect);
  return encodeRgbPng(width, height, rgb);
}
