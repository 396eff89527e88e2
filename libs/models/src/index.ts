/**
 * @emseg/models: the encoder interface and registry (ResNet, plain conv), the U-Net decoder, segmentation losses, and the encoder bundle.
 * See README.md for the layer naming contract and the bundle format.
 */
export { FEATURE_STRIDES, RESNET_ARCHITECTURES, RESNET_DEPTHS, resnetSpec, resnetSpecByName } from './architecture.js';
export type { ResNetArchitecture, ResNetDepth, ResNetSpec } from './architecture.js';
export { BatchNorm, isBatchNorm } from './batch-norm.js';
export { Relu } from './relu.js';
export { nativeKernelsAvailable } from './native-kernels.js';
export type { BatchNormArgs, BatchNormCallArgs } from './batch-norm.js';
export { ENCODER_FREEZE_MODES, LayersEncoder, globalAveragePool } from './encoder.js';
export type { Encoder, EncoderEntry, EncoderFreeze, EncoderOptions, EncoderSpec } from './encoder.js';
export { createEncoder, encoderSpec, listEncoders } from './registry.js';
export { RESNET_ENCODERS, ResNetEncoder, resnetEncoder } from './resnet.js';
export type { ResNetEncoderOptions } from './resnet.js';
export { PLAIN_CONV_ENCODERS, PLAIN_CONV_SPECS, PlainConvEncoder, plainConvEncoder } from './plain-conv.js';
export type { PlainConvEncoderOptions, PlainConvSpec } from './plain-conv.js';
export { DEFAULT_DECODER_CHANNELS, UNet, unet } from './unet.js';
export type { UNetOptions } from './unet.js';
export {
  bceWithLogits,
  binaryCrossEntropy,
  crossEntropyDiceLoss,
  diceLoss,
  focalDiceLoss,
  focalLoss,
  multiclassDiceLoss,
  segmentationLoss,
  softmaxCrossEntropy,
} from './losses.js';
export type { CrossEntropyDiceOptions, DiceOptions, FocalDiceOptions, FocalOptions, SegmentationLoss, SegmentationLossSpec } from './losses.js';
export { assignWeights, modelVariables, parameterCount, trainableVariables } from './variables.js';
export { normalizeInput } from './normalize.js';
export { ENCODER_FORMAT_VERSION, ENCODER_JSON, MODEL_JSON, WEIGHTS_BIN, normalizationFor, parseEncoderJson } from './encoder-json.js';
export type { EncoderBundleMeta, EncoderJson, EncoderTraining, Normalization } from './encoder-json.js';
export { loadEncoder, readEncoderJson, saveEncoderBundle } from './bundle.js';
export type { LoadEncoderOptions, LoadedEncoder, SaveEncoderOptions } from './bundle.js';
export { detectTorchPrefix, encoderFromTorchStateDict, readTorchExport } from './torch-state-dict.js';
export type { TorchExport, TorchImportOptions, TorchImportResult, TorchTensor } from './torch-state-dict.js';
