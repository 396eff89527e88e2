/**
 * @emseg/evaluation: segmentation metrics for EM membranes, pure TypeScript (no TensorFlow).
 * Everything operates on typed arrays with width/height (see `image.ts`), so predictions can be
 * scored in memory; `readGrey8`, `uriscFolderScore` and `scoreFiles` read files with sharp.
 */
export {
  assertImage,
  assertSameSize,
  cellMaskFromGrey,
  complementProbability,
  EvaluationInputError,
  image,
  membraneMaskFromGrey,
  probabilityFromGrey,
} from './image.js';
export type { GreyImage, Image2D, Mask, PixelArray, ProbabilityMap } from './image.js';

export { checkUriscPrediction, URISC_MIN_BACKGROUND_RATIO, uriscF1, UriscFormatError, uriscPrf } from './urisc-f1.js';
export type { UriscNames, UriscScore } from './urisc-f1.js';
export { rejectionReport, uriscF1OrRejected, uriscFileScore, uriscFolderScore } from './urisc-folder.js';
export type { UriscFolderScore, UriscImageScore, UriscResult } from './urisc-folder.js';
export { IMAGE_EXTENSIONS, pairImageFolders } from './pairing.js';
export type { ImagePair, PairingOptions } from './pairing.js';
export { decodeGrey8, readGrey8 } from './read-grey.js';

export { bestThresholdF1, defaultThresholds, pixelScores, scoresFromCounts, thresholdMap, thresholdScores } from './pixel-scores.js';
export type { PixelScores, ThresholdPoint, ThresholdSweep } from './pixel-scores.js';

export { isbiBinaryScores, isbiRandError, isbiScores, isbiSliceScores, isbiThresholds } from './isbi.js';
export type { IsbiOptions, IsbiScores, IsbiSlice, IsbiSliceScores, IsbiThresholdScores } from './isbi.js';
export { foregroundContingency, infoScores, randScores } from './contingency.js';
export type { Contingency, InfoScores, RandScores } from './contingency.js';
export { labelComponents4, runComponents } from './components.js';
export type { RunComponents } from './components.js';
export type { Connectivity, MaskVolume } from './components.js';
export { skeletonize } from './skeletonize.js';
export { adaptedRandError, variationOfInformation } from './label-metrics.js';
export type { AdaptedRandResult, LabelImage, VariationOfInformationResult } from './label-metrics.js';

export { edt, forEachRowSquaredDistance } from './edt.js';
export { squaredEdt } from './edt.js';
export { assd, surfaceMask } from './assd.js';
export type { AssdOptions, AssdResult } from './assd.js';

export { definitionCriteria } from './definition.js';
export type { DefinitionCriteria } from './definition.js';

export { METRICS, PROTOCOLS, scoreFiles } from './score-files.js';
export type { ImageResult, MetricName, Protocol, ScoreFilesOptions, ScoreFilesResult, ScoreSummary } from './score-files.js';
export { definitionTable, renderTable, scoreTable } from './report.js';

export { classScores, pooledClassScores } from './class-metrics.js';
export { scoreClassFiles } from './class-folder.js';
export type { ClassFilesOptions, ClassFilesResult, ClassImageResult } from './class-folder.js';
export type { ClassMap, ClassScore, ClassScoreOptions, ClassScores } from './class-metrics.js';
export {
  assertInstanceLabels,
  assertSameShape,
  detectionScores,
  instanceOverlaps,
  instanceScores,
  matchInstances,
  panopticQuality,
} from './instance-metrics.js';
export type {
  DetectionScores,
  InstanceIdArray,
  InstanceLabels,
  InstanceOverlap,
  InstanceOverlaps,
  InstanceScoreOptions,
  InstanceScores,
  PanopticScores,
} from './instance-metrics.js';
export { connectedInstances, watershedInstances } from './instances.js';
export type { ConnectedInstanceOptions, ForegroundMap, InstanceIdType, Instances, WatershedInstanceOptions, WatershedInstances } from './instances.js';
