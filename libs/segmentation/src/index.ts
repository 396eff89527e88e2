export { schemaParts, segmentationConfigProblems, segmentationSchemaSections } from './config.js';
export type { SegmentationConfig } from './config.js';
export { chooseThreshold, evaluateSegmenter, foregroundMeans } from './evaluate.js';
export type { ClassEvaluation, EvaluateOptions, Evaluation, ImageEvaluation, ThresholdScore } from './evaluate.js';
export { batchesPerEpoch, finetune, inferenceOptions, learningRateSchedule } from './finetune.js';
export type { BestModel, FinetuneListener, FinetuneOptions, FinetuneResult, StepMetrics } from './finetune.js';
export {
  argmaxClasses,
  checkTileFits,
  fittingTiling,
  inferenceProblem,
  predictImage,
  PredictionStopped,
  TILE_MULTIPLE,
  tileCount,
  toProbability16,
} from './inference.js';
export type { InferenceOptions } from './inference.js';
export { centreCrop, overlayPng } from './overlay.js';
export { resolveModelDir, Segmenter } from './segmenter.js';
export type { ClassEntry, SegmenterInfo, SegmenterSource } from './segmenter.js';
export { classesTask, iouTask, pixelTask } from './task.js';
export type { BinaryScore, PredictedSample, SegmentationTask } from './task.js';
export { predictPlane, predictStack, stripHeight } from './stack-inference.js';
export type { PlaneAxis, StackMode, StackPrediction, StackPredictOptions } from './stack-inference.js';
export { blockAt, doneMarkerPath, inputRegion, isBlockDone, jobFolder, planBlocks, predictBlock, shardIndices, writeDoneMarker } from './blocks.js';
export type { Block, BlockPlan, BlockPredictOptions, BlockResult, Region } from './blocks.js';
export {
  blockwiseInstances,
  labelBlockPass1,
  mergeBlockLabels,
  openInstanceLabels,
  prepareInstanceJob,
  probabilityLevel,
  readMerge,
  relabelBlock,
} from './block-instances.js';
export type { BlockInstanceOptions, BlockLabelRecord, BlockwiseInstancesResult, InstanceJob, MergeResult } from './block-instances.js';
