/**
 * The `predict` command: resolves the model (a directory, a run directory, runs:/ or the latest
 * fine-tuning), checks the tiling options and predicts whole images with progress per tile.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ensureDefaultData } from '@emseg/data';
import { MlflowClient } from '@emseg/tracking';
import { ProgressBar } from '@emseg/training';
import type { InferenceOptions } from './inference.js';
import { predictFiles } from './predict.js';
import { Segmenter } from './segmenter.js';
import { runsUriResolver } from './urisc-run.js';
import { LATEST_FINETUNE, WORKSPACE } from './workspace.js';

export const DEFAULT_PREDICTIONS = join(WORKSPACE, '.emseg', 'predictions', 'latest');

export interface PredictArgs {
  inputs: string[];
  model?: string;
  out: string;
  tileSize?: number;
  overlap?: number;
  window?: InferenceOptions['window'];
  batchSize?: number;
  tta?: boolean;
  threshold?: number;
  probability: 'png' | 'tiff' | 'none';
  trackingUri?: string;
}

/** The model to predict with: --model (directory or runs:/ URI), else the latest finished fine-tuning. */
async function locateModel(model: string | undefined, trackingUri: string | undefined): Promise<string> {
  if (model?.startsWith('runs:')) {
    const uri = trackingUri ?? process.env.MLFLOW_TRACKING_URI;
    if (!uri) throw new Error(`--model ${model} is an MLflow URI: pass --tracking-uri (or set MLFLOW_TRACKING_URI) for the server that holds the run`);
    return runsUriResolver(new MlflowClient({ trackingUri: uri }), join(WORKSPACE, '.emseg', 'downloads'))(model);
  }
  if (model) return model;
  if (!existsSync(LATEST_FINETUNE)) throw new Error(`no --model given and no finished fine-tuning recorded in ${LATEST_FINETUNE}: run \`nx run finetune:urisc\` first or pass --model DIR`);
  const latest = JSON.parse(readFileSync(LATEST_FINETUNE, 'utf8')) as { modelDir?: string };
  if (typeof latest.modelDir !== 'string') throw new Error(`${LATEST_FINETUNE}: expected {"modelDir": "..."} as written by finetune:urisc`);
  process.stderr.write(`model: the latest fine-tuning, ${latest.modelDir}\n`);
  return latest.modelDir;
}

export async function predict(args: PredictArgs): Promise<number> {
  const segmenter = Segmenter.load(await locateModel(args.model, args.trackingUri));
  try {
    const info = segmenter.loadedInfo!;
    const inference: InferenceOptions = {
      tileSize: args.tileSize ?? info.inference.tileSize,
      overlap: args.overlap ?? info.inference.overlap,
      window: args.window ?? info.inference.window,
      batchSize: args.batchSize ?? info.inference.batchSize,
      flipTta: args.tta ?? info.inference.flipTta,
    };
    if (inference.tileSize % 32 !== 0) throw new Error(`--tile-size must be a multiple of 32 (the U-Net's input), got ${inference.tileSize}`);
    if (!(inference.overlap >= 0 && inference.overlap < inference.tileSize)) throw new Error(`--overlap must be in [0, tile size ${inference.tileSize}), got ${inference.overlap}`);
    const threshold = args.threshold ?? info.threshold;
    let inputs = args.inputs;
    if (inputs.length === 0) {
      const data = await ensureDefaultData();
      inputs = [data.urisc.splits.test.images];
      process.stderr.write(`inputs: the embedded synthetic test images in ${inputs[0]}\n`);
    }
    process.stderr.write(`model: ${info.architecture} U-Net (step ${info.step}, validation F1 ${info.valF1?.toFixed(4) ?? 'n/a'}); tiles ${inference.tileSize} overlap ${inference.overlap} ${inference.window}${inference.flipTta ? ' + flip TTA' : ''}; threshold ${threshold}\n`);
    const out = resolve(args.out);
    let bar: ProgressBar | undefined;
    let current = '';
    const results = await predictFiles(segmenter, {
      inputs,
      outDir: out,
      inference,
      threshold,
      probability: args.probability,
      onTiles: (image, done, total) => {
        if (image !== current) {
          bar?.done();
          current = image;
          bar = new ProgressBar({ label: image.split('/').pop() ?? image, total, unit: 'tile' });
        }
        bar?.tick(1);
      },
      onImage: (r) => {
        bar?.done();
        bar = undefined;
        current = '';
        process.stdout.write(`${r.name}: ${r.width} x ${r.height}, ${(r.membraneFraction * 100).toFixed(2)}% membrane, ${r.seconds.toFixed(1)} s -> ${r.submission}${r.probability ? ` (+ ${r.probability})` : ''}\n`);
        if (r.problem) process.stderr.write(`warning: ${r.problem}\n`);
      },
    });
    process.stdout.write(`${results.length} image(s) predicted into ${out}; score them with: nx run finetune:score -- --pred ${out} --labels <label folder>\n`);
    return 0;
  } finally {
    segmenter.dispose();
  }
}
