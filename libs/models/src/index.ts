/**
 * @emseg/models: ResNet encoders, the U-Net decoder, segmentation losses, and the encoder bundle.
 * See README.md for the layer naming contract and the bundle format.
 */
export { FEATURE_STRIDES, RESNET_ARCHITECTURES, RESNET_DEPTHS, resnetSpec, resnetSpecByName } from './architecture.js';
export type { ResNetArchitecture, ResNetDepth, ResNetSpec } from './architecture.js';
export { BatchNorm, isBatchNorm } from './batch-norm.js';
export { Relu } from './relu.js';
export { nativeKernelsAvailable } from './native-kernels.js';
export type { BatchNormArgs, BatchNormCallArgs } from './batch-norm.js';
export { ENCODER_FREEZE_MODES, ResNetEncoder, globalAveragePool, resnetEncoder } from './resnet.js';
export type { EncoderFreeze, ResNetEncoderOptions } from './resnet.js';
export { DEFAULT_DECODER_CHANNELS, UNet, unet } from './unet.js';
export type { UNetOptions } from './unet.js';
export { bceWithLogits, binaryCrossEntropy, diceLoss, focalDiceLoss, focalLoss, segmentationLoss } from './losses.js';
export type { DiceOptions, FocalDiceOptions, FocalOptions, SegmentationLoss, SegmentationLossSpec } from './losses.js';
export { assignWeights, modelVariables, parameterCount, trainableVariables } from './variables.js';
export { normalizeInput } from './normalize.js';
export { ENCODER_FORMAT_VERSION, ENCODER_JSON, MODEL_JSON, WEIGHTS_BIN, normalizationFor, parseEncoderJson } from './encoder-json.js';
export type { EncoderBundleMeta, EncoderJson, EncoderTraining, Normalization } from './encoder-json.js';
export { loadEncoder, readEncoderJson, saveEncoderBundle } from './bundle.js';
export type { LoadEncoderOptions, LoadedEncoder, SaveEncoderOptions } from './bundle.js';
export { detectTorchPrefix, encoderFromTorchStateDict, readTorchExport } from './torch-state-dict.js';
export type { TorchExport, TorchImportOptions, TorchImportResult, TorchTensor } from './torch-state-dict.js';
