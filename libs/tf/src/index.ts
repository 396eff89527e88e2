export { tf, backendInfo, backendTags, PACKAGES } from './backend.js';
export type { BackendInfo, TfNamespace, TfPackage } from './backend.js';
export { tensorCountGuard } from './memory.js';
