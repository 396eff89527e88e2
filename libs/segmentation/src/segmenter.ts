/**
 * The segmenter: a U-Net over an encoder (any registered architecture, see @emseg/models
 * `listEncoders`) plus the input normalisation it was trained with, so callers feed grey values in [0, 1]. Saved as a model directory (the checkpoint format of
 * @emseg/training: `manifest.json` with a `SegmenterInfo` state, `tensors.bin` with every weight by
 * name, BN statistics included) that `predict` and colleagues load without the training config.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tf, type Tensor, type Tensor4D, type Variable } from '@emseg/tf';
import { assignWeights, createEncoder, modelVariables, normalizeInput, unet, type Encoder, type Normalization, type UNet } from '@emseg/models';
import { latestCheckpoint, loadCheckpoint, saveCheckpoint } from '@emseg/training';
import type { InferenceOptions } from './inference.js';

/** What a saved model is; the state of its manifest.json. */
export interface SegmenterInfo {
  kind: 'emseg-unet';
  /** The encoder's registered name (`createEncoder(architecture)` rebuilds it). */
  architecture: string;
  inChannels: number;
  decoderChannels: number[];
  normalization: Normalization;
  /** The threshold the model was validated with (the binary submission's default). */
  threshold: number;
  /** The tiling it was validated with (predict's defaults). */
  inference: InferenceOptions;
  /** Where the encoder came from: 'random', a bundle directory or a runs:/ URI. */
  encoderSource: string;
  /** The MLflow run that produced the encoder, if known. */
  encoderRunId: string | null;
  /** Training step the weights are from, and their validation F1 (null if never validated). */
  step: number;
  valF1: number | null;
  /** MLflow run of the fine-tuning, if tracked. */
  mlflowRunId: string | null;
  /**
   * The task it was trained for (SegmentationTask.name: 'urisc', 'iou', ...) and the metric of
   * `valScore`, its validation score; absent in models saved before tasks had their own metric.
   */
  task?: string;
  metric?: string;
  valScore?: number | null;
  /**
   * A multi-class model: its classes by output channel (index 0 the background), each with the label
   * value masks use for it. Absent: a binary model with one foreground logit.
   */
  classes?: ClassEntry[];
}

/** One class of a multi-class model: its name and the label value that marks it in masks. */
export interface ClassEntry {
  value: number;
  name: string;
}

export type SegmenterSource = Pick<SegmenterInfo, 'encoderSource' | 'encoderRunId'>;

/** Flip sets of test-time augmentation: axes of [n, h, w, c] reversed (none, width, height, both). */
const FLIPS: readonly (readonly number[])[] = [[], [2], [1], [1, 2]];

export class Segmenter {
  constructor(
    readonly net: UNet,
    readonly normalization: Normalization,
    readonly source: SegmenterSource,
    /** The classes of a multi-class model by output channel; null for a binary one. */
    readonly classMap: readonly ClassEntry[] | null = null,
  ) {
    const expected = classMap === null ? 1 : classMap.length;
    if (net.classes !== expected)
      throw new Error(`a U-Net with ${net.classes} output(s) cannot segment ${classMap === null ? 'a binary task' : `${expected} classes`}`);
    if (classMap !== null && classMap.length < 2) throw new Error(`a multi-class model needs at least 2 classes, got ${classMap.length}`);
  }

  /**
   * A U-Net over `encoder` (its layers are shared, not copied), decoder initialised from `seed`.
   *
   * @example const seg = Segmenter.create(resnetEncoder({ depth: 18, seed: 1 }), { mean: [0.5], std: [0.2] }, { encoderSource: 'random', encoderRunId: null });
   */
  static create(
    encoder: Encoder,
    normalization: Normalization,
    source: SegmenterSource,
    options: { decoderChannels?: readonly number[]; seed?: number; classes?: readonly ClassEntry[] | null } = {},
  ): Segmenter {
    const classMap = options.classes ?? null;
    const net = unet({ encoder, decoderChannels: options.decoderChannels, seed: options.seed, classes: classMap === null ? 1 : classMap.length });
    return new Segmenter(net, normalization, source, classMap);
  }

  get architecture(): string {
    return this.net.encoder.architecture;
  }

  /** Output channels: 1 (binary foreground logit) or the number of classes. */
  get classes(): number {
    return this.net.classes;
  }

  /** Logits [b, h, w, classes] of grey images [b, h, w, 1] in [0, 1] (normalised here). */
  forward(images: Tensor4D, training: boolean): Tensor4D {
    return tf.tidy(() => this.net.forward(normalizeInput(images, this.normalization), { training }));
  }

  /**
   * Foreground probabilities of `count` tiles of `size` pixels (square) or `[height, width]`
   * (row-major floats in [0, 1], tile after tile), in the same layout; a multi-class model gives
   * its softmax class probabilities, `classes` values per pixel. `flipTta` averages the four
   * flips (identity, horizontal, vertical, both), each prediction flipped back first.
   */
  probabilities(tiles: Float32Array, count: number, size: number | readonly [number, number], flipTta: boolean): Float32Array {
    const [height, width] = typeof size === 'number' ? [size, size] : size;
    if (tiles.length !== count * height * width) throw new Error(`probabilities: ${tiles.length} values are not ${count} tiles of ${height} x ${width}`);
    const out = tf.tidy(() => {
      const x = tf.tensor4d(tiles, [count, height, width, 1]);
      const flips = flipTta ? FLIPS : FLIPS.slice(0, 1);
      let sum: Tensor | null = null;
      for (const axes of flips) {
        const input = axes.length ? tf.reverse(x, [...axes]) : x;
        const logits = this.forward(input, false);
        let p: Tensor = this.classMap === null ? tf.sigmoid(logits) : tf.softmax(logits);
        if (axes.length) p = tf.reverse(p, [...axes]);
        sum = sum === null ? p : sum.add(p);
      }
      return (sum as Tensor).div(flips.length);
    });
    try {
      return out.dataSync() as Float32Array;
    } finally {
      out.dispose();
    }
  }

  /** Every weight by name, BN running statistics included. */
  variables(): Record<string, Variable> {
    return modelVariables(this.net.model);
  }

  /** The model description stored with the weights. */
  info(extra: Pick<SegmenterInfo, 'threshold' | 'inference' | 'step' | 'valF1' | 'mlflowRunId' | 'task' | 'metric' | 'valScore'>): SegmenterInfo {
    return {
      kind: 'emseg-unet',
      architecture: this.architecture,
      inChannels: this.net.encoder.inChannels,
      decoderChannels: [...this.net.decoderChannels],
      normalization: this.normalization,
      ...this.source,
      ...extra,
      ...(this.classMap === null ? {} : { classes: this.classMap.map((c) => ({ ...c })) }),
    };
  }

  /**
   * Saves the weights as the single model under `root` (`root/step-<n>/`, written atomically; older
   * ones removed). Returns the model directory.
   */
  save(root: string, info: SegmenterInfo): Promise<string> {
    return saveCheckpoint(root, info.step, this.variables(), info, { keep: 1 });
  }

  /**
   * Loads a saved model: a model directory (with manifest.json: `best/step-<n>`, `final/step-<n>`
   * or a training checkpoint `checkpoints/step-<n>`), a root holding one (`best/`, `checkpoints/`),
   * or a fine-tuning run directory (its `best/` model).
   */
  static load(path: string): Segmenter {
    const dir = resolveModelDir(path);
    const ck = loadCheckpoint<SegmenterInfo | { model?: SegmenterInfo; architecture?: string }>(dir);
    try {
      // A model's state is its SegmenterInfo; a training checkpoint's carries it as `model` and
      // stores the weights as `model/<name>` beside the optimizer's slots.
      const training = ck.state && 'kind' in ck.state ? null : (ck.state as { model?: SegmenterInfo; architecture?: string });
      const info = training ? training.model : (ck.state as SegmenterInfo);
      if (training && training.architecture && !info) {
        throw new Error(
          `${dir} is a training checkpoint written by an older emseg, without the model description predict needs; use the run's best/ model or resume the run once to write a new checkpoint`,
        );
      }
      if (info?.kind !== 'emseg-unet')
        throw new Error(
          `${dir}/manifest.json is not an emseg U-Net model (state.kind ${JSON.stringify(info?.kind)}); expected a model saved by finetune (its best/, final/ or checkpoints/step-<n> directory)`,
        );
      if (training) {
        for (const name of Object.keys(ck.tensors)) {
          const t = ck.tensors[name]!;
          delete ck.tensors[name];
          if (name.startsWith('model/')) ck.tensors[name.slice('model/'.length)] = t;
          else t.dispose();
        }
      }
      let encoder: Encoder;
      try {
        encoder = createEncoder(info.architecture, { inChannels: info.inChannels, initialize: false });
      } catch (err) {
        throw new Error(`model ${dir}: ${(err as Error).message}`);
      }
      let seg: Segmenter;
      try {
        seg = Segmenter.create(
          encoder,
          info.normalization,
          { encoderSource: info.encoderSource, encoderRunId: info.encoderRunId },
          { decoderChannels: info.decoderChannels, classes: info.classes ?? null },
        );
      } catch (err) {
        encoder.dispose();
        throw err;
      }
      try {
        assignWeights(seg.net.model, ck.tensors, `model ${dir}`);
      } catch (err) {
        seg.dispose();
        throw err;
      }
      seg.loadedInfo = info;
      return seg;
    } finally {
      tf.dispose(Object.values(ck.tensors));
    }
  }

  /** The info a loaded model was saved with (undefined for a fresh one). */
  loadedInfo: SegmenterInfo | undefined;

  dispose(): void {
    this.net.dispose();
  }
}

/** A model directory from a path that is one, holds one, or is a run directory with `best/`. */
export function resolveModelDir(path: string): string {
  if (existsSync(join(path, 'manifest.json'))) return path;
  for (const root of [join(path, 'best'), path]) {
    const dir = latestCheckpoint(root);
    if (dir !== null) return dir;
  }
  throw new Error(
    `${path} holds no saved model: expected a model directory (manifest.json + tensors.bin), its parent (e.g. <run>/best) or a fine-tuning run directory`,
  );
}
