/**
 * A linear segmentation probe: is pretraining producing features that separate membranes?
 *
 * Every N steps the current (frozen) query encoder embeds a few labelled patches; the stride-2, -4
 * and -8 feature maps are upsampled to full resolution and concatenated, a per-pixel logistic
 * regression (a 1x1 conv) is fitted on the training patches, and its best-threshold F1 on the
 * validation patches is logged. Cheap enough to run during pretraining, long before fine-tuning.
 */
import { existsSync } from 'node:fs';
import { tf, type Scalar, type Tensor, type Tensor4D, type Variable } from '@emseg/tf';
import { DataError, LabeledImages, cutRegion, foregroundShare, toFloatImage, uriscDirectories, type LabeledSample } from '@emseg/data';
import { bestThresholdF1 } from '@emseg/evaluation';
import type { Encoder } from '@emseg/models';
import { Adam, trainStep } from '@emseg/training';

export interface ProbeData {
  train: { images: Tensor4D; masks: Tensor4D };
  val: { images: Tensor4D; masks: Tensor4D };
}

export interface ProbeResult {
  f1: number;
  threshold: number;
  precision: number;
  recall: number;
}

/**
 * `max` non-overlapping `size` patches, spread evenly over the grid positions of all samples
 * (image after image, row by row; every k-th one, so a handful of patches still sees every image
 * and every part of it, not one strip of the first), images normalised, masks 0/1.
 */
function patches(samples: LabeledSample[], size: number, max: number, norm: { mean: number; std: number }): { images: Tensor4D; masks: Tensor4D } {
  const grid: { s: number; x: number; y: number }[] = [];
  samples.forEach((sample, s) => {
    for (let y = 0; y + size <= sample.image.height; y += size) for (let x = 0; x + size <= sample.image.width; x += size) grid.push({ s, x, y });
  });
  const picked = grid.length <= max ? grid : Array.from({ length: max }, (_, i) => grid[Math.floor(((i + 0.5) * grid.length) / max)]);
  const imgs: Float32Array[] = [];
  const masks: Float32Array[] = [];
  const floats = new Map<number, ReturnType<typeof toFloatImage>>();
  for (const { s, x, y } of picked) {
    const sample = samples[s];
    let img = floats.get(s);
    if (img === undefined) floats.set(s, (img = toFloatImage(sample.image)));
    const rect = { x, y, width: size, height: size };
    imgs.push(cutRegion(img.data, img.width, img.height, rect).map((v) => (v - norm.mean) / norm.std));
    masks.push(Float32Array.from(cutRegion(sample.mask.data, sample.mask.width, sample.mask.height, rect)));
  }
  if (imgs.length === 0) throw new Error(`probe images are smaller than probe.patchSize ${size}`);
  const stack = (xs: Float32Array[]) => {
    const out = new Float32Array(xs.length * size * size);
    xs.forEach((x, i) => out.set(x, i * size * size));
    return tf.tensor4d(out, [xs.length, size, size, 1]);
  };
  return { images: stack(imgs), masks: stack(masks) };
}

/**
 * Loads probe data from a U-RISC-layout folder (`imgs/<track>/{train,val}`, `label/<track>/...`):
 * fit on train, score on val (or on the second half of train when there is no val split).
 */
/**
 * A probe fitted on an empty (or all-membrane) label learns nothing and scores a meaningless F1:
 * refuse such labels, naming the file. (The probe reads U-RISC labels: membrane black on white.)
 */
async function checkProbeLabels(images: LabeledImages): Promise<void> {
  for (let i = 0; i < images.size; i++) {
    const { histogram, threshold } = await images.readLabel(i);
    const fraction = foregroundShare(histogram, images.polarity, threshold);
    if (fraction === 0 || fraction === 1) {
      throw new DataError(
        images.pairs[i].label,
        `${fraction === 0 ? 'no pixel is' : 'every pixel is'} membrane when read as ${images.polarity} (threshold ${threshold})`,
        'a --probe folder of U-RISC-layout labels with some membrane drawn black on white',
      );
    }
  }
}

export async function loadProbeData(
  dir: string,
  opts: { patchSize: number; mean: number; std: number; track?: string; maxPatches?: number },
): Promise<ProbeData> {
  const track = opts.track ?? 'Track1';
  const train = await LabeledImages.open(uriscDirectories(dir, 'train', track));
  const valDirs = uriscDirectories(dir, 'val', track);
  let fit = train;
  let score: LabeledImages;
  if (existsSync(valDirs.images)) {
    score = await LabeledImages.open(valDirs);
  } else {
    const parts = train.split(0.5, 0);
    fit = parts.train;
    score = parts.validation;
  }
  await checkProbeLabels(fit);
  await checkProbeLabels(score);
  const max = opts.maxPatches ?? 8;
  const norm = { mean: opts.mean, std: opts.std };
  return {
    train: patches(await fit.loadAll(), opts.patchSize, max, norm),
    val: patches(await score.loadAll(), opts.patchSize, max, norm),
  };
}

/** Stride-2/4/8 features of a batch, upsampled to its size and concatenated: [n, h, w, c]. */
function pixelFeatures(encoder: Encoder, x: Tensor4D): Tensor4D {
  return tf.tidy(() => {
    const [, h, w] = x.shape;
    const maps = encoder.features(x, { training: false }).slice(0, 3);
    return tf.concat(
      maps.map((m) => tf.image.resizeBilinear(m, [h, w])),
      3,
    ) as Tensor4D;
  });
}

/** The probe's threshold sweep: 0.01, 0.02, ..., 0.99. */
const PROBE_THRESHOLDS: readonly number[] = Array.from({ length: 99 }, (_, k) => (k + 1) / 100);

/** Fits the probe on the train patches and scores it on the val patches. Frees everything. */
export function runProbe(encoder: Encoder, data: ProbeData, { steps = 60, lr = 0.05 } = {}): ProbeResult {
  const trainX = pixelFeatures(encoder, data.train.images);
  const valX = pixelFeatures(encoder, data.val.images);
  const channels = trainX.shape[3];
  const init = { w: tf.zeros([1, 1, channels, 1]), b: tf.zeros([1]) };
  const vars: Record<string, Variable> = { w: tf.variable(init.w), b: tf.variable(init.b) };
  tf.dispose([init.w, init.b]);
  const optimizer = new Adam();
  // Standardise features (statistics of the training patches) so one learning rate fits all.
  const { mean, variance } = tf.moments(trainX, [0, 1, 2]);
  const std = tf.tidy(() => variance.sqrt().add(1e-6));
  const standardise = (x: Tensor4D) => x.sub(mean).div(std) as Tensor4D;
  const logits = (x: Tensor4D) => tf.conv2d(standardise(x), vars.w as unknown as Tensor4D, 1, 'same').add(vars.b) as Tensor4D;
  try {
    // Membranes are a few percent of pixels: weight positives by the class ratio.
    const p = tf.tidy(() => data.train.masks.mean().dataSync()[0]);
    const posWeight = Math.min(50, (1 - p) / Math.max(p, 1e-6));
    const y = data.train.masks;
    for (let i = 0; i < steps; i++) {
      trainStep(
        vars,
        () => {
          const z = logits(trainX);
          // Weighted BCE with logits, numerically stable.
          const bce = tf
            .relu(z)
            .sub(z.mul(y))
            .add(tf.log1p(tf.exp(z.abs().neg())));
          return bce.mul(y.mul(posWeight - 1).add(1)).mean() as Scalar;
        },
        optimizer,
        lr,
      );
    }
    const prob = tf.tidy(() => tf.sigmoid(logits(valX)));
    const probs = prob.dataSync() as Float32Array;
    const truth = Uint8Array.from(data.val.masks.dataSync());
    const [n, h, w] = prob.shape;
    prob.dispose();
    // A fine sweep over (0, 1): the class-weighted fit puts its best threshold high, often above 0.95.
    const sweep = bestThresholdF1({ width: w, height: h * n, data: probs }, { width: w, height: h * n, data: truth }, PROBE_THRESHOLDS);
    return { f1: sweep.best.f1, threshold: sweep.best.threshold, precision: sweep.best.precision, recall: sweep.best.recall };
  } finally {
    tf.dispose([trainX, valX, vars.w, vars.b, mean, variance, std] as Tensor[]);
    optimizer.dispose();
  }
}

export function disposeProbeData(data: ProbeData): void {
  tf.dispose([data.train.images, data.train.masks, data.val.images, data.val.masks]);
}
