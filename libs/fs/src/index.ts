export {
  publishDirectory,
  temporarySibling,
  withTemporaryFile,
  withTemporaryFileSync,
  writeFileAtomic,
  writeFileAtomicSync,
  writeJsonAtomic,
} from './atomic.js';
export type { PublishOptions } from './atomic.js';
export { findWorkspaceRoot, workspaceRootOf } from './workspace.js';
export { processAlive } from './process.js';
