/**
 * The self-supervised pretraining loop: data stream -> method steps -> checkpoints -> encoder bundle,
 * for any method of the registry (methods.ts: MoCoV2, BYOL), as solo-learn's base class does: the
 * method says what it learns and what follows what (method.ts); this file owns the data, the
 * optimizer and its schedule, the momentum updates, the checkpoint and the bundle.
 * Tracking-agnostic: progress and metrics go to a `PretrainListener` (main.ts wires MLflow to it).
 * The loop itself (schedule, resume, checkpoints, stop) is `runTraining`; this file supplies the
 * method's step, the checkpoint state and the linear probe as its evaluation.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tf, type Tensor } from '@emseg/tf';
import {
  BadCropsError,
  DataError,
  UnlabeledCrops,
  imageBatchToTensor,
  readImageInfo,
  writeFileAtomic,
  type AugmentationSpec,
  type BadCrop,
  type DatasetDigest,
  type ViewBatch,
} from '@emseg/data';
import { saveEncoderBundle } from '@emseg/models';
import {
  Sgd,
  cosineSchedule,
  runTraining,
  stepSchedule,
  type Checkpoint,
  type GracefulStop,
  type LoopListener,
  type LrSchedule,
  type Optimizer,
  type TrainingTask,
} from '@emseg/training';
import type { MocoConfig } from './config.js';
import { trainMethodStep, type MethodStepResult, type SslMethod } from './method.js';
import { createMethod } from './methods.js';
import { disposeProbeData, loadProbeData, runProbe, type ProbeData, type ProbeResult } from './probe.js';
import { resolveQueueSize } from './queue-fit.js';

/** One step as the listener sees it. */
export interface StepMetrics extends MethodStepResult {
  lr: number;
  /** The momentum of the step's momentum update (MoCo's m, BYOL's tau). */
  momentum: number;
  imagesPerSec: number;
  epoch: number;
}

export interface PretrainListener extends LoopListener<{ crops: number; stepsPerEpoch: number; digest: DatasetDigest }, StepMetrics> {
  probe?(step: number, result: ProbeResult): void;
  /** Something the user must know but that does not stop the run (default: printed to stderr). */
  warn?(message: string): void;
}

export interface PretrainOptions {
  cfg: MocoConfig;
  /** Folder of unlabeled crops (CEM500K layout: any tree of images). */
  dataDir: string;
  /** The crops of `dataDir`, if already opened with `openCrops` (the CLI sizes MoCo's queue by them before the run starts). */
  crops?: UnlabeledCrops;
  /** Run directory: checkpoints/, encoder/, the crop manifest and bad-crops.log go here. */
  outDir: string;
  /** Continue from the newest checkpoint in outDir/checkpoints. */
  resume?: boolean;
  stop?: GracefulStop;
  listener?: PretrainListener;
  /** U-RISC-layout folder of a few labelled images for the linear probe (see probe.ts). */
  probeDir?: string;
  /** Extra facts for the bundle's encoder.json. */
  mlflowRunId?: string | null;
}

export interface PretrainResult {
  status: 'FINISHED' | 'KILLED';
  steps: number;
  totalSteps: number;
  lastLoss: number | null;
  bundleDir: string | null;
  checkpointDir: string;
}

/**
 * A checkpoint's JSON: the loop's fields, then the method's own (`SslMethod.state().json`, e.g. MoCo's
 * `queuePtr`) at the top level, where MoCo checkpoints always had them.
 */
interface CheckpointState {
  step: number;
  /** The method trained (absent in checkpoints written before there were methods: mocov2). */
  method?: string;
  optimizerIterations: number;
  architecture: string;
  /** The crops trained on (absent in checkpoints written before this was recorded). */
  crops?: number;
  dataDigest?: string;
  [methodField: string]: unknown;
}

/** Loop-owned checkpoint fields a method's JSON state may not use. */
const LOOP_FIELDS = ['step', 'best', 'method', 'optimizerIterations', 'architecture', 'crops', 'dataDigest'];

function schedule(cfg: MocoConfig, stepsPerEpoch: number, totalSteps: number): LrSchedule {
  const { optimizer: o } = cfg;
  const warmupSteps = Math.round(o.warmupEpochs * stepsPerEpoch);
  return o.schedule === 'cosine'
    ? cosineSchedule(o.lr, totalSteps, { warmupSteps })
    : stepSchedule(
        o.lr,
        o.milestones.map((e) => Math.round(e * stepsPerEpoch)),
        o.gamma,
        { warmupSteps },
      );
}

/** Crops must be at least the network's input size (RandomResizedCrop may not upsample whole images). */
async function checkCropSize(crops: UnlabeledCrops, cropSize: number): Promise<void> {
  const first = crops.path(0);
  const info = await readImageInfo(first);
  if (info.width < cropSize || info.height < cropSize) {
    throw new DataError(
      first,
      `is ${info.width} x ${info.height} pixels, smaller than data.cropSize ${cropSize}`,
      `crops of at least ${cropSize} x ${cropSize} (or a smaller data.cropSize)`,
    );
  }
}

/**
 * Lists the crops into `<outDir>/crops.manifest` (or reuses it), checking every crop's header when it
 * is built. Crops that fail are listed in `<outDir>/bad-crops.log`, and either stop the run
 * (data.badCrops "fail") or are left out with a warning ("skip").
 */
export async function openCrops(dataDir: string, outDir: string, cfg: MocoConfig, warn: (message: string) => void): Promise<UnlabeledCrops> {
  const manifest = join(outDir, 'crops.manifest');
  const log = join(outDir, 'bad-crops.log');
  const writeLog = (bad: readonly BadCrop[]) =>
    writeFileAtomic(log, `# crops that failed the header check (${new Date().toISOString()})\n${bad.map((b) => `${b.problem}\n`).join('')}`);
  let crops: UnlabeledCrops;
  try {
    crops = await UnlabeledCrops.open(dataDir, { manifest, badCrops: cfg.data.badCrops, minSize: cfg.data.cropSize });
  } catch (err) {
    if (!(err instanceof BadCropsError)) throw err;
    await writeLog(err.bad);
    const fix = `remove or replace these files (a crop smaller than data.cropSize ${cfg.data.cropSize} may also mean data.cropSize is too large), or train without them with --set data.badCrops=skip; all ${err.bad.length} are listed in ${log}`;
    throw new BadCropsError(err.path, err.bad, err.checked, fix);
  }
  const check = crops.headerCheck;
  if (check !== null && check.skipped.length > 0) {
    await writeLog(check.skipped);
    warn(`warning: left out ${check.skipped.length} of ${check.checked} crops that fail the header check (data.badCrops "skip"); they are listed in ${log}`);
  } else if (check !== null) {
    await rm(log, { force: true });
  }
  return crops;
}

/** Pretrains `opts.cfg.method` (MoCoV2 or BYOL) on the crops in `opts.dataDir`; see the file comment. */
export async function pretrain(opts: PretrainOptions): Promise<PretrainResult> {
  const { outDir } = opts;
  let { cfg } = opts;
  const warn = opts.listener?.warn ?? ((message: string) => void process.stderr.write(`${message}\n`));
  const crops = opts.crops ?? (await openCrops(opts.dataDir, outDir, cfg, warn));
  await checkCropSize(crops, cfg.data.cropSize);
  const stepsPerEpoch = Math.floor(crops.size / cfg.train.batchSize);
  if (stepsPerEpoch === 0) {
    throw new DataError(crops.root, `has ${crops.size} crops, fewer than one batch (train.batchSize ${cfg.train.batchSize})`, 'at least one batch of crops');
  }
  cfg = resolveQueueSize(cfg, crops.size); // MoCo's "auto" K (the CLI resolves it before the run starts, for MLflow)
  const epochSteps = Math.ceil(cfg.train.epochs * stepsPerEpoch);
  const totalSteps = cfg.train.maxSteps === null ? epochSteps : Math.min(cfg.train.maxSteps, epochSteps);
  const lrAt = schedule(cfg, stepsPerEpoch, totalSteps);
  const ckptRoot = join(outDir, 'checkpoints');

  const optimizer = new Sgd(cfg.optimizer.momentum, cfg.optimizer.weightDecay);
  const method = createMethod(cfg.method, { cfg, optimizer, totalSteps });
  let probeData: ProbeData | null = null;
  try {
    if (opts.probeDir) probeData = await loadProbeData(opts.probeDir, { patchSize: cfg.probe.patchSize, mean: cfg.data.mean, std: cfg.data.std });
    const probe = probeData;
    const digest = await crops.digest();
    const norm = { mean: cfg.data.mean, std: cfg.data.std };
    const task: TrainingTask<ViewBatch, MethodStepResult & { lr: number; momentum: number }, CheckpointState, ProbeResult> = {
      batches: (epoch) =>
        crops.stream({
          seed: cfg.train.seed,
          epoch,
          batchSize: cfg.train.batchSize,
          size: cfg.data.cropSize,
          views: method.viewsPerCrop,
          augmentation: cfg.augmentation as AugmentationSpec,
          prefetch: cfg.data.prefetch,
        }),
      start: (startStep) => opts.listener?.start?.({ crops: crops.size, stepsPerEpoch, totalSteps, startStep, digest }),
      step: (batch, step) => {
        const views = batch.views.map((v) => imageBatchToTensor(v, norm));
        try {
          const lr = lrAt(step);
          return { ...trainMethodStep(method, views, lr, step), lr };
        } finally {
          tf.dispose(views);
        }
      },
      state: ({ step }) => checkpointState(method, optimizer, step, cfg, { crops: crops.size, digest: digest.digest }),
      restore: (ck) => restore(method, optimizer, ck, cfg, { crops: crops.size, digest: digest.digest, root: crops.root }, warn),
      // The probe watches the features; it picks no best model.
      evaluate: probe
        ? (step) => {
            const result = runProbe(method.encoder, probe, { steps: cfg.probe.steps });
            opts.listener?.probe?.(step, result);
            return { score: result, better: false };
          }
        : undefined,
    };

    const run = await runTraining({
      task,
      totalSteps,
      stepsPerEpoch,
      checkpointRoot: ckptRoot,
      checkpointEvery: cfg.train.checkpointEvery,
      evaluateEvery: cfg.probe.every,
      evaluateOnStop: true,
      resume: opts.resume,
      stop: opts.stop,
      divergenceHint: `lower optimizer.lr (now ${cfg.optimizer.lr})`,
      warn,
      listener: {
        step: (step, m, t) => opts.listener?.step?.(step, { ...m, epoch: t.epoch, imagesPerSec: (cfg.train.batchSize * 1000) / t.stepMs }),
        checkpoint: opts.listener?.checkpoint,
      },
    });
    const bundleDir = join(outDir, 'encoder');
    await saveEncoderBundle(
      bundleDir,
      method.encoder,
      {
        normalization: { mean: cfg.data.mean, std: cfg.data.std },
        pixelSizeNm: cfg.data.pixelSizeNm,
        training: {
          method: method.name,
          dataDigest: digest.digest,
          steps: run.steps,
          config: cfg as unknown as Record<string, unknown>,
          mlflowRunId: opts.mlflowRunId ?? null,
        },
      },
      { overwrite: true },
    );
    return { status: run.status, steps: run.steps, totalSteps, lastLoss: run.lastMetrics?.loss ?? null, bundleDir, checkpointDir: ckptRoot };
  } finally {
    if (probeData) disposeProbeData(probeData);
    method.dispose();
    optimizer.dispose();
  }
}

/** `pretrain` under its first name. */
export const pretrainMoco = pretrain;

/** The checkpoint at `step`: the method's tensors, the optimizer's slots (`optimizer/<slot>`), the JSON. */
function checkpointState(
  method: SslMethod,
  optimizer: Optimizer,
  step: number,
  cfg: MocoConfig,
  data: { crops: number; digest: string },
): { tensors: Record<string, Tensor>; state: CheckpointState } {
  const own = method.state();
  const clash = Object.keys(own.json).filter((k) => LOOP_FIELDS.includes(k));
  if (clash.length) throw new Error(`${method.name}: its checkpoint state may not use the loop's field(s) ${clash.join(', ')}`);
  const tensors: Record<string, Tensor> = { ...own.tensors };
  for (const [name, t] of Object.entries(optimizer.state().slots)) tensors[`optimizer/${name}`] = t;
  return {
    tensors,
    state: {
      step,
      method: method.name,
      ...own.json,
      optimizerIterations: optimizer.iterations,
      architecture: cfg.encoder.architecture,
      crops: data.crops,
      dataDigest: data.digest,
    },
  };
}

/**
 * Loads a checkpoint (the runner found, and disposes) into the method and optimizer. Warns when the
 * crops differ from those the checkpoint was trained on: the remaining epochs' order changes.
 */
function restore(
  method: SslMethod,
  optimizer: Optimizer,
  ck: Checkpoint<CheckpointState>,
  cfg: MocoConfig,
  data: { crops: number; digest: string; root: string },
  warn: (message: string) => void,
): void {
  const { dir } = ck;
  const { crops, dataDigest } = ck.state;
  if (dataDigest !== undefined && dataDigest !== data.digest) {
    warn(
      `warning: the crops in ${data.root} (${data.crops} crops, digest ${data.digest}) are not those checkpoint ${dir} was trained on ` +
        `(${crops} crops, digest ${dataDigest}): the remaining epochs see a different crop order than the interrupted run would have`,
    );
  }
  if (ck.state.architecture !== cfg.encoder.architecture) {
    throw new Error(`checkpoint ${dir} is a ${ck.state.architecture}, but the config asks for ${cfg.encoder.architecture}`);
  }
  const trained = ck.state.method ?? 'mocov2';
  if (trained !== method.name) {
    throw new Error(
      `checkpoint ${dir} is a ${trained} run, but the config asks for method ${method.name}: resume with --set method=${trained}, or start a new run`,
    );
  }
  method.restore(ck.tensors, ck.state, dir);
  const slots = Object.fromEntries(
    Object.entries(ck.tensors)
      .filter(([k]) => k.startsWith('optimizer/'))
      .map(([k, t]) => [k.slice('optimizer/'.length), t]),
  );
  optimizer.restore({ iterations: ck.state.optimizerIterations, slots });
}
