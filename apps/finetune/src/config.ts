/**
 * The U-Net fine-tuning configuration. Every number of the U-RISC recipe (DESIGN.md section 4) is a
 * key here: `configs/finetune/track1.json` / `track2.json` are the paper's setup, `quick.json` runs
 * on the embedded synthetic data on 2 CPU cores in minutes.
 */
import type { Schema } from '@emseg/config';
import type { LabelPolarity } from '@emseg/data';
import { schemaParts, segmentationConfigProblems, segmentationSchemaSections, type ClassEntry, type SegmentationConfig } from '@emseg/segmentation';

const { int, positive, section } = schemaParts;

/** The U-RISC fine-tuning: the generic segmentation sections plus where and how to read the data. */
export interface FinetuneConfig extends SegmentationConfig {
  data: {
    /** U-RISC track directory name under imgs/ and label/ (Track1: 9958 x 9959, Track2: 1024 x 1024). */
    track: string;
    /** U-RISC labels draw membrane black: 'black-foreground'. */
    polarity: LabelPolarity;
    /** Label values below it are black (U-RISC labels are not always clean binary). */
    labelThreshold: number;
    /** Validation images held out of train when the release has no val split (count, or fraction < 1). */
    holdout: number;
    /** A training label with more membrane than this fraction means the polarity guess is wrong. */
    maxMembraneFraction: number;
  };
}

export const finetuneSchema: Schema<FinetuneConfig> = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'data', 'patches', 'loss', 'optimizer', 'train', 'validation', 'inference'],
  properties: {
    ...segmentationSchemaSections,
    data: section(['track', 'polarity', 'labelThreshold', 'holdout', 'maxMembraneFraction'], {
      track: { type: 'string', minLength: 1 },
      polarity: { type: 'string', enum: ['black-foreground', 'white-foreground'] },
      labelThreshold: int(1, { maximum: 255 }),
      holdout: positive,
      maxMembraneFraction: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    }),
  },
};

/** Cross-field checks JSON Schema cannot express; messages name the fields. */
export function checkFinetuneConfig(cfg: FinetuneConfig, source: string): void {
  if (cfg.loss.kind === 'ce-dice') {
    throw new Error(
      `${source}: invalid configuration\n  - loss.kind "ce-dice" is the multi-class loss; U-RISC membranes are binary: use "focal-dice" (the paper's) or "bce"`,
    );
  }
  checkWithHoldout(cfg, source);
}

/** The generic checks plus data.holdout's (a count or a fraction); throws listing every problem. */
function checkWithHoldout(cfg: SegmentationConfig & { data: { holdout: number } }, source: string): void {
  const problems = segmentationConfigProblems(cfg);
  if (cfg.data.holdout >= 1 && !Number.isInteger(cfg.data.holdout)) {
    problems.push(`data.holdout must be a count of images (an integer >= 1) or a fraction in (0, 1), got ${cfg.data.holdout}`);
  }
  if (problems.length) throw new Error(`${source}: invalid configuration\n${problems.map((p) => `  - ${p}`).join('\n')}`);
}

/** Fine-tuning on a generic labelled layout (`segment`): the generic sections plus how to read the masks. */
export interface SegmentConfig extends SegmentationConfig {
  data: {
    /** Which side of labelThreshold is foreground: 'white-foreground' (mitochondria masks) or 'black-foreground'. */
    polarity: LabelPolarity;
    /** Mask values at or above it are white. */
    labelThreshold: number;
    /** Validation images held out of train when the data has no val split (count, or fraction < 1). */
    holdout: number;
    /** A training mask with more foreground than this fraction is read with the wrong polarity or threshold. */
    maxForegroundFraction: number;
    /**
     * A multi-class task (null: binary): the class of each mask value, `{"0": "background", "128":
     * "mitochondria", "255": "membrane"}`. The lowest value is the background; the others are the
     * classes scored (mean IoU of them selects the model). Polarity and labelThreshold do not apply;
     * a mask value outside the map is an error. Needs loss.kind "ce-dice".
     */
    classes: Record<string, string> | null;
  };
  /**
   * An instance task (null: semantic): the binary prediction becomes instances, scored by panoptic
   * quality against 16-bit instance labels in `instances/` beside `masks/` (0 = background); the
   * model is selected by PQ. 'components': connected components; 'watershed': touching objects split
   * by a seeded watershed on the distance transform (seeds at least minDistance apart).
   */
  /**
   * What validation and selection compare for a semantic task: 'iou' (foreground IoU, CEM500K's
   * benchmarks) or 'vrand' (ISBI 2012's foreground-restricted Rand score of the cells the predicted
   * membranes enclose; foreground must be the membrane). Instance tasks use PQ.
   */
  metric: 'iou' | 'vrand';
  instances: {
    method: 'components' | 'watershed';
    /** 4 or 8 (2D). */
    connectivity: 4 | 8;
    /** Instances of fewer pixels are dropped. */
    minSize: number;
    /** Watershed: the least distance between two seeds, in pixels. */
    minDistance: number;
  } | null;
}

export const segmentSchema: Schema<SegmentConfig> = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'data', 'patches', 'loss', 'optimizer', 'train', 'validation', 'inference'],
  properties: {
    ...segmentationSchemaSections,
    data: section(['polarity', 'labelThreshold', 'holdout', 'maxForegroundFraction'], {
      polarity: { type: 'string', enum: ['black-foreground', 'white-foreground'] },
      labelThreshold: int(1, { maximum: 255 }),
      holdout: positive,
      maxForegroundFraction: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
      classes: {
        type: 'object',
        nullable: true,
        default: null,
        minProperties: 2,
        propertyNames: { pattern: '^(0|[1-9][0-9]?|1[0-9][0-9]|2[0-4][0-9]|25[0-5])$' },
        additionalProperties: { type: 'string', minLength: 1 },
      },
    }),
    metric: { type: 'string', enum: ['iou', 'vrand'], default: 'iou' },
    instances: {
      ...section(['method', 'connectivity', 'minSize', 'minDistance'], {
        method: { type: 'string', enum: ['components', 'watershed'] },
        connectivity: { type: 'integer', enum: [4, 8] },
        minSize: int(1),
        minDistance: int(1),
      }),
      nullable: true,
      default: null,
    },
  },
};

/** Cross-field checks of a `segment` config; messages name the fields. */
export function checkSegmentConfig(cfg: SegmentConfig, source: string): void {
  if (cfg.data.classes !== null) {
    const problems: string[] = [];
    const names = Object.values(cfg.data.classes);
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice !== undefined) problems.push(`data.classes names "${twice}" twice; every class needs its own name`);
    if (cfg.loss.kind !== 'ce-dice')
      problems.push(`data.classes makes a multi-class task, which needs loss.kind "ce-dice" (softmax cross-entropy + Dice), not "${cfg.loss.kind}"`);
    if (cfg.instances !== null) problems.push('instances needs a binary task (data.classes null): instances are cut from one foreground');
    if (cfg.metric !== 'iou')
      problems.push(`metric "${cfg.metric}" needs a binary task; a multi-class one is scored by the mean IoU of its classes (metric "iou")`);
    if (problems.length) throw new Error(`${source}: invalid configuration\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  } else if (cfg.loss.kind === 'ce-dice') {
    throw new Error(
      `${source}: invalid configuration\n  - loss.kind "ce-dice" is the multi-class loss; set data.classes (a class map {value: name}) or use "focal-dice"`,
    );
  }
  checkWithHoldout(cfg, source);
}

/** The classes of a multi-class config by class index (ascending label value; the lowest is the background), or null. */
export function classEntries(cfg: SegmentConfig): ClassEntry[] | null {
  if (cfg.data.classes === null) return null;
  return Object.entries(cfg.data.classes)
    .map(([value, name]) => ({ value: Number(value), name }))
    .sort((a, b) => a.value - b.value);
}
