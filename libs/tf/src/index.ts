export { tf, backendInfo, backendTags, cudaLibraryVersions, packageOrder, visibleGpus, PACKAGES } from './backend.js';
export type { BackendInfo, TfNamespace, TfPackage, VisibleGpu } from './backend.js';
export { tensorCountGuard } from './memory.js';
export type { LayersModel, NamedTensorMap, Rank, Scalar, SymbolicTensor, Tensor, Tensor1D, Tensor2D, Tensor3D, Tensor4D, Variable } from '@tensorflow/tfjs';
