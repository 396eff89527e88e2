#!/usr/bin/env node
/**
 * emseg finetune: U-Net fine-tuning for EM membrane segmentation (U-RISC), full-image prediction and
 * official scoring.
 *
 *   nx run finetune:urisc                                   quick config on the embedded synthetic data
 *   nx run finetune:urisc -c track2 --data DIR --encoder REF   the paper setup on real U-RISC data
 *   nx run finetune:segment -- --data DIR --encoder REF     any labelled EM folder (images/ + masks/), by IoU
 *   nx run finetune:benchmark -- --data DIR --encoders A,B  CEM500K protocol: frozen / fine-tuned / random init
 *   nx run finetune:predict -- IMAGES... --out DIR          probability maps + binary submissions
 *   nx run finetune:predict -- VOL.zarr --out OUT.zarr --workers 2   a Zarr volume, block by block (--shard i/n)
 *   nx run finetune:score -- --pred DIR --labels DIR        official U-RISC F1 of a folder
 *   nx run finetune:attribute -- --image IMG --label LBL    integrated gradients and S_k per class
 */
import { join } from 'node:path';
import { commandLine, EXIT_CODES_HELP, lazyCommand, repeatedOption, withRunOptions } from '@emseg/config';
import type { AttributeArgs } from './attribute-command.js';
import type { BenchmarkArgs } from './benchmark-command.js';
import type { PredictArgs } from './predict-command.js';
import type { ScoreArgs } from './score-command.js';
import type { SegmentArgs } from './segment-run.js';
import type { UriscArgs } from './urisc-run.js';
import type { WorkerArgs } from './worker-command.js';
import { DEFAULT_CONFIG, DEFAULT_PREDICTIONS, DEFAULT_SEGMENT_CONFIG, WORKSPACE } from './workspace.js';

// Commands are imported when they run, so `--help` answers at once, without loading TensorFlow.

commandLine('emseg-finetune', 'name a command: urisc, segment, benchmark, predict, worker, score or attribute', (y) =>
  y
    .command(
      'urisc',
      'fine-tune a U-Net (encoder from a pretrained bundle or random) on U-RISC-layout data, validate with the official F1, score the test split',
      (y) =>
        withRunOptions(y, {
          config: { default: DEFAULT_CONFIG, describe: 'run configuration (JSON; see configs/finetune/: quick, track1, track2)' },
          setExample: 'train.steps=500',
          out: 'run directory for checkpoints, the best model and predictions (default .emseg/runs/finetune/<run name>)',
          latest: 'record the finished run here for `predict` (default: latest.json beside the run folder)',
          experiment: 'emseg-finetune',
          runName: 'unet-<arch>-<time>',
        })
          .option('data', {
            type: 'string',
            describe: 'U-RISC release root (imgs/<track>/{train,val,test}, label/<track>/...); default: the embedded synthetic data',
          })
          .option('encoder', {
            type: 'string',
            describe:
              'encoder bundle directory, runs:/<run_id>/encoder, the latest.json of a pretraining, "latest-pretrain" (the newest default pretraining) or "random" (default: model.encoder of the config)',
          })
          .option('test', { type: 'boolean', default: true, describe: 'predict and score the test split with the best model at the end (--no-test to skip)' })
          .check((a) => {
            const repeated = repeatedOption(a, ['data', 'encoder']);
            if (repeated) throw new Error(repeated);
            return true;
          })
          .example('$0 urisc', 'quick run on the embedded synthetic data, from the latest quick pretraining')
          .example('$0 urisc --config configs/finetune/track2.json --data /data/urisc --encoder runs:/4f2c.../encoder', 'the paper setup on Track 2')
          .example('$0 urisc --out .emseg/runs/finetune/r1 --resume', 'continue an interrupted run')
          .epilogue(EXIT_CODES_HELP),
      lazyCommand<UriscArgs>(async () => (await import('./urisc-run.js')).runUrisc),
    )
    .command(
      'segment',
      'fine-tune a U-Net on any labelled EM folder (images/ + masks/ paired by name, optional train/val/test), validate and test by foreground IoU',
      (y) =>
        withRunOptions(y, {
          config: { default: DEFAULT_SEGMENT_CONFIG, describe: 'run configuration (JSON; see configs/segment/: mito, instances, membrane)' },
          setExample: 'data.polarity=black-foreground',
          out: 'run directory for checkpoints, the best model and predictions (default .emseg/runs/finetune/<run name>)',
          latest: 'record the finished run here for `predict` (default: latest.json beside the run folder)',
          experiment: 'emseg-segment',
          runName: 'unet-<arch>-<time>',
        })
          .option('data', {
            type: 'string',
            describe:
              'labelled folder: images/ and masks/ paired by file stem, optionally split into train/ val/ test/ (images/train/... or train/images/...); default: the embedded synthetic mitochondria',
          })
          .option('encoder', {
            type: 'string',
            describe:
              'encoder bundle directory, runs:/<run_id>/encoder, the latest.json of a pretraining, "latest-pretrain" or "random" (default: model.encoder of the config)',
          })
          .option('test', { type: 'boolean', default: true, describe: 'predict and score the test split with the best model at the end (--no-test to skip)' })
          .check((a) => {
            const repeated = repeatedOption(a, ['data', 'encoder']);
            if (repeated) throw new Error(repeated);
            return true;
          })
          .example('$0 segment', 'the mito preset on the embedded synthetic data')
          .example('$0 segment --data /data/lucchi --encoder runs:/4f2c.../encoder --set train.steps=2000', 'mitochondria from a pretrained encoder')
          .example('$0 segment --data /data/isbi --set data.polarity=black-foreground --set data.maxForegroundFraction=0.4', 'membranes drawn black')
          .epilogue(EXIT_CODES_HELP),
      lazyCommand<SegmentArgs>(async () => (await import('./segment-run.js')).runSegment),
    )
    .command(
      'benchmark',
      "CEM500K's evaluation protocol on one labelled task: each encoder frozen and fine-tuned, plus random init, at equal config, budget and seed; one MLflow parent run with a child per arm, a results table (stdout, CSV, JSON) and a bar chart",
      (y) =>
        y
          .option('encoders', {
            type: 'string',
            demandOption: true,
            describe:
              'comma-separated encoder references (bundle directories, runs:/<run_id>/encoder, latest.json files, latest-pretrain); random init is always added',
          })
          .option('data', { type: 'string', describe: 'labelled folder as for `segment` (default: the embedded synthetic mitochondria)' })
          .option('config', {
            type: 'string',
            default: DEFAULT_SEGMENT_CONFIG,
            describe: 'the `segment` configuration every arm runs (configs/segment/: mito, instances, membrane)',
          })
          .option('set', {
            type: 'string',
            array: true,
            default: [] as string[],
            describe: 'config override for every arm, e.g. --set train.steps=2000 (repeatable)',
          })
          .option('modes', {
            type: 'string',
            default: 'frozen,finetuned',
            describe: 'encoder modes per encoder: frozen (model.freezeEncoder all) and/or finetuned (none)',
          })
          .option('out', {
            type: 'string',
            describe: 'benchmark folder: one run folder per arm plus results.* (default .emseg/runs/finetune/benchmark-<time>)',
          })
          .option('experiment', { type: 'string', default: process.env.MLFLOW_EXPERIMENT_NAME ?? 'emseg-benchmark', describe: 'MLflow experiment' })
          .option('tracking-uri', { type: 'string', describe: 'MLflow server (default MLFLOW_TRACKING_URI, else the project store started on a free port)' })
          .check((a) => {
            const repeated = repeatedOption(a, ['encoders', 'data', 'config', 'modes', 'out', 'experiment', 'tracking-uri']);
            if (repeated) throw new Error(repeated);
            const modes = String(a.modes).split(',');
            const bad = modes.filter((m) => m !== 'frozen' && m !== 'finetuned');
            if (bad.length > 0 || modes.length === 0) throw new Error(`--modes takes frozen and/or finetuned, got ${JSON.stringify(a.modes)}`);
            return true;
          })
          .example('$0 benchmark --encoders .emseg/runs/pretrain/latest.json', 'the quick pretraining against random init on the embedded mitochondria')
          .example('$0 benchmark --data /data/lucchi --encoders encoders/cem500k,runs:/4f2c.../encoder --set train.steps=2000', 'two encoders on Lucchi++')
          .epilogue(EXIT_CODES_HELP),
      lazyCommand<BenchmarkArgs & { modes: string | string[]; encoders: string | string[] }>(async () => {
        const { runBenchmark } = await import('./benchmark-command.js');
        const list = (v: string | string[]) => (Array.isArray(v) ? v : v.split(',')).map((x) => x.trim()).filter(Boolean);
        return (a) => runBenchmark({ ...a, encoders: list(a.encoders), modes: list(a.modes) as BenchmarkArgs['modes'] });
      }),
    )
    .command(
      'predict [inputs..]',
      'predict whole images in blended tiles: 16-bit probability maps and binary outputs (U-RISC submissions with membrane black = 0, or masks with foreground white = 255)',
      (y) =>
        y
          .positional('inputs', {
            type: 'string',
            array: true,
            default: [] as string[],
            describe: 'image files and/or folders (default: the embedded synthetic test images)',
          })
          .option('model', {
            type: 'string',
            describe: 'model directory, a fine-tuning run directory or runs:/<run_id>/model (default: the latest fine-tuning)',
          })
          .option('out', {
            type: 'string',
            default: DEFAULT_PREDICTIONS,
            describe:
              'output folder: <stem>.png submissions, probability/<stem>.png maps (a stack: <stem>.tif mask stack, probability/<stem>.tif); must not hold any input, and is created and checked writable before predicting. A Zarr input: the output Zarr store (default <this folder>/<input name>)',
          })
          .option('tile-size', { type: 'number', describe: 'tile edge, a multiple of 32 (default: as validated)' })
          .option('overlap', { type: 'number', describe: 'pixels shared by neighbouring tiles (default: as validated)' })
          .option('window', { type: 'string', choices: ['gaussian', 'linear', 'uniform'] as const, describe: 'tile blending window (default: as validated)' })
          .option('batch-size', { type: 'number', describe: 'tiles per forward pass' })
          .option('tta', { type: 'boolean', describe: 'average the four flips of every tile (--no-tta to disable)' })
          .option('threshold', { type: 'number', describe: 'membrane where probability >= threshold (default: as validated)' })
          .option('probability', {
            type: 'string',
            choices: ['png', 'tiff', 'none'] as const,
            default: 'png' as const,
            describe: 'probability map format (16-bit)',
          })
          .option('format', {
            type: 'string',
            choices: ['urisc', 'mask'] as const,
            describe:
              "binary output: urisc = U-RISC submission (membrane black 0), mask = foreground white 255 (default: urisc for a U-RISC model, mask for any other task's)",
          })
          .option('stack', {
            type: 'string',
            choices: ['stack', 'orthoplane'] as const,
            default: 'stack' as const,
            describe:
              'a multi-page TIFF input is a 3D stack, written as an 8-bit mask stack (foreground 255) and a 16-bit probability stack: stack = slice by slice, orthoplane = mean of the xy, xz and yz plane predictions',
          })
          .option('tracking-uri', {
            type: 'string',
            describe:
              "MLflow server for a runs:/ --model, and of a Zarr job's run (default MLFLOW_TRACKING_URI, else the project store started on a free port)",
          })
          .group(
            [
              'dataset',
              'scale',
              'dtype',
              'zarr-format',
              'ome',
              'chunks',
              'block-chunks',
              'halo',
              'workers',
              'shard',
              'mask-out',
              'instances-out',
              'connectivity',
              'min-size',
              'experiment',
              'tracking',
            ],
            'Zarr volumes (an input that is a Zarr array or OME-Zarr image; --out is then the output Zarr):',
          )
          .option('dataset', { type: 'string', describe: 'array or OME-Zarr image inside the input store (default: its root)' })
          .option('scale', { type: 'number', describe: 'OME-Zarr scale level to predict (default 0, full resolution)' })
          .option('dtype', {
            type: 'string',
            choices: ['uint8', 'uint16'] as const,
            default: 'uint8' as const,
            describe: 'output probabilities: round(p * 255) or round(p * 65535)',
          })
          .option('zarr-format', { type: 'number', choices: [2, 3] as const, default: 3 as const, describe: 'Zarr format of the output' })
          .option('ome', { type: 'boolean', default: true, describe: 'write the output as an OME-Zarr image (array at <out>/0; --no-ome: a plain array)' })
          .option('chunks', { type: 'string', describe: 'output chunk shape "z,y,x" (default: the input\'s chunks)' })
          .option('block-chunks', { type: 'string', describe: 'output chunks per block "z,y,x" (default 1 in z, in y and x enough to hold a tile)' })
          .option('halo', { type: 'number', describe: 'context pixels read around each block in y and x (default: the tile overlap)' })
          .option('workers', { type: 'number', default: 1, describe: 'local worker processes predicting blocks (each loads the model once)' })
          .option('queue', {
            type: 'string',
            describe:
              'enqueue the blocks on this Redis (BullMQ, redis://HOST:PORT[/DB]) for `finetune worker --queue` processes, and wait for them (3 attempts per block)',
          })
          .option('wait', { type: 'boolean', default: true, describe: 'with --queue: wait for the blocks (--no-wait: exit once they are enqueued)' })
          .option('mask-out', {
            type: 'string',
            describe: "also write the thresholded mask (uint8, foreground 255, at --threshold or the model's) into this Zarr store, block by block",
          })
          .option('instances-out', {
            type: 'string',
            describe:
              'also write instance labels into this Zarr store: the connected components of the thresholded mask, labelled block by block and merged across blocks once all are done (ids 1..n, uint16 or uint32, as one whole-volume labelling would give)',
          })
          .option('connectivity', {
            type: 'number',
            choices: [4, 8, 6, 18, 26],
            describe: "--instances-out's neighbours: 6 (default), 18 or 26; 2D: 4 (default) or 8",
          })
          .option('min-size', { type: 'number', describe: '--instances-out drops instances of fewer voxels (default 1: keep all)' })
          .option('experiment', { type: 'string', describe: "MLflow experiment of the job's run (default MLFLOW_EXPERIMENT_NAME, else emseg-predict)" })
          .option('tracking', { type: 'boolean', describe: 'log the job to one MLflow run (default; --no-tracking: none)' })
          .option('shard', {
            type: 'string',
            describe:
              'predict only shard i of n ("i/n": every n-th block from i); default from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or JOB_COMPLETION_INDEX/EMSEG_SHARD_COUNT',
          })
          .example('$0 predict data/imgs/Track1/test --out out/test --tta', 'a submission folder for the test images')
          .example(
            '$0 predict em.ome.zarr --scale 1 --out pred.zarr --workers 2',
            'an OME-Zarr volume at half resolution, blocks on two processes; a rerun resumes',
          )
          .example(
            '$0 predict em.zarr --out pred.zarr --instances-out cells.zarr --connectivity 26 --min-size 500',
            'probabilities and 3D instance labels of the whole volume, block by block',
          )
          .example('$0 predict em.zarr --out pred.zarr --shard 0/2', 'half of the blocks (run 1/2 anywhere that sees the same files for the other half)')
          .example('$0 predict big.png --model .emseg/runs/finetune/r1 --tile-size 1024 --overlap 512', 'one 10k x 10k image')
          .epilogue(EXIT_CODES_HELP),
      lazyCommand<PredictArgs>(async () => (await import('./predict-command.js')).predict),
    )
    .command(
      'worker',
      'predict blocks of Zarr block prediction jobs from a Redis queue (`predict <volume.zarr> --queue redis://...` fills it), on any number of machines',
      (y) =>
        y
          .option('queue', {
            type: 'string',
            describe: 'take blocks from the BullMQ queue on this Redis (redis://HOST:PORT[/DB]), filled by `predict --queue`',
          })
          .option('lock-seconds', {
            type: 'number',
            default: 60,
            describe: "a block's lock: a worker killed mid-block has its block picked up by another this long after",
          })
          .option('until-empty', { type: 'boolean', default: false, describe: 'exit once the queue holds no waiting, delayed or active block' })
          .option('job', { type: 'string', describe: 'the output Zarr of a local pool job (started by `predict --workers N`)' })
          .example('$0 worker --queue redis://10.0.0.5:6379', 'predict blocks from the queue until stopped (Ctrl-C finishes the current block)')
          .epilogue(EXIT_CODES_HELP),
      lazyCommand<WorkerArgs>(async () => (await import('./worker-command.js')).worker),
    )
    .command(
      'score',
      'official U-RISC F1 of a folder of binary predictions against a folder of labels (paired by name); a prediction the rules reject scores 0 with a warning (exit 1 if every one is)',
      (y) =>
        y
          .option('pred', { type: 'string', default: DEFAULT_PREDICTIONS, describe: 'folder of predictions (membrane black = 0)' })
          .option('labels', { type: 'string', describe: 'folder of labels (default: the embedded synthetic test labels)' })
          .option('json', { type: 'string', describe: 'write per-image scores as JSON here' })
          .option('csv', { type: 'string', describe: 'write per-image scores as CSV here' })
          .option('ignore-unpaired', { type: 'boolean', default: false, describe: 'ignore labels without a prediction (as the competition script does)' })
          .example('$0 score --pred out/test --labels data/label/Track1/test --csv scores.csv', 'score a submission folder')
          .epilogue(EXIT_CODES_HELP),
      lazyCommand<ScoreArgs>(async () => (await import('./score-command.js')).score),
    )
    .command(
      'attribute',
      'integrated gradients of the output at chosen or sampled pixels (true/false positives, false negatives) and the attribution field S_k of the U-RISC paper: heat maps, tables, box plot, an MLflow run',
      (y) =>
        y
          .option('model', {
            type: 'string',
            describe: 'model directory, a fine-tuning run directory or runs:/<run_id>/model (default: the latest fine-tuning)',
          })
          .option('image', {
            type: 'string',
            describe:
              'the EM image (PNG/TIFF, 8- or 16-bit); only each window is read for the attribution (default: the embedded synthetic test image and its label)',
          })
          .option('label', { type: 'string', describe: "its label: pixels are then sampled per class from the model's thresholded prediction" })
          .option('pixels', { type: 'string', describe: 'pixels to attribute, "x,y;x,y" (instead of sampling)' })
          .option('per-class', { type: 'number', default: 10, describe: 'pixels sampled per class (true positive, false positive, false negative)' })
          .option('seed', { type: 'number', default: 1, describe: 'seed of the pixel sampling' })
          .option('polarity', {
            type: 'string',
            choices: ['black-foreground', 'white-foreground'] as const,
            default: 'black-foreground' as const,
            describe: 'label polarity (U-RISC: membrane black)',
          })
          .option('threshold', { type: 'number', describe: "membrane where probability >= threshold, for sampling (default: the model's validated threshold)" })
          .option('baseline', {
            type: 'string',
            choices: ['mean', 'black', 'blur'] as const,
            default: 'mean' as const,
            describe: "IG baseline x': mean = zero in the model's normalised space (the paper's), black = grey 0, blur = Gaussian-blurred copy",
          })
          .option('blur-sigma', { type: 'number', default: 8, describe: 'Gaussian sigma in pixels of --baseline blur' })
          .option('steps', { type: 'number', default: 50, describe: 'intervals of the path integral (trapezoid rule; the paper used 100)' })
          .option('batch', { type: 'number', default: 4, describe: 'interpolated images per forward/backward pass (memory)' })
          .option('target', {
            type: 'string',
            choices: ['logit', 'probability'] as const,
            default: 'logit' as const,
            describe: "what is attributed: the pixel's membrane logit or probability",
          })
          .option('window', {
            type: 'number',
            default: 512,
            describe:
              'attribution window around each pixel, a multiple of 32 (shifted inside the image at its borders); 512 holds the part of the field above k = 0.01 (a few hundred px²), not the whole theoretical receptive field (up to ~280 px from the pixel for a ResNet-18 U-Net): a field still above k on the window edge is reported (edge_max_abs) with a warning',
          })
          .option('k', { type: 'string', default: '0.01,0.05', describe: 'S_k thresholds on the normalised attribution, comma-separated' })
          .option('pixel-size', { type: 'number', default: 2.18, describe: 'nm per pixel for S_k in nm² (U-RISC 2.18; ISBI 2012 4)' })
          .option('compare', {
            type: 'string',
            describe:
              'JSON spec {"entries": [{"name", "model", "image", "label", "pixelSize"}, ...]}: attribute each with these settings and tabulate mean S_k per class side by side',
          })
          .option('out', {
            type: 'string',
            default: join(WORKSPACE, '.emseg', 'attribution', 'latest'),
            describe: 'output folder (created and checked writable first)',
          })
          .option('experiment', { type: 'string', default: process.env.MLFLOW_EXPERIMENT_NAME ?? 'emseg-attribution', describe: 'MLflow experiment' })
          .option('run-name', { type: 'string', describe: 'MLflow run name (default attribution-<image>-<time>)' })
          .option('tracking-uri', { type: 'string', describe: 'MLflow server (default MLFLOW_TRACKING_URI, else the project store started on a free port)' })
          .check((a) => {
            const repeated = repeatedOption(a, [
              'model',
              'image',
              'label',
              'pixels',
              'baseline',
              'target',
              'k',
              'compare',
              'out',
              'experiment',
              'run-name',
              'tracking-uri',
            ]);
            if (repeated) throw new Error(repeated);
            if (a.image && !a.pixels && !a.label)
              throw new Error('name the pixels to attribute (--pixels "x,y;x,y") or give --label to sample true/false positives and false negatives');
            return true;
          })
          .example(
            '$0 attribute --image data/imgs/Track1/test/0.png --label data/label/Track1/test/0.tiff --per-class 20',
            'S_k of 20 true/false positives and false negatives of the latest model',
          )
          .example(
            '$0 attribute --model .emseg/runs/finetune/r1 --image big.png --pixels "5000,5000;120,40" --baseline blur',
            'two chosen pixels of a 10k x 10k image',
          )
          .example('$0 attribute --compare compare.json --out out/urisc-vs-isbi', "the paper's U-RISC vs ISBI 2012 comparison")
          .epilogue(EXIT_CODES_HELP),
      lazyCommand<AttributeArgs>(async () => (await import('./attribute-command.js')).attribute),
    ),
);
