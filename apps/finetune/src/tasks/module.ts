/**
 * A fine-tuning task module: what one training command (`urisc`, `segment`) knows that the shared
 * run (train-run.ts: run folder, MLflow, encoder, the training loop, best model, summary) does not.
 * A new task is one file implementing this plus a command in main.ts.
 */
import type { Schema } from '@emseg/config';
import type { LabeledImages, LabeledSample } from '@emseg/data';
import type { ClassEntry, SegmentationConfig, SegmentationTask } from '@emseg/segmentation';

/** The labelled data of one run. */
export interface TaskData {
  /** Resolved data root (an MLflow param and the datasets' source). */
  root: string;
  /** Dataset name stem for MLflow inputs (`<name>-train`, ...), lower case. */
  datasetName: string;
  /** How the run describes the data in MLflow ("U-RISC Track1 at /data/urisc"). */
  description: string;
  train: LabeledImages;
  validation: LabeledImages;
  /** Where the validation images come from: the data's val split, or held out of train. */
  validationSource: 'val' | 'holdout';
  /** The test split, when its images and labels are both present. */
  test: LabeledImages | null;
}

/** The test split's scores with the saved model. */
export interface TestReport {
  /** MLflow metrics (`test_<name>`). */
  metrics: Record<string, number>;
  /** Summary lines (aligned like the others: `test F1:        ...`). */
  lines: string[];
  /** Things the user must see (rejected predictions). */
  warnings: string[];
}

/** `D`: what the module's data carry beyond TaskData (e.g. instance label files). */
export interface FinetuneTaskModule<C extends SegmentationConfig, D extends TaskData = TaskData> {
  /** The command name and the run tag `emseg.task`. */
  readonly name: string;
  readonly schema: Schema<C>;
  /** Cross-field checks; throws naming the fields and `source`. */
  check(cfg: C, source: string): void;
  /** The embedded synthetic data's root when --data is not given (may set the config's data keys to fit it). */
  embeddedData(cfg: C, log: (message: string) => void): Promise<string>;
  /** Opens and checks the data; every problem names its file. */
  open(root: string, cfg: C): Promise<D>;
  /** Decodes the training images (after the size and label checks). */
  loadTraining(data: D, cfg: C): Promise<LabeledSample[]>;
  /** The classes of a multi-class model by output channel (background first); absent or null: binary. */
  classes?(cfg: C): ClassEntry[] | null;
  /** What validation checks and scores, and best-model selection compares. */
  validationTask(cfg: C, data: D): SegmentationTask;
  /**
   * Predicts the test split with the model in `modelDir` at `threshold` into `outDir/predictions/test`,
   * scores it into `outDir/scores/test.*`; null (with a log line) when the split cannot be scored.
   */
  test(modelDir: string, data: D, cfg: C, outDir: string, log: (message: string) => void): Promise<TestReport | null>;
}
