export { ConfigError } from './errors.js';
export { loadConfig, readConfigFile } from './load.js';
export type { LoadOptions, Schema } from './load.js';
export { configChanges, deepMerge, flatten, parseOverride, setPath } from './dotted.js';
export type { JsonObject } from './dotted.js';
export { EXIT, EXIT_CODES_HELP, exitWithError, failCommandLine, lazyCommand } from './exit-codes.js';
export type { ExitCode } from './exit-codes.js';
export { repeatedOption } from './cli-args.js';
