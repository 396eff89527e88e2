/**
 * Where a command's model comes from: a directory (a model, a run folder or a checkpoint), a
 * `runs:/<run_id>/model` URI (downloaded from the tracking server), or the latest fine-tuning.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MlflowClient } from '@emseg/tracking';
import { runsUriResolver } from './train-run.js';
import { LATEST_FINETUNE, WORKSPACE } from './workspace.js';

/** The local model path for `model` (the value of `flag`), else the latest finished fine-tuning. */
export async function locateModel(model: string | undefined, trackingUri: string | undefined, flag = '--model'): Promise<string> {
  if (model?.startsWith('runs:')) {
    const uri = trackingUri ?? process.env.MLFLOW_TRACKING_URI;
    if (!uri) throw new Error(`${flag} ${model} is an MLflow URI: pass --tracking-uri (or set MLFLOW_TRACKING_URI) for the server that holds the run`);
    return runsUriResolver(new MlflowClient({ trackingUri: uri }), join(WORKSPACE, '.emseg', 'downloads'))(model);
  }
  if (model) {
    if (!existsSync(model))
      throw new Error(`${flag} ${model}: no such file or directory (a model directory, a fine-tuning run directory or runs:/<run_id>/model)`);
    return model;
  }
  if (!existsSync(LATEST_FINETUNE))
    throw new Error(`no ${flag} given and no finished fine-tuning recorded in ${LATEST_FINETUNE}: run \`nx run finetune:urisc\` first or pass ${flag} DIR`);
  const latest = JSON.parse(readFileSync(LATEST_FINETUNE, 'utf8')) as { modelDir?: string };
  if (typeof latest.modelDir !== 'string') throw new Error(`${LATEST_FINETUNE}: expected {"modelDir": "..."} as written by finetune:urisc`);
  process.stderr.write(`model: the latest fine-tuning, ${latest.modelDir}\n`);
  return latest.modelDir;
}
