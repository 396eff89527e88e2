/** Test helpers: fixture loading and tiny-image builders. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GreyImage, Image2D, Mask } from '@emseg/evaluation';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

/** An image as the Python generator writes it. */
export interface JsonImage {
  width: number;
  height: number;
  data: number[];
}

export function loadFixture<T>(name: string): T {
  return JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')) as T;
}

export function u8(img: JsonImage): Image2D<Uint8Array> {
  return { width: img.width, height: img.height, data: Uint8Array.from(img.data) };
}

export function f32(img: JsonImage): Image2D<Float32Array> {
  return { width: img.width, height: img.height, data: Float32Array.from(img.data) };
}

export function i32(img: JsonImage): Image2D<Int32Array> {
  return { width: img.width, height: img.height, data: Int32Array.from(img.data) };
}

/**
 * Build an 8-bit image from rows of characters: '#' = 0 (black, membrane), '.' = 255 (white),
 * digits 1-9 = that digit * 25.
 */
export function greyFromRows(rows: string[]): GreyImage {
  const height = rows.length;
  const width = rows[0].length;
  const data = new Uint8Array(width * height);
  rows.forEach((r, y) => {
    if (r.length !== width) throw new Error(`row ${y} has ${r.length} characters, expected ${width}`);
    [...r].forEach((c, x) => {
      data[y * width + x] = c === '#' ? 0 : c === '.' ? 255 : Number(c) * 25;
    });
  });
  return { width, height, data };
}

/** A mask from rows of characters: '#' or '1' set, anything else unset. */
export function maskFromRows(rows: string[]): Mask {
  const height = rows.length;
  const width = rows[0].length;
  const data = new Uint8Array(width * height);
  rows.forEach((r, y) => [...r].forEach((c, x) => (data[y * width + x] = c === '#' || c === '1' ? 1 : 0)));
  return { width, height, data };
}

/** Decodes a fixture's run-length encoded flat array ([v0, n0, v1, n1, ...], see the fixture scripts' `rle`). */
export function decodeRuns<T extends Uint8Array | Uint16Array | Uint32Array | Int32Array | Float32Array>(runs: number[], make: (n: number) => T): T {
  let n = 0;
  for (let k = 1; k < runs.length; k += 2) n += runs[k];
  const out = make(n);
  let at = 0;
  for (let k = 0; k < runs.length; k += 2) {
    out.fill(runs[k], at, at + runs[k + 1]);
    at += runs[k + 1];
  }
  return out;
}
