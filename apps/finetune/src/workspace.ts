/** Where fine-tuning keeps things in the workspace. */
import { join, resolve } from 'node:path';
import { workspaceRootOf } from '@emseg/fs';

/** The workspace root (the one this app lives in, whatever the working directory). */
export const WORKSPACE = workspaceRootOf(import.meta.url);

/**
 * Written by `pretrain:moco` when a pretraining finishes (`{ runId, trackingUri, bundleDir,
 * encoderUri }`); `finetune:urisc` starts from that encoder. The file path is the contract: the
 * app is not imported.
 */
export const LATEST_PRETRAIN = join(WORKSPACE, '.emseg', 'runs', 'pretrain', 'latest.json');

/**
 * Run directories of fine-tuning: `.emseg/runs/finetune/<run name>`, or `$EMSEG_FINETUNE_RUNS`
 * (tests point it at a temporary directory so they leave the workspace's runs alone).
 */
export const FINETUNE_RUNS = process.env.EMSEG_FINETUNE_RUNS ? resolve(process.env.EMSEG_FINETUNE_RUNS) : join(WORKSPACE, '.emseg', 'runs', 'finetune');

/** Written by `finetune:urisc` when a fine-tuning finishes; `predict` uses its model by default. */
export const LATEST_FINETUNE = join(FINETUNE_RUNS, 'latest.json');

/** The default run configuration of `urisc`. */
export const DEFAULT_CONFIG = join(WORKSPACE, 'configs', 'finetune', 'quick.json');

/** The preset `segment` runs with no --config: mitochondria-like data, IoU. */
export const DEFAULT_SEGMENT_CONFIG = join(WORKSPACE, 'configs', 'segment', 'mito.json');

/** Where `predict` writes by default (and `score` reads). */
export const DEFAULT_PREDICTIONS = join(WORKSPACE, '.emseg', 'predictions', 'latest');
