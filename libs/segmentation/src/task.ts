/**
 * A segmentation task is what the generic core (segmenter, tiled inference, the fine-tuning loop,
 * validation) cannot know: which validation data it can score, and how one binary prediction is
 * scored. Validation reports that score and best-model selection compares it (then the
 * threshold-sweep F1). U-RISC (its official F1 and submission rules) is one task module of
 * apps/finetune; {@link pixelTask} (pixel F1) and {@link iouTask} (foreground IoU) are the plain scores any binary task starts from.
 */
import type { LabeledImages, LabeledPair, LabeledSample } from '@emseg/data';
import { pixelScores } from '@emseg/evaluation';

/** The task's score of one binary prediction. */
export interface BinaryScore {
  /** The task's metric (SegmentationTask.metric), which threshold choice and best-model selection compare. */
  score: number;
  f1: number;
  precision: number;
  recall: number;
  /** Why the task's rules reject the prediction (it then scores F1 0), or null. */
  rejected: string | null;
}

/** One validation image, predicted. */
export interface PredictedSample {
  /** The set it belongs to (its polarity, label threshold). */
  images: LabeledImages;
  pair: LabeledPair;
  sample: LabeledSample;
  /** Foreground probability per pixel (row-major, sample.image's size). */
  probability: Float32Array;
  /** 1 where probability >= threshold, else 0. */
  binary: Uint8Array;
  threshold: number;
}

export interface SegmentationTask {
  /** A short id for logs and run tags ('urisc', 'pixel'). */
  readonly name: string;
  /**
   * What BinaryScore.score is, for logs and metric names: 'f1' (U-RISC's official F1, pixel F1),
   * 'iou', 'pq' (panoptic quality of instances), 'vrand' (ISBI 2012 V-Rand) or 'miou' (multi-class:
   * the mean IoU of the foreground classes, scored from the class map by evaluateSegmenter).
   */
  readonly metric: 'f1' | 'iou' | 'pq' | 'vrand' | 'miou';
  /** Refuses a validation sample the task cannot score, naming its file; called before it is predicted. */
  checkSample?(pair: LabeledPair, sample: LabeledSample, images: LabeledImages): void;
  /** The score of the binary prediction at the validation threshold. */
  scoreImage(predicted: PredictedSample): BinaryScore | Promise<BinaryScore>;
}

/** Pixel F1 / precision / recall of the foreground, with no format rules. */
export const pixelTask: SegmentationTask = {
  name: 'pixel',
  metric: 'f1',
  scoreImage: ({ binary, sample }) => {
    const s = pixelScores({ width: sample.mask.width, height: sample.mask.height, data: binary }, sample.mask);
    return { score: s.f1, f1: s.f1, precision: s.precision, recall: s.recall, rejected: null };
  },
};

/** Foreground IoU (Jaccard), the metric of CEM500K's benchmarks; F1 (Dice), precision and recall beside it. */
export const iouTask: SegmentationTask = {
  name: 'iou',
  metric: 'iou',
  scoreImage: ({ binary, sample }) => {
    const s = pixelScores({ width: sample.mask.width, height: sample.mask.height, data: binary }, sample.mask);
    return { score: s.iou, f1: s.f1, precision: s.precision, recall: s.recall, rejected: null };
  },
};

/**
 * A multi-class task: validation scores the predicted class map (argmax of the class
 * probabilities) by the mean IoU of the foreground classes (classes 1..C-1, those present in the
 * image's truth or prediction; an image with none scores 1), with the mean Dice, precision and
 * recall beside it; per-class IoU and Dice over all validation pixels go to Evaluation.classes.
 * Its `scoreImage` scores the union of the foreground classes as one binary foreground.
 */
export const classesTask: SegmentationTask = {
  name: 'classes',
  metric: 'miou',
  scoreImage: iouTask.scoreImage,
};
