/** Where pretraining keeps things in the workspace (no TensorFlow here: `--help` imports it). */
import { join } from 'node:path';
import { workspaceRootOf } from '@emseg/fs';

/** The workspace root (the one this app lives in, whatever the working directory). */
export const WORKSPACE = workspaceRootOf(import.meta.url);

/** Run folders of pretraining by default: `.emseg/runs/pretrain/<run name>`. */
export const PRETRAIN_RUNS = join(WORKSPACE, '.emseg', 'runs', 'pretrain');

/**
 * Where the newest finished pretraining of the default run folders is recorded (latest.json beside
 * them); `finetune:urisc --encoder latest-pretrain` reads it. Runs with `--out DIR/name` record
 * theirs in `DIR/latest.json`.
 */
export const LATEST_PRETRAIN = join(PRETRAIN_RUNS, 'latest.json');

export const DEFAULT_CONFIG = join(WORKSPACE, 'configs', 'pretrain', 'quick.json');
