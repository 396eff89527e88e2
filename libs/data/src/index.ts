/**
 * @emseg/data: everything between EM image files on disk and batches of tensors.
 *
 * - image I/O (sharp): readImage / readImageInfo / writeImage, 8- and 16-bit PNG/TIFF/JPEG
 * - datasets: UnlabeledCrops (CEM500K-style, MoCo views), LabeledImages (U-RISC-style pairs)
 * - patches (grid / random with foreground oversampling), tiling + blended stitching
 * - seeded augmentation applied identically to image and mask; the CEM500K recipe
 * - synthetic EM data and the cached embedded default (ensureDefaultData)
 * Only `imageBatchToTensor` / `maskBatchToTensor` touch TensorFlow.
 */
export { DataError } from './errors.js';
export { Rng, deriveSeed } from './random.js';
export { cutRegion, greyImage, maxValue, reflectIndex, toFloatImage } from './image.js';
export type { BitDepth, FloatImage, GreyImage, Mask, PixelArray, Rect } from './image.js';
export { publishDirectory, writeFileAtomic } from '@emseg/fs';
export { IMAGE_EXTENSIONS, isImageFileName, readImage, readImageInfo, writeImage } from './image-io.js';
export type { ImageInfo, ReadImageOptions, WriteImageOptions } from './image-io.js';
export { StackWriter, readStack, readStackInfo, readStackSlice, writeStack } from './stack-io.js';
export type { GreyStack, StackInfo, StackWriterOptions, WriteStackOptions } from './stack-io.js';
export { fileStem, listImageFiles } from './listing.js';
export type { ListImagesOptions } from './listing.js';
export { datasetDigest } from './digest.js';
export type { DatasetDigest, DigestOptions } from './digest.js';
export { ForegroundIndex, gridOffsets, patchGrid, samplePatch } from './patches.js';
export type { GridOptions, RandomPatchOptions } from './patches.js';
export { TileStitcher, blendWeights, extractTile, predictTiled, tilePlan } from './tiling.js';
export type { BlendWindow, Tile, TilePlan, TilePlanOptions } from './tiling.js';
export { IDENTITY, applyAffine, compose, invertAffine, rotationAbout, scaling, translation } from './affine.js';
export type { Affine } from './affine.js';
export { warpBilinear, warpNearest } from './warp.js';
export type { BorderMode, Raster, Warp } from './warp.js';
export { addGaussianNoise, adjustBrightnessContrast, adjustGamma, gaussianBlur, gaussianKernel } from './filters.js';
export { CEM500K_AUGMENTATION, URISC_AUGMENTATION, applyAugmentation, augmentedViews, sampleAugmentation } from './augment.js';
export type { AugmentationParams, AugmentationSpec, AugmentationTarget, Augmented } from './augment.js';
export { stackImages, stackMasks } from './batch.js';
export type { ImageBatch, MaskBatch } from './batch.js';
export { CEM500K_NORMALISATION, estimateNormalisation, normalise } from './normalisation.js';
export type { Normalisation } from './normalisation.js';
export { BadCropsError, CropStream, UnlabeledCrops, checkCrop } from './unlabeled-crops.js';
export type { BadCrop, CropCheck, CropStreamOptions, LoaderStats, OpenCropsOptions, ViewBatch } from './unlabeled-crops.js';
export { LabeledImages, foregroundShare, labelHistogram, labelToClasses, labelToMask, plausibleReading, uriscDirectories } from './labeled-images.js';
export type { LabelPolarity, LabelReading, LabeledPair, LabeledSample, OpenLabeledOptions } from './labeled-images.js';
export { patchBatches } from './labeled-patches.js';
export type { PatchBatch, PatchBatchOptions } from './labeled-patches.js';
export { imageBatchToTensor, maskBatchToTensor } from './tensors.js';
export type { Tensor4D } from './tensors.js';
export { renderEmScene } from './synthetic/em-scene.js';
export type { EmScene, EmSceneOptions } from './synthetic/em-scene.js';
export { SYNTHETIC_GENERATOR_VERSION, URISC_SPLITS, generateSyntheticCrops, generateSyntheticUrisc, syntheticUriscAt } from './synthetic/generate.js';
export type { SyntheticCropsDataset, SyntheticCropsOptions, SyntheticUriscDataset, SyntheticUriscOptions, UriscSplit } from './synthetic/generate.js';
export {
  QUICK_DATA,
  QUICK_MITO,
  QUICK_MITO_STACKS,
  defaultDataCacheDir,
  defaultDataVersion,
  ensureDefaultData,
  ensureDefaultMito,
} from './synthetic/default-data.js';
export type { DefaultData, DefaultDataSpec, DefaultMito, DefaultMitoSpec } from './synthetic/default-data.js';
export { MITO_CLASS_VALUES, SYNTHETIC_MITO_VERSION, generateSyntheticMito, generateSyntheticMitoStack, renderMitoScene } from './synthetic/mito.js';
export type {
  MitoScene,
  MitoSceneOptions,
  SyntheticMitoDataset,
  SyntheticMitoOptions,
  SyntheticMitoSplit,
  SyntheticMitoStack,
  SyntheticMitoStackDataset,
  SyntheticMitoStackOptions,
} from './synthetic/mito.js';
export { ZarrVolume, createZarrVolume, isZarrNode, openZarrVolume } from './zarr-io.js';
export type { CreateZarrOptions, OpenZarrOptions, ZarrData, ZarrDtype, ZarrFormat } from './zarr-io.js';
