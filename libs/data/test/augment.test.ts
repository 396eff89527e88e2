import { describe, expect, it } from 'vitest';
import {
  CEM500K_AUGMENTATION,
  Rng,
  URISC_AUGMENTATION,
  applyAffine,
  applyAugmentation,
  augmentedViews,
  gaussianBlur,
  gaussianKernel,
  sampleAugmentation,
  type AugmentationParams,
  type AugmentationSpec,
  type GreyImage,
  type Mask,
} from '@emseg/data';

/** A random blob mask and an image that is exactly the mask scaled to 0/255. */
function maskAndImage(width: number, height: number, seed: number): { mask: Mask; image: GreyImage } {
  const rng = new Rng(seed);
  const blobs = Array.from({ length: 12 }, () => ({ x: rng.uniform(0, width), y: rng.uniform(0, height), r: rng.uniform(3, 12) }));
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data[y * width + x] = blobs.some((b) => (x - b.x) ** 2 + (y - b.y) ** 2 < b.r * b.r) ? 1 : 0;
  }
  return { mask: { width, height, data }, image: { width, height, bitDepth: 8, data: data.map((v) => v * 255) } };
}

const geometryOnly = (p: AugmentationParams): AugmentationParams => ({ ...p, brightness: 1, contrast: 1, gamma: 1, blurSigma: 0, noiseStd: 0 });
const whole = (w: number, h: number) => ({ region: { x: 0, y: 0, width: w, height: h }, width: w, height: h });

describe('geometry', () => {
  it('an empty spec is the identity', () => {
    const { image } = maskAndImage(40, 30, 1);
    const out = applyAugmentation(sampleAugmentation(new Rng(1), {}, whole(40, 30)), image);
    expect(Array.from(out.image, (v) => Math.round(v * 255))).toEqual(Array.from(image.data));
  });

  it('flips and 90-degree turns move pixels exactly', () => {
    const width = 16;
    const data = Float32Array.from({ length: width * width }, (_, i) => i);
    const image = { width, height: width, data };
    const at = (x: number, y: number) => data[y * width + x];
    const seen = new Set<string>();
    for (let seed = 0; seed < 64; seed++) {
      const p = sampleAugmentation(new Rng(seed), { horizontalFlip: 0.5, verticalFlip: 0.5, rotate90: true }, whole(width, width));
      const out = applyAugmentation(p, image).image;
      // Whatever dihedral transform was drawn, the output is a permutation of the pixels: check
      // against the 8 candidates and record which one it was.
      const candidates: [string, (x: number, y: number) => number][] = [
        ['id', (x, y) => at(x, y)],
        ['h', (x, y) => at(width - 1 - x, y)],
        ['v', (x, y) => at(x, width - 1 - y)],
        ['hv', (x, y) => at(width - 1 - x, width - 1 - y)],
        ['t', (x, y) => at(y, x)],
        ['th', (x, y) => at(width - 1 - y, x)],
        ['tv', (x, y) => at(y, width - 1 - x)],
        ['thv', (x, y) => at(width - 1 - y, width - 1 - x)],
      ];
      const match = candidates.find(([, f]) => out.every((v, i) => v === f(i % width, Math.floor(i / width))));
      expect(match, `seed ${seed} is not an exact flip/turn`).toBeDefined();
      seen.add((match as [string, unknown])[0]);
    }
    expect(seen.size).toBe(8);
  });

  it('moves image and mask identically under every recipe', () => {
    const { mask, image } = maskAndImage(96, 80, 7);
    const specs: [string, AugmentationSpec, number][] = [
      ['CEM500K', CEM500K_AUGMENTATION, 64],
      ['U-RISC', URISC_AUGMENTATION, 96],
      ['zero border', { ...URISC_AUGMENTATION, border: 'zero' }, 96],
    ];
    for (const [label, spec, size] of specs) {
      for (let seed = 0; seed < 20; seed++) {
        const p = sampleAugmentation(new Rng(seed), spec, { region: { x: 0, y: 0, width: 96, height: 80 }, width: size, height: size });
        const out = applyAugmentation(geometryOnly(p), image, mask);
        const warpedMask = out.mask as Uint8Array;
        // Bilinear image vs nearest mask: identical away from blob edges; a disagreement is only
        // allowed where the mask itself changes within one pixel.
        let disagreements = 0;
        for (let y = 0; y < size; y++) {
          for (let x = 0; x < size; x++) {
            const i = y * size + x;
            if ((out.image[i] >= 0.5 ? 1 : 0) === warpedMask[i]) continue;
            disagreements++;
            const near = [i - 1, i + 1, i - size, i + size].filter((j) => j >= 0 && j < size * size).map((j) => warpedMask[j]);
            if (!(near.some((v) => v !== warpedMask[i]) || near.length < 4)) throw new Error(`${label} seed ${seed}: isolated mismatch at ${x},${y}`);
          }
        }
        expect(disagreements / (size * size), `${label} seed ${seed}`).toBeLessThan(0.03);
      }
    }
  });

  it('reads image and mask from the same source positions (checked pixel by pixel)', () => {
    const { mask, image } = maskAndImage(64, 64, 3);
    for (let seed = 0; seed < 10; seed++) {
      const p = geometryOnly(sampleAugmentation(new Rng(seed), CEM500K_AUGMENTATION, { ...whole(64, 64), width: 48, height: 48 }));
      const out = applyAugmentation(p, image, mask);
      let checked = 0;
      for (let v = 0; v < 48; v++) {
        for (let u = 0; u < 48; u++) {
          const [sx, sy] = applyAffine(p.transform, u + 0.5, v + 0.5);
          const x0 = Math.floor(sx - 0.5);
          const y0 = Math.floor(sy - 0.5);
          if (x0 < 0 || y0 < 0 || x0 + 1 >= 64 || y0 + 1 >= 64) continue;
          const corners = [mask.data[y0 * 64 + x0], mask.data[y0 * 64 + x0 + 1], mask.data[(y0 + 1) * 64 + x0], mask.data[(y0 + 1) * 64 + x0 + 1]];
          if (!corners.every((c) => c === corners[0])) continue;
          // Uniform neighbourhood: the image must show exactly that value, and the mask too.
          if (Math.abs(out.image[v * 48 + u] - corners[0]) > 1e-5 || (out.mask as Uint8Array)[v * 48 + u] !== corners[0]) {
            throw new Error(`seed ${seed}: output ${u},${v} differs from its source neighbourhood (${corners[0]})`);
          }
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(48 * 48 * 0.5);
    }
  });

  it('samples an augmented patch from the full image, so a rotated patch sees real context', () => {
    const { image } = maskAndImage(200, 200, 9);
    const region = { x: 50, y: 60, width: 64, height: 64 };
    const p = sampleAugmentation(new Rng(2), {}, { region, width: 64, height: 64 });
    const out = applyAugmentation(p, image).image;
    for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) expect(out[y * 64 + x] * 255).toBeCloseTo(image.data[(y + 60) * 200 + x + 50], 4);
  });
});

describe('the CEM500K recipe', () => {
  const target = whole(224, 224);
  const draws = Array.from({ length: 2000 }, (_, i) => sampleAugmentation(new Rng(i), CEM500K_AUGMENTATION, target));

  it('draws each step with its published probability and range', () => {
    const share = (f: (p: AugmentationParams) => boolean) => draws.filter(f).length / draws.length;
    expect(share((p) => p.blurSigma > 0)).toBeGreaterThan(0.45);
    expect(share((p) => p.blurSigma > 0)).toBeLessThan(0.55);
    expect(share((p) => p.noiseStd > 0)).toBeGreaterThan(0.45);
    expect(share((p) => p.noiseStd > 0)).toBeLessThan(0.55);
    for (const p of draws) {
      expect(p.brightness).toBeGreaterThanOrEqual(0.6);
      expect(p.brightness).toBeLessThanOrEqual(1.4);
      expect(p.contrast).toBeGreaterThanOrEqual(0.6);
      expect(p.contrast).toBeLessThanOrEqual(1.4);
      if (p.blurSigma > 0) expect(p.blurSigma).toBeGreaterThanOrEqual(0.1);
      expect(p.blurSigma).toBeLessThanOrEqual(2);
      if (p.noiseStd > 0) {
        expect(p.noiseStd ** 2).toBeGreaterThanOrEqual(1e-5 - 1e-12);
        expect(p.noiseStd ** 2).toBeLessThanOrEqual(1e-4 + 1e-12);
      }
      // RandomResizedCrop: the sampled region's area is 20%..100% of the crop (|det| of the map).
      const [a, b, , d, e] = p.transform;
      const areaFraction = Math.abs(a * e - b * d);
      expect(areaFraction).toBeGreaterThanOrEqual(0.2 - 1e-9);
      expect(areaFraction).toBeLessThanOrEqual(1 + 1e-9);
    }
  });

  it('rotates about half of the views (the linear part is not axis-aligned)', () => {
    const rotated = draws.filter((p) => Math.abs(p.transform[1]) > 1e-9).length / draws.length;
    expect(rotated).toBeGreaterThan(0.45);
    expect(rotated).toBeLessThan(0.55);
  });

  it('adds noise of the drawn variance', () => {
    const flat: GreyImage = { width: 128, height: 128, bitDepth: 8, data: new Uint8Array(128 * 128).fill(128) };
    const p = draws.find((q) => q.noiseStd > 0) as AugmentationParams;
    const out = applyAugmentation({ ...geometryOnly(p), noiseStd: p.noiseStd, noiseSeed: p.noiseSeed }, flat).image;
    const mean = out.reduce((s, v) => s + v, 0) / out.length;
    const variance = out.reduce((s, v) => s + (v - mean) ** 2, 0) / out.length;
    expect(variance / p.noiseStd ** 2).toBeGreaterThan(0.9);
    expect(variance / p.noiseStd ** 2).toBeLessThan(1.1);
  });
});

describe('reproducibility', () => {
  it('is deterministic by seed and differs between seeds', () => {
    const { image } = maskAndImage(80, 80, 4);
    const a = augmentedViews(image, [10, 11], CEM500K_AUGMENTATION, 64);
    const b = augmentedViews(image, [10, 11], CEM500K_AUGMENTATION, 64);
    expect(a).toEqual(b);
    expect(a[0]).not.toEqual(a[1]);
    expect(JSON.parse(JSON.stringify(sampleAugmentation(new Rng(5), URISC_AUGMENTATION, whole(32, 32))))).toEqual(
      sampleAugmentation(new Rng(5), URISC_AUGMENTATION, whole(32, 32)),
    );
  });

  it('produces values in [0, 1]', () => {
    const { image } = maskAndImage(80, 80, 5);
    for (const view of augmentedViews(image, [1, 2, 3, 4, 5, 6], CEM500K_AUGMENTATION, 48)) {
      expect(Math.min(...view)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...view)).toBeLessThanOrEqual(1);
    }
  });

  it('rejects a mask of another size', () => {
    const { image } = maskAndImage(20, 20, 1);
    expect(() => applyAugmentation(sampleAugmentation(new Rng(1), {}, whole(20, 20)), image, { width: 10, height: 20, data: new Uint8Array(200) })).toThrow(
      /mask is 10x20 but the image is 20x20/,
    );
  });
});

describe('Gaussian blur', () => {
  it('has a normalised kernel and keeps a constant image constant', () => {
    for (const sigma of [0.1, 0.7, 2]) expect(gaussianKernel(sigma).reduce((s, v) => s + v, 0)).toBeCloseTo(1, 6);
    const flat = new Float32Array(30 * 20).fill(0.3);
    expect(Math.max(...gaussianBlur(flat, 30, 20, 1.5).map((v) => Math.abs(v - 0.3)))).toBeLessThan(1e-6);
  });

  it('spreads an impulse with the kernel in both directions', () => {
    const img = new Float32Array(21 * 21);
    img[10 * 21 + 10] = 1;
    const out = gaussianBlur(img, 21, 21, 1);
    const k = gaussianKernel(1);
    expect(out[10 * 21 + 10]).toBeCloseTo(k[3] * k[3], 6);
    expect(out[10 * 21 + 12]).toBeCloseTo(k[3] * k[5], 6);
    expect(out[8 * 21 + 10]).toBeCloseTo(k[1] * k[3], 6);
  });
});
