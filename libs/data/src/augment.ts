/**
 * Seeded, reproducible augmentation for EM images, applied identically to an image and its mask.
 *
 * Augmentation happens in two steps so that it is both reproducible and testable:
 *   1. `sampleAugmentation(rng, spec, target)` draws concrete parameters (plain JSON data): one
 *      affine map (rotation, resized crop / zoom, translation, flips, 90-degree turns composed
 *      into a single output -> source map) and the photometric settings;
 *   2. `applyAugmentation(params, image, mask?)` resamples the image once (bilinear) and the mask
 *      with the *same* map (nearest), then applies brightness/contrast, gamma, blur and noise to the
 *      image only.
 * Geometric steps that are integer-aligned (flips, 90-degree turns) copy pixels exactly.
 */
import { type Affine, compose, rotationAbout, scaling, translation } from './affine.js';
import { addGaussianNoise, adjustBrightnessContrast, adjustGamma, gaussianBlur } from './filters.js';
import { type FloatImage, type GreyImage, type Mask, type Rect, maxValue } from './image.js';
import { Rng } from './random.js';
import { type BorderMode, warpBilinear, warpNearest } from './warp.js';

/** What to randomise and how much. Every field is optional; an empty spec is the identity. */
export interface AugmentationSpec {
  /** Arbitrary rotation by an angle uniform in [-maxDegrees, maxDegrees], with probability p. */
  readonly rotation?: { readonly maxDegrees: number; readonly p: number };
  /**
   * torchvision RandomResizedCrop: a region with area fraction uniform in `scale` and aspect ratio
   * log-uniform in `ratio` is resized to the output size. Takes precedence over `zoom`.
   */
  readonly resizedCrop?: { readonly scale: readonly [number, number]; readonly ratio: readonly [number, number] };
  /** Zoom factor, log-uniform in [min, max]; > 1 magnifies (samples a smaller central region). */
  readonly zoom?: readonly [number, number];
  /** Shift of the sampled region, uniform in [-t, t] times its size on each axis. */
  readonly translate?: number;
  /** Probability of a horizontal (left-right) flip. */
  readonly horizontalFlip?: number;
  /** Probability of a vertical (top-bottom) flip. */
  readonly verticalFlip?: number;
  /** Turn by a uniformly random multiple of 90 degrees (only 0/180 if the output is not square). */
  readonly rotate90?: boolean;
  /** Brightness factor uniform in [max(0, 1 - j), 1 + j] (ColorJitter). */
  readonly brightness?: number;
  /** Contrast factor uniform in [max(0, 1 - j), 1 + j] (ColorJitter). */
  readonly contrast?: number;
  /** Gamma, log-uniform in [min, max]. */
  readonly gamma?: readonly [number, number];
  /** Gaussian blur with sigma uniform in `sigma` (pixels), with probability p. */
  readonly blur?: { readonly sigma: readonly [number, number]; readonly p: number };
  /** Additive Gaussian noise, variance uniform in `variance` (on [0, 1] values), with probability p. */
  readonly noise?: { readonly variance: readonly [number, number]; readonly p: number };
  /** How pixels outside the source are filled. Default 'reflect'. */
  readonly border?: BorderMode;
}

/**
 * The CEM500K MoCoV2 recipe (Conrad & Narayan 2021), in its order: rotation up to 180 degrees
 * (p 0.5), RandomResizedCrop(scale 0.2-1), brightness/contrast jitter 0.4, Gaussian blur sigma
 * 0.1-2 (p 0.5), horizontal and vertical flips, Gaussian noise variance 1e-5..1e-4 (p 0.5).
 * Normalisation by the dataset mean/std happens when the batch becomes a tensor.
 * Rotation corners are filled by reflection rather than black, so corners carry no cue.
 */
export const CEM500K_AUGMENTATION: AugmentationSpec = {
  rotation: { maxDegrees: 180, p: 0.5 },
  resizedCrop: { scale: [0.2, 1], ratio: [3 / 4, 4 / 3] },
  brightness: 0.4,
  contrast: 0.4,
  blur: { sigma: [0.1, 2], p: 0.5 },
  horizontalFlip: 0.5,
  verticalFlip: 0.5,
  noise: { variance: [1e-5, 1e-4], p: 0.5 },
  border: 'reflect',
};

/**
 * U-RISC fine-tuning (Shi et al. 2022): flips, rotation, zoom, translation, contrast/brightness
 * jitter (the "crop" is the patch sampling itself). Mild, so thin membranes survive resampling.
 */
export const URISC_AUGMENTATION: AugmentationSpec = {
  horizontalFlip: 0.5,
  verticalFlip: 0.5,
  rotate90: true,
  rotation: { maxDegrees: 45, p: 0.3 },
  zoom: [0.8, 1.25],
  translate: 0.1,
  brightness: 0.2,
  contrast: 0.2,
  gamma: [0.8, 1.25],
  border: 'reflect',
};

/** Where the output comes from: a source rectangle resampled to width x height. */
export interface AugmentationTarget {
  /** The source region that the output shows when no geometric augmentation is drawn. */
  readonly region: Rect;
  /** Output size. */
  readonly width: number;
  readonly height: number;
}

/** Concrete augmentation parameters (JSON-serialisable; applying them is deterministic). */
export interface AugmentationParams {
  /** Output continuous coordinates -> source continuous coordinates. */
  readonly transform: Affine;
  readonly width: number;
  readonly height: number;
  readonly border: BorderMode;
  readonly brightness: number;
  readonly contrast: number;
  readonly gamma: number;
  /** 0 = no blur. */
  readonly blurSigma: number;
  /** 0 = no noise. */
  readonly noiseStd: number;
  readonly noiseSeed: number;
}

interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** torchvision RandomResizedCrop.get_params, in continuous coordinates (no rounding). */
function sampleResizedCrop(rng: Rng, w: number, h: number, scale: readonly [number, number], ratio: readonly [number, number]): Box {
  const area = w * h;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
    const cw = Math.sqrt(target * aspect);
    const ch = Math.sqrt(target / aspect);
    if (cw > 0 && ch > 0 && cw <= w && ch <= h) return { x: rng.uniform(0, w - cw), y: rng.uniform(0, h - ch), w: cw, h: ch };
  }
  // Fallback: the largest central crop with the aspect ratio clamped into `ratio`.
  const inRatio = w / h;
  let cw = w;
  let ch = h;
  if (inRatio < ratio[0]) ch = w / ratio[0];
  else if (inRatio > ratio[1]) cw = h * ratio[1];
  return { x: (w - cw) / 2, y: (h - ch) / 2, w: cw, h: ch };
}

function logUniform(rng: Rng, [lo, hi]: readonly [number, number]): number {
  return Math.exp(rng.uniform(Math.log(lo), Math.log(hi)));
}

function jitterFactor(rng: Rng, strength: number | undefined): number {
  return strength ? rng.uniform(Math.max(0, 1 - strength), 1 + strength) : 1;
}

/**
 * Draws concrete augmentation parameters. Same rng state + spec + target -> same parameters.
 *
 * @example
 * const params = sampleAugmentation(new Rng(seed), CEM500K_AUGMENTATION,
 *   { region: { x: 0, y: 0, width: crop.width, height: crop.height }, width: 224, height: 224 });
 */
export function sampleAugmentation(rng: Rng, spec: AugmentationSpec, target: AugmentationTarget): AugmentationParams {
  const { region, width, height } = target;
  const theta = spec.rotation && rng.chance(spec.rotation.p) ? (rng.uniform(-1, 1) * spec.rotation.maxDegrees * Math.PI) / 180 : 0;

  let box: Box = { x: 0, y: 0, w: region.width, h: region.height };
  if (spec.resizedCrop) {
    box = sampleResizedCrop(rng, region.width, region.height, spec.resizedCrop.scale, spec.resizedCrop.ratio);
  } else if (spec.zoom) {
    const z = logUniform(rng, spec.zoom);
    box = { x: (region.width - region.width / z) / 2, y: (region.height - region.height / z) / 2, w: region.width / z, h: region.height / z };
  }
  if (spec.translate) {
    box.x += rng.uniform(-spec.translate, spec.translate) * box.w;
    box.y += rng.uniform(-spec.translate, spec.translate) * box.h;
  }
  const hflip = spec.horizontalFlip ? rng.chance(spec.horizontalFlip) : false;
  const vflip = spec.verticalFlip ? rng.chance(spec.verticalFlip) : false;
  const quarterTurns = spec.rotate90 ? (width === height ? rng.int(4) : 2 * rng.int(2)) : 0;

  const flips: Affine = [hflip ? -1 : 1, 0, hflip ? width : 0, 0, vflip ? -1 : 1, vflip ? height : 0];
  const transform = compose(
    translation(region.x, region.y),
    theta === 0 ? translation(0, 0) : rotationAbout(theta, region.width / 2, region.height / 2),
    translation(box.x, box.y),
    scaling(box.w / width, box.h / height),
    quarterTurns === 0 ? translation(0, 0) : rotationAbout((quarterTurns * Math.PI) / 2, width / 2, height / 2),
    flips,
  );

  const brightness = jitterFactor(rng, spec.brightness);
  const contrast = jitterFactor(rng, spec.contrast);
  const gamma = spec.gamma ? logUniform(rng, spec.gamma) : 1;
  const blurSigma = spec.blur && rng.chance(spec.blur.p) ? rng.uniform(spec.blur.sigma[0], spec.blur.sigma[1]) : 0;
  const noiseStd = spec.noise && rng.chance(spec.noise.p) ? Math.sqrt(rng.uniform(spec.noise.variance[0], spec.noise.variance[1])) : 0;
  const noiseSeed = rng.nextU32();
  return { transform, width, height, border: spec.border ?? 'reflect', brightness, contrast, gamma, blurSigma, noiseStd, noiseSeed };
}

export interface Augmented {
  /** Augmented grey values in [0, 1], width * height. */
  readonly image: Float32Array;
  /** The mask resampled with the same geometry (nearest), if one was given. */
  readonly mask?: Uint8Array;
}

/**
 * Applies sampled parameters to an image (integer images are scaled to [0, 1]) and, with exactly
 * the same geometry, to its mask.
 */
export function applyAugmentation(params: AugmentationParams, image: GreyImage | FloatImage, mask?: Mask): Augmented {
  if (mask !== undefined && (mask.width !== image.width || mask.height !== image.height)) {
    throw new Error(`mask is ${mask.width}x${mask.height} but the image is ${image.width}x${image.height}; they must match`);
  }
  const { width, height } = params;
  const scale = image.data instanceof Float32Array ? 1 : 1 / maxValue((image as GreyImage).bitDepth);
  let out = warpBilinear(image, params, scale);
  adjustBrightnessContrast(out, params.brightness, params.contrast);
  adjustGamma(out, params.gamma);
  if (params.blurSigma > 0) out = gaussianBlur(out, width, height, params.blurSigma);
  if (params.noiseStd > 0) addGaussianNoise(out, params.noiseStd, new Rng(params.noiseSeed));
  if (mask === undefined) return { image: out };
  return { image: out, mask: warpNearest(mask, params) };
}

/**
 * `views` independently augmented copies of one image (MoCo: two views of a crop, the query and
 * the key). View v uses `new Rng(seeds[v])`, so each view is reproducible on its own.
 */
export function augmentedViews(image: GreyImage | FloatImage, seeds: readonly number[], spec: AugmentationSpec, size: number): Float32Array[] {
  const target = { region: { x: 0, y: 0, width: image.width, height: image.height }, width: size, height: size };
  return seeds.map((seed) => applyAugmentation(sampleAugmentation(new Rng(seed), spec, target), image).image);
}
