export { ConfigError } from './errors.js';
export { loadConfig, readConfigFile } from './load.js';
export type { LoadOptions, Schema } from './load.js';
export { deepMerge, flatten, parseOverride, setPath } from './dotted.js';
export type { JsonObject } from './dotted.js';
