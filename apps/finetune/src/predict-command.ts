/**
 * The `predict` command: resolves the model (a directory, a run directory, runs:/ or the latest
 * fine-tuning), checks inputs, output folder and tiling options, and predicts whole images with
 * progress per tile. Cheap checks come first (nothing is written over an input, the output folder
 * is writable, every input header reads, every image holds a tile); an image that still fails is
 * reported and the rest predicted. The end is a summary of what was written and what was not:
 * exit 0 all written, 1 some image failed, 130 stopped by SIGINT/SIGTERM (after the current tile
 * batch).
 *
 * A multi-page TIFF (more than one page) is a 3D stack: it is predicted after the 2D images, in
 * `--stack` mode ('stack': slice by slice; 'orthoplane': the mean of the xy, xz and yz planes),
 * into `<out>/<stem>.tif` (8-bit mask stack, foreground 255) and `<out>/probability/<stem>.tif`
 * (16-bit), with memory bounded by a few slices (see @emseg/segmentation's stack-inference).
 *
 * An input that is a Zarr array or OME-Zarr image (a directory with Zarr metadata) is predicted on
 * its own, block by block, into the Zarr store `--out` (see predict-blocks.ts).
 */
import { basename, join, resolve } from 'node:path';
import { EXIT } from '@emseg/config';
import type { Connectivity } from '@emseg/evaluation';
import { ensureDefaultData, fileStem, isZarrNode, readStackInfo, type StackInfo } from '@emseg/data';
import { gracefulStop, ProgressBar } from '@emseg/training';
import { checkTileFits, inferenceProblem, predictStack, PredictionStopped, Segmenter, type InferenceOptions, type StackMode } from '@emseg/segmentation';
import { checkOutputOutsideInputs, checkWritableFolder, listInputs, predictFiles, readInputHeaders, type PredictedImage } from './predict.js';
import { locateModel } from './model-source.js';

import { DEFAULT_PREDICTIONS } from './workspace.js';

export { DEFAULT_PREDICTIONS };

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
  /** The binary output (default: 'urisc' for a U-RISC model, 'mask' for any other task's). */
  format?: 'urisc' | 'mask';
  /** How a multi-page TIFF input is predicted (default 'stack'). */
  stack?: StackMode;
  trackingUri?: string;
  /** Zarr input (an input that is a Zarr array or OME-Zarr image): see predict-blocks.ts. */
  dataset?: string;
  scale?: number;
  dtype?: 'uint8' | 'uint16';
  zarrFormat?: 2 | 3;
  ome?: boolean;
  chunks?: string;
  blockChunks?: string;
  halo?: number;
  workers?: number;
  shard?: string;
  queue?: string;
  wait?: boolean;
  /** A Zarr job's MLflow experiment (default MLFLOW_EXPERIMENT_NAME, else emseg-predict). */
  experiment?: string;
  /** false (--no-tracking): a Zarr job logs no MLflow run. */
  tracking?: boolean;
  /** A Zarr job also writes its thresholded mask (uint8, foreground 255, at --threshold or the model's) into this Zarr store. */
  maskOut?: string;
  /** A Zarr job also writes instance labels (connected components of the thresholded mask) into this Zarr store. */
  instancesOut?: string;
  connectivity?: Connectivity;
  minSize?: number;
}

const ZARR_ONLY = [
  'dataset',
  'scale',
  'chunks',
  'blockChunks',
  'halo',
  'shard',
  'queue',
  'experiment',
  'tracking',
  'maskOut',
  'instancesOut',
  'connectivity',
  'minSize',
] as const;

/** "8,256,256" as numbers, naming the flag when it is not a list of whole numbers. */
function numberList(text: string | undefined, flag: string): number[] | undefined {
  if (text === undefined) return undefined;
  const values = String(text).split(',').map(Number);
  if (values.some((v) => !(Number.isInteger(v) && v >= 1))) throw new Error(`${flag} takes positive whole numbers "z,y,x", got ${JSON.stringify(text)}`);
  return values;
}

/** Predicts a Zarr volume block by block (predict-blocks.ts). */
async function predictZarrInput(args: PredictArgs): Promise<number> {
  if (args.inputs.length !== 1) throw new Error(`a Zarr input is predicted on its own: got ${args.inputs.length} inputs (${args.inputs.join(', ')})`);
  const { predictZarr } = await import('./predict-blocks.js');
  const [input] = args.inputs;
  const out = args.out === DEFAULT_PREDICTIONS ? join(DEFAULT_PREDICTIONS, basename(input)) : args.out;
  const blockChunks = numberList(args.blockChunks, '--block-chunks');
  return predictZarr({
    input,
    dataset: args.dataset,
    scale: args.scale,
    out,
    model: await locateModel(args.model, args.trackingUri),
    inference: { tileSize: args.tileSize, overlap: args.overlap, window: args.window, batchSize: args.batchSize, flipTta: args.tta },
    halo: args.halo,
    dtype: args.dtype ?? 'uint8',
    format: args.zarrFormat ?? 3,
    ome: args.ome ?? true,
    chunks: numberList(args.chunks, '--chunks'),
    blockChunks: blockChunks?.length === 1 ? [1, blockChunks[0], blockChunks[0]] : blockChunks,
    workers: args.workers ?? 1,
    shard: args.shard,
    queue: args.queue,
    wait: args.wait,
    trackingUri: args.trackingUri,
    experiment: args.experiment,
    tracking: args.tracking,
    maskOut: args.maskOut,
    instancesOut: args.instancesOut,
    connectivity: args.connectivity,
    minSize: args.minSize,
    threshold: args.threshold,
  });
}

/** The inputs that are multi-page stacks (a file whose header does not read is left to readInputHeaders, which names it). */
async function stackInputs(files: readonly string[]): Promise<Map<string, StackInfo>> {
  const stacks = new Map<string, StackInfo>();
  for (const file of files) {
    const info = await readStackInfo(file).catch(() => null);
    if (info && info.depth > 1) stacks.set(file, info);
  }
  return stacks;
}

/** What was written and what was not, and why: the last thing predict prints. */
function summary(
  out: string,
  files: readonly string[],
  written: readonly Pick<PredictedImage, 'input' | 'submission'>[],
  failed: ReadonlyMap<string, string>,
  stopped: string | null,
): string {
  const done = new Set(written.map((r) => r.input));
  const notPredicted = files.filter((f) => !done.has(f) && !failed.has(f));
  if (failed.size === 0 && notPredicted.length === 0) {
    return `${written.length} image(s) predicted into ${out}; score them with: nx run finetune:score -- --pred ${out} --labels <label folder>`;
  }
  return [
    `summary: ${written.length} of ${files.length} image(s) written to ${out}; ${failed.size} failed; ${notPredicted.length} not predicted${stopped ? ` (stopped by ${stopped})` : ''}`,
    ...written.map((r) => `  written: ${r.input} -> ${r.submission}`),
    ...[...failed].map(([input, why]) => `  failed: ${input}: ${why.startsWith(`${input}: `) ? why.slice(input.length + 2) : why}`),
    ...notPredicted.map((f) => `  not predicted: ${f}`),
  ].join('\n');
}

export async function predict(args: PredictArgs): Promise<number> {
  if (args.inputs.length > 0 && (await isZarrNode(args.inputs[0]))) return predictZarrInput(args);
  const zarrOnly = ZARR_ONLY.filter((k) => args[k] !== undefined);
  if (zarrOnly.length > 0 || (args.workers ?? 1) !== 1)
    throw new Error(
      `${[...zarrOnly, ...((args.workers ?? 1) !== 1 ? ['workers'] : [])].map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')} apply to a Zarr input (a Zarr array or OME-Zarr image directory); ${args.inputs[0] ?? 'the default input'} is not one`,
    );
  let inputs = args.inputs;
  if (inputs.length === 0) {
    const data = await ensureDefaultData();
    inputs = [data.urisc.splits.test.images];
    process.stderr.write(`inputs: the embedded synthetic test images in ${inputs[0]}\n`);
  }
  const files = await listInputs(inputs);
  const out = resolve(args.out);
  await checkOutputOutsideInputs(out, files);
  const stacks = await stackInputs(files);
  const headers = [...(await readInputHeaders(files.filter((f) => !stacks.has(f)))), ...stacks.values()];
  await checkWritableFolder(out);
  if (args.probability !== 'none') await checkWritableFolder(join(out, 'probability'));
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
    const problem = inferenceProblem(inference);
    if (problem) throw new Error(problem);
    const threshold = args.threshold ?? info.threshold;
    // models saved before tasks were recorded are U-RISC models
    const format = args.format ?? ((info.task ?? 'urisc') === 'urisc' ? 'urisc' : 'mask');
    const what = format === 'urisc' ? 'membrane' : 'foreground';
    const validated =
      info.metric && info.metric !== 'f1' && info.valScore != null ? `validation ${info.metric} ${info.valScore.toFixed(4)}, F1` : 'validation F1';
    if (!(threshold >= 0 && threshold <= 1)) throw new Error(`--threshold must be a probability in [0, 1], got ${threshold}`);
    // the smallest image decides whether (and which) tile fits all of them
    const smallest = headers.reduce((a, b) => (Math.min(b.width, b.height) < Math.min(a.width, a.height) ? b : a));
    checkTileFits(smallest.path, smallest.width, smallest.height, inference);
    const classes = info.classes ?? null;
    if (classes !== null && args.format !== undefined)
      throw new Error(`--format ${args.format} is for binary models; this one has ${classes.length} classes and writes class maps`);
    if (classes !== null && stacks.size > 0) {
      throw new Error(
        `${[...stacks.keys()][0]} is a stack: 3D prediction is binary only so far; predict a multi-class model on 2D images (or the stack's slices as images)`,
      );
    }
    const output =
      classes !== null
        ? `class maps (${classes.map((c) => `${c.name} ${c.value}`).join(', ')})`
        : format === 'urisc'
          ? 'U-RISC submissions (membrane black 0)'
          : 'masks (foreground white 255)';
    process.stderr.write(
      `model: ${info.architecture} U-Net (${info.task ?? 'urisc'}; step ${info.step}, ${validated} ${info.valF1?.toFixed(4) ?? 'n/a'}); tiles ${inference.tileSize} overlap ${inference.overlap} ${inference.window}${inference.flipTta ? ' + flip TTA' : ''}; ${classes !== null ? 'most probable class' : `threshold ${threshold}`}; ${output}${stacks.size > 0 ? `; ${stacks.size} stack(s) in ${args.stack ?? 'stack'} mode, as mask stacks (foreground white 255)` : ''}\n`,
    );
    let bar: ProgressBar | undefined;
    let current = '';
    const endBar = () => {
      bar?.done();
      bar = undefined;
      current = '';
    };
    const failed = new Map<string, string>();
    let signals = 0;
    const stop = gracefulStop({
      log: (m) =>
        process.stderr.write(
          `\n${signals++ === 0 ? `${stop.signal ?? 'signal'} received: stopping after the current tile batch; the images written so far are complete (send it again to exit at once)` : m}\n`,
        ),
    });
    let results: PredictedImage[];
    const stackResults: Pick<PredictedImage, 'input' | 'submission'>[] = [];
    try {
      results = await predictFiles(segmenter, {
        inputs: files.filter((f) => !stacks.has(f)),
        outDir: out,
        inference,
        threshold,
        probability: args.probability,
        format,
        stop,
        onTiles: (image, done, total) => {
          if (image !== current) {
            endBar();
            current = image;
            bar = new ProgressBar({ label: image.split('/').pop() ?? image, total, unit: 'tile' });
          }
          bar?.tick(1);
        },
        onImage: (r) => {
          endBar();
          process.stdout.write(
            `${r.name}: ${r.width} x ${r.height}, ${(r.membraneFraction * 100).toFixed(2)}% ${what}, ${r.seconds.toFixed(1)} s -> ${r.submission}${r.probability ? ` (+ ${r.probability})` : ''}\n`,
          );
          if (r.problem) process.stderr.write(`warning: ${r.problem}\n`);
        },
        onFailed: (input, err) => {
          endBar();
          failed.set(input, err.message);
          process.stderr.write(`error: ${err.message}; not written, going on with the next image\n`);
        },
      });
      const mode = args.stack ?? 'stack';
      for (const [input, info] of stacks) {
        if (stop.requested) break;
        const name = fileStem(input);
        try {
          const r = await predictStack(segmenter, input, {
            mode,
            inference,
            threshold,
            maskOut: join(out, `${name}.tif`),
            probabilityOut: args.probability === 'none' ? undefined : join(out, 'probability', `${name}.tif`),
            stop,
            onSlice: (axis, done, total) => {
              if (current !== `${input} ${axis}`) {
                endBar();
                current = `${input} ${axis}`;
                bar = new ProgressBar({ label: `${name} ${axis}`, total, unit: 'plane' });
              }
              bar?.tick(1);
            },
          });
          endBar();
          stackResults.push({ input, submission: r.mask });
          process.stdout.write(
            `${name}: ${info.width} x ${info.height} x ${info.depth} stack (${mode}), ${(r.foregroundFraction * 100).toFixed(2)}% foreground, ${r.seconds.toFixed(1)} s (${r.slicesPerSecond.toFixed(2)} slices/s) -> ${r.mask}${r.probability ? ` (+ ${r.probability})` : ''}\n`,
          );
        } catch (err) {
          endBar();
          if (err instanceof PredictionStopped) break;
          failed.set(input, (err as Error).message);
          process.stderr.write(`error: ${(err as Error).message}; not written, going on with the next image\n`);
        }
      }
    } finally {
      endBar();
      stop.dispose();
    }
    process.stdout.write(`${summary(out, files, [...results, ...stackResults], failed, stop.signal)}\n`);
    if (stop.requested) return EXIT.interrupted;
    return failed.size > 0 ? EXIT.failed : EXIT.ok;
  } finally {
    segmenter.dispose();
  }
}
